"""``rewardlab`` command line: each subcommand mirrors a Python function one to one.

* ``rewardlab train``  -> :func:`rewardlab.train` (flags generated from :class:`TrainConfig`)
* ``rewardlab score``  -> :func:`rewardlab.load_reward_model` + ``LocalScorer.score``
* ``rewardlab demo``   -> :func:`rewardlab.run_demo`

Errors from bad input print one line naming the file, line and field, and exit with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Any

from .config import config_from_file, field_docs
from .errors import RewardlabError, SequenceTooLongError

__all__ = ["main"]


def _add_config_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        base = args[0] if typing.get_origin(hint) is not typing.Literal and args else hint
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else "required"
        help_text = f"{docs.get(f.name, '')} (default: {default})"
        if typing.get_origin(base) is dict:
            parser.add_argument(flag, type=_json_object, default=None, help=help_text + " (a JSON object)", metavar="JSON")
        elif base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif typing.get_origin(hint) is typing.Literal:
            parser.add_argument(flag, choices=typing.get_args(hint), default=None, help=help_text)
        else:
            parser.add_argument(flag, type=base, default=None, help=help_text, metavar=f.name.upper())


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON: {err.msg}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def _config_from_args(cls: type, args: argparse.Namespace) -> Any:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
    if args.config:
        return config_from_file(cls, args.config, **values)
    missing = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and values[f.name] is None]
    if missing:
        raise RewardlabError("missing required option(s): " + ", ".join("--" + m.replace("_", "-") for m in missing))
    return cls(**{k: v for k, v in values.items() if v is not None})


def _cmd_train(args: argparse.Namespace) -> int:
    from .training.config import TrainConfig
    from .training.loop import train

    result = train(_config_from_args(TrainConfig, args))
    print(json.dumps({"output_dir": str(result.output_dir), "steps": result.steps, **result.final_metrics}))
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from .data.readers import iter_records, pair_sides, to_prompt_response
    from .scoring import load_reward_model

    scorer = load_reward_model(
        args.model, device=args.device, precision=args.precision, batch_size=args.batch_size, max_length=args.max_length
    )
    scorer.show_progress = True
    rows: list[tuple[str, Any]] = []
    prompts, responses, item_row = [], [], []
    for location, record in iter_records(args.data, args.split):
        if "chosen" in record:
            (chosen_prompt, chosen), (rejected_prompt, rejected) = pair_sides(record, location)
            prompts += [chosen_prompt, rejected_prompt]
            responses += [chosen, rejected]
            item_row += [len(rows), len(rows)]
            rows.append(("pair", location))
        else:
            prompt, response = to_prompt_response(record, location)
            prompts.append(prompt)
            responses.append(response)
            item_row.append(len(rows))
            rows.append(("single", location))
    ids = scorer.tokenize(prompts, responses, on_too_long="none")
    missing = [i for i, seq in enumerate(ids) if seq is None]
    locations = [rows[item_row[i]][1] for i in missing]
    if missing and not args.skip_too_long:
        raise SequenceTooLongError(
            f"{len(missing)} response(s) do not fit in --max-length {scorer.max_length} even without their prompt "
            f"(first at {locations[0]}); raise --max-length, or pass --skip-too-long to write them with reward null"
        )
    fitting = [seq for seq in ids if seq is not None]
    scored = iter(scorer.score_ids(fitting).tolist())
    rewards = [None if seq is None else next(scored) for seq in ids]
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    position = 0
    with out.open("w") as handle:
        for index, (kind, location) in enumerate(rows):
            if kind == "pair":
                line = {"index": index, "source": location, "chosen_reward": rewards[position], "rejected_reward": rewards[position + 1]}
                position += 2
            else:
                line = {"index": index, "source": location, "reward": rewards[position]}
                position += 1
            handle.write(json.dumps(line) + "\n")
    note = f"; {len(missing)} response(s) too long, written with reward null (first at {locations[0]})" if missing else ""
    print(f"[rewardlab] wrote {len(rows)} lines to {out}{note}", file=sys.stderr)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(output_dir=args.output_dir, data=args.data, model=args.model, max_steps=args.max_steps)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .training.config import TrainConfig

    parser = argparse.ArgumentParser(prog="rewardlab", description="Train, label, use and check reward models.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a Bradley-Terry reward model", description=TrainConfig.__doc__)
    p.add_argument("--config", help="YAML or JSON file of TrainConfig options; flags override it")
    _add_config_flags(p, TrainConfig)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("score", help="score responses (or preference pairs) with a reward model")
    p.add_argument("--model", required=True, help="reward model folder (rewardlab's or any HF sequence-classification RM)")
    p.add_argument("--data", required=True, help="jsonl/json/parquet of {prompt, response}, {messages} or {prompt?, chosen, rejected}")
    p.add_argument("--output", required=True, help="scores.jsonl to write, one line per input record")
    p.add_argument("--split", default="train", help="split when --data is a datasets name")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=None, help="default: the model's training max_length")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1 (default: cpu)")
    p.add_argument("--skip-too-long", action="store_true",
                   help="write responses that cannot fit in --max-length with reward null (and say how many) instead of stopping")
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("demo", help="train, evaluate and score on the embedded default (offline)")
    p.add_argument("--output-dir", default=None, help="where to write data and the model (default: a temp folder)")
    p.add_argument("--data", default=None, help="real preference data instead of the built-in set")
    p.add_argument("--model", default="builtin:minilm", help="backbone (default: builtin:minilm)")
    p.add_argument("--max-steps", type=int, default=150)
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()  # the new head's "newly initialized" notice is expected
        transformers.utils.logging.disable_progress_bar()
        return int(args.func(args))
    except RewardlabError as err:
        print(f"rewardlab: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
