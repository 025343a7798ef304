"""``rewardlab`` judge and judge-agreement: each subcommand calls the Python API one to one."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import RewardlabError
from ..jsonsafe import dumps
from .common import add_config_flags


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


@dataclass(frozen=True, kw_only=True)
class JudgeOptions:
    """Options of ``rewardlab judge``: pairwise LLM-as-judge, both orders, cached, with flip rate and human
    agreement."""

    data: str
    """pairs (any pair format; A = chosen) or the PandaLM test set layout"""
    output_dir: str
    """verdicts.jsonl, summary.json and the cache go here"""
    backend: Literal["local", "openai"] = "local"
    """local: a transformers model (--model); openai: an OpenAI-compatible server (--base-url)"""
    model: str = "builtin:smollm2"
    """local: a causal LM folder or builtin:smollm2; openai: the model name"""
    base_url: str | None = None
    """OpenAI-compatible endpoint, e.g. http://localhost:8000/v1"""
    api_key_env: str = "OPENAI_API_KEY"
    """environment variable holding the API key (never logged)"""
    template: str = "pairwise"
    """pairwise | reference | a template file"""
    rubric: str | None = None
    """extra instructions inserted into the template"""
    single_order: bool = False
    """judge in the given order only (default: both orders)"""
    on_disagreement: Literal["tie", "average"] = "tie"
    """when the two orders disagree: call it a tie, or average their probabilities"""
    logprobs: bool = False
    """ask for token log-probabilities (probability-weighted verdicts)"""
    force_verdict: bool = False
    """local backend: start the answer with 'Verdict: [[' so weak models emit a parseable verdict (no reasoning)"""
    cache: str | None = None
    """SQLite cache file (default: OUTPUT_DIR/judge_cache.sqlite)"""
    max_calls: int | None = None
    """stop cleanly after this many backend calls (cache hits are free)"""
    limit: int | None = None
    """judge only the first N pairs"""
    max_tokens: int = 256
    """most tokens the judge may write per verdict"""
    concurrency: int = 4
    """judge calls in flight at once (HTTP backend)"""
    chunk: int | None = None
    """pairs judged per chunk (a budget stop keeps finished chunks); default: --concurrency"""
    timeout: float = 60.0
    """total seconds per HTTP request, reply included"""
    max_retries: int = 5
    """retries of 429/5xx/unusable replies, with exponential backoff"""
    candidate_models: str | None = None
    """comma-separated names of the models that wrote the responses (self-preference check)"""


@dataclass(frozen=True, kw_only=True)
class JudgeAgreementOptions:
    """Options of ``rewardlab judge-agreement``: agreement of shipped judge verdict files with human votes."""

    humans: str
    """PandaLM test set with annotator1..3"""
    output: str | None = None
    """write the table as JSON"""
    verdicts: tuple[str, ...]
    """verdict files (pandalm_result or gpt_result, keyed by idx)"""


def register(sub: Any) -> None:
    p = sub.add_parser("judge", help="pairwise LLM-as-judge, both orders, cached, with flip rate and human agreement")
    add_config_flags(p, JudgeOptions, defaults=True)
    p.set_defaults(func=_cmd_judge)

    p = sub.add_parser("judge-agreement", help="agreement of shipped judge verdict files with human votes")
    add_config_flags(p, JudgeAgreementOptions, defaults=True)
    p.set_defaults(func=_cmd_judge_agreement)
