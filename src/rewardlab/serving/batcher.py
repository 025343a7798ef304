"""Dynamic batching across concurrent requests: requests arriving within a short window are scored together
by one worker thread, so they never fight over cores or the GPU; a bounded queue gives back-pressure."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DynamicBatcher", "QueueFull"]


class QueueFull(RuntimeError):
    """More items are waiting than the queue holds; the server answers 503 with Retry-After."""


@dataclass
class _Job:
    kind: str  # jobs of one kind are scored together ("pairs", "texts")
    items: Sequence[Any]
    future: asyncio.Future = field(repr=False)
    queued_at: float = field(default_factory=time.perf_counter)


class DynamicBatcher:
    """Collect jobs for up to ``window_s`` after the first one (or until ``max_batch_items``, or until their cost
    reaches ``max_batch_cost``: a job that would pass it waits for the next batch), then run
    ``score(kind, groups)`` once in a single worker thread: ``groups`` holds each job's items, and the
    answer is, per job, its results or the exception that job alone gets (e.g. an item too long).

    Validation runs there too, on the same thread as the model: tokenizer threads running beside
    the model's OpenMP threads measured 2.5x slower serving on 2 cores. ``max_queue_items`` bounds
    the items waiting; :meth:`submit` raises :class:`QueueFull` beyond it. A failure of the whole
    call is set on every job in the batch.

    ``meter()`` gives a fresh cost counter per batch, called with each job's ``(kind, items)`` in turn and
    answering what they add to the batch (so a counter may discount what an earlier job of the batch shares).
    """

    def __init__(self, score: Callable[[Any, list[list[Any]]], list[Any]], window_s: float = 0.005, max_batch_items: int = 256,
                 max_queue_items: int = 8192, meter: Callable[[], Callable[[Any, Sequence[Any]], float]] | None = None,
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
        pending: list[_Job] = []
        while True:
            first = pending.pop(0) if pending else await self._queue.get()
            measure = self.meter() if self.meter is not None else None
            batch, size = [first], len(first.items)
            cost = measure(first.kind, first.items) if measure is not None else 0.0
            deadline = asyncio.get_running_loop().time() + self.window_s
            while size < self.max_batch_items and (self.max_batch_cost is None or cost < self.max_batch_cost):
                timeout = deadline - asyncio.get_running_loop().time()
                if timeout <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), timeout)
                except asyncio.TimeoutError:
                    break
                more = measure(job.kind, job.items) if measure is not None and job.kind == first.kind else 0.0
                if (job.kind != first.kind or size + len(job.items) > self.max_batch_items
                        or self.max_batch_cost is not None and cost + more > self.max_batch_cost):
                    pending.append(job)  # next batch
                    break
                batch.append(job)
                size, cost = size + len(job.items), cost + more
            await self._score_batch(batch)

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
