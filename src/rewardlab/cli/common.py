"""Helpers shared by the subcommands: config flags generated from dataclasses, scorer and generator flags."""

from __future__ import annotations

import argparse
import dataclasses
import typing
import json
import types
from typing import TYPE_CHECKING, Any

from ..errors import RewardlabError

from ..config import config_from_file, field_docs

if TYPE_CHECKING:  # annotations only: `rewardlab --help` stays light
    from ..scoring.protocol import Scorer

__all__ = ["HelpFormatter", "JUDGE_OPTIONS", "Parser", "add_config_flags", "add_train_flags", "config_from_values", "train_config_from_args", "add_generator_flags", "add_scorer_flags", "build_scorer",
           "json_object", "make_generator", "refuse_scorer_flags", "scorer_config_from_args"]


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help shows its default (unless it says it already, the option is required, or it is a switch)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("(default" in text or action.required or action.default is argparse.SUPPRESS or action.default is False
                or isinstance(action, (argparse._HelpAction, argparse._StoreTrueAction, argparse._StoreFalseAction,
                                       argparse._SubParsersAction._ChoicesPseudoAction))):  # a subcommand's line
            return text
        shown = "none" if action.default is None else show_default(action.default)
        return f"{text} (default: {shown})".replace("%", "%%")


def show_default(value: Any) -> str:
    r"""A default as a user should see it: strings that are blank or hold whitespace are quoted.

    >>> show_default("\n"), show_default("train"), show_default(0.5)
    ("'\\n'", 'train', '0.5')
    """
    if isinstance(value, str) and (not value.strip() or any(c in value for c in "\n\t\r")):
        return repr(value)
    return str(value)


class Parser(argparse.ArgumentParser):
    """rewardlab's subcommand parser: the :class:`HelpFormatter` unless told otherwise."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def add_config_flags(parser: argparse.ArgumentParser, cls: type, exclude: typing.Collection[str] = (),
                     notes: dict[str, str] | None = None, prefix: str = "", shown: dict[str, str] | None = None,
                     defaults: bool = False) -> list[str]:
    """One flag per field of the config dataclass ``cls`` (``--field-name``, help from its docstring plus ``notes``).

    The flags default to None, so that only what the user passed overrides the dataclass default or a config file;
    with ``defaults`` (a subcommand's options, no config file) they default to the fields' defaults and a field
    without one is a required flag. With ``prefix`` (e.g. ``"field-"``) the flags are ``--field-<name>`` and land in
    ``args.field_<name>``. A field's ``metadata`` may give its ``flag`` name, its ``metavar`` and a ``parse`` function
    for the flag's text. ``shown`` replaces the default a field's help shows (e.g. one per kind); a docstring that
    says "(default: ...)" itself gets none added. Returns the ``args`` attributes the flags fill."""
    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    dests = []
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        hint = hints[f.name]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        args = [a for a in typing.get_args(hint) if a is not type(None)] if union else []
        base = args[0] if args else hint  # X | None -> X; X | Literal[...] -> X (the words come after)
        name = str(f.metadata.get("flag", f.name)).replace("_", "-")
        flag = "--" + prefix + name
        dest = (prefix + name).replace("-", "_")
        dests.append(dest)
        missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        doc = docs.get(f.name, "")
        shown_default = (shown or {}).get(f.name) or ("required" if missing else "" if "(default" in doc else (
            f"default: {'none' if f.default is None else show_default(f.default)}" if f.default is not dataclasses.MISSING else "default: see docs"))
        suffix = f" ({shown_default})" if shown_default else ""
        help_text = f"{doc}{(notes or {}).get(f.name, '')}{suffix}".replace("%", "%%")  # argparse formats help with %
        words = tuple(w for a in args[1:] if typing.get_origin(a) is typing.Literal for w in typing.get_args(a))
        common: dict[str, Any] = {"dest": dest, "help": help_text, "default": None}
        if defaults:
            common.update(default=None if missing else f.default, **({"required": True} if missing else {}))
        metavar = f.metadata.get("metavar", name.replace("-", "_").upper())
        if "parse" in f.metadata:  # the field says how its flag's text becomes a value
            parser.add_argument(flag, type=_argument_parser(f.metadata["parse"]), metavar=metavar, **common)
        elif typing.get_origin(base) is dict:
            common["help"] += " (a JSON object)"
            parser.add_argument(flag, type=json_object, metavar="JSON", **common)
        elif typing.get_origin(base) is tuple:  # tuple[str, ...]: one or more values
            parser.add_argument(flag, nargs="+", type=typing.get_args(base)[0], metavar=metavar, **common)
        elif base is bool and len(args) > 1:  # bool | Literal[...]: --flag [true|false|word], --no-flag
            parser.add_argument(flag, nargs="?", const=True, type=_bool_or(words), metavar="|".join(("true", "false", *words)), **common)
            parser.add_argument("--no-" + flag[2:], dest=dest, action="store_false", default=common["default"],
                                help=f"same as {flag} false")
        elif base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        elif typing.get_origin(hint) is typing.Literal:
            parser.add_argument(flag, choices=typing.get_args(hint), **common)
        elif base is int and words:  # int | Literal[...]: a positive number or one of the words
            parser.add_argument(flag, type=_int_or(words, f.name.split("_")[-1]), metavar="|".join(("N", *words)), **common)
        else:
            parser.add_argument(flag, type=base, metavar=metavar, **common)
    return dests


def _argument_parser(parse: typing.Callable[[str], Any]) -> typing.Callable[[str], Any]:
    """``parse`` for argparse: its ValueError (a ConfigError) becomes the flag's error message, not a generic one."""
    def run(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    run.__name__ = parse.__name__
    return run


def _int_or(words: tuple[str, ...], unit: str) -> typing.Callable[[str], int | str]:
    """Parser for an option that is a positive integer or one of ``words``.

    >>> parse = _int_or(("auto", "none"), "tokens")
    >>> parse("auto"), parse("512")
    ('auto', 512)
    """
    def parse(text: str) -> int | str:
        if text in words:
            return text
        if not text.isdigit() or int(text) < 1:
            raise argparse.ArgumentTypeError(f"expected a positive number of {unit}, {' or '.join(repr(w) for w in words)}, got {text!r}")
        return int(text)

    return parse


def _bool_or(words: tuple[str, ...]) -> typing.Callable[[str], bool | str]:
    """Parser for an option that is a boolean or one of ``words``.

    >>> parse = _bool_or(("auto",))
    >>> parse("auto"), parse("True"), parse("no")
    ('auto', True, False)
    """
    def parse(text: str) -> bool | str:
        lowered = text.lower()
        if lowered in words:
            return lowered
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise argparse.ArgumentTypeError(f"expected true, false or {' or '.join(words)}, got {text!r}")

    return parse


def json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON: {err.msg}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """``rewardlab train``'s flags: the run's options (TrainConfig) and, flat, every objective's options."""
    from ..training.config import OBJECTIVE_CONFIGS, TrainConfig, objective_options

    add_config_flags(parser, TrainConfig, exclude={"objective"})
    parser.add_argument("--objective", choices=list(OBJECTIVE_CONFIGS), default=None,
                        help="training objective (docs/objectives.md); its options follow (default: bradley_terry)")
    from ..training.recipes import RECIPES

    parser.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                        help="a preset of the options below (flags given explicitly win): robust = "
                             + ", ".join(f"{k} {v}" for k, v in RECIPES["robust"].items()) + " (docs/training.md)")
    owners = objective_options()
    added = {"name"}
    for cls in dict.fromkeys(OBJECTIVE_CONFIGS.values()):
        fresh = {f.name for f in dataclasses.fields(cls)} - added
        notes = {name: f" [objectives: {', '.join(owners[name])}]" for name in fresh}
        add_config_flags(parser, cls, exclude=added, notes=notes)
        added |= fresh


def train_config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~rewardlab.training.config.TrainConfig` of ``rewardlab train``'s flags (over ``--config``'s file)."""
    from ..training.config import TrainConfig, objective_options

    names = [f.name for f in dataclasses.fields(TrainConfig)] + list(objective_options()) + ["recipe"]
    values = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if args.config:
        return config_from_file(TrainConfig, args.config, build=TrainConfig.from_options, **values)
    missing = [f.name for f in dataclasses.fields(TrainConfig) if f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING and f.name not in values]
    if missing:
        raise RewardlabError("missing required option(s): " + ", ".join("--" + m.replace("_", "-") for m in missing))
    return TrainConfig.from_options(**values)


def config_from_values(cls: type, args: argparse.Namespace, prefix: str = "") -> Any:
    """``cls`` built from the flags ``add_config_flags(parser, cls, prefix=prefix)`` added (unset flags keep the defaults)."""
    dest = prefix.replace("-", "_")
    return cls(**{f.name: getattr(args, dest + f.name) for f in dataclasses.fields(cls)
                  if getattr(args, dest + f.name, None) is not None})


JUDGE_OPTIONS = ("base_url", "api_key_env", "judge_template", "judge_cache", "max_calls")
"""Scoring options of LLM-judge scorers; commands whose generator flags use the same names leave them out."""

REMOTE_RETRY_OPTIONS = ("timeout", "max_retries", "backoff_seconds", "max_backoff_seconds")
"""RemoteConfig's retry settings: Python only (a reward server's client keeps OpenRLHF-like defaults on the CLI)."""


def add_scorer_flags(parser: argparse.ArgumentParser, *, model_flag: str = "--model", required: bool = True,
                     exclude: typing.Collection[str] = (), model_help: str | None = None) -> None:
    """The scoring flags every scoring subcommand shares, generated from the scorer configs of
    :mod:`rewardlab.scoring.config` (each kind's fields, the head-combining rules, the ensemble rule and the length
    controls; a flag's help names the kinds that read it) and :func:`scorer_config_from_args` reads them back. Hand-written:
    the model's flag (renamable, e.g. ``--prm``), ``--kind``, and the two flags that choose a wrapper, ``--ensemble``
    and ``--length-debias``. ``exclude`` names options the command leaves out (its own flags use the names)."""
    from ..scoring.combine import ConstrainedReward, WeightedSum
    from ..scoring.config import KIND_CONFIGS, MODEL_HELP, EnsembleRule, LengthPenaltyConfig, scorer_options, wrapper_option

    owners, skip = scorer_options(), {*exclude, *REMOTE_RETRY_OPTIONS}
    parser.add_argument(model_flag, dest=model_flag[2:].replace("-", "_"), required=required, default=None,
                        help=model_help or MODEL_HELP)
    parser.add_argument("--kind", choices=["auto", *KIND_CONFIGS], default=None,
                        help="'reward' (sequence classification), 'process' (PRM), 'dpo' (implicit reward of a policy), "
                             "'judge' (an LLM judge's 1-10 score), 'remote' (a reward server); 'auto': 'dpo' when "
                             "--reference or --reference-free is set, 'judge' when --base-url is, 'remote' for an "
                             "http(s):// model, 'process' for a PRM folder, else 'reward' (default: auto)")
    dests: list[str] = []
    added = {"model", "combine"}
    for cls in KIND_CONFIGS.values():
        fresh = [f.name for f in dataclasses.fields(cls) if f.name not in added]
        shown = {name: text for name in fresh if (text := _per_kind_default(name))}
        dests += add_config_flags(parser, cls, exclude=added | skip, shown=shown,
                                  notes={name: f" [{', '.join(owners[name])}]" for name in fresh})
        added |= set(fresh)
    for rule in (WeightedSum, ConstrainedReward):
        dests += add_config_flags(parser, rule, exclude=added | skip, notes=dict.fromkeys(_names(rule), " [reward]"),
                                  shown=dict.fromkeys(_names(rule), "default: none") | {"penalty": "default: -inf"})
        added |= set(_names(rule))
    if "ensemble" not in skip:
        parser.add_argument("--ensemble", default=None, metavar="MODELS",
                            help="comma-separated further models: score with the ensemble of the model and these (each "
                                 "built with the options above; an ensemble folder or a bootstrap-heads model is one "
                                 "by itself) (default: none)")
        dests.append("ensemble")
    for wrapper in (EnsembleRule, LengthPenaltyConfig):
        left_out = {f.name for f in dataclasses.fields(wrapper) if wrapper_option(f) in skip} | {"scorer"}
        note = " [ensembles]" if wrapper is EnsembleRule else " [length controls]"
        dests += add_config_flags(parser, wrapper, exclude=left_out, shown={"alpha": "default: none"},
                                  notes=dict.fromkeys(_names(wrapper), note))
    if "length_debias" not in skip:
        parser.add_argument("--length-debias", action=argparse.BooleanOptionalAction, default=None,
                            help="remove the reward's linear length component, fitted on --length-reference "
                                 "(docs/control.md)")
        dests.append("length_debias")
    parser.set_defaults(_scorer_flags=tuple(dests))


def _names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _per_kind_default(name: str) -> str | None:
    """The default shown for a scoring option whose default differs between kinds, e.g. "32 reward, 16 process"."""
    from ..scoring.config import KIND_CONFIGS

    defaults = {kind: f.default for kind, cls in KIND_CONFIGS.items() for f in dataclasses.fields(cls) if f.name == name}
    if len(set(map(repr, defaults.values()))) < 2:
        return None
    return "default: " + ", ".join(f"{'none' if d is None else show_default(d)} {kind}" for kind, d in defaults.items())


def scorer_config_from_args(args: argparse.Namespace, **overrides: Any) -> Any:
    """The :data:`~rewardlab.scoring.config.ScorerConfig` of the scoring flags :func:`add_scorer_flags` added to
    ``args``'s command (``rewardlab.scoring.config.scorer_config`` of their values), with ``overrides`` winning; the
    model comes from ``--model`` unless overridden."""
    from ..scoring.config import scorer_config as from_options

    values = {name: getattr(args, name, None) for name in getattr(args, "_scorer_flags", ())}
    values |= {"model": getattr(args, "model", None), "kind": getattr(args, "kind", None)} | overrides
    model, kind = values.pop("model"), values.pop("kind")
    if model is None:
        raise RewardlabError("missing required option --model")
    return from_options(model, kind or "auto", **values)


def refuse_scorer_flags(args: argparse.Namespace, why: str, keep: typing.Collection[str] = ("model", "show_progress")) -> None:
    """Raise when a scoring flag was given that this use of the command does not read (no flag silently ignored)."""
    stray = [name for name in ("kind", *getattr(args, "_scorer_flags", ())) if name not in keep and getattr(args, name, None) is not None]
    if stray:
        raise RewardlabError(f"--{stray[0].replace('_', '-')} {why}")


def build_scorer(args: argparse.Namespace, progress: bool = False, **overrides: Any) -> Scorer:
    """The scorer the scoring flags in ``args`` describe (``rewardlab.scoring.build_scorer(scorer_config_from_args(args))``).

    ``progress``: commands that score many items in a few calls (eval, diagnose, bon) show a bar per call
    unless ``--no-show-progress``; it says what it loads first."""
    import sys

    from ..scoring.config import build_scorer as build

    if progress and getattr(args, "show_progress", None) is None:
        overrides.setdefault("show_progress", True)
    config = scorer_config_from_args(args, **overrides)
    print(f"[rewardlab] loading {config.model}" + (f" (+ ensemble {args.ensemble})" if getattr(args, "ensemble", None) else ""),
          file=sys.stderr)
    return build(config)


def make_generator(args: argparse.Namespace) -> Any:
    from ..labeling.generators import ChatEndpointGenerator, LocalHFGenerator

    if args.generator == "openai":
        from ..judges.clients import OpenAIChatClient

        if not args.base_url:
            raise RewardlabError("--generator openai needs --base-url (e.g. http://localhost:8000/v1)")
        return ChatEndpointGenerator(OpenAIChatClient(args.base_url, args.model, args.api_key_env), args.temperature)
    return LocalHFGenerator(args.model, temperature=args.temperature, seed=args.seed)


@dataclasses.dataclass(frozen=True)
class GeneratorOptions:
    """Where sampled replies come from (``label-steps``, ``overopt-pool``, ``beam-search``)."""

    generator: typing.Literal["local", "openai"] = "local"
    """local: a transformers causal LM (--model); openai: an OpenAI-compatible server (--base-url)"""
    model: str = "builtin:smollm2"
    """local causal LM (folder or builtin:smollm2), or the endpoint's model name"""
    base_url: str | None = None
    """OpenAI-compatible endpoint for --generator openai"""
    api_key_env: str = "OPENAI_API_KEY"
    """environment variable holding the server's API key"""
    temperature: float = 0.7
    """sampling temperature of the generator"""
    seed: int = 0
    """sampling seed (local generator)"""


def add_generator_flags(p: argparse.ArgumentParser) -> None:
    """:class:`GeneratorOptions`' flags; :func:`make_generator` reads them."""
    add_config_flags(p, GeneratorOptions, defaults=True)
