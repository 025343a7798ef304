#!/usr/bin/env bash
# rewardlab rlhf at a size that needs a GPU: a ~0.5B Llama-shaped policy with LoRA (rank 16), as one prepared run.
#
# Here (CPU machine), once:   python benchmarks/gpu_models.py --pack    # writes .gpu/ (MiniLM + SmolLM2's tokenizer)
#   plus the wheels the GPU image lacks in .gpu/whl (trl, peft, datasets, ...), as for benchmarks/gpu_run.sh.
# There (device tool, carry [".gpu"]):   bash benchmarks/gpu_rlhf.sh
#
# What it can and cannot show: nothing outside the carry (64 MiB) reaches the GPU machine, so the policy has
# SmolLM2's tokenizer and random weights at 0.5B scale (hidden 1024, 24 layers). Throughput, the share of time in
# rewardlab's evaluation and the memory are real; the gold/proxy curves of a random policy are not a result.
# The proxy is the demo MiniLM reward model trained there in ~20 s; the gold is the demo checks. Never a CI step.
set -u
OUT=${OUT:-/tmp/gpu-out}
CARRY=${CARRY:-.gpu}
MODELS=/tmp/models
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ "${INSTALL_WHEELS:-1}" = 1 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$CARRY"/whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD/src
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/machine.txt"
python3 benchmarks/gpu_models.py --carry "$CARRY" --root "$MODELS" || exit 1
python3 - <<'PY' || exit 1
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
tok = AutoTokenizer.from_pretrained("/tmp/models/smollm2")
cfg = LlamaConfig(vocab_size=len(tok), hidden_size=1024, intermediate_size=2816, num_hidden_layers=24, num_attention_heads=16,
                  num_key_value_heads=8, max_position_embeddings=2048, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                  pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
torch.manual_seed(0)
model = LlamaForCausalLM(cfg).to(torch.bfloat16)
print("policy parameters:", sum(p.numel() for p in model.parameters()) / 1e9, "B")
model.save_pretrained("/tmp/models/policy-0.5b")
tok.save_pretrained("/tmp/models/policy-0.5b")
PY
python3 -c "from rewardlab.data.demo import demo_pairs; from rewardlab.data.readers import write_preference_pairs; write_preference_pairs(demo_pairs('train', 256, seed=11), '/tmp/models/proxy_pairs.jsonl')" || exit 1
python3 -m rewardlab.cli train --model /tmp/models/minilm --data /tmp/models/proxy_pairs.jsonl --output-dir /tmp/models/proxy \
  --max-steps 60 --batch-size 8 --eval-fraction 0 --overwrite 2>&1 | tail -2 || exit 1
timeout "${RLHF_S:-420}" python3 -m rewardlab.cli rlhf --policy /tmp/models/policy-0.5b --output-dir "$OUT/rlhf" --gold demo \
  --proxy /tmp/models/proxy --proxy-data /tmp/models/proxy_pairs.jsonl \
  --lora-rank 16 --rounds 1 --steps-per-round "${STEPS:-30}" --prompts-per-step 8 --num-generations 8 --max-completion-length 96 \
  --eval-every 10 --eval-prompts 8 --bon-samples 0 --kl-coef 0.01 --checkpoint-every 1000 --no-stop-on-alarm --device cuda \
  2>&1 | grep -v Warning | tail -40 | tee "$OUT/rlhf.txt"
cp "$OUT/rlhf/report.md" "$OUT/report.md" 2>/dev/null
nvidia-smi --query-gpu=memory.used --format=csv,noheader | tee -a "$OUT/machine.txt"
