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


def _read_score_inputs(data: str, split: str) -> tuple[list[tuple[str, str]], list[Any], list[str], list[int]]:
    """Records to score: ``rows`` of (kind, location), flattened prompts/responses, item -> row."""
    from .data.readers import iter_records, pair_sides, to_prompt_response

    rows: list[tuple[str, str]] = []
    prompts: list[Any] = []
    responses: list[str] = []
    item_row: list[int] = []
    for location, record in iter_records(data, split):
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
    return rows, prompts, responses, item_row


def _cmd_score(args: argparse.Namespace) -> int:
    from .models.dpo import DPOSettings, load_dpo_scorer
    from .scoring import ConstrainedReward, WeightedSum, load_reward_model

    rows, prompts, responses, item_row = _read_score_inputs(args.data, args.split)
    settings: dict[str, Any] = {}
    missing: list[int] = []
    values: list[Any]
    if args.reference or args.reference_free:
        dpo = DPOSettings(args.beta, args.reference_free, args.length_normalize)
        settings = {"dpo_beta": dpo.beta, "reference_free": dpo.reference_free, "length_normalized": dpo.length_normalize}
        scorer = load_dpo_scorer(args.model, args.reference, dpo, args.precision, args.max_length or 1024, args.batch_size, args.device)
        values = scorer.score(prompts, responses)
    else:
        combine = None
        if args.weights is not None:
            combine = WeightedSum(args.weights)
        elif args.primary is not None:
            combine = ConstrainedReward(args.primary, args.thresholds or {}, args.penalty)
        local = load_reward_model(args.model, device=args.device, precision=args.precision, batch_size=args.batch_size,
                                  max_length=args.max_length, combine=combine, original_scale=args.original_scale)
        local.show_progress = True
        ids = local.tokenize(prompts, responses, on_too_long="none")
        missing = [i for i, seq in enumerate(ids) if seq is None]
        if missing and not args.skip_too_long:
            raise SequenceTooLongError(
                f"{len(missing)} response(s) do not fit in --max-length {local.max_length} even without their prompt "
                f"(first at {rows[item_row[missing[0]]][1]}); raise --max-length, or pass --skip-too-long to write "
                "them with reward null"
            )
        named = iter(local.named(local.score_ids([seq for seq in ids if seq is not None])))
        multi = len(local.heads) > 1
        values = []
        for seq in ids:
            if seq is None:
                values.append(None)
                continue
            row = next(named)
            combined = combine(row) if combine else (None if multi else row[local.heads[0]])
            values.append({"rewards": row, "reward": combined} if multi else combined)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    position = 0
    with out.open("w") as handle:
        for index, (kind, location) in enumerate(rows):
            line: dict[str, Any] = {"index": index, "source": location}
            sides = (("chosen", 0), ("rejected", 1)) if kind == "pair" else (("", 0),)
            for side, offset in sides:
                value = values[position + offset]
                prefix = f"{side}_" if side else ""
                if isinstance(value, dict):
                    line[f"{prefix}rewards"], line[f"{prefix}reward"] = value["rewards"], value["reward"]
                else:
                    line[f"{prefix}reward"] = value
            position += len(sides)
            handle.write(json.dumps({**line, **settings}) + "\n")
    note = f"; {len(missing)} response(s) too long, written with reward null (first at {rows[item_row[missing[0]]][1]})" if missing else ""
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

    p = sub.add_parser("train", help="train a reward model (any objective)", description=TrainConfig.__doc__)
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
    p.add_argument("--weights", type=_json_object, default=None, metavar="JSON",
                   help='multi-objective: combine heads as a weighted sum, e.g. \'{"helpfulness": 1, "safety": 0.5}\'')
    p.add_argument("--primary", default=None, help="multi-objective: the head to maximize under --thresholds")
    p.add_argument("--thresholds", type=_json_object, default=None, metavar="JSON",
                   help='multi-objective: constraint heads and minimum rewards, e.g. \'{"safety": 0.0}\'')
    p.add_argument("--penalty", type=float, default=float("-inf"), help="reward when a constraint fails (default -inf)")
    p.add_argument("--original-scale", action="store_true", help="map regression heads back to the original score scale")
    p.add_argument("--reference", default=None, help="DPO implicit reward: the reference model (--model is the policy)")
    p.add_argument("--reference-free", action="store_true", help="DPO implicit reward with log pi_ref = 0")
    p.add_argument("--beta", type=float, default=0.1, help="DPO beta (default 0.1)")
    p.add_argument("--length-normalize", action="store_true", help="DPO: mean instead of sum of response token log-probs")
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
