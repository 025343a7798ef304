"""Write evaluation results: a JSON file with the exact settings, and a Markdown report with plots.

Plots need matplotlib (``pip install 'rewardlab[plots]'``); without it the report says which
plots were skipped and the JSON is complete anyway.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..jsonsafe import dumps
from ..plotting import pyplot, save_figure
from .calibration import reliability_curve

__all__ = ["write_report"]


def _fmt(x: Any) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}" if isinstance(x, float) else str(x)


def _save(fig: Any, out: Path, name: str) -> str:
    save_figure(fig, out / name)
    return name


def _plots(results: dict[str, Any], out: Path) -> list[str]:
    plt = pyplot()
    if plt is None:
        return []
    made = []
    calibration = results.get("benchmark", {}).get("calibration")
    if calibration:
        margins = np.array(calibration["margins"])
        fig, ax = plt.subplots(figsize=(4, 4))
        for t, label in ((1.0, "raw"), (calibration["temperature"], f"T={calibration['temperature']:.2f}")):
            p, f, _ = reliability_curve(margins, temperature=t)
            ax.plot(p, f, marker="o", label=label)
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ax.set(xlabel="predicted P(chosen > rejected)", ylabel="observed frequency", title="Reliability diagram")
        ax.legend()
        made.append(_save(fig, out, "reliability.png"))
    length = results.get("length_bias")
    if length:
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.scatter(length["scatter"]["length"], length["scatter"]["reward"], s=6, alpha=0.5)
        ax.set(xlabel="response length (words)", ylabel="reward", title=f"Spearman {length['spearman']:.2f}")
        made.append(_save(fig, out, "length_scatter.png"))
    probes = {k: v for k, v in results.get("probes", {}).items() if "fraction_perturbed_higher" in v}
    if probes:
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.bar(list(probes), [v["fraction_perturbed_higher"] for v in probes.values()])
        ax.axhline(0.5, color="k", ls="--", lw=1)
        ax.set(ylabel="perturbed reply wins", ylim=(0, 1), title="Perturbation probes")
        made.append(_save(fig, out, "probes.png"))
    ratings = results.get("ratings")
    if ratings:
        rows = ratings["bradley_terry"]
        fig, ax = plt.subplots(figsize=(5, 0.4 * len(rows) + 1))
        y = np.arange(len(rows))[::-1]
        r = np.array([row["rating"] for row in rows])
        ax.errorbar(r, y, xerr=[r - [row["lower"] for row in rows], np.array([row["upper"] for row in rows]) - r], fmt="o")
        ax.set_yticks(y, [row["name"] for row in rows])
        ax.set(xlabel="Bradley-Terry rating (Elo scale)", title="Ratings with bootstrap intervals")
        made.append(_save(fig, out, "ratings.png"))
    return made


def _benchmark_section(results: dict[str, Any]) -> list[str]:
    """Overall and per-subset accuracy, sections, calibration, length-stratified accuracy."""
    lines: list[str] = []
    bench = results.get("benchmark")
    if bench:
        lines += [f"Overall: **{_fmt(bench['overall'])}** ({bench['overall_rule']}), {bench['n_items']} items, "
                  f"tie policy `{bench['settings']['tie_policy']}`, weighting `{bench['settings']['weighting']}`.", "",
                  "| subset | n | accuracy | 95% CI | ties | best of |", "| --- | --- | --- | --- | --- | --- |"]
        for name, s in bench["subsets"].items():
            lines.append(f"| {name} | {s['n']} | {_fmt(s['accuracy'])} | {_fmt(s['ci_low'])} - {_fmt(s['ci_high'])} | {s['ties']} | {s['best_of_k']} |")
        if bench["sections"]:
            lines += ["", "| section | accuracy | subsets |", "| --- | --- | --- |"]
            lines += [f"| {k} | {_fmt(v['accuracy'])} | {', '.join(v['subsets'])} |" for k, v in bench["sections"].items()]
        cal = bench.get("calibration")
        if cal:
            head = (f"Calibration (held-out {cal['held_out_pairs']} pairs): ECE {_fmt(cal['ece_equal_width'])} "
                    f"(equal mass {_fmt(cal['ece_equal_mass'])}), Brier {_fmt(cal['brier'])}; ")
            if cal.get("temperature_at_bound"):
                lines += ["", head + f"temperature scaling on {cal['fit_pairs']} pairs found no finite temperature: "
                          + cal["temperature_note"] + "."]
            else:
                lines += ["", head + f"temperature {_fmt(cal['temperature'])} fitted on {cal['fit_pairs']} pairs gives ECE "
                          f"{_fmt(cal['ece_equal_width_after_temperature'])}, Brier {_fmt(cal['brier_after_temperature'])}."]
        length = bench.get("length")
        if length:
            lines += ["", "Length-stratified accuracy (characters; chosen longer / shorter than every rejected reply; "
                      "length-controlled = their mean, 0.5 for a scorer that only prefers length):", "",
                      "| subset | chosen longer (n) | chosen shorter (n) | length-controlled (95% CI) |",
                      "| --- | --- | --- | --- |"]
            rows = [("all", length)] + [(name, sub["length"]) for name, sub in bench["subsets"].items() if "length" in sub]
            for name, ls in rows:
                lines.append(f"| {name} | {_fmt(ls['chosen_longer']['accuracy'])} ({ls['chosen_longer']['n']}) | "
                             f"{_fmt(ls['chosen_shorter']['accuracy'])} ({ls['chosen_shorter']['n']}) | "
                             f"{_fmt(ls['length_controlled_accuracy'])} ({_fmt(ls['length_controlled_ci_low'])} - "
                             f"{_fmt(ls['length_controlled_ci_high'])}) |")
    return lines


def _skipped_section(results: dict[str, Any]) -> list[str]:
    """Items left out for being too long."""
    lines: list[str] = []
    skipped = (results.get("benchmark") or results).get("skipped_too_long")
    if skipped and skipped.get("count"):
        per_subset = ", ".join(f"{name}: {entry['count']}" for name, entry in skipped["by_subset"].items())
        lines += ["", f"Left out: {skipped['count']} item(s) with a reply longer than max_length={skipped.get('max_length')} "
                  f"({per_subset}; the items are listed in results.json)."]
    return lines


def _length_bias_section(results: dict[str, Any]) -> list[str]:
    """The length-bias diagnostic and its rule."""
    lines: list[str] = []
    length = results.get("length_bias")
    if length:
        from .diagnostics import LENGTH_GAP_FLAG, LENGTH_SPEARMAN_FLAG

        verdict = (f"**Flagged: the model prefers {length.get('direction', 'longer')} replies.**" if length["flagged"] else
                   "Not flagged.")
        lines += ["", "## Length bias" + (" (FLAGGED)" if length["flagged"] else ""), "",
                  f"{verdict} Rule: flagged when |Spearman| of reward vs length or of margin vs length difference >= "
                  f"{LENGTH_SPEARMAN_FLAG}, or the accuracy gap between chosen-longer and chosen-shorter pairs >= {LENGTH_GAP_FLAG}.", "",
                  f"Spearman {_fmt(length['spearman'])}, Kendall {_fmt(length['kendall'])}; margin vs length difference "
                  f"{_fmt(length.get('margin_length_spearman'))}; accuracy {_fmt(length['accuracy'])} "
                  f"(chosen longer {_fmt(length['accuracy_chosen_longer'])}, shorter {_fmt(length['accuracy_chosen_shorter'])}); "
                  f"always-longer baseline {_fmt(length['always_longer_baseline'])}, always-shorter "
                  f"{_fmt(length.get('always_shorter_baseline'))}; length-matched accuracy "
                  f"{_fmt(length['accuracy_length_matched'])} on {length['pairs_length_matched']} pairs; "
                  f"length-regressed accuracy {_fmt(length['accuracy_length_regressed'])}."]
    return lines


def _probes_section(results: dict[str, Any]) -> list[str]:
    """Pathology probes."""
    lines: list[str] = []
    probes = results.get("probes")
    if probes:
        lines += ["", "## Probes", "", "| probe | mean change | perturbed wins | flagged |", "| --- | --- | --- | --- |"]
        for name, p in probes.items():
            if "mean_change" in p:
                lines.append(f"| {name} | {_fmt(p['mean_change'])} | {_fmt(p['fraction_perturbed_higher'])} | {'yes' if p['flagged'] else 'no'} |")
    return lines


def _shift_section(results: dict[str, Any]) -> list[str]:
    """Distribution shift."""
    lines: list[str] = []
    shift = results.get("shift")
    if shift:
        lines += ["", "## Distribution shift", "", ", ".join(f"{k} {_fmt(v)}" for k, v in shift.items())]
    return lines


def _ensemble_section(results: dict[str, Any]) -> list[str]:
    """Ensemble disagreement."""
    lines: list[str] = []
    ensemble = results.get("ensemble")
    if ensemble:
        lines += ["", "## Ensemble disagreement", "", f"{ensemble['members']} members on {ensemble['items']} responses: "
                  f"mean per-item std of z-scored rewards {_fmt(ensemble['mean_item_std'])} (max {_fmt(ensemble['max_item_std'])}), "
                  f"mean pairwise Spearman {_fmt(ensemble['mean_pairwise_spearman'])}."]
    return lines


def _ratings_section(results: dict[str, Any]) -> list[str]:
    """Bradley-Terry and Elo ratings."""
    lines: list[str] = []
    ratings = results.get("ratings")
    if ratings:
        lines += ["", "## Ratings", "", "| model | BT rating | 95% CI | Elo (online) |", "| --- | --- | --- | --- |"]
        lines += [f"| {r['name']} | {_fmt(r['rating'])} | {_fmt(r['lower'])} - {_fmt(r['upper'])} | {_fmt(ratings['elo'][r['name']])} |"
                  for r in ratings["bradley_terry"]]
    return lines


def _win_rates_section(results: dict[str, Any]) -> list[str]:
    """Win rates against a baseline."""
    lines: list[str] = []
    win_rates = results.get("win_rates")
    if win_rates:
        lines += ["", f"## Win rates against {win_rates['baseline']}", "",
                  "| model | win rate | std. error | length-controlled win rate | battles |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {m} | {_fmt(r['win_rate'])} | {_fmt(r['standard_error'])} | {_fmt(r.get('length_controlled_win_rate'))} | {r['battles']} |"
                  for m, r in win_rates["models"].items()]
    return lines


SECTIONS = (_benchmark_section, _skipped_section, _length_bias_section, _probes_section, _shift_section,
            _ensemble_section, _ratings_section, _win_rates_section)
"""The report's sections in order; each maps the results to its markdown lines (none when its part is absent)."""


def write_report(results: dict[str, Any], output_dir: str | Path, title: str = "rewardlab report") -> Path:
    """Write ``results.json``, plots and ``report.md`` into ``output_dir``; returns the report path."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(dumps(results, indent=2))  # NaN -> null: strict JSON
    plots = _plots(results, out)
    lines = [f"# {title}", ""]
    for section in SECTIONS:
        lines += section(results)
    lines += [""] + [f"![{p}]({p})" for p in plots]
    if not plots:
        lines.append("(plots skipped: install matplotlib, `pip install 'rewardlab[plots]'`)")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
