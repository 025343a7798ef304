"""ScorerConfig: validation, kind resolution, options that belong to another kind, and every scoring subcommand's flags."""

import pytest

from rewardlab.cli import main
from rewardlab.errors import ConfigError
from rewardlab.scoring.config import ScorerConfig, build_scorer, resolve_kind

from ..conftest import write_jsonl


@pytest.fixture
def saved_rm(tiny_llama_dir, tmp_path):
    from rewardlab.models.io import RewardModelMetadata, build_reward_model, save_pretrained

    model, tok = build_reward_model(str(tiny_llama_dir))
    save_pretrained(model, tok, RewardModelMetadata(pooling=model.pooling, max_length=200), tmp_path / "rm")
    return tmp_path / "rm"


def test_options_are_validated_when_the_config_is_built():
    with pytest.raises(ConfigError, match="'layout' must be one of"):
        ScorerConfig(model="m", layout="dense")
    with pytest.raises(ConfigError, match="give one"):
        ScorerConfig(model="m", weights={"a": 1.0}, primary="a")
    with pytest.raises(ConfigError, match="'max_batch_tokens' must be >= 1"):
        ScorerConfig(model="m", max_batch_tokens=0)


def test_an_option_of_another_kind_is_an_error_not_ignored(saved_rm):
    assert resolve_kind(ScorerConfig(model=str(saved_rm))) == "reward"
    with pytest.raises(ConfigError, match=r"reward model, which does not use option\(s\) 'aggregation' \(process scorers\)"):
        build_scorer(ScorerConfig(model=str(saved_rm), aggregation="product"))
    with pytest.raises(ConfigError, match="'layout' \\(reward scorers\\)"):
        build_scorer(ScorerConfig(model=str(saved_rm), kind="process", layout="padded"))


def test_build_scorer_honours_every_setting_and_describe_records_them(saved_rm):
    scorer = build_scorer(ScorerConfig(model=str(saved_rm), batch_size=3, max_length=64, layout="padded", precision="bf16",
                                       max_batch_tokens="none", share_prefix=False))
    assert (scorer.batch_size, scorer.max_length, scorer.layout, scorer.max_batch_tokens, scorer.share_prefix) == (3, 64, "padded", None, False)
    described = scorer.describe()
    assert described["kind"] == "local" and described["model"] == str(saved_rm)
    assert described["settings"]["dtype"] == "bfloat16" and described["settings"]["weights"]["size"] > 0
    default = build_scorer(ScorerConfig(model=str(saved_rm)))
    assert default.max_length == 200 and default.batch_size == 32  # the model's training max_length


SCORING_COMMANDS = {
    "score": ["--data", "{data}", "--output", "{out}/s.jsonl"],
    "eval": ["--data", "{data}", "--output-dir", "{out}/e"],
    "diagnose": ["--data", "{data}", "--output-dir", "{out}/d"],
    "bon": ["--data", "{cands}", "--output", "{out}/b.jsonl"],
    "bon-curve": ["--data", "{cands}", "--output-dir", "{out}/bc"],
    "beam-search": ["--prompt", "2+2?"],
}


@pytest.mark.parametrize("command", sorted(SCORING_COMMANDS))
def test_every_scoring_subcommand_passes_its_scorer_flags_through(command, tmp_path, monkeypatch):
    import rewardlab.scoring.config as config_module

    seen = []

    def capture(config):
        seen.append(config)
        raise KeyboardInterrupt  # stop before any scoring

    monkeypatch.setattr(config_module, "build_scorer", capture)
    monkeypatch.setattr("rewardlab.cli.common.make_generator", lambda args: None, raising=False)
    data = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}])
    cands = write_jsonl(tmp_path / "c.jsonl", [{"prompt": "q", "candidates": ["a", "b"], "correct": [True, False]}])
    extra = [a.format(data=data, cands=cands, out=tmp_path) for a in SCORING_COMMANDS[command]]
    model_flag = "--prm" if command == "beam-search" else "--model"
    with pytest.raises(KeyboardInterrupt):
        main([command, model_flag, "some/model", "--device", "cpu", "--batch-size", "3", "--max-length", "77",
              "--precision", "bf16", *extra])
    config = seen[0]
    assert (config.model, config.device, config.batch_size, config.max_length, config.precision) == ("some/model", "cpu", 3, 77, "bf16")


def test_bon_with_a_prm_passes_device_batch_size_and_max_length(tmp_path, monkeypatch):
    import rewardlab.scoring.config as config_module

    seen = []
    monkeypatch.setattr(config_module, "build_scorer", lambda config: seen.append(config) or (_ for _ in ()).throw(KeyboardInterrupt))
    cands = write_jsonl(tmp_path / "c.jsonl", [{"prompt": "q", "candidates": ["a", "b"]}])
    with pytest.raises(KeyboardInterrupt):
        main(["bon", "--prm", "my/prm", "--device", "cpu", "--batch-size", "5", "--max-length", "99", "--aggregation", "product",
              "--data", str(cands), "--output", str(tmp_path / "o.jsonl")])
    assert (seen[0].kind, seen[0].batch_size, seen[0].max_length, seen[0].aggregation) == ("process", 5, 99, "product")
