"""Math-Shepherd step labels on Ray: the steps still to label are handed to a pool of actors, each with its own
generator, and their result lines appended in step order by the driver, with the resume semantics of
:func:`~rewardlab.labeling.math_shepherd.label_solutions` (finished steps are skipped, a torn line is redone).

Each step is sampled with its own seed (:func:`~rewardlab.labeling.math_shepherd.step_seed`), so for a fixed seed the
labels equal a single-process run's, whichever actor computed them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..labeling.checkers import Checker
from ..labeling.math_shepherd import SolutionToLabel, label_step, todo_steps
from .cluster import connect

__all__ = ["label_solutions_ray"]


def label_solutions_ray(solutions: Sequence[SolutionToLabel], generator_factory: Callable[[], Any], checker: Checker,
                        output: str | Path, n: int = 8, max_new_tokens: int = 256, seed: int = 0, actors: int = 2,
                        cpus_per_actor: float = 1.0, gpus_per_actor: float = 0.0, address: str | None = None,
                        connect_timeout: float = 10.0, show_progress: bool = True) -> dict[str, int]:
    """Label every step like ``label_solutions(..., seed=seed)``; ``generator_factory()`` builds each actor's generator
    (e.g. ``lambda: LocalHFGenerator("builtin:smollm2")``). A local Ray cluster is started when none is running; an
    ``address`` that does not answer within ``connect_timeout`` seconds ends the call. A progress bar counts steps."""
    from tqdm.auto import tqdm

    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    todo, skipped = todo_steps(solutions, path)
    started = connect(address, connect_timeout, "label-steps --ray")
    import ray

    try:
        @ray.remote
        class LabelingActor:
            def __init__(self) -> None:
                self.generator = generator_factory()

            def label(self, job: tuple[SolutionToLabel, int]) -> dict[str, Any]:
                return label_step(job[0], job[1], self.generator, checker, n, max_new_tokens, seed)

        actor: Any = LabelingActor  # a ray ActorClass; ray types the decorated class as the plain class
        pool = ray.util.ActorPool([actor.options(num_cpus=cpus_per_actor, num_gpus=gpus_per_actor).remote()
                                   for _ in range(actors)])
        labelled = calls = 0
        with path.open("a") as handle:
            results = pool.map(lambda actor, job: actor.label.remote(job), todo)  # results in step order
            for record in tqdm(results, total=len(todo), desc="labelling steps", unit="step", disable=not show_progress):
                handle.write(json.dumps(record) + "\n")
                handle.flush()
                labelled += 1
                calls += record["n"] > 0
        return {"labelled": labelled, "skipped": skipped, "generator_calls": calls}
    finally:
        if started:
            ray.shutdown()
