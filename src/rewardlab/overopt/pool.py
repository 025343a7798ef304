"""Candidate pools from a real policy: N sampled replies per prompt, seeded per prompt, appended to JSON Lines as
they are made (a killed run resumes after the last finished prompt, with the same draws), gold-labelled."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from ..data.templating import Prompt, as_messages
from ..errors import DataFormatError
from ..labeling.generators import Generator
from ..scoring.protocol import Scorer

__all__ = ["sample_pool"]


def sample_pool(generator: Generator, prompts: Sequence[Prompt], n: int, output: str | os.PathLike, gold: Scorer,
                max_new_tokens: int = 64, seed: int = 0, show_progress: bool = True) -> dict[str, int]:
    """Write ``{prompt, candidates, gold, seed}`` per prompt to ``output``; prompts already there are kept (resume).

    The draws of prompt i use seed ``seed + i``, so a resumed pool equals an uninterrupted one. A generator with
    ``sample_with_logprobs`` (the local HF generator; an OpenAI-compatible server) also gives each candidate's token
    log-probs under the policy: ``token_logprobs`` (a list per candidate) and their sum ``logprob``.
    """
    from tqdm.auto import tqdm

    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = 0
    if path.exists():
        text = path.read_text()
        if text and not text.endswith("\n"):  # a line torn by a kill
            text = text[: text.rfind("\n") + 1]
            path.write_text(text)
        for lineno, line in enumerate(text.splitlines(), start=1):
            try:
                json.loads(line)["candidates"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise DataFormatError(f"{path}:{lineno}", "not a pool line; use another --output") from None
            done += 1
    with path.open("a") as handle:
        for i in tqdm(range(done, len(prompts)), desc="sampling pool", unit="prompt", disable=not show_progress):
            messages = as_messages(prompts[i])
            logprobs = None
            if hasattr(generator, "sample_with_logprobs"):  # the reference policy's token log-probs travel with the pool
                sampled = generator.sample_with_logprobs(messages, n, max_new_tokens, seed=seed + i)
                replies, logprobs = [t.strip() for t, _ in sampled], [lp for _, lp in sampled]
            else:
                replies = [r.strip() for r in generator.continue_solution(messages, "", n, max_new_tokens, seed=seed + i)]
            scores = gold.score([prompts[i]] * len(replies), replies)
            row = {"prompt": prompts[i] if isinstance(prompts[i], str) else [m.as_dict() for m in messages],
                   "candidates": replies, "gold": [float(s) for s in scores], "seed": seed + i}
            if logprobs is not None:
                row["token_logprobs"] = logprobs
                row["logprob"] = [None if lp is None else float(sum(lp)) for lp in logprobs]
            handle.write(json.dumps(row) + "\n")
            handle.flush()
    return {"prompts": len(prompts), "sampled": len(prompts) - done, "resumed": done}
