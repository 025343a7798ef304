"""Dynamic batching across concurrent requests: requests arriving within a short window are scored together
by one worker thread, so they never fight over cores or the GPU; a bounded queue gives back-pressure."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["CostMeter", "DynamicBatcher", "QueueFull"]


class QueueFull(RuntimeError):
    """More items are waiting than the queue holds; the server answers 503 with Retry-After."""


class CostMeter(Protocol):
    """One batch's cost counter: ``cost(kind, items)`` is what a job would add to the batch as it stands (no side
    effect); ``add(kind, items)`` records that it joined (so a later job may cost less, e.g. a shared prefix)."""

    def cost(self, kind: Any, items: Sequence[Any]) -> float: ...

    def add(self, kind: Any, items: Sequence[Any]) -> None: ...


@dataclass
class _Job:
    kind: str  # jobs of one kind are scored together ("pairs", "texts")
    items: Sequence[Any]
    future: asyncio.Future = field(repr=False)
    queued_at: float = field(default_factory=time.perf_counter)


class DynamicBatcher:
    """Collect jobs for up to ``window_s`` after the first one (or until ``max_batch_items``, or until their cost
    reaches ``max_batch_cost``), then run ``score(kind, groups)`` once in a single worker thread: ``groups`` holds each
    job's items, and the answer is, per job, its results or the exception that job alone gets (e.g. an item too long).

    A job that would pass a limit (or is of another kind) waits: jobs left over are offered to the next batch oldest
    first, and a batch always takes the first one offered, so the oldest waiting job is in the next batch and none
    is passed over for ever. When a batch is full, the jobs already queued behind it are looked through once (without waiting)
    and those that still fit join it: the other samples of a prompt already in the batch cost only their replies
    when the scorer computes a shared prefix once (``meter``), and a small request fits where a large one did not.

    Validation runs there too, on the same thread as the model: tokenizer threads running beside
    the model's OpenMP threads measured 2.5x slower serving on 2 cores. ``max_queue_items`` bounds
    the items waiting; :meth:`submit` raises :class:`QueueFull` beyond it. A failure of the whole
    call is set on every job in the batch.

    ``meter()`` gives a fresh :class:`CostMeter` per batch (None: only items count).
    """

    def __init__(self, score: Callable[[Any, list[list[Any]]], list[Any]], window_s: float = 0.005, max_batch_items: int = 256,
                 max_queue_items: int = 8192, meter: Callable[[], CostMeter] | None = None,
                 max_batch_cost: float | None = None):
        self.score, self.window_s = score, window_s
        self.max_batch_items, self.max_queue_items = max_batch_items, max_queue_items
        self.meter, self.max_batch_cost = meter, max_batch_cost
        self._queue: asyncio.Queue[_Job] | None = None
        self._waiting_items = 0
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rewardlab-scorer")
        self._task: asyncio.Task | None = None
        self.batches = 0  # model calls so far
        self.items = 0

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Finish what is queued, then stop (graceful shutdown)."""
        while self._queue is not None and (not self._queue.empty() or self._waiting_items):
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
        self._worker.shutdown(wait=True)

    @property
    def waiting_items(self) -> int:
        """Items queued or being scored right now."""
        return self._waiting_items

    async def run_in_worker(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the scoring thread (e.g. the warm-up call), in turn with the batches."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn)

    async def submit(self, kind: str, items: Sequence[Any]) -> list[Any]:
        if self._queue is None:
            raise RuntimeError("the batcher is not started")
        if self._waiting_items + len(items) > self.max_queue_items:
            raise QueueFull(f"{self._waiting_items} items are waiting (queue holds {self.max_queue_items})")
        future = asyncio.get_running_loop().create_future()
        self._waiting_items += len(items)
        await self._queue.put(_Job(kind, items, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        left: list[_Job] = []  # jobs the last batch had no room for, oldest first
        while True:
            if not left:
                left.append(await self._queue.get())
            try:
                batch = _Batch(self, self.meter() if self.meter is not None else None)
            except Exception as err:  # noqa: BLE001 - the jobs get the meter's failure, the server goes on
                self._fail(left, err)
                left = []
                continue
            left = [job for job in left if not batch.take(job)]
            deadline = asyncio.get_running_loop().time() + self.window_s
            while not left and not batch.full:  # wait for more, within the window, until a job does not fit
                timeout = deadline - asyncio.get_running_loop().time()
                if timeout <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), timeout)
                except asyncio.TimeoutError:
                    break
                if not batch.take(job):
                    left.append(job)
            for _ in range(self._queue.qsize()):  # already queued: those that fit join, the others open the next batch
                job = self._queue.get_nowait()
                if not batch.take(job):
                    left.append(job)
            if batch.jobs:
                await self._score_batch(batch.jobs)

    def _fail(self, jobs: list[_Job], err: BaseException) -> None:
        for job in jobs:
            self._waiting_items -= len(job.items)
            if not job.future.done():
                job.future.set_exception(err)

    async def _score_batch(self, batch: list[_Job]) -> None:
        groups = [list(job.items) for job in batch]
        try:
            answers = await asyncio.get_running_loop().run_in_executor(self._worker, self.score, batch[0].kind, groups)
        except Exception as err:  # noqa: BLE001 - handed to every waiting request
            answers = [err] * len(batch)
        finally:
            size = sum(len(g) for g in groups)
            self._waiting_items -= size
            self.batches += 1
            self.items += size
        for job, answer in zip(batch, answers):
            if job.future.done():  # a client that went away
                continue
            if isinstance(answer, BaseException):
                job.future.set_exception(answer)
            else:
                job.future.set_result(answer)


class _Batch:
    """The jobs of one batch and what they cost (items, and the meter's cost when there is a budget)."""

    def __init__(self, owner: DynamicBatcher, meter: CostMeter | None):
        self.owner, self.meter = owner, meter
        self.jobs: list[_Job] = []
        self.items, self.cost = 0, 0.0

    @property
    def full(self) -> bool:
        budget = self.owner.max_batch_cost
        return self.items >= self.owner.max_batch_items or (budget is not None and self.cost >= budget)

    def take(self, job: _Job) -> bool:
        """Add ``job`` if it fits (the first job always does); False when it must wait for the next batch. A meter
        that raises fails that job with its error (True: the job is dealt with), so no request waits forever."""
        budget = self.owner.max_batch_cost
        meter = self.meter if budget is not None else None  # no budget: nothing to count
        try:
            more = meter.cost(job.kind, job.items) if meter is not None else 0.0
            if self.jobs and (job.kind != self.jobs[0].kind or self.items + len(job.items) > self.owner.max_batch_items
                              or budget is not None and self.cost + more > budget):
                return False
            if meter is not None:
                meter.add(job.kind, job.items)
        except Exception as err:  # noqa: BLE001 - handed to the request
            self.owner._fail([job], err)
            return True
        self.jobs.append(job)
        self.items, self.cost = self.items + len(job.items), self.cost + more
        return True
