"""The output folder of a training run: which files are a run's, when a folder may be reused, what a run writes.

A folder holding another run is refused unless ``resume`` (the same model, data and objective, checked against its
``run_config.json``) or ``overwrite`` (exactly the run's files are removed; nothing else in the folder is touched).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ..config import to_dict
from ..data.token_store import source_fingerprint
from ..errors import ConfigError
from .config import TrainConfig

__all__ = ["RUN_FILES", "finished_state", "last_eval", "prepare_output_dir", "trim_metrics", "write_metrics",
           "write_run_config"]

RUN_FILES = ("checkpoints", "metrics.jsonl", "run_config.json", "trainer_state.json", "rewardlab.json", "config.json",
             "model.safetensors",
             "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
             "chat_template.jinja", "vocab.txt", "vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json",
             "adapter.safetensors", "adapter.json", "ensemble.json")
"""What a training run writes into its output folder (``overwrite`` removes exactly these, never other files)."""


def prepare_output_dir(config: TrainConfig, remove: bool = True) -> None:
    """Refuse, clear (``overwrite``) or accept for resuming (``resume``) the folder ``config.output_dir``.

    ``remove=False`` only checks (every process of a multi-process run checks; one removes).
    """
    out = Path(config.output_dir)
    present = [name for name in RUN_FILES if (out / name).exists()] + [p.name for p in out.glob("model-*.safetensors")]
    if not present:
        return
    if config.overwrite:
        for name in present if remove else ():
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        return
    if not config.resume:
        raise ConfigError(f"{out} already holds a training run ({', '.join(present[:4])}{', ...' if len(present) > 4 else ''}): "
                          "pass --resume to continue it or --overwrite to replace it")
    earlier_path = out / "run_config.json"
    if earlier_path.is_file():
        _refuse_a_different_run(config, json.loads(earlier_path.read_text()))


def _refuse_a_different_run(config: TrainConfig, earlier: dict[str, Any]) -> None:
    now = json.loads(json.dumps(to_dict(config), default=str))
    changed = [k for k in ("model", "data") if earlier.get(k) != now.get(k)]
    before, after = earlier.get("objective"), now.get("objective")
    if isinstance(before, dict) and isinstance(after, dict):  # options added by a newer rewardlab are not a change
        if any(before[k] != after[k] for k in set(before) & set(after)):
            changed.append("objective")
    elif before != after:
        changed.append("objective")
    if earlier.get("data_fingerprint") not in (None, source_fingerprint(config.data, config.data_split)):
        changed.append("data (the file changed since)")
    if changed:
        first = changed[0].split(" ")[0]
        raise ConfigError(f"cannot resume {config.output_dir}: its run differs in {', '.join(changed)} ({first} was "
                          f"{earlier.get(first)!r}, now {now.get(first)!r}); use another output folder, or --overwrite")


def write_run_config(out: Path, config: TrainConfig) -> None:
    """``run_config.json``: the resolved config and the data's fingerprint (what ``resume`` compares against)."""
    record = {**to_dict(config), "data_fingerprint": source_fingerprint(config.data, config.data_split)}
    (out / "run_config.json").write_text(json.dumps(record, indent=2, sort_keys=True, default=str))


def finished_state(out: Path) -> dict[str, Any]:
    """``trainer_state.json`` of a run that finished in ``out`` (``{}`` if none)."""
    path = out / "trainer_state.json"
    try:
        state = json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}
    return state if state.get("finished") else {}


def last_eval(metrics_path: Path) -> dict[str, float]:
    """The last evaluation line of ``metrics.jsonl`` (without its step), ``{}`` if none."""
    last: dict[str, float] = {}
    if metrics_path.is_file():
        for line in metrics_path.read_text().splitlines():
            row = json.loads(line)
            if any(k.startswith("eval_") for k in row):
                last = {k: v for k, v in row.items() if k != "step"}
    return last


def trim_metrics(metrics_path: Path, step: int) -> None:
    """Keep the lines of ``metrics.jsonl`` up to ``step`` (a resumed run rewrites what came after its checkpoint)."""
    if metrics_path.exists():
        kept = [ln for ln in metrics_path.read_text().splitlines() if json.loads(ln)["step"] <= step]
        metrics_path.write_text("".join(ln + "\n" for ln in kept))


def write_metrics(path: Path, record: dict[str, Any]) -> None:
    """Append one line to ``metrics.jsonl``."""
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
