"""PRM-guided step-level beam search: a generator proposes next steps, a PRM keeps the best prefixes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..data.records import Message
from ..labeling.generators import Generator
from ..scoring.protocol import Scorer

__all__ = ["BeamResult", "SearchNode", "prm_beam_search"]

FINAL_MARKERS = ("####", "\\boxed", "answer is", "A:")


@dataclass(frozen=True)
class SearchNode:
    """One step in the search tree; ``score`` is the scorer's reward of the solution prefix ending here."""

    id: int
    parent: int | None
    step: str
    depth: int
    score: float
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
    generator: Generator, scorer: Scorer, prompt: Sequence[Message], beam_width: int = 2, expansions: int = 2, max_steps: int = 6,
    max_step_tokens: int = 96, separator: str = "\n", show_progress: bool = False,
) -> BeamResult:
    """Beam search over steps: each beam is expanded with ``expansions`` sampled next steps (text up
    to ``separator``), every candidate prefix (steps joined by ``separator``) is scored by ``scorer``
    (a PRM scorer aggregates its step probabilities; any :class:`Scorer` works) and the top
    ``beam_width`` survive. A prefix whose last step states a final answer (``####``, ``\\boxed``,
    "answer is", "A:") finishes; an empty or whitespace-only step is dropped (it neither ends a beam
    nor becomes a node). The search stops at ``max_steps``, when ``beam_width`` solutions finished,
    or when no beam can be extended. Returns the best finished (else best unfinished) solution and
    the whole search tree.
    """
    tree: list[SearchNode] = []
    beams: list[tuple[int | None, tuple[str, ...]]] = [(None, ())]
    finished: list[tuple[float, int, tuple[str, ...]]] = []
    from tqdm.auto import tqdm

    bar = tqdm(total=max_steps, desc="beam search", unit="step", disable=not show_progress)
    for depth in range(max_steps):
        bar.update(1)
        candidates: list[tuple[int | None, tuple[str, ...]]] = []
        for parent, steps in beams:
            prefix = separator.join(steps) + (separator if steps else "")
            for text in generator.continue_solution(prompt, prefix, expansions, max_step_tokens, stop=separator):
                if text.strip():
                    candidates.append((parent, steps + (text.strip(),)))
        if not candidates:
            break
        scores = scorer.score([prompt] * len(candidates), [separator.join(c) for _, c in candidates])
        scored = []
        for (parent, steps), score in zip(candidates, scores):
            node = SearchNode(len(tree), parent, steps[-1], depth, float(score), any(m in steps[-1] for m in FINAL_MARKERS))
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
    bar.close()
    if not tree:
        return BeamResult((), float("-inf"), tree)
    pool = finished or [(n.score, n.id, tuple(BeamResult((), 0.0, tree).path(n.id))) for n in tree if n.depth == tree[-1].depth]
    best = max(pool, key=lambda item: (item[0], -item[1]))
    return BeamResult(tuple(best[2]), best[0], tree)
