"""CPU contention that starts mid-run: rewardlab vs TRL ``RewardTrainer``, side by side, one invocation.

    python benchmarks/bench_contention.py --data ../shared/data/hh-rlhf-harmless/harmless-base-test.jsonl.gz

Each configuration trains MiniLM (batch 8, max length 256, ``bench_train.py``'s settings, same seed) twice in its own
process: once on a quiet machine, once with ``--competitors`` single-threaded busy loops that the driver starts when
the run reaches ``--start`` steps and kills at ``--stop``. Both runs see the same batches in the same order, so the
slowdown is the contended run's time over the quiet run's on the same steps (from 3 steps after the start to the
stop), with the worst single step and the ratio after the loops stop. Configurations: ``rewardlab``
(its defaults: the thread governor re-checks the load every 2 s), ``rewardlab_fixed`` (``REWARDLAB_CPU_THREADS`` set
to the core count: the governor off, the behaviour before issue 33) and ``trl_best`` (bench_train's best TRL setup).
A fair share of 2 cores with 2 busy loops beside costs about 2x.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIGS = {"rewardlab": ("rewardlab", {}), "rewardlab_fixed": ("rewardlab", {"REWARDLAB_CPU_THREADS": str(os.cpu_count() or 1)}),
           "trl_best": ("trl_best", {})}


def steps_done(config: str, out: Path, step_file: Path) -> list[float]:
    """Cumulative seconds at the end of each step so far."""
    if config.startswith("rewardlab"):
        metrics = out / "model" / "metrics.jsonl"
        if not metrics.is_file():
            return []
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.endswith("}")]
        return [r["train_seconds"] for r in rows if "loss" in r]
    return [float(x) for x in step_file.read_text().split()] if step_file.is_file() else []


def run(config: str, args: argparse.Namespace, root: Path, repeat: int, competitors: int) -> list[float]:
    """Seconds per step of one run, with ``competitors`` busy loops from ``--start`` to ``--stop`` steps."""
    worker, env_extra = CONFIGS[config]
    out, step_file = root / f"{config}-{repeat}-{competitors}", root / f"{config}-{repeat}-{competitors}.steps"
    cmd = [sys.executable, str(HERE / "bench_train.py"), "--worker", worker, "--data", args.data, "--model", args.model,
           "--model-path", args.model_path, "--steps", str(args.steps), "--max-length", str(args.max_length),
           "--eval-pairs", "16", "--out", str(out), "--seed", "42"]
    env = {**os.environ, **env_extra, "BENCH_STEP_FILE": str(step_file)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    spinners: list[subprocess.Popen] = []
    started_at = stopped_at = None
    try:
        while proc.poll() is None:
            done = len(steps_done(config, out, step_file))
            if started_at is None and done >= args.start:
                spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(competitors)]
                started_at = done
            if started_at is not None and stopped_at is None and done >= args.stop:
                for s in spinners:
                    s.kill()
                stopped_at = done
            time.sleep(0.02)
    finally:  # never leave a busy loop behind (an interrupted benchmark would skew everything after it)
        for s in spinners:
            s.kill()
        if proc.poll() is None:
            proc.kill()
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        print(stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"{config} failed")
    cumulative = steps_done(config, out, step_file)
    for line in stderr.splitlines():
        if "CPU threads" in line:
            print(f"  {config}: {line}", flush=True)
    return [b - a for a, b in zip([0.0] + cumulative[:-1], cumulative)]


def compare(config: str, quiet: list[float], busy: list[float], args: argparse.Namespace, repeat: int) -> dict:
    """Both runs see the same batches in the same order (same seed), so step i of one is step i of the other: the
    slowdown is the contended run's time over the quiet run's on the same steps (TRL's length-grouped sampler puts
    its longest batches first, so before/during/after means of one run would compare different batches)."""
    lo, hi = args.start + 3, args.stop  # from 3 steps after the competitors start
    after = slice(args.stop + 3, len(busy))
    return {"config": config, "repeat": repeat, "quiet_s_per_step_window": round(statistics.mean(quiet[lo:hi]), 3),
            "busy_s_per_step_window": round(statistics.mean(busy[lo:hi]), 3),
            "slowdown": round(sum(busy[lo:hi]) / sum(quiet[lo:hi]), 2),
            "worst_step_ratio": round(max(b / q for b, q in zip(busy[lo:hi], quiet[lo:hi])), 2),
            "after_ratio": round(sum(busy[after]) / sum(quiet[after]), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="builtin:minilm")
    parser.add_argument("--steps", type=int, default=75)
    parser.add_argument("--start", type=int, default=30)
    parser.add_argument("--stop", type=int, default=55)
    parser.add_argument("--competitors", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from bench_train import _materialize

    root = Path(tempfile.mkdtemp(prefix="bench-contention-"))
    args.model_path = _materialize(args.model, root)
    rows = []
    for repeat in range(args.repeats):
        for config in args.configs.split(","):
            quiet = run(config, args, root, repeat, 0)
            busy = run(config, args, root, repeat, args.competitors)
            rows.append(compare(config, quiet, busy, args, repeat))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{args.model}, batch 8, max length {args.max_length}, {args.steps} steps, {args.competitors} busy loops from step "
          f"{args.start} to {args.stop}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}; means over {args.repeats} repeat(s)\n")
    print("| configuration | s/step, quiet run | s/step, contended run | slowdown (same steps) | worst step | after they stop |")
    print("| --- | --- | --- | --- | --- | --- |")
    for config in args.configs.split(","):
        mine = [r for r in rows if r["config"] == config]
        m = lambda k: statistics.mean(r[k] for r in mine)  # noqa: E731
        print(f"| {config} | {m('quiet_s_per_step_window'):.3f} | {m('busy_s_per_step_window'):.3f} | {m('slowdown'):.2f}x | "
              f"{m('worst_step_ratio'):.2f}x | {m('after_ratio'):.2f}x |")


if __name__ == "__main__":
    main()
