"""Model FLOP utilisation of a rewardlab training step (SmolLM2-135M, full fine-tuning, fp32) vs measured matmul peak.

    python benchmarks/bench_mfu.py --data ../shared/data/hh-rlhf-harmless/harmless-base-test.jsonl.gz --steps 10

1. Peak: the best fp32 ``torch.mm`` rate over square sizes 1024-4096 on this machine (all threads),
   best of 3 timings per size, measured before and after the training steps.
2. Step: the training loop's own path (length-grouped batches of 8 HH pairs, max length 512,
   packed rows with the prompt stored once, fused AdamW, freed CPU memory kept for reuse), timed
   from step 2 on (step 1 is the plan's largest batch, which also grows the process's memory;
   ``mfu_all_steps`` includes it).
3. Model FLOPs per step (forward + backward = 3x forward): 6 x non-embedding parameters x
   tokens in the packed row, plus attention 3 x 4 x d_model x (query, key) pairs actually
   allowed per layer (causal pairs only). Recomputation and padding are not counted (there is
   none), so this is MFU in the PaLM sense. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def matmul_peak(rounds: int = 3) -> dict[str, float]:
    """Best fp32 ``torch.mm`` rate (GFLOP/s) per square size, over ``rounds`` timings of about 0.5 s each."""
    import torch

    best: dict[str, float] = {}
    for n in (1024, 2048, 3072, 4096):
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        reps = max(2, int(8e10 / (2 * n**3)))
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(reps):
                torch.mm(a, b)
            best[str(n)] = max(best.get(str(n), 0.0), 2 * n**3 * reps / (time.perf_counter() - start) / 1e9)
    return best


def main() -> None:
    import torch

    from rewardlab.data.collate import collate_targets, pack_examples
    from rewardlab.models.io import build_reward_model
    from rewardlab.training.batching import global_batches
    from rewardlab.training.config import TrainConfig
    from rewardlab.training.objectives import make_objective

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="builtin:smollm2")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--max-pairs", type=int, default=400)
    args = parser.parse_args()

    from rewardlab.devices import tune_cpu_memory

    peak = matmul_peak()
    tuned = tune_cpu_memory()  # as the training loop does on CPU
    config = TrainConfig(model=args.model, data=args.data, output_dir="/tmp/unused", max_length=512)
    objective = make_objective(config.objective)
    pairs, report = objective.read(args.data, "train", args.max_pairs)
    model, tokenizer = build_reward_model(args.model)
    examples = objective.tokenize(pairs, tokenizer, 512, report)
    model.train()
    for module in model.modules():  # rewardlab's default: dropout off
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)  # as the loop
    cfg = model.hf_model.config
    d_model, layers = cfg.hidden_size, cfg.num_hidden_layers
    embedding = model.hf_model.get_input_embeddings().weight.numel()
    dense_params = sum(p.numel() for p in model.parameters()) - embedding
    step_times, step_flops, tokens, all_times, all_flops = [], [], [], [], []
    plan = list(global_batches([e.length for e in examples], 8, args.steps, 0, True))
    for step, indices in enumerate(plan):
        group = [examples[i] for i in indices]
        start = time.perf_counter()
        ids, layout = pack_examples(group, causal=True, share_prefix=True, readout="last")
        rewards = model(ids, layout=layout)
        loss = objective.loss(rewards, collate_targets(group)).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - start
        pairs_attended = 0
        for seg in layout.segments:
            q = seg.end - seg.start
            k = sum(b - a for a, b in seg.keys)
            pairs_attended += q * (k - q) + q * (q + 1) // 2  # full prefix, causal inside the segment
        flops = 6 * dense_params * ids.shape[1] + 3 * 4 * d_model * pairs_attended * layers
        all_times.append(elapsed)
        all_flops.append(flops)
        if step >= 1:
            step_times.append(elapsed)
            step_flops.append(flops)
            tokens.append(ids.shape[1])
        print(json.dumps({"step": step + 1, "seconds": round(elapsed, 2), "tokens": ids.shape[1],
                          "unshared_tokens": sum(len(s) for e in group for s in e.sequences),
                          "gflops_per_s": round(flops / elapsed / 1e9, 1)}), flush=True)
    after = matmul_peak()  # the peak again after training (the VM's speed drifts): the higher of the two counts
    peak = {n: max(peak[n], after[n]) for n in peak}
    achieved = sum(step_flops) / sum(step_times) / 1e9
    best_peak = max(peak.values())
    print(json.dumps({
        "model": args.model, "dense_params": dense_params, "freed_memory_kept": tuned, "threads": torch.get_num_threads(),
        "matmul_peak_gflops_by_size": {k: round(v, 1) for k, v in peak.items()}, "matmul_peak_gflops": round(best_peak, 1),
        "train_step_model_gflops_per_s": round(achieved, 1), "mfu": round(achieved / best_peak, 3),
        "mfu_all_steps": round(sum(all_flops) / sum(all_times) / 1e9 / best_peak, 3),  # step 1 included
        "median_step_seconds": round(statistics.median(step_times), 2), "median_tokens_per_step": statistics.median(tokens),
        "pairs_per_s": round(8 * len(step_times) / sum(step_times), 3), "time": time.strftime("%Y-%m-%d %H:%M"),
    }, indent=1))


if __name__ == "__main__":
    main()
