"""The end of a round: record it, and (before the last round) label pairs from the current policy and update the
reward model the next round optimizes against."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..jsonsafe import dumps
from ..scoring.protocol import LengthChecked
from .config import RLHFConfig
from .state import load_scorer, save_state
from .labels import (LabelledPairs, candidate_pairs, export_for_people, import_people_labels, label_with_scorer,
                     reward_model_accuracy)

__all__ = ["finish_round", "resume_pending_update"]


def _labeller(config: RLHFConfig, ctx: dict[str, Any]) -> Any:
    if config.labeler == "gold":
        return ctx["gold"]
    if config.labeler == "proxy":
        return ctx["proxy"]
    from ..scoring.config import JudgeConfig, build_scorer

    if config.judge_model is None:  # RLHFConfig requires it for labeler 'judge'
        raise ConfigError("labeler 'judge' needs judge_model")
    return build_scorer(JudgeConfig(model=config.judge_model, base_url=config.judge_base_url))


def _updatable(state: dict[str, Any], ctx: dict[str, Any]) -> str | None:
    """Why the proxy cannot be fine-tuned here (None when it can)."""
    if ctx.get("fixed_proxy"):
        return "the proxy was given as a Python scorer: it is not updated between rounds"
    source = state.get("proxy")
    if not source or not Path(source).is_dir() or not (Path(source) / "config.json").exists():
        return f"the proxy {source!r} is not a reward-model folder rewardlab can fine-tune (a URL or an ensemble listing)"
    return None


def _candidates(config: RLHFConfig, r: int, model: Any, ctx: dict[str, Any]) -> list[tuple[int, str, str]]:
    from ..labeling.sampling import sample_replies

    replies = sample_replies(model, ctx["tokenizer"], ctx["label_prompts"], config.label_samples, config.max_completion_length,
                             seed=config.seed + 1000 * r)
    groups: list[list[str]] = [[] for _ in ctx["label_prompts"]]
    for reply in replies:
        groups[reply.prompt_index].append(reply.text)
    return candidate_pairs(ctx["label_prompts"], groups)


def finish_round(config: RLHFConfig, out: Path, r: int, phase: dict[str, Any], ctx: dict[str, Any]) -> None:
    """Record round ``r``; label and update the reward model unless it was the last round or the run stops."""
    state = ctx["state"]
    record = {k: v for k, v in phase.items() if k != "trainer"}
    state["rounds"].append(record)
    if phase["stopped_by"]:
        state["stop_reason"] = phase["stopped_by"]
    if r == config.rounds or state["stop_reason"]:
        return
    why_not = _updatable(state, ctx)
    if why_not is not None:
        record["reward_model"] = {"updated": False, "why": why_not}
        return
    state["pending_update"] = r  # saved before labelling: a kill from here on resumes the update, not the phase
    save_state(out, state)
    started = time.perf_counter()
    candidates = _candidates(config, r, phase["trainer"].model, ctx)
    record["label_seconds"] = time.perf_counter() - started
    folder = out / f"round_{r}"
    if config.labeler == "human":
        export_for_people(ctx["label_prompts"], candidates, folder / "pairs_to_label.jsonl")
        state["pending_update"] = r
        state["stop_reason"] = (f"awaiting labels: label {folder / 'pairs_to_label.jsonl'} into {folder / 'labels.jsonl'} "
                                f"(id, preferred: a|b|tie), then run again with --resume")
        return
    labelled = label_with_scorer(ctx["label_prompts"], candidates, _labeller(config, ctx))
    record["reward_model"] = update_reward_model(config, out, r, labelled, ctx)
    state["pending_update"] = None


def resume_pending_update(config: RLHFConfig, out: Path, ctx: dict[str, Any]) -> None:
    """A round whose RL phase finished but whose reward-model update did not (killed while labelling or training the
    RM, or waiting for people's labels): label (or read the labels) and update now."""
    state = ctx["state"]
    r = state.get("pending_update")
    if not r:
        return
    folder = out / f"round_{r}"
    if config.labeler == "human":
        labels = folder / "labels.jsonl"
        if not labels.exists():
            raise ConfigError(f"round {r} waits for people's labels: write {labels} (one line per pair of "
                              f"{folder / 'pairs_to_label.jsonl'}: id, preferred a|b|tie) and resume")
        labelled = import_people_labels(folder / "pairs_to_label.jsonl", labels)
        state["stop_reason"] = None
    else:
        from transformers import AutoModelForCausalLM

        policy = AutoModelForCausalLM.from_pretrained(folder / "policy").to(ctx["device"])
        labelled = label_with_scorer(ctx["label_prompts"], _candidates(config, r, policy, ctx), _labeller(config, ctx))
    state["rounds"][r - 1]["reward_model"] = update_reward_model(config, out, r, labelled, ctx)
    state["pending_update"] = None


def update_reward_model(config: RLHFConfig, out: Path, r: int, labelled: LabelledPairs, ctx: dict[str, Any]) -> dict[str, Any]:
    """Fine-tune the current proxy on old + new pairs (new pairs of every fourth labelling prompt held out to measure
    its accuracy on the current policy's replies before and after); the next round optimizes the new one."""
    from ..data.readers import read_preference_pairs, write_preference_pairs
    from ..training.config import TrainConfig
    from ..training.loop import train

    state = ctx["state"]
    folder = out / f"round_{r}"
    folder.mkdir(parents=True, exist_ok=True)
    held = [p for p, i in zip(labelled.pairs, labelled.prompt_ids) if i % 4 == 3]
    new = [p for p, i in zip(labelled.pairs, labelled.prompt_ids) if i % 4 != 3]
    write_preference_pairs(new, folder / "new_pairs.jsonl")
    old = read_preference_pairs(state["proxy_data"])[0] if state.get("proxy_data") else []
    for k in range(1, r):
        previous = out / f"round_{k}" / "new_pairs.jsonl"
        if previous.exists():
            old += read_preference_pairs(previous)[0]
    if not new:
        return {"updated": False, "why": f"no new pair with a preference ({labelled.ties} ties)", "ties": labelled.ties}
    write_preference_pairs(old + new, folder / "rm_train_pairs.jsonl")
    before = reward_model_accuracy(ctx["proxy"], held)
    started = time.perf_counter()
    limit = {"max_length": ctx["proxy"].max_length} if isinstance(ctx["proxy"], LengthChecked) else {}
    train(TrainConfig.from_options(model=state["proxy"], data=str(folder / "rm_train_pairs.jsonl"), **limit,
                                   output_dir=str(folder / "reward_model"), max_steps=config.rm_steps,
                                   learning_rate=config.rm_learning_rate, batch_size=config.rm_batch_size, eval_fraction=0.0,
                                   seed=config.seed + r, show_progress=True, overwrite=True))
    scorer = load_scorer(str(folder / "reward_model"))
    after = reward_model_accuracy(scorer, held)
    ctx["proxy"] = ctx["evaluator"].proxy = scorer
    state["proxy"] = str(folder / "reward_model")
    save_state(out, state)
    result = {"updated": True, "new_pairs": len(new), "old_pairs": len(old), "heldout_pairs": len(held), "ties": labelled.ties,
              "accuracy_before": before, "accuracy_after": after, "seconds": time.perf_counter() - started,
              "folder": str(folder / "reward_model"), "labeler": config.labeler}
    (folder / "reward_model_update.json").write_text(dumps(result, indent=2))
    return result
