"""``score_file`` on a Ray cluster: blocks of records scored by a pool of actors (one scorer each, CPU or GPU),
written in input order, resumable at block granularity. Ray is imported here only (``pip install 'rewardlab[ray]'``).

The driver reads the input as the actors consume it and writes the output; each actor builds its scorer from the
same :class:`~rewardlab.scoring.config.ScorerConfig` and computes :func:`~rewardlab.scoring.files.block_values` for
the blocks it is handed (two queued per actor, results in input order: :func:`ordered_results`). A killed run keeps every block written before the kill; ``resume=True`` checks the earlier run's
identity (``OUTPUT.run.json``) and scores only the rest. The rewards are the single-process scorer's.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..extras import require
from ..scoring.config import ScorerConfig
from .cluster import connect
from ..scoring.files import ScoreFileResult, block_values, iter_blocks, prepare_output, write_blocks

__all__ = ["score_file_ray"]


def _actor_class() -> Any:
    ray: Any = require("ray", "ray", "--ray (scoring on a Ray cluster)")

    @ray.remote
    class ScoringActor:
        """Holds one scorer (built once) and scores the blocks it is handed."""

        def __init__(self, config: ScorerConfig, skip_too_long: bool):
            from ..scoring.config import build_scorer

            self.scorer, self.skip = build_scorer(config), skip_too_long

        def describe(self) -> dict[str, Any]:
            return self.scorer.describe()

        def score_block(self, block: list[tuple[str, Any]]) -> list[Any]:
            return block_values(self.scorer, block, self.skip)

    return ScoringActor


def ordered_results(actors: list[Any], blocks: Iterator[Any], per_actor: int = 2) -> Iterator[tuple[Any, Any]]:
    """``(block, actor.score_block(block))`` in input order, with at most ``per_actor`` blocks queued on each actor: the
    driver reads the input as the actors consume it (memory: ``len(actors) * per_actor`` blocks, whatever the file's
    size). Blocks go round-robin; a finished block's actor gets the next one, so each keeps a call waiting."""
    import ray

    inflight: deque[tuple[Any, Any, Any]] = deque()
    source = iter(blocks)
    turn = 0
    for block in itertools.islice(source, len(actors) * per_actor):
        actor = actors[turn % len(actors)]
        inflight.append((block, actor.score_block.remote(block), actor))
        turn += 1
    while inflight:
        block, ref, actor = inflight.popleft()
        values = ray.get(ref)
        following = next(source, None)
        if following is not None:
            inflight.append((following, actor.score_block.remote(following), actor))
        yield block, values


def score_file_ray(config: ScorerConfig, data: str | os.PathLike, output: str | os.PathLike, *, address: str | None = None,
                   actors: int = 2, cpus_per_actor: float = 1.0, gpus_per_actor: float = 0.0, split: str = "train",
                   resume: bool = False, skip_too_long: bool = False, show_progress: bool = True,
                   connect_timeout: float = 10.0) -> ScoreFileResult:
    """Score ``data`` into ``output`` like :func:`~rewardlab.scoring.files.score_file`, with ``actors`` Ray actors.

    ``address``: a running cluster (``ray://host:10001`` or ``auto``); None starts a local one for this call and
    shuts it down after. The driver holds at most two blocks per actor in memory. A reply too long for the model stops
    the run naming its file:line and side, unless ``skip_too_long`` (then written as null). An ``address`` that
    does not answer within ``connect_timeout`` seconds ends the call (:class:`~rewardlab.distributed.cluster.ClusterUnreachable`).
    """
    from ..data.readers import refuse_overwriting_input

    refuse_overwriting_input(output, data)
    started = connect(address, connect_timeout, "--ray (scoring on a Ray cluster)")
    import ray

    try:
        actor = _actor_class()
        pool = [actor.options(num_cpus=cpus_per_actor, num_gpus=gpus_per_actor).remote(config, skip_too_long)
                for _ in range(actors)]
        described = ray.get(pool[0].describe.remote())
        identity = {"kind": described.get("kind"), "model": described.get("model"), **described.get("settings", {})}
        out, data = Path(output), str(data)
        done = prepare_output(out, data, split, identity, resume)
        scored = ordered_results(pool, iter_blocks(data, split, done), per_actor=2)
        written, nulls, first_null = write_blocks(out, scored, described.get("record", {}), done, None, show_progress)
        return ScoreFileResult(out, written, done, nulls, first_null)
    finally:
        if started:
            ray.shutdown()
