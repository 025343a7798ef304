#!/usr/bin/env bash
# The issue-7 benchmarks once on a lent GPU, bf16 (both trainers' defaults there), as one prepared run.
#
# Here (CPU machine), once:   python benchmarks/gpu_models.py --pack      # writes .gpu/ (ignored by git)
#   plus the wheels the GPU image lacks in .gpu/whl (trl, datasets, dill, multiprocess, fsspec) and the
#   HH file as .gpu/hh.jsonl.gz; see docs/benchmarks.md.
# There (device tool, carry [".gpu"]):   bash benchmarks/gpu_run.sh
# Each benchmark has its own time limit, so one that hangs cannot eat the others' time; every
# run's JSON line is printed as it finishes, so a benchmark cut short still leaves its figures.
set -u
OUT=${OUT:-/tmp/gpu-out}
CARRY=${CARRY:-.gpu}
MODELS=/tmp/models
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ "${INSTALL_WHEELS:-1}" = 1 ]; then  # INSTALL_WHEELS=0 DEVICE=cpu: a dry run of this script on the CPU machine
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$CARRY"/whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD/src
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/machine.txt"
python3 -c "import sys, torch, transformers, trl, datasets, accelerate; print(sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'datasets', datasets.__version__, 'accelerate', accelerate.__version__)" | tee -a "$OUT/machine.txt" || exit 1
python3 benchmarks/gpu_models.py --carry "$CARRY" --root "$MODELS" || exit 1
score() {
  timeout "${SCORE_S:-100}" python3 benchmarks/bench_score.py --model "$MODELS/minilm" --data "$CARRY/hh.jsonl.gz" --device "${DEVICE:-cuda}" \
    --texts "${SCORE_TEXTS:-512}" --batch-sizes "${SCORE_BATCHES:-8,32,64,128}" 2>&1 | grep -v Warning | tee "$OUT/score_minilm.txt"
}
train_minilm() {
  # rewardlab = layout auto (padded on GPUs, never measured there yet); rewardlab_packed last, so a cut run loses it first
  timeout "${TRAIN_MINILM_S:-220}" python3 benchmarks/bench_train.py --model "$MODELS/minilm" --data "$CARRY/hh.jsonl.gz" \
    --steps "${MINILM_STEPS:-60}" --repeats 3 --vary-seed --configs "${MINILM_CONFIGS:-rewardlab,trl_default,trl_best,rewardlab_packed}" \
    2>&1 | tee "$OUT/train_minilm.txt"
}
train_smollm2() {
  timeout "${TRAIN_SMOLLM2_S:-190}" python3 benchmarks/bench_train.py --model "$MODELS/smollm2" --data "$CARRY/hh.jsonl.gz" \
    --steps "${SMOLLM2_STEPS:-30}" --repeats 3 --vary-seed --configs rewardlab,trl_default,trl_best 2>&1 | tee "$OUT/train_smollm2.txt"
}
fsdp_check() {
  # issue 20: one-GPU FSDP2 through the shipped recipe (num_processes 1): train 4 steps with a checkpoint at 2, resume to
  # 4, and check the saved folder loads with AutoModelForSequenceClassification and scores like rewardlab. Not yet run.
  python3 -c "import json; from rewardlab.data.demo import demo_pairs; open('/tmp/fsdp_pairs.jsonl','w').writelines(json.dumps({'prompt': p.prompt[0].content, 'chosen': p.chosen, 'rejected': p.rejected}) + chr(10) for p in demo_pairs('train', 64))"
  launch="python3 -m accelerate.commands.launch --config_file recipes/accelerate/fsdp2_8gpu.yaml --num_processes 1 -m rewardlab.cli train"
  args="--model $MODELS/minilm --data /tmp/fsdp_pairs.jsonl --batch-size 8 --save-every 2 --eval-fraction 0 --no-show-progress --output-dir /tmp/fsdp_run --keep-final-checkpoint"
  timeout "${FSDP_S:-120}" $launch $args --max-steps 2 2>&1 | tail -3 | tee "$OUT/fsdp.txt"
  timeout "${FSDP_S:-120}" $launch $args --max-steps 4 --resume 2>&1 | tail -3 | tee -a "$OUT/fsdp.txt"
  timeout 60 python3 -c "from transformers import AutoModelForSequenceClassification as A; from rewardlab.scoring.local import load_reward_model as L; import torch; m = L('/tmp/fsdp_run'); print('fsdp load ok', m.score(['q'], ['a']))" 2>&1 | tail -1 | tee -a "$OUT/fsdp.txt"
}
for part in ${PARTS:-score train_minilm train_smollm2 fsdp_check}; do "$part"; done
