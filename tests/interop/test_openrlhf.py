"""OpenRLHF 0.11.2's own rollout code against ``rewardlab serve`` (issue 32): its SingleTurnAgentExecutor (the
executor its rollouts run, which fetches rewards with its own aiohttp client, one query per call, five tries) with a
stand-in generation engine. Every reward equals /v1/score for the same conversation; a rollout longer than the model's
max_length does not cost the run its reward."""

import asyncio
from types import SimpleNamespace

import httpx
import pytest

pytest.importorskip("openrlhf", reason="the interop tier needs openrlhf==0.11.2 (.ci/run installs it with --no-deps)")
pytestmark = pytest.mark.interop

from openrlhf.utils.agent import SingleTurnAgentExecutor  # noqa: E402

from rewardlab.scoring.local import load_reward_model  # noqa: E402
from rewardlab.serving.app import ServeConfig, create_app  # noqa: E402

from ..serving.server import running  # noqa: E402


class ScriptedEngine:
    """vLLM's place in OpenRLHF's executor: ``generate`` returns the scripted reply's token ids for each prompt."""

    def __init__(self, tokenizer, replies: dict[str, str]):
        self.tokenizer, self.replies = tokenizer, replies

    async def generate(self, prompt_token_ids, params, multi_modal_data=None):
        prompt = self.tokenizer.decode(prompt_token_ids, skip_special_tokens=False)
        ids = self.tokenizer(self.replies[prompt], add_special_tokens=False)["input_ids"]
        await asyncio.sleep(0)
        return SimpleNamespace(outputs=[SimpleNamespace(token_ids=ids, finish_reason="stop", logprobs=None)])


def _rollouts(url: str, tokenizer, conversations: list[tuple[str, str]], max_length: int = 4096) -> list[dict]:
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
               for q, _ in conversations]
    engine = ScriptedEngine(tokenizer, {p: r + tokenizer.eos_token for p, (_, r) in zip(prompts, conversations)})
    executor = SingleTurnAgentExecutor(remote_rm_url=url + "/get_reward")
    params = SimpleNamespace(max_tokens=None, logprobs=None)

    async def all_rollouts():  # OpenRLHF runs its rollouts concurrently, each fetching its own reward
        return await asyncio.gather(*(executor.execute(p, "", params, max_length, tokenizer, engine) for p in prompts))

    return asyncio.run(all_rollouts())


@pytest.fixture(scope="module")
def rm(tiny_rm_dir):
    return load_reward_model(tiny_rm_dir)


def test_openrlhf_rollouts_get_rewardlabs_rewards_under_concurrency(rm):
    conversations = [(f"Tell me about river {i}.", "Rivers carry water" + " and sediment" * (i % 5)) for i in range(48)]
    with running(create_app(rm)) as (url, _):
        outputs = _rollouts(url, rm.tokenizer, conversations)
        direct = httpx.post(url + "/v1/score", json={"prompts": [q for q, _ in conversations],
                                                      "responses": [r for _, r in conversations]}).json()["rewards"]
    assert len(outputs) == 48
    for out, expected in zip(outputs, direct):
        assert out["reward"] == pytest.approx([expected], abs=1e-5)  # OpenRLHF keeps the answer's 'rewards' list
        assert out["scores"] == out["reward"] and out["extra_logs"] == {"too_long": [0.0]}


def test_a_rollout_longer_than_the_model_does_not_cost_the_run_its_reward(rm):
    """rm's max_length is 128; the reply is ~600 tokens. With the default policy the reward comes back (the head that
    fits, marked in extra_logs); with 'error' OpenRLHF's client gets 422 five times and the rollout has no reward."""
    long_reply = " ".join(f"w{i}" for i in range(600))
    assert rm.too_long(["q"], [long_reply]) == [0]
    with running(create_app(rm)) as (url, _):
        (kept,) = _rollouts(url, rm.tokenizer, [("Say many words.", long_reply)])
    assert isinstance(kept["reward"][0], float) and kept["extra_logs"]["too_long"] == [1.0]
    with running(create_app(rm, ServeConfig(too_long="error"))) as (url, _):
        (lost,) = _rollouts(url, rm.tokenizer, [("Say many words.", long_reply)])
    assert lost["reward"] is None  # what one long rollout did before: OpenRLHF logs the failure, the sample has no reward
