"""The reward server: every endpoint, its contracts (OpenRLHF's exact request shapes), limits and hostile input."""

import concurrent.futures
import json
import socket
import time

import httpx
import pytest

from rewardlab.errors import ConfigError
from rewardlab.scoring.protocol import FunctionScorer
from rewardlab.serving.app import ServeConfig, create_app

from .server import running

PROMPTS = ["What is 2+2?", [{"role": "user", "content": "Say hi"}], "Name a bird.", "Tell me about rivers and their deltas."]
RESPONSES = ["4", "Hi!", "A robin, which sings at dawn.", "Rivers carry sediment to the sea."]


def test_v1_score_and_metadata_match_the_offline_scorer(rm):
    expected = rm.score(PROMPTS, RESPONSES)
    with running(create_app(rm)) as (url, _):
        assert httpx.get(url + "/health").json() == {"status": "ok"}
        reply = httpx.post(url + "/v1/score", json={"prompts": PROMPTS, "responses": RESPONSES}).json()
        meta = httpx.get(url + "/v1/metadata").json()
    assert reply["rewards"] == pytest.approx(expected, abs=1e-5) and reply["heads"] is None
    assert reply["model"] == str(rm.source) and meta["max_length"] == 64 and meta["kind"] == "local" and meta["version"]


def test_get_reward_takes_both_openrlhf_request_shapes(rm):
    tok = rm.tokenizer
    prompts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
               for p in ("What is 2+2?", "Name a bird.")]
    queries = [p + r + "<|im_end|>" for p, r in zip(prompts, ("4", "A robin."))]  # OpenRLHF: prompt + response + EOS, rendered
    expected = rm.score(["What is 2+2?", "Name a bird."], ["4", "A robin."])  # the same conversations, templated by rewardlab
    with running(create_app(rm)) as (url, _):
        old = httpx.post(url + "/get_reward", json={"query": queries}).json()
        new = httpx.post(url + "/get_reward", json={"query": queries, "prompts": prompts, "labels": ["", ""]}).json()
    assert old["rewards"] == pytest.approx(expected, abs=1e-5) and new["rewards"] == old["rewards"]
    assert new["scores"] == new["rewards"] and new["extra_logs"] == {"too_long": [0.0, 0.0]}


def test_get_reward_splits_queries_for_scorers_that_need_a_prompt():
    scorer = FunctionScorer(lambda prompt, response: float(len(response)), name="len")
    with running(create_app(scorer)) as (url, _):
        ok = httpx.post(url + "/get_reward", json={"query": ["Q: hi A: hello", "Q: x A: y"], "prompts": ["Q: hi A: ", "Q: x A: "]})
        no_prompts = httpx.post(url + "/get_reward", json={"query": ["Q: hi A: hello"]})
    assert ok.json()["rewards"] == [5.0, 1.0]
    assert no_prompts.status_code == 422 and "needs 'prompts'" in no_prompts.text


def test_concurrent_requests_are_batched_and_each_gets_its_own_rewards(rm):
    texts = [f"Answer number {i} " + "word " * (i % 7) for i in range(40)]
    prompts = [f"Question {i}?" for i in range(40)]
    expected = rm.score(prompts, texts)
    app = create_app(rm, ServeConfig(batch_window_ms=20))
    with running(app) as (url, _), httpx.Client() as client:
        def call(k):
            idx = [(k + j) % 40 for j in range(3)]
            reply = client.post(url + "/v1/score", json={"prompts": [prompts[i] for i in idx], "responses": [texts[i] for i in idx]})
            return idx, reply.json()["rewards"]

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(call, range(64)))
    for idx, rewards in results:
        assert rewards == pytest.approx([expected[i] for i in idx], abs=1e-5)  # nothing lost or reordered
    assert app.state.batcher.batches < 32  # 64 requests shared model calls, two or more a call (4 seen; warm-up not counted)


def test_hostile_requests_get_their_4xx_and_the_server_keeps_serving(rm):
    config = ServeConfig(max_body_bytes=20_000, max_items=50, body_timeout_s=1.0, too_long="error")
    with running(create_app(rm, config)) as (url, _), httpx.Client() as client:
        post = lambda body, **kw: client.post(url + "/v1/score", **({"json": body} if body is not None else kw))  # noqa: E731
        assert post({"prompts": ["x"] * 3000, "responses": ["y"] * 3000}).status_code == 413  # oversized body
        assert post({"prompts": ["x"] * 51, "responses": ["y"] * 51}).status_code == 422  # too many items
        wrong = post({"prompts": [1, 2], "responses": ["a", "b"]})
        assert wrong.status_code == 422 and "prompts" in wrong.text  # the field is named
        assert post({"responses": ["a"]}).status_code == 422  # missing field
        assert post(None, content=b'{"prompts": ["\xff\xfe"], "responses": ["a"]}',
                    headers={"content-type": "application/json"}).status_code in (400, 422)  # invalid UTF-8
        assert post({"prompts": ["a", "b"], "responses": ["c"]}).status_code == 422  # lengths differ
        too_long = post({"prompts": ["q", "q", "q"], "responses": ["ok", "word " * 200, "fine"]})
        assert too_long.status_code == 422 and too_long.json()["detail"]["too_long"] == [1]  # named, never truncated
        # a slowloris client sends half a body and stalls; others are served meanwhile and it gets 408
        host, port = url.removeprefix("http://").split(":")
        slow = socket.create_connection((host, int(port)))
        slow.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"pro")
        started = time.time()
        assert post({"prompts": ["q"], "responses": ["a"]}).status_code == 200
        assert time.time() - started < 1.0
        slow.settimeout(10)
        assert b" 408 " in slow.recv(4096)
        slow.close()
        assert post({"prompts": ["q"], "responses": ["a"]}).status_code == 200


def test_bearer_token_is_required_when_configured(rm, monkeypatch):
    monkeypatch.setenv("RL_TEST_KEY", "s3cret")
    with running(create_app(rm, ServeConfig(api_key_env="RL_TEST_KEY"))) as (url, _):
        body = {"prompts": ["q"], "responses": ["a"]}
        assert httpx.post(url + "/v1/score", json=body).status_code == 401
        assert httpx.post(url + "/v1/score", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.post(url + "/v1/score", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(url + "/health").status_code == 200  # probes need no key
    monkeypatch.delenv("RL_TEST_KEY")
    with pytest.raises(ConfigError, match="RL_TEST_KEY"):
        create_app(rm, ServeConfig(api_key_env="RL_TEST_KEY"))


def slow_scorer(seconds):
    scorer = FunctionScorer(lambda prompt, response: time.sleep(seconds) or 1.0, name="slow")
    return scorer


def test_a_full_queue_answers_503_with_retry_after_and_shutdown_finishes_in_flight_requests():
    app = create_app(slow_scorer(0.5), ServeConfig(max_queue_items=1, batch_window_ms=0, retry_after_s=2))
    with running(app) as (url, server):
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(httpx.post, url + "/v1/score", json={"prompts": ["q"], "responses": ["a"]}, timeout=30)
            time.sleep(0.2)
            busy = httpx.post(url + "/v1/score", json={"prompts": ["q"], "responses": ["b"]}, timeout=30)
            assert busy.status_code == 503 and busy.headers["retry-after"] == "2"
            assert first.result().json()["rewards"] == [1.0]
        in_flight = concurrent.futures.ThreadPoolExecutor(1).submit(
            httpx.post, url + "/v1/score", json={"prompts": ["q"], "responses": ["c"]}, timeout=30)
        time.sleep(0.2)
        server.should_exit = True  # what SIGTERM does
        assert in_flight.result().json()["rewards"] == [1.0]


def test_remote_scorer_talks_to_the_server_and_eval_runs_against_it(rm, tmp_path):
    from rewardlab.cli import main
    from rewardlab.scoring.config import RemoteConfig
    from rewardlab.scoring.remote import RemoteScorer

    from ..conftest import write_jsonl

    expected = rm.score(PROMPTS, RESPONSES)
    data = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "Hi", "chosen": "Hello, how are you?", "rejected": "Go away."}] * 4)
    with running(create_app(rm)) as (url, _):
        remote = RemoteScorer(RemoteConfig(model=url, batch_size=3))
        assert remote.score(PROMPTS, RESPONSES) == pytest.approx(expected, abs=1e-5)
        assert remote.requests == 1 + 2  # metadata, then two chunks over one connection
        assert remote.describe()["settings"]["server_model"] == str(rm.source)
        openrlhf = RemoteScorer(RemoteConfig(model=url, contract="openrlhf"))
        assert len(openrlhf.score(["Hi"], ["there"])) == 1
        assert main(["eval", "--model", url, "--data", str(data), "--output-dir", str(tmp_path / "e"), "--bootstrap", "0"]) == 0
        assert main(["score", "--model", url, "--data", str(data), "--output", str(tmp_path / "s.jsonl")]) == 0
        # issue 33 item 11: a plain {prompt, response} file through the openrlhf contract (its prompts read as messages)
        items = write_jsonl(tmp_path / "items.jsonl", [{"prompt": "Hi", "response": "there"}])
        assert main(["score", "--model", url, "--contract", "openrlhf", "--data", str(items), "--output", str(tmp_path / "o.jsonl")]) == 0
        assert json.loads((tmp_path / "o.jsonl").read_text())["reward"] == pytest.approx(openrlhf.score(["Hi"], ["there"])[0])
        with pytest.raises(ConfigError, match="item 0: .*2 messages.*contract 'rewardlab'"):
            openrlhf.score([[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]], ["c"])
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert rows[0]["chosen_reward"] == pytest.approx(rm.score(["Hi"], ["Hello, how are you?"])[0], abs=1e-5)
    results = json.loads((tmp_path / "e" / "results.json").read_text())
    assert results["benchmark"]["settings"]["scorer"]["kind"] == "remote"


def test_remote_scorer_retries_busy_servers_and_names_too_long_items():
    from rewardlab.scoring.config import RemoteConfig
    from rewardlab.scoring.remote import RemoteScorer, RemoteScorerError

    calls = {"n": 0}
    scorer = FunctionScorer(lambda p, r: float(len(r)))

    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    flaky = FastAPI()

    @flaky.post("/v1/score")
    async def score(body: dict):
        calls["n"] += 1
        if calls["n"] <= 2:
            return JSONResponse({"detail": "busy"}, 503, headers={"Retry-After": "0"})
        if "x" * 10 in body["responses"]:
            return JSONResponse({"detail": {"message": "too long", "too_long": [1], "max_length": 8}}, 422)
        return {"rewards": scorer.score(body["prompts"], body["responses"])}

    @flaky.get("/v1/metadata")
    async def metadata():
        return {"model": "flaky"}

    from rewardlab.errors import SequenceTooLongError

    with running(flaky) as (url, _):
        remote = RemoteScorer(RemoteConfig(model=url, backoff_seconds=0.01))
        assert remote.score(["a", "b"], ["xy", "z"]) == [2.0, 1.0] and calls["n"] == 3
        with pytest.raises(SequenceTooLongError) as err:
            RemoteScorer(RemoteConfig(model=url, batch_size=2)).score(["a"] * 4, ["ok", "ok", "ok", "x" * 10])
        assert err.value.items == (3,)  # the index in the whole call, not in the chunk
        with pytest.raises(RemoteScorerError, match="after 2 attempts"):
            RemoteScorer(RemoteConfig(model="http://127.0.0.1:9", max_retries=1, backoff_seconds=0.01)).score(["a"], ["b"])


class _BatchRecorder:
    """A scorer that records how many items each model call got."""

    def __init__(self):
        self.calls = []

    def score(self, prompts, responses):
        self.calls.append(len(prompts))
        time.sleep(0.02)  # a forward pass: later requests queue meanwhile
        return [float(len(r)) for r in responses]

    def describe(self):
        return {"kind": "function", "model": "recorder", "settings": {}, "record": {}}


@pytest.mark.parametrize("budget, most", [(10, 1), ("none", 16)])
def test_a_token_budget_closes_a_batch_so_a_request_waits_for_one_forward_pass(budget, most):
    scorer = _BatchRecorder()
    app = create_app(scorer, ServeConfig(batch_window_ms=50, batch_tokens=budget))
    with running(app) as (url, _), httpx.Client() as client:
        def call(k):  # 4 + 36 characters: about 10 tokens per request
            return client.post(url + "/v1/score", json={"prompts": ["Q%02d?" % k], "responses": ["x" * 36]}).json()["rewards"]

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(call, range(48)))
    assert answers == [[36.0]] * 48  # every request answered, whatever the grouping
    assert max(scorer.calls) <= most and sum(scorer.calls) >= 48
    if budget == "none":
        assert max(scorer.calls) > 1  # the same load groups requests when only items count


def test_the_token_budget_defaults_to_the_scorers_own_cap_per_forward_pass(rm):
    assert create_app(rm).state.batcher.max_batch_cost == rm.max_batch_tokens == 2048  # a reward model on CPU
    assert create_app(FunctionScorer(lambda p, r: 0.0)).state.batcher.max_batch_cost is None
    with pytest.raises(ConfigError, match="'batch_tokens' must be >= 1"):
        ServeConfig(batch_tokens=0)
