"""Synthetic rollout streams with a planted change at a known step (and stationary ones)."""

from __future__ import annotations

import random

from rewardlab.monitor.rollouts import Rollout

WORDS = [f"w{i}" for i in range(2000)]


def stream(steps: int = 40, per_step: int = 16, change_at: int | None = 21, seed: int = 0, kind: str = "stationary"):
    """Rollouts per step; from ``change_at`` on, the planted change of ``kind`` grows with the steps since it began."""
    rng = random.Random(seed)
    out = []
    for step in range(1, steps + 1):
        t = 0 if change_at is None or step < change_at else step - change_at + 1
        for _ in range(per_step):
            length = 12
            reward, gold = rng.gauss(0, 1), None
            members = None
            text = None
            if kind == "drift":
                reward += 0.4 * t
            if kind == "length":
                length = 12 + 3 * t
            if kind == "members":
                spread = 0.2 * (1 + 0.5 * t)
                members = tuple(reward + rng.gauss(0, spread) for _ in range(4))
            if kind == "hack":  # proxy up, gold down
                base = rng.gauss(0, 1)
                reward, gold = base + 0.3 * t, 0.5 * base - 0.2 * t + rng.gauss(0, 0.5)
            if kind == "stationary_gold":
                base = rng.gauss(0, 1)
                reward, gold = base, 0.5 * base + rng.gauss(0, 0.5)
            if kind == "stationary_members":
                members = tuple(reward + rng.gauss(0, 0.3) for _ in range(4))
            if kind == "repeat" and t:
                phrase = " ".join(rng.sample(WORDS, 3))
                share = min(1.0, 0.1 * t)
                fresh = " ".join(rng.choice(WORDS) for _ in range(int(length * (1 - share))))
                text = fresh + " " + " ".join([phrase] * max(1, int(length * share / 3)))
            if text is None:
                text = " ".join(rng.choice(WORDS) for _ in range(length))
            out.append(Rollout(step, "prompt", text, reward, gold, members))
    return out
