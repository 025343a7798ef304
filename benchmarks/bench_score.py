"""Scoring throughput: rewardlab ``LocalScorer`` vs ``transformers.pipeline('text-classification')``, same model, one run.

    python benchmarks/bench_score.py --data ../shared/data/hh-rlhf-harmless/harmless-base-test.jsonl.gz --texts 512

Texts are real HH transcripts (chosen side; with ``--pairs`` the chosen and rejected transcript
of each pair, side by side) that fit 512 tokens, given to both sides as the same strings; both timings include tokenization. The pipeline runs with
``function_to_apply='none'`` at its default batch size (1) and at each of ``--batch-sizes``
(its best is reported); rewardlab runs at its defaults (batch 32, packed where supported, batches closed at 2,048 tokens on CPU)
and at the same batch sizes. fp32 weights and bf16 weights (both sides load the same bf16
model). Each figure is the median of ``--repeats`` timed passes after one warm-up pass. The
pipeline runs first, with glibc's default allocator settings (as shipped); ``--same-allocator``
gives it rewardlab's CPU memory settings (``rewardlab.devices.tune_cpu_memory``) too.
``--device cuda`` runs both sides on the GPU (each timed pass ends with the rewards on the host, so
no extra synchronisation is needed). Prints a Markdown table of texts/s and the ratios the issue asks for.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import time


def main() -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    from rewardlab.devices import tune_cpu_memory
    from rewardlab.models.io import resolve_model_source
    from rewardlab.models.reward_model import RewardModel
    from rewardlab.scoring import LocalScorer
    from rewardlab.scoring.config import RewardModelConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="builtin:minilm")
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", default="8,32,64")
    parser.add_argument("--pairs", action="store_true",
                        help="score preference pairs: chosen and rejected transcripts of each pair, side by side (rewardlab's "
                             "default then computes a decoder's shared prompt once; --texts counts texts)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (both sides run there)")
    parser.add_argument("--same-allocator", action="store_true",
                        help="apply rewardlab's CPU memory settings (allocator, oneDNN and ideep kernel caches) before the pipeline runs too "
                             "(default: each side as shipped)")
    args = parser.parse_args()
    path, extra = resolve_model_source(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path, **extra)
    records = [json.loads(line) for line in gzip.open(args.data, "rt")]
    if args.pairs:
        fits = lambda t: len(tokenizer(t)["input_ids"]) <= 512  # noqa: E731
        texts = [t for r in records if fits(r["chosen"]) and fits(r["rejected"]) for t in (r["chosen"], r["rejected"])][: args.texts]
    else:
        texts = [t for t in (r["chosen"] for r in records) if len(tokenizer(t)["input_ids"]) <= 512][: args.texts]
    sizes = [int(b) for b in args.batch_sizes.split(",")]

    def timed(fn) -> float:
        fn()  # warm-up
        runs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            runs.append(len(texts) / (time.perf_counter() - start))
        return statistics.median(runs)

    if args.same_allocator:
        tune_cpu_memory()  # the pipeline gets the allocator setting rewardlab applies (process-wide)
    models = {}
    pipe: dict[str, dict[int, float]] = {}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):  # all pipeline runs first: as shipped,
        torch.manual_seed(0)  # they see glibc's default allocator unless --same-allocator
        hf = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype, **extra).eval().to(args.device)
        if hf.config.pad_token_id is None:
            hf.config.pad_token_id = tokenizer.pad_token_id
        models[precision] = hf
        pipe[precision] = {}
        for bs in [1, *sizes]:
            clf = pipeline("text-classification", model=hf, tokenizer=tokenizer, function_to_apply="none", batch_size=bs, device=args.device)
            pipe[precision][bs] = timed(lambda clf=clf: clf(texts))
            print(json.dumps({"precision": precision, "side": "pipeline", "batch_size": bs, "texts_per_s": pipe[precision][bs]}), flush=True)
    piped = torch.tensor([o["score"] for o in pipeline("text-classification", model=models["fp32"], tokenizer=tokenizer,
                                                        function_to_apply="none", batch_size=8, device=args.device)(texts[:64])])
    results = []
    for precision, hf in models.items():
        model = RewardModel(hf)
        ours = {}
        for bs in sorted({32, *sizes}):
            scorer = LocalScorer(model, tokenizer, RewardModelConfig(model=args.model, max_length=512, batch_size=bs, device=args.device))

            def run(scorer=scorer):
                ids = [tokenizer(t)["input_ids"] for t in texts]
                return scorer.score_ids(ids)

            ours[bs] = timed(run)
            print(json.dumps({"precision": precision, "side": "rewardlab", "layout": scorer.layout, "batch_size": bs,
                              "texts_per_s": ours[bs]}), flush=True)
        # Same rewards (fp32 only: bf16 rounding differs between padded and packed kernels).
        if precision == "fp32":
            mine = LocalScorer(model, tokenizer, RewardModelConfig(model=args.model, max_length=512, device=args.device)).score_ids([tokenizer(t)["input_ids"] for t in texts[:64]])
            print(json.dumps({"max_abs_reward_difference_vs_pipeline": float((piped - mine).abs().max())}), flush=True)
        best_pipe = max(pipe[precision], key=pipe[precision].get)
        results.append((precision, ours[32], max(ours.values()), pipe[precision][1], best_pipe, pipe[precision][best_pipe]))
    print(f"\n{args.model}, {len(texts)} HH texts{' (chosen and rejected of each pair)' if args.pairs else ''}, device {args.device}, medians of {args.repeats}, pipeline allocator "
          f"{'kept memory (same as rewardlab)' if args.same_allocator else 'glibc default'}, {time.strftime('%Y-%m-%d %H:%M')}")
    print("| precision | rewardlab (batch 32) | rewardlab best | pipeline default (batch 1) | pipeline best (batch) | "
          "rewardlab / pipeline default | rewardlab / pipeline best |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for precision, default, best, p1, pb_size, pb in results:
        print(f"| {precision} | {default:.1f} | {best:.1f} | {p1:.1f} | {pb:.1f} ({pb_size}) | {default / p1:.2f}x | {default / pb:.2f}x |")


if __name__ == "__main__":
    main()
