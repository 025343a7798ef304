"""Multi-annotator preference labels: one table, agreement statistics with intervals, and aggregation (majority
vote with an explicit tie policy, Dawid-Skene EM) into soft labels usable as margins or weights.

The table is ``(items, annotators)`` of labels, ``None`` where an annotator did not label an item.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError, DataFormatError
from ..extras import require
from ..metrics import cohen_kappa, fleiss_kappa, majority_vote

__all__ = ["Annotations", "DawidSkene", "agreement_report", "dawid_skene", "majority_labels", "pairs_from_annotations",
           "read_annotations"]


@dataclass(frozen=True)
class Annotations:
    """``labels[i][j]``: annotator ``annotators[j]``'s label of item ``items[i]`` (None: not labelled)."""

    items: tuple[str, ...]
    annotators: tuple[str, ...]
    labels: tuple[tuple[Hashable | None, ...], ...]
    sources: tuple[str, ...] = ()
    categories: tuple[Hashable, ...] = field(default=())

    def matrix(self) -> list[list[Hashable | None]]:
        return [list(row) for row in self.labels]


_PANDALM: dict[Any, Hashable] = {0: "tie", 1: "A", 2: "B"}


def read_annotations(path: str | os.PathLike, item_field: str = "item", annotator_field: str = "annotator",
                     label_field: str = "label", records: Iterable[tuple[str, Any]] | None = None) -> Annotations:
    """Read annotations in one of three layouts (detected per file, errors name file:line and field):

    * long: one row per judgement ``{item, annotator, label}`` (field names configurable);
    * wide: one row per item with ``votes`` (a list, position = annotator) or ``annotator1..K`` fields;
    * PandaLM's test set (``annotator1..3`` with 0 = tie, 1 = response 1, 2 = response 2: read as tie / A / B).

    ``records``: the file's ``(location, record)`` rows when the caller has read them already.
    """
    from .readers import iter_records

    cells: dict[str, dict[str, Hashable | None]] = {}
    sources: dict[str, str] = {}
    annotators: list[str] = []
    for location, record in (records if records is not None else iter_records(str(path))):
        wide = [k for k in record if k.startswith("annotator") and k[len("annotator"):].isdigit()]
        if wide or isinstance(record.get("votes"), list):
            item = str(record.get("idx", record.get(item_field, record.get("id", location))))
            names = sorted(wide, key=lambda k: int(k[len("annotator"):])) if wide else [f"annotator{k + 1}" for k in range(len(record["votes"]))]
            values = [record[k] for k in wide] if wide else record["votes"]
            pandalm = bool(wide) and "response1" in record
            row: dict[str, Hashable | None] = {}
            for name, value in zip(names, values):
                if value is not None and not isinstance(value, (str, int, float)):
                    raise DataFormatError(location, f"expected a label (string or number), got {type(value).__name__}", name)
                row[name] = _PANDALM.get(value, value) if pandalm else value
            cells[item], sources[item] = row, location
            annotators += [n for n in names if n not in annotators]
        else:
            for key in (item_field, annotator_field, label_field):
                if key not in record:
                    raise DataFormatError(location, "expected a long row {item, annotator, label} or a wide row with votes", key)
            item, name = str(record[item_field]), str(record[annotator_field])
            cells.setdefault(item, {})[name] = record[label_field]
            sources.setdefault(item, location)
            if name not in annotators:
                annotators.append(name)
    if not cells:
        raise DataFormatError(str(path), "contains no annotations")
    items = tuple(cells)
    labels = tuple(tuple(cells[i].get(a) for a in annotators) for i in items)
    categories = tuple(sorted({v for row in labels for v in row if v is not None}, key=str))
    return Annotations(items, tuple(annotators), labels, tuple(sources[i] for i in items), categories)


def _krippendorff(labels: Sequence[Sequence[Hashable | None]], level: str, categories: Sequence[Hashable]) -> float:
    krippendorff = require("krippendorff", "data", "Krippendorff's alpha (rewardlab data agreement)")

    index = {c: k for k, c in enumerate(categories)}

    def number(v: Any) -> float:  # ordinal / interval labels are numbers; nominal ones are indexed
        return float(v) if level != "nominal" else float(index[v])

    data = np.array([[np.nan if v is None else number(v) for v in row] for row in labels], dtype=float).T  # (annotators, items)
    try:
        return float(krippendorff.alpha(reliability_data=data, level_of_measurement=level))
    except (ValueError, ZeroDivisionError):
        return float("nan")


def agreement_report(ann: Annotations, levels: Sequence[str] = ("nominal",), bootstrap: int = 1000, seed: int = 0,
                     confidence: float = 0.95) -> dict[str, Any]:
    """Raw agreement (share of annotator pairs agreeing on an item), Cohen's kappa per annotator pair, Fleiss'
    kappa, Krippendorff's alpha per measurement level (the ``krippendorff`` library; missing labels allowed),
    each with a bootstrap interval over items; per-item label entropy (bits)."""
    labels = ann.matrix()
    numeric = all(isinstance(c, (int, float)) for c in ann.categories)
    levels = [lv for lv in levels if lv == "nominal" or numeric]

    def stats(rows: list[list[Hashable | None]]) -> dict[str, float]:
        pairs = [(r[a], r[b]) for r in rows for a in range(len(r)) for b in range(a + 1, len(r)) if r[a] is not None and r[b] is not None]
        out = {"raw_agreement": float(np.mean([x == y for x, y in pairs])) if pairs else float("nan"),
               "fleiss_kappa": fleiss_kappa(rows)}
        for lv in levels:
            out[f"krippendorff_alpha_{lv}"] = _krippendorff(rows, lv, ann.categories)
        return out

    point = stats(labels)
    rng = np.random.default_rng(seed)
    draws = [stats([labels[i] for i in rng.integers(0, len(labels), len(labels))]) for _ in range(bootstrap)]
    lo, hi = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2
    intervals = {k: [float(np.nanpercentile([d[k] for d in draws], lo)), float(np.nanpercentile([d[k] for d in draws], hi))]
                 for k in point} if bootstrap else {}
    pairwise = {f"{ann.annotators[a]} vs {ann.annotators[b]}": cohen_kappa([r[a] for r in labels], [r[b] for r in labels])
                for a in range(len(ann.annotators)) for b in range(a + 1, len(ann.annotators))}
    entropy = []
    for row in labels:
        counts = Counter(v for v in row if v is not None)
        total = sum(counts.values())
        entropy.append(-sum(c / total * math.log2(c / total) for c in counts.values()) if total else float("nan"))
    label_counts = Counter(str(v) for row in labels for v in row if v is not None)
    return {"items": len(labels), "annotators": list(ann.annotators), "categories": list(ann.categories),
            "label_counts": dict(sorted(label_counts.items())), **point,
            "intervals": intervals, "cohen_kappa": pairwise, "mean_item_entropy_bits": float(np.nanmean(entropy)),
            "item_entropy_bits": entropy, "bootstrap": bootstrap}


def majority_labels(ann: Annotations, tie_policy: Literal["none", "first", "tie"] = "none") -> list[Hashable | None]:
    """Majority vote per item. When the top labels are tied: ``none`` leaves the item unlabelled, ``first`` takes
    the tied label listed first in the categories, ``tie`` answers the category ``"tie"`` (pairwise data).

    >>> ann = Annotations(("a", "b"), ("x", "y"), (("A", "A"), ("A", "B")), categories=("A", "B"))
    >>> majority_labels(ann), majority_labels(ann, "first")
    (['A', None], ['A', 'A'])
    """
    out = []
    for row in ann.labels:
        vote = majority_vote(row)
        if vote is None and any(v is not None for v in row) and tie_policy != "none":
            counts = Counter(v for v in row if v is not None)
            top = max(counts.values())
            tied = [c for c in ann.categories if counts.get(c) == top]
            vote = tied[0] if tie_policy == "first" else "tie"
        out.append(vote)
    return out


@dataclass(frozen=True)
class DawidSkene:
    """Dawid-Skene estimates: per item the posterior over categories (soft labels), per annotator the confusion
    matrix ``P(says l | true k)`` and accuracy, the class priors, iterations run and whether EM converged."""

    categories: tuple[Hashable, ...]
    posteriors: np.ndarray
    confusion: dict[str, np.ndarray]
    accuracy: dict[str, float]
    priors: np.ndarray
    iterations: int
    converged: bool

    def labels(self) -> list[Hashable]:
        return [self.categories[k] for k in self.posteriors.argmax(1)]


def dawid_skene(ann: Annotations, max_iterations: int = 100, tolerance: float = 1e-6, smoothing: float = 0.01) -> DawidSkene:
    """Dawid and Skene (1979) EM: latent true category per item, a confusion matrix per annotator.

    Initialized from per-item vote shares; the M-step re-estimates priors and (Laplace-smoothed) confusion matrices
    from the posteriors, the E-step recomputes ``P(true = k | labels) ~ prior_k prod_j confusion_j[k, label_ij]``.
    Stops when no posterior moves by more than ``tolerance``.
    """
    cats = ann.categories
    if len(cats) < 2:
        raise ConfigError("Dawid-Skene needs at least two categories")
    index = {c: k for k, c in enumerate(cats)}
    obs = np.array([[-1 if v is None else index[v] for v in row] for row in ann.labels])  # (items, annotators)
    n_items, n_ann = obs.shape
    k = len(cats)
    post = np.zeros((n_items, k))
    for i in range(n_items):
        for j in range(n_ann):
            if obs[i, j] >= 0:
                post[i, obs[i, j]] += 1
    post = (post + 1e-9) / (post + 1e-9).sum(1, keepdims=True)
    converged, it = False, 0
    for it in range(1, max_iterations + 1):
        priors = post.mean(0)
        confusion = np.full((n_ann, k, k), smoothing)
        for j in range(n_ann):
            seen = obs[:, j] >= 0
            for label in range(k):
                confusion[j, :, label] += post[seen & (obs[:, j] == label)].sum(0)
        confusion /= confusion.sum(2, keepdims=True)
        log_post = np.tile(np.log(priors + 1e-300), (n_items, 1))
        for j in range(n_ann):
            seen = obs[:, j] >= 0
            log_post[seen] += np.log(confusion[j][:, obs[seen, j]].T)
        new = np.exp(log_post - log_post.max(1, keepdims=True))
        new /= new.sum(1, keepdims=True)
        delta = float(np.abs(new - post).max())
        post = new
        if delta < tolerance:
            converged = True
            break
    priors = post.mean(0)
    accuracy = {a: float((np.diag(confusion[j]) * priors).sum()) for j, a in enumerate(ann.annotators)}
    return DawidSkene(cats, post, {a: confusion[j] for j, a in enumerate(ann.annotators)}, accuracy, priors, it, converged)


def _pair_texts(record: Any, location: str, counts: Counter[str]) -> tuple[Any, str, str]:
    """Prompt and the two responses of an annotated comparison: ``prompt`` (text or messages) or PandaLM's
    ``instruction`` (+ ``input``); ``response_a``/``response_b`` or ``response1``/``response2``.

    A response stored as a JSON number or boolean (PandaLM has six ``true``) is read as its JSON text, as the judge
    tools read it, and counted in ``counts``."""
    from .readers import scalar_as_text

    if "prompt" in record:
        prompt = record["prompt"]
    elif "instruction" in record:
        prompt = str(record["instruction"]) + (f"\n\n{record['input']}" if record.get("input") else "")
    else:
        raise DataFormatError(location, "expected the compared prompt ('prompt', or PandaLM's 'instruction' and 'input')", "prompt")
    for a, b in (("response_a", "response_b"), ("response1", "response2")):
        if a in record and b in record:
            sides = []
            for name in (a, b):
                if not isinstance(record[name], str):
                    counts["responses stored as JSON numbers or booleans, read as their JSON text"] += 1
                sides.append(scalar_as_text(record[name], location, name))
            return prompt, sides[0], sides[1]
    raise DataFormatError(location, "expected the two compared responses ('response_a' and 'response_b', or 'response1' and "
                                    "'response2')", "response_a")


def pairs_from_annotations(path: str | os.PathLike, method: Literal["majority", "dawid-skene"] = "majority",
                           ties: Literal["drop", "keep"] = "drop", texts: str | os.PathLike | None = None,
                           item_field: str = "item") -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Preference pairs from multi-annotator comparisons (labels ``A`` / ``B`` / ``tie``, as PandaLM's test set reads):
    the aggregated label picks ``chosen``; every pair carries ``agreement`` (share of the item's annotators who gave
    that label), ``votes`` and, with Dawid-Skene, ``confidence`` (the label's posterior) and the soft ``posterior``.

    Texts come from the annotation rows themselves (wide rows) or from ``texts``, a file of ``{item, prompt,
    response_a, response_b}`` rows (long annotations). Items aggregated to ``tie`` are dropped (counted) or kept as
    ``tie: true`` pairs; items without a majority (a tied vote) are counted as unlabelled. Returns the pairs and counts.
    """
    from .readers import iter_records

    rows = list(iter_records(str(path)))  # read once: the labels and (wide rows) the texts
    ann = read_annotations(path, item_field=item_field, records=rows)
    bad = [c for c in ann.categories if c not in ("A", "B", "tie")]
    if bad:
        raise DataFormatError(str(path), f"pairs need comparison labels A, B or tie; found {bad[:5]}", "label")
    records: dict[str, tuple[str, Any]] = {}
    for location, record in (iter_records(str(texts)) if texts else rows):
        key = str(record.get("idx", record.get(item_field, record.get("id", location))))
        records.setdefault(key, (location, record))
    if method == "dawid-skene":
        result = dawid_skene(ann)
        labels: list[Hashable | None] = list(result.labels())
        cat_index = {c: k for k, c in enumerate(result.categories)}
    elif method == "majority":
        labels = majority_labels(ann, "none")
    else:
        raise ConfigError(f"method must be 'majority' or 'dawid-skene', got {method!r}")
    counts: Counter[str] = Counter()
    pairs = []
    for i, (item, row) in enumerate(zip(ann.items, ann.labels)):
        label = labels[i]
        if label is None:
            counts["unlabelled (tied vote)"] += 1
            continue
        if label == "tie" and ties == "drop":
            counts["aggregated to a tie"] += 1
            continue
        if item not in records:
            raise DataFormatError(str(texts or path), f"no texts for annotated item {item!r}", item_field)
        location, record = records[item]
        prompt, a, b = _pair_texts(record, location, counts)
        votes = Counter(str(v) for v in row if v is not None)
        chosen, rejected = (b, a) if label == "B" else (a, b)
        pair: dict[str, Any] = {"prompt": prompt, "chosen": chosen, "rejected": rejected, "item": item, "source": location,
                                "votes": dict(votes), "agreement": votes[str(label)] / sum(votes.values())}
        if label == "tie":
            pair["tie"] = True
        if method == "dawid-skene":
            pair["confidence"] = float(result.posteriors[i, cat_index[label]])
            pair["posterior"] = {str(c): float(result.posteriors[i, k]) for k, c in enumerate(result.categories)}
        pairs.append(pair)
        counts["pairs"] += 1
    return pairs, {"items": len(ann.items), **counts, "method": method, "ties": ties}
