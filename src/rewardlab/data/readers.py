"""Read preference data from local jsonl / json / parquet files or ``datasets`` names.

Accepted record formats (detected per record):

1. **TRL explicit prompt**: ``prompt``, ``chosen``, ``rejected``; each a string, or a list of
   ``{"role", "content"}`` messages (``chosen`` / ``rejected`` then hold one assistant message).
2. **TRL implicit prompt**: ``chosen``, ``rejected`` only, as full conversations (message lists)
   or texts; the shared prefix is the prompt.
3. **Anthropic HH**: ``chosen``, ``rejected`` transcripts of ``"\\n\\nHuman: ..."`` and
   ``"\\n\\nAssistant: ..."`` turns; everything before the last Assistant turn is the prompt.

Optional fields: a numeric ``margin`` (margin losses), a ``weight`` >= 0 (multiplies the pair's loss), ``tie`` (true when neither reply is
better), ``strength`` (a label such as "significantly better", mapped to a margin or weight by
the training config) and ``attribute`` (which head of a multi-objective model the preference
is about). Pairs without signal (an empty
response, or chosen == rejected) are dropped and counted, never silently.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..errors import ConfigError, DataFormatError, RewardlabError
from .records import Message, PreferencePair, RankedResponses, Role, ScoredResponse
from .transcripts import looks_hh, parse_hh_transcript, prompt_messages

__all__ = [
    "finite_number",
    "DropReport",
    "PromptMismatchError",
    "iter_preference_pairs",
    "iter_records",
    "pair_sides",
    "parse_hh_transcript",
    "read_preference_pairs",
    "atomic_write",
    "refuse_overwriting_input",
    "to_preference_pair",
    "to_ranked_responses",
    "to_scored_response",
    "write_preference_pairs",
    "to_prompt_response",
]

ACCEPTED_FORMATS = (
    "accepted formats: (1) TRL explicit prompt: 'prompt', 'chosen', 'rejected' "
    "(strings or lists of {'role', 'content'} messages); (2) TRL implicit prompt: 'chosen', "
    "'rejected' as full conversations; (3) Anthropic HH: 'chosen', 'rejected' transcripts with "
    "'\\n\\nHuman:' / '\\n\\nAssistant:' turns"
)


class PromptMismatchError(DataFormatError):
    """Chosen and rejected do not share a prompt: a content defect, counted as a drop by readers."""


@dataclass
class DropReport:
    """Counts of records left out and why; printed at the end of loading.

    >>> report = DropReport(total=10)
    >>> report.add("with chosen == rejected", location="pairs.jsonl:3")
    >>> report.summary("pairs")
    'dropped 1 of 10 pairs: 1 with chosen == rejected (first at pairs.jsonl:3)'
    """

    total: int = 0
    reasons: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)
    """First location seen for each reason, so a user can look at one."""
    cut: int = 0
    """Kept sequences whose prompt was cut from the left to fit ``max_length`` (not drops, but worth knowing)."""
    first_cut: str = ""

    def note_cut(self, location: str = "", count: int = 1) -> None:
        self.cut += count
        self.first_cut = self.first_cut or location

    def add(self, reason: str, count: int = 1, location: str = "") -> None:
        self.reasons[reason] += count
        if location:
            self.examples.setdefault(reason, location)

    def merge(self, other: DropReport) -> None:
        """Add another report's records and drops (e.g. a separate held-out file's) to this one."""
        self.total += other.total
        for reason, count in other.reasons.items():
            self.add(reason, count, other.examples.get(reason, ""))
        if other.cut:
            self.note_cut(other.first_cut, other.cut)

    @property
    def dropped(self) -> int:
        return sum(self.reasons.values())

    def summary(self, what: str = "pairs") -> str:
        cut = (f"; {self.cut} sequence(s) had their prompt cut from the left to fit max_length"
               + (f" (first at {self.first_cut})" if self.first_cut else "")) if self.cut else ""
        return self._dropped_summary(what) + cut

    def _dropped_summary(self, what: str) -> str:
        if not self.dropped:
            return f"kept all {self.total} {what}"
        parts = ", ".join(
            f"{n} {reason}" + (f" (first at {self.examples[reason]})" if reason in self.examples else "")
            for reason, n in self.reasons.most_common()
        )
        return f"dropped {self.dropped} of {self.total} {what}: {parts}"


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike | None) -> Iterator[TextIO]:
    """Open ``path`` for writing through ``PATH.tmp``, renamed over ``path`` only when the block ends without an error:
    a failed or killed command leaves no empty or half-written output (and an older file there stays as it was).
    ``None`` writes to the null device.

    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "out.jsonl")
    >>> try:
    ...     with atomic_write(target) as handle:
    ...         _ = handle.write("half")
    ...         raise ValueError("bad record")
    ... except ValueError:
    ...     pass
    >>> os.path.exists(target), os.path.exists(target + ".tmp")
    (False, False)
    """
    if path is None:
        with open(os.devnull, "w") as sink:
            yield sink
        return
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    try:
        with tmp.open("w") as handle:
            yield handle
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def refuse_overwriting_input(output: str | os.PathLike, *inputs: str | os.PathLike | None) -> None:
    """Raise :class:`ConfigError` when ``output`` is one of the ``inputs`` (same resolved path or same file by inode):
    opening it for writing would truncate the data before it is read."""
    out = Path(output)
    for source in inputs:
        if source is None:
            continue
        src = Path(source)
        same = out.resolve() == src.resolve()
        if not same and out.exists() and src.exists():
            same = os.path.samefile(out, src)
        if same:
            raise ConfigError(f"the output {output} is the input {source}: writing it would destroy the data; choose another output")


def _open_text_lines(path: Path) -> Iterator[tuple[int, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a BOM, as spreadsheet and Windows tools write
                raw = raw[3:]
            try:
                yield lineno, raw.decode("utf-8").rstrip("\r\n") + "\n"  # CRLF or LF
            except UnicodeDecodeError as err:
                raise DataFormatError(
                    f"{path}:{lineno}", f"undecodable bytes at byte {err.start} (expected UTF-8)"
                ) from None


def iter_records(source: str | os.PathLike, split: str = "train") -> Iterator[tuple[str, Mapping]]:
    """Yield ``(location, record)`` from a local file or a ``datasets`` name / folder.

    ``location`` is ``"path:line"`` for JSON Lines and JSON, ``"path row N"`` otherwise.
    """
    path = Path(source)
    suffixes = [s for s in path.suffixes if s != ".gz"]
    kind = suffixes[-1] if suffixes else ""
    if path.is_file() and kind == ".jsonl":
        for lineno, line in _open_text_lines(path):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFormatError(f"{path}:{lineno}", f"malformed JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(record, dict):
                raise DataFormatError(f"{path}:{lineno}", f"expected a JSON object, got {type(record).__name__}")
            yield f"{path}:{lineno}", record
    elif path.is_file() and kind == ".json":
        text = "".join(line for _, line in _open_text_lines(path))
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataFormatError(f"{path}:{err.lineno}", f"malformed JSON ({err.msg} at column {err.colno})") from None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise DataFormatError(str(path), "expected a JSON list of objects (or {'data': [...]})")
        for index, record in enumerate(data):
            if not isinstance(record, dict):
                raise DataFormatError(f"{path} item {index}", f"expected a JSON object, got {type(record).__name__}")
            yield f"{path} item {index}", record
    elif path.is_file() and kind == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as err:  # pyarrow raises several unrelated types for bad files
            raise DataFormatError(str(path), f"cannot read as parquet: {err}") from None
        for index, record in enumerate(table.to_pylist()):
            yield f"{path} row {index}", record
    elif path.is_file():
        raise DataFormatError(str(path), "unknown file type; expected .jsonl, .json or .parquet (optionally .gz)")
    else:
        yield from _iter_hub_records(str(source), split)


def _iter_hub_records(name: str, split: str) -> Iterator[tuple[str, Mapping]]:
    import datasets

    try:
        dataset = datasets.load_dataset(name, split=split)
    except Exception as err:  # datasets raises many types (network, missing split, bad config)
        raise RewardlabError(
            f"'{name}' is not a local file, and loading it with datasets.load_dataset(split="
            f"'{split}') failed: {type(err).__name__}: {err}"
        ) from None
    for index, record in enumerate(dataset):
        yield f"{name}[{split}] row {index}", record


def _messages(value: Any, location: str, field_name: str) -> tuple[Message, ...]:
    if not isinstance(value, list) or not value:
        raise DataFormatError(location, f"expected a non-empty list of messages, got {type(value).__name__}", field_name)
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping) or not isinstance(item.get("content"), str) or item.get("role") not in (
            "system", "user", "assistant"
        ):
            raise DataFormatError(
                location, f"message {i} must be {{'role': system|user|assistant, 'content': str}}", field_name
            )
        out.append(Message(item["role"], item["content"]))
    return tuple(out)


def _prompt(value: Any, location: str) -> tuple[Message, ...]:
    if isinstance(value, str):
        return prompt_messages(value, location)  # one rule for string prompts everywhere (data/transcripts.py)
    return _messages(value, location, "prompt")


def _reply(value: Any, location: str, field_name: str) -> str:
    if isinstance(value, str):
        return value
    messages = _messages(value, location, field_name)
    if len(messages) != 1 or messages[0].role != "assistant":
        raise DataFormatError(location, "expected exactly one assistant message after the prompt", field_name)
    return messages[0].content


def _common_prefix_text(a: str, b: str) -> str:
    n = len(os.path.commonprefix([a, b]))
    cut = max(a.rfind(" ", 0, n + 1), a.rfind("\n", 0, n + 1))
    return a[: cut + 1] if n < min(len(a), len(b)) else a[:n]


def to_preference_pair(record: Mapping, location: str = "") -> PreferencePair:
    """Convert one record in any accepted format to a :class:`PreferencePair`.

    >>> to_preference_pair({"prompt": "2+2?", "chosen": "4", "rejected": "5"}).chosen
    '4'
    >>> to_preference_pair({"chosen": [{"role": "user", "content": "Hi"},
    ...                                {"role": "assistant", "content": "Hello"}],
    ...                     "rejected": [{"role": "user", "content": "Hi"},
    ...                                  {"role": "assistant", "content": "Go away"}]}).rejected
    'Go away'
    """
    for name in ("chosen", "rejected"):
        if name not in record:
            raise DataFormatError(location, f"missing; {ACCEPTED_FORMATS}", name)
        if not isinstance(record[name], (str, list)):
            raise DataFormatError(
                location, f"expected a string or a list of messages, got {type(record[name]).__name__}", name
            )
    chosen, rejected = record["chosen"], record["rejected"]
    if "prompt" in record and record["prompt"] is not None:
        prompt = _prompt(record["prompt"], location)
        chosen_text, rejected_text = _reply(chosen, location, "chosen"), _reply(rejected, location, "rejected")
    elif looks_hh(chosen) and looks_hh(rejected):
        prompt, chosen_text = parse_hh_transcript(chosen, location, "chosen")
        rejected_prompt, rejected_text = parse_hh_transcript(rejected, location, "rejected")
        if rejected_prompt != prompt:
            raise PromptMismatchError(location, "chosen and rejected differ before the final Assistant turn", "rejected")
    elif isinstance(chosen, list) and isinstance(rejected, list):
        chosen_msgs, rejected_msgs = _messages(chosen, location, "chosen"), _messages(rejected, location, "rejected")
        if chosen_msgs[:-1] != rejected_msgs[:-1]:
            raise PromptMismatchError(location, "chosen and rejected conversations differ before the last message", "rejected")
        prompt = chosen_msgs[:-1]
        chosen_text = _reply([chosen_msgs[-1].as_dict()], location, "chosen")
        rejected_text = _reply([rejected_msgs[-1].as_dict()], location, "rejected")
    elif isinstance(chosen, str) and isinstance(rejected, str):
        shared = _common_prefix_text(chosen, rejected)
        prompt = (Message("user", shared.strip()),) if shared.strip() else ()
        chosen_text, rejected_text = chosen[len(shared):], rejected[len(shared):]
    else:
        raise DataFormatError(location, f"chosen and rejected must both be texts or both message lists; {ACCEPTED_FORMATS}", "rejected")
    margin = record.get("margin")
    if margin is not None:
        finite_number(margin, location, "margin")
    weight = record.get("weight")
    if weight is not None and (finite_number(weight, location, "weight") < 0):
        raise DataFormatError(location, f"expected a weight >= 0, got {weight!r}", "weight")
    tie = record.get("tie", False)
    if not isinstance(tie, bool):
        raise DataFormatError(location, f"expected true or false, got {tie!r}", "tie")
    extras = {}
    for name in ("strength", "attribute"):
        value = record.get(name)
        if value is not None and not isinstance(value, str):
            raise DataFormatError(location, f"expected a string, got {type(value).__name__}", name)
        extras[name] = value
    return PreferencePair(prompt, chosen_text, rejected_text, None if margin is None else float(margin), location, tie, **extras,
                          weight=None if weight is None else float(weight))


def iter_preference_pairs(
    source: str | os.PathLike, split: str, limit: int | None, report: DropReport
) -> Iterator[PreferencePair]:
    """Stream pairs, dropping those without signal into ``report`` (which counts every record read).

    ``limit`` caps the number of records read (before dropping), for quick runs.
    """
    for location, record in iter_records(source, split):
        if limit is not None and report.total >= limit:
            break
        report.total += 1
        if record.get("chosen") is not None and record.get("chosen") == record.get("rejected") and not record.get("tie"):
            report.add("with chosen == rejected", location=location)  # (the implicit format would see two empty replies)
            continue
        try:
            pair = to_preference_pair(record, location)
        except PromptMismatchError:
            report.add("with chosen and rejected differing before the final turn", location=location)
            continue
        if not pair.chosen.strip() or not pair.rejected.strip():
            report.add("with an empty response", location=location)
        elif pair.chosen.strip() == pair.rejected.strip() and not pair.tie:
            report.add("with chosen == rejected", location=location)
        else:
            yield pair
    if report.total == 0:
        raise DataFormatError(str(source), "contains no records")


def write_preference_pairs(pairs: Iterable[PreferencePair], path: str | os.PathLike, with_source: bool = False) -> int:
    """Write pairs as TRL explicit-prompt JSON Lines (the prompt as chat messages) with their optional fields
    (``margin``, ``weight``, ``tie``, ``strength``, ``attribute``; ``source`` when ``with_source``), so
    :func:`read_preference_pairs` reads back the same pairs. Written to a temporary file, then renamed: a kill never
    leaves half a file. Returns the number written.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "p.jsonl")
    >>> write_preference_pairs([PreferencePair((Message("user", "2+2?"),), "4", "5", margin=1.0)], path)
    1
    >>> read_preference_pairs(path)[0][0].margin
    1.0
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with tmp.open("w") as handle:
        for p in pairs:
            record: dict[str, Any] = {"prompt": [m.as_dict() for m in p.prompt], "chosen": p.chosen, "rejected": p.rejected}
            record.update({k: getattr(p, k) for k in ("margin", "weight", "strength", "attribute") if getattr(p, k) is not None})
            if p.tie:
                record["tie"] = True
            if with_source and p.source:
                record["source"] = p.source
            handle.write(json.dumps(record) + "\n")
            count += 1
    tmp.replace(path)
    return count


def read_preference_pairs(
    source: str | os.PathLike, split: str = "train", limit: int | None = None
) -> tuple[list[PreferencePair], DropReport]:
    """Read pairs, dropping those without signal; returns the pairs and a :class:`DropReport`."""
    report = DropReport()
    return list(iter_preference_pairs(source, split, limit, report)), report


def to_prompt_response(record: Mapping, location: str = "") -> tuple[tuple[Message, ...], str]:
    """A (prompt, response) to score: ``prompt`` + ``response`` (or ``completion``) fields, a
    ``messages`` conversation whose last message is the assistant reply, or the USR/Topical-Chat
    layout (``source`` dialogue history with turns separated by newlines, ``system_output``).

    >>> to_prompt_response({"messages": [{"role": "user", "content": "Hi"},
    ...                                  {"role": "assistant", "content": "Hello"}]})[1]
    'Hello'
    """
    if "system_output" in record and "source" in record:  # USR / Topical-Chat layout
        turns = [t.strip() for t in str(record["source"]).strip().split("\n") if t.strip()]
        # The last history turn is the user's; roles alternate backwards from it.
        roles: list[Role] = ["user" if (len(turns) - 1 - i) % 2 == 0 else "assistant" for i in range(len(turns))]
        prompt = tuple(Message(role, text) for role, text in zip(roles, turns))
        return prompt, _reply(record["system_output"], location, "system_output")
    if "messages" in record:
        messages = _messages(record["messages"], location, "messages")
        if messages[-1].role != "assistant":
            raise DataFormatError(location, "the last message must be the assistant reply to score", "messages")
        return messages[:-1], messages[-1].content
    key = "response" if "response" in record else "completion" if "completion" in record else None
    if key is None or "prompt" not in record:
        raise DataFormatError(
            location,
            "expected 'prompt' + 'response' (or 'completion'), 'messages', or a preference pair "
            "('chosen' + 'rejected')",
            "response" if "prompt" in record else "prompt",
        )
    return _prompt(record["prompt"], location), _reply(record[key], location, key)


def pair_sides(record: Mapping, location: str = "") -> tuple[tuple[tuple[Message, ...], str], tuple[tuple[Message, ...], str]]:
    """``((prompt, chosen), (prompt, rejected))`` for scoring; unlike training, a pair whose two
    transcripts differ before the final turn is still scored, each side with its own prompt.

    >>> (_, c), (rp, r) = pair_sides({"chosen": "\\n\\nHuman: a\\n\\nAssistant: b",
    ...                               "rejected": "\\n\\nHuman: x\\n\\nAssistant: y"})
    >>> c, rp[0].content, r
    ('b', 'x', 'y')
    """
    try:
        pair = to_preference_pair(record, location)
        return (pair.prompt, pair.chosen), (pair.prompt, pair.rejected)
    except PromptMismatchError:
        sides = []
        for name in ("chosen", "rejected"):
            value = record[name]
            if isinstance(value, str):
                sides.append(parse_hh_transcript(value, location, name))
            else:
                messages = _messages(value, location, name)
                sides.append((messages[:-1], _reply([messages[-1].as_dict()], location, name)))
        return sides[0], sides[1]


def scalar_as_text(value: Any, location: str, field_name: str) -> str:
    """A response that must be text; a JSON number or boolean is read as its JSON text (PandaLM has six responses
    stored as ``true`` where a model answered "true"), anything else is an error naming the field.

    >>> scalar_as_text(True, "f:1", "response1"), scalar_as_text("ok", "f:1", "response1")
    ('true', 'ok')
    """
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int)) or (isinstance(value, float) and math.isfinite(value)):
        return json.dumps(value)
    raise DataFormatError(location, f"expected a string, got {type(value).__name__}", field_name)


def finite_number(value: Any, location: str, field_name: str) -> float:
    """A finite number from a record (else a DataFormatError naming the location and field) (JSON's NaN / Infinity extensions are refused here, not at training step 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataFormatError(location, f"expected a number, got {type(value).__name__}", field_name)
    if not math.isfinite(value):
        raise DataFormatError(location, f"expected a finite number, got {value}", field_name)
    return float(value)


def to_scored_response(record: Mapping, location: str = "", heads: tuple[str, ...] = ("score",)) -> "ScoredResponse":
    """A :class:`ScoredResponse` from ``prompt`` + ``response`` + ``score`` (or a ``scores`` dict
    holding every name in ``heads``), or from the USR/Topical-Chat layout (``source`` dialogue
    history with turns separated by newlines, ``system_output``, ``scores``).

    >>> to_scored_response({"prompt": "Hi", "response": "Hello", "score": 4}).scores
    {'score': 4.0}
    """
    from .records import ScoredResponse

    prompt, response = to_prompt_response(record, location)
    raw = record.get("scores")
    if len(heads) == 1 and heads[0] in record and heads[0] != "scores":
        scores = {heads[0]: finite_number(record[heads[0]], location, heads[0])}
    elif isinstance(raw, Mapping):
        missing = [h for h in heads if h not in raw]
        if missing:
            raise DataFormatError(location, f"no score for {missing}; it has {sorted(raw)}: name the one to use "
                                            f"(--score-field {sorted(raw)[0] if len(raw) == 1 else 'NAME'}, e.g. "
                                            f"--score-field {'overall' if 'overall' in raw else sorted(raw)[0] if raw else 'score'})",
                                  "scores")
        scores = {h: finite_number(raw[h], location, f"scores.{h}") for h in heads}
    else:
        raise DataFormatError(location, f"missing; expected '{heads[0]}' (a number) or 'scores' (an object with {list(heads)})", heads[0])
    annotator = record.get("annotator")
    return ScoredResponse(prompt, response, scores, None if annotator is None else str(annotator), location)


def to_ranked_responses(record: Mapping, location: str = "") -> "RankedResponses":
    """A :class:`RankedResponses` from ``prompt`` + ``responses`` + ``ranks`` (1 = best) or
    ``scores`` (higher is better; equal scores give equal ranks).

    >>> to_ranked_responses({"prompt": "Hi", "responses": ["a", "b", "c"], "scores": [1, 3, 2]}).ranks
    (3, 1, 2)
    """
    from .records import RankedResponses

    if "prompt" not in record:
        raise DataFormatError(location, "missing; a ranked record has 'prompt', 'responses' and 'ranks' or 'scores'", "prompt")
    responses = record.get("responses")
    if not isinstance(responses, list) or len(responses) < 2 or not all(isinstance(r, str) for r in responses):
        raise DataFormatError(location, "expected a list of at least 2 strings", "responses")
    if "ranks" in record:
        name, values = "ranks", record["ranks"]
    elif "scores" in record:
        name, values = "scores", record["scores"]
    else:
        raise DataFormatError(location, "missing; give 'ranks' (1 = best) or 'scores' (higher is better)", "ranks")
    if not isinstance(values, list) or len(values) != len(responses):
        raise DataFormatError(location, f"expected a list of {len(responses)} numbers (one per response)", name)
    numbers = [finite_number(v, location, name) for v in values]
    if name == "scores":
        distinct = sorted(set(numbers), reverse=True)
        ranks = tuple(distinct.index(v) + 1 for v in numbers)
    else:
        ranks = tuple(int(v) for v in numbers)
    return RankedResponses(_prompt(record["prompt"], location), tuple(responses), ranks, location)
