"""Issue 20 scaling figures: scoring with the plain scorer vs 1 and 2 Ray actors on one machine, Ray's fixed overhead,
and Math-Shepherd labelling time against the formula ``T = S * t_gen / A``.

    python benchmarks/bench_ray.py --data ../shared/data/hh-rlhf-harmless/harmless-base-test.jsonl.gz \
        --gsm8k ../shared/data/gsm8k/test.jsonl

Scoring: a MiniLM reward model (fresh seeded head, max length 512) scores ``--texts`` HH replies (prompt + chosen
reply) with ``score_file`` in this process (torch's default threads) and with ``score_file_ray`` on a local cluster
started per run, with 1 actor (2 CPUs) and 2 actors (1 CPU each). Every run's rewards are compared with the plain
run's. Ray's fixed cost (cluster start, actor start and model load) is measured by scoring a 1-record file the same
way. The projection for A actors on a cluster is A x the per-actor rate measured here, stated as a projection.

Labelling: ``--problems`` GSM8K test problems' reference solutions are split into steps and labelled with ``--k``
SmolLM2 rollouts of up to ``--tokens`` tokens per step that does not state the answer. ``t_gen`` (one generate call
of k rollouts) is calibrated on other problems first; the formula predicts ``S * t_gen`` for the S sampled steps on
one process, which is compared with the measured single-process run (and ``S * t_gen / 2`` with 2 Ray actors).
Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import tempfile
import time
from pathlib import Path


def _hh_records(path: str, count: int) -> list[dict]:
    from rewardlab.data.readers import parse_hh_transcript

    opener = gzip.open if path.endswith(".gz") else open
    out = []
    with opener(path, "rt") as handle:
        for line in handle:
            prompt, reply = parse_hh_transcript(json.loads(line)["chosen"])
            if reply.strip():
                out.append({"prompt": [m.as_dict() for m in prompt], "response": reply})
            if len(out) >= count:
                break
    return out


def _rewards(path: Path) -> list[float]:
    return [json.loads(line)["reward"] for line in path.read_text().splitlines()]


def bench_scoring(args: argparse.Namespace, tmp: Path) -> None:
    import torch

    from rewardlab.distributed.scoring import score_file_ray
    from rewardlab.models.io import RewardModelMetadata, build_reward_model, save_pretrained
    from rewardlab.scoring.config import build_scorer, scorer_config
    from rewardlab.scoring.files import score_file

    torch.manual_seed(0)
    model, tokenizer = build_reward_model("builtin:minilm")
    save_pretrained(model, tokenizer, RewardModelMetadata(pooling=model.pooling, max_length=512), tmp / "rm")
    data = tmp / "texts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _hh_records(args.data, args.texts)))
    one = tmp / "one.jsonl"
    one.write_text(data.read_text().splitlines()[0] + "\n")
    config = scorer_config(str(tmp / "rm"), max_length=512)
    rows = []
    start = time.perf_counter()
    score_file(build_scorer(config), str(data), str(tmp / "plain.jsonl"), show_progress=False)
    plain_s = time.perf_counter() - start
    reference = _rewards(tmp / "plain.jsonl")
    rows.append(("plain score_file (1 process, 2 threads)", plain_s, None, 0.0))
    for actors, cpus in ((1, 2.0), (2, 1.0)):
        start = time.perf_counter()
        score_file_ray(config, str(one), str(tmp / f"one_{actors}.jsonl"), actors=actors, cpus_per_actor=cpus, show_progress=False)
        fixed = time.perf_counter() - start
        start = time.perf_counter()
        score_file_ray(config, str(data), str(tmp / f"ray_{actors}.jsonl"), actors=actors, cpus_per_actor=cpus, show_progress=False)
        seconds = time.perf_counter() - start
        diff = max(abs(a - b) for a, b in zip(_rewards(tmp / f"ray_{actors}.jsonl"), reference))
        rows.append((f"Ray, {actors} actor{'s' if actors > 1 else ''} x {cpus:g} CPU", seconds, diff, fixed))
    n = len(reference)
    print(f"\nScoring {n} HH replies, MiniLM, max length 512\n")
    print("| run | seconds | texts/s | texts/s after the fixed cost | fixed cost (1-record file), s | max abs reward diff vs plain |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, seconds, diff, fixed in rows:
        steady = n / (seconds - fixed) if fixed and seconds > fixed else n / seconds
        print(f"| {name} | {seconds:.1f} | {n / seconds:.1f} | {steady:.1f} | {fixed:.1f} | {'-' if diff is None else f'{diff:.1e}'} |")
    per_actor = n / max(rows[2][1] - rows[2][3], 1e-9) / 2
    print(f"\nProjection (not measured): A actors with one core each at this per-actor rate: {per_actor:.1f} x A texts/s "
          f"(e.g. {per_actor * 64:.0f} texts/s for 64 actors), before the driver's reading and writing become the limit.")


def bench_labelling(args: argparse.Namespace, tmp: Path) -> None:
    from rewardlab.distributed.labeling import label_solutions_ray
    from rewardlab.labeling.checkers import make_checker
    from rewardlab.labeling.generators import LocalHFGenerator
    from rewardlab.labeling.checkers import has_final_answer
    from rewardlab.labeling.math_shepherd import label_solutions, read_solutions_to_label

    solutions = read_solutions_to_label(args.gsm8k, args.problems + args.calibrate)
    calibration, problems = solutions[: args.calibrate], solutions[args.calibrate :]
    start = time.perf_counter()
    generator = LocalHFGenerator("builtin:smollm2", temperature=0.7, seed=0)
    t_load = time.perf_counter() - start
    import ray

    start = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False)
    ray.shutdown()
    t_ray = time.perf_counter() - start
    times = []
    for s in calibration:  # t_gen: one generate call of k rollouts from the middle of a solution
        k = len(s.steps) // 2
        start = time.perf_counter()
        generator.continue_solution(s.prompt, "\n".join(s.steps[: k + 1]) + "\n", args.k, args.tokens, seed=k)
        times.append(time.perf_counter() - start)
    t_gen = statistics.mean(times)
    sampled = sum(1 for s in problems for step in s.steps if not has_final_answer(step))
    start = time.perf_counter()
    label_solutions(problems, generator, make_checker("gsm8k"), tmp / "labels.jsonl", args.k, args.tokens, show_progress=False, seed=0)
    single = time.perf_counter() - start
    start = time.perf_counter()
    label_solutions_ray(problems, lambda: LocalHFGenerator("builtin:smollm2", temperature=0.7, seed=0), make_checker("gsm8k"),
                        tmp / "labels_ray.jsonl", args.k, args.tokens, 0, 2)
    ray_s = time.perf_counter() - start
    same = sorted((tmp / "labels.jsonl").read_text().splitlines()) == sorted((tmp / "labels_ray.jsonl").read_text().splitlines())
    print(f"\nMath-Shepherd labelling: {len(problems)} GSM8K solutions, {sampled} steps sampled (k = {args.k} rollouts of up to "
          f"{args.tokens} tokens), SmolLM2\n")
    print(f"t_gen (mean of {len(times)} calibration calls): {t_gen:.2f} s; model load t_load {t_load:.1f} s; Ray start and stop "
          f"t_ray {t_ray:.1f} s.\nFormula: one process T = S x t_gen (model loaded); A Ray actors T = t_ray + t_load' + S x t_gen' / A, "
          "where the actors load their models at once (t_load' >= t_load when they share cores) and t_gen' is the per-call "
          "time with 1 core per actor instead of 2\n")
    predicted_ray = t_ray + t_load + sampled * t_gen / 2
    print("| run | predicted s | measured s | measured / predicted |\n| --- | --- | --- | --- |")
    print(f"| 1 process | {sampled * t_gen:.1f} | {single:.1f} | {single / (sampled * t_gen):.2f} |")
    print(f"| Ray, 2 actors x 1 core (predicted with t_load and t_gen of 2 cores) | {predicted_ray:.1f} | {ray_s:.1f} | "
          f"{ray_s / predicted_ray:.2f} |")
    print(f"\nRay labels identical to the single-process labels: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="HH-RLHF jsonl(.gz)")
    parser.add_argument("--gsm8k", required=True, help="GSM8K test.jsonl")
    parser.add_argument("--texts", type=int, default=512, help="replies to score")
    parser.add_argument("--problems", type=int, default=4, help="GSM8K solutions to label")
    parser.add_argument("--calibrate", type=int, default=3, help="generate calls timed for t_gen (other problems)")
    parser.add_argument("--k", type=int, default=4, help="rollouts per step")
    parser.add_argument("--tokens", type=int, default=96, help="most tokens per rollout")
    parser.add_argument("--parts", default="scoring,labelling", help="which parts to run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if "scoring" in args.parts:
            bench_scoring(args, Path(tmp))
        if "labelling" in args.parts:
            bench_labelling(args, Path(tmp))


if __name__ == "__main__":
    main()
