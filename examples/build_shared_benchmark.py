"""Build a RewardBench-layout file from ../shared/data: HH-RLHF harmless as Safety, PandaLM
human-majority pairs as Chat. Usage: python examples/build_shared_benchmark.py OUT.jsonl [N_HH]"""

import gzip
import json
import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    out, n_hh = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 500
    rows = [{**json.loads(line), "subset": "hh-harmless"}
            for line in gzip.open(SHARED / "hh-rlhf-harmless" / "harmless-base-test.jsonl.gz", "rt").readlines()[-n_hh:]]
    for record in json.loads((SHARED / "pandalm-testset" / "testset-v1.json").read_text()):
        votes = [record[f"annotator{k}"] for k in (1, 2, 3)]
        majority = max((1, 2), key=votes.count)
        if votes.count(majority) < 2:
            continue  # no majority for either response
        prompt = record["instruction"] + ("\n\n" + record["input"] if record["input"] else "")
        # A few upstream responses are JSON booleans (the model answered "true"); keep them as text.
        texts = [r if isinstance(r, str) else json.dumps(r) for r in (record["response1"], record["response2"])]
        good, bad = texts[:: 1 if majority == 1 else -1]
        rows.append({"prompt": prompt, "chosen": good, "rejected": bad, "subset": "pandalm"})
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(rows)} items to {out}")


if __name__ == "__main__":
    main()
