"""A process reward model in this process: per-step probabilities, and one reward per solution through aggregation."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..data.collate import pad_sequences
from ..data.templating import Prompt, as_messages, tokenize_steps
from ..devices import tune_cpu_memory
from ..models.io import RewardModelMetadata
from .aggregation import Aggregation, aggregate
from .config import ProcessConfig
from .engine import encode_all, raise_if_too_long, run_batches

__all__ = ["ProcessScorer", "load_process_reward_model", "split_steps"]


def split_steps(response: str, separator: str) -> list[str]:
    """A solution's steps: the non-blank pieces between separators (the whole text when there are none).

    >>> split_steps("a\\n\\nb\\n", "\\n"), split_steps("   ", "\\n")
    (['a', 'b'], ['   '])
    """
    return [s for s in response.split(separator) if s.strip()] or [response]


class ProcessScorer:
    """A process reward model in this process: step probabilities, and a :class:`Scorer` through aggregation.

    ``score(prompts, responses)`` splits each response into steps on the model's separator and
    aggregates the step probabilities (``min`` by default; see :mod:`rewardlab.scoring.aggregation`).
    ``max_length`` defaults to the model's training max length.
    """

    def __init__(self, model: Any, tokenizer: Any, metadata: RewardModelMetadata, config: ProcessConfig):
        self.config = config
        self.model, self.tokenizer, self.metadata = model.eval(), tokenizer, metadata
        self.separator = metadata.step_separator or "\n"
        self.aggregation, self.batch_size = config.aggregation, config.batch_size
        self.max_length = config.max_length or metadata.max_length
        self.device = torch.device(config.device) if config.device else next(model.parameters()).device
        self.model.to(self.device)
        self.source, self.show_progress = config.model, config.show_progress
        self._last: list[Any] = [None, None]  # (inputs, step scores) of the last call, shared with with_aggregation views
        tune_cpu_memory(self.device)  # CPU: batches of activations are reused instead of page-faulted in each call

    @classmethod
    def load(cls, config: ProcessConfig) -> ProcessScorer:
        """The PRM folder ``config.model`` (written by ``rewardlab train --objective prm``, or any token-classification
        PRM); one without trained head weights is refused unless ``config.random_head``."""
        from dataclasses import replace

        from transformers import AutoModelForTokenClassification, AutoTokenizer

        from ..models.io import _DTYPES, METADATA_FILE, check_trained_weights, usable_max_length
        from ..models.process_reward_model import ProcessRewardModel

        folder = Path(config.model)
        meta_path = folder / METADATA_FILE
        metadata = RewardModelMetadata.from_file(meta_path) if meta_path.is_file() else RewardModelMetadata(
            pooling="last_token", written_by="inferred", objective="prm", step_separator="\n")
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=config.trust_remote_code)
        hf_model, info = AutoModelForTokenClassification.from_pretrained(
            folder, dtype=_DTYPES[config.precision], trust_remote_code=config.trust_remote_code, output_loading_info=True)
        check_trained_weights(config.model, list(info.get("missing_keys", ())), config.random_head, "process reward model")
        limit = usable_max_length(hf_model.config, config.max_length, metadata.max_length)
        return cls(ProcessRewardModel(hf_model), tokenizer, metadata, replace(config, max_length=limit))

    def with_aggregation(self, aggregation: Aggregation) -> ProcessScorer:
        """The same model under another aggregation; scoring the same inputs again reuses the step probabilities.

        (``rewardlab bon-curve`` compares ``min`` and ``product`` at the cost of one pass.)
        """
        import copy

        view = copy.copy(self)
        view.aggregation = aggregation
        return view

    def describe(self) -> dict[str, Any]:
        from .local import model_fingerprint

        dtype = str(next(self.model.parameters()).dtype).replace("torch.", "")
        return {"kind": "process", "model": self.source or self.metadata.base_model, "record": {"aggregation": self.aggregation},
                "settings": {"weights": model_fingerprint(self.source), "max_length": self.max_length, "dtype": dtype,
                             "aggregation": self.aggregation, "separator": self.separator, "base_model": self.metadata.base_model}}

    def _encode(self, prompt: Prompt, steps: Sequence[str]) -> tuple[list[int], list[int]] | None:
        return tokenize_steps(self.tokenizer, as_messages(prompt), steps, self.max_length, self.separator)

    def too_long(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[int]:
        steps = [split_steps(r, self.separator) for r in responses]
        return [i for i, e in enumerate(encode_all(self._encode, prompts, steps)) if e is None]

    @torch.inference_mode()
    def score_steps(self, prompts: Sequence[Prompt], steps: Sequence[Sequence[str]]) -> list[list[float]]:
        """P(step is good) for every step of every solution, in input order."""
        from ..models.process_reward_model import gather_step_scores

        key = (repr(list(prompts)), repr([list(s) for s in steps]))
        if self._last[0] == key:
            return [list(row) for row in self._last[1]]
        encoded = raise_if_too_long(encode_all(self._encode, prompts, steps), self.max_length)

        def forward(idx: list[int]) -> list[list[float]]:
            ids, mask = pad_sequences([encoded[i][0] for i in idx], self.tokenizer.pad_token_id)
            width = max(len(encoded[i][1]) for i in idx)
            positions = torch.full((len(idx), width), -1, dtype=torch.long)
            for row, i in enumerate(idx):
                positions[row, : len(encoded[i][1])] = torch.tensor(encoded[i][1])
            logits = gather_step_scores(self.model(ids.to(self.device), mask.to(self.device)).float(), positions)
            probs = torch.softmax(logits, -1)[..., 2] if logits.dim() == 3 else torch.sigmoid(logits)
            return [probs[row, : len(encoded[i][1])].cpu().tolist() for row, i in enumerate(idx)]

        scores = run_batches([len(e[0]) for e in encoded], forward, self.batch_size,
                             show_progress=self.show_progress, desc="scoring steps")
        self._last[:] = [key, scores]
        return [list(row) for row in scores]

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        steps = [split_steps(r, self.separator) for r in responses]
        return [aggregate(p, self.aggregation) for p in self.score_steps(prompts, steps)]


def load_process_reward_model(path: str | os.PathLike, **options: Any) -> ProcessScorer:
    """``ProcessScorer.load(ProcessConfig(model=path, **options))``: a PRM folder with any of
    :class:`~rewardlab.scoring.config.ProcessConfig`'s options (``aggregation``, ``batch_size``, ...)."""
    return ProcessScorer.load(ProcessConfig(model=str(path), **options))
