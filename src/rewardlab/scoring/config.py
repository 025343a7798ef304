"""Scorer configurations: one small frozen config per kind of scorer and per wrapper; :func:`build_scorer` builds any.

A :data:`ScorerConfig` is one of

==========================  ==========================================================================
``RewardModelConfig``       a sequence-classification reward model in this process (:class:`LocalScorer`);
                            its ``combine`` rule (:class:`WeightedSum`, :class:`ConstrainedReward`) weighs heads
``ProcessConfig``           a process reward model (:class:`ProcessScorer`)
``DPOConfig``               the implicit reward of a DPO policy (:class:`DPOScorer`)
``JudgeConfig``             an LLM judge's 1-10 score (:class:`~rewardlab.judges.judge.PointwiseJudge`)
``RemoteConfig``            a reward server (:class:`RemoteScorer`)
``EnsembleConfig``          several configs as one (:class:`EnsembleScorer`, an :class:`EnsembleRule`)
``SavedEnsembleConfig``     a folder ``rewardlab train --ensemble K`` wrote (seed or LoRA members)
``HeadEnsembleConfig``      a bootstrap-heads model (``rewardlab train --ensemble K``, kind heads)
``LengthPenaltyConfig``     any config with ``alpha * length`` subtracted (:class:`LengthPenalty`)
``LengthDebiasConfig``      any config with its linear length component removed (:class:`LengthDebiased`)
==========================  ==========================================================================

Each config checks its own fields when it is made, and an option of another kind cannot be given: the class has no
such field. :func:`scorer_config` maps the flat options of the CLI's scoring flags (``batch_size``, ``aggregation``,
``ensemble``, ``length_penalty``, ...) to one of these: it resolves the kind (``auto`` looks at the options and the
model folder) and names the kinds that own an option the resolved kind does not have. The CLI's flags are generated
from these classes (:func:`scorer_options`); the scorers' ``describe()`` records (what ``rewardlab score --resume``
checks) are the same as before the configs were split (tests/scoring/test_config.py holds them).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

from ..config import validate_fields
from ..errors import ConfigError
from .aggregation import Aggregation
from .combine import ConstrainedReward, WeightedSum

if TYPE_CHECKING:
    from .protocol import Scorer

__all__ = ["DPOConfig", "ENSEMBLE_FILE", "EnsembleAggregate", "EnsembleConfig", "EnsembleRule", "HeadEnsembleConfig", "InProcessConfig",
           "JudgeConfig", "KIND_CONFIGS", "LengthDebiasConfig", "LengthPenaltyConfig", "MODEL_HELP", "ProcessConfig",
           "RemoteConfig", "RewardModelConfig", "SavedEnsembleConfig", "ScorerConfig", "ScorerKind", "build_scorer",
           "resolve_kind", "scorer_config", "scorer_options"]

ScorerKind = Literal["reward", "process", "dpo", "judge", "remote"]
EnsembleAggregate = Literal["mean", "min", "mean_minus_std", "uncertainty_weighted"]
Precision = Literal["fp32", "bf16", "fp16"]

ENSEMBLE_FILE = "ensemble.json"
"""The listing of an ensemble folder's members (``training/ensemble.py`` writes it under the same name)."""

MODEL_HELP = ("Model folder (a rewardlab or any HF sequence-classification RM, a token-classification PRM, or a DPO policy "
              "with 'reference'), a Hub name, builtin:minilm / builtin:smollm2, or http(s)://host:port (a reward server).")


def _positive(config: Any, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if value is not None and value < 1:
            raise ConfigError(f"option '{name}' must be >= 1, got {value}")


@dataclass(frozen=True)
class InProcessConfig:
    """What every scorer that runs a model in this process is given: the model, and where and how it runs."""

    model: str
    """Model folder, Hub name, or builtin:minilm / builtin:smollm2."""
    device: str | None = None
    """e.g. cpu, cuda, cuda:1 (default: where the model loads, the CPU)."""
    precision: Precision = "fp32"
    """Weights dtype for scoring."""
    batch_size: int = 32
    """Items per forward pass."""
    max_length: int | None = None
    """Token budget per item; prompts are cut from the left, a reply that cannot fit is an error (default: the model's
    training max_length; 1024 for DPO policies, which record none)."""
    trust_remote_code: bool = False
    """Allow model code from the model's folder/Hub repo (only when you trust it)."""
    show_progress: bool = False
    """A progress bar per scoring call (score_file shows its own bar over records)."""

    def __post_init__(self) -> None:
        validate_fields(self)
        _positive(self, "batch_size", "max_length")


@dataclass(frozen=True)
class RewardModelConfig(InProcessConfig):
    """A sequence-classification reward model (rewardlab's or any HF one) scored in this process.

    >>> RewardModelConfig(model="runs/rm", batch_size=0)
    Traceback (most recent call last):
    ...
    rewardlab.errors.ConfigError: option 'batch_size' must be >= 1, got 0
    """

    random_head: bool = False
    """Score a folder whose head has no trained weights (a plain backbone) with a randomly initialized head instead of
    refusing it (smoke tests, random baselines; the scores change on every load)."""
    layout: Literal["auto", "packed", "padded"] = "auto"
    """'packed' scores padding-free batches with per-sequence attention ('auto': when the backbone supports it)."""
    max_batch_tokens: int | Literal["auto", "none"] = "auto"
    """Also close a batch at this many tokens; 'auto': 2048 on CPU, no cap on GPU; 'none': no cap."""
    share_prefix: bool | Literal["auto"] = "auto"
    """Decoders: score neighbouring items that start alike (a pair's replies, best-of-N candidates) with their common
    prefix computed once, exactly ('auto': on CPU, off on GPU, where it is not measured)."""
    normalize: bool = False
    """z-normalize rewards with the reward_mean/reward_std saved at training time."""
    original_scale: bool = False
    """Regression heads: map rewards back to the original score scale."""
    combine: WeightedSum | ConstrainedReward | None = None
    """Multi-objective models: the rule that makes one reward of the heads (flags --weights, or --primary with
    --thresholds and --penalty)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.max_batch_tokens, int) and self.max_batch_tokens < 1:
            raise ConfigError(f"option 'max_batch_tokens' must be >= 1, 'auto' or 'none', got {self.max_batch_tokens}")

    def build(self) -> Scorer:
        from .local import LocalScorer

        return LocalScorer.load(self)


@dataclass(frozen=True)
class ProcessConfig(InProcessConfig):
    """A process reward model (``rewardlab train --objective prm`` or any token-classification PRM)."""

    batch_size: int = 16
    """Items per forward pass."""
    random_head: bool = False
    """Score a folder whose head has no trained weights with a randomly initialized head instead of refusing it."""
    aggregation: Aggregation = "min"
    """How step probabilities become one solution score (min, product, last, mean, geometric_mean)."""

    def build(self) -> Scorer:
        from .process import ProcessScorer

        return ProcessScorer.load(self)


@dataclass(frozen=True)
class DPOConfig(InProcessConfig):
    """The implicit reward ``r = beta * (log pi(y|x) - log pi_ref(y|x))`` of a DPO policy ('model') (Rafailov et al.
    2023, eq. 5), as reward-bench's DPO mode scores it.

    >>> DPOConfig(model="policy")
    Traceback (most recent call last):
    ...
    rewardlab.errors.ConfigError: a DPO implicit reward needs 'reference' (the reference model) or 'reference_free'
    """

    batch_size: int = 8
    """Items per forward pass."""
    reference: str | None = None
    """The reference model ('model' is the policy)."""
    reference_free: bool = False
    """log pi_ref = 0 (no reference model)."""
    beta: float = 0.1
    """r = beta * (log pi - log pi_ref)."""
    length_normalize: bool = False
    """Mean instead of sum of the response's token log-probs."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta <= 0:
            raise ConfigError(f"option 'beta' must be > 0, got {self.beta}")
        if self.reference is None and not self.reference_free:
            raise ConfigError("a DPO implicit reward needs 'reference' (the reference model) or 'reference_free'")

    def build(self) -> Scorer:
        from .dpo import DPOScorer

        return DPOScorer.load(self)


@dataclass(frozen=True)
class JudgeConfig:
    """An LLM judge's 1-10 score of each reply as its reward (pointwise template)."""

    model: str
    """The judge model: its name at 'base_url', or a local causal LM folder / Hub name."""
    device: str | None = None
    """Local judges: e.g. cpu, cuda."""
    base_url: str | None = None
    """An OpenAI-compatible endpoint (e.g. http://localhost:8000/v1) serving 'model'; unset: the judge model runs
    locally with transformers."""
    api_key_env: str = "OPENAI_API_KEY"
    """The environment variable holding the endpoint's API key (never logged)."""
    judge_template: str = "pointwise"
    """The pointwise prompt template (a built-in name or a file); the judge's 1-10 score is the reward."""
    judge_cache: str | None = None
    """An SQLite file caching every call (a rerun asks nothing twice); unset: no cache."""
    max_calls: int | None = None
    """Stop with an error after this many backend calls (a budget; counted in 'judge_cache')."""

    def __post_init__(self) -> None:
        validate_fields(self)
        _positive(self, "max_calls")
        if self.max_calls is not None and self.judge_cache is None:
            raise ConfigError("option 'max_calls' counts calls in the judge's cache: give 'judge_cache' too")

    def build(self) -> Scorer:
        from ..judges.cache import CachedClient
        from ..judges.clients import LocalHFClient, OpenAIChatClient
        from ..judges.judge import PointwiseJudge

        client: Any
        if self.base_url is not None:
            client = OpenAIChatClient(self.base_url, self.model, self.api_key_env)
        else:
            client = LocalHFClient(self.model, device=self.device)
        if self.judge_cache is not None:
            client = CachedClient(client, self.judge_cache, self.max_calls)
        return PointwiseJudge(client, self.judge_template, model_id=self.model)


@dataclass(frozen=True)
class RemoteConfig:
    """A reward server at 'model' (http://host:port): ``rewardlab serve`` or any server with OpenRLHF's /get_reward."""

    model: str
    """The server's URL."""
    contract: Literal["rewardlab", "openrlhf"] = "rewardlab"
    """'rewardlab' (rewardlab serve's /v1/score) or 'openrlhf' (any server with OpenRLHF's /get_reward; text prompts
    only)."""
    batch_size: int = 256
    """Items per request (a larger call goes as several requests, in order)."""
    api_key_env: str | None = None
    """The environment variable holding the server's API key, sent as a bearer token (unset: none sent)."""
    timeout: float = 60.0
    """Seconds per request."""
    max_retries: int = 5
    """429/5xx and connection errors are retried this many times with exponential backoff and jitter."""
    backoff_seconds: float = 0.5
    """The first retry's wait (doubling, at most 'max_backoff_seconds'; a server's Retry-After wins)."""
    max_backoff_seconds: float = 30.0
    """The longest wait between retries."""

    def __post_init__(self) -> None:
        validate_fields(self)
        _positive(self, "batch_size")
        if not self.model.startswith(("http://", "https://")):
            raise ConfigError(f"a remote scorer's model is the server's http(s):// URL, got {self.model!r}")
        if self.timeout <= 0 or self.max_retries < 0 or self.backoff_seconds < 0 or self.max_backoff_seconds < 0:
            raise ConfigError("timeout must be > 0 and max_retries, backoff_seconds and max_backoff_seconds >= 0")

    def build(self) -> Scorer:
        from .remote import RemoteScorer

        return RemoteScorer(self)


@dataclass(frozen=True)
class EnsembleRule:
    """How an ensemble's member rewards become one reward (docs/control.md)."""

    aggregate: EnsembleAggregate = field(default="mean", metadata={"flag": "ensemble-aggregate"})
    """mean, min (worst case), mean - lambda*std, or mean - lambda*var (uncertainty-weighted)."""
    lam: float = field(default=1.0, metadata={"flag": "ensemble-lambda"})
    """lambda of mean_minus_std and uncertainty_weighted."""
    scale: Literal["saved", "reference", "none"] = field(default="saved", metadata={"flag": "ensemble-scale"})
    """Put members on one scale with their saved reward mean/std ('saved'), by z-scores on 'reference' ('reference'),
    or not at all."""
    reference: str | None = field(default=None, metadata={"flag": "ensemble-reference"})
    """Scale 'reference': a file of {prompt, response} (or pair) records to z-score members on."""

    def __post_init__(self) -> None:
        validate_fields(self)
        if self.lam < 0:
            raise ConfigError(f"ensemble lambda must be >= 0, got {self.lam}")
        if self.scale == "reference" and self.reference is None:
            raise ConfigError("option 'ensemble_scale' reference needs 'ensemble_reference' (a file to z-score members on)")

    def fit(self, scorer: Any) -> Any:
        """``scorer`` (an :class:`EnsembleScorer`) z-scored on the reference set when the scale is 'reference'."""
        if self.scale == "reference":
            scorer.fit_scale(*_reference(self.reference, "ensemble_reference"))
        return scorer


@dataclass(frozen=True)
class EnsembleConfig:
    """Several scorers as one; with scale 'saved' every member is a reward model z-normalized with its saved reward
    mean/std (``normalize``)."""

    members: tuple[ScorerConfig, ...]
    rule: EnsembleRule = EnsembleRule()
    names: tuple[str, ...] | None = None
    """One name per member (default: each member's model)."""

    def __post_init__(self) -> None:
        if len(self.members) < 2:
            raise ConfigError(f"an ensemble needs at least 2 members, got {len(self.members)}")
        if self.rule.scale == "saved" and not all(isinstance(m, RewardModelConfig) for m in self.members):
            raise ConfigError("ensemble_scale 'saved' needs reward-model members (their saved reward mean/std); "
                              "use ensemble_scale 'reference' with ensemble_reference")
        if self.names is not None and len(self.names) != len(self.members):
            raise ConfigError(f"an ensemble of {len(self.members)} members got {len(self.names)} names")

    @property
    def model(self) -> str:
        return self.members[0].model

    def build(self) -> Scorer:
        from .ensemble import EnsembleScorer

        members = [replace(m, normalize=True).build() if isinstance(m, RewardModelConfig) and self.rule.scale == "saved"
                   else m.build() for m in self.members]
        names = self.names or tuple(m.model for m in self.members)
        return self.rule.fit(EnsembleScorer(members, self.rule, names=names))


@dataclass(frozen=True)
class SavedEnsembleConfig:
    """The ensemble folder ``rewardlab train --ensemble K --ensemble-kind seeds|lora`` wrote (its ensemble.json lists
    the members); every member loads with 'member''s options, LoRA members over one base model in memory."""

    member: RewardModelConfig
    """The options of every member; its model is the ensemble folder."""
    rule: EnsembleRule = EnsembleRule()

    @property
    def model(self) -> str:
        return self.member.model

    def build(self) -> Scorer:
        from .ensemble import EnsembleScorer, load_lora_ensemble

        folder = Path(self.member.model)
        listed = json.loads((folder / ENSEMBLE_FILE).read_text())
        members: list[Any]
        if listed.get("kind") == "lora":  # one base model in memory, an adapter per member
            members = load_lora_ensemble(self.member, listed)
        else:
            normalize = self.rule.scale == "saved" or self.member.normalize
            members = [replace(self.member, model=str(folder / m), normalize=normalize).build() for m in listed["members"]]
        rule = replace(self.rule, scale="none") if self.rule.scale == "saved" else self.rule  # members are normalized
        return rule.fit(EnsembleScorer(members, rule, names=listed["members"]))


@dataclass(frozen=True)
class HeadEnsembleConfig:
    """A bootstrap-heads model (``rewardlab train --ensemble K``, one backbone, K heads) scored as the ensemble of its
    heads, each on its saved eval-reward scale (scale 'saved') or as is ('none')."""

    base: RewardModelConfig
    rule: EnsembleRule = EnsembleRule()

    def __post_init__(self) -> None:
        if self.rule.scale == "reference":
            raise ConfigError("a bootstrap-heads ensemble uses its saved head scales ('saved') or none; 'reference' needs --ensemble")

    @property
    def model(self) -> str:
        return self.base.model

    def build(self) -> Scorer:
        import numpy as np

        from .ensemble import EnsembleScorer
        from .local import LocalScorer

        scorer = LocalScorer.load(self.base)
        ensemble = EnsembleScorer(heads_of=scorer, rule=self.rule)
        stats = scorer.metadata.head_reward_stats or {}
        if self.rule.scale == "saved" and stats:
            ensemble.offsets = np.array([stats[h][0] for h in scorer.heads])
            ensemble.scales = np.array([stats[h][1] or 1.0 for h in scorer.heads])
        return ensemble


@dataclass(frozen=True)
class LengthPenaltyConfig:
    """``r - alpha * len`` (absolute) or ``r - alpha * (len - mean) / std`` (normalized, statistics of 'reference')."""

    scorer: ScorerConfig
    alpha: float = field(metadata={"flag": "length-penalty"})
    """Subtract alpha * length (absolute) or alpha * z-scored length (normalized) from every reward."""
    mode: Literal["absolute", "normalized"] = field(default="absolute", metadata={"flag": "length-penalty-mode"})
    """The penalty on the raw length, or on the length z-scored with 'length_reference' statistics."""
    unit: Literal["words", "chars"] = field(default="words", metadata={"flag": "length-unit"})
    """How length is counted for length_penalty and length_debias."""
    reference: str | None = field(default=None, metadata={"flag": "length-reference"})
    """A file of {prompt, response} (or pair) records: length statistics for normalized penalties and the debias fit."""

    def __post_init__(self) -> None:
        validate_fields(self)
        if self.mode == "normalized" and self.reference is None:
            raise ConfigError("length_debias and a normalized length_penalty need 'length_reference' (a file of responses)")

    @property
    def model(self) -> str:
        return self.scorer.model

    def build(self) -> Scorer:
        from .length import LengthPenalty

        scorer = LengthPenalty(self.scorer.build(), self.alpha, self.mode, self.unit)
        if self.mode == "normalized":
            scorer.fit(_reference(self.reference, "length_reference")[1])
        return scorer


@dataclass(frozen=True)
class LengthDebiasConfig:
    """The scorer's reward minus its least-squares length slope (fitted on 'reference') times the centred length."""

    scorer: ScorerConfig
    reference: str = field(metadata={"flag": "length-reference"})
    """A file of {prompt, response} (or pair) records: length statistics for normalized penalties and the debias fit."""
    unit: Literal["words", "chars"] = field(default="words", metadata={"flag": "length-unit"})
    """How length is counted for length_penalty and length_debias."""

    def __post_init__(self) -> None:
        validate_fields(self)

    @property
    def model(self) -> str:
        return self.scorer.model

    def build(self) -> Scorer:
        from .length import LengthDebiased

        return LengthDebiased(self.scorer.build(), self.unit).fit(*_reference(self.reference, "length_reference"))


ScorerConfig = Union[RewardModelConfig, ProcessConfig, DPOConfig, JudgeConfig, RemoteConfig, EnsembleConfig,
                     SavedEnsembleConfig, HeadEnsembleConfig, LengthPenaltyConfig, LengthDebiasConfig]
"""Any scorer configuration; :func:`build_scorer` builds it."""

KIND_CONFIGS: dict[str, type] = {"reward": RewardModelConfig, "process": ProcessConfig, "dpo": DPOConfig,
                                 "judge": JudgeConfig, "remote": RemoteConfig}
"""The config of each kind of scorer (``--kind``)."""


def build_scorer(config: ScorerConfig) -> Scorer:
    """The :class:`Scorer` that ``config`` describes (each config builds its own scorer).

    >>> build_scorer(RemoteConfig(model="http://127.0.0.1:8000")).describe()["kind"]
    'remote'
    """
    return config.build()


def _reference(path: str | None, option: str) -> tuple[list[Any], list[str]]:
    """The reference set an option names (the configs require it where it is read)."""
    from .files import read_reference

    if path is None:
        raise ConfigError(f"option '{option}' is required here")
    return read_reference(path)


# ---- flat options (the CLI's scoring flags) -> a config ------------------------------------------------------------

_COMBINE_OPTIONS = ("weights", "primary", "thresholds", "penalty")
_WRAPPERS = (EnsembleRule, LengthPenaltyConfig, LengthDebiasConfig)
_SELECTORS = {"ensemble": "ensemble", "length_debias": "length control"}
"""Options that choose a wrapper rather than fill a field: --ensemble (further models) and --length-debias."""


def wrapper_option(f: dataclasses.Field) -> str:
    """The flat option (and flag, with dashes) of a wrapper config's field: its metadata 'flag', else its name."""
    return str(f.metadata.get("flag", f.name)).replace("-", "_")


@functools.cache
def scorer_options() -> dict[str, tuple[str, ...]]:
    """Every flat scoring option and who reads it: kinds ('reward', 'process', ...) or wrappers ('ensemble', 'length
    control'). What :func:`scorer_config` accepts and the CLI's scoring flags (``model`` and ``kind`` aside)."""
    owners: dict[str, list[str]] = {}
    for kind, cls in KIND_CONFIGS.items():
        for f in fields(cls):
            if f.name == "combine":
                for name in _COMBINE_OPTIONS:
                    owners.setdefault(name, []).append(kind)
            elif f.name != "model":
                owners.setdefault(f.name, []).append(kind)
    for cls in _WRAPPERS:
        for f in fields(cls):
            if f.name != "scorer":
                who = "ensemble" if cls is EnsembleRule else "length control"
                owners.setdefault(wrapper_option(f), [])
                if who not in owners[wrapper_option(f)]:
                    owners[wrapper_option(f)].append(who)
    for name, who in _SELECTORS.items():
        owners[name] = [who]
    return {name: tuple(who) for name, who in owners.items()}


def resolve_kind(model: str, options: dict[str, Any] | None = None) -> ScorerKind:
    """The kind of scorer ``model`` with ``options`` is: 'dpo' when 'reference' or 'reference_free' is set, 'judge' when
    'base_url' is, 'remote' for an http(s):// model, 'process' for a PRM folder (rewardlab.json objective prm, or a
    token-classification config), else 'reward'.

    >>> resolve_kind("policy", {"reference": "ref"}), resolve_kind("no/such-folder"), resolve_kind("http://h:8000")
    ('dpo', 'reward', 'remote')
    """
    options = options or {}
    if options.get("reference") is not None or options.get("reference_free"):
        return "dpo"
    if options.get("base_url") is not None:
        return "judge"
    if model.startswith(("http://", "https://")):
        return "remote"
    meta, hf_config = Path(model) / "rewardlab.json", Path(model) / "config.json"
    if meta.is_file() and json.loads(meta.read_text()).get("objective") in ("prm", "prm_3class"):
        return "process"
    if not meta.is_file() and hf_config.is_file():
        architectures = json.loads(hf_config.read_text()).get("architectures") or []
        if any(a.endswith("ForTokenClassification") for a in architectures):
            return "process"
    return "reward"


def _kind_config(model: str, kind: str, options: dict[str, Any]) -> Any:
    """The ``kind`` config of ``model`` with ``options``; an option that config has no field for is an error naming
    the kinds that have one. ``show_progress`` is a display preference: kinds without a bar leave it out."""
    cls = KIND_CONFIGS[kind]
    own = {f.name for f in fields(cls)} | (set(_COMBINE_OPTIONS) if kind == "reward" else set())
    values = {k: v for k, v in options.items() if not (k == "show_progress" and k not in own)}
    foreign = sorted(set(values) - own)
    if foreign:
        owners = scorer_options()
        detail = ", ".join(f"'{name}' ({', '.join(owners[name])} scorers)" for name in foreign)
        raise ConfigError(f"{model} is scored as a {kind} model, which does not use option(s) {detail}")
    if kind == "reward":
        values["combine"] = _combine(values.pop("weights", None), values.pop("primary", None),
                                     values.pop("thresholds", None), values.pop("penalty", None))
    return cls(model=model, **values)


def _combine(weights: dict[str, float] | None, primary: str | None, thresholds: dict[str, float] | None,
             penalty: float | None) -> WeightedSum | ConstrainedReward | None:
    if weights is not None and primary is not None:
        raise ConfigError("options 'weights' and 'primary' are two ways to combine heads: give one")
    if primary is None and (thresholds is not None or penalty is not None):
        raise ConfigError("options 'thresholds' and 'penalty' need 'primary' (the head to maximize under the constraints)")
    if weights is not None:
        return WeightedSum(weights)
    if primary is not None:
        return ConstrainedReward(primary, thresholds or {}, float("-inf") if penalty is None else penalty)
    return None


def _take(options: dict[str, Any], cls: type) -> dict[str, Any]:
    """Remove the flat options of wrapper ``cls``'s fields from ``options``, as ``cls``'s keyword arguments."""
    return {f.name: options.pop(wrapper_option(f)) for f in fields(cls) if wrapper_option(f) in options}


def scorer_config(model: str, kind: ScorerKind | Literal["auto"] = "auto", **options: Any) -> ScorerConfig:
    """The config that ``model`` and the flat ``options`` (the names of the CLI's scoring flags) describe.

    * ``kind='auto'`` resolves the kind with :func:`resolve_kind`; an option of another kind is an error.
    * ``ensemble='a,b'``: the ensemble of ``model``, a and b, each with the same options; an ensemble folder
      (ensemble.json) or a bootstrap-heads model (rewardlab.json ``ensemble: heads``) is an ensemble by itself;
      ``ensemble_*`` options without one are an error.
    * ``length_penalty`` / ``length_debias`` wrap the result; ``length_*`` options without one are an error.

    >>> scorer_config("http://127.0.0.1:8000", batch_size=64)
    RemoteConfig(model='http://127.0.0.1:8000', contract='rewardlab', batch_size=64, api_key_env=None, timeout=60.0, max_retries=5, backoff_seconds=0.5, max_backoff_seconds=30.0)
    >>> scorer_config("runs/rm", aggregation="product")
    Traceback (most recent call last):
    ...
    rewardlab.errors.ConfigError: runs/rm is scored as a reward model, which does not use option(s) 'aggregation' (process scorers)
    """
    options = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(options) - set(scorer_options()))
    if unknown:
        raise ConfigError(f"unknown scorer option(s) {unknown}; known: {sorted(scorer_options())}")
    if kind != "auto" and kind not in KIND_CONFIGS:
        raise ConfigError(f"option 'kind' must be one of {['auto', *KIND_CONFIGS]}, got {kind!r}")
    further, debias = options.pop("ensemble", None), options.pop("length_debias", False)
    rule_values, length_values = _take(options, EnsembleRule), _take(options, LengthPenaltyConfig)

    def one(name: str) -> Any:
        return _kind_config(name, resolve_kind(name, options) if kind == "auto" else kind, options)

    config: Any
    if further is not None:
        models = [model, *[m.strip() for m in further.split(",") if m.strip()]]
        config = EnsembleConfig(tuple(one(m) for m in models), EnsembleRule(**rule_values), names=tuple(models))
    elif (Path(model) / ENSEMBLE_FILE).is_file():  # rewardlab train --ensemble K --ensemble-kind seeds|lora
        config = SavedEnsembleConfig(_kind_config(model, "reward", options), EnsembleRule(**rule_values))
    else:
        config = one(model)
        if isinstance(config, RewardModelConfig) and _saved_ensemble_kind(model) == "heads":
            config = HeadEnsembleConfig(config, EnsembleRule(**rule_values))
        elif rule_values:
            flags = sorted(wrapper_option(f) for f in fields(EnsembleRule) if f.name in rule_values)
            raise ConfigError(f"option(s) {flags} need an ensemble: --ensemble, an ensemble folder or a bootstrap-heads model")
    return _length_control(config, length_values, bool(debias))


def _saved_ensemble_kind(model: str) -> str | None:
    """rewardlab.json's ``ensemble`` of a model folder ('heads' for a bootstrap-heads model), None elsewhere."""
    meta = Path(model) / "rewardlab.json"
    return json.loads(meta.read_text()).get("ensemble") if meta.is_file() else None


def _length_control(config: Any, values: dict[str, Any], debias: bool) -> ScorerConfig:
    if debias and "alpha" in values:
        raise ConfigError("options 'length_debias' and 'length_penalty' are two length controls: give one")
    if debias:
        if values.get("reference") is None:
            raise ConfigError("length_debias and a normalized length_penalty need 'length_reference' (a file of responses)")
        if "mode" in values:
            raise ConfigError("option 'length_penalty_mode' is read with length_penalty, not length_debias")
        return LengthDebiasConfig(config, **values)
    if "alpha" in values:
        return LengthPenaltyConfig(config, **values)
    if values:
        flags = sorted(wrapper_option(f) for f in fields(LengthPenaltyConfig) if f.name in values)
        raise ConfigError(f"option(s) {flags} need a length control: length_penalty or length_debias")
    return config
