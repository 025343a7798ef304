#!/usr/bin/env bash
# Multi-objective regression RM on USR Topical-Chat (6 human-rated attributes, 360 responses),
# then scoring with a constrained combination. Needs ../shared/data (see its SOURCE.md).
set -euo pipefail
DATA=${DATA:-../shared/data/usr-topical-chat/topical_chat.json}
OUT=${OUT:-runs/usr-minilm}
rewardlab train --model builtin:minilm --data "$DATA" --output-dir "$OUT" \
  --objective regression --heads understandability,naturalness,coherence,engagingness,groundedness,overall \
  --normalize-targets global --eval-fraction 0.2 --max-length 256 --batch-size 8 --num-epochs 4 \
  --learning-rate 5e-5 --eval-every 36 --no-show-progress
rewardlab score --model "$OUT" --data "$DATA" --output "$OUT/scores.jsonl" --original-scale \
  --primary overall --thresholds '{"groundedness": 0.5}'
