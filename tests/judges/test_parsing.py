import math

import pytest

from rewardlab.judges.parsing import expected_score, pairwise_probabilities, parse_pairwise, parse_ranking, parse_score


@pytest.mark.parametrize("text, expected", [
    ("Reasoning... Verdict: [[A]]", "A"),
    ("Verdict: [[ b ]]", "B"),
    ("They are equal. Verdict: [[TIE]]", "tie"),
    ("Format is [[A]] or [[B]]. Verdict: [[B]]", "B"),  # the last verdict counts
    ("Verdict: A", None),
    ("Verdict: [[A or B]]", None),
    ("", None),
    ("[[C]]", "tie"),
    ("Verdict: [[]]", None),
])
def test_pairwise_parsing_including_malformed_outputs(text, expected):
    verdict = parse_pairwise(text)
    assert verdict.winner == expected and verdict.raw == text


@pytest.mark.parametrize("text, expected", [
    ("Score: [[7]]", 7.0), ("Score: [[7.5]]", 7.5), ("Score: [[0]]", None), ("Score: [[11]]", None),
    ("Score: 7", None), ("Score: [[seven]]", None), ("Score: [[nan]]", None), ("Score: [[inf]]", None),
])
def test_score_parsing(text, expected):
    assert parse_score(text, 1, 10).score == expected


def test_ranking_parsing():
    assert parse_ranking("[[3, 1, 2]]", 3).ranking == (2, 0, 1)
    assert parse_ranking("[[3 > 1 > 2]]", 3).ranking == (2, 0, 1)
    assert parse_ranking("[[1, 2]]", 3).ranking is None
    assert parse_ranking("[[1, 2, 4]]", 3).ranking is None
    assert parse_ranking("no ranking", 3).ranking is None


def test_probability_weighted_verdicts():
    tokens = ["The answer", " Verdict: [[", "B", "]]"]
    alts = [{}, {}, {"B": math.log(0.7), "A": math.log(0.2), " tie": math.log(0.05), "x": math.log(0.05)}, {}]
    probs = pairwise_probabilities(tokens, alts)
    assert probs["B"] == pytest.approx(0.7 / 0.95) and sum(probs.values()) == pytest.approx(1.0)
    assert pairwise_probabilities(["no verdict"], [{}]) is None
    assert expected_score({"3": math.log(0.25), "5": math.log(0.75)}, 1, 10) == pytest.approx(4.5)
    assert expected_score({"x": 0.0}) is None
