"""The whole over-optimization experiment from one configuration (a YAML file or :class:`OveroptConfig`), resumable:

1. a gold-labelled pool of ``n`` replies to ``prompts`` prompts (the demo instructions, or a file) from the policy
   (with token log-probs), and one on other prompts for training and labelling;
2. proxies trained on each size in ``proxy_sizes`` x each seed in ``seeds`` of gold-labelled pairs (the demo's pairs,
   or pairs of the policy's samples labelled by the gold: any scorer, e.g. a bigger reward model);
3. best-of-n and KL-regularized curves, Gao fits and the over-optimization gap for every proxy;
4. mitigations through the same harness: an ensemble of a size's seeds, a length penalty;
5. iterative re-training (``rounds``): round r samples from the current policy (best-of-``round_n`` under the
   current proxy), labels pairs of its samples with the gold, retrains the proxy on the union and re-measures;
   stops when the policy's gold stops improving by ``min_improvement``;
6. ``summary.json`` and ``report.md`` (tables and plots) at the top of the output folder.

Each step writes its own folder and is skipped when finished, so a killed run continues where it stopped; the
configuration is saved with the run and a resumed run must have the same one.

The policy in the rounds is best-of-n over the *reference* policy's samples under the current proxy (a re-ranking
policy), not a fine-tuned LM: what changes between rounds is the proxy, trained on the current policy's outputs,
as in iterated RLHF (Bai et al. 2022 sec. 4.5; Touvron et al. 2023 sec. 3.2.2), without an RL run.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import ConfigError
from ..data.readers import write_preference_pairs
from ..jsonsafe import dumps
from ..plotting import pyplot, save_figure

if TYPE_CHECKING:  # annotations only: the generator and scorer modules load when the experiment runs
    from ..labeling.generators import Generator
    from ..scoring.protocol import Scorer

__all__ = ["OveroptConfig", "load_config", "run_experiment"]

_AGGREGATES = ("mean", "min", "mean_minus_std", "uncertainty_weighted")


@dataclass(frozen=True)
class OveroptConfig:
    """One over-optimization experiment. The defaults are ``rewardlab overopt --quick`` (about 10 minutes on 2 CPU
    cores, docs/overoptimization.md).

    >>> OveroptConfig(proxy_sizes=(100, 400), seeds=(0, 1)).proxies()
    [(100, 0), (100, 1), (400, 0), (400, 1)]
    """

    policy: str = "builtin:smollm2"
    """The reference policy: a local causal LM (folder or builtin name), or the model name at ``base_url``."""
    base_url: str | None = None
    """An OpenAI-compatible server (vLLM, SGLang, TGI) to sample from instead of a local model."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the server's API key."""
    temperature: float = 1.0
    """Sampling temperature of the policy."""
    gold: str = "demo"
    """The gold reward: 'demo' (the programmatic checks behind the demo instructions), or 'model:SPEC' with SPEC
    anything --model takes (a bigger reward-model folder, a reward server URL)."""
    prompts_file: str | None = None
    """A file of {prompt} records (text or chat messages) instead of the demo instructions: the first `prompts` are
    evaluated, the next `prompts` sample the training/labelling pool."""
    proxy_data: str = "auto"
    """What the proxies learn from: 'demo' (the demo's gold-labelled pairs; demo gold and prompts only), 'policy'
    (pairs of the policy's own samples on the training prompts, labelled by the gold), 'auto' (demo when possible)."""
    prompts: int = 24
    """Evaluation prompts in the pool (and, from another set, in the training/labelling pool)."""
    n: int = 16
    """Replies sampled per prompt (N_max of best-of-n)."""
    max_new_tokens: int = 48
    """Most tokens per reply."""
    proxy_backbone: str = "builtin:minilm"
    """Backbone the proxies are trained from."""
    proxy_sizes: tuple[int, ...] = (250, 1000)
    """Gold-labelled training pairs per proxy (one proxy per size and seed)."""
    seeds: tuple[int, ...] = (0, 1)
    """Training seeds per proxy size (each also draws its own pairs)."""
    max_length: int = 128
    """Proxy training and scoring max length."""
    epochs: float = 3.0
    """Proxy training epochs."""
    betas: tuple[float, ...] | None = None
    """KL coefficients of the tilted curve (default: a geometric grid from the proxy's spread)."""
    bootstrap: int = 200
    """Prompt resamples for the fits' intervals."""
    mitigations: tuple[str, ...] = ("ensemble:mean_minus_std", "length_penalty:0.1")
    """Through the same harness: 'ensemble:AGG' (a size's seeds as one ensemble; AGG one of mean, min,
    mean_minus_std, uncertainty_weighted) and 'length_penalty:COEF' (reward minus COEF per word, each seed)."""
    rounds: int = 2
    """Iterative re-training rounds (0: none), on the largest proxy size's first seed."""
    round_n: int = 4
    """The policy of each round: best-of-round_n under the current proxy."""
    min_improvement: float = 0.0
    """Stop the rounds when the policy's gold improves by no more than this."""
    seed: int = 0
    """Seed of the prompts and the policy's draws."""

    def __post_init__(self) -> None:
        if self.gold != "demo" and not (self.gold.startswith("model:") and len(self.gold) > len("model:")):
            raise ConfigError(f"gold: expected 'demo' or 'model:SPEC' (a reward model folder or server), got {self.gold!r}")
        if self.proxy_data not in ("auto", "demo", "policy"):
            raise ConfigError(f"proxy_data: expected auto, demo or policy, got {self.proxy_data!r}")
        if self.proxy_data == "demo" and (self.gold != "demo" or self.prompts_file):
            raise ConfigError("proxy_data 'demo' trains on the demo's pairs, which are labelled by the demo gold on demo prompts: "
                              "use proxy_data 'policy' with another gold or prompts_file")
        for name in ("prompts", "n", "max_new_tokens", "max_length", "round_n"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n < 2:
            raise ConfigError(f"n must be >= 2 (best-of-n needs a choice), got {self.n}")
        if not self.proxy_sizes or any(s < 2 for s in self.proxy_sizes) or not self.seeds:
            raise ConfigError("proxy_sizes needs sizes >= 2 pairs and seeds at least one seed")
        if self.rounds < 0 or self.round_n > self.n:
            raise ConfigError(f"rounds must be >= 0 and round_n <= n, got rounds={self.rounds}, round_n={self.round_n}")
        if self.betas is not None and any(b <= 0 for b in self.betas):
            raise ConfigError(f"betas must be > 0, got {self.betas}")
        for spec in self.mitigations:
            kind, _, value = spec.partition(":")
            if kind == "ensemble":
                if value not in _AGGREGATES:
                    raise ConfigError(f"mitigation {spec!r}: ensemble takes one of {', '.join(_AGGREGATES)}")
                if len(self.seeds) < 2:
                    raise ConfigError(f"mitigation {spec!r} ensembles a size's seeds: give at least two seeds")
            elif kind == "length_penalty":
                try:
                    float(value)
                except ValueError:
                    raise ConfigError(f"mitigation {spec!r}: expected length_penalty:COEF") from None
            else:
                raise ConfigError(f"mitigation {spec!r}: expected 'ensemble:AGG' or 'length_penalty:COEF'")

    def proxies(self) -> list[tuple[int, int]]:
        return [(size, seed) for size in self.proxy_sizes for seed in self.seeds]

    @property
    def policy_pairs(self) -> bool:
        """Whether the proxies learn from gold-labelled pairs of the policy's samples (rather than the demo's pairs)."""
        return self.proxy_data == "policy" or (self.proxy_data == "auto" and (self.gold != "demo" or self.prompts_file is not None))

    def to_json(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in dataclasses.fields(self)}


def load_config(path: str | os.PathLike) -> OveroptConfig:
    """An :class:`OveroptConfig` from a YAML (or JSON) file of its fields; an unknown key or a wrong type is an error
    naming the file and the key."""
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(OveroptConfig)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            raise ConfigError(f"{path}: unknown setting {key!r}; known: {', '.join(fields)}")
        default = fields[key].default
        if isinstance(default, tuple) or key == "betas":
            if value is not None and not isinstance(value, list):
                raise ConfigError(f"{path}: {key} expects a list, got {value!r}")
            value = None if value is None else tuple(value)
            kinds: Any = {"proxy_sizes": int, "seeds": int, "betas": (int, float), "mitigations": str}[key]
            if value is not None and not all(isinstance(v, kinds) and not isinstance(v, bool) for v in value):
                raise ConfigError(f"{path}: {key} expects a list of {getattr(kinds, '__name__', 'numbers')}, got {list(value)!r}")
        elif default is None:
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{path}: {key} expects a string, got {value!r}")
        elif isinstance(value, bool) != isinstance(default, bool) or (
                not isinstance(value, type(default)) and not (isinstance(default, float) and isinstance(value, int))):
            raise ConfigError(f"{path}: {key} expects {type(default).__name__}, got {value!r}")
        values[key] = value
    return OveroptConfig(**values)


def _generator(config: OveroptConfig) -> Any:
    from ..labeling.generators import ChatEndpointGenerator, LocalHFGenerator

    if config.base_url:
        from ..judges.clients import OpenAIChatClient

        return ChatEndpointGenerator(OpenAIChatClient(config.base_url, config.policy, config.api_key_env), config.temperature)
    return LocalHFGenerator(config.policy, temperature=config.temperature, seed=config.seed)


def _gold_scorer(config: OveroptConfig) -> Any:
    from ..scoring.config import build_scorer, scorer_config
    from .gold import demo_gold_scorer

    return demo_gold_scorer() if config.gold == "demo" else build_scorer(scorer_config(config.gold[len("model:"):]))


def _prompt_sets(config: OveroptConfig) -> tuple[list[Any], list[Any]]:
    """(evaluation prompts, training/labelling prompts): disjoint sets of ``config.prompts`` each."""
    if config.prompts_file is None:
        from ..data.demo import demo_pairs

        def questions(split: Literal["train", "test", "balanced"], seed: int) -> list[Any]:
            return list(dict.fromkeys(p.prompt[0].content for p in demo_pairs(split, 8 * config.prompts, seed=seed)))[: config.prompts]

        return questions("test", config.seed), questions("train", config.seed + 1)
    from ..data.readers import iter_records
    from ..errors import DataFormatError

    prompts = []
    for location, record in iter_records(config.prompts_file):
        if not isinstance(record.get("prompt"), (str, list)):
            raise DataFormatError(location, "expected a prompt (text or chat messages)", "prompt")
        prompts.append(record["prompt"])
    if len(prompts) < 2 * config.prompts:
        raise DataFormatError(config.prompts_file, f"has {len(prompts)} prompts; the experiment needs {2 * config.prompts} "
                                                   f"({config.prompts} to evaluate, {config.prompts} to train and label)")
    return prompts[: config.prompts], prompts[config.prompts : 2 * config.prompts]


def _text_prompt(prompt: Any) -> str:
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]


def _gold_pairs(pool: Any, count: int, seed: int) -> list[Any]:
    """``count`` pairs of the policy's samples in ``pool`` (same prompt, different gold; chosen = higher gold), drawn
    without replacement with ``seed``: the proxy's training data when it learns from the policy's distribution."""
    candidates = [(i, a, b) for i, row in enumerate(pool.candidates) for a in range(len(row)) for b in range(a + 1, len(row))
                  if pool.gold[i, a] != pool.gold[i, b] and row[a] != row[b]]
    if len(candidates) < count:
        raise ConfigError(f"the training pool has {len(candidates)} pairs with different gold, fewer than the {count} asked for: "
                          "raise prompts or n, or lower proxy_sizes")
    rng = np.random.default_rng(seed)
    return _as_pairs(pool, [_ordered(pool, *candidates[int(k)]) for k in rng.choice(len(candidates), size=count, replace=False)])


def _ordered(pool: Any, i: int, a: int, b: int) -> tuple[int, int, int]:
    """``(prompt, chosen, rejected)`` indices of candidates a and b of prompt i: chosen has the higher gold."""
    return (i, a, b) if pool.gold[i, a] > pool.gold[i, b] else (i, b, a)


def _as_pairs(pool: Any, triples: Sequence[tuple[int, int, int]]) -> list[Any]:
    """Preference pairs from ``(prompt, chosen, rejected)`` candidate indices of ``pool``."""
    from ..data.records import Message, PreferencePair

    return [PreferencePair((Message("user", _text_prompt(pool.prompts[i])),), pool.candidates[i][good], pool.candidates[i][bad])
            for i, good, bad in triples]


def _train_proxy(config: OveroptConfig, pairs: Path, folder: Path, seed: int, show_progress: bool) -> None:
    from ..training.loop import train

    if (folder / "trainer_state.json").is_file():  # finished: reused
        return
    train(model=config.proxy_backbone, data=str(pairs), output_dir=str(folder), max_length=config.max_length, batch_size=16,
          learning_rate=5e-5, num_epochs=config.epochs, warmup_ratio=0.1, eval_fraction=0.1, seed=seed,
          show_progress=show_progress, resume=(folder / "run_config.json").is_file())


def _measure(scorer_config: Any, pool: Path, out: Path, config: OveroptConfig, show_progress: bool) -> dict[str, Any]:
    """The curves of the proxy ``scorer_config`` describes (a finished measurement is read back: no model is loaded)."""
    from ..scoring.config import build_scorer
    from .harness import run_overopt

    if (out / "overopt.json").is_file():
        return json.loads((out / "overopt.json").read_text())
    return run_overopt(build_scorer(scorer_config), pool, out, config.betas, config.bootstrap, config.seed, show_progress)


def _peak(result: dict[str, Any]) -> dict[str, Any]:
    bon = result["best_of_n"]
    best = int(np.argmax(bon["gold"]))
    return {"peak_n": bon["n"][best], "peak_d": bon["d"][best], "peak_gold": bon["gold"][best], "gold_at_max_n": bon["gold"][-1],
            "gap_at_max_n": bon["gap"][-1] if "gap" in bon else None,
            "fit_bon_peak_d": result["fits"].get("bon", {}).get("peak_d"), "fit_bon_r2": result["fits"].get("bon", {}).get("r_squared")}


def _policy_stats(gold: np.ndarray, proxy: np.ndarray, n: int) -> dict[str, float]:
    """The best-of-n policy under ``proxy`` on a pool: its expected gold, and the correlation of proxy and gold on its
    own distribution (Pearson, each candidate weighted by its probability of being the pick)."""
    from .curves import best_of_n_weights

    w = best_of_n_weights(proxy, n) / gold.shape[0]
    mean_g, mean_p = float((w * gold).sum()), float((w * proxy).sum())
    cov = float((w * (gold - mean_g) * (proxy - mean_p)).sum())
    var_g, var_p = float((w * (gold - mean_g) ** 2).sum()), float((w * (proxy - mean_p) ** 2).sum())
    corr = cov / np.sqrt(var_g * var_p) if var_g > 0 and var_p > 0 else float("nan")
    return {"policy_gold": mean_g, "proxy_gold_correlation_on_policy": float(corr)}


def _policy_pairs(pool: Any, proxy: np.ndarray, n: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """Samples of the current policy (best-of-n under ``proxy`` in random groups of n of each prompt's candidates),
    paired within a prompt where the gold differs: ``(prompt, chosen, rejected)`` indices, chosen = higher gold."""
    triples = []
    for i, candidates in enumerate(pool.candidates):
        order = rng.permutation(len(candidates))
        picks = [int(max(group, key=lambda j: proxy[i, j])) for group in
                 (order[k : k + n] for k in range(0, len(order) - n + 1, n))]
        triples += [_ordered(pool, i, a, b) for x, a in enumerate(picks) for b in picks[x + 1 :]
                    if pool.gold[i, a] != pool.gold[i, b] and candidates[a] != candidates[b]]
    return triples


def run_experiment(config: OveroptConfig, output_dir: str | os.PathLike, generator: Generator | None = None,
                   gold: Scorer | None = None,
                   show_progress: bool = True) -> dict[str, Any]:
    """Run (or continue) the experiment ``config`` describes in ``output_dir``; returns the summary (also written as
    ``summary.json``, with ``report.md`` and ``overopt.png``). ``generator`` overrides the policy in ``config``
    (anything with ``continue_solution``, e.g. a scripted generator in tests); ``gold`` overrides its gold (any
    :class:`~rewardlab.scoring.protocol.Scorer`, e.g. a ``FunctionScorer`` checking answers)."""
    from ..data.demo import demo_pairs
    from ..scoring.config import scorer_config
    from .harness import read_pool
    from .pool import sample_pool

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "config.json"
    current = json.loads(dumps(config.to_json()))
    if saved.is_file():
        earlier = json.loads(saved.read_text())
        defaults = json.loads(dumps(OveroptConfig().to_json()))
        # settings added to rewardlab after that run count as equal at their defaults
        differ = [k for k in current if earlier.get(k, defaults[k]) != current[k]] + [k for k in earlier if k not in current]
        if differ:
            raise ConfigError(f"{out} holds a run with another configuration ({saved}: {', '.join(differ)} differ); use "
                              "another --output-dir")
    saved.write_text(dumps(current, indent=2))
    generator = generator or _generator(config)
    gold = gold or _gold_scorer(config)
    eval_prompts, train_prompts = _prompt_sets(config)
    sample_pool(generator, eval_prompts, config.n, out / "pool.jsonl", gold, config.max_new_tokens, config.seed, show_progress)
    if config.policy_pairs or config.rounds:  # the training / labelling pool: other prompts, other draws
        sample_pool(generator, train_prompts, config.n, out / "label_pool.jsonl", gold, config.max_new_tokens,
                    config.seed + 10_000, show_progress)
    pool_path = out / "pool.jsonl"
    train_pool = read_pool(out / "label_pool.jsonl") if config.policy_pairs else None
    results: dict[str, dict[str, Any]] = {}
    for size, seed in config.proxies():
        pairs = out / f"pairs_{size}_seed{seed}.jsonl"
        if not pairs.is_file():
            write_preference_pairs(_gold_pairs(train_pool, size, seed) if train_pool is not None
                                   else demo_pairs("train", size, seed=seed + 7), pairs)
        folder = out / f"proxy_{size}_seed{seed}"
        _train_proxy(config, pairs, folder, seed, show_progress)
        results[f"{size}/seed{seed}"] = _measure(scorer_config(str(folder), max_length=config.max_length), pool_path, out / f"overopt_{size}_seed{seed}", config, show_progress)
    mitigated: dict[str, dict[str, Any]] = {}
    for spec in config.mitigations:
        kind, _, value = spec.partition(":")
        for size in config.proxy_sizes:
            folders = [str(out / f"proxy_{size}_seed{s}") for s in config.seeds]
            name = spec.replace(":", "_")
            if kind == "ensemble":
                ensemble = scorer_config(folders[0], ensemble=",".join(folders[1:]), ensemble_aggregate=value,
                                          max_length=config.max_length)
                mitigated[f"{size}/{spec}"] = _measure(ensemble, pool_path, out / f"overopt_{size}_{name}", config, show_progress)
            else:
                for seed, member in zip(config.seeds, folders):
                    penalized = scorer_config(str(member), length_penalty=float(value), max_length=config.max_length)
                    mitigated[f"{size}/{spec}/seed{seed}"] = _measure(penalized, pool_path, out / f"overopt_{size}_{name}_seed{seed}",
                                                                      config, show_progress)
    rounds = _run_rounds(config, out, show_progress) if config.rounds else []
    summary = _summarize(config, results, mitigated, rounds)
    (out / "summary.json").write_text(dumps(summary, indent=2))
    _write_report(config, summary, results, out)
    return summary


def _run_rounds(config: OveroptConfig, out: Path, show_progress: bool) -> list[dict[str, Any]]:
    from ..data.readers import read_preference_pairs
    from ..scoring.config import build_scorer, scorer_config
    from .harness import read_pool

    size, seed = max(config.proxy_sizes), config.seeds[0]
    # the labelling pool (sampled by run_experiment) holds other prompts than the evaluation pool
    label_pool, eval_pool = read_pool(out / "label_pool.jsonl"), read_pool(out / "pool.jsonl")
    base_pairs = out / f"pairs_{size}_seed{seed}.jsonl"
    folder = out / f"proxy_{size}_seed{seed}"
    history: list[dict[str, Any]] = []
    union = read_preference_pairs(base_pairs)[0]

    def proxy_rewards(model: Path, pool: Any) -> np.ndarray:
        scorer = build_scorer(scorer_config(str(model), max_length=config.max_length))
        flat = scorer.score([q for q, c in zip(pool.prompts, pool.candidates) for _ in c], [x for c in pool.candidates for x in c])
        return np.asarray(flat, dtype=float).reshape(pool.gold.shape)

    for r in range(config.rounds + 1):
        if r > 0:
            round_dir = out / f"round_{r}"
            round_dir.mkdir(exist_ok=True)
            new_pairs = round_dir / "new_pairs.jsonl"
            if not new_pairs.is_file():
                fresh = _policy_pairs(label_pool, proxy_rewards(folder, label_pool), config.round_n,
                                      np.random.default_rng(config.seed + r))
                write_preference_pairs(_as_pairs(label_pool, fresh), new_pairs)
            added = read_preference_pairs(new_pairs)[0] if new_pairs.stat().st_size else []
            union = union + added
            union_path = round_dir / "pairs.jsonl"
            if not union_path.is_file():
                write_preference_pairs(union, union_path)
            folder = round_dir / "proxy"
            _train_proxy(config, union_path, folder, seed, show_progress)
        eval_proxy = proxy_rewards(folder, eval_pool)
        row = {"round": r, "proxy": str(folder), "training_pairs": len(union), **_policy_stats(eval_pool.gold, eval_proxy, config.round_n)}
        # accuracy on pairs drawn from this round's policy on the evaluation prompts (the label pool trained the proxy)
        probe = _policy_pairs(eval_pool, eval_proxy, config.round_n, np.random.default_rng(config.seed + 1000 + r))
        if probe:
            row["proxy_accuracy_on_policy_pairs"] = float(np.mean([eval_proxy[i, good] > eval_proxy[i, bad] for i, good, bad in probe]))
            row["policy_pairs"] = len(probe)
        history.append(row)
        if r > 0 and row["policy_gold"] - history[-2]["policy_gold"] <= config.min_improvement:
            row["stopped"] = f"policy gold improved by {row['policy_gold'] - history[-2]['policy_gold']:+.4f} <= {config.min_improvement}"
            break
    return history


def _summarize(config: OveroptConfig, results: dict[str, dict[str, Any]], mitigated: dict[str, dict[str, Any]],
               rounds: list[dict[str, Any]]) -> dict[str, Any]:
    from .fits import fit_gao

    per_size: dict[str, Any] = {}
    for size in config.proxy_sizes:
        peaks = [_peak(results[f"{size}/seed{s}"]) for s in config.seeds]
        golds, ds = [p["peak_gold"] for p in peaks], [p["peak_d"] for p in peaks]
        variants: dict[str, Any] = {}
        for spec in config.mitigations:
            runs = [v for k, v in mitigated.items() if k == f"{size}/{spec}" or k.startswith(f"{size}/{spec}/")]
            vp = [_peak(v) for v in runs]
            variants[spec] = {"peak_gold": float(np.mean([p["peak_gold"] for p in vp])),
                              "peak_d": float(np.mean([p["peak_d"] for p in vp])),
                              "gold_at_max_n": float(np.mean([p["gold_at_max_n"] for p in vp])), "runs": len(vp)}
        curves = [results[f"{size}/seed{s}"]["best_of_n"] for s in config.seeds]
        mean_gold = np.mean([c["gold"] for c in curves], axis=0)
        fit_of_mean = None
        if len(mean_gold) >= 3:
            f = fit_gao(curves[0]["d"], mean_gold - mean_gold[0], "bon")
            fit_of_mean = {"alpha": f.alpha, "beta": f.beta, "r_squared": f.r_squared, "peak_d": f.peak_d,
                           "peak_within_data": f.peak_d is not None and f.peak_d <= max(curves[0]["d"])}
        per_size[str(size)] = {"seeds": {f"seed{s}": p for s, p in zip(config.seeds, peaks)}, "d": list(curves[0]["d"]),
                               "mean_gold_curve": mean_gold.tolist(),
                               "mean_gap_curve": np.mean([c["gap"] for c in curves], axis=0).tolist(),
                               "fit_of_mean": fit_of_mean,
                               "peak_gold_mean": float(np.mean(golds)), "peak_gold_sd": float(np.std(golds, ddof=1)) if len(golds) > 1 else None,
                               "peak_d_mean": float(np.mean(ds)), "peak_d_sd": float(np.std(ds, ddof=1)) if len(ds) > 1 else None,
                               "gold_at_max_n_mean": float(np.mean([p["gold_at_max_n"] for p in peaks])),
                               "mitigations": variants}
    ordered = [per_size[str(s)] for s in sorted(config.proxy_sizes)]
    first = next(iter(results.values()))
    return {"config": config.to_json(), "reference_gold": first["reference_gold"], "reference_logprobs": first.get("reference_logprobs"),
            "gold_ceiling": first["best_of_n"]["gold_ceiling"], "sizes": per_size,
            "larger_proxy_peaks_higher": all(a["peak_gold_mean"] <= b["peak_gold_mean"] for a, b in zip(ordered, ordered[1:])),
            "larger_proxy_peaks_later": all(a["peak_d_mean"] <= b["peak_d_mean"] for a, b in zip(ordered, ordered[1:])),
            "rounds": rounds}


def _write_report(config: OveroptConfig, summary: dict[str, Any], results: dict[str, dict[str, Any]], out: Path) -> None:
    logprobs = summary["reference_logprobs"]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines = ["# Over-optimization experiment", "",
             f"Policy {config.policy}, {config.prompts} prompts x {config.n} replies, gold '{config.gold}', proxies from "
             f"{config.proxy_backbone} on {', '.join(map(str, config.proxy_sizes))} pairs x seeds {', '.join(map(str, config.seeds))}. "
             f"Reference gold {fmt(summary['reference_gold'])}."
             + (f" Reference log-prob {fmt(logprobs['mean_token_logprob'])} per token." if logprobs else ""), "",
             "## Best-of-n peaks (mean over seeds)", "",
             "| proxy pairs | peak gold (sd) | peak d (sd) | gold at n = N | " + " | ".join(f"{m}: peak gold / d" for m in config.mitigations) + " |",
             "| --- | --- | --- | --- |" + " --- |" * len(config.mitigations)]
    for size, row in summary["sizes"].items():
        sd = lambda v: "" if v is None else f" ({v:.3f})"  # noqa: E731
        mit = " | ".join(f"{fmt(v['peak_gold'])} / {fmt(v['peak_d'])}" for v in row["mitigations"].values())
        lines.append(f"| {size} | {fmt(row['peak_gold_mean'])}{sd(row['peak_gold_sd'])} | {fmt(row['peak_d_mean'])}{sd(row['peak_d_sd'])} "
                     f"| {fmt(row['gold_at_max_n_mean'])} | {mit} |")
    lines += ["", f"Gao et al.'s findings on this data: larger proxy peaks higher: **{summary['larger_proxy_peaks_higher']}**; "
              f"later: **{summary['larger_proxy_peaks_later']}**.", "",
              "## Fits per proxy (best-of-n form, gold gain)", "", "| proxy | alpha (95% CI) | beta (95% CI) | R^2 | peak d |",
              "| --- | --- | --- | --- | --- |"]
    for name, result in results.items():
        f = result["fits"].get("bon")
        if f:
            ci = lambda c: "" if c is None else f" ({fmt(c[0])} - {fmt(c[1])})"  # noqa: E731
            lines.append(f"| {name} | {fmt(f['alpha'])}{ci(f['alpha_ci'])} | {fmt(f['beta'])}{ci(f['beta_ci'])} | {fmt(f['r_squared'])} "
                         f"| {_peak_text(f['peak_d'], f.get('peak_within_data'))} |")
    for size, row in summary["sizes"].items():
        f = row.get("fit_of_mean")
        if f:
            lines.append(f"| {size}, mean of seeds | {fmt(f['alpha'])} | {fmt(f['beta'])} | {fmt(f['r_squared'])} "
                         f"| {_peak_text(f['peak_d'], f['peak_within_data'])} |")
    if summary["rounds"]:
        lines += ["", f"## Iterative re-training (policy: best-of-{config.round_n} under the current proxy)", "",
                  "| round | training pairs | policy gold | proxy-gold correlation on the policy | proxy accuracy on policy pairs |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| {r['round']} | {r['training_pairs']} | {fmt(r['policy_gold'])} | {fmt(r['proxy_gold_correlation_on_policy'])} "
                  f"| {fmt(r.get('proxy_accuracy_on_policy_pairs'))} |" for r in summary["rounds"]]
        if "stopped" in summary["rounds"][-1]:
            lines.append(f"\nStopped after round {summary['rounds'][-1]['round']}: {summary['rounds'][-1]['stopped']}.")
    plotted = _plot(summary, out / "overopt.png")
    lines += ["", "![gold and gap vs d](overopt.png)" if plotted else "(plot skipped: install matplotlib)"]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def _peak_text(peak_d: float | None, within: bool | None) -> str:
    if peak_d is None:
        return "none (the fit does not turn down: beta <= 0)"
    return f"{peak_d:.3f}" + ("" if within else " (beyond the measured d: extrapolated)")


def _plot(summary: dict[str, Any], path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    fig, (ax, gap) = plt.subplots(1, 2, figsize=(11, 4))
    for size, row in summary["sizes"].items():
        d, gold = np.array(row["d"]), np.array(row["mean_gold_curve"])
        line = ax.plot(d, gold, "o", label=f"{size} pairs (mean of {len(row['seeds'])} seeds)")[0]
        fit = row["fit_of_mean"]
        if fit:
            grid = np.linspace(0, d.max(), 50)
            ax.plot(grid, gold[0] + grid * (fit["alpha"] - fit["beta"] * grid), "-", color=line.get_color(), lw=1)
        gap.plot(d, row["mean_gap_curve"], "o-", color=line.get_color(), label=f"{size} pairs")
    ax.plot(d, summary["gold_ceiling"], ":", color="k", label="gold-optimal pick")
    ax.set(xlabel="d = sqrt(KL_bon)", ylabel="gold reward", title="Best-of-n gold, mean over seeds (points), Gao fit (line)")
    ax.legend(fontsize=7)
    gap.axhline(0, color="k", lw=1)
    gap.set(xlabel="d = sqrt(KL_bon)", ylabel="z(proxy) - z(gold)", title="Over-optimization gap")
    gap.legend(fontsize=7)
    save_figure(fig, path)
    return True
