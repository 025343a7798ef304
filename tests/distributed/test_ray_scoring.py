"""Scoring on a local Ray cluster started by the test (2 CPU actors): the single-process rewards, in input order,
resumable at block granularity."""

import json

import pytest

from rewardlab.scoring.config import scorer_config

from ..conftest import write_jsonl

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def saved_rm(tiny_llama_dir, tmp_path):
    from rewardlab.models.io import RewardModelMetadata, build_reward_model, save_pretrained

    model, tok = build_reward_model(str(tiny_llama_dir))
    save_pretrained(model, tok, RewardModelMetadata(pooling=model.pooling, max_length=128), tmp_path / "rm")
    return tmp_path / "rm"


def test_ray_scoring_equals_single_process_and_resumes_by_block(cluster, saved_rm, tmp_path, monkeypatch):
    import rewardlab.scoring.files as files
    from rewardlab.distributed.scoring import score_file_ray
    from rewardlab.scoring.files import score_file
    from rewardlab.scoring.local import load_reward_model

    monkeypatch.setattr(files, "SCORE_WRITE_RECORDS", 3)  # 11 records: 4 blocks over 2 actors
    rows = [{"prompt": f"Question {i}?", "chosen": "yes " * (i + 1), "rejected": "no"} if i % 2 else
            {"prompt": f"Question {i}?", "response": "maybe " * (i + 1)} for i in range(11)]
    data = write_jsonl(tmp_path / "in.jsonl", rows)
    score_file(load_reward_model(saved_rm), data, tmp_path / "single.jsonl", show_progress=False)
    config = scorer_config(str(saved_rm))
    result = score_file_ray(config, data, tmp_path / "ray.jsonl", actors=2, show_progress=False)
    single = [json.loads(line) for line in (tmp_path / "single.jsonl").read_text().splitlines()]
    distributed = [json.loads(line) for line in (tmp_path / "ray.jsonl").read_text().splitlines()]
    assert result.lines == 11 and [r["index"] for r in distributed] == list(range(11))
    for a, b in zip(single, distributed):
        assert a["source"] == b["source"]
        for key in (k for k in a if k.endswith("reward")):
            assert a[key] == pytest.approx(b[key], abs=1e-5)
    lines = (tmp_path / "ray.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "ray.jsonl").write_text("".join(lines[:6]) + lines[6][:10])  # killed after two blocks, a line torn
    resumed = score_file_ray(config, data, tmp_path / "ray.jsonl", actors=2, resume=True, show_progress=False)
    assert resumed.resumed_lines == 6 and (tmp_path / "ray.jsonl").read_text().splitlines() == [ln.rstrip("\n") for ln in lines]


def test_rewardlab_score_with_ray_from_the_cli(cluster, saved_rm, tmp_path):
    from rewardlab.cli import main
    from rewardlab.scoring.local import load_reward_model

    data = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "Hi", "response": "Hello there"}, {"prompt": "Hi", "response": "Bye"}])
    assert main(["score", "--model", str(saved_rm), "--data", str(data), "--output", str(tmp_path / "o.jsonl"), "--ray",
                 "--ray-actors", "2"]) == 0
    rewards = [json.loads(line)["reward"] for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert rewards == pytest.approx(load_reward_model(saved_rm).score(["Hi", "Hi"], ["Hello there", "Bye"]), abs=1e-5)


def test_math_shepherd_labels_on_ray_equal_the_single_process_labels_and_resume(cluster, tmp_path):
    from rewardlab.data.records import Message
    from rewardlab.distributed.labeling import label_solutions_ray
    from rewardlab.labeling.checkers import make_checker
    from rewardlab.labeling.math_shepherd import SolutionToLabel, label_solutions

    class Seeded:  # right or wrong answers drawn from the step's seed
        def continue_solution(self, prompt, prefix, n, max_new_tokens=64, stop=None, seed=None):
            import random

            rng = random.Random(seed)
            return [f"#### {7 if rng.random() < 0.5 else 8}" for _ in range(n)]

    solutions = [SolutionToLabel(f"s{i}", (Message("user", "3 + 4?"),), ("3 + 4 =", "so it is", "#### 7"), "#### 7")
                 for i in range(4)]
    checker = make_checker("gsm8k")
    label_solutions(solutions, Seeded(), checker, tmp_path / "single.jsonl", n=6, show_progress=False, seed=5)
    stats = label_solutions_ray(solutions, Seeded, checker, tmp_path / "ray.jsonl", n=6, seed=5, actors=2)
    single = [json.loads(line) for line in (tmp_path / "single.jsonl").read_text().splitlines()]
    assert stats["labelled"] == 12 and [json.loads(line) for line in (tmp_path / "ray.jsonl").read_text().splitlines()] == single
    assert len({r["soft"] for r in single}) > 1  # the seeds really differ per step
    lines = (tmp_path / "ray.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "ray.jsonl").write_text("".join(lines[:5]) + lines[5][:7])  # killed mid-line
    again = label_solutions_ray(solutions, Seeded, checker, tmp_path / "ray.jsonl", n=6, seed=5, actors=2)
    assert again["skipped"] == 5 and again["labelled"] == 7
    assert [json.loads(line) for line in (tmp_path / "ray.jsonl").read_text().splitlines()] == single


def test_the_driver_reads_blocks_as_the_actors_consume_them(cluster):
    import ray

    from rewardlab.distributed.scoring import ordered_results

    @ray.remote
    class Doubler:
        def score_block(self, block):
            return [2 * x for x in block]

    pulled = []

    def blocks():
        for k in range(12):
            pulled.append(k)
            yield [k, k + 100]

    actors = [Doubler.remote(), Doubler.remote()]
    results = ordered_results(actors, blocks(), per_actor=2)
    first = next(results)
    assert first == ([0, 100], [0, 200]) and len(pulled) <= 5  # 4 queued, then one more for the freed actor
    rest = list(results)
    assert [b[0] for b, _ in rest] == list(range(1, 12)) and all(v == [2 * x for x in b] for b, v in rest)
