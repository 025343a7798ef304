"""``score_file``: score every record of a data file into JSON Lines, streamed and resumable, with any :class:`Scorer`."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from ..jsonsafe import dumps
from ..errors import ConfigError, DataFormatError, SequenceTooLongError
from .protocol import HeadScorer, LengthChecked, Scorer

__all__ = ["SCORE_CHUNK_RECORDS", "SCORE_WRITE_RECORDS", "ScoreFileResult", "block_values", "iter_blocks", "prepare_output",
           "read_reference", "score_file", "write_blocks"]

SCORE_CHUNK_RECORDS = 4096
""":func:`score_file` (``rewardlab score``) reads this many records at a time: memory stays flat with the file's size."""

SCORE_WRITE_RECORDS = 256
"""Records scored in one scorer call and written (and flushed) together: each call still length-sorts its texts
into batches, and a killed run loses at most this many records' work (``--resume`` keeps every line written)."""


@dataclass(frozen=True)
class _Item:
    """One text to score: where it came from (file:line and side) and what it is."""

    location: str
    side: str  # "chosen", "rejected" or "" for a single response
    prompt: Any
    response: str

    def where(self) -> str:
        return f"{self.location} ({self.side})" if self.side else self.location


def _items(chunk: list[tuple[str, Any]]) -> tuple[list[str], list[_Item]]:
    """``(kinds, items)``: a preference record gives two items (chosen, rejected), any other one."""
    from ..data.readers import pair_sides, to_prompt_response

    kinds: list[str] = []
    items: list[_Item] = []
    for location, record in chunk:
        if "chosen" in record:
            (chosen_prompt, chosen), (rejected_prompt, rejected) = pair_sides(record, location)
            items += [_Item(location, "chosen", chosen_prompt, chosen), _Item(location, "rejected", rejected_prompt, rejected)]
            kinds.append("pair")
        else:
            prompt, response = to_prompt_response(record, location)
            items.append(_Item(location, "", prompt, response))
            kinds.append("single")
    return kinds, items


def _chunks(data: str, split: str, skip: int = 0) -> Iterator[list[tuple[str, Any]]]:
    """Lists of ``(location, record)``, ``SCORE_CHUNK_RECORDS`` at a time, after the first ``skip`` records."""
    from ..data.readers import iter_records

    records = islice(iter_records(data, split), skip, None)
    while chunk := list(islice(records, SCORE_CHUNK_RECORDS)):
        yield chunk


def read_reference(data: str | os.PathLike, split: str = "train") -> tuple[list[Any], list[str]]:
    """``(prompts, responses)`` of a reference set: every {prompt, response} / {messages} record, both sides of a pair."""
    prompts: list[Any] = []
    responses: list[str] = []
    for chunk in _chunks(str(data), split):
        for item in _items(chunk)[1]:
            prompts.append(item.prompt)
            responses.append(item.response)
    if not responses:
        raise DataFormatError(str(data), "the reference set has no records")
    return prompts, responses


def _completed_lines(out: Path) -> int:
    """Complete lines of an earlier run's output (index 0, 1, ...), read line by line; a line cut by
    the kill (no newline) is removed from the file and scored again."""
    count, keep = 0, 0
    with out.open("rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                break
            try:
                index = json.loads(line).get("index")
            except (json.JSONDecodeError, AttributeError):
                index = None
            if index != count:
                raise DataFormatError(f"{out}:{count + 1}", f"expected the output line of record {count} to resume from")
            count, keep = count + 1, keep + len(line)
    if keep < out.stat().st_size:
        with out.open("r+b") as handle:
            handle.truncate(keep)
    return count


def _too_long_message(count: int, first: str | None, max_length: int | None) -> str:
    limit = f"max_length={max_length}" if max_length is not None else "the scorer's max length"
    return (f"{count} response(s) do not fit in {limit} even without their prompt (first at {first}); raise max_length "
            "(--max-length), or skip_too_long (--skip-too-long) writes them with reward null")


def _check_lengths(scorer: LengthChecked, data: str, split: str) -> int:
    """Ask the scorer which items cannot fit, keeping nothing, and fail before any scoring if one cannot; returns the record count."""
    records, too_long, first = 0, 0, None
    for chunk in _chunks(data, split):
        _, items = _items(chunk)
        bad = scorer.too_long([i.prompt for i in items], [i.response for i in items])
        too_long += len(bad)
        first = first or (items[bad[0]].where() if bad else None)
        records += len(chunk)
    if too_long:
        raise SequenceTooLongError(_too_long_message(too_long, first, scorer.max_length))
    return records


def _values(scorer: Scorer, items: list[_Item], skip_too_long: bool) -> list[Any]:
    """One value per item: the reward, ``{"rewards": per head, "reward": combined}`` for several heads,
    or None for a response that cannot fit (only with ``skip_too_long``)."""
    prompts, responses = [i.prompt for i in items], [i.response for i in items]
    skipped: set[int] = set(scorer.too_long(prompts, responses)) if skip_too_long and isinstance(scorer, LengthChecked) else set()
    multi = isinstance(scorer, HeadScorer) and len(scorer.heads) > 1
    for _ in range(2):  # a scorer without a length check says which items were too long by raising
        keep = [k for k in range(len(items)) if k not in skipped]
        try:
            scored: list[Any]
            if multi and isinstance(scorer, HeadScorer):
                rows = scorer.score_named([prompts[k] for k in keep], [responses[k] for k in keep])
                scored = [{"rewards": row, "reward": scorer.combined(row)} for row in rows]
            else:
                scored = list(scorer.score([prompts[k] for k in keep], [responses[k] for k in keep]))
            break
        except SequenceTooLongError as err:
            bad = [keep[k] for k in err.items if k < len(keep)]
            if not skip_too_long or not bad:
                if bad:
                    raise SequenceTooLongError(_too_long_message(len(bad), items[bad[0]].where(), err.max_length),
                                               tuple(bad), err.max_length) from None
                raise
            skipped.update(bad)
    values: list[Any] = [None] * len(items)
    for k, value in zip(keep, scored):
        values[k] = value
    return values


@dataclass(frozen=True)
class ScoreFileResult:
    """What :func:`score_file` wrote: ``lines`` in ``output`` (``resumed_lines`` of them kept from an
    earlier run), ``too_long`` responses written with reward null, the first one's location."""

    output: Path
    lines: int
    resumed_lines: int
    too_long: int
    first_too_long: str | None


def run_identity(scorer: Scorer) -> dict[str, Any]:
    """What a resumed run must match, from ``scorer.describe()``: kind, model and every setting (flat)."""
    described = scorer.describe()
    return {"kind": described.get("kind"), "model": described.get("model"), **described.get("settings", {})}


def score_file(
    scorer: Scorer, data: str | os.PathLike, output: str | os.PathLike, *, split: str = "train", resume: bool = False,
    skip_too_long: bool = False, show_progress: bool = True,
) -> ScoreFileResult:
    """Score every record of ``data`` into the JSON Lines file ``output`` with any :class:`Scorer`: what ``rewardlab score`` runs.

    A preference record (``chosen``/``rejected``) gives one line with ``chosen_reward`` and
    ``rejected_reward``, any other record (``{prompt, response}``, ``{messages}``) a line with
    ``reward``; every line has ``index`` (the record's position), ``source`` (file:line) and the
    fields of ``scorer.describe()["record"]`` (e.g. a DPO beta). A :class:`HeadScorer` with several
    heads adds ``rewards`` per head (``reward`` is then its combination, or null).

    * A :class:`LengthChecked` scorer is first asked which items cannot fit, keeping nothing, and
      :class:`SequenceTooLongError` (count and first file:line and side) is raised before scoring
      anything; ``skip_too_long`` writes those with reward null instead. Other scorers that raise
      it while scoring are handled the same way, chunk by chunk.
    * Records are read ``SCORE_CHUNK_RECORDS`` at a time (memory does not grow with the file), scored
      and written ``SCORE_WRITE_RECORDS`` at a time; the file is flushed after each block, so a kill
      loses at most one block of work.
    * ``OUTPUT.run.json`` records the data file (path, size, mtime), the split and the scorer's
      ``describe()`` (kind, model, settings). ``resume=True`` with an existing ``output`` checks them
      (:class:`ConfigError` naming what differs), drops a line cut by a kill and scores only the
      records after the last complete line.
    """
    from ..data.readers import refuse_overwriting_input

    refuse_overwriting_input(output, data)
    out = Path(output)
    data = str(data)
    total = None  # records, when the length check counted them
    if isinstance(scorer, LengthChecked) and not skip_too_long:
        total = _check_lengths(scorer, data, split)  # bad input fails before hours of scoring
    done = prepare_output(out, data, split, run_identity(scorer), resume)
    blocks = iter_blocks(data, split, done)
    scored = ((block, _values(scorer, _items(block)[1], skip_too_long)) for block in blocks)
    written, nulls, first_null = write_blocks(out, scored, scorer.describe().get("record", {}), done, total, show_progress)
    return ScoreFileResult(out, written, done, nulls, first_null)


def prepare_output(out: Path, data: str, split: str, identity: dict[str, Any], resume: bool) -> int:
    """Start ``out`` (and ``OUTPUT.run.json`` with the data fingerprint and ``identity``), or with ``resume`` check that
    the earlier run matches and return how many records it finished (a torn last line is removed)."""
    from ..data.token_store import source_fingerprint

    identity = json.loads(json.dumps({"data": source_fingerprint(data, split), "split": split, **identity}, default=str))
    out.parent.mkdir(parents=True, exist_ok=True)
    run_file = out.with_name(out.name + ".run.json")
    if resume and out.exists():
        if not run_file.is_file():
            raise ConfigError(f"cannot resume {out}: {run_file} (what the earlier run scored with) is missing; score without resuming")
        earlier = json.loads(run_file.read_text())
        changed = sorted(k for k in {*earlier, *identity} if earlier.get(k) != identity.get(k))
        if changed:
            raise ConfigError(f"cannot resume {out}: the earlier run differs in {', '.join(changed)} ({changed[0]} was "
                              f"{earlier.get(changed[0])!r}, now {identity.get(changed[0])!r}); score without resuming")
        return _completed_lines(out)
    out.write_text("")
    run_file.write_text(json.dumps(identity, indent=1))
    return 0


def iter_blocks(data: str, split: str, skip: int) -> Iterator[list[tuple[str, Any]]]:
    """``(location, record)`` lists of ``SCORE_WRITE_RECORDS`` after the first ``skip`` records: the unit that is scored
    in one call and written (and flushed) together."""
    for chunk in _chunks(data, split, skip=skip):
        for i in range(0, len(chunk), SCORE_WRITE_RECORDS):
            yield chunk[i : i + SCORE_WRITE_RECORDS]


def block_values(scorer: Scorer, block: list[tuple[str, Any]], skip_too_long: bool) -> list[Any]:
    """The values of one block's items (what a worker computes for :func:`write_blocks`)."""
    return _values(scorer, _items(block)[1], skip_too_long)


def write_blocks(out: Path, scored: Iterator[tuple[list[tuple[str, Any]], list[Any]]], record: dict[str, Any], done: int,
                 total: int | None, show_progress: bool) -> tuple[int, int, str | None]:
    """Append the lines of ``(block, values)`` in order; ``(lines in the file, nulls, first null's location)``."""
    from tqdm.auto import tqdm

    extra = dict(record)
    written, nulls, first_null = done, 0, None
    with out.open("a") as handle, tqdm(total=total, initial=done, unit="records", desc="scoring", disable=not show_progress) as bar:
        for block, block_vals in scored:
            kinds, _ = _items(block)
            values = iter(block_vals)
            for (location, _), kind in zip(block, kinds):
                line: dict[str, Any] = {"index": written, "source": location}
                for side in (("chosen", "rejected") if kind == "pair" else ("",)):
                    value = next(values)
                    prefix = f"{side}_" if side else ""
                    if value is None:
                        nulls += 1
                        first_null = first_null or location
                    if isinstance(value, dict):
                        line[f"{prefix}rewards"], line[f"{prefix}reward"] = value["rewards"], value["reward"]
                    else:
                        line[f"{prefix}reward"] = value
                    reward = line.get(f"{prefix}reward")
                    if isinstance(reward, float) and math.isinf(reward):
                        # strict JSON has no -Infinity: a ConstrainedReward's penalty (-inf by default) is written as
                        # null with the reason beside it, never silently
                        line[f"{prefix}reward"], line[f"{prefix}reward_infinite"] = None, "+inf" if reward > 0 else "-inf"
                handle.write(dumps({**line, **extra}) + "\n")
                written += 1
            handle.flush()  # a finished block survives a kill; resume goes on after it
            bar.update(len(block))
    return written, nulls, first_null
