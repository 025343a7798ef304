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
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataFormatError
from ..scoring.protocol import Scorer
from .curves import bon_curve, tilted_curve
from .fits import fit_gao

__all__ = ["quick_run", "read_pool", "run_overopt"]


def read_pool(data: str | os.PathLike) -> tuple[list[Any], list[list[str]], np.ndarray, list[str]]:
    """``(prompts, candidates, gold (P, K), sources)``; rows cut to the smallest candidate count K."""
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
        golds.append(values)
    k = min(len(r["candidates"]) for r in rows)
    if k < 2:
        raise DataFormatError(str(data), "over-optimization needs at least 2 candidates per prompt")
    return ([r["prompt"] for r in rows], [r["candidates"][:k] for r in rows], np.array([g[:k] for g in golds], dtype=float),
            [r["source"] for r in rows])


def _default_betas(proxy: np.ndarray, count: int = 12) -> list[float]:
    """A geometric grid from 10x to 0.01x the proxy's within-prompt spread (from near-reference to near-argmax)."""
    spread = float(np.mean(proxy.std(1))) or 1.0
    return [float(b) for b in np.geomspace(10 * spread, 0.01 * spread, count)]


def run_overopt(scorer: Scorer, data: str | os.PathLike, output_dir: str | os.PathLike, betas: Sequence[float] | None = None,
                bootstrap: int = 200, seed: int = 0, show_progress: bool = True) -> dict[str, Any]:
    """Best-of-n and KL-regularized curves of gold and proxy reward against d, Gao fits with bootstrap intervals;
    writes ``overopt.json``, ``report.md`` and (with matplotlib) ``overopt.png`` into ``output_dir``."""
    prompts, candidates, gold, _ = read_pool(data)
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
    fits = {}
    if len(ns) >= 3:
        fits["bon"] = asdict(fit_gao(bon["d"], [g - bon["gold"][0] for g in bon["gold"]], "bon", boot_bon))
    fits["rl"] = asdict(fit_gao(tilt["d"], [g - base for g in tilt["gold"]], "rl", boot_tilt))
    for name, fit in fits.items():  # a peak past the largest measured d is the form's extrapolation, not a measurement
        measured = max((bon if name == "bon" else tilt)["d"])
        fit["peak_within_data"] = fit["peak_d"] is not None and fit["peak_d"] <= measured
    result = {"prompts": p, "candidates_per_prompt": k, "reference_gold": base, "best_of_n": bon, "tilted": tilt,
              "fits": fits, "bootstrap": bootstrap, "scorer": scorer.describe()}
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    from ..jsonsafe import dumps

    (out / "overopt.json").write_text(dumps(result, indent=2))
    _plot(result, out / "overopt.png")
    _report(result, out / "report.md")
    return result


def _plot(result: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    bon, tilt = result["best_of_n"], result["tilted"]
    ax.plot(bon["d"], bon["gold"], "o-", label="gold, best-of-n")
    ax.plot(tilt["d"], tilt["gold"], "s-", label="gold, KL-regularized (tilted pool)")
    ax.plot(bon["d"], bon["gold_ceiling"], ":", label="gold ceiling (gold-optimal pick)")
    ax.set(xlabel="d = sqrt(KL) (nats^1/2)", ylabel="gold reward", title=f"Over-optimization on {result['prompts']} prompts")
    ax2 = ax.twinx()
    ax2.plot(bon["d"], bon["proxy"], "--", color="gray", label="proxy, best-of-n")
    ax2.set_ylabel("proxy reward")
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _report(result: dict[str, Any], path: Path) -> None:
    fmt = lambda v: "-" if v is None else f"{v:.4g}"  # noqa: E731
    lines = ["# Over-optimization", "", f"{result['prompts']} prompts x {result['candidates_per_prompt']} candidates; "
             f"reference gold {fmt(result['reference_gold'])}.", "", "| n | d | gold | proxy | gold ceiling |",
             "| --- | --- | --- | --- | --- |"]
    bon = result["best_of_n"]
    lines += [f"| {n} | {fmt(d)} | {fmt(g)} | {fmt(pr)} | {fmt(c)} |"
              for n, d, g, pr, c in zip(bon["n"], bon["d"], bon["gold"], bon["proxy"], bon["gold_ceiling"])]
    lines += ["", "| form | alpha (95% CI) | beta (95% CI) | R^2 | peak d | gold gain at peak | peak within the data |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, f in result["fits"].items():
        ci = lambda c: "" if c is None else f" ({fmt(c[0])} - {fmt(c[1])})"  # noqa: E731
        lines.append(f"| {name} | {fmt(f['alpha'])}{ci(f['alpha_ci'])} | {fmt(f['beta'])}{ci(f['beta_ci'])} | {fmt(f['r_squared'])} "
                     f"| {fmt(f['peak_d'])} | {fmt(f['peak_gain'])} | {'yes' if f['peak_within_data'] else 'no (extrapolated)'} |")
    lines += ["", "The KL-regularized curve is the optimum restricted to the pool (KL <= log N); a peak beyond the "
              "largest measured d is an extrapolation.", "", "![](overopt.png)"]
    path.write_text("\n".join(lines) + "\n")


def quick_run(generator: Any, proxy_backbone: str, output_dir: str | os.PathLike, sizes: Sequence[int] = (250, 1000),
              prompts: int = 24, n: int = 16, max_new_tokens: int = 48, seed: int = 0, max_length: int = 128,
              epochs: float = 3.0, bootstrap: int = 200, show_progress: bool = True) -> dict[str, Any]:
    """The whole small experiment in one folder, resumable step by step: a gold-labelled pool of ``n`` replies to
    ``prompts`` demo instructions from ``generator`` (``pool.jsonl``); one proxy per size in ``sizes``, trained from
    ``proxy_backbone`` on that many gold-labelled demo pairs (``proxy_<size>/``; a finished proxy is kept); the
    curves and fits per proxy (``overopt_<size>/``); and ``summary.json`` with each proxy's best-of-n peak and
    whether the larger proxy peaks higher and later (Gao et al.'s finding)."""
    import json as _json

    from ..data.demo import demo_pairs
    from ..scoring.config import ScorerConfig, build_scorer
    from ..training.loop import train
    from .gold import demo_gold_scorer
    from .pool import sample_pool

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    questions = list(dict.fromkeys(p.prompt[0].content for p in demo_pairs("test", 8 * prompts, seed=seed)))[:prompts]
    sample_pool(generator, questions, n, out / "pool.jsonl", demo_gold_scorer(), max_new_tokens, seed, show_progress)
    peaks: dict[str, Any] = {}
    for size in sizes:
        folder = out / f"proxy_{size}"
        if not (folder / "trainer_state.json").is_file():  # a finished proxy is reused; an unfinished one resumes
            pairs = out / f"pairs_{size}.jsonl"
            pairs.write_text("".join(_json.dumps({"prompt": p.prompt[0].content, "chosen": p.chosen, "rejected": p.rejected}) + "\n"
                                     for p in demo_pairs("train", size, seed=seed + 7)))
            train(model=proxy_backbone, data=str(pairs), output_dir=str(folder), max_length=max_length, batch_size=16,
                  learning_rate=5e-5, num_epochs=epochs, warmup_ratio=0.1, eval_fraction=0.1, seed=seed, show_progress=show_progress,
                  resume=(folder / "run_config.json").is_file())
        result = run_overopt(build_scorer(ScorerConfig(model=str(folder))), out / "pool.jsonl", out / f"overopt_{size}",
                             bootstrap=bootstrap, seed=seed, show_progress=show_progress)
        gold = result["best_of_n"]["gold"]
        best = int(np.argmax(gold))
        peaks[str(size)] = {"peak_n": result["best_of_n"]["n"][best], "peak_d": result["best_of_n"]["d"][best],
                            "peak_gold": gold[best], "gold_at_max_n": gold[-1], "reference_gold": result["reference_gold"],
                            "fits": result["fits"]}
    ordered = [peaks[str(s)] for s in sorted(sizes)]
    summary = {"sizes": sorted(sizes), "peaks": peaks,
               "larger_proxy_peaks_higher": all(a["peak_gold"] <= b["peak_gold"] for a, b in zip(ordered, ordered[1:])),
               "larger_proxy_peaks_later": all(a["peak_d"] <= b["peak_d"] for a, b in zip(ordered, ordered[1:]))}
    from ..jsonsafe import dumps

    (out / "summary.json").write_text(dumps(summary, indent=2))
    return summary
