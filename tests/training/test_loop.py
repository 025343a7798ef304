import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

import rewardlab.losses as losses_module
import rewardlab.training.loop as loop
import rewardlab.training.speed as speed
from rewardlab.errors import TrainingDivergedError
from rewardlab.scoring import load_reward_model
from rewardlab.training.checkpoint import checkpoint_dirs, latest_checkpoint
from rewardlab.training.config import TrainConfig

FAST = dict(max_length=192, batch_size=4, learning_rate=3e-3, warmup_ratio=0.0, eval_every=5, log_every=1,
            show_progress=False, eval_fraction=0.125)


def _config(model_dir, data, out, **kw):
    return TrainConfig(model=str(model_dir), data=str(data), output_dir=str(out), **{**FAST, **kw})


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _weights(out):
    return load_file(str(out / "model.safetensors"))


def test_training_loss_starts_near_ln2_falls_and_writes_everything(tiny_llama_dir, demo_jsonl, tmp_path):
    out = tmp_path / "run"
    result = loop.train(_config(tiny_llama_dir, demo_jsonl, out, max_steps=40))
    losses = [m["loss"] for m in _metrics(out) if "loss" in m]
    assert abs(losses[0] - 0.6931) < 0.05
    assert sum(losses[-5:]) / 5 < losses[0] - 0.1
    assert {"model.safetensors", "config.json", "rewardlab.json", "run_config.json", "metrics.jsonl"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "run_config.json").read_text())["max_steps"] == 40
    assert 0 <= result.final_metrics["eval_accuracy"] <= 1 and result.final_metrics["eval_pairs"] == 12
    scorer = load_reward_model(out)
    assert scorer.metadata.reward_std == pytest.approx(result.final_metrics["eval_reward_std"])
    hf_config = json.loads((out / "config.json").read_text())  # where OpenRLHF's --normalize_reward reads them
    assert (hf_config["mean"], hf_config["std"]) == pytest.approx((scorer.metadata.reward_mean, scorer.metadata.reward_std))


def test_gradient_accumulation_matches_a_bigger_batch(tiny_llama_dir, demo_jsonl, tmp_path):
    # fp32: bf16 rounding depends on how the batch is split, and this test is about exact equality
    big = loop.train(_config(tiny_llama_dir, demo_jsonl, tmp_path / "a", max_steps=4, batch_size=4, precision="fp32"))
    acc = loop.train(_config(tiny_llama_dir, demo_jsonl, tmp_path / "b", max_steps=4, batch_size=2, grad_accum_steps=2,
                             precision="fp32"))
    la = [m["loss"] for m in _metrics(big.output_dir) if "loss" in m]
    lb = [m["loss"] for m in _metrics(acc.output_dir) if "loss" in m]
    assert la == pytest.approx(lb, abs=1e-5)


class _Interrupt(Exception):
    pass


def _fail_at_call(monkeypatch, call: int, make_nan: bool = False):
    real, calls = losses_module.bradley_terry_loss, {"n": 0}

    def patched(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            if make_nan:
                return real(*args, **kwargs) * float("nan")
            raise _Interrupt()
        return real(*args, **kwargs)

    monkeypatch.setattr(losses_module, "bradley_terry_loss", patched)


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(tiny_bert_dir, demo_jsonl, tmp_path, monkeypatch):
    # The tiny BERT has dropout 0.1, so this also checks that RNG state is restored.
    settings = dict(max_steps=10, save_every=4, keep_checkpoints=3, eval_every=100, disable_dropout=False)
    loop.train(_config(tiny_bert_dir, demo_jsonl, tmp_path / "full", **settings))
    with monkeypatch.context() as patch:
        _fail_at_call(patch, call=7)  # dies during step 7, after the step-4 checkpoint
        with pytest.raises(_Interrupt):
            loop.train(_config(tiny_bert_dir, demo_jsonl, tmp_path / "cut", **settings))
    assert [p.name for p in checkpoint_dirs(tmp_path / "cut" / "checkpoints")] == ["step-000004"]
    loop.train(_config(tiny_bert_dir, demo_jsonl, tmp_path / "cut", resume=True, **settings))
    full, resumed = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert full.keys() == resumed.keys()
    for name in full:
        assert torch.allclose(full[name], resumed[name], atol=1e-6), name
    steps = [m["step"] for m in _metrics(tmp_path / "cut") if "loss" in m]
    assert steps == list(range(1, 11))  # no duplicated or missing log lines after resuming


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tiny_llama_dir, demo_jsonl, tmp_path, monkeypatch):
    _fail_at_call(monkeypatch, call=6, make_nan=True)
    with pytest.raises(TrainingDivergedError, match="at step 6") as err:
        loop.train(_config(tiny_llama_dir, demo_jsonl, tmp_path / "nan", max_steps=10, save_every=4, eval_every=100))
    assert f"the last good checkpoint is {tmp_path / 'nan' / 'checkpoints' / 'step-000004'}" in str(err.value)  # it exists
    last = latest_checkpoint(tmp_path / "nan" / "checkpoints")
    assert last.name == "step-000004"
    scores = load_reward_model(last).score(["q"], ["a"])
    assert all(torch.isfinite(torch.tensor(scores)))


def test_freeze_layers_keeps_bottom_blocks_fixed(tiny_llama_dir, demo_jsonl, tmp_path):
    from rewardlab.models.io import build_reward_model

    initial = build_reward_model(str(tiny_llama_dir))[0].hf_model.state_dict()
    loop.train(_config(tiny_llama_dir, demo_jsonl, tmp_path / "frz", max_steps=3, freeze_layers=1))
    trained = _weights(tmp_path / "frz")
    assert torch.equal(trained["model.layers.0.mlp.up_proj.weight"], initial["model.layers.0.mlp.up_proj.weight"])
    assert torch.equal(trained["model.embed_tokens.weight"], initial["model.embed_tokens.weight"])
    assert not torch.equal(trained["model.layers.1.mlp.up_proj.weight"], initial["model.layers.1.mlp.up_proj.weight"])


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import rewardlab.training.checkpoint as ckpt
    import rewardlab.training.loop as loop
    from rewardlab.training.config import TrainConfig

    real, calls = ckpt.save_optimizer_state, {"n": 0}
    def dying_save(optimizer, directory):
        calls["n"] += 1
        if calls["n"] == 2:  # second checkpoint: the model files are written, the rest is not
            (directory / "optimizer.safetensors").write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGKILL)
        real(optimizer, directory)
    ckpt.save_optimizer_state = dying_save
    loop.train(TrainConfig(model=sys.argv[1], data=sys.argv[2], output_dir=sys.argv[3], max_steps=8, save_every=2,
                           batch_size=4, max_length=192, show_progress=False, eval_fraction=0.0))
""")


def test_sigkill_during_a_checkpoint_write_leaves_the_previous_one_loadable(tiny_llama_dir, demo_jsonl, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(tiny_llama_dir), str(demo_jsonl), str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    root = out / "checkpoints"
    assert [p.name for p in checkpoint_dirs(root)] == ["step-000002"]
    assert list(root.glob(".tmp-step-000004"))  # the half-written one never got a real name
    assert len(load_reward_model(latest_checkpoint(root)).score(["q"], ["a"])) == 1
    loop.train(TrainConfig(model=str(tiny_llama_dir), data=str(demo_jsonl), output_dir=str(out), max_steps=8, save_every=2,
                           batch_size=4, max_length=192, show_progress=False, eval_fraction=0.0, resume=True,
                           keep_final_checkpoint=True))
    assert [p.name for p in checkpoint_dirs(root)] == ["step-000006", "step-000008"]
    assert not list(root.glob(".tmp-*"))


@pytest.fixture
def checkpointing_calls(monkeypatch):
    """The class names of the models that transformers was asked to checkpoint, in order."""
    from transformers import PreTrainedModel

    calls = []
    real = PreTrainedModel.activation_checkpointing_enable

    def spy(self, *args, **kwargs):
        calls.append(type(self).__name__)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(PreTrainedModel, "activation_checkpointing_enable", spy)
    return calls


@pytest.mark.parametrize(("fixture", "architecture"), [("tiny_llama_dir", "LlamaForSequenceClassification"),
                                                     ("tiny_bert_dir", "BertForSequenceClassification")])
def test_gradient_checkpointing_changes_memory_not_results(fixture, architecture, demo_jsonl, tmp_path, request, checkpointing_calls):
    model_dir = request.getfixturevalue(fixture)  # BERT: packed, the last block run at the [CLS] rows only
    plain = loop.train(_config(model_dir, demo_jsonl, tmp_path / "p", max_steps=3, precision="fp32", gradient_checkpointing=False))
    assert checkpointing_calls == []
    ckpt = loop.train(_config(model_dir, demo_jsonl, tmp_path / "c", max_steps=3, gradient_checkpointing=True,
                              precision="fp32"))
    assert checkpointing_calls == [architecture]  # really switched on, and results unchanged
    assert [m["loss"] for m in _metrics(plain.output_dir) if "loss" in m] == pytest.approx(
        [m["loss"] for m in _metrics(ckpt.output_dir) if "loss" in m], abs=1e-5)


@pytest.mark.parametrize(("fixture", "decoder"), [("tiny_llama_dir", True), ("tiny_bert_dir", False)])
def test_auto_checkpointing_turns_on_for_decoders_on_cpu(fixture, decoder, demo_jsonl, tmp_path, request, capsys, checkpointing_calls):
    from rewardlab.models.io import build_reward_model

    model_dir = request.getfixturevalue(fixture)
    loop.train(_config(model_dir, demo_jsonl, tmp_path / "a", max_steps=1, gradient_checkpointing="auto"))
    assert checkpointing_calls == (["LlamaForSequenceClassification"] if decoder else [])
    assert ("gradient checkpointing (auto: a decoder on CPU" in capsys.readouterr().err) is decoder
    model, _ = build_reward_model(str(model_dir))
    config = _config(model_dir, demo_jsonl, tmp_path / "b", gradient_checkpointing="auto")
    assert speed.checkpointing_and_reason(config, model, "cuda") == (False, None)  # not measured on GPUs: activations kept
    assert speed.checkpointing_and_reason(replace(config, gradient_checkpointing=False), model, "cpu") == (False, None)
    assert speed.checkpointing_and_reason(replace(config, gradient_checkpointing=True), model, "cuda") == (True, None)


def test_bf16_autocast_trains_with_finite_loss(tiny_llama_dir, demo_jsonl, tmp_path):
    from accelerate.state import AcceleratorState

    result = loop.train(_config(tiny_llama_dir, demo_jsonl, tmp_path / "bf", max_steps=3, precision="bf16"))
    assert str(AcceleratorState().mixed_precision) == "bf16"  # the run really used bf16 autocast
    fp32 = loop.train(_config(tiny_llama_dir, demo_jsonl, tmp_path / "fp", max_steps=3, precision="fp32"))
    losses = [m["loss"] for m in _metrics(result.output_dir) if "loss" in m]
    assert losses != [m["loss"] for m in _metrics(fp32.output_dir) if "loss" in m]  # bf16 rounding shows
    assert all(abs(x - 0.69) < 0.2 for x in losses)
    assert load_file(str(result.output_dir / "model.safetensors"))["score.weight"].dtype == torch.float32


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_bert_dir"])
def test_packed_and_padded_training_follow_the_same_trajectory(fixture, demo_jsonl, tmp_path, request, capsys):
    model_dir = request.getfixturevalue(fixture)
    runs = {}
    for layout in ("packed", "padded"):
        result = loop.train(_config(model_dir, demo_jsonl, tmp_path / layout, max_steps=4, layout=layout, precision="fp32",
                                         share_prefix=True, disable_dropout=True))
        runs[layout] = ([m["loss"] for m in _metrics(result.output_dir) if "loss" in m], result.final_metrics["eval_loss"])
    assert runs["packed"][0] == pytest.approx(runs["padded"][0], abs=1e-4)
    assert runs["packed"][1] == pytest.approx(runs["padded"][1], abs=1e-4)
    err = capsys.readouterr().err
    assert "packed batches" in err and ("with shared prompts" in err) == (fixture == "tiny_llama_dir")


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_bert_dir"])
def test_packed_evaluation_gives_the_padded_metrics(fixture, demo_jsonl, request):
    from accelerate import Accelerator

    from rewardlab.models.io import build_reward_model
    from rewardlab.training.objectives import make_objective

    config = _config(request.getfixturevalue(fixture), demo_jsonl, "unused", max_pairs=24, eval_fraction=0.0)
    objective = make_objective(config.objective)
    records, _, report = loop.load_train_eval_records(config, objective)
    model, tokenizer = build_reward_model(config.model, heads=objective.heads)
    examples = objective.tokenize(records, tokenizer, config.max_length, report)
    model.eval()  # dropout off for both passes
    model.train = lambda mode=True: model  # evaluate() switches back to training mode at its end
    seen = {}  # layout -> each example's rewards, as handed to the objective's metrics
    metrics = {}
    for layout in ("padded", "packed"):
        def spy(rewards, group, tie_policy, layout=layout):
            seen[layout] = {examples.index(e): r.tolist() for r, e in zip(rewards, group)}
            return objective.metrics(rewards, group, tie_policy)

        metrics[layout] = loop.evaluate(model, SimpleNamespace(metrics=spy), examples,
                                        loop.BatchLayout(layout, model.pooling, True, tokenizer.pad_token_id),
                                        Accelerator(cpu=True), 5, "half")
    assert sorted(seen["packed"]) == list(range(len(examples)))
    for i, rewards in seen["padded"].items():
        assert seen["packed"][i] == pytest.approx(rewards, abs=1e-5), i
    assert metrics["packed"] == pytest.approx(metrics["padded"], abs=1e-5)
    assert metrics["packed"]["eval_reward_std"] > 0  # real, differing rewards were compared


def test_layout_packed_on_an_unsupported_backbone_is_a_config_error(tmp_path, demo_jsonl):
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    from rewardlab.errors import ConfigError
    from rewardlab.models.io import resolve_model_source

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_source("builtin:minilm")[0])
    DistilBertModel(DistilBertConfig(vocab_size=tokenizer.vocab_size, dim=32, n_layers=1, n_heads=4, hidden_dim=64)).save_pretrained(tmp_path / "db")
    tokenizer.save_pretrained(tmp_path / "db")
    with pytest.raises(ConfigError, match="layout.*DistilBert"):
        loop.train(_config(tmp_path / "db", demo_jsonl, tmp_path / "o", max_steps=1, layout="packed"))


def test_auto_layout_packs_on_cpu_and_pads_on_gpu(tiny_llama_dir):
    from rewardlab.models.io import build_reward_model
    from rewardlab.training.config import TrainConfig

    model, _ = build_reward_model(str(tiny_llama_dir))
    auto = TrainConfig(model="m", data="d", output_dir="o", layout="auto")
    assert speed.layout_and_reason(auto, model, "cpu") == ("packed", None)
    assert speed.layout_and_reason(auto, model, "cuda") == ("padded", speed.GPU_TRAINING_REASON)
    assert speed.layout_and_reason(replace(auto, layout="packed"), model, "cuda") == ("packed", None)  # asked for: kept


def test_disable_dropout_zeroes_every_dropout(tiny_bert_dir):
    from rewardlab.models.io import build_reward_model

    model, tokenizer = build_reward_model(str(tiny_bert_dir))
    ids = torch.tensor([tokenizer("bees make honey")["input_ids"]])
    model.train()
    assert not torch.equal(model(ids, torch.ones_like(ids)), model(ids, torch.ones_like(ids)))  # dropout 0.1 is live
    loop.disable_dropout(model)
    assert torch.equal(model(ids, torch.ones_like(ids)), model(ids, torch.ones_like(ids)))
    assert all(m.p == 0 for m in model.modules() if isinstance(m, torch.nn.Dropout))


def test_precision_auto_follows_the_hardware(monkeypatch):
    import rewardlab.devices as devices

    monkeypatch.setattr(devices, "native_bf16", lambda: True)
    assert devices.resolve_precision("auto") == "bf16"
    monkeypatch.setattr(devices, "native_bf16", lambda: False)
    assert devices.resolve_precision("auto") == "fp32"
    assert devices.resolve_precision("bf16") == "bf16"


def test_an_output_folder_holding_a_run_is_refused_unless_resumed_or_overwritten(tiny_llama_dir, demo_jsonl, tmp_path):
    from rewardlab.errors import ConfigError

    out = tmp_path / "run"
    first = loop.train(_config(tiny_llama_dir, demo_jsonl, out, max_steps=2, save_every=1))
    with pytest.raises(ConfigError, match="already holds a training run"):
        loop.train(_config(tiny_llama_dir, demo_jsonl, out, max_steps=3))
    resumed = loop.train(_config(tiny_llama_dir, demo_jsonl, out, max_steps=2, resume=True))  # a finished run, resumed
    meta = json.loads((out / "rewardlab.json").read_text())
    assert meta["reward_mean"] == pytest.approx(first.final_metrics["eval_reward_mean"]) and resumed.steps == 2  # stats kept
    other = tmp_path / "other.jsonl"
    other.write_text(demo_jsonl.read_text())
    with pytest.raises(ConfigError, match="cannot resume .* differs in data"):
        loop.train(_config(tiny_llama_dir, other, out, max_steps=3, resume=True))
    (out / "notes.txt").write_text("mine")
    loop.train(_config(tiny_llama_dir, demo_jsonl, out, max_steps=1, overwrite=True))
    assert (out / "notes.txt").read_text() == "mine"  # overwrite removes the run's files only
    assert not (out / "checkpoints").exists()  # the old run's checkpoints are gone, and a finished run keeps none by default
    assert json.loads((out / "trainer_state.json").read_text()) == {"step": 1, "finished": True}


@pytest.mark.parametrize("part, garbage", [("trainer_state.json", b"{not json"), ("optimizer.json", b"\x00\x01"),
                                           ("rng-0.safetensors", b"garbage"), ("model.safetensors", b"\x10\x00")])
def test_a_corrupt_checkpoint_file_is_one_clear_error_naming_the_fallback(tiny_llama_dir, demo_jsonl, tmp_path, part, garbage):
    from rewardlab.errors import CheckpointError

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        import rewardlab.training.loop as module

        real = module.evaluate
        calls = {"n": 0}

        def interrupt(*a, **k):  # killed after the step-2 and step-4 checkpoints
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
            return real(*a, **k)

        module.evaluate = interrupt
        try:
            loop.train(_config(tiny_llama_dir, demo_jsonl, out, max_steps=6, save_every=2, eval_every=2))
        finally:
            module.evaluate = real
    latest = latest_checkpoint(out / "checkpoints")
    (latest / part).write_bytes(garbage)
    with pytest.raises(CheckpointError, match=rf"{latest.name}/.*unreadable .*delete .*{latest.name} to resume from step-000002"):
        loop.train(_config(tiny_llama_dir, demo_jsonl, out, max_steps=6, save_every=2, eval_every=2, resume=True))


def test_a_kill_during_the_final_save_leaves_a_folder_that_is_refused(tiny_llama_dir, demo_jsonl, tmp_path, monkeypatch):
    import rewardlab.models.io as io
    from rewardlab.errors import CheckpointError

    out = tmp_path / "run"
    real = io.save_pretrained

    def killed(model, tokenizer, metadata, directory, state_dict=None):
        real(model, tokenizer, metadata, directory, state_dict)
        raise KeyboardInterrupt  # dies after writing the temporary folder, before the renames

    monkeypatch.setattr(io, "save_pretrained", killed)
    with pytest.raises(KeyboardInterrupt):
        loop.train(_config(tiny_llama_dir, demo_jsonl, out, max_steps=2, save_every=1))
    monkeypatch.setattr(io, "save_pretrained", real)
    assert not (out / "model.safetensors").exists() and not list(out.glob(".final-*"))  # nothing half-written left behind
    with pytest.raises(CheckpointError, match="incomplete model folder"):
        load_reward_model(out)
    loop.train(_config(tiny_llama_dir, demo_jsonl, out, max_steps=2, save_every=1, resume=True))
    assert load_reward_model(out).score(["q"], ["a"])  # the resumed run finishes the save
    (out / "rewardlab.json").unlink()  # killed between the renames: weights in place, metadata not yet
    with pytest.raises(CheckpointError, match="final save did not finish"):
        load_reward_model(out)


def test_resume_never_retrains_over_a_finished_model(tiny_bert_dir, demo_jsonl, tmp_path):
    """Issue 33 item 10: a finished 2-step run keeps no checkpoint; '--max-steps 4 --resume' must not start from step 0
    and replace its model."""
    from rewardlab.errors import ConfigError

    out = tmp_path / "run"
    loop.train(_config(tiny_bert_dir, demo_jsonl, out, max_steps=2))
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="finished at step 2 and keeps no checkpoint.*--model"):
        loop.train(_config(tiny_bert_dir, demo_jsonl, out, max_steps=4, resume=True))
    assert (out / "model.safetensors").read_bytes() == before
    assert json.loads((out / "trainer_state.json").read_text()) == {"step": 2, "finished": True}
    loop.train(_config(tiny_bert_dir, demo_jsonl, out, max_steps=2, resume=True))  # the same length: nothing to do
    assert (out / "model.safetensors").read_bytes() == before
