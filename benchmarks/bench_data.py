"""Data path: time to first step cold vs warm (token cache), and peak RSS at 1x vs 10x pairs, rewardlab vs TRL.

    python benchmarks/bench_data.py --data ../shared/data/hh-rlhf-harmless/harmless-base-test.jsonl.gz

The 10x file is the HH file repeated ten times (23,120 pairs). Each measurement is one
``rewardlab train`` process (5 optimizer steps of 8 pairs, max length 512, no held-out split)
under ``/usr/bin/time``; "setup" is the run's own ``setup_seconds`` (from ``train()`` entry to
the first step: model load, reading, tokenizing or opening the cache). TRL runs
``RewardTrainer`` for the same 5 steps on the same file in its own process; its peak RSS is
the peer figure. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRL_SNIPPET = """
import json, sys, datasets
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from trl import RewardConfig, RewardTrainer
from rewardlab.models.io import resolve_model_source
path, extra = resolve_model_source(sys.argv[1])
tok = AutoTokenizer.from_pretrained(path, **extra)
tok.eos_token = tok.eos_token or tok.sep_token
ds = datasets.load_dataset("json", data_files=sys.argv[2], split="train", cache_dir=sys.argv[3] + "/hf")
ds = ds.select_columns(["chosen", "rejected"])
hf = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, **extra)
args = RewardConfig(output_dir=sys.argv[3], max_steps=5, per_device_train_batch_size=8, max_length=512, save_strategy="no",
                    report_to="none", use_cpu=True, dataloader_num_workers=0, logging_steps=5)
RewardTrainer(model=hf, args=args, train_dataset=ds, processing_class=tok).train()
"""


def _timed(cmd: list[str]) -> tuple[float, float, str]:
    """Run under /usr/bin/time: (wall seconds, peak RSS MB, stderr)."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed:\n{proc.stderr[-3000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    return wall, rss_kb / 1024, proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="builtin:minilm")
    parser.add_argument("--skip-trl", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp())
    lines = gzip.open(args.data, "rt").read().splitlines()
    files = {"1x": root / "1x.jsonl", "10x": root / "10x.jsonl"}
    files["1x"].write_text("\n".join(lines) + "\n")
    files["10x"].write_text("\n".join(lines * 10) + "\n")
    rows = []
    for size, path in files.items():
        cache = root / f"cache-{size}"
        for phase in ("cold", "warm"):
            out = root / f"rl-{size}-{phase}"
            cmd = [sys.executable, "-m", "rewardlab.cli", "train", "--model", args.model, "--data", str(path), "--output-dir", str(out),
                   "--max-steps", "5", "--batch-size", "8", "--max-length", "512", "--eval-fraction", "0", "--log-every", "1",
                   "--no-show-progress", "--token-cache", str(cache), "--save-every", "1000"]
            wall, rss, _ = _timed(cmd)
            setup = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["setup_seconds"]
            rows.append((f"rewardlab {size} {phase}", setup, wall, rss))
            print(rows[-1], flush=True)
        if not args.skip_trl:
            wall, rss, _ = _timed([sys.executable, "-c", TRL_SNIPPET, args.model, str(path), str(root / f"trl-{size}")])
            rows.append((f"TRL {size} (datasets cache cold)", float("nan"), wall, rss))
            print(rows[-1], flush=True)
    print(f"\n{args.model}, 5 steps x 8 pairs, max length 512, {time.strftime('%Y-%m-%d %H:%M')}")
    print("| run | setup (s, to first step) | wall (s) | peak RSS (MB) |")
    print("| --- | --- | --- | --- |")
    for name, setup, wall, rss in rows:
        print(f"| {name} | {setup:.1f} | {wall:.1f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
