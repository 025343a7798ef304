"""Preference-data construction and checks before training: length-balanced pair sets, exact and near-duplicate
detection (MinHash LSH from ``datasketch``), train/eval contamination by n-gram overlap, and a data card."""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .records import PreferencePair

__all__ = ["accuracy_on_gold", "contamination", "data_card", "length_balance", "near_duplicates", "ngrams", "pairs_from_ratings",
           "swap_positions"]


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def length_balance(pairs: Sequence[PreferencePair], seed: int = 0) -> tuple[list[PreferencePair], dict[str, float]]:
    """Drop pairs of the over-represented side (chosen longer, or chosen shorter, in words) at random until each side
    has the same count, so "always pick the longer reply" gets 50%; pairs of equal length are kept. Returns the kept
    pairs (input order) and the chosen-longer rate before and after.

    >>> from rewardlab.data.records import Message
    >>> pairs = [PreferencePair((Message("user", "q"),), "a b c" if i % 4 else "a", "a b") for i in range(100)]
    >>> kept, report = length_balance(pairs)
    >>> report["chosen_longer_rate_before"], report["chosen_longer_rate_after"], report["kept"]
    (0.75, 0.5, 50)
    """
    longer = [i for i, p in enumerate(pairs) if len(p.chosen.split()) > len(p.rejected.split())]
    shorter = [i for i, p in enumerate(pairs) if len(p.chosen.split()) < len(p.rejected.split())]
    rng = random.Random(seed)
    keep_n = min(len(longer), len(shorter))
    dropped = set(rng.sample(longer, len(longer) - keep_n)) | set(rng.sample(shorter, len(shorter) - keep_n))
    kept = [p for i, p in enumerate(pairs) if i not in dropped]
    rate = lambda ps: float(np.mean([len(p.chosen.split()) > len(p.rejected.split()) for p in ps])) if ps else float("nan")  # noqa: E731
    return kept, {"pairs_before": len(pairs), "kept": len(kept), "chosen_longer_rate_before": rate(pairs),
                  "chosen_longer_rate_after": rate(kept)}


def near_duplicates(texts: Sequence[str], threshold: float = 0.8, num_perm: int = 128, shingle: int = 3) -> dict[str, Any]:
    """Exact duplicates (same normalized text) and near duplicates (estimated Jaccard similarity of word
    ``shingle``-grams >= ``threshold``, MinHash LSH from ``datasketch``): groups of indices, first index kept."""
    from datasketch import MinHash, MinHashLSH

    exact: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        exact.setdefault(hashlib.sha1(" ".join(_words(text)).encode()).hexdigest(), []).append(i)
    exact_groups = [g for g in exact.values() if len(g) > 1]
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    groups: list[list[int]] = []
    seen: set[int] = set()
    hashes = []
    for i, text in enumerate(texts):
        words = _words(text)
        m = MinHash(num_perm=num_perm, seed=1)
        for gram in {" ".join(words[k : k + shingle]) for k in range(max(1, len(words) - shingle + 1))}:
            m.update(gram.encode())
        hashes.append(m)
        lsh.insert(str(i), m)
    for i, m in enumerate(hashes):
        if i in seen:
            continue
        similar = sorted(int(k) for k in lsh.query(m))
        if len(similar) > 1:
            groups.append(similar)
            seen.update(similar)
    return {"items": len(texts), "exact_groups": exact_groups, "exact_duplicates": sum(len(g) - 1 for g in exact_groups),
            "near_groups": groups, "near_duplicates": sum(len(g) - 1 for g in groups), "threshold": threshold}


def ngrams(text: str, n: int) -> set[str]:
    """The word n-grams of ``text`` (lower-cased).

    >>> sorted(ngrams("The cat sat down", 3))
    ['cat sat down', 'the cat sat']
    """
    words = _words(text)
    return {" ".join(words[k : k + n]) for k in range(len(words) - n + 1)}


def contamination(train_texts: Sequence[str], eval_texts: Sequence[str], n: int = 13, min_overlap: int = 1) -> dict[str, Any]:
    """Training texts that share at least ``min_overlap`` word ``n``-grams with any evaluation text (13-grams as in the
    GPT-3 paper's contamination study, arXiv:2005.14165): their indices and the eval indices they overlap."""
    index: dict[str, list[int]] = {}
    for j, text in enumerate(eval_texts):
        for gram in ngrams(text, n):
            index.setdefault(gram, []).append(j)
    hits = []
    for i, text in enumerate(train_texts):
        shared = [g for g in ngrams(text, n) if g in index]
        if len(shared) >= min_overlap:
            hits.append({"train": i, "eval": sorted({j for g in shared for j in index[g]}), "shared_ngrams": len(shared)})
    return {"n": n, "train_items": len(train_texts), "eval_items": len(eval_texts), "contaminated": len(hits), "items": hits}


def data_card(records: Iterable[tuple[str, PreferencePair]], dedup_sample: int = 20000) -> dict[str, Any]:
    """Streaming summary of a preference file: counts, word lengths of chosen and rejected (mean, quantiles from a
    fixed-size reservoir), the chosen-longer rate, ties and margins, and duplicates among the first
    ``dedup_sample`` prompts. Memory does not grow with the file beyond the reservoirs."""
    rng = random.Random(0)
    reservoir: list[tuple[int, int]] = []
    count = longer = ties = margins = 0
    sums = [0.0, 0.0]
    prompts: list[str] = []
    first = None
    for location, pair in records:
        first = first or location
        count += 1
        lc, lr = len(pair.chosen.split()), len(pair.rejected.split())
        sums[0] += lc
        sums[1] += lr
        longer += lc > lr
        ties += bool(pair.tie)
        margins += pair.margin is not None
        if len(reservoir) < 10000:
            reservoir.append((lc, lr))
        elif (k := rng.randrange(count)) < 10000:
            reservoir[k] = (lc, lr)
        if len(prompts) < dedup_sample:
            prompts.append(" ".join(m.content for m in pair.prompt))
    if not count:
        return {"pairs": 0}
    arr = np.array(reservoir, dtype=float)
    quant = lambda col: {q: float(np.percentile(arr[:, col], q)) for q in (5, 50, 95)}  # noqa: E731
    exact_prompts = len(prompts) - len(set(prompts))
    return {"pairs": count, "chosen_mean_words": sums[0] / count, "rejected_mean_words": sums[1] / count,
            "chosen_words_quantiles": quant(0), "rejected_words_quantiles": quant(1), "chosen_longer_rate": longer / count,
            "ties": ties, "with_margin": margins, "repeated_prompts_in_first": {"checked": len(prompts), "repeats": exact_prompts}}


def pairs_from_ratings(groups: dict[Any, list[tuple[str, float]]], rule: str = "best_worst", min_gap: float = 0.0,
                       seed: int = 0) -> list[dict[str, Any]]:
    """Preference pairs from rated replies grouped by prompt (UltraFeedback-style construction), each with
    ``margin`` = the rating gap:

    * ``best_random``: the best reply against one other chosen at random (UltraFeedback's binarization);
    * ``best_worst``: the best against the worst;
    * ``all``: every pair whose ratings differ by more than ``min_gap``.

    Pairs whose gap is not above ``min_gap`` are left out; ties at the top are broken by order.

    >>> rows = pairs_from_ratings({"q": [("a", 1.0), ("b", 3.0), ("c", 2.0)]}, "all")
    >>> [(r["chosen"], r["rejected"], r["margin"]) for r in rows]
    [('b', 'a', 2.0), ('c', 'a', 1.0), ('b', 'c', 1.0)]
    """
    rng = random.Random(seed)
    out = []
    for prompt, rated in groups.items():
        if len(rated) < 2:
            continue
        if rule == "all":
            candidates = [(rated[i], rated[j]) for j in range(len(rated)) for i in range(len(rated)) if rated[i][1] > rated[j][1]]
        else:
            best = max(rated, key=lambda r: r[1])
            others = [r for r in rated if r is not best]
            if rule == "best_worst":
                candidates = [(best, min(others, key=lambda r: r[1]))]
            elif rule == "best_random":
                candidates = [(best, rng.choice(others))]
            else:
                raise ValueError(f"rule must be best_random, best_worst or all, got {rule!r}")
        for (good, good_score), (bad, bad_score) in candidates:
            if good_score - bad_score > min_gap:
                out.append({"prompt": prompt, "chosen": good, "rejected": bad, "margin": float(good_score - bad_score)})
    return out


def swap_positions(pairs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Judge data with every pair also in the other order (``response_a`` <-> ``response_b``, the winner flipped), so a
    judge or a pairwise RM cannot learn a position preference.

    >>> swap_positions([{"response_a": "x", "response_b": "y", "winner": "A"}])[1]
    {'response_a': 'y', 'response_b': 'x', 'winner': 'B'}
    """
    flip = {"A": "B", "B": "A", "tie": "tie"}
    out = []
    for p in pairs:
        out.append(dict(p))
        out.append({**p, "response_a": p["response_b"], "response_b": p["response_a"], "winner": flip.get(p.get("winner"), p.get("winner"))})
    return out


def accuracy_on_gold(labels: dict[str, dict[str, Any]], gold: dict[str, Any], bootstrap: int = 1000, seed: int = 0,
                     times: dict[str, dict[str, float]] | None = None, window: float | None = None) -> dict[str, Any]:
    """Per annotator: accuracy on the gold (calibration) items with a bootstrap interval; with ``times`` (annotator ->
    item -> timestamp) and ``window``, accuracy per time window, and ``drifting`` when the last window's accuracy is
    below the first's by more than both windows' standard errors combined.

    ``labels``: annotator -> item -> label.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for annotator, given in labels.items():
        hits = np.array([float(given[i] == gold[i]) for i in given if i in gold])
        if hits.size == 0:
            continue
        draws = [hits[rng.integers(0, hits.size, hits.size)].mean() for _ in range(bootstrap)] if bootstrap else [hits.mean()]
        row: dict[str, Any] = {"gold_items": int(hits.size), "accuracy": float(hits.mean()),
                               "ci": [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]}
        if times and window and annotator in times:
            stamped = sorted((times[annotator][i], float(given[i] == gold[i])) for i in given if i in gold and i in times[annotator])
            if stamped:
                start = stamped[0][0]
                buckets: dict[int, list[float]] = {}
                for t, hit in stamped:
                    buckets.setdefault(int((t - start) // window), []).append(hit)
                series = [(k, float(np.mean(v)), float(np.std(v) / max(1, len(v)) ** 0.5), len(v)) for k, v in sorted(buckets.items())]
                row["by_window"] = [{"window": k, "accuracy": a, "items": n} for k, a, _, n in series]
                if len(series) >= 2:
                    (_, first, se1, _), (_, last, se2, _) = series[0], series[-1]
                    row["drifting"] = bool(first - last > se1 + se2)
        out[annotator] = row
    return out
