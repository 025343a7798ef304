import random

import pytest

from rewardlab.data.normalization import TargetNormalizer


def test_global_normalization_round_trips():
    rng = random.Random(0)
    scores = [{"a": rng.uniform(1, 5), "b": rng.gauss(10, 3)} for _ in range(50)]
    norm = TargetNormalizer.fit(scores, [None] * 50, "global")
    z = [norm.normalize(s, None) for s in scores]
    assert sum(v[0] for v in z) / 50 == pytest.approx(0.0, abs=1e-9)
    for s, v in zip(scores, z):
        assert norm.to_original("a", v[0]) == pytest.approx(s["a"])
        assert norm.to_original("b", v[1]) == pytest.approx(s["b"])
    assert TargetNormalizer.from_json(norm.to_json()) == norm


def test_per_annotator_normalization_removes_annotator_bias():
    rng = random.Random(1)
    quality = [rng.gauss(0, 1) for _ in range(40)]
    # annotator "harsh" rates everything 2 points lower and on a squeezed scale
    scores = [{"s": 3 + q} for q in quality] + [{"s": 1 + 0.5 * q} for q in quality]
    annotators = ["kind"] * 40 + ["harsh"] * 40
    norm = TargetNormalizer.fit(scores, annotators, "annotator")
    kind = [norm.normalize(s, a)[0] for s, a in zip(scores[:40], annotators[:40])]
    harsh = [norm.normalize(s, a)[0] for s, a in zip(scores[40:], annotators[40:])]
    assert kind == pytest.approx(harsh, abs=1e-9)


def test_none_mode_is_identity():
    norm = TargetNormalizer.fit([{"s": 4.0}], [None], "none")
    assert norm.normalize({"s": 4.0}, None) == (4.0,) and norm.to_original("s", 4.0) == 4.0
