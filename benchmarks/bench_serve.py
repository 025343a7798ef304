"""Served reward throughput and latency: ``rewardlab serve`` vs an OpenRLHF-style server, same model, one run.

    python benchmarks/bench_serve.py --data ../shared/data/hh-rlhf-harmless/harmless-base-test.jsonl.gz
    python benchmarks/bench_serve.py --data ... --soak 10000      # 10,000 requests: errors, mismatches, server RSS

Both servers run as subprocesses on 127.0.0.1 and are sent the same ``/get_reward`` requests (OpenRLHF's
contract: ``{"query": [texts]}``) by concurrent async clients in this process. Every reward returned is
checked against offline ``LocalScorer`` scores of the same text (``--tolerance``); a wrong or missing
reward counts as a mismatch, a non-200 answer as an error. Scenarios (``--scenarios``):

* ``c32x8``: 32 concurrent clients, 8 texts per request, ``--requests-per-client`` requests each
  (throughput target: rewardlab >= 3x the baseline);
* ``c4x8``: 4 clients, 8 texts per request (latency target: rewardlab's p99 no worse than the baseline's);
* ``openrlhf8``, ``openrlhf32``, ``openrlhf128``, ``openrlhf512``: OpenRLHF 0.11.2's own reward client (its agent
  executor's ``_fetch_rewards_via_http``, one query per call, a new aiohttp session each), that many rollouts in
  flight, ``--openrlhf-requests`` calls (needs ``openrlhf`` installed with ``--no-deps``, as ``.ci/run`` does).

* ``mixed8``, ``mixed32``, ...: the same client, C calls in flight, each with 1, 2, 4, 8, 16 or 32 queries
  (seeded draw), ``--openrlhf-requests`` texts in all (cycling through ``--texts`` distinct texts: give at least as
  many, so that no text repeats);
* ``grpo8``, ``grpo32``, ``grpo128``, ``grpo512``: the same client and calls, but the rollouts are
  ``--group-size`` samples of each prompt (GRPO's / RLOO's ``n_samples_per_prompt``), launched together as a
  trainer's rollouts of one prompt are: an HH prompt rendered with the model's chat template, followed by its own
  chosen and rejected replies and the chosen replies of the next transcripts (real reply lengths). Every text is
  distinct. A decoder RM computes a prompt shared by samples in one batch once (``share_prefix``, on by default on
  CPUs); an encoder cannot (its rewards would change), so there these calls cost what distinct texts cost.

``--compute-bound`` also times the model alone, in-process, on the same texts (batches of 64): the ceiling a server
could reach, and the share of it that is tokenization; for grpo scenarios also with prefix sharing off (the
ceiling of a server that scores each text alone).

``--model builtin:NAME`` serves that packaged backbone with a fresh seeded head (e.g. ``builtin:smollm2``).

``--servers rewardlab,rewardlab-nometrics,rewardlab,rewardlab-nometrics`` measures what ``GET /metrics`` (on by
default) costs: the same server with and without it, alternated. ``rewardlab-nobudget`` is ``serve --batch-tokens
none``, ``rewardlab-tokensN`` is ``serve --batch-tokens N``; ``NAME-passive`` runs server NAME with
``OMP_WAIT_POLICY=PASSIVE``.

The model is MiniLM (``--model``; default builtin:minilm with a fresh seeded head, saved to a temp folder),
texts are HH transcripts that fit 512 tokens. Prints a JSON line per run and a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], port: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=None if env is None else {**os.environ, **env})
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError("server did not become healthy")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


async def load(url: str, batches: list[list[str]], clients: int, expected: dict[str, float], tolerance: float,
               rss_of: int | None = None) -> dict:
    """Each client sends its share of ``batches`` one after another; returns throughput, latencies and checks."""
    import httpx
    import psutil

    latencies: list[float] = []
    errors = mismatches = 0
    rss: list[float] = []
    queue = list(enumerate(batches))
    done = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors, mismatches, done
        while queue:
            _, texts = queue.pop()
            began = time.perf_counter()
            try:
                reply = await http.post(url + "/get_reward", json={"query": texts})
            except httpx.HTTPError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - began)
            if reply.status_code != 200:
                errors += 1
                continue
            rewards = reply.json().get("rewards", [])
            if len(rewards) != len(texts) or any(abs(r - expected[t]) > tolerance for r, t in zip(rewards, texts)):
                mismatches += 1
            done += 1
            if rss_of is not None and done % 1000 == 0:
                rss.append(psutil.Process(rss_of).memory_info().rss / 2**20)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        began = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        elapsed = time.perf_counter() - began
    texts = sum(len(b) for b in batches)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {"requests": len(batches), "texts": texts, "seconds": elapsed, "texts_per_s": texts / elapsed,
            "requests_per_s": len(batches) / elapsed, "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * q[98], "errors": errors, "mismatches": mismatches, "rss_mb_every_1000": rss}


async def load_openrlhf(url: str, calls: list[list[str]], concurrency: int, expected: dict[str, float], tolerance: float) -> dict:
    """OpenRLHF 0.11.2's own reward client (``SingleTurnAgentExecutor._fetch_rewards_via_http``: one aiohttp session
    per call, five tries), each call's queries as one request (one query per call as its rollouts send them),
    ``concurrency`` calls in flight."""
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    executor = SingleTurnAgentExecutor(remote_rm_url=url + "/get_reward")
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    mismatches = errors = 0

    async def rollout(queries: list[str]) -> None:
        nonlocal mismatches, errors
        async with gate:
            began = time.perf_counter()
            try:
                (reply,) = await executor._fetch_rewards_via_http(queries, [""] * len(queries), [""] * len(queries))
            except RuntimeError:  # OpenRLHF's client gave up after five tries
                errors += 1
                return
            latencies.append(time.perf_counter() - began)
            rewards = reply.get("rewards") or []
            if len(rewards) != len(queries) or any(abs(r - expected[t]) > tolerance for r, t in zip(rewards, queries)):
                mismatches += 1

    began = time.perf_counter()
    await asyncio.gather(*(rollout(c) for c in calls))
    elapsed = time.perf_counter() - began
    texts = sum(len(c) for c in calls)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {"requests": len(calls), "texts": texts, "seconds": elapsed, "texts_per_s": texts / elapsed,
            "requests_per_s": len(calls) / elapsed, "p50_ms": 1000 * statistics.median(latencies), "p99_ms": 1000 * q[98],
            "errors": errors, "mismatches": mismatches, "rss_mb_every_1000": []}


def mixed_calls(texts: list[str], total: int, sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32), seed: int = 0) -> list[list[str]]:
    """``total`` texts (cycling through ``texts``) cut into calls of sizes drawn from ``sizes`` (seeded)."""
    import random

    pick, calls, i = random.Random(seed), [], 0
    while i < total:
        n = min(pick.choice(sizes), total - i)
        calls.append([texts[(i + j) % len(texts)] for j in range(n)])
        i += n
    return calls


def grpo_texts(records: list[dict], tokenizer, group: int, prompts: int, fits) -> list[str]:
    """``prompts`` groups of ``group`` rendered rollouts (prompt + reply, the chat template's text), one group after
    the other: each HH prompt with its own chosen and rejected replies, then the chosen replies of the transcripts
    after it. Groups with a text that does not ``fits`` are skipped."""
    from rewardlab.data.transcripts import parse_hh_transcript

    parsed = [(*parse_hh_transcript(r["chosen"]), parse_hh_transcript(r["rejected"])[1]) for r in records]  # turns, chosen, rejected
    out: list[str] = []
    for i, (turns, chosen, rejected) in enumerate(parsed):
        if len(out) >= group * prompts:
            break
        replies = [chosen, rejected] + [parsed[(i + j) % len(parsed)][1] for j in range(1, group - 1)]
        messages = [{"role": m.role, "content": m.content} for m in turns]
        texts = [tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": r}], tokenize=False)
                 for r in replies]
        if len(set(texts)) == group and all(fits(t) for t in texts):
            out += texts
    if len(out) < group * prompts:
        raise SystemExit(f"only {len(out) // group} prompts of {group} distinct samples fit; {prompts} asked for")
    return out


def compute_bound(folder: str, precision: str, texts: list[str], batch: int, share_prefix: bool | str = "auto") -> dict:
    """The model alone on the same texts, in-process: tokenization, then the forward passes of ``batch``-text batches
    (what a server spends at best); texts/s of each part."""
    import torch

    from rewardlab.scoring.local import load_reward_model

    scorer = load_reward_model(folder, precision=precision, share_prefix=share_prefix)
    began = time.perf_counter()
    tokens = sum(len(scorer.encode_text(text) or ()) for text in texts)
    tokenize_s = time.perf_counter() - began
    scorer.score_texts(texts[:batch])  # warm-up
    began = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(texts), batch):
            scorer.score_texts(texts[i : i + batch])
    total_s = time.perf_counter() - began
    out = {"tokenize_texts_per_s": len(texts) / tokenize_s, "score_texts_per_s": len(texts) / total_s,
           "forward_share": max(0.0, 1 - tokenize_s / total_s)}
    if not scorer.shares_prefixes:  # every token computed: the forward's arithmetic rate against the machine's matmul
        out.update(arithmetic_rate(scorer, tokens, total_s))
    return out


def arithmetic_rate(scorer, tokens: int, seconds: float) -> dict:
    """GFLOP/s of scoring ``tokens`` tokens in ``seconds`` (``2 x linear-layer weights x tokens``, the one-logit head
    left out; attention scores, a few percent at these lengths, and the tokenization inside ``seconds`` make it a
    lower bound) and of one large matmul of the model's own shapes (``(2048, d) @ (d, 4d)`` in the model's dtype):
    how far batching is from the machine's arithmetic bound."""
    import torch

    weights = sum(m.weight.numel() for m in scorer.model.modules() if isinstance(m, torch.nn.Linear) and m.weight.shape[0] > 1)
    first = next(m for m in scorer.model.modules() if isinstance(m, torch.nn.Linear))
    d, dtype = first.weight.shape[1], first.weight.dtype
    a, b = torch.randn(2048, d, dtype=dtype), torch.randn(d, 4 * d, dtype=dtype)
    for _ in range(3):
        a @ b
    began, runs = time.perf_counter(), 20
    for _ in range(runs):
        a @ b
    matmul_s = (time.perf_counter() - began) / runs
    return {"model_gflops_per_s": 2 * weights * tokens / seconds / 1e9, "matmul_gflops_per_s": 2 * 2048 * d * 4 * d / matmul_s / 1e9}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default=None, help="a saved reward-model folder (default: MiniLM with a fresh head)")
    parser.add_argument("--texts", type=int, default=256, help="distinct texts the requests are drawn from")
    parser.add_argument("--requests-per-client", type=int, default=8)
    parser.add_argument("--scenarios", default="c32x8,c4x8")
    parser.add_argument("--servers", default="rewardlab,baseline")
    parser.add_argument("--soak", type=int, default=0, help="also send this many 1-text requests from 32 clients to rewardlab")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="largest reward difference from the offline score (default 1e-5 in fp32, 0.05 in bf16)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="both servers' weights")
    parser.add_argument("--openrlhf-requests", type=int, default=512,
                        help="texts per openrlhfC / grpoC / mixedC scenario (one per call but in mixedC; at least 2 x C)")
    parser.add_argument("--compute-bound", action="store_true", help="also time the model alone on the same texts")
    parser.add_argument("--group-size", type=int, default=8, help="samples per prompt in grpoC scenarios")
    return parser.parse_args()


def prepare(args: argparse.Namespace) -> tuple[str, list[str], dict[int, list[str]], dict[str, float]]:
    """The served folder, the distinct texts, the grpo rollouts per concurrency and every text's offline reward."""
    import torch

    from rewardlab.models.io import RewardModelMetadata, build_reward_model, save_pretrained
    from rewardlab.scoring.local import load_reward_model

    folder = args.model
    if folder is None or folder.startswith("builtin:"):
        torch.manual_seed(0)
        model, tok = build_reward_model(folder or "builtin:minilm")
        folder = tempfile.mkdtemp(prefix="bench-serve-") + "/rm"
        save_pretrained(model, tok, RewardModelMetadata(pooling=model.pooling, max_length=512), folder)
    scorer = load_reward_model(folder, precision=args.precision)
    records = [json.loads(line) for line in gzip.open(args.data, "rt")]
    texts = [r["chosen"].strip() for r in records]
    texts = [t for t in texts if scorer.encode_text(t) is not None][: args.texts]
    expected = dict(zip(texts, scorer.score_texts(texts)))
    grpo: dict[int, list[str]] = {}  # in flight -> the rollouts sent
    for scenario in args.scenarios.split(","):
        if scenario.startswith("grpo"):
            concurrency = int(scenario[len("grpo"):])
            calls = max(args.openrlhf_requests, 2 * concurrency)
            grpo[concurrency] = grpo_texts(records, scorer.tokenizer, args.group_size, -(-calls // args.group_size),
                                           lambda t: scorer.encode_text(t) is not None)
    for sent in grpo.values():
        missing = [t for t in sent if t not in expected]
        expected.update(zip(missing, scorer.score_texts(missing)))
    return folder, texts, grpo, expected


def server_command(name: str, folder: str, precision: str) -> tuple[list[str], dict[str, str] | None]:
    """The command (and extra environment) of server ``name``: rewardlab, rewardlab-nobudget, rewardlab-nometrics,
    rewardlab-tokensN, baseline, and any of them with ``-passive`` (``OMP_WAIT_POLICY=PASSIVE``)."""
    base, passive = name.removesuffix("-passive"), name.endswith("-passive")
    serve = [sys.executable, "-m", "rewardlab.cli", "serve", "--model", folder, "--precision", precision]
    extra = {"rewardlab": [], "rewardlab-nobudget": ["--batch-tokens", "none"], "rewardlab-nometrics": ["--no-metrics"]}
    if base == "baseline":
        command = [sys.executable, str(ROOT / "openrlhf_style_server.py"), "--model", folder] + (
            ["--bf16"] if precision == "bf16" else [])
    elif base.startswith("rewardlab-tokens"):
        command = serve + ["--batch-tokens", base.removeprefix("rewardlab-tokens")]
    else:
        command = serve + extra[base]
    return command, {"OMP_WAIT_POLICY": "PASSIVE"} if passive else None


def run_scenarios(name: str, url: str, pid: int, args: argparse.Namespace, texts: list[str], grpo: dict[int, list[str]],
                  expected: dict[str, float], tolerance: float) -> list[dict]:
    rows = []
    asyncio.run(load(url, [texts[:8]] * 4, 4, expected, tolerance))  # warm-up
    for scenario in args.scenarios.split(","):
        if scenario.startswith(("openrlhf", "grpo", "mixed")):  # OpenRLHF's own client, C calls in flight
            concurrency = int(scenario.removeprefix("openrlhf").removeprefix("grpo").removeprefix("mixed"))
            total = max(args.openrlhf_requests, 2 * concurrency)
            if scenario.startswith("mixed"):
                sent = mixed_calls(texts, total)
            else:
                sent = [[t] for t in (grpo[concurrency] if scenario.startswith("grpo") else
                                      [texts[i % len(texts)] for i in range(total)])]
            result = asyncio.run(load_openrlhf(url, sent, concurrency, expected, tolerance))
        else:
            clients, per = (int(x) for x in scenario[1:].split("x"))
            n = clients * args.requests_per_client
            batches = [[texts[(i * per + j) % len(texts)] for j in range(per)] for i in range(n)]
            result = asyncio.run(load(url, batches, clients, expected, tolerance))
        rows.append({"server": name, "scenario": scenario, **result})
        print(json.dumps(rows[-1]), flush=True)
    if args.soak and name == "rewardlab":
        short = sorted(texts, key=len)[:64]
        batches = [[short[i % len(short)]] for i in range(args.soak)]
        rows.append({"server": name, "scenario": f"soak{args.soak}x1",
                     **asyncio.run(load(url, batches, 32, expected, tolerance, rss_of=pid))})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def report_compute_bound(args: argparse.Namespace, folder: str, texts: list[str], grpo: dict[int, list[str]]) -> None:
    bounds = [("distinct HH texts", texts, "auto")]
    if grpo:
        samples = max(grpo.values(), key=len)
        bounds += [(f"grpo samples ({args.group_size} per prompt)", samples, "auto"),
                   (f"grpo samples ({args.group_size} per prompt), prefix sharing off", samples, False)]
    for label, sent, share in bounds:
        bound = compute_bound(folder, args.precision, sent, 64, share)
        print(json.dumps({"compute_bound": bound, "texts": label}), flush=True)
        print(f"\ncompute bound, {label} (in-process, batches of 64): {bound['score_texts_per_s']:.1f} texts/s scored, "
              f"tokenization alone {bound['tokenize_texts_per_s']:.0f} texts/s, forward {100 * bound['forward_share']:.0f}% "
              f"of the time" + (f"; {bound['model_gflops_per_s']:.0f} GFLOP/s against {bound['matmul_gflops_per_s']:.0f} for one "
                                 f"large matmul of the model's shapes" if "model_gflops_per_s" in bound else ""))


def main() -> None:
    args = parse_args()
    tolerance = args.tolerance if args.tolerance is not None else (1e-5 if args.precision == "fp32" else 0.05)
    folder, texts, grpo, expected = prepare(args)
    rows = []
    for name in args.servers.split(","):  # a name may repeat (e.g. rewardlab,rewardlab-nometrics,rewardlab,...): runs alternate
        port = free_port()
        command, env = server_command(name, folder, args.precision)
        proc = start(command + ["--port", str(port)], port, env)
        try:
            rows += run_scenarios(name, f"http://127.0.0.1:{port}", proc.pid, args, texts, grpo, expected, tolerance)
        finally:
            stop(proc)
    if args.compute_bound:
        report_compute_bound(args, folder, texts, grpo)
    print(f"\nbench_serve: {os.cpu_count()} CPUs, model {args.model or 'builtin:minilm (fresh head)'} {args.precision}, "
          f"{len(texts)} HH texts, tolerance {tolerance}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    print("| server | scenario | requests | texts/s | p50 ms | p99 ms | errors | mismatches |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['server']} | {r['scenario']} | {r['requests']} | {r['texts_per_s']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} "
              f"| {r['errors']} | {r['mismatches']} |")


if __name__ == "__main__":
    main()
