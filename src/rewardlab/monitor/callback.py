"""``RewardHackingCallback``: the monitor inside a TRL (GRPO / RLOO / any ``transformers.Trainer``) run.

It reads what the proxy reward function saw (a recording ``serving.adapters.trl_reward_function``), adds a gold
reward and extra reward models when given, feeds the monitor at every optimizer step, logs the latest window's
statistics beside TRL's own (``monitor/<statistic>``), and on an alarm can stop training and/or save a checkpoint.

Wiring (see docs/monitoring.md)::

    proxy = trl_reward_function(scorer, "proxy", record=True)
    gold = trl_reward_function(gold_scorer, "gold", record=True)      # rides along at weight 0
    trainer = GRPOTrainer(..., reward_funcs=[proxy, gold], args=GRPOConfig(..., reward_weights=[1.0, 0.0]))
    RewardHackingCallback(RewardHackingMonitor(alarms_path="run/alarms.jsonl"), proxy, gold=gold).attach(trainer)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from transformers import TrainerCallback

from ..errors import ConfigError
from ..jsonsafe import dumps
from ..scoring.protocol import Scorer
from .monitor import RewardHackingMonitor
from .rollouts import Rollout

__all__ = ["HeldoutProbe", "RecordingRewardFunction", "RewardHackingCallback"]

logger = logging.getLogger("rewardlab.monitor")


class RecordingRewardFunction(Protocol):
    """A TRL reward function that keeps what it scored (``serving.adapters.trl_reward_function(..., record=True)``):
    ``take()`` hands over the calls since the last one."""

    record: bool

    def take(self) -> list[Any]: ...


class HeldoutProbe:
    """Every ``every`` steps: sample ``samples`` replies per held-out prompt from the policy being trained (fixed
    seed, temperature 1) and log each scorer's mean reward as ``heldout/<name>_mean`` (e.g. a gold, other RMs)."""

    def __init__(self, prompts: Sequence[Any], scorers: Mapping[str, Scorer], every: int = 10, samples: int = 2,
                 max_new_tokens: int = 48, seed: int = 1234):
        if every < 1 or samples < 1 or not prompts or not scorers:
            raise ConfigError("a held-out probe needs prompts, scorers, every >= 1 and samples >= 1")
        self.prompts, self.scorers, self.every = list(prompts), dict(scorers), every
        self.samples, self.max_new_tokens, self.seed = samples, max_new_tokens, seed

    def run(self, model: Any, tokenizer: Any) -> dict[str, float]:
        from ..labeling.sampling import sample_replies

        replies = sample_replies(model, tokenizer, self.prompts, self.samples, self.max_new_tokens, self.seed)
        prompts = [self.prompts[r.prompt_index] for r in replies]
        texts = [r.text for r in replies]
        out = {f"heldout/{name}_mean": sum(s.score(prompts, texts)) / len(texts) for name, s in self.scorers.items()}
        out["heldout/length_mean"] = sum(len(t.split()) for t in texts) / len(texts)
        return out


class RewardHackingCallback(TrainerCallback):
    """Feed ``monitor`` from a recording proxy reward function at every optimizer step.

    * ``gold``: a recording reward function riding along in the trainer (weight 0; its calls pair one to one with
      the proxy's), or a :class:`~rewardlab.scoring.Scorer` called here on the proxy's rollouts, or None.
    * ``members``: extra scorers whose rewards become the rollouts' member rewards (an ensemble proxy's members
      are recorded by the proxy function itself).
    * ``stop_on_alarm`` / ``save_on_alarm``: what an alarm does to the run (``control.should_training_stop`` /
      ``should_save``), for the rules in ``stop_rules`` (None: every rule). Alarms always go to the monitor's
      ``alarms_path`` and the log.
    * ``rollouts_path``: append every rollout (step, prompt, response, reward, gold, members) to this jsonl, the
      dump ``rewardlab monitor`` reads.
    """

    def __init__(self, monitor: RewardHackingMonitor, proxy: RecordingRewardFunction,
                 gold: Scorer | RecordingRewardFunction | None = None, members: Sequence[Scorer] = (),
                 heldout: HeldoutProbe | None = None, stop_on_alarm: bool = False, save_on_alarm: bool = False,
                 prefix: str = "monitor/", stop_rules: Sequence[str] | None = None, rollouts_path: str | None = None):
        if not hasattr(proxy, "take") or not getattr(proxy, "record", False):
            raise ConfigError("the proxy must be a recording reward function: trl_reward_function(scorer, name, record=True)")
        if gold is not None and not (isinstance(gold, Scorer) or getattr(gold, "record", False)):
            raise ConfigError("gold must be a Scorer or a recording reward function (record=True)")
        self.monitor, self.proxy, self.gold, self.members = monitor, proxy, gold, list(members)
        self.heldout, self.stop_on_alarm, self.save_on_alarm, self.prefix = heldout, stop_on_alarm, save_on_alarm, prefix
        self.stop_rules = None if stop_rules is None else set(stop_rules)
        self.rollouts_path = rollouts_path
        self.stopped_by: Any = None
        self._pending: dict[str, float] = {}

    def attach(self, trainer: Any) -> RewardHackingCallback:
        """Put this callback first, so that the reporters (TensorBoard, W&B, the console) log its numbers too."""
        trainer.callback_handler.callbacks.insert(0, self)
        return self

    def _rollouts(self, step: int) -> list[Rollout]:
        calls = self.proxy.take()
        gold_calls = self.gold.take() if self.gold is not None and not isinstance(self.gold, Scorer) else None
        if gold_calls is not None and [len(c.rewards) for c in gold_calls] != [len(c.rewards) for c in calls]:
            raise ConfigError("the gold reward function's calls do not pair with the proxy's: give both to the trainer")
        rollouts: list[Rollout] = []
        for index, call in enumerate(calls):
            if gold_calls is not None:
                golds: list[float | None] = list(gold_calls[index].rewards)
            elif isinstance(self.gold, Scorer):
                golds = list(self.gold.score(call.prompts, call.completions))
            else:
                golds = [None] * len(call.rewards)
            extra = [s.score(call.prompts, call.completions) for s in self.members]
            for i, (prompt, text, reward) in enumerate(zip(call.prompts, call.completions, call.rewards)):
                members = tuple(call.members[i]) if call.members else (tuple(e[i] for e in extra) if extra else None)
                rollouts.append(Rollout(step, prompt, text, reward, golds[i], members))
        return rollouts

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        step = int(state.global_step)
        rollouts = self._rollouts(step)
        if self.rollouts_path is not None and rollouts:
            with open(self.rollouts_path, "a") as handle:
                handle.writelines(dumps({"step": r.step, "prompt": r.prompt, "response": r.response, "reward": r.reward,
                                         "gold": r.gold, "members": r.members}) + "\n" for r in rollouts)
        fired = self.monitor.add(rollouts) + self.monitor.end_step(step)
        if self.monitor.windows and self.monitor.windows[-1]["last_step"] == step:
            self._pending.update({self.prefix + k: float(v) for k, v in self.monitor.latest().items()
                                  if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)})
        if self.heldout is not None and step % self.heldout.every == 0 and kwargs.get("model") is not None:
            self._pending.update(self.heldout.run(kwargs["model"], kwargs.get("processing_class")))
        for alarm in fired:
            logger.warning("reward-hacking alarm: %s", alarm.describe())
        if fired:
            self._pending[self.prefix + "alarms"] = float(len(self.monitor.alarms))
            if self.save_on_alarm:
                control.should_save = True
            stopping = [a for a in fired if self.stop_rules is None or a.rule in self.stop_rules]
            if self.stop_on_alarm and stopping:
                self.stopped_by = stopping[0]
                control.should_training_stop = True
        return control

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        if logs is not None and self._pending:
            logs.update(self._pending)
            if state.log_history and state.log_history[-1].get("step") == state.global_step:
                state.log_history[-1].update(self._pending)
            self._pending = {}
        return control

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        for alarm in self.monitor.close():
            logger.warning("reward-hacking alarm: %s", alarm.describe())
        return control
