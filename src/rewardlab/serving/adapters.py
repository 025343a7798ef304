"""Plug any rewardlab :class:`~rewardlab.scoring.Scorer` into the RL trainers people run.

* TRL: :func:`trl_reward_function` returns a callable for ``GRPOTrainer(reward_funcs=[...])`` (and other
  TRL trainers that take reward functions): ``f(prompts, completions, **columns) -> list[float]``, prompts
  and completions as text or as conversations (lists of ``{"role", "content"}``).
* verl: :func:`compute_score` / :func:`compute_score_batch` follow verl's custom reward function
  signatures; point verl 0.9's ``reward.custom_reward_function.path`` at :mod:`rewardlab.serving.verl_reward` (this
  file has relative imports, which verl's standalone module loader cannot resolve) and set ``REWARDLAB_REWARD_URL``
  (a ``rewardlab serve`` address) or ``REWARDLAB_REWARD_MODEL`` (a local folder) in the workers' environment.
* OpenRLHF: ``rewardlab serve`` speaks its ``/get_reward`` contract (``--remote_rm_url http://host:port/get_reward``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..scoring.protocol import Scorer, ensemble_rewards, is_ensemble

__all__ = ["RewardCall", "compute_score", "compute_score_batch", "trl_reward_function"]


def _completion_text(completion: Any) -> str:
    """A TRL completion: a string, or a conversation whose assistant turns are the completion."""
    if isinstance(completion, str):
        return completion
    return "".join(m["content"] for m in completion if m.get("role") == "assistant") or "".join(m["content"] for m in completion)


@dataclass(frozen=True)
class RewardCall:
    """What one call of a recording TRL reward function saw: the trainer step (``trainer_state.global_step + 1``,
    the step the batch is generated for; None outside a trainer), texts, rewards, and per-member rewards of an
    ensemble proxy (``(N, K)``, else None)."""

    step: int | None
    prompts: list[Any]
    completions: list[str]
    rewards: list[float]
    members: list[list[float]] | None = None


class _TRLRewardFunction:
    """``f(prompts, completions, **kwargs) -> list[float]`` over a :class:`Scorer` (see :func:`trl_reward_function`)."""

    def __init__(self, scorer: Scorer, name: str, record: bool = False):
        self.scorer, self.__name__, self.record = scorer, name, record
        self.calls: list[RewardCall] = []
        self._ensemble = record and is_ensemble(scorer)

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"got {len(prompts)} prompts but {len(completions)} completions")
        texts = [_completion_text(c) for c in completions]
        members = None
        if self._ensemble:
            rewards, rows = ensemble_rewards(self.scorer, list(prompts), texts) or ([], [])
            members = [[v for k, v in row.items() if k != "std"] for row in rows]
        else:
            rewards = [float(r) for r in self.scorer.score(list(prompts), texts)]
        if self.record:
            state = kwargs.get("trainer_state")
            step = None if state is None else int(state.global_step) + 1
            self.calls.append(RewardCall(step, list(prompts), texts, rewards, members))
        return rewards

    def take(self) -> list[RewardCall]:
        """The calls recorded since the last ``take`` (and forget them)."""
        calls, self.calls = self.calls, []
        return calls


def trl_reward_function(scorer: Scorer, name: str = "rewardlab", record: bool = False) -> Any:
    """A TRL reward function backed by ``scorer`` (local, remote, ensemble, judge, ...).

    ``name`` is what TRL logs the reward under (``rewards/<name>/mean``). With ``record=True`` the function keeps
    what it saw (:class:`RewardCall`; an ensemble's member rewards too) until ``take()``: what
    :class:`rewardlab.monitor.RewardHackingCallback` reads.

    >>> from rewardlab.scoring.protocol import FunctionScorer
    >>> f = trl_reward_function(FunctionScorer(lambda prompt, response: float(len(response))), name="length", record=True)
    >>> f(prompts=["Hi", [{"role": "user", "content": "Hi"}]], completions=["abc", [{"role": "assistant", "content": "ab"}]]), f.__name__
    ([3.0, 2.0], 'length')
    >>> [call.rewards for call in f.take()], f.take()
    ([[3.0, 2.0]], [])
    """
    return _TRLRewardFunction(scorer, name, record)


_VERL_SCORER: Scorer | None = None


def _verl_scorer() -> Scorer:
    """One scorer per verl worker process, from ``REWARDLAB_REWARD_URL`` or ``REWARDLAB_REWARD_MODEL``."""
    global _VERL_SCORER
    if _VERL_SCORER is None:
        from ..errors import ConfigError
        from ..scoring.config import build_scorer, scorer_config

        source = os.environ.get("REWARDLAB_REWARD_URL") or os.environ.get("REWARDLAB_REWARD_MODEL")
        if not source:
            raise ConfigError("set REWARDLAB_REWARD_URL (a rewardlab serve address) or REWARDLAB_REWARD_MODEL (a model folder)")
        _VERL_SCORER = build_scorer(scorer_config(source))
    return _VERL_SCORER


def _verl_prompt(extra_info: Any) -> Any:
    """The prompt verl hands a reward function: ``extra_info["prompt"]`` or ``["question"]`` (put it there when
    preparing the dataset; verl passes only the decoded response otherwise), else an empty prompt."""
    if not isinstance(extra_info, dict):
        return ""
    return extra_info.get("prompt", extra_info.get("question", ""))


def compute_score(data_source: Any, solution_str: str, ground_truth: Any = None, extra_info: dict | None = None,
                  **kwargs: Any) -> float:
    """verl's per-sample custom reward (``custom_reward_function.name=compute_score``)."""
    return float(_verl_scorer().score([_verl_prompt(extra_info)], [solution_str])[0])


def compute_score_batch(data_sources: Sequence[Any], solution_strs: Sequence[str], ground_truths: Sequence[Any],
                        extra_infos: Sequence[dict | None], **kwargs: Any) -> list[float]:
    """verl's batched custom reward (``reward_model.reward_manager=batch``): one scorer call for the whole batch."""
    return [float(r) for r in _verl_scorer().score([_verl_prompt(i) for i in extra_infos], list(solution_strs))]
