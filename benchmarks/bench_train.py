"""Training throughput and held-out accuracy: rewardlab vs TRL ``RewardTrainer``, same data, same machine, one invocation.

    python benchmarks/bench_train.py --model builtin:minilm --data ../shared/data/hh-rlhf-harmless/harmless-base-test.jsonl.gz \\
        --steps 40 --repeats 3 --eval-pairs 320

Every configuration trains on the same first ``steps * 8`` HH pairs (batch 8 pairs, max length 512,
learning rate 1e-4 linear decay, no warmup: TRL's defaults), each run in its own subprocess (so
peak RSS is per run), repeats interleaved. Throughput is pairs/s over the same window for both
trainers: from just before the first optimizer step to the end of the last (model loading and
tokenization excluded; the first step is included, since TRL's length-grouped sampler puts
its longest batch first and excluding it would flatter TRL). Held-out accuracy is measured on the last
``eval_pairs`` pairs of the file that fit the length budget, which no run trains on (a multiple of
16, TRL's eval batch, because TRL averages per-batch accuracies). Peak RSS is read twice: right after
training (the figure to compare: rewardlab's held-out scoring loads a second model copy, TRL's
evaluation does not) and at the end of the run; on a CUDA machine both trainers run there (TRL's
defaults are then bf16 mixed precision, as rewardlab's ``auto``) and the peak GPU memory of
training is reported too. Prints one JSON line per run, then a table of medians and ratios. TRL is a benchmark-only dependency (``pip install 'rewardlab[bench]'``).

Configurations: ``rewardlab`` (its defaults: packed + prompt sharing on decoders, dropout off,
bf16 autocast where the CPU has native bf16, gradient checkpointing for decoders on CPU),
``rewardlab_fp32``, ``rewardlab_plain`` (padded, no sharing, fp32: the optimisations off),
``rewardlab_gc`` / ``rewardlab_no_gc`` (defaults with gradient checkpointing forced on / off), ``trl_default`` (RewardConfig defaults: bf16, gradient
checkpointing, dropout off), ``trl_best`` (no gradient checkpointing, length-grouped sampling, bf16 on a CPU only where it is native, as
rewardlab's ``auto``; on CUDA also SDPA's cuDNN backend off, which builds a plan for every new shape),
``trl_best_kept_memory`` (``trl_best`` with the CPU allocator setting rewardlab applies, see
``rewardlab.devices.tune_cpu_memory``; not a TRL option, but any TRL user could set it).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import statistics
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BATCH = 8
LR = 1e-4


def _rows(data: str) -> list[dict]:
    return [json.loads(line) for line in gzip.open(data, "rt")]


def _eval_rows(data: str, model_path: str, max_length: int, count: int) -> list[dict]:
    """The last ``count`` pairs of the file whose texts fit ``max_length - 16`` tokens, so neither trainer cuts or drops any."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    fits = lambda t: len(tokenizer(t)["input_ids"]) <= max_length - 16  # noqa: E731
    rows = _rows(data)  # usable by both trainers: one shared prompt, two different non-empty replies
    return [r for r in rows[-3 * count :] if fits(r["chosen"]) and fits(r["rejected"]) and _pair_ok(r)][-count:]


def _pair_ok(row: dict) -> bool:
    from rewardlab.data.readers import to_preference_pair
    from rewardlab.errors import DataFormatError

    try:
        pair = to_preference_pair(row)
    except DataFormatError:
        return False
    return bool(pair.chosen.strip()) and bool(pair.rejected.strip()) and pair.chosen.strip() != pair.rejected.strip()


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _gpu_peak_mb() -> float | None:
    """Peak GPU memory PyTorch allocated in this run (None on CPU)."""
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def run_rewardlab(model: str, data: str, steps: int, max_length: int, out: Path, eval_rows: list[dict], seed: int, **speed) -> dict:
    import rewardlab
    from rewardlab.scoring import load_reward_model

    train_file = out / "train.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    train_file.write_text("".join(json.dumps(r) + "\n" for r in _rows(data)[: steps * BATCH]))
    speed.setdefault("token_cache", str(out / "tokens"))  # removed with the run: the file is new each run, never a cache hit
    rewardlab.train(model=model, data=str(train_file), output_dir=str(out / "model"), max_steps=steps, batch_size=BATCH,
                    max_length=max_length, eval_fraction=0.0, log_every=1, save_every=10_000, show_progress=False,
                    warmup_ratio=0.0, learning_rate=LR, lr_schedule="linear", seed=seed, **speed)
    memory = {"train_peak_rss_mb": _rss_mb(), "train_gpu_peak_mb": _gpu_peak_mb()}  # before held-out scoring loads a second copy
    stamps = [json.loads(line)["train_seconds"] for line in (out / "model" / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    pairs_per_s = BATCH * steps / stamps[-1]  # train_seconds counts from just before the first step
    scorer = load_reward_model(str(out / "model"), batch_size=16, device="cuda" if _cuda() else None)
    from rewardlab.data.readers import to_preference_pair

    pairs = [to_preference_pair(r, f"eval:{i}") for i, r in enumerate(eval_rows)]
    chosen = scorer.score([p.prompt for p in pairs], [p.chosen for p in pairs])
    rejected = scorer.score([p.prompt for p in pairs], [p.rejected for p in pairs])
    accuracy = sum(c > r for c, r in zip(chosen, rejected)) / len(pairs)
    return {"pairs_per_s": pairs_per_s, "eval_accuracy": accuracy, **memory}


def run_trl(model: str, data: str, steps: int, max_length: int, out: Path, eval_rows: list[dict], seed: int, best: bool,
            keep_memory: bool = False) -> dict:
    import datasets
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback
    from trl import RewardConfig, RewardTrainer

    from rewardlab.data.readers import to_preference_pair

    tokenizer = AutoTokenizer.from_pretrained(model)
    if tokenizer.eos_token is None:  # TRL appends EOS to every text; BERT-style tokenizers have none
        tokenizer.eos_token = tokenizer.sep_token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    def as_trl(rows: list[dict]) -> datasets.Dataset:
        if tokenizer.chat_template is None:  # plain text, as TRL's docs do for encoders
            return datasets.Dataset.from_list([{"chosen": r["chosen"], "rejected": r["rejected"]} for r in rows])
        out_rows = []  # chat models: TRL's conversational format, so both trainers see the chat template
        for i, r in enumerate(rows):
            p = to_preference_pair(r, f"row {i}")
            msgs = [{"role": m.role, "content": m.content} for m in p.prompt]
            out_rows.append({"prompt": msgs, "chosen": [{"role": "assistant", "content": p.chosen}],
                             "rejected": [{"role": "assistant", "content": p.rejected}]})
        return datasets.Dataset.from_list(out_rows)

    train_set = as_trl(_rows(data)[: steps * BATCH])
    stamps: list[float] = []
    cuda = torch.cuda.is_available()

    class Stamp(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:  # GPU work is asynchronous: stamp when the step's kernels have finished
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())
            if os.environ.get("BENCH_STEP_FILE"):  # bench_contention.py follows the steps from outside
                with open(os.environ["BENCH_STEP_FILE"], "a") as handle:
                    handle.write(f"{stamps[-1] - stamps[0]}\n")

    if keep_memory:  # the process-wide allocator setting rewardlab applies on CPU, given to TRL too
        from rewardlab.devices import tune_cpu_memory

        if not tune_cpu_memory():
            raise SystemExit("trl_best_kept_memory needs Linux/glibc and REWARDLAB_CPU_ALLOCATOR unset")
    if best and cuda:  # not a TRL option, but any user can set it: no cuDNN attention plan per new padded shape
        torch.backends.cuda.enable_cudnn_sdp(False)  # (rewardlab's packed attention does the same on CUDA)
    hf = AutoModelForSequenceClassification.from_pretrained(model, num_labels=1)
    if hf.config.pad_token_id is None:
        hf.config.pad_token_id = tokenizer.pad_token_id
    extra = {"gradient_checkpointing": False, "train_sampling_strategy": "group_by_length", "remove_unused_columns": False} if best else {}
    if best and not cuda:  # bf16 only where the CPU has it natively, as rewardlab's 'auto' (emulated bf16 is ~20x slower)
        from rewardlab.devices import native_bf16

        extra["bf16"] = native_bf16()
    eval_set = as_trl(eval_rows)
    if best:  # the length column LengthGroupedSampler reads (TRL's own columns are chosen_ids/rejected_ids)
        enc = lambda t: len(tokenizer(t if isinstance(t, str) else str(t))["input_ids"])  # noqa: E731
        with_length = lambda d: d.add_column("length", [max(enc(c), enc(r)) for c, r in zip(d["chosen"], d["rejected"])])  # noqa: E731
        train_set, eval_set = with_length(train_set), with_length(eval_set)
    args = RewardConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=BATCH, max_length=max_length,
                        learning_rate=LR, save_strategy="no", report_to="none", logging_steps=10, use_cpu=not cuda,
                        dataloader_num_workers=0, per_device_eval_batch_size=16, seed=seed, **extra)
    trainer = RewardTrainer(model=hf, args=args, train_dataset=train_set, eval_dataset=eval_set,
                            processing_class=tokenizer, callbacks=[Stamp()])
    trainer.train()
    memory = {"train_peak_rss_mb": _rss_mb(), "train_gpu_peak_mb": _gpu_peak_mb()}  # before evaluation
    pairs_per_s = BATCH * steps / (stamps[-1] - stamps[0])
    metrics = trainer.evaluate()
    return {"pairs_per_s": pairs_per_s, "eval_accuracy": metrics["eval_accuracy"],
            "trl_train_pairs": len(trainer.train_dataset), **memory}


CONFIGS = {
    "rewardlab": lambda a, o, e: run_rewardlab(a.model_path, a.data, a.steps, a.max_length, o, e, a.seed),
    "rewardlab_fp32": lambda a, o, e: run_rewardlab(a.model_path, a.data, a.steps, a.max_length, o, e, a.seed, precision="fp32"),
    "rewardlab_plain": lambda a, o, e: run_rewardlab(a.model_path, a.data, a.steps, a.max_length, o, e, a.seed, precision="fp32",
                                                     layout="padded", share_prefix=False),
    "rewardlab_gc": lambda a, o, e: run_rewardlab(a.model_path, a.data, a.steps, a.max_length, o, e, a.seed,
                                                  gradient_checkpointing=True),
    "rewardlab_no_gc": lambda a, o, e: run_rewardlab(a.model_path, a.data, a.steps, a.max_length, o, e, a.seed,
                                                     gradient_checkpointing=False),
    "rewardlab_packed": lambda a, o, e: run_rewardlab(a.model_path, a.data, a.steps, a.max_length, o, e, a.seed,
                                                      layout="packed"),  # GPUs: auto pads there; this measures the alternative
    "trl_default": lambda a, o, e: run_trl(a.model_path, a.data, a.steps, a.max_length, o, e, a.seed, best=False),
    "trl_best": lambda a, o, e: run_trl(a.model_path, a.data, a.steps, a.max_length, o, e, a.seed, best=True),
    "trl_best_kept_memory": lambda a, o, e: run_trl(a.model_path, a.data, a.steps, a.max_length, o, e, a.seed, best=True,
                                                    keep_memory=True),
}


def _materialize(model: str, root: Path) -> str:
    """A plain local folder for ``builtin:`` names (SmolLM2 ships as GGUF), so both trainers load the same weights fast."""
    if not model.startswith("builtin:"):
        return model
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from rewardlab.models.io import release_gguf, resolve_model_source

    path, extra = resolve_model_source(model)
    if not extra:  # an ordinary safetensors folder (MiniLM): both trainers load it as shipped, pooler included
        return path
    target = root / model.split(":")[1]
    tokenizer = AutoTokenizer.from_pretrained(path, **extra)
    try:
        hf = AutoModelForCausalLM.from_pretrained(path, **extra)
    except ValueError:
        hf = AutoModelForSequenceClassification.from_pretrained(path, **extra)
    release_gguf(hf)
    hf.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return str(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="builtin:minilm")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--eval-pairs", type=int, default=320)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--seed", type=int, default=42, help="seed of repeat 0 (both trainers)")
    parser.add_argument("--vary-seed", action="store_true",
                        help="repeat r uses seed + r (head init and data order differ per repeat, the same for every configuration)")
    parser.add_argument("--background-load", type=int, default=0,
                        help="run N busy processes (one spinning Python loop each) during every run: a shared, contended CPU")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:  # one run, in its own process
        eval_rows = _eval_rows(args.data, args.model_path, args.max_length, args.eval_pairs)
        result = CONFIGS[args.worker](args, Path(args.out), eval_rows)
        print("RESULT " + json.dumps({**result, "config": args.worker, "peak_rss_mb": _rss_mb(), "gpu_peak_mb": _gpu_peak_mb()}), flush=True)
        return
    root = Path(tempfile.mkdtemp())
    model_path = _materialize(args.model, root)
    configs = args.configs.split(",")
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.background_load)]
    if spinners:
        time.sleep(2)  # let the spinners take their share before a run starts
    try:
        _run_all(args, configs, root, model_path)
    finally:
        for proc in spinners:
            proc.kill()


def _run_all(args: argparse.Namespace, configs: list[str], root: Path, model_path: str) -> None:
    runs: dict[str, list[dict]] = {c: [] for c in configs}
    for r in range(args.repeats):
        for c in configs:
            cmd = [sys.executable, __file__, "--worker", c, "--data", args.data, "--model", args.model, "--model-path", model_path,
                   "--steps", str(args.steps), "--max-length", str(args.max_length), "--eval-pairs", str(args.eval_pairs),
                   "--out", str(root / f"{c}-{r}"), "--seed", str(args.seed + r if args.vary_seed else args.seed)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            shutil.rmtree(root / f"{c}-{r}", ignore_errors=True)  # a SmolLM2 run leaves ~2 GB of model and optimizer files
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                print(proc.stderr[-4000:], file=sys.stderr)
                raise SystemExit(f"{c} failed (exit {proc.returncode})")
            runs[c].append(json.loads(line[7:]))
            print(json.dumps({"repeat": r, "seed": args.seed + r if args.vary_seed else args.seed, **runs[c][-1]}), flush=True)
    shutil.rmtree(root, ignore_errors=True)
    keys = ["pairs_per_s", "eval_accuracy", "peak_rss_mb", "train_peak_rss_mb"] + (["train_gpu_peak_mb"] if runs[configs[0]][0]["train_gpu_peak_mb"] else [])
    med = {c: {k: statistics.median(x[k] for x in v) for k in keys} for c, v in runs.items()}
    print(f"\n{args.model}, {args.steps} steps x {BATCH} pairs, max length {args.max_length}, medians of {args.repeats}, "
          f"background load {args.background_load} busy processes, {time.strftime('%Y-%m-%d %H:%M')}")
    gpu = "train_gpu_peak_mb" in keys
    print("| configuration | pairs/s | held-out accuracy (median) | accuracy mean +- sd over repeats | peak RSS, training (MB) "
          f"| peak RSS, with held-out scoring (MB) |{' peak GPU memory, training (MB) |' if gpu else ''} vs trl_default | vs trl_best |")
    print("| --- " * (9 if gpu else 8) + "|")
    for c, m in med.items():
        ratio = lambda peer: f"{m['pairs_per_s'] / med[peer]['pairs_per_s']:.2f}x" if peer in med else "-"  # noqa: E731
        accs = [x["eval_accuracy"] for x in runs[c]]
        spread = f"{statistics.mean(accs):.3f} +- {statistics.stdev(accs):.3f}" if len(accs) > 1 else "-"
        gpu_cell = f" {m['train_gpu_peak_mb']:.0f} |" if gpu else ""
        print(f"| {c} | {m['pairs_per_s']:.2f} | {m['eval_accuracy']:.3f} | {spread} | {m['train_peak_rss_mb']:.0f} | {m['peak_rss_mb']:.0f} |"
              f"{gpu_cell} {ratio('trl_default')} | {ratio('trl_best')} |")


if __name__ == "__main__":
    main()
