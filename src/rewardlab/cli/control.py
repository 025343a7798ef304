"""``rewardlab kl``: how far a policy's responses are from a reference model (what to check after an RL run)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..jsonsafe import dumps
from .common import add_config_flags

__all__ = ["register"]


def _cmd_kl(args: argparse.Namespace) -> int:
    from ..scoring.config import DPOConfig
    from ..scoring.dpo import DPOScorer
    from ..scoring.files import read_reference

    prompts, responses = read_reference(args.data, args.split)
    options = {name: getattr(args, name) for name in _MODEL_OPTIONS if getattr(args, name) is not None}
    scorer = DPOScorer.load(DPOConfig(model=args.policy, reference=args.reference, show_progress=True, **options))
    result = {"policy": args.policy, "reference": args.reference, "data": args.data, **scorer.kl_to_reference(prompts, responses)}
    if args.output:
        Path(args.output).write_text(dumps(result, indent=2))
    summary = {k: v for k, v in result.items() if not k.endswith("_per_sequence")}
    print(dumps(summary))
    if result["k1_mean"] < 0:
        print("[rewardlab] the k1 estimate is negative: the responses were probably not sampled from --policy "
              "(KL estimators assume they were)", file=sys.stderr)
    return 0


@dataclass(frozen=True, kw_only=True)
class KlOptions:
    """Options of ``rewardlab kl``: KL(policy || reference) on the policy's responses (k1 and k3 estimators, per
    sequence and token)."""

    policy: str
    """the policy (causal LM folder, Hub name or builtin:smollm2)"""
    reference: str
    """the reference model (e.g. the SFT model the RL run started from)"""
    data: str
    """the policy's responses: {prompt, response} or {messages} records"""
    output: str | None = None
    """write the full result, with per-sequence KLs, as JSON"""
    split: str = "train"
    """split when --data is a datasets name (default: train)"""


def register(sub: Any) -> None:
    p = sub.add_parser("kl", help="KL(policy || reference) on the policy's responses (k1 and k3 estimators, per sequence and token)",
                       description="Per-token log-probs of each response under the policy and the reference; the KL per "
                                   "sequence is the sum over response tokens of k1 = -log r or k3 = (r - 1) - log r, "
                                   "r = pi_ref / pi (docs/control.md). The responses must be samples of the policy.")
    add_config_flags(p, KlOptions, defaults=True)
    from ..scoring.config import DPOConfig

    add_config_flags(p, DPOConfig, exclude={f.name for f in fields(DPOConfig)} - set(_MODEL_OPTIONS))
    p.set_defaults(func=_cmd_kl)


_MODEL_OPTIONS = ("device", "precision", "batch_size", "max_length", "trust_remote_code")
"""The flags of ``rewardlab kl`` that are DPOConfig's (where and how the two models run)."""
