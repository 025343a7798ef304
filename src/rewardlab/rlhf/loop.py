"""``run_rlhf``: iterative RLHF on TRL's GRPOTrainer with rewardlab around it.

One round::

    GRPO phase      the policy optimizes the current proxy (TRL), KL towards the fixed initial policy; the monitor
                    watches every rollout, the evaluation runs every eval_every steps; stop rules may end it early
    policy saved    round_<r>/policy (plain transformers folder)
    labelling       (not after the last round) the policy answers the labelling prompts; pairs labelled by the
                    gold, a judge, the proxy or people
    RM update       the proxy is fine-tuned on old + new pairs (round_<r>/reward_model); accuracy on held-out new
                    pairs before and after; the next round optimizes against it

Run folder: config.json (checked on resume), state.json, metrics.jsonl, rollouts.jsonl, alarms.jsonl, eval/step_N.jsonl,
rounds.json, report.md, rlhf.png, human_eval.jsonl (+ key), trl/ (TRL's checkpoints: a killed run resumes there).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..jsonsafe import dumps
from ..scoring.protocol import Scorer
from .config import RLHFConfig
from .evaluation import Evaluator
from .state import load_scorer, save_state

__all__ = ["RLHFResult", "run_rlhf"]


@dataclass(frozen=True)
class RLHFResult:
    """What a run did: its rounds, why it stopped, and where everything is."""

    output_dir: Path
    rounds: list[dict[str, Any]]
    stop_reason: str
    evaluations: list[dict[str, Any]]


def _say(message: str) -> None:
    print(f"[rewardlab] {message}", file=sys.stderr, flush=True)


# -- the run folder ---------------------------------------------------------------------------------------------
def _prepare_folder(out: Path, config: RLHFConfig, resume: bool) -> dict[str, Any]:
    saved = out / "config.json"
    if saved.exists():
        if not resume:
            raise ConfigError(f"{out} already holds an RLHF run; pass --resume to continue it or choose another --output-dir")
        old = json.loads(saved.read_text())
        changed = sorted(k for k in set(old) | set(config.to_dict()) if old.get(k) != config.to_dict().get(k))
        if changed:
            raise ConfigError(f"{saved}: the run was started with other settings for {changed}; resume with the same "
                              f"config (saved there) or start a new --output-dir")
        return json.loads((out / "state.json").read_text())
    if resume:
        raise ConfigError(f"--resume: {out} holds no RLHF run (no config.json)")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty; choose a new --output-dir for an RLHF run")
    out.mkdir(parents=True, exist_ok=True)
    saved.write_text(dumps(config.to_dict(), indent=2))
    state: dict[str, Any] = {"rounds": [], "stop_reason": None, "proxy": None}
    save_state(out, state)
    return state


def _keep_until(path: Path, step: int) -> None:
    """Drop the lines of a step-keyed jsonl written after ``step`` (a resumed run writes them again)."""
    if path.exists():
        lines = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in lines))


def _latest_checkpoint(trl_dir: Path) -> tuple[str | None, int]:
    found = [(int(p.name.split("-")[1]), p) for p in trl_dir.glob("checkpoint-*") if p.name.split("-")[1].isdigit()]
    if not found:
        return None, 0
    step, path = max(found)
    return str(path), step


# -- inputs -----------------------------------------------------------------------------------------------------
def _prompt_sets(config: RLHFConfig) -> tuple[list[Any], list[Any], list[Any]]:
    """(evaluation, labelling, training) prompts, disjoint."""
    need = config.eval_prompts + config.label_prompts + 1
    if config.prompts is None:
        from ..data.demo import demo_pairs

        held_out = list(dict.fromkeys(p.prompt[0].content for p in demo_pairs("test", 50 * config.eval_prompts, config.seed)))
        rest = list(dict.fromkeys(p.prompt[0].content for p in demo_pairs("train", 8 * need + 8 * config.train_prompts,
                                                                            config.seed + 1)))
        rest = [p for p in rest if p not in set(held_out)]
        return held_out[: config.eval_prompts], rest[: config.label_prompts], rest[config.label_prompts:][: config.train_prompts]
    from ..data.readers import iter_records
    from ..errors import DataFormatError

    prompts = []
    for location, record in iter_records(config.prompts):
        if not isinstance(record.get("prompt"), (str, list)) or not record.get("prompt"):
            raise DataFormatError(location, "expected a prompt (text or chat messages)", "prompt")
        prompts.append(record["prompt"])
    if len(prompts) < need:
        raise DataFormatError(config.prompts, f"has {len(prompts)} prompts; the run needs at least {need} "
                                              f"({config.eval_prompts} to evaluate, {config.label_prompts} to label, 1+ to train)")
    split = config.eval_prompts + config.label_prompts
    return prompts[: config.eval_prompts], prompts[config.eval_prompts: split], prompts[split:][: config.train_prompts]


def _initial_policy(config: RLHFConfig, out: Path) -> str:
    """A plain transformers folder of the initial policy (builtin GGUF models are converted once, into policy_init/)."""
    from ..models.io import check_model_source, resolve_model_source

    check_model_source(config.policy, "policy")
    path, extra = resolve_model_source(config.policy)
    if not extra:
        if not Path(path).is_dir():
            raise ConfigError(f"--policy {config.policy}: no such local policy folder (Hub policies: download them first, "
                              "e.g. with huggingface-cli download, and give the folder)")
        return path
    target = out / "policy_init"
    if not (target / "config.json").exists():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ..models.io import release_gguf

        _say(f"converting {config.policy} to a transformers folder ({target})")
        model = AutoModelForCausalLM.from_pretrained(path, **extra)
        release_gguf(model)
        model.save_pretrained(target)
        AutoTokenizer.from_pretrained(path, **extra).save_pretrained(target)
    return str(target)


def _gold_scorer(config: RLHFConfig, gold: Scorer | None) -> Scorer | None:
    if gold is not None:
        return gold
    if config.gold is None:
        return None
    if config.gold == "demo":
        from ..overopt.gold import demo_gold_scorer

        return demo_gold_scorer()
    from ..scoring.config import build_scorer, scorer_config

    return build_scorer(scorer_config(config.gold))


def _initial_proxy(config: RLHFConfig, out: Path) -> tuple[str, str | None]:
    """(proxy folder or URL, the pairs it was trained on): the given one, or a MiniLM RM trained here on demo pairs."""
    if config.proxy is not None:
        return config.proxy, config.proxy_data
    folder, pairs = out / "proxy_round0", out / "proxy_pairs.jsonl"
    if not (folder / "config.json").exists():
        from ..data.demo import demo_pairs
        from ..data.readers import write_preference_pairs
        from ..training.config import TrainConfig
        from ..training.loop import train

        _say("training the demo proxy: MiniLM on 256 demo pairs, 60 steps (it over-rewards what those pairs correlate with)")
        write_preference_pairs(demo_pairs("train", 256, seed=config.seed + 11), pairs)
        train(TrainConfig.from_options(model="builtin:minilm", data=str(pairs), output_dir=str(folder), max_steps=60, batch_size=8,
                                       eval_fraction=0.0, seed=config.seed, show_progress=True, overwrite=True))
    return str(folder), str(pairs)


# -- one GRPO phase ---------------------------------------------------------------------------------------------
def _grpo_args(config: RLHFConfig, out: Path, max_steps: int, with_gold: bool, device: str) -> Any:
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=str(out / "trl"), per_device_train_batch_size=config.prompts_per_step * config.num_generations,
        num_generations=config.num_generations, max_completion_length=config.max_completion_length, max_steps=max_steps,
        learning_rate=config.learning_rate, lr_scheduler_type="constant", warmup_steps=0, beta=config.kl_coef,
        temperature=1.0, logging_steps=1, save_strategy="steps", save_steps=config.checkpoint_every, save_total_limit=1,
        report_to=[], seed=config.seed, use_cpu=device == "cpu", bf16=False, reward_weights=[1.0, 0.0] if with_gold else None,
        disable_tqdm=False)


def _trainer(config: RLHFConfig, out: Path, policy_path: str, reward_funcs: list[Any], train_prompts: list[Any],
             max_steps: int, device: str) -> Any:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOTrainer

    from ..data.templating import as_messages

    rows = [{"prompt": [m.as_dict() for m in as_messages(p)]} for p in train_prompts]
    peft_config = None
    if config.lora_rank:
        from peft import LoraConfig

        peft_config = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    tokenizer = AutoTokenizer.from_pretrained(policy_path)
    return GRPOTrainer(model=policy_path, reward_funcs=reward_funcs, args=_grpo_args(config, out, max_steps, len(reward_funcs) > 1, device),
                       train_dataset=Dataset.from_list(rows), processing_class=tokenizer, peft_config=peft_config)


def _monitor_for(config: RLHFConfig, out: Path, round_start: int, resumed_at: int) -> Any:
    """This round's monitor (reference: its first window), replaying the round's recorded rollouts after a resume."""
    from ..monitor.monitor import MonitorConfig, RewardHackingMonitor
    from ..monitor.rollouts import read_rollouts

    monitor = RewardHackingMonitor(MonitorConfig(min_window_rollouts=config.monitor_window))
    if resumed_at > round_start and (out / "rollouts.jsonl").exists():
        for rollout in read_rollouts(out / "rollouts.jsonl"):
            if round_start < rollout.step <= resumed_at:
                monitor.add([rollout])
        monitor.end_step(resumed_at)
    monitor.alarms_path = out / "alarms.jsonl"
    return monitor


def _rl_phase(config: RLHFConfig, out: Path, r: int, ctx: dict[str, Any]) -> dict[str, Any]:
    """Run GRPO from the latest checkpoint to step ``r * steps_per_round``; returns the phase's record."""
    from ..control import AdaptiveKLController, FixedKLController
    from ..monitor.callback import RewardHackingCallback
    from ..serving.adapters import trl_reward_function
    from .callbacks import EvaluationCallback, KLCallback, MetricsLog

    checkpoint, resumed_at = _latest_checkpoint(out / "trl")
    round_start, last_step = (r - 1) * config.steps_per_round, r * config.steps_per_round
    resumed_at = max(resumed_at, round_start) if checkpoint else round_start
    for name in ("metrics.jsonl", "rollouts.jsonl", "alarms.jsonl"):
        _keep_until(out / name, resumed_at)
    proxy_fn = trl_reward_function(ctx["proxy"], "proxy", record=True)
    funcs = [proxy_fn] + ([trl_reward_function(ctx["gold"], "gold", record=True)] if ctx["gold"] is not None else [])
    trainer = _trainer(config, out, ctx["policy_path"], funcs, ctx["train_prompts"], last_step, ctx["device"])
    controller = (AdaptiveKLController(config.kl_coef, config.kl_target, config.kl_horizon) if config.kl_control == "adaptive"
                  else FixedKLController(config.kl_coef))
    if config.kl_control == "adaptive" and ctx["state"].get("kl_coef") is not None:
        controller.value = ctx["state"]["kl_coef"]
    monitor = _monitor_for(config, out, round_start, resumed_at)
    watch = RewardHackingCallback(monitor, proxy_fn, gold=funcs[1] if len(funcs) > 1 else None, stop_on_alarm=config.stop_on_alarm,
                                  stop_rules=config.stop_alarms_list, rollouts_path=str(out / "rollouts.jsonl")).attach(trainer)
    evaluation = EvaluationCallback(ctx["evaluator"].evaluate, config.eval_every, last_step, MetricsLog(out / "metrics.jsonl"),
                                    r, config.kl_budget, config.min_distinct)
    trainer.add_callback(KLCallback(trainer, controller, config.prompts_per_step * config.num_generations))
    trainer.add_callback(evaluation)
    started = time.perf_counter()
    _say(f"round {r}: GRPO steps {resumed_at + 1}-{last_step}" + (f" (resumed from {checkpoint})" if checkpoint else ""))
    trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - started
    ctx["state"]["kl_coef"] = float(trainer.beta)
    _save_policy(trainer, out / f"round_{r}" / "policy")
    stopped = (f"reward-hacking alarm: {watch.stopped_by.describe()}" if watch.stopped_by is not None else evaluation.stopped_by)
    return {"round": r, "steps": int(trainer.state.global_step), "phase_seconds": seconds,
            "eval_seconds": evaluation.eval_seconds, "alarms": [a.to_json() for a in monitor.alarms], "stopped_by": stopped,
            "last_eval": evaluation.last_eval, "kl_coef_end": float(trainer.beta), "trainer": trainer}


def _save_policy(trainer: Any, folder: Path) -> None:
    """The policy as a plain transformers folder (a LoRA policy is merged into a copy first)."""
    import copy

    folder.mkdir(parents=True, exist_ok=True)
    model = trainer.model
    if hasattr(model, "merge_and_unload"):
        model = copy.deepcopy(model).merge_and_unload()
    model.save_pretrained(folder)
    trainer.processing_class.save_pretrained(folder)


# -- the run ----------------------------------------------------------------------------------------------------
def _context(config: RLHFConfig, out: Path, state: dict[str, Any], gold: Scorer | None, proxy: Scorer | None) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    eval_prompts, label_prompts, train_prompts = _prompt_sets(config)
    policy_path = _initial_policy(config, out)
    if proxy is None and state.get("proxy") is None:
        state["proxy"], state["proxy_data"] = _initial_proxy(config, out)
        save_state(out, state)
    proxy_scorer = proxy if proxy is not None else load_scorer(state["proxy"])
    tokenizer = AutoTokenizer.from_pretrained(policy_path)
    reference: Any = AutoModelForCausalLM.from_pretrained(policy_path)
    reference = reference.to(device).eval()
    evaluator = Evaluator(eval_prompts, config.eval_samples, config.max_completion_length, config.seed + 7, tokenizer,
                          reference, proxy_scorer, gold, out)
    return {"device": device, "eval_prompts": eval_prompts, "label_prompts": label_prompts, "train_prompts": train_prompts,
            "policy_path": policy_path, "proxy": proxy_scorer, "gold": gold, "tokenizer": tokenizer, "reference": reference,
            "evaluator": evaluator, "state": state}


def _reference_evaluation(out: Path, ctx: dict[str, Any]) -> None:
    """Step 0: the initial policy evaluated once (the reference rows for win rates and the blind file)."""
    from .callbacks import MetricsLog

    first = out / "eval" / "step_0.jsonl"
    if first.exists():
        ctx["evaluator"].reference_rows = [json.loads(line) for line in first.read_text().splitlines()]
        return
    _say("evaluating the initial policy (step 0)")
    MetricsLog(out / "metrics.jsonl").write(ctx["evaluator"].evaluate(ctx["reference"], 0, 0))


def _gold_gain_stop(config: RLHFConfig, rounds: list[dict[str, Any]], evaluations: list[dict[str, Any]]) -> str | None:
    if config.min_gold_gain is None or not rounds:
        return None
    def last_gold(step: int) -> float | None:
        rows = [e for e in evaluations if e["step"] <= step and e.get("gold_mean") is not None]
        return rows[-1]["gold_mean"] if rows else None

    before = last_gold(rounds[-2]["steps"] if len(rounds) > 1 else 0)
    after = last_gold(rounds[-1]["steps"])
    if before is not None and after is not None and after - before < config.min_gold_gain:
        return f"gold improved by {after - before:.3g} in round {rounds[-1]['round']}, below min_gold_gain {config.min_gold_gain:g}"
    return None


def _evaluations(out: Path) -> list[dict[str, Any]]:
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    return [row for row in map(json.loads, path.read_text().splitlines()) if row.get("kind") == "eval"]


def run_rlhf(config: RLHFConfig, output_dir: str | os.PathLike, gold: Scorer | None = None, proxy: Scorer | None = None,
             resume: bool = False) -> RLHFResult:
    """Run (or resume) an iterative RLHF run into ``output_dir``; ``gold`` / ``proxy`` override the config's scorers
    (any :class:`~rewardlab.scoring.Scorer`; a proxy given here is not updated between rounds)."""
    from ..extras import require

    require("trl", "rl", "rewardlab rlhf")
    if config.lora_rank:
        require("peft", "lora", "a LoRA policy (lora_rank > 0)")
    from ..models.io import check_model_source

    check_model_source(config.policy, "policy")
    if gold is None and config.gold is None and config.needs_gold():  # refused before anything is written or loaded
        raise ConfigError(f"{', '.join(config.needs_gold())} need(s) a gold reward: pass --gold (or gold= in Python)")
    out = Path(output_dir)
    state = _prepare_folder(out, config, resume)
    gold_scorer = _gold_scorer(config, gold)
    ctx = _context(config, out, state, gold_scorer, proxy)
    ctx["fixed_proxy"] = proxy is not None
    _reference_evaluation(out, ctx)
    if config.bon_samples and gold_scorer is not None and not (out / "bon.json").exists():
        from .report import best_of_n_pool

        _say(f"best-of-n pool: {config.bon_samples} replies per evaluation prompt from the initial policy")
        best_of_n_pool(config, out, ctx)
    from .rounds import finish_round, resume_pending_update

    resume_pending_update(config, out, ctx)
    for r in range(len(state["rounds"]) + 1, config.rounds + 1):
        if state["stop_reason"]:
            break
        phase = _rl_phase(config, out, r, ctx)
        finish_round(config, out, r, phase, ctx)
        if not state["stop_reason"]:
            state["stop_reason"] = _gold_gain_stop(config, state["rounds"], _evaluations(out))
        save_state(out, state)
    if not state["stop_reason"] and len(state["rounds"]) == config.rounds:
        state["stop_reason"] = f"max rounds ({config.rounds})"
        save_state(out, state)
    from .report import write_run_report

    final = max(out.glob("eval/step_*.jsonl"), key=lambda p: int(p.stem.split("_")[1]))
    ctx["evaluator"].write_blind_file(final, config.seed)
    (out / "rounds.json").write_text(dumps({"rounds": state["rounds"], "stop_reason": state["stop_reason"]}, indent=2))
    write_run_report(config, out)
    return RLHFResult(out, state["rounds"], state["stop_reason"] or "", _evaluations(out))
