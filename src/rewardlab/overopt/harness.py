"""Measure over-optimization on a candidate pool: gold labels per candidate, any proxy :class:`Scorer`.

The pool is a file of prompts with N candidates each, sampled from the reference policy, with a gold reward per
candidate: ``{prompt, candidates, gold: [numbers]}`` or ``correct: [booleans]`` records, or GSM8K example model
solutions (``is_correct`` is the gold). The proxy scores every candidate once; best-of-n for n = 1..N and the tilted
optimum for a grid of beta give gold and proxy reward against ``d = sqrt(KL)``; both Gao forms are fitted to the gold
gain, with intervals from resampling prompts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataFormatError
from ..jsonsafe import dumps
from ..plotting import pyplot, save_figure
from ..scoring.protocol import Scorer
from .curves import bon_curve, tilted_curve
from .fits import fit_gao

__all__ = ["Pool", "overoptimization_gap", "read_pool", "run_overopt"]


@dataclass(frozen=True)
class Pool:
    """A gold-labelled candidate pool: P prompts with K candidates each (rows cut to the smallest K).

    ``gold`` is ``(P, K)``; ``token_logprobs[i][j]`` the reference policy's per-token log-probs of candidate j of
    prompt i when the pool carries them (``rewardlab overopt-pool`` writes them), else None."""

    prompts: list[Any]
    candidates: list[list[str]]
    gold: np.ndarray
    sources: list[str]
    token_logprobs: list[list[list[float] | None]] | None = None

    def logprob_summary(self) -> dict[str, float] | None:
        """Mean log-prob per token and per reply of the candidates under the reference policy (None without them)."""
        if self.token_logprobs is None:
            return None
        replies = [lp for row in self.token_logprobs for lp in row if lp]
        if not replies:
            return None
        tokens = sum(len(lp) for lp in replies)
        return {"mean_token_logprob": float(sum(sum(lp) for lp in replies) / tokens),
                "mean_reply_logprob": float(np.mean([sum(lp) for lp in replies])), "mean_reply_tokens": tokens / len(replies)}


def read_pool(data: str | os.PathLike) -> Pool:
    """Read a pool file: ``{prompt, candidates, gold|correct[, token_logprobs]}`` rows or GSM8K example solutions."""
    from ..search.best_of_n import read_candidates

    rows = read_candidates(data)
    golds = []
    for row in rows:
        if isinstance(row.get("gold"), list):
            values = row["gold"]
        elif row.get("correct"):
            values = [float(bool(c)) for c in row["correct"]]
        else:
            raise DataFormatError(row["source"], "expected a gold reward per candidate ('gold' numbers or 'correct' booleans)", "gold")
        if len(values) != len(row["candidates"]) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and
                                                              np.isfinite(v) for v in values):
            raise DataFormatError(row["source"], "expected one finite number per candidate", "gold")
        logps = row.get("token_logprobs")
        if logps is not None and (not isinstance(logps, list) or len(logps) != len(row["candidates"])):
            raise DataFormatError(row["source"], "expected one list of token log-probs (or null) per candidate", "token_logprobs")
        golds.append(values)
    k = min(len(r["candidates"]) for r in rows)
    if k < 2:
        raise DataFormatError(str(data), "over-optimization needs at least 2 candidates per prompt")
    logprobs = [r["token_logprobs"][:k] for r in rows] if all(r.get("token_logprobs") is not None for r in rows) else None
    return Pool([r["prompt"] for r in rows], [r["candidates"][:k] for r in rows], np.array([g[:k] for g in golds], dtype=float),
                [r["source"] for r in rows], logprobs)


def overoptimization_gap(gold_curve: Sequence[float], proxy_curve: Sequence[float], gold: np.ndarray,
                         proxy: np.ndarray) -> list[float]:
    """The over-optimization gap along a curve: proxy minus gold, each standardized by its mean and standard deviation
    over the reference policy's samples (the whole pool), so both start at 0 at d = 0 and are in the same units:
    ``gap = (R_proxy - mu_proxy) / sigma_proxy - (R_gold - mu_gold) / sigma_gold``. A gap that grows with d is the
    proxy's gain that the gold does not share.

    >>> pool = np.array([[0.0, 1.0]])
    >>> overoptimization_gap([0.5, 1.0], [0.5, 1.0], pool, pool)
    [0.0, 0.0]
    """
    def z(values: Sequence[float], ref: np.ndarray) -> np.ndarray:
        return (np.asarray(values, dtype=float) - ref.mean()) / (ref.std() or 1.0)

    return [float(v) for v in z(proxy_curve, proxy) - z(gold_curve, gold)]


def _default_betas(proxy: np.ndarray, count: int = 12) -> list[float]:
    """A geometric grid from 10x to 0.01x the proxy's within-prompt spread (from near-reference to near-argmax)."""
    spread = float(np.mean(proxy.std(1))) or 1.0
    return [float(b) for b in np.geomspace(10 * spread, 0.01 * spread, count)]


def run_overopt(scorer: Scorer, data: str | os.PathLike, output_dir: str | os.PathLike, betas: Sequence[float] | None = None,
                bootstrap: int = 200, seed: int = 0, show_progress: bool = True) -> dict[str, Any]:
    """Best-of-n and KL-regularized curves of gold and proxy reward against d, Gao fits with bootstrap intervals;
    writes ``overopt.json``, ``report.md`` and (with matplotlib) ``overopt.png`` into ``output_dir``."""
    pool = read_pool(data)
    prompts, candidates, gold = pool.prompts, pool.candidates, pool.gold
    p, k = gold.shape
    flat = scorer.score([q for q, c in zip(prompts, candidates) for _ in c], [x for c in candidates for x in c])
    proxy = np.asarray(flat, dtype=float).reshape(p, k)
    ns = list(range(1, k + 1))
    betas = list(betas) if betas else _default_betas(proxy)
    bon, tilt = bon_curve(gold, proxy, ns), tilted_curve(gold, proxy, betas)
    rng = np.random.default_rng(seed)
    boot_bon, boot_tilt = [], []
    for _ in range(bootstrap):  # resample prompts: the curves' uncertainty comes from which prompts were drawn
        idx = rng.integers(0, p, p)
        b, t = bon_curve(gold[idx], proxy[idx], ns), tilted_curve(gold[idx], proxy[idx], betas)
        boot_bon.append([g - b["gold"][0] for g in b["gold"]])
        boot_tilt.append([g - float(gold[idx].mean()) for g in t["gold"]])
    base = float(gold.mean())  # the reference policy's gold: n = 1, beta -> infinity
    for curve in (bon, tilt):
        curve["gap"] = overoptimization_gap(curve["gold"], curve["proxy"], gold, proxy)
    fits = {}
    if len(ns) >= 3:
        fits["bon"] = asdict(fit_gao(bon["d"], [g - bon["gold"][0] for g in bon["gold"]], "bon", boot_bon))
    fits["rl"] = asdict(fit_gao(tilt["d"], [g - base for g in tilt["gold"]], "rl", boot_tilt))
    for name, fit in fits.items():  # a peak past the largest measured d is the form's extrapolation, not a measurement
        measured = max((bon if name == "bon" else tilt)["d"])
        fit["peak_within_data"] = fit["peak_d"] is not None and fit["peak_d"] <= measured
    result = {"prompts": p, "candidates_per_prompt": k, "reference_gold": base, "reference_logprobs": pool.logprob_summary(),
              "best_of_n": bon, "tilted": tilt,
              "fits": fits, "bootstrap": bootstrap, "scorer": scorer.describe()}
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "overopt.json").write_text(dumps(result, indent=2))
    _plot(result, out / "overopt.png")
    _report(result, out / "report.md")
    return result


def _plot(result: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, (ax, gap) = plt.subplots(1, 2, figsize=(11, 4))
    bon, tilt = result["best_of_n"], result["tilted"]
    ax.plot(bon["d"], bon["gold"], "o-", label="gold, best-of-n")
    ax.plot(tilt["d"], tilt["gold"], "s-", label="gold, KL-regularized (tilted pool)")
    ax.plot(bon["d"], bon["gold_ceiling"], ":", label="gold ceiling (gold-optimal pick)")
    ax.set(xlabel="d = sqrt(KL) (nats^1/2)", ylabel="gold reward", title=f"Over-optimization on {result['prompts']} prompts")
    ax2 = ax.twinx()
    ax2.plot(bon["d"], bon["proxy"], "--", color="gray", label="proxy, best-of-n")
    ax2.set_ylabel("proxy reward")
    ax.legend(loc="lower right", fontsize=7)
    gap.plot(bon["d"], bon["gap"], "o-", label="best-of-n")
    gap.plot(tilt["d"], tilt["gap"], "s-", label="KL-regularized")
    gap.axhline(0, color="k", lw=1)
    gap.set(xlabel="d = sqrt(KL)", ylabel="standardized proxy - standardized gold", title="Over-optimization gap")
    gap.legend(fontsize=7)
    save_figure(fig, path)


def _report(result: dict[str, Any], path: Path) -> None:
    fmt = lambda v: "-" if v is None else f"{v:.4g}"  # noqa: E731
    lines = ["# Over-optimization", "", f"{result['prompts']} prompts x {result['candidates_per_prompt']} candidates; "
             f"reference gold {fmt(result['reference_gold'])}."
             + (f" Reference log-prob: {fmt(result['reference_logprobs']['mean_token_logprob'])} per token, "
                f"{fmt(result['reference_logprobs']['mean_reply_tokens'])} tokens per reply." if result.get("reference_logprobs") else ""), "", "| n | d | gold | proxy | gold ceiling | gap (z proxy - z gold) |",
             "| --- | --- | --- | --- | --- | --- |"]
    bon = result["best_of_n"]
    lines += [f"| {n} | {fmt(d)} | {fmt(g)} | {fmt(pr)} | {fmt(c)} | {fmt(gp)} |"
              for n, d, g, pr, c, gp in zip(bon["n"], bon["d"], bon["gold"], bon["proxy"], bon["gold_ceiling"], bon["gap"])]
    lines += ["", "| form | alpha (95% CI) | beta (95% CI) | R^2 | peak d | gold gain at peak | peak within the data |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, f in result["fits"].items():
        ci = lambda c: "" if c is None else f" ({fmt(c[0])} - {fmt(c[1])})"  # noqa: E731
        lines.append(f"| {name} | {fmt(f['alpha'])}{ci(f['alpha_ci'])} | {fmt(f['beta'])}{ci(f['beta_ci'])} | {fmt(f['r_squared'])} "
                     f"| {fmt(f['peak_d'])} | {fmt(f['peak_gain'])} | {'yes' if f['peak_within_data'] else 'no (extrapolated)'} |")
    lines += ["", "The KL-regularized curve is the optimum restricted to the pool (KL <= log N); a peak beyond the "
              "largest measured d is an extrapolation.", "", "![](overopt.png)"]
    path.write_text("\n".join(lines) + "\n")
