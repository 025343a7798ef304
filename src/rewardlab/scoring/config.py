"""``ScorerConfig``: every option of a scorer, frozen and validated; ``build_scorer`` turns it into a :class:`Scorer`.

The CLI's scoring flags are generated from these fields (``rewardlab score/eval/diagnose/bon/...``),
``load_reward_model`` takes the same options, and the server and distributed workers build their
scorers from one of these.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace

import numpy as np
from pathlib import Path
from typing import Any, Literal

from ..config import validate_fields
from ..errors import ConfigError
from .aggregation import Aggregation
from .protocol import Scorer

__all__ = ["IN_PROCESS_OPTIONS", "ScorerConfig", "ScorerKind", "build_scorer", "resolve_kind"]

ScorerKind = Literal["auto", "reward", "process", "dpo", "judge", "remote"]

_COMMON = {"model", "kind", "show_progress", "ensemble", "ensemble_aggregate", "ensemble_lambda", "ensemble_scale",
           "ensemble_reference", "length_penalty", "length_penalty_mode", "length_debias", "length_unit", "length_reference"}
IN_PROCESS_OPTIONS = {"device", "precision", "batch_size", "max_length", "trust_remote_code"}
_OWNED = {
    "reward": IN_PROCESS_OPTIONS | {"random_head", "layout", "max_batch_tokens", "share_prefix", "normalize", "original_scale", "weights", "primary",
                             "thresholds", "penalty"},
    "process": IN_PROCESS_OPTIONS | {"random_head", "aggregation"},
    "dpo": IN_PROCESS_OPTIONS | {"reference", "reference_free", "beta", "length_normalize"},
    "judge": {"device", "base_url", "api_key_env", "judge_template", "judge_cache", "max_calls"},
    "remote": {"batch_size", "api_key_env", "contract"},
}
_BATCH_SIZES = {"reward": 32, "process": 16, "dpo": 8, "remote": 256}


@dataclass(frozen=True)
class ScorerConfig:
    """How to build a scorer: the model, where and how it runs, and how its outputs become one reward.

    An option that belongs to another kind of scorer than the one built (e.g. ``aggregation`` for a
    sequence-classification RM) is an error, not silently ignored.

    >>> ScorerConfig(model="runs/rm", batch_size=0)
    Traceback (most recent call last):
    ...
    rewardlab.errors.ConfigError: option 'batch_size' must be >= 1, got 0
    """

    model: str
    """Model folder (a rewardlab or any HF sequence-classification RM, a token-classification PRM, or a DPO policy with
    'reference'), a Hub name, or builtin:minilm / builtin:smollm2."""
    kind: ScorerKind = "auto"
    """'reward' (sequence classification), 'process' (PRM), 'dpo' (implicit reward of a policy); 'auto': 'dpo' when
    'reference' or 'reference_free' is set, 'judge' (an LLM judge's 1-10 score) when 'base_url' is set, 'remote' for an
    http(s):// model (a reward server), 'process' for a PRM folder (rewardlab.json objective prm, or a
    token-classification config), else 'reward'."""
    device: str | None = None
    """e.g. cpu, cuda, cuda:1 (default: where the model loads, the CPU)."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Weights dtype for scoring."""
    batch_size: int | None = None
    """Items per forward pass (default: 32 reward, 16 process, 8 DPO)."""
    max_length: int | None = None
    """Token budget per item; prompts are cut from the left, a reply that cannot fit is an error (default: the model's
    training max_length; 1024 for DPO policies, which record none)."""
    trust_remote_code: bool = False
    """Allow model code from the model's folder/Hub repo (only when you trust it)."""
    random_head: bool = False
    """Reward models and PRMs: score a folder whose head has no trained weights (a plain backbone) with a randomly
    initialized head instead of refusing it (smoke tests, random baselines; the scores change on every load)."""
    show_progress: bool = False
    """A progress bar per scoring call (score_file shows its own bar over records)."""
    layout: Literal["auto", "packed", "padded"] = "auto"
    """Reward models: 'packed' scores padding-free batches with per-sequence attention ('auto': when the backbone supports it)."""
    max_batch_tokens: int | Literal["auto", "none"] = "auto"
    """Reward models: also close a batch at this many tokens; 'auto': 2048 on CPU, no cap on GPU; 'none': no cap."""
    share_prefix: bool | Literal["auto"] = "auto"
    """Reward models (decoders): score neighbouring items that start alike (a pair's replies, best-of-N candidates) with
    their common prefix computed once, exactly ('auto': on CPU, off on GPU, where it is not measured)."""
    normalize: bool = False
    """Reward models: z-normalize rewards with the reward_mean/reward_std saved at training time."""
    original_scale: bool = False
    """Reward models (regression heads): map rewards back to the original score scale."""
    weights: dict[str, float] | None = None
    """Multi-objective reward models: one reward as a weighted sum of heads, e.g. {"helpfulness": 1, "safety": 0.5}."""
    primary: str | None = None
    """Multi-objective reward models: the head to maximize subject to 'thresholds'."""
    thresholds: dict[str, float] | None = None
    """Multi-objective reward models: constraint heads and their minimum rewards, e.g. {"safety": 0.0}."""
    penalty: float = float("-inf")
    """Multi-objective reward models: the reward when a constraint fails."""
    aggregation: Aggregation = "min"
    """Process reward models: how step probabilities become one solution score (min, product, last, mean, geometric_mean)."""
    reference: str | None = None
    """DPO implicit reward: the reference model ('model' is the policy)."""
    reference_free: bool = False
    """DPO implicit reward with log pi_ref = 0."""
    beta: float = 0.1
    """DPO implicit reward: r = beta * (log pi - log pi_ref)."""
    length_normalize: bool = False
    """DPO implicit reward: mean instead of sum of the response's token log-probs."""
    base_url: str | None = None
    """LLM judge: an OpenAI-compatible endpoint (e.g. http://localhost:8000/v1) serving 'model'; unset: the judge model
    runs locally with transformers."""
    api_key_env: str = "OPENAI_API_KEY"
    """LLM judge: the environment variable holding the endpoint's API key (never logged)."""
    judge_template: str = "pointwise"
    """LLM judge: the pointwise prompt template (a built-in name or a file); the judge's 1-10 score is the reward."""
    judge_cache: str | None = None
    """LLM judge: an SQLite file caching every call (a rerun asks nothing twice); unset: no cache."""
    max_calls: int | None = None
    """LLM judge: stop with an error after this many backend calls (a budget)."""
    ensemble: str | None = None
    """Comma-separated further models: score with the ensemble of 'model' and these (each built with the options above)."""
    ensemble_aggregate: Literal["mean", "min", "mean_minus_std", "uncertainty_weighted"] = "mean"
    """Ensembles: mean, min (worst case), mean - lambda*std, or mean - lambda*var (uncertainty-weighted); docs/control.md."""
    ensemble_lambda: float = 1.0
    """Ensembles: lambda of mean_minus_std and uncertainty_weighted."""
    ensemble_scale: Literal["saved", "reference", "none"] = "saved"
    """Ensembles: put members on one scale with their saved reward mean/std ('saved'), by z-scores on
    'ensemble_reference' ('reference'), or not at all."""
    ensemble_reference: str | None = None
    """Ensembles with scale 'reference': a file of {prompt, response} (or pair) records to z-score members on."""
    length_penalty: float | None = None
    """Subtract alpha * length (absolute) or alpha * z-scored length (normalized) from every reward."""
    length_penalty_mode: Literal["absolute", "normalized"] = "absolute"
    """Length penalty on the raw length, or on the length z-scored with 'length_reference' statistics."""
    length_debias: bool = False
    """Remove the reward's linear length component, fitted on 'length_reference' (docs/control.md)."""
    length_unit: Literal["words", "chars"] = "words"
    """How length is counted for length_penalty and length_debias."""
    length_reference: str | None = None
    """A file of {prompt, response} (or pair) records: length statistics for normalized penalties and the debias fit."""
    contract: Literal["rewardlab", "openrlhf"] = "rewardlab"
    """Remote scorers (model = http://host:port): 'rewardlab' (rewardlab serve's /v1/score) or 'openrlhf' (any
    server with OpenRLHF's /get_reward; text prompts only)."""

    def __post_init__(self) -> None:
        validate_fields(self)
        for name in ("batch_size", "max_length"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"option '{name}' must be >= 1, got {value}")
        if isinstance(self.max_batch_tokens, int) and self.max_batch_tokens < 1:
            raise ConfigError(f"option 'max_batch_tokens' must be >= 1, 'auto' or 'none', got {self.max_batch_tokens}")
        if self.weights is not None and self.primary is not None:
            raise ConfigError("options 'weights' and 'primary' are two ways to combine heads: give one")
        if self.thresholds is not None and self.primary is None:
            raise ConfigError("option 'thresholds' needs 'primary' (the head to maximize under the constraints)")
        if self.beta <= 0:
            raise ConfigError(f"option 'beta' must be > 0, got {self.beta}")
        if self.ensemble_scale == "reference" and self.ensemble is not None and self.ensemble_reference is None:
            raise ConfigError("option 'ensemble_scale' reference needs 'ensemble_reference' (a file to z-score members on)")
        if (self.length_debias or self.length_penalty_mode == "normalized" and self.length_penalty is not None) \
                and self.length_reference is None:
            raise ConfigError("length_debias and a normalized length_penalty need 'length_reference' (a file of responses)")
        if self.length_debias and self.length_penalty is not None:
            raise ConfigError("options 'length_debias' and 'length_penalty' are two length controls: give one")

    def set_options(self) -> set[str]:
        """Names of the options that differ from their defaults."""
        return {f.name for f in fields(self) if f.name != "model" and getattr(self, f.name) != f.default}


def resolve_kind(config: ScorerConfig) -> Literal["reward", "process", "dpo", "judge", "remote"]:
    """The kind of scorer ``config`` builds (``kind='auto'`` looks at the options and the model folder).

    >>> resolve_kind(ScorerConfig(model="policy", reference="ref")), resolve_kind(ScorerConfig(model="no/such-folder"))
    ('dpo', 'reward')
    """
    if config.kind != "auto":
        return config.kind
    if config.reference is not None or config.reference_free:
        return "dpo"
    if config.base_url is not None:
        return "judge"
    if config.model.startswith(("http://", "https://")):
        return "remote"
    folder = Path(config.model)
    meta, hf_config = folder / "rewardlab.json", folder / "config.json"
    if meta.is_file() and json.loads(meta.read_text()).get("objective") in ("prm", "prm_3class"):
        return "process"
    if not meta.is_file() and hf_config.is_file():
        architectures = json.loads(hf_config.read_text()).get("architectures") or []
        if any(a.endswith("ForTokenClassification") for a in architectures):
            return "process"
    return "reward"


def _check_owned(config: ScorerConfig, kind: str) -> None:
    foreign = sorted(name for name in config.set_options() - _COMMON - _OWNED[kind])
    if foreign:
        owners = {name: next(k for k, names in _OWNED.items() if name in names) for name in foreign}
        detail = ", ".join(f"'{name}' ({owners[name]} scorers)" for name in foreign)
        raise ConfigError(f"{config.model} is scored as a {kind} model, which does not use option(s) {detail}")


def _reference(path: str | None, option: str) -> tuple[list[Any], list[str]]:
    """The reference set an option names (ScorerConfig's checks require it where it is read)."""
    from .files import read_reference

    if path is None:
        raise ConfigError(f"option '{option}' is required here")
    return read_reference(path)


def build_scorer(config: ScorerConfig) -> Scorer:
    """The :class:`Scorer` that ``config`` describes: a local RM, PRM, DPO policy, judge or remote server, as an
    ensemble with 'ensemble', and wrapped by a length penalty or debias when asked."""
    scorer: Scorer
    if config.ensemble is not None:
        from .ensemble import EnsembleScorer

        models = [config.model, *[m.strip() for m in config.ensemble.split(",") if m.strip()]]
        saved = config.ensemble_scale == "saved"
        configs = [replace(config, model=m, ensemble=None, normalize=saved or config.normalize) for m in models]
        if saved and any(resolve_kind(c) != "reward" for c in configs):
            raise ConfigError("ensemble_scale 'saved' needs reward-model members (their saved reward mean/std); "
                              "use ensemble_scale 'reference' with ensemble_reference")
        members: list[Any] = [_build_one(c) for c in configs]
        scorer = EnsembleScorer(members, config.ensemble_aggregate, config.ensemble_lambda, config.ensemble_scale, names=models)
        if config.ensemble_scale == "reference":
            scorer.fit_scale(*_reference(config.ensemble_reference, "ensemble_reference"))
    elif (Path(config.model) / "ensemble.json").is_file():  # rewardlab train --ensemble K --ensemble-kind seeds
        from .ensemble import EnsembleScorer

        listed = json.loads((Path(config.model) / "ensemble.json").read_text())
        paths = [str(Path(config.model) / m) for m in listed["members"]]
        if listed.get("kind") == "lora":  # one base model in memory, an adapter per member
            from .ensemble import load_lora_ensemble

            members = load_lora_ensemble(config.model, listed, config)
        else:
            members = [_build_one(replace(config, model=p, normalize=config.ensemble_scale == "saved" or config.normalize))
                       for p in paths]
        scorer = EnsembleScorer(members, config.ensemble_aggregate, config.ensemble_lambda,
                                "none" if config.ensemble_scale == "saved" else config.ensemble_scale, names=listed["members"])
        if config.ensemble_scale == "reference":
            scorer.fit_scale(*_reference(config.ensemble_reference, "ensemble_reference"))
    else:
        scorer = _build_one(config)
        scorer = _as_head_ensemble(scorer, config)
    if config.length_penalty is not None:
        from .length import LengthPenalty

        scorer = LengthPenalty(scorer, config.length_penalty, config.length_penalty_mode, config.length_unit)
        if config.length_penalty_mode == "normalized":
            scorer.fit(_reference(config.length_reference, "length_reference")[1])
    elif config.length_debias:
        from .length import LengthDebiased

        scorer = LengthDebiased(scorer, config.length_unit).fit(*_reference(config.length_reference, "length_reference"))
    return scorer


def _as_head_ensemble(scorer: Scorer, config: ScorerConfig) -> Scorer:
    """A bootstrap-heads model (``rewardlab train --ensemble K``) is scored as an ensemble of its heads, each put on
    its saved eval-reward scale (``ensemble_scale`` 'saved') or taken as is ('none')."""
    from .local import LocalScorer

    if not isinstance(scorer, LocalScorer) or scorer.metadata.ensemble != "heads":
        return scorer
    from .ensemble import EnsembleScorer

    if config.ensemble_scale == "reference":
        raise ConfigError("a bootstrap-heads ensemble uses its saved head scales ('saved') or none; 'reference' needs --ensemble")
    ensemble = EnsembleScorer(heads_of=scorer, aggregate=config.ensemble_aggregate, lam=config.ensemble_lambda,
                              scale=config.ensemble_scale)
    stats = scorer.metadata.head_reward_stats or {}
    if config.ensemble_scale == "saved" and stats:
        ensemble.offsets = np.array([stats[h][0] for h in scorer.heads])
        ensemble.scales = np.array([stats[h][1] or 1.0 for h in scorer.heads])
    return ensemble


def _build_one(config: ScorerConfig) -> Scorer:
    """One scorer of the configured kind (no ensemble, no length wrapper)."""
    kind = resolve_kind(config)
    _check_owned(config, kind)
    if kind == "judge":
        return _build_judge(config)
    batch_size = config.batch_size or _BATCH_SIZES[kind]
    if kind == "remote":
        from .remote import RemoteScorer

        key_env = config.api_key_env if "api_key_env" in config.set_options() else None
        return RemoteScorer(config.model, config.contract, chunk_size=batch_size, api_key_env=key_env)
    if kind == "dpo":
        from .dpo import DPOSettings, load_dpo_scorer

        settings = DPOSettings(config.beta, config.reference_free, config.length_normalize)
        return load_dpo_scorer(config.model, config.reference, settings, config.precision, config.max_length,
                               batch_size, config.device, config.trust_remote_code, show_progress=config.show_progress)
    if kind == "process":
        from .process import load_process_reward_model

        return load_process_reward_model(config.model, config.aggregation, batch_size, config.device, config.precision,
                                         config.max_length, config.trust_remote_code, config.show_progress,
                                         config.random_head)
    from .combine import ConstrainedReward, WeightedSum
    from .local import load_reward_model

    combine: Any = None
    if config.weights is not None:
        combine = WeightedSum(config.weights)
    elif config.primary is not None:
        combine = ConstrainedReward(config.primary, config.thresholds or {}, config.penalty)
    return load_reward_model(
        config.model, device=config.device, precision=config.precision, batch_size=batch_size, max_length=config.max_length,
        normalize=config.normalize, trust_remote_code=config.trust_remote_code, combine=combine,
        original_scale=config.original_scale, layout=config.layout,
        max_batch_tokens=None if config.max_batch_tokens == "none" else config.max_batch_tokens,
        share_prefix=config.share_prefix, show_progress=config.show_progress, random_head=config.random_head)


def _build_judge(config: ScorerConfig) -> Scorer:
    from ..judges.cache import CachedClient
    from ..judges.clients import LocalHFClient, OpenAIChatClient
    from ..judges.judge import PointwiseJudge

    client: Any
    if config.base_url is not None:
        client = OpenAIChatClient(config.base_url, config.model, config.api_key_env)
    else:
        client = LocalHFClient(config.model, device=config.device)
    if config.judge_cache is not None or config.max_calls is not None:
        if config.judge_cache is None:
            raise ConfigError("option 'max_calls' counts calls in the judge's cache: give 'judge_cache' too")
        client = CachedClient(client, config.judge_cache, config.max_calls)
    return PointwiseJudge(client, config.judge_template, model_id=config.model)

