"""One short GPU check: bf16 training steps and scoring throughput through rewardlab's own code.

Runs on a CUDA machine with torch/transformers/accelerate (no network): builds SmolLM2-135M-
and all-MiniLM-L6-v2-shaped models with random weights from their configs (throughput does not
depend on the weight values), trains each with ``rewardlab.train`` on real HH-RLHF pairs in
fp32 and bf16, and scores texts with ``LocalScorer`` against ``transformers.pipeline``.

    python benchmarks/gpu_check.py --data HH.jsonl.gz --tokenizer TOKENIZER_DIR --out results.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import transformers

import rewardlab
from rewardlab.data.readers import read_preference_pairs

SHAPES = {
    "smollm2-135m": lambda v: transformers.LlamaConfig(
        vocab_size=v, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, max_position_embeddings=2048, tie_word_embeddings=True, num_labels=1),
    "minilm-l6": lambda v: transformers.BertConfig(
        vocab_size=v, hidden_size=384, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=12, num_labels=1),
}


def build(shape: str, tokenizer_dir: str, root: Path) -> str:
    tok = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
    config = SHAPES[shape](len(tok))
    config.pad_token_id = tok.pad_token_id
    model = transformers.AutoModelForSequenceClassification.from_config(config)
    out = root / shape
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def train_rate(model_dir: str, data: str, precision: str, root: Path, steps: int) -> dict:
    """Pairs/s from the loop's own step timestamps, skipping the first 5 steps (warm-up)."""
    out = root / f"train-{Path(model_dir).name}-{precision}"
    result = rewardlab.train(model=model_dir, data=data, output_dir=str(out), max_steps=steps, batch_size=8,
                             max_length=512, precision=precision, eval_fraction=0.05, eval_every=10_000,
                             save_every=10_000, log_every=1, show_progress=False, warmup_ratio=0.0, learning_rate=1e-5)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps_logged = [m for m in logged if "loss" in m]
    a, b = steps_logged[4], steps_logged[-2]  # the last step also runs the final evaluation
    return {"steps": steps, "first_loss": round(steps_logged[0]["loss"], 4), "last_loss": round(steps_logged[-1]["loss"], 4),
            "eval_accuracy": result.final_metrics.get("eval_accuracy"),
            "pairs_per_s": round(8 * (b["step"] - a["step"]) / (b["train_seconds"] - a["train_seconds"]), 1)}


CUDA = torch.cuda.is_available()


def sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


def timed(fn, repeats: int = 3) -> float:
    fn()  # warm-up
    sync()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--max-texts", type=int, default=1024)
    parser.add_argument("--shapes", default=",".join(SHAPES))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp())
    report = {"device": torch.cuda.get_device_name(0) if CUDA else "cpu", "torch": torch.__version__,
              "transformers": transformers.__version__}
    pairs, _ = read_preference_pairs(args.data)
    prompts = [p.prompt for p in pairs[: args.max_texts]]
    replies = [p.chosen for p in pairs[: args.max_texts]]
    for shape in args.shapes.split(","):
        model_dir = build(shape, args.tokenizer, root)
        entry = {}
        for precision in ("fp32", "bf16"):
            entry[f"train_{precision}"] = train_rate(model_dir, args.data, precision, root, args.train_steps)
            print(shape, precision, entry[f"train_{precision}"], flush=True)
        trained = root / f"train-{shape}-bf16"
        for precision in ("fp32", "bf16"):
            scorer = rewardlab.load_reward_model(trained, device="cuda" if CUDA else "cpu", precision=precision, batch_size=64, max_length=512)
            texts = [scorer.tokenizer.decode(ids) for ids in scorer.tokenize(prompts, replies)]
            ours = timed(lambda: scorer.score(prompts, replies))
            dtype = torch.float32 if precision == "fp32" else torch.bfloat16
            pipe = transformers.pipeline("text-classification", model=str(trained), device=0 if CUDA else -1, dtype=dtype,
                                         function_to_apply="none")
            theirs = timed(lambda: pipe(texts, batch_size=64, truncation=True, max_length=512))
            entry[f"score_{precision}"] = {"rewardlab_texts_per_s": round(len(texts) / ours, 1),
                                           "pipeline_bs64_texts_per_s": round(len(texts) / theirs, 1),
                                           "ratio": round(theirs / ours, 2)}
            print(shape, precision, entry[f"score_{precision}"], flush=True)
        report[shape] = entry
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
