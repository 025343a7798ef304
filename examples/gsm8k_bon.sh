#!/usr/bin/env bash
# Outcome RM on GSM8K example solutions, then best-of-N curves on held-out questions:
# majority vote vs the ORM vs the oracle. Needs ../shared/data/gsm8k.
set -euo pipefail
SRC=${SRC:-../shared/data/gsm8k/example_model_solutions.jsonl}
OUT=${OUT:-runs/gsm8k-bon}
mkdir -p "$OUT"
python - "$SRC" "$OUT" <<'PY'
import json, sys
src, out = sys.argv[1], sys.argv[2]
rows = [json.loads(line) for line in open(src)]
train, held = rows[:900], rows[900:]
with open(f"{out}/pairs.jsonl", "w") as f:  # correct vs incorrect solutions of the same question
    for r in train:
        sols = [v for v in r.values() if isinstance(v, dict) and "solution" in v]
        for good in (s for s in sols if s["is_correct"]):
            for bad in (s for s in sols if not s["is_correct"]):
                f.write(json.dumps({"prompt": r["question"], "chosen": good["solution"], "rejected": bad["solution"]}) + "\n")
with open(f"{out}/heldout.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in held)
PY
rewardlab train --model builtin:minilm --data "$OUT/pairs.jsonl" --output-dir "$OUT/orm" --max-length 384 \
  --batch-size 8 --max-steps 150 --learning-rate 5e-5 --eval-every 150 --no-show-progress
rewardlab bon-curve --data "$OUT/heldout.jsonl" --model "$OUT/orm" --max-length 512 --output-dir "$OUT/curve"
