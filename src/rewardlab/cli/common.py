"""Helpers shared by the subcommands: config flags generated from dataclasses, scorer and generator flags."""

from __future__ import annotations

import argparse
import dataclasses
import typing
import json
from typing import Any

from ..errors import RewardlabError

from ..config import config_from_file, field_docs

__all__ = ["add_config_flags", "add_generator_flags", "add_scorer_flags", "build_scorer", "config_from_args", "json_object", "make_generator"]


def add_config_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        base = args[0] if typing.get_origin(hint) is not typing.Literal and args else hint
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else "required"
        help_text = f"{docs.get(f.name, '')} (default: {default})".replace("%", "%%")  # argparse formats help with %
        if typing.get_origin(base) is dict:
            parser.add_argument(flag, type=json_object, default=None, help=help_text + " (a JSON object)", metavar="JSON")
        elif base is bool and len(args) > 1:  # bool | Literal[...]: --flag [true|false|word], --no-flag
            words = tuple(w for a in args[1:] for w in typing.get_args(a))
            parser.add_argument(flag, nargs="?", const=True, type=_bool_or(words), default=None, help=help_text,
                                metavar="|".join(("true", "false", *words)))
            parser.add_argument("--no-" + flag[2:], dest=f.name, action="store_false", default=None, help=f"same as {flag} false")
        elif base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif typing.get_origin(hint) is typing.Literal:
            parser.add_argument(flag, choices=typing.get_args(hint), default=None, help=help_text)
        else:
            parser.add_argument(flag, type=base, default=None, help=help_text, metavar=f.name.upper())


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


def config_from_args(cls: type, args: argparse.Namespace) -> Any:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
    if args.config:
        return config_from_file(cls, args.config, **values)
    missing = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and values[f.name] is None]
    if missing:
        raise RewardlabError("missing required option(s): " + ", ".join("--" + m.replace("_", "-") for m in missing))
    return cls(**{k: v for k, v in values.items() if v is not None})


def build_scorer(args: argparse.Namespace, combine: Any = None) -> Any:
    """A DPO implicit-reward scorer when --reference/--reference-free is given, else a LocalScorer."""
    from ..models.dpo import DPOSettings, load_dpo_scorer
    from ..scoring import load_reward_model

    if args.reference or args.reference_free:
        dpo = DPOSettings(args.beta, args.reference_free, args.length_normalize)
        return load_dpo_scorer(args.model, args.reference, dpo, args.precision, args.max_length or 1024, args.batch_size, args.device)
    return load_reward_model(args.model, device=args.device, precision=args.precision, batch_size=args.batch_size,
                             layout=getattr(args, "layout", "auto"), max_batch_tokens=getattr(args, "max_batch_tokens", "auto"),
                             max_length=args.max_length, combine=combine, original_scale=getattr(args, "original_scale", False),
                             share_prefix="auto" if getattr(args, "share_prefix", None) is None else args.share_prefix)


def _batch_tokens(value: str) -> int | str | None:
    if value == "auto":
        return value
    if value == "none":
        return None
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of tokens, 'auto' or 'none', got {value!r}")
    return int(value)


def add_scorer_flags(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--model", required=required, help="reward model folder (rewardlab's or any HF sequence-classification RM), or a DPO policy with --reference")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-batch-tokens", type=_batch_tokens, default="auto",
                   help="also close a scoring batch at this many tokens; 'auto' (default): 2048 on CPU, no cap on GPU; 'none': no cap")
    p.add_argument("--max-length", type=int, default=None, help="default: the model's training max_length")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--layout", choices=["auto", "packed", "padded"], default="auto",
                   help="packed: padding-free batches with per-sequence attention (auto: when the backbone supports it)")
    p.add_argument("--share-prefix", action=argparse.BooleanOptionalAction, default=None,
                   help="decoders: score neighbouring items that start alike (a pair's replies, best-of-N candidates) with their "
                        "common prefix computed once; exact (default: on CPU, off on GPU, where it is not measured)")
    p.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1 (default: cpu)")
    p.add_argument("--reference", default=None, help="DPO implicit reward: the reference model (--model is the policy)")
    p.add_argument("--reference-free", action="store_true", help="DPO implicit reward with log pi_ref = 0")
    p.add_argument("--beta", type=float, default=0.1, help="DPO beta (default 0.1)")
    p.add_argument("--length-normalize", action="store_true", help="DPO: mean instead of sum of response token log-probs")


def make_generator(args: argparse.Namespace) -> Any:
    from ..labeling.generators import ChatEndpointGenerator, LocalHFGenerator

    if args.generator == "openai":
        from ..judges.clients import OpenAIChatClient

        if not args.base_url:
            raise RewardlabError("--generator openai needs --base-url (e.g. http://localhost:8000/v1)")
        return ChatEndpointGenerator(OpenAIChatClient(args.base_url, args.model, args.api_key_env), args.temperature)
    return LocalHFGenerator(args.model, temperature=args.temperature, seed=args.seed)


def add_generator_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--generator", choices=["local", "openai"], default="local")
    p.add_argument("--model", default="builtin:smollm2", help="local causal LM (folder or builtin:smollm2), or the endpoint's model name")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint for --generator openai")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--seed", type=int, default=0)
