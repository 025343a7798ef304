"""Scorer configs: validation per kind, flat options to configs, describe() records kept, and every scoring subcommand's flags."""

import pytest

from rewardlab.cli import main
from rewardlab.errors import ConfigError
from rewardlab.scoring.combine import ConstrainedReward, WeightedSum
from rewardlab.scoring.config import (DPOConfig, EnsembleConfig, EnsembleRule, HeadEnsembleConfig, JudgeConfig,
                                      LengthDebiasConfig, LengthPenaltyConfig, ProcessConfig, RemoteConfig, RewardModelConfig,
                                      build_scorer, resolve_kind, scorer_config)

from ..conftest import write_jsonl


@pytest.fixture
def saved_rm(tiny_llama_dir, tmp_path):
    from rewardlab.models.io import RewardModelMetadata, build_reward_model, save_pretrained

    model, tok = build_reward_model(str(tiny_llama_dir))
    save_pretrained(model, tok, RewardModelMetadata(pooling=model.pooling, max_length=200), tmp_path / "rm")
    return tmp_path / "rm"


def test_each_config_checks_its_own_fields_when_made():
    with pytest.raises(ConfigError, match="'layout' must be one of"):
        RewardModelConfig(model="m", layout="dense")
    with pytest.raises(ConfigError, match="'max_batch_tokens' must be >= 1"):
        RewardModelConfig(model="m", max_batch_tokens=0)
    with pytest.raises(ConfigError, match="'beta' must be > 0"):
        DPOConfig(model="m", reference_free=True, beta=0)
    with pytest.raises(ConfigError, match="needs 'reference'"):
        DPOConfig(model="m")
    with pytest.raises(ConfigError, match="give 'judge_cache' too"):
        JudgeConfig(model="m", max_calls=3)
    with pytest.raises(ConfigError, match="http"):
        RemoteConfig(model="runs/rm")
    with pytest.raises(ConfigError, match="'combine' got {'a': 1.0}, which matches none of WeightedSum | ConstrainedReward | None"):
        RewardModelConfig(model="m", combine={"a": 1.0})
    with pytest.raises(ConfigError, match="at least 2 members"):
        EnsembleConfig((RewardModelConfig(model="a"),))
    with pytest.raises(ConfigError, match="needs reward-model members"):
        EnsembleConfig((RewardModelConfig(model="a"), RemoteConfig(model="http://h:1")))
    with pytest.raises(ConfigError, match="needs 'ensemble_reference'"):
        EnsembleRule(scale="reference")
    with pytest.raises(ConfigError, match="'reference'"):
        HeadEnsembleConfig(RewardModelConfig(model="a"), EnsembleRule(scale="reference", reference="r.jsonl"))
    with pytest.raises(ConfigError, match="length_reference"):
        LengthPenaltyConfig(RewardModelConfig(model="a"), alpha=0.1, mode="normalized")


def test_the_ensemble_listing_is_read_under_the_name_training_writes_it():
    from rewardlab.scoring import config
    from rewardlab.training import ensemble

    assert config.ENSEMBLE_FILE == ensemble.ENSEMBLE_FILE


def test_flat_options_make_the_config_of_the_resolved_kind(saved_rm, tmp_path):
    assert resolve_kind(str(saved_rm)) == "reward"
    assert resolve_kind("http://h:1") == "remote" and resolve_kind("p", {"reference_free": True}) == "dpo"
    assert resolve_kind("judge-model", {"base_url": "http://h/v1"}) == "judge"
    config = scorer_config(str(saved_rm), batch_size=3, weights={"score": 1.0})
    assert isinstance(config, RewardModelConfig) and config.batch_size == 3 and config.combine == WeightedSum({"score": 1.0})
    constrained = scorer_config(str(saved_rm), primary="score", thresholds={"score": 0.0})
    assert constrained.combine == ConstrainedReward("score", {"score": 0.0}, float("-inf"))
    assert scorer_config("p", reference_free=True).batch_size == 8  # each kind owns its default
    assert scorer_config("judge-model", base_url="http://h/v1", show_progress=True) == JudgeConfig(
        model="judge-model", base_url="http://h/v1")  # a display preference: kinds without a bar leave it out
    wrapped = scorer_config(str(saved_rm), ensemble=f"{saved_rm}", ensemble_aggregate="min", length_penalty=0.5)
    assert isinstance(wrapped, LengthPenaltyConfig) and wrapped.alpha == 0.5
    assert isinstance(wrapped.scorer, EnsembleConfig) and wrapped.scorer.rule.aggregate == "min"
    assert [m.model for m in wrapped.scorer.members] == [str(saved_rm)] * 2
    debiased = scorer_config(str(saved_rm), length_debias=True, length_reference="r.jsonl", length_unit="chars")
    assert debiased == LengthDebiasConfig(scorer_config(str(saved_rm)), reference="r.jsonl", unit="chars")


def test_an_option_of_another_kind_or_an_absent_wrapper_is_an_error_not_ignored(saved_rm):
    with pytest.raises(ConfigError, match=r"reward model, which does not use option\(s\) 'aggregation' \(process scorers\)"):
        scorer_config(str(saved_rm), aggregation="product")
    with pytest.raises(ConfigError, match="'layout' \\(reward scorers\\)"):
        scorer_config(str(saved_rm), kind="process", layout="padded")
    with pytest.raises(ConfigError, match="'device' \\(reward, process, dpo, judge scorers\\)"):
        scorer_config("http://h:1", device="cpu")
    with pytest.raises(ConfigError, match="give one"):
        scorer_config(str(saved_rm), weights={"a": 1.0}, primary="a")
    with pytest.raises(ConfigError, match="need 'primary'"):
        scorer_config(str(saved_rm), penalty=-1.0)
    with pytest.raises(ConfigError, match=r"\['ensemble_lambda'\] need an ensemble"):
        scorer_config(str(saved_rm), ensemble_lambda=2.0)
    with pytest.raises(ConfigError, match=r"\['length_unit'\] need a length control"):
        scorer_config(str(saved_rm), length_unit="chars")
    with pytest.raises(ConfigError, match="two length controls"):
        scorer_config(str(saved_rm), length_penalty=0.1, length_debias=True, length_reference="r.jsonl")
    with pytest.raises(ConfigError, match="unknown scorer option"):
        scorer_config(str(saved_rm), batchsize=3)


def test_build_scorer_honours_every_setting_and_describe_records_them(saved_rm):
    scorer = build_scorer(RewardModelConfig(model=str(saved_rm), batch_size=3, max_length=64, layout="padded", precision="bf16",
                                            max_batch_tokens="none", share_prefix=False))
    assert (scorer.batch_size, scorer.max_length, scorer.layout, scorer.max_batch_tokens, scorer.share_prefix) == (3, 64, "padded", None, False)
    described = scorer.describe()
    assert described["kind"] == "local" and described["model"] == str(saved_rm)
    assert described["settings"]["dtype"] == "bfloat16" and described["settings"]["weights"]["size"] > 0
    default = build_scorer(RewardModelConfig(model=str(saved_rm)))
    assert default.max_length == 200 and default.batch_size == 32  # the model's training max_length


def _without_weights(described):
    """``describe()`` without what depends on the fixture's random weights: fingerprints and fitted statistics."""
    if isinstance(described, dict):
        return {k: "<weights>" if k in ("weights", "reference", "adapter") and isinstance(v, dict) else
                "<fitted>" if k in ("offsets", "scales", "slope") else _without_weights(v) for k, v in described.items()}
    return [_without_weights(x) for x in described] if isinstance(described, list) else described


def test_every_scorer_describes_itself_as_before_the_configs_were_split(tiny_rm_dir, tiny_llama_dir, tmp_path):
    """``rewardlab score --resume`` compares ``describe()`` with the earlier run's record: the split configs must build
    scorers that describe themselves exactly as the flat ScorerConfig's did (recorded in data/, weights aside)."""
    import json
    from pathlib import Path

    from rewardlab.models.io import RewardModelMetadata, build_reward_model, save_pretrained

    model, tok = build_reward_model(str(tiny_llama_dir))
    save_pretrained(model, tok, RewardModelMetadata(pooling=model.pooling, max_length=200, reward_mean=0.5, reward_std=2.0),
                    tmp_path / "rm2")
    ref = write_jsonl(tmp_path / "ref.jsonl", [{"prompt": "q", "response": "a b c"}, {"prompt": "q", "response": "a"},
                                              {"prompt": "r", "response": "x y"}])
    places = {"{rm}": str(tiny_rm_dir), "{rm2}": str(tmp_path / "rm2"), "{llama}": str(tiny_llama_dir), "{ref}": str(ref)}
    recorded = json.loads((Path(__file__).parent / "data" / "describe_before_redesign.json").read_text())
    assert len(recorded) == 15
    for case, record in recorded.items():
        options = json.loads(_fill(json.dumps(record["options"]), places))
        scorer = build_scorer(scorer_config(options.pop("model"), **options))
        expected = _without_weights(json.loads(_fill(json.dumps(record["describe"]), places)))
        assert expected == _without_weights(scorer.describe()), case
        if "attrs" in record:  # remote scorers: what is sent where
            assert [scorer.url, scorer.contract, scorer.chunk_size, scorer._api_key_env] == record["attrs"], case


def _fill(text, places):
    for key, value in places.items():
        text = text.replace(key, value)
    return text


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
    assert isinstance(seen[0], ProcessConfig)
    assert (seen[0].batch_size, seen[0].max_length, seen[0].aggregation) == (5, 99, "product")


def test_beam_search_reads_only_its_scorer_flags_not_the_generators_of_the_same_name(tmp_path, monkeypatch):
    """beam-search's generator has --base-url and --api-key-env too: they configure the generator, never the PRM
    (read as scoring options they would make the PRM an LLM judge)."""
    import rewardlab.scoring.config as config_module

    seen = []
    monkeypatch.setattr(config_module, "build_scorer", lambda config: seen.append(config) or (_ for _ in ()).throw(KeyboardInterrupt))
    monkeypatch.setattr("rewardlab.cli.process.make_generator", lambda args: None)
    with pytest.raises(KeyboardInterrupt):
        main(["beam-search", "--prm", "my/prm", "--kind", "process", "--generator", "openai", "--base-url", "http://h:1/v1",
              "--api-key-env", "GEN_KEY", "--model", "gen-model", "--prompt", "2+2?"])
    assert seen == [ProcessConfig(model="my/prm")]
