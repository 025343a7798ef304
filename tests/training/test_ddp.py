"""Two-process DDP (gloo, CPU) through the real ``accelerate launch`` equals one process.

``accelerate launch --cpu`` starts a single process unless given an MPI hostfile, so the test
uses ``--multi_gpu`` (torchrun underneath); with no CUDA, rewardlab then runs CPU DDP on gloo.
"""

import json
import os
import subprocess
import sys

import pytest

from rewardlab.training.config import TrainConfig
from rewardlab.training.loop import train


def _losses(out):
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]


def test_two_process_ddp_matches_one_process_with_the_same_global_batch(tiny_llama_dir, demo_jsonl, tmp_path):
    common = ["--model", str(tiny_llama_dir), "--data", str(demo_jsonl), "--max-steps", "6", "--max-length", "192",
              "--learning-rate", "3e-3", "--warmup-ratio", "0", "--log-every", "1", "--eval-every", "3",
              "--eval-fraction", "0.125", "--no-show-progress", "--precision", "fp32"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
              "--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "rewardlab.cli", "train"]
    ddp = subprocess.run(launch + common + ["--output-dir", str(tmp_path / "ddp"), "--batch-size", "2"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = train(TrainConfig(model=str(tiny_llama_dir), data=str(demo_jsonl), output_dir=str(tmp_path / "one"),
                               max_steps=6, max_length=192, learning_rate=3e-3, warmup_ratio=0.0, log_every=1,
                               eval_every=3, eval_fraction=0.125, show_progress=False, batch_size=4, precision="fp32"))
    ddp_losses, one_losses = _losses(tmp_path / "ddp"), _losses(single.output_dir)
    assert len(ddp_losses) == len(one_losses) == 6
    assert ddp_losses == pytest.approx(one_losses, abs=2e-4)
    ddp_eval = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines() if "eval_loss" in line]
    assert ddp_eval[-1]["eval_pairs"] == 12  # the eval set is sharded and gathered, nothing lost or doubled
    assert ddp_eval[-1]["eval_loss"] == pytest.approx(single.final_metrics["eval_loss"], abs=1e-3)


RECIPES = __import__("pathlib").Path(__file__).resolve().parents[2] / "recipes" / "accelerate"


def test_shipped_accelerate_recipes_load_and_the_cpu_one_runs_and_resumes(tiny_llama_dir, demo_jsonl, tmp_path):
    from accelerate.commands.config.config_args import load_config_from_file

    configs = {p.name: load_config_from_file(str(p)) for p in sorted(RECIPES.glob("*.yaml"))}
    assert {c.num_processes for c in configs.values()} >= {2, 8, 16}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(RECIPES / "ddp_cpu_2proc.yaml"),
           "-m", "rewardlab.cli", "train", "--model", str(tiny_llama_dir), "--data", str(demo_jsonl), "--max-length", "192",
           "--batch-size", "2", "--save-every", "2", "--eval-fraction", "0", "--no-show-progress", "--precision", "fp32",
           "--output-dir", str(tmp_path / "run"), "--keep-final-checkpoint"]
    first = subprocess.run(cmd + ["--max-steps", "2"], capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = subprocess.run(cmd + ["--max-steps", "4", "--resume"], capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr and "step-000002" in resumed.stderr  # both processes continue from step 2
    assert json.loads((tmp_path / "run" / "trainer_state.json").read_text())["step"] == 4


def test_fsdp_and_deepspeed_recipes_load_and_are_refused_without_gpus(tiny_llama_dir, demo_jsonl, tmp_path, monkeypatch):
    """Accelerate runs FSDP and DeepSpeed on GPUs only; on a CPU machine it would quietly run plain DDP instead."""
    from accelerate.commands.config.config_args import load_config_from_file

    fsdp = load_config_from_file(str(RECIPES / "fsdp2_8gpu.yaml"))
    assert str(fsdp.distributed_type) == "DistributedType.FSDP" and fsdp.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    stages = {load_config_from_file(str(RECIPES / f"deepspeed_zero{k}_8gpu.yaml")).deepspeed_config["zero_stage"] for k in (2, 3)}
    assert stages == {2, 3}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(RECIPES / "fsdp2_8gpu.yaml"), "--num_processes", "2",
           "--mixed_precision", "no", "-m", "rewardlab.cli", "train", "--model", str(tiny_llama_dir), "--data", str(demo_jsonl),
           "--max-steps", "1", "--no-show-progress", "--output-dir", str(tmp_path / "fsdp")]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode != 0 and "FSDP, which Accelerate runs on GPUs only" in run.stderr
    assert not (tmp_path / "fsdp" / "model.safetensors").exists()
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    from rewardlab.errors import ConfigError

    with pytest.raises(ConfigError, match="DeepSpeed, which Accelerate runs on GPUs only"):
        train(TrainConfig(model=str(tiny_llama_dir), data=str(demo_jsonl), output_dir=str(tmp_path / "ds"), max_steps=1))


def test_deepspeed_settings_that_the_engine_would_override_are_refused():
    from rewardlab.errors import ConfigError
    from rewardlab.training.engines import check_deepspeed_options

    check_deepspeed_options({"gradient_clipping": "auto", "gradient_accumulation_steps": "auto"}, 1, 0.5)
    with pytest.raises(ConfigError, match="grad_accum_steps=2 under DeepSpeed"):
        check_deepspeed_options({}, 2, 1.0)
    with pytest.raises(ConfigError, match="max_grad_norm=0.5 but the DeepSpeed recipe clips at gradient_clipping=1.0"):
        check_deepspeed_options({"gradient_clipping": 1.0}, 1, 0.5)
    with pytest.raises(ConfigError, match="gradient_accumulation_steps=4"):
        check_deepspeed_options({"gradient_accumulation_steps": 4}, 1, 1.0)
