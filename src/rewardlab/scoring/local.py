"""A reward model in this process: packed or padded batches, prefix sharing, heads and their combination."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from ..data.collate import Example, common_prefix_length, pad_sequences
from ..data.normalization import TargetNormalizer
from ..data.templating import Prompt, as_messages, tokenize_conversation
from ..devices import tune_cpu_memory
from ..errors import ConfigError
from ..models.io import RewardModelMetadata, load_pretrained
from ..models.packing import choose_layout, pack_for
from ..models.reward_model import RewardModel
from .config import RewardModelConfig
from .engine import encode_all, raise_if_too_long, run_batches

__all__ = ["CPU_BATCH_TOKENS", "LocalScorer", "MIN_SHARED_PREFIX", "load_reward_model", "model_fingerprint", "prefix_groups",
           "shared_prefix_order"]


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
    the prefix once for the whole group gives every sequence its plain reward. A group of ``k``
    with shared prefix ``s`` packs ``sum(len) - (k - 1) s`` tokens, so a sequence that shares only
    ``c < s`` tokens with it joins only when that packs fewer tokens than starting a new group:
    ``k c > (k - 1) s``. (Two prompts with a long system prompt in common do not pull a pair's
    shared prompt down to the system prompt.)

    >>> prefix_groups([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9], [7, 7, 7]], max_size=8, min_shared=3)
    [[0, 1], [2], [3]]
    >>> pair = [list(range(10)) + [10], list(range(10)) + [11]]  # 10 tokens in common
    >>> prefix_groups(pair + [[0, 1, 2, 99]], max_size=8, min_shared=2)  # 3 in common with the pair: 2 x 3 < 10
    [[0, 1], [2]]
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
            size = len(groups[-1])
            if common >= need and size * common > (size - 1) * shared:
                groups[-1].append(i)
                shared = common
                continue
        groups.append([i])
        shared = len(seq) - 1
    return groups


def shared_prefix_order(sequences: Sequence[Sequence[int]]) -> list[int]:
    """Indices of ``sequences`` in lexicographic order of their tokens, so that sequences with a common prefix are
    neighbours whatever order they came in (a reward server's batch interleaves the samples of many prompts).

    >>> shared_prefix_order([[5, 1], [3, 9], [5, 0, 2], [3, 8]])
    [3, 1, 2, 0]
    """
    return sorted(range(len(sequences)), key=lambda i: tuple(sequences[i]))


def _share_prefix_for(requested: bool | Literal["auto"], device: torch.device) -> bool:
    """``auto``: on CPUs, where it was measured (SmolLM2 pairs 1.3-1.5x faster); off on GPUs, not measured
    there (a shared prompt adds a segment, and the per-segment attention loop is what costs on a GPU).

    >>> _share_prefix_for("auto", torch.device("cpu")), _share_prefix_for("auto", torch.device("cuda")), _share_prefix_for(True, torch.device("cuda"))
    (True, False, True)
    """
    return device.type == "cpu" if requested == "auto" else bool(requested)


def model_fingerprint(source: str | os.PathLike | None) -> Any:
    """What identifies a model folder's weights (path, size, mtime of the safetensors file); the name otherwise.

    >>> model_fingerprint("org/some-hub-model")
    {'name': 'org/some-hub-model', 'split': ''}
    """
    from ..data.token_store import source_fingerprint

    if source is None:
        return None
    folder = Path(source)
    weights = next((folder / n for n in ("model.safetensors", "model.safetensors.index.json") if (folder / n).is_file()), folder)
    return source_fingerprint(str(weights), "")


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
    >>> scorer = LocalScorer(model, Tok(), RewardModelConfig(model="in-memory", max_length=64))
    >>> rewards = scorer.score(["2+2?", "2+2?"], ["4", "five"])
    >>> len(rewards), isinstance(rewards[0], float), scorer.describe()["kind"]
    (2, True, 'local')
    """

    def __init__(self, model: RewardModel, tokenizer: Any, config: RewardModelConfig,
                 metadata: RewardModelMetadata | None = None):
        """``config.model`` names the weights in ``describe()``; ``config.max_length`` unset: the metadata's (512
        without metadata). ``metadata`` (default: what ``model`` says about itself) holds the heads and statistics."""
        self.config = config
        self.model = model.eval()
        self.layout = choose_layout(config.layout, model.packing_unsupported_reason())
        self.tokenizer = tokenizer
        self.max_length = config.max_length or (metadata.max_length if metadata is not None else 512)
        self.batch_size = config.batch_size
        self.device = torch.device(config.device) if config.device else next(model.parameters()).device
        self.max_batch_tokens = _token_cap(None if config.max_batch_tokens == "none" else config.max_batch_tokens, self.device)
        self.share_prefix = _share_prefix_for(config.share_prefix, self.device)
        self.model.to(self.device)
        tune_cpu_memory(self.device)  # CPU: batches of activations are reused instead of page-faulted in each call
        self.metadata = metadata or RewardModelMetadata(pooling=model.pooling, max_length=self.max_length)
        self.show_progress = config.show_progress
        self.source = config.model
        if config.normalize and (self.metadata.reward_mean is None or not self.metadata.reward_std):
            raise ConfigError(f"normalize=True (also what ensemble_scale 'saved' does) needs reward_mean and reward_std in the "
                              f"model's metadata ({self.source} has none); use ensemble_scale 'reference'")
        self.normalize = config.normalize
        self.combine: Callable[[dict[str, float]], float] | None = config.combine
        if config.original_scale and not self.metadata.target_normalization:
            raise ConfigError("original_scale=True needs regression target statistics in the model's metadata")
        self.original_scale = config.original_scale

    @classmethod
    def load(cls, config: RewardModelConfig) -> LocalScorer:
        """The reward-model folder (rewardlab's or another tool's) or Hub name ``config.model``, loaded as ``config``
        says. ``layout='auto'`` scores padding-free packed batches when the backbone supports it (the rewards equal
        the padded pass to 1e-4 in fp32; tests/models/test_packing.py)."""
        from dataclasses import replace

        from ..models.io import usable_max_length

        model, tokenizer, metadata = load_pretrained(config.model, config.precision, config.trust_remote_code,
                                                     config.random_head)
        limit = usable_max_length(model.hf_model.config, config.max_length, metadata.max_length)
        return cls(model, tokenizer, replace(config, max_length=limit), metadata)

    @property
    def heads(self) -> list[str]:
        return list(self.metadata.heads)

    @property
    def shares_prefixes(self) -> bool:
        """Whether sequences with a common prefix compute it once (``share_prefix`` on a decoder in packed layout)."""
        return self.share_prefix and self.layout == "packed" and self.model.pooling == "last_token"

    def describe(self) -> dict[str, Any]:
        """See :class:`~rewardlab.scoring.protocol.Scorer`: the weights' fingerprint and every setting rewards depend on."""
        dtype = str(next(self.model.parameters()).dtype).replace("torch.", "")
        combine = None if self.combine is None else {"rule": type(self.combine).__name__, **_fields(self.combine)}
        return {"kind": "local", "model": self.source or self.metadata.base_model, "record": {},
                "settings": {"weights": model_fingerprint(self.source), "max_length": self.max_length, "dtype": dtype,
                             "heads": self.heads, "normalize": self.normalize, "original_scale": self.original_scale,
                             "combine": combine, "pooling": self.metadata.pooling, "template": self.metadata.template,
                             "base_model": self.metadata.base_model}}

    def _encode(self, prompt: Prompt, response: str) -> list[int] | None:
        return tokenize_conversation(self.tokenizer, as_messages(prompt), response, self.max_length)

    def tokenize(
        self, prompts: Sequence[Prompt], responses: Sequence[str], on_too_long: Literal["raise", "none"] = "raise"
    ) -> list[list[int] | None]:
        """Token ids per item. A response that cannot fit in ``max_length`` raises
        :class:`SequenceTooLongError` naming the items, or gives ``None`` with ``on_too_long="none"``."""
        if on_too_long == "raise":
            return list(self._ids(prompts, responses))
        return encode_all(self._encode, prompts, responses)

    def _ids(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[list[int]]:
        return raise_if_too_long(encode_all(self._encode, prompts, responses), self.max_length)

    def encode_text(self, text: str) -> list[int] | None:
        """Token ids of a conversation already rendered to text (the chat template's BOS is in the text; plain
        models get their own special tokens), or None when it exceeds ``max_length`` (never truncated)."""
        ids = self.tokenizer(text, add_special_tokens=not getattr(self.tokenizer, "chat_template", None))["input_ids"]
        return list(ids) if 0 < len(ids) <= self.max_length else None

    def too_long_texts(self, texts: Sequence[str]) -> list[int]:
        """Indices of rendered texts that do not fit in ``max_length`` (or are empty)."""
        return [i for i, t in enumerate(texts) if self.encode_text(t) is None]

    def score_texts(self, texts: Sequence[str]) -> list[float]:
        """Rewards of rendered conversations (see :class:`~rewardlab.scoring.protocol.TextScorer`); one head or ``combine``."""
        ids = raise_if_too_long([self.encode_text(t) for t in texts], self.max_length)
        self._check_one_reward()
        return [self._one(row) for row in self.named(self.score_ids(ids))]

    def too_long(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[int]:
        """Indices of responses that cannot fit in ``max_length`` (see :class:`~rewardlab.scoring.protocol.LengthChecked`)."""
        return [i for i, ids in enumerate(self.tokenize(prompts, responses, on_too_long="none")) if ids is None]

    @torch.inference_mode()
    def score_ids(self, sequences: Sequence[Sequence[int]]) -> torch.Tensor:
        """Rewards for token-id sequences, in input order. ``(N,)`` or ``(N, K)`` float32.

        With ``share_prefix`` (decoders, packed layout), sequences that start with the same
        ``MIN_SHARED_PREFIX`` or more tokens (a pair's chosen and rejected reply, best-of-N
        candidates, a prompt's samples from many server requests), wherever they are in the input, are
        packed as one group whose common prefix is computed once; causal attention makes that exact
        (see :func:`prefix_groups`). The token cap per batch counts the tokens packed.

        Identical sequences are scored once and share the result, so identical inputs tie exactly in
        every layout (in one packed row, two copies at different offsets can differ in the last bits).
        """
        unique: dict[tuple[int, ...], int] = {}
        slots = [unique.setdefault(tuple(seq), len(unique)) for seq in sequences]
        if len(unique) < len(sequences):
            return self.score_ids([list(seq) for seq in unique])[torch.tensor(slots, dtype=torch.long)]
        sharing = self.shares_prefixes
        if sharing:
            order = shared_prefix_order(sequences)
            groups = [[order[j] for j in g] for g in prefix_groups([sequences[i] for i in order], self.batch_size)]
        else:
            groups = [[i] for i in range(len(sequences))]

        def forward(batch: list[int]) -> list[torch.Tensor]:
            members = [groups[g] for g in batch]
            if self.layout == "packed":  # one padding-free row per batch, per-sequence attention (models/packing.py)
                examples = [Example(tuple(tuple(sequences[i]) for i in group)) for group in members]
                ids, layout = pack_for(self.model.pooling, examples, share_prefix=sharing)
                rewards = self.model(ids.to(self.device), layout=layout.to(self.device)).float().cpu()
            else:
                input_ids, mask = pad_sequences([sequences[i] for group in members for i in group], self.tokenizer.pad_token_id)
                rewards = self.model(input_ids.to(self.device), mask.to(self.device)).float().cpu()
            rows = iter(rewards)
            return [torch.stack([next(rows) for _ in group]) for group in members]

        per_group = run_batches(
            [max(len(sequences[i]) for i in group) for group in groups], forward, self.batch_size, self.max_batch_tokens,
            counts=[len(group) for group in groups], tokens=[_packed_tokens([sequences[i] for i in group]) for group in groups],
            show_progress=self.show_progress)
        if not sequences:
            return torch.empty((0,) if len(self.metadata.heads) == 1 else (0, len(self.metadata.heads)))
        outputs: list[torch.Tensor] = [torch.empty(0)] * len(sequences)
        for group, rewards in zip(groups, per_group):
            for i, reward in zip(group, rewards):
                outputs[i] = reward
        stacked = torch.stack(outputs)
        if self.normalize:  # only set when the metadata has both (checked in __init__)
            stacked = (stacked - float(self.metadata.reward_mean or 0.0)) / float(self.metadata.reward_std or 1.0)
        return stacked

    @torch.inference_mode()
    def embed(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> torch.Tensor:
        """The features the reward head reads, ``(N, H)`` float32, in input order: the input of the model's ``score``
        or ``classifier`` module (the last attended token's hidden state for decoders, the pooled ``[CLS]`` for
        encoders; a head that reads the whole sequence gives its first position). What the latent-space
        monitor (:mod:`rewardlab.monitor.latent`) compares against the reference policy's replies."""
        head = getattr(self.model.hf_model, "score", None) or getattr(self.model.hf_model, "classifier", None)
        if head is None:
            raise ConfigError(f"cannot find the reward head ('score' or 'classifier') of {type(self.model.hf_model).__name__}")
        captured: list[torch.Tensor] = []

        def keep(module: Any, inputs: tuple[torch.Tensor, ...]) -> None:
            x = inputs[0]
            captured.append((x[:, 0] if x.dim() == 3 else x).float().cpu())

        ids = self._ids(prompts, responses)
        handle = head.register_forward_pre_hook(keep)
        try:
            rows: list[torch.Tensor] = []
            for start in range(0, len(ids), self.batch_size):
                input_ids, mask = pad_sequences(ids[start:start + self.batch_size], self.tokenizer.pad_token_id)
                captured.clear()
                self.model(input_ids.to(self.device), mask.to(self.device))
                rows.append(captured[-1])
        finally:
            handle.remove()
        return torch.cat(rows) if rows else torch.empty(0, 0)

    def named(self, rewards: torch.Tensor) -> list[dict[str, float]]:
        """Rows of ``score_ids`` output as ``{head: reward}``, mapped to the original target scale
        when ``original_scale`` (regression models trained with normalized targets)."""
        rows = rewards.reshape(rewards.shape[0], len(self.heads)).tolist()
        named = [dict(zip(self.heads, row)) for row in rows]
        if self.original_scale:
            normalizer = TargetNormalizer.from_json(self.metadata.target_normalization or {})  # set: checked in __init__
            named = [{h: normalizer.to_original(h, v) for h, v in row.items()} for row in named]
        return named

    def score_named(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[dict[str, float]]:
        """Every head's reward per (prompt, response), e.g. ``{"helpfulness": 1.2, "safety": -0.3}``."""
        return self.named(self.score_ids(self._ids(prompts, responses)))

    def combined(self, row: dict[str, float]) -> float | None:
        """One reward from a row of head rewards: the only head, ``combine(row)``, or None (several heads, no rule)."""
        if self.combine is not None:
            return self.combine(row)
        return row[self.heads[0]] if len(self.heads) == 1 else None

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        """Reward per (prompt, response); see :class:`Scorer`. A multi-objective model needs
        ``combine`` (:class:`WeightedSum` or :class:`ConstrainedReward`) to give one number."""
        self._check_one_reward()
        return [self._one(row) for row in self.score_named(prompts, responses)]

    def _check_one_reward(self) -> None:
        if len(self.heads) > 1 and self.combine is None:
            raise ConfigError(f"the model has {len(self.heads)} heads {self.heads}: pass combine=WeightedSum(...) or ConstrainedReward(...)")

    def _one(self, row: dict[str, float]) -> float:
        value = self.combined(row)
        if value is None:  # not reached after _check_one_reward (one head, or a combine rule); narrows the type
            raise ConfigError(f"no single reward from the heads {row}")
        return value


def _packed_tokens(group: Sequence[Sequence[int]]) -> int:
    """Tokens a prefix-sharing group packs: its common prefix once, then each sequence's own tokens."""
    if len(group) == 1:
        return len(group[0])
    return sum(len(s) for s in group) - (len(group) - 1) * common_prefix_length(group)


def _fields(rule: Any) -> dict[str, Any]:
    from dataclasses import asdict, is_dataclass

    return {k: (str(v) if isinstance(v, float) and v in (float("inf"), float("-inf")) else v)
            for k, v in asdict(rule).items()} if is_dataclass(rule) and not isinstance(rule, type) else {"repr": repr(rule)}


def load_reward_model(path: str | os.PathLike, **options: Any) -> LocalScorer:
    """``LocalScorer.load(RewardModelConfig(model=path, **options))``: a saved reward-model folder with any of
    :class:`~rewardlab.scoring.config.RewardModelConfig`'s options (``batch_size``, ``normalize``, ``combine``, ...)."""
    return LocalScorer.load(RewardModelConfig(model=str(path), **options))
