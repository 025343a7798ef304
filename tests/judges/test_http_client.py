"""The judge's HTTP client under a misbehaving server (httpx transports injected): redirects, junk replies, a
dribbling server, empty content, Retry-After dates; and a corrupt cache file."""

import json
import time

import httpx
import pytest

from rewardlab.errors import RewardlabError
from rewardlab.judges.cache import CachedClient
from rewardlab.judges.clients import ClientError, OpenAIChatClient

OK = {"choices": [{"message": {"content": "Verdict: [[A]]"}}], "model": "m"}


def _client(handler, **kw):
    return OpenAIChatClient("https://judge.example/v1", "m", api_key_env="JUDGE_KEY", backoff_seconds=0.001,
                            transport=httpx.MockTransport(handler), **kw)


def test_a_redirect_is_not_followed_and_the_key_goes_nowhere_else(monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-secret")
    seen = []

    def handler(request):
        seen.append((request.url.host, request.headers.get("authorization")))
        return httpx.Response(302, headers={"location": "https://evil.example/steal"})

    with pytest.raises(ClientError, match="redirect to 'https://evil.example/steal'; not followed"):
        _client(handler).complete([{"role": "user", "content": "hi"}])
    assert seen == [("judge.example", "Bearer sk-secret")]


def test_junk_replies_are_retried_then_named_and_the_key_is_never_echoed(monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-secret")
    replies = iter([httpx.Response(200, text="<html>gateway</html>"), httpx.Response(200, text='{"choices": [{"mess'),
                    httpx.Response(500, text="error for key sk-secret"), httpx.Response(200, json=OK)])
    client = _client(lambda request: next(replies))
    assert client.complete([{"role": "user", "content": "hi"}]).text == "Verdict: [[A]]" and client.calls == 4
    failing = _client(lambda request: httpx.Response(500, text="bad key sk-secret"), max_retries=1)
    with pytest.raises(ClientError) as err:
        failing.complete([{"role": "user", "content": "hi"}])
    assert "sk-secret" not in str(err.value) and "[API key]" in str(err.value)
    html = _client(lambda request: httpx.Response(200, text="<html>login</html>"), max_retries=0)
    with pytest.raises(ClientError, match="an HTML page"):
        html.complete([{"role": "user", "content": "hi"}])


def test_a_dribbling_server_hits_the_total_deadline():
    class Dribble(httpx.SyncByteStream):
        def __iter__(self):
            for _ in range(50):
                time.sleep(0.05)
                yield b" "

    client = _client(lambda request: httpx.Response(200, stream=Dribble()), timeout=0.3, max_retries=0)
    started = time.monotonic()
    with pytest.raises(ClientError, match="no complete reply within 0.3 s"):
        client.complete([{"role": "user", "content": "hi"}])
    assert time.monotonic() - started < 1.5  # not the 2.5 s the server would take


def test_null_content_is_retried_and_never_cached(tmp_path):
    healthy = {"on": False}

    def handler(request):
        content = "Verdict: [[B]]" if healthy["on"] else None
        return httpx.Response(200, json={"choices": [{"message": {"content": content}}]})

    cached = CachedClient(_client(handler, max_retries=1), tmp_path / "c.sqlite")
    with pytest.raises(ClientError, match="null content"):
        cached.complete([{"role": "user", "content": "hi"}])
    healthy["on"] = True
    again = CachedClient(_client(handler), tmp_path / "c.sqlite")
    assert again.complete([{"role": "user", "content": "hi"}]).text == "Verdict: [[B]]" and again.backend_calls == 1


def test_retry_after_as_an_http_date_is_honoured(monkeypatch):
    from email.utils import formatdate

    sleeps = []
    monkeypatch.setattr("rewardlab.judges.clients.time.sleep", lambda s: sleeps.append(s))
    replies = iter([httpx.Response(429, headers={"retry-after": formatdate(time.time() + 3, usegmt=True)}), httpx.Response(200, json=OK)])
    assert _client(lambda request: next(replies)).complete([{"role": "user", "content": "hi"}]).text.startswith("Verdict")
    assert 1.0 < sleeps[0] <= 3.5


def test_a_corrupt_cache_file_is_named_with_what_to_do(tmp_path):
    bad = tmp_path / "cache.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(RewardlabError, match=r"cache.sqlite: the judge cache is corrupt .* move it aside \(mv "):
        CachedClient(_client(lambda r: httpx.Response(200, json=OK)), bad)


@pytest.mark.parametrize("honours_n", [True, False])
def test_n_samples_come_in_one_request_when_the_server_supports_it_and_keep_log_probs(honours_n):
    from rewardlab.data.records import Message
    from rewardlab.labeling.generators import ChatEndpointGenerator

    requests = []

    def handler(request):
        body = json.loads(request.content)
        requests.append(body)
        count = body.get("n", 1) if honours_n else 1
        choices = [{"message": {"content": f"sample {len(requests)}-{k}"},
                    "logprobs": {"content": [{"token": "sample", "logprob": -0.5, "top_logprobs": []}]}} for k in range(count)]
        return httpx.Response(200, json={"choices": choices, "model": "m"})

    client = _client(handler)
    replies = client.complete_many([{"role": "user", "content": "hi"}], 4, logprobs=True, concurrency=2)
    assert len(replies) == 4 and all(r.token_logprobs == (-0.5,) for r in replies)
    assert len(requests) == (1 if honours_n else 4) and requests[0]["n"] == 4 and requests[0]["logprobs"] is True
    generator = ChatEndpointGenerator(_client(handler), temperature=1.0)
    assert len(generator.continue_solution((Message("user", "q"),), "", 3, max_new_tokens=8)) == 3
