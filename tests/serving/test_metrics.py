"""GET /metrics: Prometheus text that prometheus-client's own parser reads, counters that match the traffic sent,
and reward windows with drift against the first window."""

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rewardlab.scoring.protocol import FunctionScorer
from rewardlab.serving.app import ServeConfig, create_app

from .server import running


def samples(text):
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_parse_and_count_the_requests_items_errors_and_windows():
    scorer = FunctionScorer(lambda prompt, response: float(len(response.split())), name="words")
    with running(create_app(scorer, ServeConfig(metrics_window=8))) as (url, _):
        for i in range(3):  # 3 x 4 items of 1..4 words
            assert httpx.post(url + "/v1/score", json={"prompts": ["q"] * 4, "responses": ["a", "a b", "a b c", "a b c d"]}).status_code == 200
        assert httpx.post(url + "/v1/score", json={"prompts": ["q"], "responses": []}).status_code == 422
        for _ in range(2):  # 2 x 4 items of 11..14 words: the second window has moved by 10 words
            long = [" ".join(["w"] * n) for n in (11, 12, 13, 14)]
            httpx.post(url + "/get_reward", json={"query": ["Q " + t for t in long], "prompts": ["Q "] * 4})
        reply = httpx.get(url + "/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    got = samples(reply.text)
    assert got[("rewardlab_requests_total", (("endpoint", "/v1/score"), ("status", "200")))] == 3
    assert got[("rewardlab_requests_total", (("endpoint", "/v1/score"), ("status", "422")))] == 1
    assert got[("rewardlab_requests_total", (("endpoint", "/get_reward"), ("status", "200")))] == 2
    assert got[("rewardlab_items_total", (("endpoint", "/v1/score"),))] == 12
    assert got[("rewardlab_items_total", (("endpoint", "/get_reward"),))] == 8
    assert got[("rewardlab_request_seconds_count", (("endpoint", "/v1/score"),))] == 4
    assert got[("rewardlab_batch_items_sum", ())] == 20  # every scored item went through a model call once
    assert got[("rewardlab_windows_total", ())] == 2  # 20 items, windows of 8
    assert got[("rewardlab_queue_items", ())] == 0
    # window 2 = items 9-16: 4 short (1..4 words) + 4 long (11..14); window 1 = 8 short
    assert got[("rewardlab_window_reward_mean", ())] == pytest.approx((10 + 50) / 8)
    assert got[("rewardlab_window_reward_drift", ())] > 1


def test_metrics_can_be_switched_off_and_need_the_key_when_one_is_set(monkeypatch):
    scorer = FunctionScorer(lambda prompt, response: 1.0)
    with running(create_app(scorer, ServeConfig(metrics=False))) as (url, _):
        assert httpx.get(url + "/metrics").status_code == 404
    monkeypatch.setenv("RL_TEST_KEY", "secret")
    with running(create_app(scorer, ServeConfig(api_key_env="RL_TEST_KEY"))) as (url, _):
        assert httpx.get(url + "/metrics").status_code == 401
        assert httpx.get(url + "/metrics", headers={"Authorization": "Bearer secret"}).status_code == 200


def test_without_prometheus_client_the_server_names_the_extra(monkeypatch):
    import sys

    from rewardlab.extras import MissingExtraError

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(MissingExtraError, match=r'pip install "rewardlab\[serve\]"'):
        create_app(FunctionScorer(lambda p, r: 1.0))
    assert create_app(FunctionScorer(lambda p, r: 1.0), ServeConfig(metrics=False)) is not None


_NO_IMPORTS = """
import sys, threading
from fastapi.testclient import TestClient
from rewardlab.scoring.local import load_reward_model
from rewardlab.serving.app import ServeConfig, create_app

app = create_app(load_reward_model(sys.argv[1]), ServeConfig(metrics_window=4))
with TestClient(app) as client:  # startup (model warm-up) has run
    seen = []
    sys.addaudithook(lambda event, args: seen.append(args[0]) if event == "import"
                     and threading.current_thread().name.startswith("rewardlab-scorer") else None)
    for _ in range(3):
        assert client.post("/get_reward", json={"query": ["Human: hi Assistant: a b c"] * 3 + ["plain text"]}).status_code == 200
        assert client.post("/v1/score", json={"prompts": ["hi"] * 4, "responses": ["a", "a b", "a b c", "d"]}).status_code == 200
    assert client.get("/metrics").text.count("rewardlab_windows_total 6.0") == 1
    assert any(t.name.startswith("rewardlab-scorer") for t in threading.enumerate())  # the hook watched a real thread
print("IMPORTED", sorted(set(seen)))
"""


@pytest.mark.slow
def test_after_start_up_the_scoring_thread_imports_nothing(rm, tmp_path):
    """A fresh server's scoring thread loads no module once it is ready: a lazy import there stalls every request in
    flight (scipy.stats, loaded when the first reward window closed, cost 0.6 s mid-run and set the p99 at 8 one-query
    requests in flight). A fresh interpreter, so modules other tests loaded do not hide one."""
    import subprocess
    import sys

    from rewardlab.models.io import RewardModelMetadata, save_pretrained

    folder = tmp_path / "rm"
    save_pretrained(rm.model, rm.tokenizer, RewardModelMetadata(pooling=rm.model.pooling, max_length=64), folder)
    done = subprocess.run([sys.executable, "-c", _NO_IMPORTS, str(folder)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "IMPORTED []"
