"""CPU contention that starts mid-run: rewardlab vs TRL ``RewardTrainer``, side by side, one invocation.

    python benchmarks/bench_contention.py --data ../shared/data/hh-rlhf-harmless/harmless-base-test.jsonl.gz

Each run trains MiniLM (batch 8, max length 256, ``bench_train.py``'s settings) for ``--steps`` steps in its own
process; when it reaches ``--start`` steps the driver starts ``--competitors`` single-threaded busy loops, and kills
them at ``--stop`` steps. Reported per run: mean seconds per step before, during (from 3 steps after the start) and
after (from 3 steps after the stop) the contention, and the slowdown during / before. Configurations: ``rewardlab``
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


def run(config: str, args: argparse.Namespace, root: Path, repeat: int) -> dict:
    worker, env_extra = CONFIGS[config]
    out, step_file = root / f"{config}-{repeat}", root / f"{config}-{repeat}.steps"
    cmd = [sys.executable, str(HERE / "bench_train.py"), "--worker", worker, "--data", args.data, "--model", args.model,
           "--model-path", args.model_path, "--steps", str(args.steps), "--max-length", str(args.max_length),
           "--eval-pairs", "16", "--out", str(out), "--seed", "42"]
    env = {**os.environ, **env_extra, "BENCH_STEP_FILE": str(step_file)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    spinners: list[subprocess.Popen] = []
    started_at = stopped_at = None
    while proc.poll() is None:
        done = len(steps_done(config, out, step_file))
        if started_at is None and done >= args.start:
            spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.competitors)]
            started_at = done
        if started_at is not None and stopped_at is None and done >= args.stop:
            for s in spinners:
                s.kill()
            stopped_at = done
        time.sleep(0.02)
    for s in spinners:
        s.kill()
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        print(stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"{config} failed")
    cumulative = steps_done(config, out, step_file)
    per_step = [b - a for a, b in zip([0.0] + cumulative[:-1], cumulative)]
    window = lambda lo, hi: statistics.mean(per_step[lo:hi])  # noqa: E731
    before, during, after = window(5, started_at), window(started_at + 3, stopped_at), window(stopped_at + 3, len(per_step))
    changes = [line for line in stderr.splitlines() if "CPU threads" in line]
    return {"config": config, "repeat": repeat, "started_at_step": started_at, "stopped_at_step": stopped_at,
            "before_s_per_step": round(before, 3), "during_s_per_step": round(during, 3), "after_s_per_step": round(after, 3),
            "slowdown": round(during / before, 2), "max_s_per_step_during": round(max(per_step[started_at:stopped_at]), 2),
            "thread_changes": changes}


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
            rows.append(run(config, args, root, repeat))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{args.model}, batch 8, max length {args.max_length}, {args.steps} steps, {args.competitors} busy loops from step "
          f"{args.start} to {args.stop}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}; means over {args.repeats} repeat(s)\n")
    print("| configuration | s/step before | s/step during | s/step after | slowdown during | worst step during |")
    print("| --- | --- | --- | --- | --- | --- |")
    for config in args.configs.split(","):
        mine = [r for r in rows if r["config"] == config]
        m = lambda k: statistics.mean(r[k] for r in mine)  # noqa: E731
        print(f"| {config} | {m('before_s_per_step'):.3f} | {m('during_s_per_step'):.3f} | {m('after_s_per_step'):.3f} | "
              f"{m('slowdown'):.2f}x | {m('max_s_per_step_during'):.2f} |")


if __name__ == "__main__":
    main()
