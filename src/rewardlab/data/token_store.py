"""Tokenized examples on disk, memory-mapped, keyed by everything that decides the tokens.

A training run streams its records through the tokenizer once, appending to flat files, and
keeps only small index arrays in memory; a second run with the same data file, tokenizer,
``max_length`` and objective settings opens the files instead of re-tokenizing. Peak memory
therefore does not grow with the data set (the operating system pages token data in and out).

Files in a store folder:

==================  ============================================================
``tokens.bin``      int32, every sequence back to back
``seq_lengths.bin`` int32, one length per sequence
``groups.bin``      int32, sequences per example (2 for a preference pair)
``targets.bin``     float32, every example's targets back to back (ragged: ranked lists differ in length)
``target_counts.bin`` int32, targets per example
``records.bin``     int64, the index of the source record each example came from
``meta.json``       counts, the drop report, the key material; written last (complete marker)
==================  ============================================================

Stores are never evicted automatically; :func:`list_stores` / :func:`remove_stores` (``rewardlab
cache``) show and delete them. ``stale`` ones can never be read again: temporary folders of builds
that were killed, stores written by an older rewardlab (``STORE_VERSION``), and stores whose local
data file or folder was deleted or modified (the key holds its path, size and modification time). Opening a
store marks it used (its ``meta.json`` modification time), which ``--older-than`` goes by.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np

from .collate import Example
from .readers import DropReport

__all__ = ["CachedStore", "ExampleView", "TokenStore", "build_token_store", "default_cache_dir", "list_stores", "remove_stores",
           "select_stores", "source_fingerprint", "store_key", "tokenizer_fingerprint"]

STORE_VERSION = 2
"""Bump when the on-disk layout or the tokenization code changes, so old stores are not reused."""


def default_cache_dir() -> Path:
    """``$REWARDLAB_CACHE/tokens``, else ``~/.cache/rewardlab/tokens``."""
    root = os.environ.get("REWARDLAB_CACHE") or Path.home() / ".cache" / "rewardlab"
    return Path(root) / "tokens"


def source_fingerprint(source: str, split: str) -> dict[str, Any]:
    """What identifies a data source's contents, for cache keys.

    A local file: its absolute path, size and modification time. A local folder (read with
    ``datasets``): its path plus a digest of every file's relative path, size and modification time,
    so adding or editing a file is a different source. A Hub name: name and split only (fingerprinting
    the split would load it a second time, and a mistyped local path would wait out the Hub's retries
    twice), so a Hub dataset updated under the same name needs ``rewardlab cache --clear`` or
    ``token_cache="off"``.
    """
    path = Path(source)
    if path.is_file():
        stat = path.stat()
        return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if path.is_dir():
        return {"folder": str(path.resolve()), "split": split, "files": _folder_digest(path)}
    return {"name": str(source), "split": split}


def _folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(f for f in folder.rglob("*") if f.is_file()):
        relative = file.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):  # e.g. .cache/ that datasets writes
            continue
        stat = file.stat()
        digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 of the tokenizer's full definition (vocabulary, merges, normalizer, special tokens, chat template)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    parts = [type(tokenizer).__name__, backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True),
             str(getattr(tokenizer, "chat_template", None)), json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str),
             str(getattr(tokenizer, "add_bos_token", None)), str(getattr(tokenizer, "add_eos_token", None))]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def store_key(material: Mapping[str, Any]) -> str:
    """Folder name for a store: sha256 of the canonical JSON of everything that decides its contents.

    >>> store_key({"a": 1}) == store_key({"a": 1}) != store_key({"a": 2})
    True
    """
    text = json.dumps({"version": STORE_VERSION, **material}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class TokenStore:
    """A finished store, memory-mapped read-only. ``store[i]`` is an :class:`Example`."""

    def __init__(self, root: Path):
        self.root = Path(root)
        meta = json.loads((self.root / "meta.json").read_text())
        try:
            os.utime(self.root / "meta.json")  # last used, for `rewardlab cache --older-than`
        except OSError:  # a read-only cache is still usable; it just keeps its build time
            pass
        self.meta = meta
        self.num_records: int = meta["num_records"]
        self.report = DropReport(total=meta["report"]["total"], reasons=Counter(meta["report"]["reasons"]),
                                 examples=dict(meta["report"]["examples"]), cut=meta["report"].get("cut", 0),
                                 first_cut=meta["report"].get("first_cut", ""))
        count = meta["num_examples"]
        mapped = lambda name, dtype: np.memmap(self.root / name, dtype=dtype, mode="r") if (self.root / name).stat().st_size else np.zeros(0, dtype)  # noqa: E731
        self._tokens = mapped("tokens.bin", np.int32)
        seq_lengths = np.fromfile(self.root / "seq_lengths.bin", dtype=np.int32)
        groups = np.fromfile(self.root / "groups.bin", dtype=np.int32)
        self._seq_offsets = np.concatenate([[0], np.cumsum(seq_lengths, dtype=np.int64)])
        self._group_offsets = np.concatenate([[0], np.cumsum(groups, dtype=np.int64)])
        self._targets = mapped("targets.bin", np.float32)
        self._target_offsets = np.concatenate([[0], np.cumsum(np.fromfile(self.root / "target_counts.bin", dtype=np.int32),
                                                              dtype=np.int64)])
        self.record_index = np.fromfile(self.root / "records.bin", dtype=np.int64)
        self.lengths = np.maximum.reduceat(seq_lengths, self._group_offsets[:-1]) if count else np.zeros(0, np.int32)
        """``(examples,)`` the longest sequence of each example (for length-grouped batches)."""

    def __len__(self) -> int:
        return len(self.record_index)

    def __getitem__(self, i: int) -> Example:
        first, last = self._group_offsets[i], self._group_offsets[i + 1]
        seqs = tuple(tuple(self._tokens[self._seq_offsets[s] : self._seq_offsets[s + 1]].tolist()) for s in range(first, last))
        return Example(seqs, tuple(self._targets[self._target_offsets[i] : self._target_offsets[i + 1]].tolist()))


class ExampleView(Sequence[Example]):
    """The examples of a store at ``indices`` (a train or held-out split), without copying tokens."""

    def __init__(self, store: TokenStore, indices: np.ndarray):
        self.store, self.indices = store, np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    @overload
    def __getitem__(self, i: int) -> Example: ...

    @overload
    def __getitem__(self, i: slice) -> list[Example]: ...

    def __getitem__(self, i: int | slice) -> Example | list[Example]:
        if isinstance(i, slice):
            return [self[k] for k in range(len(self))[i]]
        return self.store[int(self.indices[i])]

    def __iter__(self) -> Iterator[Example]:
        return (self[i] for i in range(len(self)))

    @property
    def lengths(self) -> np.ndarray:
        return self.store.lengths[self.indices]


def build_token_store(
    root: Path, examples: Iterable[tuple[int, Example]], report: DropReport, num_records: Any, material: Mapping[str, Any]
) -> TokenStore:
    """Write ``(record_index, example)`` pairs into a new store at ``root``, streaming; atomic.

    ``num_records`` is called after the stream is exhausted (the reader counts as it goes).
    Written into a temporary sibling folder and renamed, so an interrupted build leaves nothing
    that a later run could mistake for a finished store.
    """
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        count = 0
        with open(tmp / "tokens.bin", "wb") as tok, open(tmp / "seq_lengths.bin", "wb") as lens, \
                open(tmp / "groups.bin", "wb") as grp, open(tmp / "targets.bin", "wb") as tgt, open(tmp / "records.bin", "wb") as rec, \
                open(tmp / "target_counts.bin", "wb") as tcount:
            for record_index, example in examples:
                tcount.write(np.array([len(example.targets)], dtype=np.int32).tobytes())
                tok.write(np.concatenate([np.asarray(s, dtype=np.int32) for s in example.sequences]).tobytes())
                lens.write(np.array([len(s) for s in example.sequences], dtype=np.int32).tobytes())
                grp.write(np.array([len(example.sequences)], dtype=np.int32).tobytes())
                tgt.write(np.array(example.targets, dtype=np.float32).tobytes())
                rec.write(np.array([record_index], dtype=np.int64).tobytes())
                count += 1
        meta = {"num_examples": count, "num_records": num_records(), "version": STORE_VERSION,
                "report": {"total": report.total, "reasons": dict(report.reasons), "examples": report.examples,
                           "cut": report.cut, "first_cut": report.first_cut},
                "material": dict(material)}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        if root.exists():  # another process finished the same store first: keep theirs
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return TokenStore(root)


@dataclass(frozen=True)
class CachedStore:
    """One folder of a token cache. ``status``: ``ok``; ``incomplete`` (a build that never finished:
    killed, or still running); ``old version N`` / ``old key`` (written by an older rewardlab); ``source gone`` /
    ``source changed`` (its local data file was deleted or modified since). Only ``ok`` stores can
    ever be read again: the others are ``stale``."""

    root: Path
    status: str
    size_bytes: int
    examples: int | None
    source: str
    last_used: float
    """Seconds since the epoch: when the store was last opened (or written)."""

    @property
    def stale(self) -> bool:
        return self.status != "ok"


BUILD_GRACE_SECONDS = 3600
"""An ``incomplete`` folder written to more recently than this may be a build in progress: never deleted."""


_STORE_NAME = re.compile(r"\.?[0-9a-f]{32}(-\w+)?")
"""A store folder (:func:`store_key`) or the temporary folder of its build (``.KEY-random``)."""


def _status(meta: dict[str, Any]) -> str:
    version = int(meta.get("version", 0))
    if version != STORE_VERSION:
        return f"old version {version}"
    source = meta.get("material", {}).get("source", {})
    if "path" in source:  # a local file: the key holds its size and modification time
        path = Path(source["path"])
        if not path.is_file():
            return "source gone"
        stat = path.stat()
        if (stat.st_size, stat.st_mtime_ns) != (source.get("size"), source.get("mtime_ns")):
            return "source changed"
    if "name" in source and Path(source["name"]).is_dir():  # a folder keyed by name, before folders had digests
        return "old key"
    if "folder" in source:  # a local folder: the key holds a digest of its files
        folder = Path(source["folder"])
        if not folder.is_dir():
            return "source gone"
        if _folder_digest(folder) != source.get("files"):
            return "source changed"
    return "ok"


def list_stores(cache_dir: Path | str | None = None) -> list[CachedStore]:
    """Every store and leftover build folder under ``cache_dir`` (default :func:`default_cache_dir`), largest first.

    >>> list_stores("/nonexistent/rewardlab-cache")
    []
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(root.iterdir()):
        if not folder.is_dir() or not _STORE_NAME.fullmatch(folder.name):  # only what build_token_store names: never
            continue                                                        # anything else in a folder given by mistake
        files = [f for f in folder.rglob("*") if f.is_file()]
        size = sum(f.stat().st_size for f in files)
        meta_path = folder / "meta.json"
        last_used = max([f.stat().st_mtime for f in files] + [folder.stat().st_mtime])
        status, examples, source = "incomplete", None, "?"
        if meta_path.is_file() and not folder.name.startswith("."):
            try:
                meta = json.loads(meta_path.read_text())
                source_info = meta.get("material", {}).get("source", {})
                source = str(source_info.get("path") or source_info.get("folder") or source_info.get("name") or "?")
                examples = int(meta["num_examples"])
                status = _status(meta)
                last_used = meta_path.stat().st_mtime
            except (ValueError, KeyError, TypeError, AttributeError):
                status = "incomplete"
        found.append(CachedStore(folder, status, size, examples, source, last_used))
    return sorted(found, key=lambda s: -s.size_bytes)


def select_stores(stores: Sequence[CachedStore], stale_only: bool = False, older_than_days: float | None = None,
                  now: float | None = None) -> list[CachedStore]:
    """The stores to show or delete: only ``stale`` ones if ``stale_only``, only those last used more than
    ``older_than_days`` ago if given; ``incomplete`` folders touched in the last hour are always left out.

    >>> old = CachedStore(Path("a"), "ok", 10, 2, "x.jsonl", last_used=0.0)
    >>> gone = CachedStore(Path("b"), "source gone", 10, 2, "y.jsonl", last_used=9 * 86400.0)
    >>> [s.root.name for s in select_stores([old, gone], stale_only=True, now=10 * 86400.0)]
    ['b']
    >>> [s.root.name for s in select_stores([old, gone], older_than_days=5, now=10 * 86400.0)]
    ['a']
    """
    now = time.time() if now is None else now
    chosen = []
    for store in stores:
        if store.status == "incomplete" and now - store.last_used < BUILD_GRACE_SECONDS:
            continue
        if stale_only and not store.stale:
            continue
        if older_than_days is not None and (now - store.last_used) / 86400 <= older_than_days:
            continue
        chosen.append(store)
    return chosen


def remove_stores(stores: Sequence[CachedStore]) -> int:
    """Delete the folders of ``stores``; returns the bytes freed."""
    freed = 0
    for store in stores:
        shutil.rmtree(store.root, ignore_errors=True)
        freed += store.size_bytes
    return freed
