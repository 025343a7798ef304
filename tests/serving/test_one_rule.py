"""One rule for string prompts (issue 33, item 2): an Anthropic HH transcript string gets the same reward through
score_file, Scorer.score, /v1/score, /get_reward (as a full transcript and as prompt + query), RemoteScorer and the
TRL and verl adapters; a plain string prompt too."""

import json

import httpx
import pytest

from rewardlab.data.templating import as_messages
from rewardlab.scoring.files import score_file
from rewardlab.scoring.local import load_reward_model
from rewardlab.scoring.config import RemoteConfig
from rewardlab.scoring.remote import RemoteScorer
from rewardlab.serving import adapters
from rewardlab.serving.adapters import trl_reward_function
from rewardlab.serving.app import create_app

from .server import running

HH_PROMPT = "\n\nHuman: What is a river?\n\nAssistant: Flowing water.\n\nHuman: And a delta?\n\nAssistant:"
RESPONSE = "Where a river meets the sea and drops its sediment."


@pytest.mark.parametrize("prompt", [HH_PROMPT, HH_PROMPT.removesuffix("\n\nAssistant:"), "What is a river delta?"])
def test_one_record_one_reward_at_every_entry_point(prompt, tiny_rm_dir, tmp_path, monkeypatch):
    rm = load_reward_model(tiny_rm_dir)
    turns = as_messages(prompt)
    if prompt.startswith("\n\nHuman:"):
        assert [m.role for m in turns] == ["user", "assistant", "user"] and turns[-1].content == "And a delta?"
    direct = rm.score([prompt], [RESPONSE])[0]
    assert direct == pytest.approx(rm.score([[m.as_dict() for m in turns]], [RESPONSE])[0], abs=1e-6)

    data = tmp_path / "items.jsonl"
    data.write_text(json.dumps({"prompt": prompt, "response": RESPONSE}) + "\n")
    score_file(rm, data, tmp_path / "scores.jsonl")
    values = {"score_file": json.loads((tmp_path / "scores.jsonl").read_text())["reward"]}

    values["trl"] = trl_reward_function(rm)(prompts=[prompt], completions=[RESPONSE])[0]
    monkeypatch.setattr(adapters, "_VERL_SCORER", rm)
    values["verl"] = adapters.compute_score("hh", RESPONSE, extra_info={"prompt": prompt})
    values["verl_batch"] = adapters.compute_score_batch(["hh"], [RESPONSE], [None], [{"prompt": prompt}])[0]

    with running(create_app(rm)) as (url, _):
        values["/v1/score"] = httpx.post(url + "/v1/score", json={"prompts": [prompt], "responses": [RESPONSE]}).json()["rewards"][0]
        values["remote"] = RemoteScorer(RemoteConfig(model=url)).score([prompt], [RESPONSE])[0]
        if prompt.startswith("\n\nHuman:"):
            transcript = prompt.removesuffix("\n\nAssistant:") + "\n\nAssistant: " + RESPONSE
            values["/get_reward"] = httpx.post(url + "/get_reward", json={"query": [transcript]}).json()["rewards"][0]
            values["/get_reward+prompts"] = httpx.post(url + "/get_reward", json={
                "query": [transcript], "prompts": [transcript[: -len(RESPONSE)]]}).json()["rewards"][0]
    for where, value in values.items():
        assert value == pytest.approx(direct, abs=1e-5), where
