"""Preference-data construction and checks before training: length-balanced pair sets, exact and near-duplicate
detection (MinHash LSH from ``datasketch``), train/eval contamination by n-gram overlap, and a data card."""

from __future__ import annotations

import hashlib
from dataclasses import replace
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..extras import require
from .records import PreferencePair

__all__ = ["accuracy_on_gold", "contamination", "data_card", "length_balance", "length_reweight", "length_match", "near_duplicates", "ngrams", "pairs_from_ratings",
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


def length_reweight(pairs: Sequence[PreferencePair]) -> tuple[list[PreferencePair], dict[str, float]]:
    """Keep every pair but scale the weights so chosen-longer and chosen-shorter pairs (in words) carry the same total
    weight (their mean weight moves to ``(n_l + n_s) / (2 n)`` of a side of ``n``); equal-length pairs keep theirs. The
    balancing :func:`length_balance` does by dropping, without losing the majority side's pairs.

    >>> from rewardlab.data.records import Message
    >>> pairs = [PreferencePair((Message("user", "q"),), "a b c" if i % 4 else "a", "a b") for i in range(100)]
    >>> out, report = length_reweight(pairs)
    >>> round(sum(p.weight for p in out if len(p.chosen) > 1), 6), round(sum(p.weight for p in out if len(p.chosen) == 1), 6)
    (50.0, 50.0)
    >>> report["chosen_longer_weight_share_after"]
    0.5
    """
    side = [int(np.sign(len(p.chosen.split()) - len(p.rejected.split()))) for p in pairs]
    weight = [1.0 if p.weight is None else float(p.weight) for p in pairs]
    totals = {s: sum(w for w, t in zip(weight, side) if t == s) for s in (1, -1)}
    if totals[1] == 0 or totals[-1] == 0:  # one side is missing: nothing to balance against
        scale = {1: 1.0, -1: 1.0}
    else:
        scale = {s: (totals[1] + totals[-1]) / (2 * totals[s]) for s in (1, -1)}
    out = [replace(p, weight=w * scale.get(t, 1.0)) for p, w, t in zip(pairs, weight, side)]
    share = lambda ws: ws[1] / (ws[1] + ws[-1]) if ws[1] + ws[-1] else float("nan")  # noqa: E731
    after = {s: totals[s] * scale[s] for s in (1, -1)}
    return out, {"pairs": len(pairs), "chosen_longer_weight_share_before": share(totals),
                 "chosen_longer_weight_share_after": share(after), "weight_longer": scale[1], "weight_shorter": scale[-1]}


def length_match(pairs: Sequence[PreferencePair], tolerance: float = 0.1) -> tuple[list[PreferencePair], dict[str, Any]]:
    """Keep the pairs whose chosen and rejected replies have matched lengths: ``|w_c - w_r| <= tolerance * max(w_c,
    w_r)`` in words (``tolerance=0``: equal word counts). Unlike :func:`length_balance`, which only equalizes how
    often each side is longer, this removes the length difference itself, so an RM trained on the result cannot
    learn length from it. Returns the kept pairs (input order) and the chosen-longer rate and mean relative length
    difference before and after.

    >>> from rewardlab.data.records import Message
    >>> q = (Message("user", "q"),)
    >>> pairs = [PreferencePair(q, "a b c d e f g h i j", "a b c d e f g h i"), PreferencePair(q, "a b c d", "a")]
    >>> kept, report = length_match(pairs, 0.2)
    >>> len(kept), report["chosen_longer_rate_before"], report["chosen_longer_rate_after"]
    (1, 1.0, 1.0)
    """
    if tolerance < 0:
        raise ConfigError(f"tolerance must be >= 0, got {tolerance}")
    lengths = [(len(p.chosen.split()), len(p.rejected.split())) for p in pairs]
    keep = [abs(c - r) <= tolerance * max(c, r) for c, r in lengths]
    kept = [p for p, k in zip(pairs, keep) if k]

    def rates(rows: list[tuple[int, int]]) -> tuple[float, float]:
        if not rows:
            return float("nan"), float("nan")
        return (float(np.mean([c > r for c, r in rows])), float(np.mean([abs(c - r) / max(c, r, 1) for c, r in rows])))

    before, after = rates(lengths), rates([x for x, k in zip(lengths, keep) if k])
    return kept, {"pairs_before": len(pairs), "kept": len(kept), "tolerance": tolerance, "chosen_longer_rate_before": before[0],
                  "chosen_longer_rate_after": after[0], "mean_relative_length_gap_before": before[1],
                  "mean_relative_length_gap_after": after[1]}


def near_duplicates(texts: Sequence[str], threshold: float = 0.8, num_perm: int = 128, shingle: int = 3) -> dict[str, Any]:
    """Exact duplicates (same normalized text) and near duplicates (estimated Jaccard similarity of word
    ``shingle``-grams >= ``threshold``, MinHash LSH from ``datasketch``): groups of indices, first index kept."""
    require("datasketch", "data", "near-duplicate detection (rewardlab data dedup, MinHash)")
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
    if n < 1:
        raise ConfigError(f"n-grams need n >= 1, got {n}")
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


def _histogram(columns: dict[str, np.ndarray], bins: int = 30, upper_quantile: float = 99.0) -> dict[str, Any]:
    """Shared-edge histograms of a few samples (edges up to the ``upper_quantile`` of all of them; the last bin takes
    everything above, so nothing is cut from the counts)."""
    both = np.concatenate([c for c in columns.values() if c.size]) if columns else np.zeros(0)
    if both.size == 0:
        return {"edges": [], **{k: [] for k in columns}}
    lo, hi = float(both.min()), float(np.percentile(both, upper_quantile))
    edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    return {"edges": edges.tolist(), **{k: np.histogram(np.clip(c, lo, edges[-1]), edges)[0].tolist() for k, c in columns.items()}}


class _Lengths:
    """Word (and token) lengths of both sides: exact means and over-length counts, quantiles and histograms from a
    uniform reservoir sample. Token counts are asked for ``batch`` pairs at a time."""

    def __init__(self, token_counter: Callable[[Sequence[tuple[Any, str]]], list[int]] | None, max_length: int | None,
                 reservoir_size: int, batch: int):
        self.token_counter, self.max_length, self.size, self.batch = token_counter, max_length, reservoir_size, batch
        self.rng = random.Random(0)
        self.reservoir: list[tuple[int, ...]] = []
        self.count = self.longer = 0
        self.sums = [0.0, 0.0, 0.0, 0.0]  # chosen words, rejected words, chosen tokens, rejected tokens
        self.over = {"chosen": 0, "rejected": 0, "either": 0}
        self.pending: list[tuple[PreferencePair, int, int]] = []

    def add(self, pair: PreferencePair) -> None:
        lc, lr = len(pair.chosen.split()), len(pair.rejected.split())
        self.sums[0] += lc
        self.sums[1] += lr
        self.longer += lc > lr
        self.pending.append((pair, lc, lr))
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        tokens: list[int] = []
        if self.token_counter is not None and self.pending:
            tokens = self.token_counter([(p.prompt, side) for p, _, _ in self.pending for side in (p.chosen, p.rejected)])
        for k, (_, lc, lr) in enumerate(self.pending):
            self.count += 1
            row: tuple[int, ...] = (lc, lr)
            if tokens:
                tc, tr = tokens[2 * k], tokens[2 * k + 1]
                self.sums[2] += tc
                self.sums[3] += tr
                row = (lc, lr, tc, tr)
                if self.max_length is not None:
                    self.over["chosen"] += tc > self.max_length
                    self.over["rejected"] += tr > self.max_length
                    self.over["either"] += max(tc, tr) > self.max_length
            if len(self.reservoir) < self.size:
                self.reservoir.append(row)
            elif (j := self.rng.randrange(self.count)) < self.size:
                self.reservoir[j] = row
        self.pending.clear()

    def words_card(self) -> dict[str, Any]:
        arr, n = np.array(self.reservoir, dtype=float), self.count
        return {"chosen_mean_words": self.sums[0] / n, "rejected_mean_words": self.sums[1] / n,
                "chosen_words_quantiles": _quantiles(arr[:, 0]), "rejected_words_quantiles": _quantiles(arr[:, 1]),
                "chosen_longer_rate": self.longer / n}

    def histograms(self) -> dict[str, Any]:
        arr = np.array(self.reservoir, dtype=float)
        out = {"words": _histogram({"chosen": arr[:, 0], "rejected": arr[:, 1]}),
               "word_gap": _histogram({"chosen_minus_rejected": arr[:, 0] - arr[:, 1]}, upper_quantile=99.5)}
        if self.token_counter is not None:
            out["tokens"] = _histogram({"chosen": arr[:, 2], "rejected": arr[:, 3]})
        return out

    def tokens_card(self) -> dict[str, Any]:
        if self.token_counter is None:
            return {}
        arr, n = np.array(self.reservoir, dtype=float), self.count
        card: dict[str, Any] = {"chosen_mean_tokens": self.sums[2] / n, "rejected_mean_tokens": self.sums[3] / n,
                                "chosen_tokens_quantiles": _quantiles(arr[:, 2]),
                                "rejected_tokens_quantiles": _quantiles(arr[:, 3])}
        if self.max_length is not None:
            card["truncation"] = {"max_length": self.max_length, **{f"{k}_over": v for k, v in self.over.items()},
                                  "either_over_rate": self.over["either"] / n}
        return card


def _quantiles(column: np.ndarray) -> dict[int, float]:
    return {q: float(np.percentile(column, q)) for q in (5, 50, 95)}


class _Labels:
    """Ties, margins, weights and strength labels."""

    def __init__(self) -> None:
        self.ties = self.margins = self.weighted = 0
        self.weight_sum = 0.0
        self.strengths: Counter[str] = Counter()

    def add(self, pair: PreferencePair) -> None:
        self.ties += bool(pair.tie)
        self.margins += pair.margin is not None
        if pair.weight is not None:
            self.weighted += 1
            self.weight_sum += pair.weight
        if pair.strength is not None:
            self.strengths[pair.strength] += 1

    def card(self) -> dict[str, Any]:
        return {"ties": self.ties, "with_margin": self.margins, "weighted": self.weighted,
                "mean_weight": self.weight_sum / self.weighted if self.weighted else None,
                "strength_labels": dict(self.strengths)}


class _Prompts:
    """Exact and near-duplicate prompts among the first ``dedup_sample``; prompts sharing a word n-gram with
    ``eval_texts`` (contamination)."""

    def __init__(self, dedup_sample: int, near_threshold: float, eval_texts: Sequence[str] | None, n: int):
        self.dedup_sample, self.near_threshold, self.eval_texts, self.n = dedup_sample, near_threshold, eval_texts, n
        self.prompts: list[str] = []
        self.eval_index: set[str] = set()
        for text in eval_texts or ():
            self.eval_index |= ngrams(text, n)
        self.contaminated, self.too_short = 0, 0
        self.listed: list[str] = []

    def add(self, location: str, pair: PreferencePair) -> None:
        text = " ".join(m.content for m in pair.prompt)
        if len(self.prompts) < self.dedup_sample:
            self.prompts.append(text)
        if self.eval_texts is None:
            return
        grams = ngrams(text, self.n)
        self.too_short += not grams
        if self.eval_index and any(g in self.eval_index for g in grams):
            self.contaminated += 1
            if len(self.listed) < 100:
                self.listed.append(location)

    def duplicates(self) -> dict[str, Any]:
        dups = (near_duplicates(self.prompts, self.near_threshold) if len(self.prompts) > 1
                else {"exact_duplicates": 0, "near_duplicates": 0})
        return {"checked_prompts": len(self.prompts), "exact": dups["exact_duplicates"], "near": dups["near_duplicates"],
                "near_threshold": self.near_threshold}

    def contamination(self, count: int) -> dict[str, Any]:
        if self.eval_texts is None:
            return {}
        return {"contamination": {"n": self.n, "eval_items": len(self.eval_texts), "contaminated": self.contaminated,
                                  "rate": self.contaminated / count, "first_listed": self.listed,
                                  "too_short_to_check": self.too_short}}


def data_card(records: Iterable[tuple[str, PreferencePair]], dedup_sample: int = 20000,
              token_counter: Callable[[Sequence[tuple[Any, str]]], list[int]] | None = None, max_length: int | None = None,
              eval_texts: Sequence[str] | None = None, contamination_n: int = 13, near_threshold: float = 0.8,
              reservoir_size: int = 10000, batch: int = 256) -> dict[str, Any]:
    """Streaming summary of a preference file, in memory that does not grow with it (fixed-size reservoirs):

    * counts, word lengths of chosen and rejected (means over all pairs; quantiles and histograms from a
      ``reservoir_size`` uniform sample), the chosen-longer rate, ties, margins, weights, strength labels;
    * with ``token_counter`` (``(prompt, response)`` pairs -> token counts of the rendered conversation) and
      ``max_length``: token lengths and how many chosen / rejected / either side exceed ``max_length`` (what training
      at that length would cut or drop);
    * exact and near-duplicate prompts (MinHash LSH) among the first ``dedup_sample`` pairs;
    * with ``eval_texts``: training prompts sharing a word ``contamination_n``-gram with them (all counted, the first
      100 listed), and how many prompts are shorter than ``contamination_n`` words (they cannot be checked this way).
    """
    if dedup_sample < 0 or reservoir_size < 1 or batch < 1:
        raise ConfigError(f"dedup_sample must be >= 0 and reservoir_size, batch >= 1; got {dedup_sample}, {reservoir_size}, {batch}")
    lengths = _Lengths(token_counter, max_length, reservoir_size, batch)
    labels, prompts = _Labels(), _Prompts(dedup_sample, near_threshold, eval_texts, contamination_n)
    for location, pair in records:
        lengths.add(pair)
        labels.add(pair)
        prompts.add(location, pair)
    lengths.flush()
    if not lengths.count:
        return {"pairs": 0}
    return {"pairs": lengths.count, **lengths.words_card(), **labels.card(), "duplicates": prompts.duplicates(),
            "histograms": lengths.histograms(), "sample_size": len(lengths.reservoir), **lengths.tokens_card(),
            **prompts.contamination(lengths.count)}


def pairs_from_ratings(groups: dict[Any, list[tuple[str, float]]], rule: str = "best_worst", min_gap: float = 0.0,
                       seed: int = 0, length_tolerance: float | None = None) -> list[dict[str, Any]]:
    """Preference pairs from rated replies grouped by prompt (UltraFeedback-style construction), each with
    ``margin`` = the rating gap:

    * ``best_random``: the best reply against one other chosen at random (UltraFeedback's binarization);
    * ``best_worst``: the best against the worst;
    * ``all``: every pair whose ratings differ by more than ``min_gap``.

    Pairs whose gap is not above ``min_gap`` are left out; ties at the top are broken by order. With
    ``length_tolerance``, only replies whose word count is within that fraction of the best's are candidates
    (length-matched construction: ``|w - w_best| <= tolerance * max(w, w_best)``); ``all`` applies it to every pair.

    >>> rows = pairs_from_ratings({"q": [("a", 1.0), ("b", 3.0), ("c", 2.0)]}, "all")
    >>> [(r["chosen"], r["rejected"], r["margin"]) for r in rows]
    [('b', 'a', 2.0), ('c', 'a', 1.0), ('b', 'c', 1.0)]
    """
    if length_tolerance is not None and length_tolerance < 0:
        raise ConfigError(f"length_tolerance must be >= 0, got {length_tolerance}")
    rng = random.Random(seed)
    out = []
    for prompt, rated in groups.items():
        if len(rated) < 2:
            continue
        def matched(a: str, b: str) -> bool:
            if length_tolerance is None:
                return True
            wa, wb = len(a.split()), len(b.split())
            return abs(wa - wb) <= length_tolerance * max(wa, wb)

        if rule == "all":
            candidates = [(rated[i], rated[j]) for j in range(len(rated)) for i in range(len(rated))
                          if rated[i][1] > rated[j][1] and matched(rated[i][0], rated[j][0])]
        else:
            best = max(rated, key=lambda r: r[1])
            others = [r for r in rated if r is not best and matched(r[0], best[0]) and best[1] - r[1] > min_gap]
            if not others:
                continue
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


def swap_positions(pairs: Sequence[Mapping[str, Any]], winner_field: str = "winner") -> list[dict[str, Any]]:
    """Judge data with every pair also in the other order (``response_a`` <-> ``response_b``, the winner flipped), so a
    judge or a pairwise RM cannot learn a position preference.

    >>> swap_positions([{"response_a": "x", "response_b": "y", "winner": "A"}])[1]
    {'response_a': 'y', 'response_b': 'x', 'winner': 'B'}
    """
    flip: dict[Any, Any] = {"A": "B", "B": "A", "tie": "tie"}
    out = []
    for p in pairs:
        out.append(dict(p))
        out.append({**p, "response_a": p["response_b"], "response_b": p["response_a"],
                    winner_field: flip.get(p.get(winner_field), p.get(winner_field))})
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
