"""``rewardlab demo``: train, evaluate and score on the embedded default, offline, in minutes."""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .data.demo import demo_pairs
from .data.readers import write_preference_pairs
from .data.records import PreferencePair
from .metrics import pairwise_accuracy
from .scoring import load_reward_model
from .scoring.protocol import LengthChecked, Scorer
from .training.config import TrainConfig
from .training.loop import train

__all__ = ["DemoReport", "length_split_accuracy", "run_demo"]


@dataclass(frozen=True)
class DemoReport:
    """Accuracies of the demo model on its held-out sets."""

    output_dir: Path
    heldout_accuracy: float
    chosen_longer_accuracy: float
    chosen_shorter_accuracy: float
    balanced_split_accuracy: float | None


def length_split_accuracy(scorer: Scorer, pairs: list[PreferencePair]) -> dict[str, float]:
    """Accuracy overall, on pairs whose chosen reply is longer / shorter (characters), and their mean.

    The mean of the two subsets is a length-balanced accuracy: "always pick the longer reply"
    scores 0.5 on it. Pairs whose replies do not fit the scorer's ``max_length`` (a :class:`LengthChecked`
    scorer) are left out (training dropped them too) and counted in ``skipped``. The length check tokenizes each
    text once more than scoring does (a few hundred demo pairs: milliseconds); the protocols keep it any scorer's.
    """
    n = len(pairs)
    prompts, replies = [p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs]
    too_long = set(scorer.too_long(prompts, replies)) if isinstance(scorer, LengthChecked) else set()
    keep = [i for i in range(n) if i not in too_long and i + n not in too_long]
    rewards = scorer.score([prompts[i] for i in keep] * 2, [replies[i] for i in keep] + [replies[i + n] for i in keep])
    chosen, rejected = rewards[: len(keep)], rewards[len(keep) :]
    longer = [len(pairs[i].chosen) > len(pairs[i].rejected) for i in keep]
    acc = {"accuracy": pairwise_accuracy(chosen, rejected), "pairs": float(len(keep)), "skipped": float(n - len(keep))}
    for name, flag in (("chosen_longer_accuracy", True), ("chosen_shorter_accuracy", False)):
        sel = [k for k, is_longer in enumerate(longer) if is_longer == flag]
        acc[name] = pairwise_accuracy([chosen[k] for k in sel], [rejected[k] for k in sel])
    acc["length_balanced_accuracy"] = (acc["chosen_longer_accuracy"] + acc["chosen_shorter_accuracy"]) / 2
    return acc


def run_ensemble_demo(output_dir: str | None = None, model: str = "builtin:minilm", members: int = 3, max_steps: int = 150,
                      show_progress: bool = True) -> dict[str, float]:
    """Train a bootstrap-heads ensemble on the built-in demo set and compare its spread (the std of the z-scored
    members) on held-out demo replies with the spread on the built-in out-of-distribution set."""
    import numpy as np

    from .data.ood import ood_examples
    from .scoring.config import build_scorer, scorer_config
    from .scoring.ensemble import EnsembleScorer

    out = Path(output_dir or tempfile.mkdtemp(prefix="rewardlab-ensemble-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    train_path = out / "demo-train.jsonl"
    write_preference_pairs(demo_pairs("train", 2000), train_path)
    heldout = demo_pairs("test", 400)
    write_preference_pairs(heldout, out / "demo-test.jsonl")
    config = TrainConfig.from_options(
        model=model, data=str(train_path), eval_data=str(out / "demo-test.jsonl"), output_dir=str(out / "model"), max_length=128,
        batch_size=16, learning_rate=5e-5, max_steps=max_steps, eval_every=max_steps, save_every=max_steps, warmup_ratio=0.1,
        show_progress=show_progress, ensemble=members)
    train(config)
    ensemble = build_scorer(scorer_config(config.output_dir, batch_size=64))
    if not isinstance(ensemble, EnsembleScorer):
        raise TypeError(f"{config.output_dir} should score as a heads ensemble, got {type(ensemble).__name__}")
    chosen = ensemble.score_detailed([p.prompt for p in heldout], [p.chosen for p in heldout])
    rejected = ensemble.score_detailed([p.prompt for p in heldout], [p.rejected for p in heldout])
    ood = ood_examples()
    far = ensemble.score_detailed([p for p, _ in ood], [r for _, r in ood])
    report = {"heldout_accuracy": float(np.mean(chosen.rewards > rejected.rewards)),
              "in_distribution_spread": float(np.concatenate([chosen.std, rejected.std]).mean()),
              "out_of_distribution_spread": float(far.std.mean())}
    print(f"{members}-head bootstrap ensemble, held-out accuracy (ensemble mean): {report['heldout_accuracy']:.3f}\n"
          f"member spread (std of z-scored heads): in distribution {report['in_distribution_spread']:.3f} "
          f"({2 * len(heldout)} demo replies), out of distribution {report['out_of_distribution_spread']:.3f} "
          f"({len(ood)} built-in OOD replies: code, other languages, math, data)\n"
          f"model saved in {config.output_dir} (scored as an ensemble by rewardlab; num_labels={members} in transformers)", flush=True)
    return report


def run_demo(
    output_dir: str | None = None, data: str | None = None, model: str = "builtin:minilm",
    max_steps: int = 150, show_progress: bool = True,
) -> DemoReport:
    """Train a reward model on the built-in demo set (or ``data``), report held-out accuracy, score samples."""
    out = Path(output_dir or tempfile.mkdtemp(prefix="rewardlab-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    balanced = None
    if data is None:
        train_path, test_path = out / "demo-train.jsonl", out / "demo-test.jsonl"
        write_preference_pairs(demo_pairs("train", 2000), train_path)
        write_preference_pairs(demo_pairs("test", 400), test_path)
        balanced = demo_pairs("balanced", 400)
        data, eval_data = str(train_path), str(test_path)
    else:
        eval_data = None
    config = TrainConfig(
        model=model, data=data, eval_data=eval_data, output_dir=str(out / "model"), max_length=128,
        batch_size=16, learning_rate=5e-5, max_steps=max_steps, eval_every=max_steps, save_every=max_steps,
        warmup_ratio=0.1, max_pairs=None if eval_data else 2000, show_progress=show_progress,
    )
    train(config)
    scorer = load_reward_model(config.output_dir, batch_size=64)
    from .training.loop import load_train_eval_records
    from .training.objectives import make_objective

    _, heldout, _ = load_train_eval_records(config, make_objective(config.objective))
    split = length_split_accuracy(scorer, heldout)
    lines = [
        f"held-out accuracy (the saved model, fp32): {split['accuracy']:.3f} on {split['pairs']:.0f} pairs "
        f"(chosen longer: {split['chosen_longer_accuracy']:.3f}, chosen shorter: {split['chosen_shorter_accuracy']:.3f}, "
        f"length-balanced mean: {split['length_balanced_accuracy']:.3f})",
    ]
    balanced_acc = None
    if balanced is not None:
        balanced_split = length_split_accuracy(scorer, balanced)
        balanced_acc = balanced_split["accuracy"]
        always_longer = sum(len(p.chosen) > len(p.rejected) for p in balanced) / len(balanced)
        lines.append(
            f"length-balanced split accuracy: {balanced_acc:.3f} on {balanced_split['pairs']:.0f} pairs "
            f"('always pick the longer reply' gets {always_longer:.3f})"
        )
    fits = scorer.tokenize([p.prompt for p in heldout[:20]], [p.chosen + " " + p.rejected for p in heldout[:20]], "none")
    sample = [p for p, ids in zip(heldout[:20], fits) if ids is not None][:3]  # short enough for both replies
    rewards = scorer.score([p.prompt for p in sample] * 2, [p.chosen for p in sample] + [p.rejected for p in sample])
    lines.append("sample scores (chosen vs rejected):")
    for i, p in enumerate(sample):
        lines.append(f"  {p.prompt[-1].content[:60]!r}: {rewards[i]:+.2f} vs {rewards[i + len(sample)]:+.2f}")
    lines.append(f"model saved in {config.output_dir} (loads with AutoModelForSequenceClassification); "
                 f"everything this demo wrote is in {out} (rm -r {out} removes it)")
    print("\n".join(lines), file=sys.stdout, flush=True)
    return DemoReport(
        Path(config.output_dir), split["accuracy"], split["chosen_longer_accuracy"], split["chosen_shorter_accuracy"], balanced_acc
    )
