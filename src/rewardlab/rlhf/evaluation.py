"""Evaluation of the policy on held-out prompts: proxy and gold reward, per-sequence KL to the reference, length,
repetition, ensemble disagreement, proxy-gold agreement and win rate against the reference, with the samples kept.

The same prompts and the same sampling seed at every evaluation (common random numbers: the differences between
evaluations are the policy's, not the draw's). KL is measured on the policy's own samples from the token log-probs
under the policy and the reference (k1 and k3 per sequence, nats; ``d = sqrt(k3)``), the axis of Gao et al.
(arXiv:2210.10760); TRL's logged ``kl`` is a per-token mean of the training batch, reported beside it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..jsonsafe import dumps
from ..labeling.sampling import SampledReply, reply_logprobs, sample_replies
from ..monitor import stats
from ..scoring.protocol import Scorer, ensemble_rewards

__all__ = ["Evaluator", "mean_and_se", "win_rate"]


def mean_and_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error (``std / sqrt(n)``, ddof 1; ``nan`` for fewer than 2 values).

    >>> mean_and_se([1.0, 2.0, 3.0])
    (2.0, 0.5773502691896258)
    """
    v = np.asarray(values, float)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")


def win_rate(policy: Sequence[float], reference: Sequence[float]) -> tuple[float, float]:
    """Share of paired items where the policy's reward beats the reference's, ties counting half, and its SE.

    >>> win_rate([1.0, 2.0, 0.0, 1.0], [0.0, 2.0, 1.0, 0.0])
    (0.625, 0.23935677693908453)
    """
    p, r = np.asarray(policy, float), np.asarray(reference, float)
    if p.shape != r.shape or p.size == 0:
        raise ValueError("win_rate needs two equally long, non-empty reward lists")
    outcomes = (p > r).astype(float) + 0.5 * (p == r)
    return float(outcomes.mean()), float(outcomes.std(ddof=1) / math.sqrt(p.size)) if p.size > 1 else float("nan")


@dataclass
class Evaluator:
    """Samples ``samples`` replies per prompt from the policy and measures them; keeps the reference's first draw."""

    prompts: list[Any]
    samples: int
    max_new_tokens: int
    seed: int
    tokenizer: Any
    reference_model: Any
    proxy: Scorer
    gold: Scorer | None
    output_dir: Path
    reference_rows: list[dict[str, Any]] | None = None

    def _replies(self, model: Any) -> list[SampledReply]:
        return sample_replies(model, self.tokenizer, self.prompts, self.samples, self.max_new_tokens, self.seed)

    def evaluate(self, model: Any, step: int, round_index: int) -> dict[str, Any]:
        """Evaluate ``model`` (the policy at ``step``); writes ``eval/step_<step>.jsonl`` and returns the metrics row."""
        replies = self._replies(model)
        prompts = [self.prompts[r.prompt_index] for r in replies]
        texts = [r.text for r in replies]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        policy_lp = reply_logprobs(model, replies, pad)
        reference_lp = reply_logprobs(self.reference_model, replies, pad)
        kls = [stats.sequence_kl_from_logprobs(p, r) for p, r in zip(policy_lp, reference_lp)]
        scored = ensemble_rewards(self.proxy, prompts, texts)
        proxy = scored[0] if scored is not None else [float(v) for v in self.proxy.score(prompts, texts)]
        gold = [float(v) for v in self.gold.score(prompts, texts)] if self.gold is not None else None
        rows = [{"step": step, "round": round_index, "prompt": p, "response": t, "proxy": proxy[i],
                 "gold": None if gold is None else gold[i], "kl_k1": kls[i][0], "kl_k3": kls[i][1],
                 "tokens": len(replies[i].reply_ids)} for i, (p, t) in enumerate(zip(prompts, texts))]
        folder = self.output_dir / "eval"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"step_{step}.jsonl").write_text("".join(dumps(row) + "\n" for row in rows))
        if self.reference_rows is None:
            self.reference_rows = rows  # the first evaluation (step 0) is the reference policy's
        return self._metrics(rows, None if scored is None else scored[1], step, round_index)

    def _metrics(self, rows: list[dict[str, Any]], proxy_rows: list[dict[str, float]] | None, step: int,
                 round_index: int) -> dict[str, Any]:
        texts = [r["response"] for r in rows]
        k1, k3 = [r["kl_k1"] for r in rows], [r["kl_k3"] for r in rows]
        out: dict[str, Any] = {"kind": "eval", "step": step, "round": round_index, "samples": len(rows)}
        out["proxy_mean"], out["proxy_se"] = mean_and_se([r["proxy"] for r in rows])
        out["kl_k1"], out["kl_k1_se"] = mean_and_se(k1)
        out["kl_k3"], out["kl_k3_se"] = mean_and_se(k3)
        out["d"] = math.sqrt(max(out["kl_k3"], 0.0))
        tokens = sum(r["tokens"] for r in rows)
        out["kl_k3_per_token"] = sum(k3) / tokens if tokens else float("nan")
        out["length_words"] = float(np.mean([stats.reply_length(t) for t in texts]))
        out["length_tokens"] = tokens / len(rows)
        out["distinct_2"] = stats.distinct_n(texts, 2)
        out["repeated_ngram_rate"] = float(np.mean([stats.repeated_ngram_rate(t, 3) for t in texts]))
        out["disagreement"] = float(np.mean([row["std"] for row in proxy_rows])) if proxy_rows else float("nan")
        if rows[0]["gold"] is not None:
            golds = [r["gold"] for r in rows]
            out["gold_mean"], out["gold_se"] = mean_and_se(golds)
            out["proxy_gold_spearman"] = stats.rank_correlation([r["proxy"] for r in rows], golds)
            ref = self.reference_rows
            if ref is not None and len(ref) == len(rows):
                out["win_rate"], out["win_rate_se"] = win_rate(golds, [r["gold"] for r in ref])
        return out

    def write_blind_file(self, final_rows_path: str | os.PathLike, seed: int) -> int:
        """``human_eval.jsonl`` (id, prompt, reply_a, reply_b: the final policy's and the reference's first reply to each
        evaluation prompt, in random order) and ``human_eval_key.jsonl`` (which is which, kept aside). Returns the count."""
        import json

        final = [json.loads(line) for line in Path(final_rows_path).read_text().splitlines()]
        reference = self.reference_rows or []
        rng = np.random.default_rng(seed)
        blind, key = [], []
        for i in range(0, min(len(final), len(reference)), self.samples):
            policy_first = rng.random() < 0.5
            a, b = (final[i], reference[i]) if policy_first else (reference[i], final[i])
            item = f"item-{i // self.samples}"
            blind.append({"id": item, "prompt": final[i]["prompt"], "reply_a": a["response"], "reply_b": b["response"]})
            key.append({"id": item, "policy": "a" if policy_first else "b", "step": final[i]["step"]})
        (self.output_dir / "human_eval.jsonl").write_text("".join(dumps(r) + "\n" for r in blind))
        (self.output_dir / "human_eval_key.jsonl").write_text("".join(dumps(r) + "\n" for r in key))
        return len(blind)

