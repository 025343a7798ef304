"""Training throughput: rewardlab vs TRL ``RewardTrainer`` on the same real pairs, same machine, one run.

    python benchmarks/bench_train.py --data ../shared/data/hh-rlhf-harmless/harmless-base-test.jsonl.gz \
        --steps 20 --repeats 3

Prints pairs/s per configuration (median over repeats) and the ratios. TRL is a benchmark-only
dependency (``pip install 'rewardlab[bench]'``). Timing covers the optimizer steps only
(rewardlab: its own step timestamps; TRL: ``train_runtime``), not model loading or tokenization.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import tempfile
import time
from pathlib import Path


def run_rewardlab(model: str, data: str, steps: int, max_length: int, out: Path) -> float:
    import rewardlab

    rewardlab.train(model=model, data=data, output_dir=str(out), max_steps=steps, batch_size=8, max_length=max_length,
                    max_pairs=steps * 8 * 2,
                    eval_fraction=0.0, log_every=1, save_every=10_000, show_progress=False, warmup_ratio=0.0)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    return 8 * steps / logged[-1]["train_seconds"]


def run_trl(model: str, data: str, steps: int, max_length: int, out: Path, gradient_checkpointing: bool) -> float:
    import datasets
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from rewardlab.models.io import resolve_model_source

    path, extra = resolve_model_source(model)
    rows = [json.loads(line) for line in gzip.open(data, "rt")][: steps * 8 * 2]
    dataset = datasets.Dataset.from_list([{"chosen": r["chosen"], "rejected": r["rejected"]} for r in rows])
    tokenizer = AutoTokenizer.from_pretrained(path, **extra)
    if tokenizer.eos_token is None:  # TRL appends EOS to every text; BERT-style tokenizers have none
        tokenizer.eos_token = tokenizer.sep_token
    hf = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, **extra)
    args = RewardConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=8, max_length=max_length,
                        gradient_checkpointing=gradient_checkpointing, save_strategy="no", report_to="none",
                        logging_steps=5, use_cpu=True, dataloader_num_workers=0)
    trainer = RewardTrainer(model=hf, args=args, train_dataset=dataset, processing_class=tokenizer)
    result = trainer.train()
    return 8 * steps / result.metrics["train_runtime"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="builtin:minilm")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=512)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp())
    runs: dict[str, list[float]] = {"rewardlab": [], "trl_default": [], "trl_no_gc": []}
    for r in range(args.repeats):
        runs["rewardlab"].append(run_rewardlab(args.model, args.data, args.steps, args.max_length, root / f"rl{r}"))
        runs["trl_default"].append(run_trl(args.model, args.data, args.steps, args.max_length, root / f"trl{r}", True))
        runs["trl_no_gc"].append(run_trl(args.model, args.data, args.steps, args.max_length, root / f"trlng{r}", False))
        print(json.dumps({k: v[-1] for k, v in runs.items()}), flush=True)
    medians = {k: statistics.median(v) for k, v in runs.items()}
    print(json.dumps({"pairs_per_s_median": medians, "repeats": args.repeats, "steps": args.steps,
                      "ratio_vs_trl_default": medians["rewardlab"] / medians["trl_default"],
                      "ratio_vs_trl_no_gc": medians["rewardlab"] / medians["trl_no_gc"], "time": time.ctime()}, indent=2))


if __name__ == "__main__":
    main()
