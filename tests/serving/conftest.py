import pytest


@pytest.fixture(scope="module")
def rm(tiny_llama_dir, tmp_path_factory):
    """A served reward model: the tiny Llama with a fresh score head, max_length 64 (a 600-word reply cannot fit)."""
    from rewardlab.models.io import RewardModelMetadata, build_reward_model, save_pretrained
    from rewardlab.scoring.local import load_reward_model

    folder = tmp_path_factory.mktemp("served") / "rm"
    model, tok = build_reward_model(str(tiny_llama_dir))
    save_pretrained(model, tok, RewardModelMetadata(pooling=model.pooling, max_length=64), folder)
    return load_reward_model(folder)
