import json

import pytest

from rewardlab.cli import main
from rewardlab.judges.agreement import agreement_summary, cohen_kappa, fleiss_kappa, majority_vote, self_preference, verbosity_curve
from rewardlab.judges.cache import BudgetExceeded, CachedClient
from rewardlab.judges.clients import ChatClient, ClientError, Completion, OpenAIChatClient
from rewardlab.judges.judge import JudgeParseError, ListwiseJudge, PairwiseJudge, PointwiseJudge, pairwise_summary

from ..conftest import SHARED_DATA, requires_shared, write_jsonl
from .openai_server import FakeOpenAI

PANDALM = SHARED_DATA / "pandalm-testset"


class ScriptedClient:
    """A ChatClient whose answer is a function of the prompt text."""

    def __init__(self, answer, model="scripted"):
        self.answer, self.model, self.calls = answer, model, 0

    def complete(self, messages, temperature=0.0, max_tokens=512, logprobs=False):
        self.calls += 1
        return Completion(self.answer(messages[-1]["content"]), self.model)


def _response(text, label):
    return text.split(f"[Response {label}]\n")[1].split("\n\n")[0]


def test_a_judge_that_always_says_a_gets_flip_rate_one_and_all_ties():
    judge = PairwiseJudge(ScriptedClient(lambda _: "Verdict: [[A]]"), concurrency=1)
    assert isinstance(judge.client, ChatClient)
    results = judge.judge(["q1", "q2", "q3"], ["a1", "a2", "a3"], ["b1", "b2", "b3"])
    assert [r.winner for r in results] == ["tie", "tie", "tie"]
    summary = pairwise_summary(results)
    assert summary["flip_rate"] == 1.0 and summary["first_position_win_rate"] == 1.0 and summary["tie_rate"] == 1.0


def test_a_consistent_judge_keeps_its_verdict_in_both_orders():
    # prefers the longer response wherever it is shown
    def answer(text):
        a, b = _response(text, "A"), _response(text, "B")
        return "Verdict: [[A]]" if len(a) > len(b) else "Verdict: [[B]]"

    results = PairwiseJudge(ScriptedClient(answer), concurrency=2).judge(["q", "q"], ["long answer", "x"], ["short", "longer one"])
    assert [r.winner for r in results] == ["A", "B"]
    assert pairwise_summary(results)["flip_rate"] == 0.0 and pairwise_summary(results)["first_position_win_rate"] == 0.5


def test_unparseable_outputs_are_none_and_counted_never_a_default():
    results = PairwiseJudge(ScriptedClient(lambda _: "I cannot decide."), concurrency=1).judge(["q"], ["a"], ["b"])
    assert results[0].winner is None and results[0].forward.raw == "I cannot decide."
    assert pairwise_summary(results)["parse_failures"] == 2
    pointwise = PointwiseJudge(ScriptedClient(lambda t: "Score: [[9]]" if "good" in t else "hmm"), concurrency=1)
    assert pointwise.score(["q"], ["good"]) == [9.0]
    with pytest.raises(JudgeParseError, match="1 of 2") as info:
        pointwise.score(["q", "q"], ["good", "bad"])
    assert info.value.raw == ["hmm"]


def test_listwise_and_reference_guided_templates():
    ranking = ListwiseJudge(ScriptedClient(lambda t: "Ranking: [[2, 3, 1]]" if "[Response 3]" in t else "")).rank("q", ["a", "b", "c"])
    assert ranking.ranking == (1, 2, 0)
    seen = []
    judge = PairwiseJudge(ScriptedClient(lambda t: seen.append(t) or "Verdict: [[tie]]"), template="reference", concurrency=1)
    judge.judge(["2+2?"], ["4"], ["5"], references=["4"])
    assert "[Reference answer]\n4" in seen[0] and "must not affect your judgement" in seen[0]


def test_http_client_retries_429_and_500_with_backoff_then_succeeds(monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-secret")
    script = [(429, {"error": "slow down"}), (500, {"error": "oops"}), (200, None)]
    with FakeOpenAI(lambda messages: "Verdict: [[B]]", script) as server:
        client = OpenAIChatClient(server.base_url, "judge-1", api_key_env="JUDGE_KEY", backoff_seconds=0.01)
        completion = client.complete([{"role": "user", "content": "hi"}])
        assert completion.text == "Verdict: [[B]]" and client.calls == 3
        assert server.headers[-1]["Authorization"] == "Bearer sk-secret"
        assert server.requests[-1]["temperature"] == 0.0 and server.requests[-1]["model"] == "judge-1"
        assert "sk-secret" not in repr(client)


def test_http_client_gives_up_with_a_clear_error():
    with FakeOpenAI(lambda m: "", [(503, {"error": "down"})]) as server:
        client = OpenAIChatClient(server.base_url, "m", api_key_env=None, max_retries=2, backoff_seconds=0.01)
        with pytest.raises(ClientError, match="gave up after 3 attempts; last error HTTP 503"):
            client.complete([{"role": "user", "content": "hi"}])
    with FakeOpenAI(lambda m: "", [(400, {"error": "bad request"})]) as server:
        with pytest.raises(ClientError, match="HTTP 400"):
            OpenAIChatClient(server.base_url, "m", api_key_env=None).complete([{"role": "user", "content": "x"}])


def test_http_logprobs_give_probability_weighted_verdicts():
    import math

    def logprobs(text):
        return [{"token": "Verdict: [[", "logprob": 0.0, "top_logprobs": []},
                {"token": "A", "logprob": math.log(0.6), "top_logprobs": [
                    {"token": "A", "logprob": math.log(0.6)}, {"token": "B", "logprob": math.log(0.4)}]},
                {"token": "]]", "logprob": 0.0, "top_logprobs": []}]

    with FakeOpenAI(lambda m: "Verdict: [[A]]", with_logprobs=logprobs) as server:
        client = OpenAIChatClient(server.base_url, "m", api_key_env=None)
        judge = PairwiseJudge(client, use_logprobs=True, on_disagreement="average", concurrency=1)
        result = judge.judge(["q"], ["a"], ["b"])[0]
    # forward says A with 0.6; swapped says A (= original B) with 0.6: averaged A = (0.6 + 0.4) / 2
    assert result.probabilities["A"] == pytest.approx(0.5) and result.winner in ("A", "B", "tie")


def test_cache_makes_a_second_run_free_and_the_budget_stops_cleanly(tmp_path):
    inner = ScriptedClient(lambda _: "Verdict: [[A]]")
    cached = CachedClient(inner, tmp_path / "c.sqlite", max_calls=3)
    judge = PairwiseJudge(cached, concurrency=1)
    with pytest.raises(BudgetExceeded, match="budget of 3"):
        judge.judge(["q1", "q2"], ["a1", "a2"], ["b1", "b2"])  # needs 4 calls
    assert inner.calls == 3
    resumed = CachedClient(inner, tmp_path / "c.sqlite")
    PairwiseJudge(resumed, concurrency=1).judge(["q1", "q2"], ["a1", "a2"], ["b1", "b2"])
    assert resumed.backend_calls == 1 and resumed.cache_hits == 3  # only the missing call is made
    again = CachedClient(inner, tmp_path / "c.sqlite")
    PairwiseJudge(again, concurrency=1).judge(["q1", "q2"], ["a1", "a2"], ["b1", "b2"])
    assert again.backend_calls == 0


def test_agreement_statistics():
    assert majority_vote(["A", "B", "B"]) == "B" and majority_vote([]) is None
    assert cohen_kappa(["A", "B", "tie", "A"], ["A", "B", "tie", "A"]) == 1.0
    assert cohen_kappa(["A", "A", "B", "B"], ["B", "B", "A", "A"]) == pytest.approx(-1.0)
    # Fleiss' textbook example (Wikipedia, 10 subjects x 14 raters, 5 categories) gives 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    ratings = [[c for c, n in zip("12345", row) for _ in range(n)] for row in table]
    assert fleiss_kappa(ratings) == pytest.approx(0.210, abs=0.001)
    summary = agreement_summary(["A", "B", None], [["A", "A", "B"], ["B", "B", "B"], ["A", "A", "A"]])
    assert summary["judge_human_agreement"] == 1.0 and summary["judge_unparsed"] == 1 and summary["compared_items"] == 2
    assert self_preference("Qwen2.5-72B", ["qwen-7b", "llama-2"]) == ["qwen-7b"]
    curve = verbosity_curve(["A", "B", "A"], [200, 10, 50], [10, 200, 45])
    assert curve[-1]["a_win_rate"] == 1.0 and curve[0]["a_win_rate"] == 0.0


def test_judge_cli_over_http_with_cache(tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": f"q{i}", "chosen": "good answer", "rejected": "bad"} for i in range(5)])

    def answer(messages):
        text = messages[-1]["content"]
        return "Verdict: [[A]]" if _response(text, "A") == "good answer" else "Verdict: [[B]]"

    with FakeOpenAI(answer) as server:
        args = ["judge", "--data", str(data), "--backend", "openai", "--base-url", server.base_url, "--model", "gpt-x",
                "--output-dir", str(tmp_path / "j"), "--api-key-env", "NO_SUCH_VAR", "--candidate-models", "gpt-3.5,llama"]
        assert main(args) == 0
        first = len(server.requests)
        summary = json.loads((tmp_path / "j" / "summary.json").read_text())
        assert main(args) == 0
        assert len(server.requests) == first == 10  # both orders; the second run is answered by the cache
    assert summary["agreement"]["judge_human_agreement"] == 1.0 and summary["flip_rate"] == 0.0
    assert summary["self_preference_risk"] == ["gpt-3.5"]
    again = json.loads((tmp_path / "j" / "summary.json").read_text())
    assert again["backend_calls"] == 0 and again["cache_hits"] == 10


@requires_shared(PANDALM / "testset-v1.json")
def test_shipped_judge_files_agreement_with_pandalm_humans(tmp_path):
    out = tmp_path / "agreement.json"
    assert main(["judge-agreement", "--humans", str(PANDALM / "testset-v1.json"), "--verdicts",
                 str(PANDALM / "gpt-3.5-turbo-testset-v1.json"), str(PANDALM / "pandalm-7b-testset-v1.json"),
                 "--output", str(out)]) == 0
    table = json.loads(out.read_text())
    gpt, panda = table["gpt-3.5-turbo-testset-v1.json"], table["pandalm-7b-testset-v1.json"]
    assert gpt["judge_unparsed"] == 25 and panda["judge_unparsed"] == 0  # "garbage" replies are None, not a vote
    assert 0.6 < panda["judge_human_agreement"] < gpt["judge_human_agreement"] < 0.8
    assert gpt["human_human_agreement"] == pytest.approx(0.92, abs=0.01)


@pytest.mark.slow
@requires_shared(PANDALM / "testset-v1.json")
def test_local_smollm2_judge_end_to_end_both_orders_cached(tmp_path):
    args = ["judge", "--data", str(PANDALM / "testset-v1.json"), "--limit", "2", "--backend", "local", "--model", "builtin:smollm2",
            "--output-dir", str(tmp_path / "smol"), "--max-tokens", "3", "--force-verdict", "--logprobs", "--concurrency", "1"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "smol" / "summary.json").read_text())
    assert summary["backend_calls"] == 4 and summary["parse_failures"] == 0  # 2 pairs x 2 orders, forced verdicts parse
    assert 0.0 <= summary["flip_rate"] <= 1.0 and "agreement" in summary
    assert main(args) == 0
    assert json.loads((tmp_path / "smol" / "summary.json").read_text())["backend_calls"] == 0
