"""The TRL callbacks rewardlab puts around GRPOTrainer: the KL coefficient (fixed or adaptive) and its log, the
periodic evaluation with its stop rules, and the per-step metrics log."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from ..control import AdaptiveKLController, FixedKLController
from ..jsonsafe import dumps

__all__ = ["EvaluationCallback", "KLCallback", "MetricsLog"]


class MetricsLog:
    """``metrics.jsonl``: one JSON object per line (``kind`` 'train' for TRL's per-step logs, 'eval' for evaluations)."""

    def __init__(self, path: Path):
        self.path = path

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(dumps(row) + "\n")


class KLCallback(TrainerCallback):
    """Applies the controller's coefficient to what TRL optimizes (``trainer.beta``, read at every loss) and logs it.

    The adaptive controller observes the per-sequence KL of each training batch: TRL's logged ``kl`` (a per-token
    mean of k3) times the batch's mean completion length, with ``n_steps`` = completions in the batch.
    """

    def __init__(self, trainer: Any, controller: FixedKLController | AdaptiveKLController, batch_completions: int):
        self.trainer, self.controller, self.batch_completions = trainer, controller, batch_completions
        trainer.beta = controller.value

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        if logs is None or "loss" not in logs:
            return control
        logs["kl_coef"] = float(self.trainer.beta)
        token_kl, length = logs.get("kl"), logs.get("completions/mean_length")
        if token_kl is not None and length is not None and math.isfinite(token_kl):
            logs["kl_per_sequence_train"] = float(token_kl) * float(length)
            if isinstance(self.controller, AdaptiveKLController):
                self.trainer.beta = self.controller.update(logs["kl_per_sequence_train"], self.batch_completions)
        return control


class EvaluationCallback(TrainerCallback):
    """Every ``every`` steps (and at the round's last step): evaluate, log to ``metrics.jsonl``, apply the KL-budget
    and diversity stop rules (``stopped_by`` says which), and copy TRL's per-step logs to ``metrics.jsonl``."""

    def __init__(self, evaluate: Any, every: int, last_step: int, log: MetricsLog, round_index: int,
                 kl_budget: float | None, min_distinct: float | None):
        self.evaluate, self.every, self.last_step, self.log = evaluate, every, last_step, log
        self.round_index, self.kl_budget, self.min_distinct = round_index, kl_budget, min_distinct
        self.stopped_by: str | None = None
        self.eval_seconds = 0.0
        self.last_eval: dict[str, Any] | None = None

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        if logs is not None and "loss" in logs:
            self.log.write({"kind": "train", "step": state.global_step, "round": self.round_index, **logs})
        return control

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        step = int(state.global_step)
        if step % self.every and step != self.last_step:
            return control
        start = time.perf_counter()
        row = self.evaluate(kwargs["model"], step, self.round_index)
        self.eval_seconds += time.perf_counter() - start
        self.last_eval = row
        self.log.write(row)
        if self.kl_budget is not None and row["kl_k3"] > self.kl_budget:
            self.stopped_by = f"KL {row['kl_k3']:.3g} nats above the budget {self.kl_budget:g} at step {step}"
        elif self.min_distinct is not None and row["distinct_2"] < self.min_distinct:
            self.stopped_by = f"diversity collapse: distinct-2 {row['distinct_2']:.3g} below {self.min_distinct:g} at step {step}"
        if self.stopped_by:
            control.should_training_stop = True
        return control
