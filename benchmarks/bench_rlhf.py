"""RLHF on this machine: rewardlab's loop against GRPOTrainer alone, the KL-coefficient question, and the monitor on
a run whose proxy is the gold.

    python benchmarks/bench_rlhf.py cost --steps 20                 # GRPOTrainer alone vs rewardlab rlhf, same settings
    python benchmarks/bench_rlhf.py kl --proxy RUN/proxy_round0 --proxy-data RUN/proxy_pairs.jsonl --steps 30
    python benchmarks/bench_rlhf.py proxy-is-gold --steps 30

Every run is SmolLM2-135M on the demo instructions (2 prompts x 4 completions of at most 48 tokens a step,
learning rate 5e-5), the demo gold watched; ``RUN`` is a ``rewardlab rlhf --quick`` folder (its MiniLM proxy).
Prints JSON lines and Markdown tables; ``kl`` also writes ``docs/img/rlhf_kl.png``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = dict(prompts_per_step=2, num_generations=4, max_completion_length=48, learning_rate=5e-5, bon_samples=0, rounds=1,
                gold="demo", labeler="gold", stop_on_alarm=False, min_distinct=None, checkpoint_every=1000)


def trl_alone(policy: str, proxy: str, steps: int, beta: float, out: Path) -> dict:
    """GRPOTrainer with the same data, rewards (proxy + gold at weight 0) and settings, no rewardlab callback."""
    from rewardlab.overopt.gold import demo_gold_scorer
    from rewardlab.rlhf.config import RLHFConfig
    from rewardlab.rlhf.loop import _prompt_sets, _trainer
    from rewardlab.rlhf.state import load_scorer
    from rewardlab.serving.adapters import trl_reward_function

    config = RLHFConfig(**{**SETTINGS, "steps_per_round": steps, "kl_coef": beta})
    _, _, train_prompts = _prompt_sets(config)
    funcs = [trl_reward_function(load_scorer(proxy), "proxy"), trl_reward_function(demo_gold_scorer(), "gold")]
    trainer = _trainer(config, out, policy, funcs, train_prompts, steps, "cpu")
    trainer.args.save_strategy = "no"
    began = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - began
    return {"run": "GRPOTrainer alone", "steps": steps, "seconds": seconds, "steps_per_s": steps / seconds}


def cost(args: argparse.Namespace) -> None:
    from rewardlab.rlhf.config import RLHFConfig
    from rewardlab.rlhf.loop import _initial_policy, _initial_proxy, run_rlhf

    work = Path(tempfile.mkdtemp(prefix="bench-rlhf-"))
    config = RLHFConfig(**{**SETTINGS, "steps_per_round": args.steps, "kl_coef": args.beta, "eval_every": args.eval_every})
    policy = _initial_policy(config, work)
    proxy, pairs = (args.proxy, args.proxy_data) if args.proxy else _initial_proxy(config, work)
    alone = trl_alone(policy, proxy, args.steps, args.beta, work / "alone")
    print(json.dumps(alone), flush=True)
    config = RLHFConfig(**{**SETTINGS, "steps_per_round": args.steps, "kl_coef": args.beta, "eval_every": args.eval_every,
                           "policy": policy, "proxy": proxy, "proxy_data": pairs})
    began = time.perf_counter()
    result = run_rlhf(config, work / "rlhf")
    total = time.perf_counter() - began
    phase = result.rounds[0]
    row = {"run": "rewardlab rlhf", "steps": phase["steps"], "phase_seconds": phase["phase_seconds"], "eval_seconds": phase["eval_seconds"],
           "total_seconds": total, "steps_per_s": phase["steps"] / phase["phase_seconds"]}
    print(json.dumps(row), flush=True)
    overhead = phase["phase_seconds"] / alone["seconds"] - 1
    print(f"\n| run | steps | seconds | steps/s |\n| --- | --- | --- | --- |\n| GRPOTrainer alone | {alone['steps']} | "
          f"{alone['seconds']:.0f} | {alone['steps_per_s']:.3f} |\n| rewardlab rlhf (eval every {args.eval_every}) | {row['steps']} | "
          f"{row['phase_seconds']:.0f} | {row['steps_per_s']:.3f} |\n\noverhead of rewardlab in the RL phase: {100 * overhead:+.1f}% "
          f"(evaluation {row['eval_seconds']:.0f} s); whole run incl. step-0 evaluation and setup {total:.0f} s")
    shutil.rmtree(work, ignore_errors=True)


def kl(args: argparse.Namespace) -> None:
    from rewardlab.rlhf.config import RLHFConfig
    from rewardlab.rlhf.loop import run_rlhf

    work = Path(tempfile.mkdtemp(prefix="bench-rlhf-kl-"))
    policy = args.policy
    runs = [(f"beta {b:g}", {"kl_coef": b}) for b in (0.0, 0.05, 0.2)] + [
        ("adaptive (target 2 nats, start 0.05)", {"kl_coef": 0.05, "kl_control": "adaptive", "kl_target": 2.0, "kl_horizon": 1000.0})]
    table = []
    for name, options in runs:
        config = RLHFConfig(**{**SETTINGS, "steps_per_round": args.steps, "eval_every": 10, "policy": policy,
                               "proxy": args.proxy, "proxy_data": args.proxy_data, **options})
        began = time.perf_counter()
        result = run_rlhf(config, work / name.split()[0].replace("(", "") / str(len(table)))
        row = {"run": name, "seconds": time.perf_counter() - began,
               "evaluations": [{k: e.get(k) for k in ("step", "d", "kl_k3", "proxy_mean", "gold_mean", "gold_se", "length_words")}
                               for e in result.evaluations],
               "kl_coef_end": result.rounds[0]["kl_coef_end"]}
        print(json.dumps(row), flush=True)
        table.append(row)
    _plot_kl(table, ROOT / "docs" / "img" / "rlhf_kl.png")
    print("\n| run | step | d | proxy | gold (SE) | length |\n| --- | --- | --- | --- | --- | --- |")
    for row in table:
        for e in row["evaluations"]:
            print(f"| {row['run']} | {e['step']} | {e['d']:.3f} | {e['proxy_mean']:+.3f} | {e['gold_mean']:.3f} ({e['gold_se']:.3f}) | "
                  f"{e['length_words']:.1f} |")
    shutil.rmtree(work, ignore_errors=True)


def _plot_kl(table: list[dict], path: Path) -> None:
    from rewardlab.plotting import pyplot, save_figure

    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for row in table:
        ev = row["evaluations"]
        ax.errorbar([e["d"] for e in ev], [e["gold_mean"] for e in ev], yerr=[e["gold_se"] for e in ev], marker="o", capsize=2,
                    label=row["run"])
    ax.set_xlabel("d = sqrt(KL k3 per sequence)")
    ax.set_ylabel("gold (demo checks), eval mean")
    ax.set_title("KL coefficient: gold against d")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def proxy_is_gold(args: argparse.Namespace) -> None:
    """The monitor on a run whose proxy is the gold itself: every alarm is a false alarm of the hacking rules."""
    from rewardlab.overopt.gold import demo_gold_scorer
    from rewardlab.rlhf.config import RLHFConfig
    from rewardlab.rlhf.loop import run_rlhf

    work = Path(tempfile.mkdtemp(prefix="bench-rlhf-gold-"))
    config = RLHFConfig(**{**SETTINGS, "steps_per_round": args.steps, "eval_every": 10, "kl_coef": 0.01, "policy": args.policy})
    result = run_rlhf(config, work / "run", proxy=demo_gold_scorer())
    alarms = result.rounds[0]["alarms"]
    windows = [json.loads(line) for line in (work / "run" / "rollouts.jsonl").read_text().splitlines()]
    print(json.dumps({"run": "proxy is the gold", "steps": result.rounds[0]["steps"], "rollouts": len(windows),
                      "alarms": [(a["rule"], a["step"]) for a in alarms],
                      "evaluations": [{k: e.get(k) for k in ("step", "gold_mean", "d", "length_words")} for e in result.evaluations]}))
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["cost", "kl", "proxy-is-gold"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--beta", type=float, default=0.01)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--policy", default="builtin:smollm2")
    parser.add_argument("--proxy", default=None, help="a reward-model folder (default: train the demo proxy)")
    parser.add_argument("--proxy-data", default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.policy.startswith("builtin:") and args.what != "cost":
        from rewardlab.rlhf.config import RLHFConfig
        from rewardlab.rlhf.loop import _initial_policy

        args.policy = _initial_policy(RLHFConfig(policy=args.policy), Path(tempfile.mkdtemp(prefix="bench-rlhf-policy-")))
    {"cost": cost, "kl": kl, "proxy-is-gold": proxy_is_gold}[args.what](args)


if __name__ == "__main__":
    main()
