"""PRM-guided step-level beam search: a generator proposes next steps, a PRM keeps the best prefixes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..data.records import Message
from .aggregation import aggregate

__all__ = ["BeamResult", "SearchNode", "prm_beam_search"]

FINAL_MARKERS = ("####", "\\boxed", "answer is", "A:")


@dataclass(frozen=True)
class SearchNode:
    """One step in the search tree; ``score`` is the aggregated PRM score of the prefix ending here."""

    id: int
    parent: int | None
    step: str
    depth: int
    score: float
    step_scores: tuple[float, ...]
    finished: bool


@dataclass(frozen=True)
class BeamResult:
    best_steps: tuple[str, ...]
    best_score: float
    tree: list[SearchNode] = field(default_factory=list)

    def path(self, node_id: int) -> list[str]:
        nodes = {n.id: n for n in self.tree}
        steps, current = [], nodes.get(node_id)
        while current is not None:
            steps.append(current.step)
            current = nodes.get(current.parent) if current.parent is not None else None
        return steps[::-1]


def prm_beam_search(
    generator: Any, prm: Any, prompt: Sequence[Message], beam_width: int = 2, expansions: int = 2, max_steps: int = 6,
    aggregation: str = "min", max_step_tokens: int = 96, separator: str = "\n",
) -> BeamResult:
    """Beam search over steps: each beam is expanded with ``expansions`` sampled next steps (text up
    to ``separator``), every candidate prefix is scored by the PRM (``score_steps``) and the top
    ``beam_width`` by aggregated score survive. A prefix whose last step states a final answer
    (``####``, ``\\boxed``, "answer is", "A:") or an empty step finishes. Returns the best finished
    (else best unfinished) solution and the whole search tree.
    """
    tree: list[SearchNode] = []
    beams: list[tuple[int | None, tuple[str, ...]]] = [(None, ())]
    finished: list[tuple[float, int, tuple[str, ...]]] = []
    for depth in range(max_steps):
        candidates: list[tuple[int | None, tuple[str, ...]]] = []
        for parent, steps in beams:
            prefix = separator.join(steps) + (separator if steps else "")
            for text in generator.continue_solution(prompt, prefix, expansions, max_step_tokens, stop=separator):
                step = text.strip()
                candidates.append((parent, steps + (step,)))
        if not candidates:
            break
        scores = prm.score_steps([prompt] * len(candidates), [[s or "(empty)" for s in c] for _, c in candidates])
        scored = []
        for (parent, steps), step_scores in zip(candidates, scores):
            node = SearchNode(len(tree), parent, steps[-1], depth, aggregate(step_scores, aggregation), tuple(step_scores),
                              not steps[-1] or any(m in steps[-1] for m in FINAL_MARKERS))
            tree.append(node)
            scored.append((node, steps))
        scored.sort(key=lambda item: (-item[0].score, item[0].id))  # deterministic tie-break
        beams = []
        for node, steps in scored:
            if node.finished:
                finished.append((node.score, node.id, steps))
            elif len(beams) < beam_width:
                beams.append((node.id, steps))
        if len(finished) >= beam_width or not beams:
            break
    pool = finished or [(n.score, n.id, tuple(BeamResult((), 0.0, tree).path(n.id))) for n in tree if n.depth == tree[-1].depth]
    best = max(pool, key=lambda item: (item[0], -item[1]))
    steps = list(best[2])
    while steps and not steps[-1]:  # an empty step only marks the end
        steps.pop()
    return BeamResult(tuple(steps), best[0], tree)
