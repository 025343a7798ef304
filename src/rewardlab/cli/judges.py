"""``rewardlab`` judge and judge-agreement: each subcommand calls the Python API one to one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..jsonsafe import dumps

from ..errors import RewardlabError


__all__ = ["register"]


def _cmd_judge(args: argparse.Namespace) -> int:
    from ..judges.agreement import agreement_summary, self_preference, verbosity_curve
    from ..judges.cache import BudgetExceeded, CachedClient
    from ..judges.clients import LocalHFClient, OpenAIChatClient
    from ..judges.data import read_judge_items
    from ..judges.judge import PairwiseJudge, pairwise_summary

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = read_judge_items(args.data, args.limit)
    client: Any
    if args.backend == "openai":
        if not args.base_url:
            raise RewardlabError("--backend openai needs --base-url (e.g. http://localhost:8000/v1)")
        client = OpenAIChatClient(args.base_url, args.model, args.api_key_env, timeout=args.timeout, max_retries=args.max_retries)
    else:
        client = LocalHFClient(args.model, answer_prefix="Verdict: [[" if args.force_verdict else "")
    if args.force_verdict and args.backend != "local":
        raise RewardlabError("--force-verdict works with --backend local (it writes the start of the model's answer)")
    # the cache key must change with the answer prefix: it is part of what the model is asked
    cached = CachedClient(client, args.cache or out / ("judge_cache_forced.sqlite" if args.force_verdict else "judge_cache.sqlite"),
                          args.max_calls)
    judge = PairwiseJudge(cached, args.template, args.rubric or "", both_orders=not args.single_order,
                          on_disagreement=args.on_disagreement, max_tokens=args.max_tokens,
                          use_logprobs=args.logprobs, concurrency=args.concurrency)
    from tqdm.auto import tqdm

    results, stopped = [], None
    try:
        size = args.chunk or max(1, args.concurrency)  # a chunk is as many pairs as are judged at once: the bar moves per pair
        with tqdm(total=len(items), desc="judging", unit="pair") as bar:
            for start in range(0, len(items), size):  # a budget stop keeps finished chunks
                chunk = items[start : start + size]
                results += judge.judge([i.prompt for i in chunk], [i.response_a for i in chunk], [i.response_b for i in chunk])
                bar.update(len(chunk))
    except BudgetExceeded as err:
        stopped = str(err)
    judged = items[: len(results)]
    with (out / "verdicts.jsonl").open("w") as handle:
        for item, r in zip(judged, results):
            handle.write(dumps({"key": item.key, "source": item.source, "winner": r.winner,
                                     "forward": r.forward.winner, "swapped": r.swapped.winner if r.swapped else None,
                                     "probabilities": r.probabilities, "raw_forward": r.forward.raw,
                                     "raw_swapped": r.swapped.raw if r.swapped else None}) + "\n")
    summary: dict[str, Any] = {"judge_model": args.model, "backend": args.backend, "template": args.template,
                               "both_orders": not args.single_order, "temperature": 0.0, **pairwise_summary(results),
                               "backend_calls": cached.backend_calls, "cache_hits": cached.cache_hits, "stopped": stopped}
    if any(i.human_votes for i in judged):
        summary["agreement"] = agreement_summary([r.winner for r in results], [list(i.human_votes) for i in judged])
    summary["verbosity"] = verbosity_curve([r.winner for r in results], [len(i.response_a.split()) for i in judged],
                                           [len(i.response_b.split()) for i in judged])
    if args.candidate_models:
        summary["self_preference_risk"] = self_preference(args.model, args.candidate_models.split(","))
    (out / "summary.json").write_text(dumps(summary, indent=2))
    print(dumps({k: v for k, v in summary.items() if k != "verbosity"}, indent=2))
    return 0 if stopped is None else 3


def _cmd_judge_agreement(args: argparse.Namespace) -> int:
    from ..judges.agreement import agreement_summary
    from ..judges.data import read_judge_items, read_verdict_file

    items = read_judge_items(args.humans)
    table = {}
    for path in args.verdicts:
        verdicts = read_verdict_file(path)
        missing = [i.key for i in items if i.key not in verdicts]
        if missing:
            raise RewardlabError(f"{path}: no verdict for {len(missing)} items (first idx {missing[0]})")
        table[Path(path).name] = agreement_summary([verdicts[i.key] for i in items], [list(i.human_votes) for i in items])
    for name, row in table.items():  # the human-readable summary; the JSON below is for scripts
        print(f"  {name}: agrees with the human majority on {row['judge_human_agreement']:.1%} of {row['compared_items']} items "
              f"(Cohen's kappa {row['judge_human_kappa']:.3f}); humans agree with each other {row['human_human_agreement']:.1%} "
              f"(Fleiss' kappa {row['human_fleiss_kappa']:.3f}); {row['judge_unparsed']} unparsed", file=sys.stderr)
    print(dumps(table, indent=2))
    if args.output:
        Path(args.output).write_text(dumps(table, indent=2))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("judge", help="pairwise LLM-as-judge, both orders, cached, with flip rate and human agreement")
    p.add_argument("--data", required=True, help="pairs (any pair format; A = chosen) or the PandaLM test set layout")
    p.add_argument("--output-dir", required=True, help="verdicts.jsonl, summary.json and the cache go here")
    p.add_argument("--backend", choices=["local", "openai"], default="local", help="local: a transformers model (--model); openai: an OpenAI-compatible server (--base-url)")
    p.add_argument("--model", default="builtin:smollm2", help="local: a causal LM folder or builtin:smollm2; openai: the model name")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key (never logged)")
    p.add_argument("--template", default="pairwise", help="pairwise | reference | a template file")
    p.add_argument("--rubric", default=None, help="extra instructions inserted into the template")
    p.add_argument("--single-order", action="store_true", help="judge in the given order only (default: both orders)")
    p.add_argument("--on-disagreement", choices=["tie", "average"], default="tie", help="when the two orders disagree: call it a tie, or average their probabilities")
    p.add_argument("--logprobs", action="store_true", help="ask for token log-probabilities (probability-weighted verdicts)")
    p.add_argument("--force-verdict", action="store_true",
                   help="local backend: start the answer with 'Verdict: [[' so weak models emit a parseable verdict (no reasoning)")
    p.add_argument("--cache", default=None, help="SQLite cache file (default: OUTPUT_DIR/judge_cache.sqlite)")
    p.add_argument("--max-calls", type=int, default=None, help="stop cleanly after this many backend calls (cache hits are free)")
    p.add_argument("--limit", type=int, default=None, help="judge only the first N pairs")
    p.add_argument("--max-tokens", type=int, default=256, help="most tokens the judge may write per verdict")
    p.add_argument("--concurrency", type=int, default=4, help="judge calls in flight at once (HTTP backend)")
    p.add_argument("--chunk", type=int, default=None,
                   help="pairs judged per chunk (a budget stop keeps finished chunks); default: --concurrency")
    p.add_argument("--timeout", type=float, default=60.0, help="total seconds per HTTP request, reply included")
    p.add_argument("--max-retries", type=int, default=5, help="retries of 429/5xx/unusable replies, with exponential backoff")
    p.add_argument("--candidate-models", default=None, help="comma-separated names of the models that wrote the responses (self-preference check)")
    p.set_defaults(func=_cmd_judge)

    p = sub.add_parser("judge-agreement", help="agreement of shipped judge verdict files with human votes")
    p.add_argument("--humans", required=True, help="PandaLM test set with annotator1..3")
    p.add_argument("--verdicts", required=True, nargs="+", help="verdict files (pandalm_result or gpt_result, keyed by idx)")
    p.add_argument("--output", default=None, help="write the table as JSON")
    p.set_defaults(func=_cmd_judge_agreement)
