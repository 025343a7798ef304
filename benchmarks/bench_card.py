"""Data card memory: peak RSS of ``rewardlab data card`` at N vs 10N pairs (the card streams; memory should not grow).

    python benchmarks/bench_card.py --pairs 100000,1000000

Writes synthetic pair files (prompt of 14 words, replies of 5-80 words drawn from a fixed vocabulary, seed 0) into a
temporary folder, runs the card on each in its own process and reads the child's peak RSS from ``getrusage``.
There is no peer tool that writes a comparable card; the figure to compare is the card at N against itself at 10N.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_pairs(path: Path, n: int) -> None:
    rng = random.Random(0)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau".split()
    with path.open("w") as handle:
        for i in range(n):
            handle.write(json.dumps({"prompt": f"question {i} " + " ".join(rng.choices(words, k=12)),
                                     "chosen": " ".join(rng.choices(words, k=rng.randint(5, 80))),
                                     "rejected": " ".join(rng.choices(words, k=rng.randint(5, 80)))}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="100000,1000000", help="pair counts, comma-separated")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in args.pairs.split(",")):
            data = Path(tmp) / f"p{n}.jsonl"
            write_pairs(data, n)
            start = time.perf_counter()
            code = f"import sys; from rewardlab.cli import main; sys.exit(main(['data', 'card', '--data', {str(data)!r}, '--output-dir', {tmp + f'/card{n}'!r}]))"
            subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
            seconds = time.perf_counter() - start
            peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child so far
            rows.append((n, data.stat().st_size / 2**20, seconds, peak_mb))
    print("| pairs | file MB | seconds | peak RSS MB (largest child so far) |\n| --- | --- | --- | --- |")
    for n, size, seconds, peak in rows:
        print(f"| {n:,} | {size:.0f} | {seconds:.1f} | {peak:.0f} |")


if __name__ == "__main__":
    main()
