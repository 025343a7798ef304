"""Write a data card (the dict :func:`rewardlab.data.quality.data_card` returns, plus optional agreement) as
``card.json``, ``card.md`` and a self-contained ``card.html`` (plots embedded), with PNG plots next to them.

Plots need matplotlib (``pip install 'rewardlab[plots]'``); without it the card says so and everything else is
written.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from ..jsonsafe import dumps
from ..plotting import pyplot, save_figure

__all__ = ["card_lines", "write_card"]


def _q(quantiles: dict[Any, float]) -> str:
    return " / ".join(f"{v:g}" for v in quantiles.values())


def card_lines(card: dict[str, Any], title: str) -> list[tuple[str, list[str]]]:
    """The card's sections as ``(heading, bullet lines)``: one source for the Markdown and the HTML.

    >>> card_lines({"pairs": 0}, "x")[0]
    ('Data card: x', ['0 pairs.'])
    """
    if not card.get("pairs"):
        return [(f"Data card: {title}", [f"0 pairs{'; ' + card['read'] if card.get('read') else ''}."])]
    summary = [f"{card['pairs']} pairs" + (f" ({card['read']})" if card.get("read") else "") + "."]
    lengths = [f"Words, chosen: mean {card['chosen_mean_words']:.1f}, 5/50/95% {_q(card['chosen_words_quantiles'])}",
               f"Words, rejected: mean {card['rejected_mean_words']:.1f}, 5/50/95% {_q(card['rejected_words_quantiles'])}",
               f"Chosen longer: {card['chosen_longer_rate']:.1%} ('always pick the longer reply' scores this much)"]
    if "chosen_mean_tokens" in card:
        lengths += [f"Tokens (prompt + reply, chat template), chosen: mean {card['chosen_mean_tokens']:.1f}, 5/50/95% "
                    f"{_q(card['chosen_tokens_quantiles'])}",
                    f"Tokens, rejected: mean {card['rejected_mean_tokens']:.1f}, 5/50/95% {_q(card['rejected_tokens_quantiles'])}"]
    sections = [(f"Data card: {title}", summary), ("Lengths", lengths)]
    if "truncation" in card:
        t = card["truncation"]
        sections.append((f"Truncation at {t['max_length']} tokens", [
            f"Chosen over: {t['chosen_over']}; rejected over: {t['rejected_over']}; either: {t['either_over']} "
            f"({t['either_over_rate']:.1%} of pairs would lose prompt tokens or be dropped in training at this length)"]))
    labels = [f"Ties: {card['ties']}; pairs with a margin: {card['with_margin']}; with a weight: {card['weighted']}"
              + (f" (mean {card['mean_weight']:.3f})" if card.get("mean_weight") is not None else "")]
    if card.get("strength_labels"):
        labels.append("Strength labels: " + ", ".join(f"{k} {v}" for k, v in sorted(card["strength_labels"].items())))
    sections.append(("Labels", labels))
    d = card["duplicates"]
    sections.append(("Duplicates", [f"Among the first {d['checked_prompts']} prompts: {d['exact']} exact and {d['near']} near "
                                    f"duplicates (MinHash, Jaccard >= {d['near_threshold']})"]))
    if "contamination" in card:
        c = card["contamination"]
        listed = ", ".join(c["first_listed"][:10]) + (" ..." if len(c["first_listed"]) > 10 else "")
        sections.append(("Contamination", [f"{c['contaminated']} prompts ({c['rate']:.2%}) share a word {c['n']}-gram with the "
                                           f"{c['eval_items']} evaluation prompts" + (f": {listed}" if listed else ""),
                                           f"{c['too_short_to_check']} prompts are shorter than {c['n']} words and cannot be "
                                           f"checked with {c['n']}-grams (lower --n to include them)"]))
    if "agreement" in card:
        a = card["agreement"]
        ci = a.get("intervals", {})
        rows = [f"{a['items']} items, annotators {', '.join(map(str, a['annotators']))}"]
        if a.get("label_counts"):
            total = sum(a["label_counts"].values())
            rows.append("Labels given: " + ", ".join(f"{k} {v} ({v / total:.1%})" for k, v in a["label_counts"].items()))
        for key, name in (("raw_agreement", "Raw agreement"), ("fleiss_kappa", "Fleiss' kappa"),
                          ("krippendorff_alpha_nominal", "Krippendorff's alpha (nominal)")):
            if key in a:
                rows.append(f"{name}: {a[key]:.3f}" + (f" (95% CI {ci[key][0]:.3f} - {ci[key][1]:.3f})" if key in ci else ""))
        rows += [f"Cohen's kappa, {pair}: {k:.3f}" for pair, k in a.get("cohen_kappa", {}).items()]
        sections.append(("Annotator agreement", rows))
    return sections


def _plots(card: dict[str, Any], out: Path) -> list[tuple[str, str]]:
    plt = pyplot()
    if plt is None:
        return []
    made = []

    def save(fig: Any, name: str, caption: str) -> None:
        save_figure(fig, out / name, dpi=110)
        made.append((name, caption))

    def bars(ax: Any, hist: dict[str, Any], keys: list[str]) -> None:
        edges = hist["edges"]
        width = edges[1] - edges[0]
        for k in keys:
            ax.bar(edges[:-1], hist[k], width=width, align="edge", alpha=0.5, label=k)

    h = card.get("histograms", {})
    if h.get("words", {}).get("edges"):
        fig, ax = plt.subplots(figsize=(6, 3.2))
        bars(ax, h["words"], ["chosen", "rejected"])
        ax.set(xlabel="words (last bin: everything above)", ylabel="pairs in the sample", title="Reply length")
        ax.legend()
        save(fig, "lengths.png", "Word lengths of chosen and rejected replies")
    if h.get("word_gap", {}).get("edges"):
        fig, ax = plt.subplots(figsize=(6, 3.2))
        bars(ax, h["word_gap"], ["chosen_minus_rejected"])
        ax.axvline(0, color="k", lw=1)
        ax.set(xlabel="chosen words - rejected words", ylabel="pairs in the sample",
               title=f"Length gap (chosen longer in {card['chosen_longer_rate']:.0%})")
        save(fig, "length_gap.png", "Length difference per pair: mass right of 0 is what a length-biased RM learns")
    if h.get("tokens", {}).get("edges"):
        fig, ax = plt.subplots(figsize=(6, 3.2))
        bars(ax, h["tokens"], ["chosen", "rejected"])
        if "truncation" in card:
            ax.axvline(card["truncation"]["max_length"], color="r", ls="--", lw=1, label="max length")
        ax.set(xlabel="tokens (prompt + reply)", ylabel="pairs in the sample", title="Token lengths")
        ax.legend()
        save(fig, "tokens.png", "Token lengths against the training max length")
    a = card.get("agreement")
    if a:
        names = [k for k in ("raw_agreement", "fleiss_kappa", "krippendorff_alpha_nominal") if k in a]
        values = [a[k] for k in names] + list(a.get("cohen_kappa", {}).values())
        labels = names + [f"cohen {p}" for p in a.get("cohen_kappa", {})]
        ci = a.get("intervals", {})
        err = [[a[k] - ci[k][0] if k in ci else 0 for k in names] + [0] * len(a.get("cohen_kappa", {})),
               [ci[k][1] - a[k] if k in ci else 0 for k in names] + [0] * len(a.get("cohen_kappa", {}))]
        fig, ax = plt.subplots(figsize=(6, 0.35 * len(values) + 1.2))
        ax.barh(range(len(values)), values, xerr=err)
        ax.set_yticks(range(len(values)), labels)
        ax.set(xlim=(min(0, min(values)), 1), title="Annotator agreement (95% bootstrap CI)")
        save(fig, "agreement.png", "Agreement statistics")
    return made


def write_card(card: dict[str, Any], output_dir: str | Path, title: str) -> dict[str, Path]:
    """Write ``card.json``, ``card.md``, ``card.html`` (self-contained: plots embedded as data URIs) and the PNG plots
    into ``output_dir``; returns the paths by kind."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "card.json").write_text(dumps(card, indent=2))
    sections = card_lines(card, title)
    plots = _plots(card, out) if card.get("pairs") else []
    md = []
    for k, (heading, rows) in enumerate(sections):
        md += [("# " if k == 0 else "## ") + heading, ""] + (rows if k == 0 else [f"* {r}" for r in rows]) + [""]
    md += [f"![{caption}]({name})" for name, caption in plots]
    if card.get("pairs") and not plots:
        md.append("(plots skipped: install matplotlib, `pip install 'rewardlab[plots]'`)")
    (out / "card.md").write_text("\n".join(md) + "\n")
    body = []
    for k, (heading, rows) in enumerate(sections):
        tag = "h1" if k == 0 else "h2"
        body.append(f"<{tag}>{html.escape(heading)}</{tag}>")
        body.append("<p>" + html.escape(rows[0]) + "</p>" if k == 0 else
                    "<ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in rows) + "</ul>")
    for name, caption in plots:
        data = base64.b64encode((out / name).read_bytes()).decode()
        body.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}"/>'
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    if card.get("pairs") and not plots:
        body.append("<p>(plots skipped: install matplotlib)</p>")
    style = "body{font-family:sans-serif;max-width:52em;margin:2em auto;line-height:1.4}figure{margin:1em 0}img{max-width:100%}"
    (out / "card.html").write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                                   f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
    return {"json": out / "card.json", "markdown": out / "card.md", "html": out / "card.html",
            **{name: out / name for name, _ in plots}}
