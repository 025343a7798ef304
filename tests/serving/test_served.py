"""The server's batch budget: estimated tokens per batch, with a prompt's samples counted once when the scorer shares it."""

import concurrent.futures
import time

import httpx
import pytest

from rewardlab.scoring.config import RewardModelConfig
from rewardlab.scoring.local import LocalScorer
from rewardlab.scoring.protocol import FunctionScorer
from rewardlab.serving.app import ServeConfig, create_app
from rewardlab.serving.served import ServedScorer

from .server import running

PROMPT = "Please explain, step by step and with an example for each step, how a bill becomes a law. " * 4  # 364 chars


def _counted(meter, kind, items):
    """What ``items`` add to the batch, then they join it."""
    cost = meter.cost(kind, items)
    meter.add(kind, items)
    return cost


def test_a_prompts_other_samples_count_only_their_replies_when_the_scorer_shares_prefixes(rm):
    assert rm.shares_prefixes
    meter = ServedScorer(rm).token_meter()
    first = _counted(meter, "pairs", [(PROMPT, "It is voted on.")])
    assert first == pytest.approx((len(PROMPT) + 1 + 15) / 4)
    assert _counted(meter, "pairs", [(PROMPT, "Committees first."), (PROMPT, "Then the senate.")]) == pytest.approx((17 + 16) / 4)
    assert _counted(meter, "pairs", [("Another question entirely, and a short one.", "Yes.")]) == pytest.approx((43 + 1 + 4) / 4)
    texts = ServedScorer(rm).token_meter()  # rendered queries: what follows the common prefix counts
    assert _counted(texts, "texts", [PROMPT + "A: one"]) == pytest.approx((len(PROMPT) + 6) / 4)
    assert _counted(texts, "texts", [PROMPT + "A: two!"]) == pytest.approx(4 / 4)  # "two!": after the prompt and "A: "


def test_one_call_with_a_prompts_samples_counts_the_prompt_once(rm):
    samples = [(PROMPT, f"Sample {k}.") for k in range(8)]
    assert ServedScorer(rm).token_meter().cost("pairs", samples) == pytest.approx((len(PROMPT) + 1 + 9 + 7 * 2) / 4)


def test_a_job_that_does_not_join_leaves_nothing_behind(rm):
    meter = ServedScorer(rm).token_meter()
    assert meter.cost("pairs", [(PROMPT, "One.")]) == meter.cost("pairs", [(PROMPT, "One.")])  # cost has no side effect
    meter.add("pairs", [(PROMPT, "One.")])
    assert meter.cost("pairs", [(PROMPT, "Two.")]) == pytest.approx(4 / 4)


def test_every_sample_counts_whole_when_the_scorer_does_not_share(rm):
    plain = LocalScorer(rm.model, rm.tokenizer, RewardModelConfig(model="rm", max_length=64, share_prefix=False), rm.metadata)
    for scorer in (plain, FunctionScorer(lambda p, r: 0.0)):
        meter = ServedScorer(scorer).token_meter()
        assert [_counted(meter, "pairs", [(PROMPT, "It is voted on.")]) for _ in range(3)] == [(len(PROMPT) + 16) / 4] * 3
    assert ServedScorer(plain).tokens_per_forward == 2048 and ServedScorer(FunctionScorer(lambda p, r: 0.0)).tokens_per_forward is None


class _SharingRecorder:
    """A scorer that shares prefixes (as a decoder RM does) and records how many items each model call got."""

    max_batch_tokens = None

    def __init__(self, shares):
        self.calls, self.shares_prefixes = [], shares

    def score(self, prompts, responses):
        self.calls.append(len(prompts))
        time.sleep(0.02)
        return [float(len(r)) for r in responses]

    def describe(self):
        return {"kind": "function", "model": "recorder", "settings": {}, "record": {}}


@pytest.mark.parametrize("shares", [True, False])
def test_a_prompts_samples_from_separate_requests_fit_one_batch_when_their_prompt_is_computed_once(shares):
    scorer = _SharingRecorder(shares)
    app = create_app(scorer, ServeConfig(batch_window_ms=50, batch_tokens=150))  # one prompt is ~91 tokens
    with running(app) as (url, _), httpx.Client() as client:
        scorer.calls.clear()  # the server's warm-up call

        def call(k):  # one sample per request, as OpenRLHF's rollouts send them
            return client.post(url + "/v1/score", json={"prompts": [PROMPT], "responses": [f"sample {k:02d}"]}).json()["rewards"]

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(call, range(48)))
    assert answers == [[9.0]] * 48
    assert sum(scorer.calls) == 48
    if shares:
        assert max(scorer.calls) > 2  # budgeted as one prompt plus short replies
    else:
        assert max(scorer.calls) == 1  # two whole samples pass the budget
