"""The ``Scorer`` protocol (prompts and responses in, rewards out) and the local batched scorer."""

from __future__ import annotations

import json
import os
from pathlib import Path
from collections.abc import Sequence
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import torch

from .data.collate import Example, length_sorted_batches, pad_sequences
from .data.normalization import TargetNormalizer
from .data.templating import Prompt, as_messages, tokenize_conversation
from .devices import tune_cpu_memory
from .errors import ConfigError, SequenceTooLongError
from .models.io import Precision, RewardModelMetadata, load_pretrained
from .models.packing import choose_layout, pack_for
from .models.reward_model import RewardModel

__all__ = [
    "ConstrainedReward", "LocalScorer", "MIN_SHARED_PREFIX", "ProcessScorer", "SCORE_CHUNK_RECORDS", "ScoreFileResult", "Scorer", "WeightedSum",
    "load_process_reward_model", "load_reward_model", "prefix_groups", "score_file",
]


@runtime_checkable
class Scorer(Protocol):
    """Anything that scores responses: a local RM, a remote server, an ensemble, an LLM judge.

    ``score(prompts, responses)[i]`` is the reward of ``responses[i]`` to ``prompts[i]``
    (a text, or a list of chat messages); higher is better.
    """

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]: ...


@dataclass(frozen=True)
class WeightedSum:
    """Combine named rewards as ``sum_k w_k r_k`` (heads without a weight count 0).

    >>> WeightedSum({"helpful": 1.0, "safe": 0.5})({"helpful": 2.0, "safe": -2.0, "fluent": 9.0})
    1.0
    """

    weights: dict[str, float]

    def __call__(self, rewards: dict[str, float]) -> float:
        unknown = sorted(set(self.weights) - set(rewards))
        if unknown:
            raise ConfigError(f"weights name heads the model does not have: {unknown}; it has {sorted(rewards)}")
        return float(sum(w * rewards[name] for name, w in self.weights.items()))


@dataclass(frozen=True)
class ConstrainedReward:
    """The ``primary`` head's reward, or ``penalty`` when any constraint head is below its threshold.

    ``penalty`` is an absolute value (``-inf`` by default, so a violating response never wins a
    best-of-N), as in "maximize helpfulness subject to RM_safety > tau".

    >>> rule = ConstrainedReward("helpful", {"safe": 0.0})
    >>> rule({"helpful": 3.0, "safe": 0.5}), rule({"helpful": 3.0, "safe": -0.1})
    (3.0, -inf)
    """

    primary: str
    thresholds: dict[str, float]
    penalty: float = float("-inf")

    def __call__(self, rewards: dict[str, float]) -> float:
        unknown = sorted(({self.primary} | set(self.thresholds)) - set(rewards))
        if unknown:
            raise ConfigError(f"constraint names heads the model does not have: {unknown}; it has {sorted(rewards)}")
        if any(rewards[name] < tau for name, tau in self.thresholds.items()):
            return self.penalty
        return float(rewards[self.primary])


CPU_BATCH_TOKENS = 2048
"""``LocalScorer``'s token cap per batch on CPUs (``max_batch_tokens="auto"``). Measured with MiniLM on
this project's 2-core CPU (128 HH texts, 133 tokens on average): fp32 59.4 texts/s at 2,048 tokens
against 51.2 at 32 texts per batch (~4,300 tokens), 47.5 at 8,192 and 53.0 at 1,024 (bigger
batches spill the activations out of cache); bf16 85.5 against 86.2 (no loss). GPUs want big batches:
no cap there."""


def _token_cap(requested: int | Literal["auto"] | None, device: torch.device) -> int | None:
    """Tokens at which a scoring batch closes: ``"auto"`` is :data:`CPU_BATCH_TOKENS` on CPUs and no cap elsewhere.

    >>> _token_cap("auto", torch.device("cpu")), _token_cap("auto", torch.device("cuda")), _token_cap(512, torch.device("cuda"))
    (2048, None, 512)
    """
    if requested == "auto":
        return CPU_BATCH_TOKENS if device.type == "cpu" else None
    return requested


MIN_SHARED_PREFIX = 32
"""Neighbouring sequences are scored as one prefix-sharing group when they start with at least this
many identical tokens: a shorter prefix saves less than its extra attention bookkeeping costs."""


def prefix_groups(sequences: Sequence[Sequence[int]], max_size: int, min_shared: int | None = None) -> list[list[int]]:
    """Runs of neighbouring sequences whose common prefix is at least ``min_shared`` tokens (default
    :data:`MIN_SHARED_PREFIX`), at most ``max_size`` each; every other sequence is a group of one.

    For a causal model the hidden states of a prefix do not depend on what follows it, so scoring
    the prefix once for the whole group gives every sequence its plain reward.

    >>> prefix_groups([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9], [7, 7, 7]], max_size=8, min_shared=3)
    [[0, 1], [2], [3]]
    """
    need = MIN_SHARED_PREFIX if min_shared is None else min_shared
    groups: list[list[int]] = []
    shared = 0
    for i, seq in enumerate(sequences):
        if groups and len(groups[-1]) < max_size:
            first = sequences[groups[-1][0]]
            limit = min(shared, len(seq) - 1, len(first))  # every sequence keeps >= 1 own token
            common = 0
            while common < limit and seq[common] == first[common]:
                common += 1
            if common >= need:
                groups[-1].append(i)
                shared = common
                continue
        groups.append([i])
        shared = len(seq) - 1
    return groups


def _share_prefix_for(requested: bool | Literal["auto"], device: torch.device) -> bool:
    """``auto``: on CPUs, where it was measured (SmolLM2 pairs 1.3-1.5x faster); off on GPUs, not measured
    there (a shared prompt adds a segment, and the per-segment attention loop is what costs on a GPU).

    >>> _share_prefix_for("auto", torch.device("cpu")), _share_prefix_for("auto", torch.device("cuda")), _share_prefix_for(True, torch.device("cuda"))
    (True, False, True)
    """
    return device.type == "cpu" if requested == "auto" else bool(requested)


class LocalScorer:
    """A reward model in this process: batched, length-sorted, ``inference_mode``, input order kept.

    >>> import torch, transformers
    >>> from rewardlab.models.reward_model import RewardModel
    >>> config = transformers.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1,
    ...     num_attention_heads=2, intermediate_size=16, num_labels=1)
    >>> _ = torch.manual_seed(0)
    >>> model = RewardModel(transformers.BertForSequenceClassification(config))
    >>> class Tok:  # a stand-in fast tokenizer: one id per character
    ...     is_fast, chat_template, pad_token_id = True, None, 0
    ...     def __call__(self, text, **kw):
    ...         return {"input_ids": [1 + ord(c) % 29 for c in text],
    ...                 "offset_mapping": [(i, i + 1) for i in range(len(text))]}
    >>> scorer = LocalScorer(model, Tok(), max_length=64)
    >>> rewards = scorer.score(["2+2?", "2+2?"], ["4", "five"])
    >>> len(rewards), isinstance(rewards[0], float)
    (2, True)
    """

    def __init__(
        self,
        model: RewardModel,
        tokenizer: Any,
        max_length: int = 512,
        batch_size: int = 32,
        device: str | torch.device | None = None,
        metadata: RewardModelMetadata | None = None,
        normalize: bool = False,
        show_progress: bool = False,
        combine: Callable[[dict[str, float]], float] | None = None,
        original_scale: bool = False,
        layout: Literal["auto", "packed", "padded"] = "auto",
        max_batch_tokens: int | Literal["auto"] | None = "auto",
        share_prefix: bool | Literal["auto"] = "auto",
    ):
        self.model = model.eval()
        self.layout = choose_layout(layout, model.packing_unsupported_reason())
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = torch.device(device) if device else next(model.parameters()).device
        self.max_batch_tokens = _token_cap(max_batch_tokens, self.device)
        self.share_prefix = _share_prefix_for(share_prefix, self.device)
        self.model.to(self.device)
        tune_cpu_memory(self.device)  # CPU: batches of activations are reused instead of page-faulted in each call
        self.metadata = metadata or RewardModelMetadata(pooling=model.pooling, max_length=max_length)
        self.show_progress = show_progress
        if normalize and (self.metadata.reward_mean is None or not self.metadata.reward_std):
            raise ValueError("normalize=True needs reward_mean and reward_std in the model's metadata")
        self.normalize = normalize
        self.combine = combine
        stats = self.metadata.target_normalization
        if original_scale and not stats:
            raise ValueError("original_scale=True needs regression target statistics in the model's metadata")
        self.original_scale = original_scale

    @property
    def heads(self) -> list[str]:
        return list(self.metadata.heads)

    def tokenize(
        self, prompts: Sequence[Prompt], responses: Sequence[str], on_too_long: Literal["raise", "none"] = "raise"
    ) -> list[list[int] | None]:
        """Token ids per item. A response that cannot fit in ``max_length`` raises
        :class:`SequenceTooLongError` naming the items, or gives ``None`` with ``on_too_long="none"``."""
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
        ids: list[list[int] | None] = []
        too_long = []
        for i, (prompt, response) in enumerate(zip(prompts, responses)):
            tokens = tokenize_conversation(self.tokenizer, as_messages(prompt), response, self.max_length)
            if tokens is None:
                too_long.append(i)
            ids.append(tokens)
        if too_long and on_too_long == "raise":
            raise SequenceTooLongError(
                f"{len(too_long)} response(s) do not fit in max_length={self.max_length} tokens even without "
                f"their prompt (items {too_long[:10]}{'...' if len(too_long) > 10 else ''}); raise max_length"
            )
        return ids

    @torch.inference_mode()
    def score_ids(self, sequences: Sequence[Sequence[int]]) -> torch.Tensor:
        """Rewards for token-id sequences, in input order. ``(N,)`` or ``(N, K)`` float32.

        With ``share_prefix`` (decoders, packed layout), neighbouring sequences that start with the
        same ``MIN_SHARED_PREFIX`` or more tokens (a pair's chosen and rejected reply, best-of-N
        candidates) are packed as one group whose common prefix is computed once; causal attention
        makes that exact (see :func:`prefix_groups`).
        """
        from tqdm.auto import tqdm

        outputs: list[torch.Tensor | None] = [None] * len(sequences)
        sharing = self.share_prefix and self.layout == "packed" and self.model.pooling == "last_token"
        groups = prefix_groups(sequences, self.batch_size) if sharing else [[i] for i in range(len(sequences))]
        batches = [[groups[g] for g in batch] for batch in length_sorted_batches(
            [max(len(sequences[i]) for i in group) for group in groups], self.batch_size, self.max_batch_tokens,
            counts=[len(group) for group in groups], tokens=[sum(len(sequences[i]) for i in group) for group in groups])]
        for batch in tqdm(batches, desc="scoring", disable=not self.show_progress):
            idx = [i for group in batch for i in group]
            if self.layout == "packed":  # one padding-free row per batch, per-sequence attention (models/packing.py)
                examples = [Example(tuple(tuple(sequences[i]) for i in group)) for group in batch]
                ids, layout = pack_for(self.model.pooling, examples, share_prefix=sharing)
                rewards = self.model(ids.to(self.device), layout=layout.to(self.device)).float().cpu()
            else:
                input_ids, mask = pad_sequences([sequences[i] for i in idx], self.tokenizer.pad_token_id)
                rewards = self.model(input_ids.to(self.device), mask.to(self.device)).float().cpu()
            for row, i in enumerate(idx):
                outputs[i] = rewards[row]
        if not outputs:
            return torch.empty((0,) if len(self.metadata.heads) == 1 else (0, len(self.metadata.heads)))
        stacked = torch.stack(outputs)  # type: ignore[arg-type]
        if self.normalize:
            stacked = (stacked - self.metadata.reward_mean) / self.metadata.reward_std
        return stacked

    def named(self, rewards: torch.Tensor) -> list[dict[str, float]]:
        """Rows of ``score_ids`` output as ``{head: reward}``, mapped to the original target scale
        when ``original_scale`` (regression models trained with normalized targets)."""
        rows = rewards.reshape(rewards.shape[0], len(self.heads)).tolist()
        named = [dict(zip(self.heads, row)) for row in rows]
        if self.original_scale:
            normalizer = TargetNormalizer.from_json(self.metadata.target_normalization)  # type: ignore[arg-type]
            named = [{h: normalizer.to_original(h, v) for h, v in row.items()} for row in named]
        return named

    def score_named(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[dict[str, float]]:
        """Every head's reward per (prompt, response), e.g. ``{"helpfulness": 1.2, "safety": -0.3}``."""
        return self.named(self.score_ids(self.tokenize(prompts, responses)))  # type: ignore[arg-type]

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        """Reward per (prompt, response); see :class:`Scorer`. A multi-objective model needs
        ``combine`` (:class:`WeightedSum` or :class:`ConstrainedReward`) to give one number."""
        named = self.score_named(prompts, responses)
        if len(self.heads) == 1 and self.combine is None:
            return [row[self.heads[0]] for row in named]
        if self.combine is None:
            raise ConfigError(f"the model has {len(self.heads)} heads {self.heads}: pass combine=WeightedSum(...) or ConstrainedReward(...)")
        return [self.combine(row) for row in named]


def load_reward_model(
    path: str | os.PathLike,
    device: str | None = None,
    precision: Precision = "fp32",
    batch_size: int = 32,
    max_length: int | None = None,
    normalize: bool = False,
    trust_remote_code: bool = False,
    combine: Callable[[dict[str, float]], float] | None = None,
    original_scale: bool = False,
    layout: Literal["auto", "packed", "padded"] = "auto",
    max_batch_tokens: int | Literal["auto"] | None = "auto",
    share_prefix: bool | Literal["auto"] = "auto",
) -> LocalScorer:
    """Load a saved reward-model folder (rewardlab's or another tool's) as a :class:`LocalScorer`.

    ``layout='auto'`` scores padding-free packed batches when the backbone supports it (the
    rewards equal the padded pass to 1e-4 in fp32; tests/models/test_packing.py).
    """
    model, tokenizer, metadata = load_pretrained(path, precision, trust_remote_code)
    return LocalScorer(
        model, tokenizer, max_length=max_length or metadata.max_length, batch_size=batch_size,
        device=device, metadata=metadata, normalize=normalize, combine=combine, original_scale=original_scale,
        layout=layout, max_batch_tokens=max_batch_tokens, share_prefix=share_prefix,
    )


class ProcessScorer:
    """A process reward model in this process: step probabilities, and a :class:`Scorer` through aggregation.

    ``score(prompts, responses)`` splits each response into steps on the model's separator and
    aggregates the step probabilities (``min`` by default; see :mod:`rewardlab.search.aggregation`).
    """

    def __init__(self, model: Any, tokenizer: Any, metadata: RewardModelMetadata, aggregation: str = "min",
                 batch_size: int = 16, device: str | None = None):
        self.model, self.tokenizer, self.metadata = model.eval(), tokenizer, metadata
        self.separator = metadata.step_separator or "\n"
        self.aggregation, self.batch_size = aggregation, batch_size
        self.device = torch.device(device) if device else next(model.parameters()).device
        self.model.to(self.device)
        tune_cpu_memory(self.device)  # CPU: batches of activations are reused instead of page-faulted in each call

    @torch.inference_mode()
    def score_steps(self, prompts: Sequence[Prompt], steps: Sequence[Sequence[str]]) -> list[list[float]]:
        """P(step is good) for every step of every solution, in input order."""
        from .data.templating import tokenize_steps
        from .models.process_reward_model import gather_step_scores

        encoded = [tokenize_steps(self.tokenizer, as_messages(p), s, self.metadata.max_length, self.separator)
                   for p, s in zip(prompts, steps)]
        too_long = [i for i, e in enumerate(encoded) if e is None]
        if too_long:
            raise SequenceTooLongError(f"solutions {too_long[:10]} do not fit in max_length={self.metadata.max_length}")
        out: list[list[float]] = [[] for _ in encoded]
        for idx in length_sorted_batches([len(e[0]) for e in encoded], self.batch_size):  # type: ignore[index]
            ids, mask = pad_sequences([encoded[i][0] for i in idx], self.tokenizer.pad_token_id)  # type: ignore[index]
            width = max(len(encoded[i][1]) for i in idx)  # type: ignore[index]
            positions = torch.full((len(idx), width), -1, dtype=torch.long)
            for row, i in enumerate(idx):
                positions[row, : len(encoded[i][1])] = torch.tensor(encoded[i][1])  # type: ignore[index]
            logits = gather_step_scores(self.model(ids.to(self.device), mask.to(self.device)).float(), positions)
            probs = torch.softmax(logits, -1)[..., 2] if logits.dim() == 3 else torch.sigmoid(logits)
            for row, i in enumerate(idx):
                out[i] = probs[row, : len(encoded[i][1])].cpu().tolist()  # type: ignore[index]
        return out

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        from .search.aggregation import aggregate

        steps = [[s for s in r.split(self.separator) if s.strip()] or [r] for r in responses]
        return [aggregate(p, self.aggregation) for p in self.score_steps(prompts, steps)]  # type: ignore[arg-type]


def load_process_reward_model(path: str | os.PathLike, aggregation: str = "min", batch_size: int = 16,
                              device: str | None = None) -> ProcessScorer:
    """Load a PRM folder written by ``rewardlab train --objective prm`` (or any token-classification PRM)."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from .models.io import METADATA_FILE
    from .models.process_reward_model import ProcessRewardModel

    folder = Path(path)
    meta_path = folder / METADATA_FILE
    metadata = RewardModelMetadata.from_file(meta_path) if meta_path.is_file() else RewardModelMetadata(
        pooling="last_token", written_by="inferred", objective="prm", step_separator="\n")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = ProcessRewardModel(AutoModelForTokenClassification.from_pretrained(folder))
    return ProcessScorer(model, tokenizer, metadata, aggregation, batch_size, device)


SCORE_CHUNK_RECORDS = 4096
""":func:`score_file` (``rewardlab score``) reads, scores and writes this many records at a time: memory stays flat with
the file's size, each chunk's texts are still length-sorted into batches, and a killed run keeps
every finished chunk for ``--resume``."""


def _score_items(records: list[tuple[str, Any]]) -> tuple[list[str], list[Any], list[str]]:
    """``(kinds, prompts, responses)``: a preference record gives two items (chosen, rejected), any other one."""
    from .data.readers import pair_sides, to_prompt_response

    kinds: list[str] = []
    prompts: list[Any] = []
    responses: list[str] = []
    for location, record in records:
        if "chosen" in record:
            (chosen_prompt, chosen), (rejected_prompt, rejected) = pair_sides(record, location)
            prompts += [chosen_prompt, rejected_prompt]
            responses += [chosen, rejected]
            kinds.append("pair")
        else:
            prompt, response = to_prompt_response(record, location)
            prompts.append(prompt)
            responses.append(response)
            kinds.append("single")
    return kinds, prompts, responses


def _chunks(data: str, split: str, skip: int = 0) -> Any:
    """Lists of ``(location, record)``, ``SCORE_CHUNK_RECORDS`` at a time, after the first ``skip`` records."""
    from itertools import islice

    from .data.readers import iter_records

    records = islice(iter_records(data, split), skip, None)
    while chunk := list(islice(records, SCORE_CHUNK_RECORDS)):
        yield chunk


def _completed_lines(out: Path) -> int:
    """Complete lines of an earlier run's output (index 0, 1, ...), read line by line; a line cut by
    the kill (no newline) is removed from the file and scored again."""
    from .errors import DataFormatError

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


def _check_lengths(local: Any, data: str, split: str) -> int:
    """Tokenize every item once, keeping nothing, and fail before any scoring if one cannot fit; returns the record count."""
    records, too_long, first = 0, 0, None
    for chunk in _chunks(data, split):
        kinds, prompts, responses = _score_items(chunk)
        ids = iter(local.tokenize(prompts, responses, on_too_long="none"))
        for (location, _), kind in zip(chunk, kinds):
            missing = sum(seq is None for seq in [next(ids) for _ in range(2 if kind == "pair" else 1)])
            too_long += missing
            first = first or (location if missing else None)
        records += len(chunk)
    if too_long:
        raise SequenceTooLongError(
            f"{too_long} response(s) do not fit in max_length={local.max_length} even without their prompt "
            f"(first at {first}); raise max_length (--max-length), or skip_too_long (--skip-too-long) writes them with reward null"
        )
    return records


def _local_values(scorer: LocalScorer, prompts: list[Any], responses: list[str]) -> list[Any]:
    """One value per item: the reward, ``{"rewards": per head, "reward": combined}`` for several heads,
    or None for a response that cannot fit (only reached with ``skip_too_long``)."""
    ids = scorer.tokenize(prompts, responses, on_too_long="none")
    named = iter(scorer.named(scorer.score_ids([seq for seq in ids if seq is not None])))
    multi = len(scorer.heads) > 1
    values: list[Any] = []
    for seq in ids:
        if seq is None:
            values.append(None)
            continue
        row = next(named)
        combined = scorer.combine(row) if scorer.combine else (None if multi else row[scorer.heads[0]])
        values.append({"rewards": row, "reward": combined} if multi else combined)
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


def _default_identity(scorer: Any) -> dict[str, Any]:
    model = getattr(scorer, "model", None)
    params = next(model.parameters(), None) if isinstance(model, torch.nn.Module) else None
    return {"scorer": type(scorer).__name__, "max_length": getattr(scorer, "max_length", None),
            "dtype": str(params.dtype) if params is not None else None, "heads": getattr(scorer, "heads", None),
            "normalize": getattr(scorer, "normalize", None), "base_model": getattr(getattr(scorer, "metadata", None), "base_model", None)}


def score_file(
    scorer: Any, data: str | os.PathLike, output: str | os.PathLike, *, split: str = "train", resume: bool = False,
    skip_too_long: bool = False, run_identity: dict[str, Any] | None = None, show_progress: bool = True,
) -> ScoreFileResult:
    """Score every record of ``data`` into the JSON Lines file ``output``: what ``rewardlab score`` runs.

    A preference record (``chosen``/``rejected``) gives one line with ``chosen_reward`` and
    ``rejected_reward``, any other record (``{prompt, response}``, ``{messages}``) a line with
    ``reward``; every line has ``index`` (the record's position) and ``source`` (file:line).
    Several heads add ``rewards`` per head (``reward`` is then the scorer's combination, or null).
    ``scorer`` is a :class:`LocalScorer` or a DPO implicit-reward scorer.

    * A :class:`LocalScorer` first tokenizes every item, keeping nothing, and raises
      :class:`SequenceTooLongError` (count and first location) before scoring anything if a
      response cannot fit; ``skip_too_long`` writes those with reward null instead.
    * Records are read, scored and written ``SCORE_CHUNK_RECORDS`` at a time (memory does not grow
      with the file); the file is flushed after each chunk.
    * ``OUTPUT.run.json`` records the data file (path, size, mtime), the split and ``run_identity``
      (default: the scorer's type, max length, dtype, heads and base model). ``resume=True`` with an
      existing ``output`` checks them (:class:`ConfigError` naming what differs), drops a line cut
      by a kill and scores only the records after the last complete line.
    """
    from .data.token_store import source_fingerprint
    from .models.dpo import DPOScorer

    out = Path(output)
    data = str(data)
    local = not isinstance(scorer, DPOScorer)
    extra: dict[str, Any] = {}
    if not local:
        dpo = scorer.settings
        extra = {"dpo_beta": dpo.beta, "reference_free": dpo.reference_free, "length_normalized": dpo.length_normalize}
    total = None  # records, when the length check counted them
    if local and not skip_too_long:
        total = _check_lengths(scorer, data, split)  # bad input fails before hours of scoring
    identity = json.loads(json.dumps({"data": source_fingerprint(data, split), "split": split,
                                      **(run_identity if run_identity is not None else _default_identity(scorer))}, default=str))
    out.parent.mkdir(parents=True, exist_ok=True)
    run_file = out.with_name(out.name + ".run.json")
    done = 0
    if resume and out.exists():
        if not run_file.is_file():
            raise ConfigError(f"cannot resume {out}: {run_file} (what the earlier run scored with) is missing; score without resuming")
        earlier = json.loads(run_file.read_text())
        changed = sorted(k for k in {*earlier, *identity} if earlier.get(k) != identity.get(k))
        if changed:
            raise ConfigError(f"cannot resume {out}: the earlier run differs in {', '.join(changed)} ({changed[0]} was "
                              f"{earlier.get(changed[0])!r}, now {identity.get(changed[0])!r}); score without resuming")
        done = _completed_lines(out)
    else:
        out.write_text("")
        run_file.write_text(json.dumps(identity, indent=1))
    chunk_bars = getattr(scorer, "show_progress", None)
    if local:
        scorer.show_progress = False  # one bar over records below instead of one per chunk
    try:
        written, nulls, first_null = _write_scores(scorer, local, extra, data, split, out, done, total, show_progress)
    finally:
        if local:
            scorer.show_progress = chunk_bars
    return ScoreFileResult(out, written, done, nulls, first_null)


def _write_scores(scorer: Any, local: bool, extra: dict[str, Any], data: str, split: str, out: Path, done: int,
                  total: int | None, show_progress: bool) -> tuple[int, int, str | None]:
    """Append the lines of every record after the first ``done``; ``(lines in the file, nulls, first null's location)``."""
    from tqdm.auto import tqdm

    written, nulls, first_null = done, 0, None
    with out.open("a") as handle, tqdm(total=total, initial=done, unit="records", desc="scoring", disable=not show_progress) as bar:
        for chunk in _chunks(data, split, skip=done):
            kinds, prompts, responses = _score_items(chunk)
            values = _local_values(scorer, prompts, responses) if local else list(scorer.score(prompts, responses))
            position = 0
            for (location, _), kind in zip(chunk, kinds):
                line: dict[str, Any] = {"index": written, "source": location}
                for side, offset in ((("chosen", 0), ("rejected", 1)) if kind == "pair" else (("", 0),)):
                    value = values[position + offset]
                    prefix = f"{side}_" if side else ""
                    if value is None:
                        nulls += 1
                        first_null = first_null or location
                    if isinstance(value, dict):
                        line[f"{prefix}rewards"], line[f"{prefix}reward"] = value["rewards"], value["reward"]
                    else:
                        line[f"{prefix}reward"] = value
                position += 2 if kind == "pair" else 1
                handle.write(json.dumps({**line, **extra}) + "\n")
                written += 1
            handle.flush()  # a finished chunk survives a kill; resume goes on after it
            bar.update(len(chunk))
    return written, nulls, first_null
