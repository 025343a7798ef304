"""Served reward throughput and latency: ``rewardlab serve`` vs an OpenRLHF-style server, same model, one run.

    python benchmarks/bench_serve.py --data ../shared/data/hh-rlhf-harmless/harmless-base-test.jsonl.gz
    python benchmarks/bench_serve.py --data ... --soak 10000      # 10,000 requests: errors, mismatches, server RSS

Both servers run as subprocesses on 127.0.0.1 and are sent the same ``/get_reward`` requests (OpenRLHF's
contract: ``{"query": [texts]}``) by concurrent async clients in this process. Every reward returned is
checked against offline ``LocalScorer`` scores of the same text (``--tolerance``); a wrong or missing
reward counts as a mismatch, a non-200 answer as an error. Scenarios (``--scenarios``):

* ``c32x8``: 32 concurrent clients, 8 texts per request, ``--requests-per-client`` requests each
  (throughput target: rewardlab >= 3x the baseline);
* ``c4x8``: 4 clients, 8 texts per request (latency target: rewardlab's p99 no worse than the baseline's).

``--servers rewardlab,rewardlab-nometrics,rewardlab,rewardlab-nometrics`` measures what ``GET /metrics`` (on by
default) costs: the same server with and without it, alternated.

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


def start(command: list[str], port: int) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
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


def main() -> None:
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
    args = parser.parse_args()
    tolerance = args.tolerance if args.tolerance is not None else (1e-5 if args.precision == "fp32" else 0.05)

    import torch

    from rewardlab.models.io import RewardModelMetadata, build_reward_model, save_pretrained
    from rewardlab.scoring.local import load_reward_model

    folder = args.model
    if folder is None:
        torch.manual_seed(0)
        model, tok = build_reward_model("builtin:minilm")
        folder = tempfile.mkdtemp(prefix="bench-serve-") + "/rm"
        save_pretrained(model, tok, RewardModelMetadata(pooling=model.pooling, max_length=512), folder)
    scorer = load_reward_model(folder, precision=args.precision)
    records = [json.loads(line) for line in gzip.open(args.data, "rt")]
    texts = [r["chosen"].strip() for r in records]
    texts = [t for t in texts if scorer.encode_text(t) is not None][: args.texts]
    expected = dict(zip(texts, scorer.score_texts(texts)))
    del scorer
    servers = {
        "rewardlab": [sys.executable, "-m", "rewardlab.cli", "serve", "--model", folder, "--precision", args.precision],
        "rewardlab-nometrics": [sys.executable, "-m", "rewardlab.cli", "serve", "--model", folder, "--precision", args.precision,
                                "--no-metrics"],
        "baseline": [sys.executable, str(ROOT / "openrlhf_style_server.py"), "--model", folder]
                    + (["--bf16"] if args.precision == "bf16" else []),
    }
    rows = []
    for name in args.servers.split(","):  # a name may repeat (e.g. rewardlab,rewardlab-nometrics,rewardlab,...): runs alternate
        port = free_port()
        proc = start(servers[name] + ["--port", str(port)], port)
        url = f"http://127.0.0.1:{port}"
        try:
            asyncio.run(load(url, [texts[:8]] * 4, 4, expected, tolerance))  # warm-up
            for scenario in args.scenarios.split(","):
                clients, per = (int(x) for x in scenario[1:].split("x"))
                n = clients * args.requests_per_client
                batches = [[texts[(i * per + j) % len(texts)] for j in range(per)] for i in range(n)]
                result = {"server": name, "scenario": scenario, **asyncio.run(load(url, batches, clients, expected, tolerance))}
                print(json.dumps(result), flush=True)
                rows.append(result)
            if args.soak and name == "rewardlab":
                short = sorted(texts, key=len)[:64]
                batches = [[short[i % len(short)]] for i in range(args.soak)]
                result = {"server": name, "scenario": f"soak{args.soak}x1",
                          **asyncio.run(load(url, batches, 32, expected, tolerance, rss_of=proc.pid))}
                print(json.dumps(result), flush=True)
                rows.append(result)
        finally:
            stop(proc)
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
