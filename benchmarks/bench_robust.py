"""The 'robust' training recipe on PandaLM's human labels: accuracy on chosen-longer and chosen-shorter pairs of a
held-out split, default recipe vs robust (augmentations + length reweighting) vs its parts.

    python benchmarks/bench_robust.py                       # 3 seeds x 4 recipes, MiniLM, ~15 min on 2 CPU cores
    python benchmarks/bench_robust.py --seeds 1 --steps 40

Pairs: PandaLM's 999 test items, majority of three annotators, ties dropped (894 pairs; ``rewardlab data pairs
--annotations``). Split: by prompt (PandaLM repeats instructions, so pairs of one prompt stay on one side), 30% of
prompts held out, stratified by whether a prompt's pairs mostly have the longer reply chosen. Every run trains
MiniLM (builtin:minilm) with the same steps, batch and seed; only the recipe differs. Prints JSON lines and a table.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rewardlab.cli import main as cli  # noqa: E402

PANDALM = Path(__file__).resolve().parents[2] / "shared" / "data" / "pandalm-testset" / "testset-v1.json"
RECIPES = {
    "default": {},
    "reweight only": {"length_balance": "reweight"},
    "augment only": {"augment": {"length": 0.3, "format": 0.2, "sycophancy": 0.2}},
    "robust (augment + reweight)": {"recipe": "robust"},
    "augment + drop-balance": {"augment": {"length": 0.3, "format": 0.2, "sycophancy": 0.2}, "length_balance": "drop"},
}


def split(pairs_file: Path, out: Path, seed: int = 0, held_out: float = 0.3) -> tuple[Path, Path]:
    rows = [json.loads(line) for line in pairs_file.read_text().splitlines()]
    by_prompt: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_prompt[json.dumps(row["prompt"])].append(row)
    strata: dict[int, list[str]] = defaultdict(list)
    for prompt, group in by_prompt.items():
        lean = sum((len(r["chosen"]) > len(r["rejected"])) - (len(r["chosen"]) < len(r["rejected"])) for r in group)
        strata[(lean > 0) - (lean < 0)].append(prompt)
    rng = random.Random(seed)
    test_prompts = set()
    for prompts in strata.values():
        rng.shuffle(prompts)
        test_prompts |= set(prompts[: round(held_out * len(prompts))])
    train = [r for p, g in by_prompt.items() if p not in test_prompts for r in g]
    test = [{**r, "subset": "pandalm"} for p, g in by_prompt.items() if p in test_prompts for r in g]
    (out / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    (out / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    return out / "train.jsonl", out / "test.jsonl"


def flags(options: dict) -> list[str]:
    out = []
    for key, value in options.items():
        out += [f"--{key.replace('_', '-')}", json.dumps(value) if isinstance(value, dict) else str(value)]
    return out


def run(train: Path, test: Path, work: Path, name: str, options: dict, seed: int, steps: int) -> dict:
    run_dir = work / f"{name.split()[0]}-{seed}"
    start = time.perf_counter()
    assert cli(["train", "--model", "builtin:minilm", "--data", str(train), "--output-dir", str(run_dir), "--max-steps", str(steps),
                "--batch-size", "16", "--max-length", "256", "--learning-rate", "5e-5", "--eval-fraction", "0", "--seed", str(seed),
                "--no-show-progress", "--overwrite", *flags(options)]) == 0
    seconds = time.perf_counter() - start
    assert cli(["eval", "--model", str(run_dir), "--data", str(test), "--output-dir", str(run_dir / "eval"), "--bootstrap", "200",
                "--skip-too-long"]) == 0
    length = json.loads((run_dir / "eval" / "results.json").read_text())["benchmark"]["length"]
    return {"recipe": name, "seed": seed, "train_s": round(seconds, 1), "longer": length["chosen_longer"]["accuracy"],
            "shorter": length["chosen_shorter"]["accuracy"], "controlled": length["length_controlled_accuracy"],
            "n_longer": length["chosen_longer"]["n"], "n_shorter": length["chosen_shorter"]["n"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated names of RECIPES")
    args = parser.parse_args()
    if not PANDALM.is_file():
        sys.exit(f"needs {PANDALM} (the project's shared data)")
    work = Path(tempfile.mkdtemp(prefix="bench-robust-"))
    assert cli(["data", "pairs", "--annotations", str(PANDALM), "--output", str(work / "pairs.jsonl")]) == 0
    train, test = split(work / "pairs.jsonl", work)
    rows = []
    for name in args.recipes.split(","):
        for seed in range(args.seeds):
            rows.append(run(train, test, work, name, RECIPES[name], seed, args.steps))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{sum(1 for _ in open(train))} training pairs, {sum(1 for _ in open(test))} held out "
          f"({rows[0]['n_longer']} chosen longer, {rows[0]['n_shorter']} chosen shorter); means over {args.seeds} seed(s)\n")
    print("| recipe | chosen longer | chosen shorter | length-controlled | train s |")
    print("| --- | --- | --- | --- | --- |")
    for name in args.recipes.split(","):
        mine = [r for r in rows if r["recipe"] == name]
        cell = lambda k: f"{statistics.mean(r[k] for r in mine):.3f}" + (  # noqa: E731
            f" ± {statistics.stdev(r[k] for r in mine):.3f}" if len(mine) > 1 else "")
        print(f"| {name} | {cell('longer')} | {cell('shorter')} | {cell('controlled')} | {statistics.mean(r['train_s'] for r in mine):.0f} |")


if __name__ == "__main__":
    main()
