"""verl 0.9.1's own code calling rewardlab (issue 32): its custom-reward loader reads rewardlab/serving/verl_reward.py
as a standalone module, and its reward managers turn a DataProto into rewards equal to rewardlab's own, from a local
model folder and from a running server."""


import numpy as np
import pytest
import torch

verl = pytest.importorskip("verl", reason="the interop tier needs verl==0.9.1 (.ci/run installs it with --no-deps)")
pytestmark = pytest.mark.interop

from omegaconf import OmegaConf  # noqa: E402  (a verl dependency)

from rewardlab.scoring.local import load_reward_model  # noqa: E402
from rewardlab.serving import adapters, verl_reward  # noqa: E402
from rewardlab.serving.app import create_app  # noqa: E402

from ..serving.server import running  # noqa: E402

PROMPTS = ["What is a river?", "Name a bird.", "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: And a delta?\n\nAssistant:"]
RESPONSES = ["Flowing water that meets the sea.", "A robin.", "Where a river drops its sediment."]


def _config(name: str):
    return OmegaConf.create({"reward": {"custom_reward_function": {"path": verl_reward.__file__, "name": name}}})


def _data_proto(tokenizer):
    from verl import DataProto

    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    response_ids = [tokenizer(r, add_special_tokens=False)["input_ids"] for r in RESPONSES]
    p_len, r_len, pad = max(map(len, prompt_ids)), max(map(len, response_ids)) + 2, tokenizer.pad_token_id
    prompts = torch.tensor([[pad] * (p_len - len(ids)) + ids for ids in prompt_ids])  # verl left-pads prompts
    responses = torch.tensor([ids + [pad] * (r_len - len(ids)) for ids in response_ids])  # and right-pads responses
    mask = torch.tensor([[0] * (p_len - len(p)) + [1] * len(p) + [1] * len(r) + [0] * (r_len - len(r))
                         for p, r in zip(prompt_ids, response_ids)])
    n = len(PROMPTS)
    return DataProto.from_dict(
        tensors={"prompts": prompts, "responses": responses, "attention_mask": mask,
                 "input_ids": torch.cat([prompts, responses], 1)},
        non_tensors={"data_source": np.array(["rewardlab"] * n, dtype=object),
                     "reward_model": np.array([{"ground_truth": None} for _ in range(n)], dtype=object),
                     "extra_info": np.array([{"prompt": p} for p in PROMPTS], dtype=object)})


def _rewards_from_verl(tokenizer, source_env: dict, monkeypatch) -> dict[str, list[float]]:
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.workers.reward_manager.batch import BatchRewardManager
    from verl.workers.reward_manager.naive import NaiveRewardManager

    monkeypatch.setattr(adapters, "_VERL_SCORER", None)  # each worker process builds its scorer once from the environment
    for name, value in source_env.items():
        monkeypatch.setenv(name, value)
    data = _data_proto(tokenizer)
    valid = data.batch["attention_mask"][:, data.batch["prompts"].shape[-1]:].sum(-1)
    last = lambda t: [float(t[i, valid[i] - 1]) for i in range(len(PROMPTS))]  # noqa: E731  (verl puts it on the last token)
    naive = NaiveRewardManager(tokenizer, num_examine=0, compute_score=get_custom_reward_fn(_config("compute_score")))
    batch = BatchRewardManager(tokenizer, num_examine=0, compute_score=get_custom_reward_fn(_config("compute_score_batch")))
    out = {"naive": last(naive(data)), "batch": last(batch(data))}
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager as LoopNaive

    loop = LoopNaive(OmegaConf.create({}), tokenizer, get_custom_reward_fn(_config("compute_score")))
    out["reward_loop_naive"] = [loop.loop.run_until_complete(loop.run_single(data[i:i + 1]))["reward_score"]  # its own loop
                                for i in range(len(PROMPTS))]
    return out


def test_the_adapter_file_itself_fails_verls_loader_and_the_standalone_one_loads():
    from verl.utils.import_utils import load_extern_object

    with pytest.raises(RuntimeError, match="Error loading module") as err:
        load_extern_object(adapters.__file__, "compute_score")
    assert "relative import" in str(err.value.__cause__)
    assert callable(load_extern_object(verl_reward.__file__, "compute_score_batch"))


@pytest.mark.parametrize("where", ["model", "server"])
def test_verl_reward_managers_give_rewardlabs_rewards(where, tiny_rm_dir, monkeypatch):
    rm = load_reward_model(tiny_rm_dir)
    decoded = [rm.tokenizer.decode(rm.tokenizer(r, add_special_tokens=False)["input_ids"], skip_special_tokens=True)
               for r in RESPONSES]
    expected = rm.score(PROMPTS, decoded)
    if where == "model":
        got = _rewards_from_verl(rm.tokenizer, {"REWARDLAB_REWARD_MODEL": str(tiny_rm_dir)}, monkeypatch)
    else:
        monkeypatch.delenv("REWARDLAB_REWARD_MODEL", raising=False)
        with running(create_app(rm)) as (url, _):
            got = _rewards_from_verl(rm.tokenizer, {"REWARDLAB_REWARD_URL": url}, monkeypatch)
    for manager, rewards in got.items():
        assert rewards == pytest.approx(expected, abs=1e-5), manager
