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
