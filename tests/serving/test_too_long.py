"""Over-long replies in the reward server (issue 32, item 2): one long rollout must not stop an RL run. The rm fixture
has max_length 64; a 600-word reply cannot fit even without its prompt."""

import httpx
import pytest

from rewardlab.errors import ConfigError
from rewardlab.serving.app import ServeConfig, create_app

from .server import running

LONG = "word " * 600
PROMPTS, REPLIES = ["q", "q", "q"], ["ok", LONG, "fine"]


def _metric(url: str, policy: str) -> float:
    lines = httpx.get(url + "/metrics").text.splitlines()
    return next(float(line.split()[-1]) for line in lines if line.startswith(f'rewardlab_too_long_items_total{{policy="{policy}"}}'))


def test_default_truncates_to_the_head_that_fits_and_marks_it(rm):
    assert ServeConfig().too_long == "truncate"
    expected_short = rm.score(["q", "q"], ["ok", "fine"])
    with running(create_app(rm)) as (url, _):
        reply = httpx.post(url + "/v1/score", json={"prompts": PROMPTS, "responses": REPLIES}).json()
        query = rm.tokenizer.apply_chat_template([{"role": "user", "content": "q"}], tokenize=False, add_generation_prompt=True)
        openrlhf = httpx.post(url + "/get_reward", json={"query": [query + "ok", query + LONG]}).json()
        counted = _metric(url, "truncate")
    assert reply["too_long"] == [1] and reply["too_long_policy"] == "truncate"
    assert [reply["rewards"][0], reply["rewards"][2]] == pytest.approx(expected_short, abs=1e-5)  # the others untouched
    k = len(LONG)
    while rm.too_long(["q"], [LONG[:k]]):  # the longest head that fits, found independently: words down, chars up
        k = LONG.rfind(" ", 0, k - 1) + 1
    while not rm.too_long(["q"], [LONG[: k + 1]]):
        k += 1
    assert 0 < k < len(LONG) and reply["rewards"][1] == pytest.approx(rm.score(["q"], [LONG[:k]])[0], abs=1e-5)
    assert openrlhf["extra_logs"]["too_long"] == [0.0, 1.0] and all(isinstance(r, float) for r in openrlhf["rewards"])
    assert counted == 2


@pytest.mark.parametrize("policy,fill", [("null", None), ("penalty", -3.0)])
def test_null_and_penalty_answer_the_item_and_score_the_rest(rm, policy, fill):
    config = ServeConfig(too_long=policy, **({"too_long_penalty": fill} if policy == "penalty" else {}))
    with running(create_app(rm, config)) as (url, _):
        reply = httpx.post(url + "/v1/score", json={"prompts": PROMPTS, "responses": REPLIES}).json()
    assert reply["rewards"][1] == fill and reply["too_long"] == [1]
    assert [reply["rewards"][0], reply["rewards"][2]] == pytest.approx(rm.score(["q", "q"], ["ok", "fine"]), abs=1e-5)


def test_error_policy_refuses_the_request_naming_the_item(rm):
    with running(create_app(rm, ServeConfig(too_long="error"))) as (url, _):
        reply = httpx.post(url + "/v1/score", json={"prompts": PROMPTS, "responses": REPLIES})
        assert reply.status_code == 422 and reply.json()["detail"]["too_long"] == [1]
        assert _metric(url, "error") == 1


def test_a_penalty_without_the_penalty_policy_is_refused():
    with pytest.raises(ConfigError, match="too_long_penalty"):
        ServeConfig(too_long_penalty=-1.0)
