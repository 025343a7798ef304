"""``rewardlab kl``: how far a policy's responses are from a reference model (what to check after an RL run)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..jsonsafe import dumps

__all__ = ["register"]


def _cmd_kl(args: argparse.Namespace) -> int:
    from ..scoring.dpo import DPOSettings, load_dpo_scorer
    from ..scoring.files import read_reference

    prompts, responses = read_reference(args.data, args.split)
    scorer = load_dpo_scorer(args.policy, args.reference, DPOSettings(), args.precision, args.max_length, args.batch_size,
                             args.device, args.trust_remote_code, show_progress=True)
    result = {"policy": args.policy, "reference": args.reference, "data": args.data, **scorer.kl_to_reference(prompts, responses)}
    if args.output:
        Path(args.output).write_text(dumps(result, indent=2))
    summary = {k: v for k, v in result.items() if not k.endswith("_per_sequence")}
    print(dumps(summary))
    if result["k1_mean"] < 0:
        print("[rewardlab] the k1 estimate is negative: the responses were probably not sampled from --policy "
              "(KL estimators assume they were)", file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("kl", help="KL(policy || reference) on the policy's responses (k1 and k3 estimators, per sequence and token)",
                       description="Per-token log-probs of each response under the policy and the reference; the KL per "
                                   "sequence is the sum over response tokens of k1 = -log r or k3 = (r - 1) - log r, "
                                   "r = pi_ref / pi (docs/control.md). The responses must be samples of the policy.")
    p.add_argument("--policy", required=True, help="the policy (causal LM folder, Hub name or builtin:smollm2)")
    p.add_argument("--reference", required=True, help="the reference model (e.g. the SFT model the RL run started from)")
    p.add_argument("--data", required=True, help="the policy's responses: {prompt, response} or {messages} records")
    p.add_argument("--output", default=None, help="write the full result, with per-sequence KLs, as JSON")
    p.add_argument("--split", default="train", help="split when --data is a datasets name (default: train)")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32", help="weights dtype (default: fp32)")
    p.add_argument("--device", default=None, help="e.g. cpu, cuda (default: cpu)")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass (default: 8)")
    p.add_argument("--max-length", type=int, default=None,
                   help="token budget per sequence; longer replies are an error (default: 1024, or the model's positions if fewer)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow model code from the model folders")
    p.set_defaults(func=_cmd_kl)
