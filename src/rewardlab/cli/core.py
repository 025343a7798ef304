"""``rewardlab`` train, score and demo: each subcommand calls the Python API one to one."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import SequenceTooLongError

from .common import add_config_flags, add_scorer_flags, build_scorer, config_from_args, json_object

__all__ = ["register"]


def _cmd_train(args: argparse.Namespace) -> int:
    from ..training.config import TrainConfig
    from ..training.loop import train

    result = train(config_from_args(TrainConfig, args))
    print(json.dumps({"output_dir": str(result.output_dir), "steps": result.steps, **result.final_metrics}))
    return 0


SCORE_CHUNK_RECORDS = 4096
"""``rewardlab score`` reads, scores and writes this many records at a time: memory stays flat with
the file's size, each chunk's texts are still length-sorted into batches, and a killed run keeps
every finished chunk for ``--resume``."""


def _score_items(records: list[tuple[str, Any]]) -> tuple[list[str], list[Any], list[str]]:
    """``(kinds, prompts, responses)``: a preference record gives two items (chosen, rejected), any other one."""
    from ..data.readers import pair_sides, to_prompt_response

    kinds: list[str] = []
    prompts: list[Any] = []
    responses: list[str] = []
    for location, record in records:
        if "chosen" in record:
            (chosen_prompt, chosen), (rejected_prompt, rejected) = pair_sides(record, location)
            prompts += [chosen_prompt, rejected_prompt]
            responses += [chosen, rejected]
            kinds.append("pair")
        else:
            prompt, response = to_prompt_response(record, location)
            prompts.append(prompt)
            responses.append(response)
            kinds.append("single")
    return kinds, prompts, responses


def _chunks(data: str, split: str, skip: int = 0) -> Any:
    """Lists of ``(location, record)``, ``SCORE_CHUNK_RECORDS`` at a time, after the first ``skip`` records."""
    from ..data.readers import iter_records

    chunk: list[tuple[str, Any]] = []
    for n, item in enumerate(iter_records(data, split)):
        if n < skip:
            continue
        chunk.append(item)
        if len(chunk) == SCORE_CHUNK_RECORDS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _completed_lines(out: Path) -> int:
    """Complete lines of an earlier run's output (index 0, 1, ...), read line by line; a line cut by
    the kill (no newline) is removed from the file and scored again."""
    from ..errors import DataFormatError

    count, keep = 0, 0
    with out.open("rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                break
            try:
                index = json.loads(line).get("index")
            except (json.JSONDecodeError, AttributeError):
                index = None
            if index != count:
                raise DataFormatError(f"{out}:{count + 1}", f"expected the output line of record {count} to resume from")
            count, keep = count + 1, keep + len(line)
    if keep < out.stat().st_size:
        with out.open("r+b") as handle:
            handle.truncate(keep)
    return count


def _score_run_identity(args: argparse.Namespace, scorer: Any) -> dict[str, Any]:
    """What decides the scores already written: a resumed run must match it (``OUTPUT.run.json``)."""
    from ..data.token_store import source_fingerprint

    model = Path(args.model)
    weights = next((model / n for n in ("model.safetensors", "model.safetensors.index.json") if (model / n).is_file()), model)
    identity = {"data": source_fingerprint(args.data, args.split), "split": args.split, "model": source_fingerprint(str(weights), ""),
                "max_length": getattr(scorer, "max_length", args.max_length), "precision": args.precision,
                "weights": args.weights, "primary": args.primary, "thresholds": args.thresholds, "penalty": str(args.penalty),
                "original_scale": args.original_scale}
    if args.reference or args.reference_free:
        identity.update(reference=args.reference, reference_free=args.reference_free, beta=args.beta, length_normalize=args.length_normalize)
    return json.loads(json.dumps(identity, default=str))


def _check_lengths(local: Any, data: str, split: str) -> int:
    """Tokenize every item once, keeping nothing, and fail before any scoring if one cannot fit; returns the record count."""
    records, too_long, first = 0, 0, None
    for chunk in _chunks(data, split):
        kinds, prompts, responses = _score_items(chunk)
        ids = iter(local.tokenize(prompts, responses, on_too_long="none"))
        for (location, _), kind in zip(chunk, kinds):
            missing = sum(seq is None for seq in [next(ids) for _ in range(2 if kind == "pair" else 1)])
            too_long += missing
            first = first or (location if missing else None)
        records += len(chunk)
    if too_long:
        raise SequenceTooLongError(
            f"{too_long} response(s) do not fit in --max-length {local.max_length} even without their prompt "
            f"(first at {first}); raise --max-length, or pass --skip-too-long to write them with reward null"
        )
    return records


def _local_values(scorer: Any, combine: Any, prompts: list[Any], responses: list[str]) -> list[Any]:
    """One value per item: the reward, ``{"rewards": per head, "reward": combined}`` for several heads,
    or None for a response that cannot fit (only reached with ``--skip-too-long``)."""
    ids = scorer.tokenize(prompts, responses, on_too_long="none")
    named = iter(scorer.named(scorer.score_ids([seq for seq in ids if seq is not None])))
    multi = len(scorer.heads) > 1
    values: list[Any] = []
    for seq in ids:
        if seq is None:
            values.append(None)
            continue
        row = next(named)
        combined = combine(row) if combine else (None if multi else row[scorer.heads[0]])
        values.append({"rewards": row, "reward": combined} if multi else combined)
    return values


def _cmd_score(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..errors import ConfigError
    from ..models.dpo import DPOScorer
    from ..scoring import ConstrainedReward, WeightedSum

    combine = None
    if args.weights is not None:
        combine = WeightedSum(args.weights)
    elif args.primary is not None:
        combine = ConstrainedReward(args.primary, args.thresholds or {}, args.penalty)
    scorer = build_scorer(args, combine)
    settings: dict[str, Any] = {}
    if isinstance(scorer, DPOScorer):
        dpo = scorer.settings
        settings = {"dpo_beta": dpo.beta, "reference_free": dpo.reference_free, "length_normalized": dpo.length_normalize}
    total = None  # records, when the length check counted them
    if not isinstance(scorer, DPOScorer):
        scorer.show_progress = False  # one bar over records below instead of one per chunk
        if not args.skip_too_long:
            total = _check_lengths(scorer, args.data, args.split)  # bad input fails before hours of scoring
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    run_file = out.with_name(out.name + ".run.json")
    identity = _score_run_identity(args, scorer)
    done = 0
    if args.resume and out.exists():
        if not run_file.is_file():
            raise ConfigError(f"cannot resume {out}: {run_file} (what the earlier run scored with) is missing; score without --resume")
        earlier = json.loads(run_file.read_text())
        changed = sorted(k for k in {*earlier, *identity} if earlier.get(k) != identity.get(k))
        if changed:
            raise ConfigError(f"cannot resume {out}: the earlier run differs in {', '.join(changed)} "
                              f"({changed[0]} was {earlier.get(changed[0])!r}, now {identity.get(changed[0])!r}); score without --resume")
        done = _completed_lines(out)
    else:
        out.write_text("")
        run_file.write_text(json.dumps(identity, indent=1))
    written, nulls, first_null = done, 0, None
    with out.open("a") as handle, tqdm(total=total, initial=done, unit="records", desc="scoring") as bar:
        for chunk in _chunks(args.data, args.split, skip=done):
            kinds, prompts, responses = _score_items(chunk)
            values = list(scorer.score(prompts, responses)) if isinstance(scorer, DPOScorer) else \
                _local_values(scorer, combine, prompts, responses)
            position = 0
            for (location, _), kind in zip(chunk, kinds):
                line: dict[str, Any] = {"index": written, "source": location}
                for side, offset in ((("chosen", 0), ("rejected", 1)) if kind == "pair" else (("", 0),)):
                    value = values[position + offset]
                    prefix = f"{side}_" if side else ""
                    if value is None:
                        nulls += 1
                        first_null = first_null or location
                    if isinstance(value, dict):
                        line[f"{prefix}rewards"], line[f"{prefix}reward"] = value["rewards"], value["reward"]
                    else:
                        line[f"{prefix}reward"] = value
                position += 2 if kind == "pair" else 1
                handle.write(json.dumps({**line, **settings}) + "\n")
                written += 1
            handle.flush()  # a finished chunk survives a kill; --resume goes on after it
            bar.update(len(chunk))
    note = f"; {nulls} response(s) too long, written with reward null (first at {first_null})" if nulls else ""
    resumed = f" ({done} from the earlier run)" if done else ""
    print(f"[rewardlab] wrote {written} lines to {out}{resumed}{note}", file=sys.stderr)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(output_dir=args.output_dir, data=args.data, model=args.model, max_steps=args.max_steps)
    return 0


def _cmd_cache(args: argparse.Namespace) -> int:
    import time

    from ..data.token_store import default_cache_dir, list_stores, remove_stores, select_stores

    root = Path(args.dir) if args.dir else default_cache_dir()
    stores = select_stores(list_stores(root), stale_only=args.stale, older_than_days=args.older_than)
    now = time.time()
    for store in stores:
        examples = "-" if store.examples is None else str(store.examples)
        print(f"{store.root.name}  {store.size_bytes / 2**20:8.1f} MB  {examples:>8} examples  "
              f"used {(now - store.last_used) / 86400:6.1f} days ago  {store.status:<14}  {store.source}")
    total = sum(s.size_bytes for s in stores) / 2**20
    if args.clear:
        remove_stores(stores)
        print(f"[rewardlab] deleted {len(stores)} token store(s), {total:.1f} MB, from {root}", file=sys.stderr)
    else:
        stale = sum(s.stale for s in stores)
        print(f"[rewardlab] {len(stores)} token store(s), {total:.1f} MB, in {root} ({stale} stale); "
              "--clear deletes the ones listed", file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    from ..training.config import TrainConfig

    p = sub.add_parser("train", help="train a reward model (any objective)", description=TrainConfig.__doc__)
    p.add_argument("--config", help="YAML or JSON file of TrainConfig options; flags override it")
    add_config_flags(p, TrainConfig)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("score", help="score responses (or preference pairs) with a reward model")
    add_scorer_flags(p)
    p.add_argument("--data", required=True, help="jsonl/json/parquet of {prompt, response}, {messages} or {prompt?, chosen, rejected}")
    p.add_argument("--output", required=True, help="scores.jsonl to write, one line per input record")
    p.add_argument("--split", default="train", help="split when --data is a datasets name")
    p.add_argument("--weights", type=json_object, default=None, metavar="JSON",
                   help='multi-objective: combine heads as a weighted sum, e.g. \'{"helpfulness": 1, "safety": 0.5}\'')
    p.add_argument("--primary", default=None, help="multi-objective: the head to maximize under --thresholds")
    p.add_argument("--thresholds", type=json_object, default=None, metavar="JSON",
                   help='multi-objective: constraint heads and minimum rewards, e.g. \'{"safety": 0.0}\'')
    p.add_argument("--penalty", type=float, default=float("-inf"), help="reward when a constraint fails (default -inf)")
    p.add_argument("--original-scale", action="store_true", help="map regression heads back to the original score scale")
    p.add_argument("--skip-too-long", action="store_true",
                   help="write responses that cannot fit in --max-length with reward null (and say how many) instead of stopping")
    p.add_argument("--resume", action="store_true",
                   help="keep the lines an earlier, interrupted run wrote to --output (same model, data and settings) and score the rest")
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("cache", help="list or delete tokenized-data stores (the token cache)",
                       description="List the token cache's stores (size, examples, last use, status, source); with --clear, delete "
                                   "the ones listed. 'stale' stores can never be read again: unfinished builds, stores of an "
                                   "older rewardlab, and stores whose local data file was deleted or modified.")
    p.add_argument("--dir", default=None, help="cache folder (default: $REWARDLAB_CACHE/tokens or ~/.cache/rewardlab/tokens)")
    p.add_argument("--stale", action="store_true", help="only stores that can never be read again")
    p.add_argument("--older-than", type=float, default=None, metavar="DAYS", help="only stores last used more than DAYS ago")
    p.add_argument("--clear", action="store_true", help="delete the stores listed")
    p.set_defaults(func=_cmd_cache)

    p = sub.add_parser("demo", help="train, evaluate and score on the embedded default (offline)")
    p.add_argument("--output-dir", default=None, help="where to write data and the model (default: a temp folder)")
    p.add_argument("--data", default=None, help="real preference data instead of the built-in set")
    p.add_argument("--model", default="builtin:minilm", help="backbone (default: builtin:minilm)")
    p.add_argument("--max-steps", type=int, default=150)
    p.set_defaults(func=_cmd_demo)
