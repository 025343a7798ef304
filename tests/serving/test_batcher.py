"""The dynamic batcher on its own: which jobs a batch takes, in which order, and what waits for the next one."""

import asyncio
import threading

from rewardlab.serving.batcher import DynamicBatcher


class _Meter:
    """Costs: an item 'P:x' costs 1 when a 'P:' item is already in the batch, else 10 (a shared prompt); others 10."""

    def __init__(self):
        self.prompts = set()

    def cost(self, kind, items):
        return sum(1 if item.split(":")[0] in self.prompts else 10 for item in items)

    def add(self, kind, items):
        self.prompts.update(item.split(":")[0] for item in items)


def _run(jobs, **options):
    """Submit ``jobs`` ((kind, items) each) while the worker is busy with a first job, then let them be batched;
    returns the batches (each a list of job item lists) after the first."""
    batches, release = [], threading.Event()

    def score(kind, groups):
        if not batches:
            release.wait(5)  # the first call holds the worker while the others queue up
        batches.append(groups)
        return [[0.0] * len(g) for g in groups]

    async def main():
        batcher = DynamicBatcher(score, window_s=0.001, **options)
        batcher.start()
        first = asyncio.create_task(batcher.submit("texts", ["blocker"]))
        await asyncio.sleep(0.05)
        waiting = []
        for kind, items in jobs:
            waiting.append(asyncio.create_task(batcher.submit(kind, items)))
            await asyncio.sleep(0)  # queued in this order
        release.set()
        await asyncio.gather(first, *waiting)
        await batcher.stop()

    asyncio.run(main())
    return batches[1:]


def test_a_prompts_later_samples_join_the_batch_that_holds_its_prompt():
    # budget 25: A's first sample (10) + B's first (10) fill most of it; A's and B's other samples cost 1 each
    jobs = [("texts", [x]) for x in ["A:1", "B:1", "C:1", "A:2", "B:2", "A:3", "C:2"]]
    batches = _run(jobs, meter=_Meter, max_batch_cost=25)
    assert batches == [[["A:1"], ["B:1"], ["A:2"], ["B:2"], ["A:3"]], [["C:1"], ["C:2"]]]


def test_jobs_left_over_open_the_next_batch_oldest_first():
    jobs = [("texts", [x]) for x in ["A:1", "B:1", "C:1", "D:1", "E:1"]]
    batches = _run(jobs, meter=_Meter, max_batch_cost=20)  # two distinct prompts per batch
    assert batches == [[["A:1"], ["B:1"]], [["C:1"], ["D:1"]], [["E:1"]]]


def test_a_job_of_another_kind_or_past_the_item_limit_waits_for_the_next_batch():
    jobs = [("texts", ["a", "b"]), ("pairs", [("p", "r")]), ("texts", ["c", "d", "e"]), ("texts", ["f"])]
    batches = _run(jobs, max_batch_items=3)
    assert batches == [[["a", "b"], ["f"]], [[("p", "r")]], [["c", "d", "e"]]]
    # the pairs job opens the batch after the one it could not join; 'c d e' (3 items) did not fit beside 'a b'


def test_without_a_budget_every_queued_job_of_the_kind_joins():
    jobs = [("texts", [x]) for x in "abcdef"]
    assert _run(jobs) == [[[x] for x in "abcdef"]]


class _BrokenMeter:
    def cost(self, kind, items):
        raise ValueError("meter bug")

    def add(self, kind, items):
        pass


def test_a_failing_meter_fails_the_jobs_with_its_error_and_the_batcher_goes_on():
    async def main():
        batcher = DynamicBatcher(lambda kind, groups: [[1.0] * len(g) for g in groups], window_s=0.001, meter=_BrokenMeter,
                                 max_batch_cost=5)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit("texts", [x]) for x in "abc"), return_exceptions=True)
        await batcher.stop()
        return results, batcher.waiting_items

    results, waiting = asyncio.run(asyncio.wait_for(main(), 10))
    assert [str(r) for r in results] == ["meter bug"] * 3 and waiting == 0
