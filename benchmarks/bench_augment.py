"""Does length augmentation loosen the demo's length trap? Train MiniLM on the built-in demo data with and without
``augment={"length": RATE}`` (same seed, steps and data) and compare accuracy on the length-balanced split.

    python benchmarks/bench_augment.py --rates 0,0.3 --steps 150

The demo data's chosen reply is the longer one 70% of the time; on the length-balanced split (50%) a model that
learned "longer is better" sits near chance. Prints a JSON line per run and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="0,0.3")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--model", default="builtin:minilm")
    args = parser.parse_args()

    from rewardlab.data.demo import demo_pairs
    from rewardlab.demo import _write_jsonl, length_split_accuracy
    from rewardlab.scoring.local import load_reward_model
    from rewardlab.training.loop import train

    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for rate in (float(r) for r in args.rates.split(",")):
            out = tempfile.mkdtemp(prefix="bench-augment-")
            _write_jsonl(demo_pairs("train", 2000), Path(out) / "train.jsonl")
            _write_jsonl(demo_pairs("test", 400), Path(out) / "test.jsonl")
            began = time.perf_counter()
            train(model=args.model, data=f"{out}/train.jsonl", eval_data=f"{out}/test.jsonl", output_dir=f"{out}/model",
                  max_length=128, batch_size=16, learning_rate=5e-5, max_steps=args.steps, eval_every=args.steps,
                  save_every=args.steps, warmup_ratio=0.1, seed=seed, show_progress=False,
                  augment={"length": rate} if rate else None)
            scorer = load_reward_model(f"{out}/model", batch_size=64)
            heldout = length_split_accuracy(scorer, demo_pairs("test", 400))
            balanced = length_split_accuracy(scorer, demo_pairs("balanced", 400))
            row = {"seed": seed, "length_rate": rate, "heldout_accuracy": heldout["accuracy"],
                   "heldout_chosen_shorter": heldout["chosen_shorter_accuracy"], "balanced_accuracy": balanced["accuracy"],
                   "seconds": time.perf_counter() - began}
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(f"\n{args.model}, {args.steps} steps x 16 pairs, demo data, {time.strftime('%Y-%m-%d %H:%M')}")
    print("| seed | length augmentation rate | held-out accuracy | held-out, chosen shorter | length-balanced accuracy |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['seed']} | {r['length_rate']} | {r['heldout_accuracy']:.3f} | {r['heldout_chosen_shorter']:.3f} "
              f"| {r['balanced_accuracy']:.3f} |")


if __name__ == "__main__":
    main()
