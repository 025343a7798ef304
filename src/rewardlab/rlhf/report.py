"""What an RLHF run shows: over-optimization on the RL axis (gold gain against ``d = sqrt(KL)``, Gao et al.'s RL form)
beside best-of-n for the same proxy on a pool from the initial policy, alarms against the gold's peak, rounds, cost,
and people's ratings of the blind sample file once imported."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..jsonsafe import dumps
from ..plotting import pyplot, save_figure
from .config import RLHFConfig

__all__ = ["alarm_lead_times", "best_of_n_pool", "fit_trajectory", "import_human_ratings", "write_run_report"]


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def best_of_n_pool(config: RLHFConfig, out: Path, ctx: dict[str, Any]) -> dict[str, Any]:
    """``bon_samples`` replies per evaluation prompt from the initial policy, scored by the initial proxy and the gold;
    the best-of-n curve (``overopt.curves.bon_curve``) and its Gao fit go to ``bon.json``."""
    from ..labeling.sampling import sample_replies
    from ..overopt.curves import bon_curve

    replies = sample_replies(ctx["reference"], ctx["tokenizer"], ctx["eval_prompts"], config.bon_samples,
                             config.max_completion_length, seed=config.seed + 99)
    prompts = [ctx["eval_prompts"][r.prompt_index] for r in replies]
    texts = [r.text for r in replies]
    shape = (len(ctx["eval_prompts"]), config.bon_samples)
    proxy = np.asarray(ctx["proxy"].score(prompts, texts), float).reshape(shape)
    gold = np.asarray(ctx["gold"].score(prompts, texts), float).reshape(shape)
    ns = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= config.bon_samples]
    curve = bon_curve(gold, proxy, ns)
    result: dict[str, Any] = {"curve": curve, "gain": [g - curve["gold"][0] for g in curve["gold"]], "prompts": shape[0]}
    if len(ns) > 3:  # the fit needs 3 points past n = 1
        from ..overopt.fits import fit_gao

        result["fit"] = fit_gao(curve["d"][1:], result["gain"][1:], "bon").__dict__
    (out / "bon.json").write_text(dumps(result, indent=2))
    return result


def fit_trajectory(out: Path, round_index: int | None = None, resamples: int = 200, seed: int = 0) -> dict[str, Any] | None:
    """Gao's RL form fitted to the evaluations' gold gain over step 0 (the initial policy) against ``d = sqrt(k3)``
    (KL to the initial policy), over one round's evaluations (``round_index``: each round optimizes its own proxy) or
    all of them, with percentile intervals from resampling the evaluation replies (the same resampled indices at
    every step). None when fewer than 3 evaluations past step 0 have gold and a positive KL."""
    from ..overopt.fits import fit_gao

    files = sorted(out.glob("eval/step_*.jsonl"), key=lambda p: int(p.stem.split("_")[1]))
    tables = [_rows(f) for f in files]
    if not tables or tables[0][0].get("gold") is None:
        return None
    base = np.array([r["gold"] for r in tables[0]], float)
    points = []
    for rows in tables[1:]:
        if round_index is not None and rows[0]["round"] != round_index:
            continue
        k3 = float(np.mean([r["kl_k3"] for r in rows]))
        if k3 > 0 and len(rows) == len(base):
            points.append((math.sqrt(k3), np.array([r["gold"] for r in rows], float)))
    if len(points) < 3:
        return None
    d = [p[0] for p in points]
    gain = [float(g.mean() - base.mean()) for _, g in points]
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(base), len(base)) for _ in range(resamples)]
    boot = [[float(g[idx].mean() - base[idx].mean()) for _, g in points] for idx in draws]
    fit = fit_gao(d, gain, "rl", resamples=boot)
    return {"d": d, "gain": gain, "fit": fit.__dict__}


def alarm_lead_times(evaluations: list[dict[str, Any]], alarms: list[dict[str, Any]]) -> dict[str, Any]:
    """The step of the gold's peak (highest evaluation gold mean) and, per rule, its first alarm's step and lead
    (peak step minus alarm step: positive means the alarm came before the peak).

    >>> alarm_lead_times([{"step": 0, "gold_mean": 0.5}, {"step": 10, "gold_mean": 0.8}, {"step": 20, "gold_mean": 0.4}],
    ...                  [{"rule": "proxy_gold_gap", "step": 16}])
    {'gold_peak_step': 10, 'rules': {'proxy_gold_gap': {'first_alarm_step': 16, 'lead_steps': -6}}}
    """
    golds = [e for e in evaluations if e.get("gold_mean") is not None]
    peak = max(golds, key=lambda e: e["gold_mean"])["step"] if golds else None
    rules: dict[str, Any] = {}
    for alarm in alarms:
        if alarm["rule"] not in rules:
            rules[alarm["rule"]] = {"first_alarm_step": alarm["step"],
                                    "lead_steps": None if peak is None else peak - alarm["step"]}
    return {"gold_peak_step": peak, "rules": rules}


def import_human_ratings(run_dir: str | os.PathLike, ratings: str | os.PathLike) -> dict[str, Any]:
    """Read people's ratings of ``human_eval.jsonl`` (``id``, ``preferred``: "a", "b" or "tie") and score them with the
    key kept aside: the final policy's win rate against the reference, ties half, with its SE; the report is rewritten."""
    from ..errors import DataFormatError
    from .evaluation import mean_and_se

    out = Path(run_dir)
    key = {row["id"]: row["policy"] for row in _rows(out / "human_eval_key.jsonl")}
    wins = []
    for lineno, line in enumerate(Path(ratings).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        where = f"{ratings}:{lineno}"
        if row.get("id") not in key:
            raise DataFormatError(where, f"id {row.get('id')!r} is not an item of {out / 'human_eval.jsonl'}", "id")
        if row.get("preferred") not in ("a", "b", "tie"):
            raise DataFormatError(where, f"expected 'a', 'b' or 'tie', got {row.get('preferred')!r}", "preferred")
        policy_side = key[row["id"]]
        wins.append(1.0 if row["preferred"] == policy_side else 0.5 if row["preferred"] == "tie" else 0.0)
    if not wins:
        raise DataFormatError(str(ratings), "no rating in the file")
    rate, se = mean_and_se(wins)  # a win 1, a tie 0.5, a loss 0
    result = {"ratings": len(wins), "win_rate": rate, "win_rate_se": se}
    (out / "human_eval_result.json").write_text(dumps(result, indent=2))
    config = RLHFConfig.from_options(**json.loads((out / "config.json").read_text()))
    write_run_report(config, out)
    return result


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _plot(out: Path, evaluations: list[dict[str, Any]], train: list[dict[str, Any]], alarms: list[dict[str, Any]],
          bon: dict[str, Any] | None) -> bool:
    plt = pyplot()
    if plt is None or not evaluations:
        return False
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    ax = axes[0][0]
    base_gold = evaluations[0].get("gold_mean")
    for r in sorted({e["round"] for e in evaluations} - {0}):
        rows = [e for e in evaluations if e["round"] == r or (r == 1 and e["round"] == 0)]
        ax.plot([e["d"] for e in rows], [e["proxy_mean"] for e in rows], "o--", label=f"proxy, round {r}", alpha=0.7)
        if base_gold is not None:
            ax.plot([e["d"] for e in rows], [e["gold_mean"] for e in rows], "s-", label=f"gold, round {r}")
    if bon and base_gold is not None:
        ax.plot(bon["curve"]["d"], [base_gold + g for g in bon["gain"]], "k:", label="gold, best-of-n (initial policy)")
    ax.set_xlabel("d = sqrt(KL) (nats^0.5)")
    ax.set_title("reward against d")
    ax.legend(fontsize=7)
    ax = axes[0][1]
    ax.plot([e["step"] for e in evaluations], [e["kl_k3"] for e in evaluations], "o-", label="KL k3 per sequence (eval)")
    coef = [t for t in train if t.get("kl_coef") is not None]
    if coef:
        twin = ax.twinx()
        twin.plot([t["step"] for t in coef], [t["kl_coef"] for t in coef], color="grey", label="KL coefficient")
        twin.set_ylabel("coefficient")
    ax.set_xlabel("step")
    ax.set_title("KL and its coefficient")
    ax = axes[1][0]
    ax.plot([e["step"] for e in evaluations], [e["length_words"] for e in evaluations], "o-")
    ax.set_xlabel("step")
    ax.set_title("reply length (words, eval)")
    ax = axes[1][1]
    ax.plot([e["step"] for e in evaluations], [e["distinct_2"] for e in evaluations], "o-", label="distinct-2")
    ax.plot([e["step"] for e in evaluations], [e["repeated_ngram_rate"] for e in evaluations], "s-", label="repeated 3-gram rate")
    ax.set_xlabel("step")
    ax.set_title("diversity and repetition (eval)")
    ax.legend(fontsize=7)
    for axis in (axes[0][1], axes[1][0], axes[1][1]):
        for alarm in alarms:
            axis.axvline(alarm["step"], color="red", alpha=0.3, linestyle="--")
    save_figure(fig, out / "rlhf.png")
    return True


def write_run_report(config: RLHFConfig, out: Path) -> None:
    """``report.md`` (and ``rlhf.png``) from the run folder's files."""
    metrics = _rows(out / "metrics.jsonl")
    evaluations = [m for m in metrics if m.get("kind") == "eval"]
    train = [m for m in metrics if m.get("kind") == "train"]
    alarms = _rows(out / "alarms.jsonl")
    state = json.loads((out / "state.json").read_text())
    bon = json.loads((out / "bon.json").read_text()) if (out / "bon.json").exists() else None
    trajectory = fit_trajectory(out)
    per_round = {r["round"]: fit_trajectory(out, r["round"]) for r in state["rounds"]} if len(state["rounds"]) > 1 else {}
    plotted = _plot(out, evaluations, train, alarms, bon)
    lines = [f"# RLHF run: {out}", "", f"Stopped: {state.get('stop_reason')}.", "",
             "## Evaluations", "", "| step | round | proxy | gold (SE) | KL k1 | KL k3 | d | length | distinct-2 | "
             "repetition | proxy-gold rho | win rate vs ref (SE) |", "|" + " --- |" * 12]
    for e in evaluations:
        lines.append(f"| {e['step']} | {e['round']} | {_fmt(e['proxy_mean'])} | {_fmt(e.get('gold_mean'))} ({_fmt(e.get('gold_se'), 2)}) "
                     f"| {_fmt(e['kl_k1'])} | {_fmt(e['kl_k3'])} | {_fmt(e['d'])} | {_fmt(e['length_words'])} | "
                     f"{_fmt(e['distinct_2'])} | {_fmt(e['repeated_ngram_rate'])} | {_fmt(e.get('proxy_gold_spearman'))} | "
                     f"{_fmt(e.get('win_rate'))} ({_fmt(e.get('win_rate_se'), 2)}) |")
    lines += _rounds_section(state) + _alarm_section(config, evaluations, alarms) + _gao_section(trajectory, bon, per_round)
    lines += _cost_section(state, train)
    human = out / "human_eval_result.json"
    if human.exists():
        h = json.loads(human.read_text())
        lines += ["", "## People's ratings", "", f"{h['ratings']} blind pairs rated: final policy's win rate against the "
                  f"reference {h['win_rate']:.3f} (SE {h['win_rate_se']:.3f}), ties half."]
    else:
        lines += ["", "## People's ratings", "", "`human_eval.jsonl` holds blind pairs (final policy vs reference, random order); "
                  "rate them (id, preferred: a|b|tie) and run `rewardlab rlhf-ratings RUN_DIR RATINGS.jsonl`."]
    if plotted:
        lines += ["", "![the run](rlhf.png)"]
    lines += ["", "Settings: `" + dumps(config.to_dict()) + "`", ""]
    (out / "report.md").write_text("\n".join(lines))


def _rounds_section(state: dict[str, Any]) -> list[str]:
    lines = ["", "## Rounds", "", "| round | steps | phase s | eval s | alarms | stopped by | RM update | RM accuracy before -> after |",
             "|" + " --- |" * 8]
    for r in state["rounds"]:
        rm = r.get("reward_model") or {}
        update = (f"{rm.get('new_pairs')} new + {rm.get('old_pairs')} old pairs" if rm.get("updated")
                  else (rm.get("why") or "-"))
        acc = f"{_fmt(rm.get('accuracy_before'))} -> {_fmt(rm.get('accuracy_after'))} on {rm.get('heldout_pairs')}" if rm.get("updated") else "-"
        lines.append(f"| {r['round']} | {r['steps']} | {r['phase_seconds']:.0f} | {r['eval_seconds']:.0f} | {len(r['alarms'])} | "
                     f"{r['stopped_by'] or '-'} | {update} | {acc} |")
    return lines


def _alarm_section(config: RLHFConfig, evaluations: list[dict[str, Any]], alarms: list[dict[str, Any]]) -> list[str]:
    """Per round (each optimizes its own proxy): the step of the evaluation gold's peak (the round's evaluations and
    the one it starts from) and each rule's first alarm in that round, with its lead."""
    lines = ["", "## Alarms against the gold's peak", "", "| round | gold peak step | rule | first alarm step | lead (steps "
             "before the peak; negative = after) |", "| --- | --- | --- | --- | --- |"]
    for r in sorted({e["round"] for e in evaluations} - {0}):
        start, end = (r - 1) * config.steps_per_round, r * config.steps_per_round
        in_round = [e for e in evaluations if start <= e["step"] <= end]
        lead = alarm_lead_times(in_round, [a for a in alarms if start < a["step"] <= end])
        if not lead["rules"]:
            lines.append(f"| {r} | {lead['gold_peak_step']} | no alarm | | |")
        lines += [f"| {r} | {lead['gold_peak_step']} | {rule} | {v['first_alarm_step']} | {_fmt(v['lead_steps'])} |"
                  for rule, v in lead["rules"].items()]
    return lines


def _gao_section(trajectory: dict[str, Any] | None, bon: dict[str, Any] | None,
                 per_round: dict[int, dict[str, Any] | None] | None = None) -> list[str]:
    lines = ["", "## Over-optimization: RL against best-of-n", "",
             "| form | points | alpha (95% CI) | beta (95% CI) | R^2 | predicted peak d* |", "| --- | --- | --- | --- | --- | --- |"]
    fits = [("RL, d (alpha - beta log d), all rounds", trajectory)]
    fits += [(f"RL, round {r} (its own proxy)", t) for r, t in (per_round or {}).items()]
    for name, t in fits:
        if t is None:
            lines.append(f"| {name} | fewer than 3 evaluations with gold and KL > 0 | | | | |")
            continue
        f = t["fit"]
        lines.append(f"| {name} | {len(t['d'])} | {_fmt(f['alpha'])} {_ci(f['alpha_ci'])} | "
                     f"{_fmt(f['beta'])} {_ci(f['beta_ci'])} | {_fmt(f['r_squared'])} | {_fmt(f['peak_d'])} |")
    fit = bon.get("fit") if bon else None
    if bon and fit:
        lines.append(f"| best-of-n, d (alpha - beta d) | {len(bon['curve']['n']) - 1} | {_fmt(fit['alpha'])} | {_fmt(fit['beta'])} | "
                     f"{_fmt(fit['r_squared'])} | {_fmt(fit['peak_d'])} |")
    if bon:
        lines += ["", "Best-of-n on the initial policy's pool: " + ", ".join(
            f"n={n}: d={d:.2f}, gold gain {g:+.3f}" for n, d, g in zip(bon["curve"]["n"], bon["curve"]["d"], bon["gain"]))]
    return lines


def _ci(interval: Any) -> str:
    return f"[{interval[0]:.3g}, {interval[1]:.3g}]" if interval else ""


def _cost_section(state: dict[str, Any], train: list[dict[str, Any]]) -> list[str]:
    phase = sum(r["phase_seconds"] for r in state["rounds"])
    evals = sum(r["eval_seconds"] for r in state["rounds"])
    steps = max((t["step"] for t in train), default=0)
    return ["", "## Cost", "", f"{steps} GRPO steps in {phase:.0f} s of RL phases ({steps / phase if phase else float('nan'):.3f} steps/s), "
            f"of which {evals:.0f} s ({100 * evals / phase if phase else float('nan'):.1f}%) in rewardlab's evaluations."]
