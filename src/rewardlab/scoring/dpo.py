"""DPO implicit reward: a DPO-trained policy and its reference used as a reward model.

``r(x, y) = beta * (log pi_theta(y|x) - log pi_ref(y|x))`` (Rafailov et al., arXiv:2305.18290),
with log-probabilities summed over the response tokens only (prompt tokens masked; the
end-of-turn tokens a chat template appends after the reply count as response). Options, both
recorded with every result because scores depend on them: ``reference_free`` (``log pi_ref = 0``)
and ``length_normalize`` (mean instead of sum over response tokens).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from ..data.collate import pad_sequences
from ..data.templating import Prompt, as_messages, tokenize_with_boundary
from ..losses import dpo_implicit_reward
from ..models.io import _DTYPES, resolve_model_source
from .config import DPOConfig
from .engine import encode_all, raise_if_too_long, run_batches

__all__ = ["DPOScorer", "load_dpo_scorer", "sequence_logprobs"]


def sequence_logprobs(
    logits: torch.Tensor, input_ids: torch.Tensor, response_mask: torch.Tensor, length_normalize: bool = False
) -> torch.Tensor:
    """Sum (or mean) of ``log p(token_t | tokens_<t)`` over positions where ``response_mask`` is 1.

    Shapes: ``logits`` ``(B, T, V)``, ``input_ids`` ``(B, T)``, ``response_mask`` ``(B, T)`` -> ``(B,)``.

    >>> logits = torch.zeros(1, 3, 4)  # uniform over 4 tokens
    >>> round(sequence_logprobs(logits, torch.tensor([[1, 2, 3]]), torch.tensor([[0, 1, 1]])).item(), 4)
    -2.7726
    """
    logps = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    mask = response_mask[:, 1:].to(logps.dtype)
    total = (logps * mask).sum(-1)
    return total / mask.sum(-1).clamp(min=1) if length_normalize else total


class DPOScorer:
    """A :class:`~rewardlab.scoring.protocol.Scorer` from a causal-LM policy and reference (reward-bench's DPO mode).

    ``max_length`` defaults to 1024 (a policy folder records no training length).
    """

    def __init__(self, policy: Any, reference: Any | None, tokenizer: Any, config: DPOConfig):
        """``config.model`` and ``config.reference`` name the weights in ``describe()``; ``reference`` may be None only
        with ``config.reference_free``; ``config.max_length`` unset: 1024."""
        if reference is None and not config.reference_free:
            raise ValueError("a reference model is required unless config.reference_free")
        self.config = config
        self.device = torch.device(config.device) if config.device else next(policy.parameters()).device
        self.policy = policy.eval().to(self.device)
        self.reference = None if reference is None else reference.eval().to(self.device)
        self.tokenizer = tokenizer
        self.max_length, self.batch_size = config.max_length or 1024, config.batch_size
        self.source, self.reference_source, self.show_progress = config.model, config.reference, config.show_progress
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token

    @classmethod
    def load(cls, config: DPOConfig) -> DPOScorer:
        """The policy (and reference) causal LMs of ``config``: folders, Hub names or ``builtin:smollm2``."""
        from dataclasses import replace

        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ..models.io import check_model_source, usable_max_length

        def load(name: str) -> Any:
            path, extra = resolve_model_source(name)
            return AutoModelForCausalLM.from_pretrained(path, dtype=_DTYPES[config.precision],
                                                        trust_remote_code=config.trust_remote_code, **extra)

        check_model_source(config.model, "policy")
        if config.reference is not None:
            check_model_source(config.reference, "reference model")
        path, extra = resolve_model_source(config.model)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=config.trust_remote_code, **extra)
        policy = load(config.model)
        limit = usable_max_length(policy.config, config.max_length, 1024)
        reference = None if config.reference is None or config.reference_free else load(config.reference)
        return cls(policy, reference, tokenizer, replace(config, max_length=limit))

    def describe(self) -> dict[str, Any]:
        from .local import model_fingerprint

        dtype = str(next(self.policy.parameters()).dtype).replace("torch.", "")
        record = {"dpo_beta": self.config.beta, "reference_free": self.config.reference_free,
                  "length_normalized": self.config.length_normalize}
        return {"kind": "dpo", "model": self.source, "record": record,
                "settings": {"weights": model_fingerprint(self.source), "reference": model_fingerprint(self.reference_source),
                             "max_length": self.max_length, "dtype": dtype, **record}}

    def _encode(self, prompt: Prompt, response: str) -> tuple[list[int], int] | None:
        return tokenize_with_boundary(self.tokenizer, as_messages(prompt), response, self.max_length)

    def too_long(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[int]:
        return [i for i, e in enumerate(encode_all(self._encode, prompts, responses)) if e is None]

    @torch.inference_mode()
    def token_logprobs(self, model: Any, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[torch.Tensor]:
        """Per response token ``log p(token | prefix)`` under ``model``: one ``(T_i,)`` tensor per item, in input order."""
        encoded = raise_if_too_long(encode_all(self._encode, prompts, responses), self.max_length)

        def forward(idx: list[int]) -> list[torch.Tensor]:
            ids, mask = pad_sequences([encoded[i][0] for i in idx], self.tokenizer.pad_token_id)
            ids, mask = ids.to(self.device), mask.to(self.device)
            logps = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
            logps = logps.gather(-1, ids[:, 1:, None]).squeeze(-1).cpu()
            return [logps[row, max(encoded[i][1], 1) - 1 : len(encoded[i][0]) - 1] for row, i in enumerate(idx)]

        return run_batches([len(e[0]) for e in encoded], forward, self.batch_size, show_progress=self.show_progress)

    def kl_to_reference(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> dict[str, Any]:
        """How far the policy is from the reference on these responses (sampled from the policy): per-sequence KL
        ``sum_t k(t)`` for the k1 and k3 estimators (:mod:`rewardlab.control`), their means with standard errors,
        and the KL per token."""
        import math

        from ..control import sequence_kl

        if self.reference is None:
            raise ValueError("a KL needs a reference model")
        policy, reference = self.token_logprobs(self.policy, prompts, responses), self.token_logprobs(self.reference, prompts, responses)
        out: dict[str, Any] = {"sequences": len(policy), "tokens": int(sum(p.numel() for p in policy))}
        for estimator in ("k1", "k3"):
            per_seq = torch.tensor([float(sequence_kl(p[None], r[None], estimator)[0]) for p, r in zip(policy, reference)])
            n = max(per_seq.numel(), 1)
            out[f"{estimator}_mean"] = float(per_seq.mean()) if per_seq.numel() else float("nan")
            out[f"{estimator}_stderr"] = float(per_seq.std() / math.sqrt(n)) if per_seq.numel() > 1 else float("nan")
            out[f"{estimator}_per_token"] = float(per_seq.sum() / max(out["tokens"], 1))
            out[f"{estimator}_per_sequence"] = per_seq.tolist()
        return out

    @torch.inference_mode()
    def logprobs(self, model: Any, prompts: Sequence[Prompt], responses: Sequence[str]) -> torch.Tensor:
        """Response log-probabilities under ``model``, ``(N,)``, in input order."""
        encoded = raise_if_too_long(encode_all(self._encode, prompts, responses), self.max_length)

        def forward(idx: list[int]) -> list[float]:
            ids, mask = pad_sequences([encoded[i][0] for i in idx], self.tokenizer.pad_token_id)
            response = mask.clone()
            for row, i in enumerate(idx):
                response[row, : encoded[i][1]] = 0
            ids, mask = ids.to(self.device), mask.to(self.device)
            logits = model(input_ids=ids, attention_mask=mask).logits
            return sequence_logprobs(logits, ids, response.to(self.device), self.config.length_normalize).cpu().tolist()

        values = run_batches([len(e[0]) for e in encoded], forward, self.batch_size, show_progress=self.show_progress)
        return torch.tensor(values, dtype=torch.float32)

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
        if not prompts:
            return []
        policy = self.logprobs(self.policy, prompts, responses)
        reference = torch.zeros_like(policy) if self.reference is None else self.logprobs(self.reference, prompts, responses)
        return dpo_implicit_reward(policy, reference, self.config.beta).tolist()


def load_dpo_scorer(policy: str | os.PathLike, reference: str | os.PathLike | None = None, **options: Any) -> DPOScorer:
    """``DPOScorer.load(DPOConfig(model=policy, reference=reference, **options))``."""
    return DPOScorer.load(DPOConfig(model=str(policy), reference=None if reference is None else str(reference), **options))
