"""The token cache: streamed builds, memory-mapped reads, reuse on the second run, same pairs as in memory."""

import json
import tracemalloc

import numpy as np
import pytest

import rewardlab.training.objectives.base as objectives_module
from rewardlab.data.collate import Example
from rewardlab.data.readers import DropReport
from rewardlab.data.token_store import TokenStore, build_token_store
from rewardlab.training.config import TrainConfig
from rewardlab.training.loop import train


def _synthetic(n, rng):
    for i in range(n):
        a, b = rng.integers(0, 30_000, size=rng.integers(50, 300)), rng.integers(0, 30_000, size=rng.integers(50, 300))
        yield i, Example((tuple(a.tolist()), tuple(b.tolist())), (0.5 * i, 1.0, 0.0, 0.0))


def test_round_trip_and_lengths(tmp_path):
    examples = list(_synthetic(50, np.random.default_rng(0)))
    store = build_token_store(tmp_path / "s", iter(examples), DropReport(total=50), lambda: 50, {"k": 1})
    again = TokenStore(tmp_path / "s")
    assert len(again) == 50 and again.num_records == 50
    for i, example in examples:
        assert again[i] == example
    assert again.lengths.tolist() == [max(len(s) for s in e.sequences) for _, e in examples]
    assert store.report.total == 50


def test_build_streams_instead_of_holding_the_data(tmp_path):
    # 8,000 pairs of ~350 tokens (~11 MB as int32, ~200 MB as Python tuples) must not be held.
    tracemalloc.start()
    store = build_token_store(tmp_path / "big", _synthetic(8_000, np.random.default_rng(1)), DropReport(total=8_000),
                              lambda: 8_000, {"k": 2})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert (tmp_path / "big" / "tokens.bin").stat().st_size > 8_000_000
    assert peak < 3_000_000, f"peak Python allocation {peak / 1e6:.1f} MB while building"
    assert len(store) == 8_000


def test_interrupted_build_leaves_no_store(tmp_path):
    def broken():
        yield from _synthetic(5, np.random.default_rng(2))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_token_store(tmp_path / "s", broken(), DropReport(), lambda: 5, {})
    assert list(tmp_path.iterdir()) == []  # no half-written folder a later run could trust


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_second_run_reuses_the_cache_and_trains_identically(tiny_llama_dir, demo_jsonl, tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    real = objectives_module.tokenize_counting_cut

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(objectives_module, "tokenize_counting_cut", counting)
    common = dict(model=str(tiny_llama_dir), data=str(demo_jsonl), max_steps=3, max_length=192, batch_size=4,
                  show_progress=False, eval_fraction=0.125, log_every=1, precision="fp32", token_cache=str(tmp_path / "cache"))
    first = train(TrainConfig(output_dir=str(tmp_path / "a"), **common))
    assert calls["n"] == 2 * 96 and "token cache built" in capsys.readouterr().err
    calls["n"] = 0
    second = train(TrainConfig(output_dir=str(tmp_path / "b"), **common))
    assert calls["n"] == 0 and "token cache hit" in capsys.readouterr().err
    memory = train(TrainConfig(output_dir=str(tmp_path / "c"), **{**common, "token_cache": "off"}))
    losses = [[m["loss"] for m in _metrics(r.output_dir) if "loss" in m] for r in (first, second, memory)]
    assert losses[0] == losses[1] == pytest.approx(losses[2], abs=1e-6)  # the same pairs, split and order
    assert first.final_metrics == second.final_metrics
    assert first.final_metrics["eval_pairs"] == memory.final_metrics["eval_pairs"] == 12
    assert first.drop_summary == memory.drop_summary
    # A different max_length (or tokenizer, data file, objective setting) is a different store.
    train(TrainConfig(output_dir=str(tmp_path / "d"), **{**common, "max_length": 160}))
    assert len([p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]) == 2


def test_listwise_runs_use_the_cache_too(tiny_llama_dir, tmp_path, capsys):
    from rewardlab.data.demo import demo_pairs

    from ..conftest import write_jsonl

    rows = [{"prompt": p.prompt[0].content, "responses": [p.rejected, p.chosen, "I do not know."] + (["No."] if i % 2 else []),
             "ranks": [2, 1, 3] + ([4] if i % 2 else [])}  # ragged lists: 3 and 4 responses share the store and batches
            for i, p in enumerate(demo_pairs("train", 40))]
    data = write_jsonl(tmp_path / "ranked.jsonl", rows)
    common = dict(model=str(tiny_llama_dir), data=str(data), objective="plackett_luce", max_steps=3, max_length=192,
                  batch_size=4, show_progress=False, eval_fraction=0.125, log_every=1, precision="fp32",
                  token_cache=str(tmp_path / "cache"))
    runs = [train(TrainConfig(output_dir=str(tmp_path / "a"), **common))]
    assert "token cache built" in capsys.readouterr().err
    runs.append(train(TrainConfig(output_dir=str(tmp_path / "b"), **common)))
    assert "token cache hit" in capsys.readouterr().err
    runs.append(train(TrainConfig(output_dir=str(tmp_path / "c"), **{**common, "token_cache": "off"})))
    losses = [[m["loss"] for m in _metrics(r.output_dir) if "loss" in m] for r in runs]
    assert losses[0] == losses[1] == pytest.approx(losses[2], abs=1e-6)  # the same lists, split and order
    assert runs[0].final_metrics["eval_lists"] == runs[2].final_metrics["eval_lists"] == 5
    assert runs[0].final_metrics["eval_loss"] == pytest.approx(runs[2].final_metrics["eval_loss"], abs=1e-6)


def test_a_data_folder_edited_in_place_is_tokenized_again(tiny_llama_dir, demo_jsonl, tmp_path, capsys):
    from rewardlab.data.token_store import list_stores

    folder = tmp_path / "prefs"
    folder.mkdir()
    lines = demo_jsonl.read_text().splitlines(keepends=True)[:40]
    (folder / "part-0.jsonl").write_text("".join(lines[:30]))
    common = dict(model=str(tiny_llama_dir), data=str(folder), max_steps=1, max_length=192, batch_size=4, show_progress=False,
                  eval_fraction=0.0, precision="fp32", token_cache=str(tmp_path / "cache"))
    train(TrainConfig(output_dir=str(tmp_path / "a"), **common))
    assert "token cache built" in capsys.readouterr().err
    train(TrainConfig(output_dir=str(tmp_path / "b"), **common))
    assert "token cache hit" in capsys.readouterr().err
    (folder / "part-1.jsonl").write_text("".join(lines[30:]))  # more data in the same folder
    train(TrainConfig(output_dir=str(tmp_path / "c"), **common))
    assert "token cache built" in capsys.readouterr().err
    stores = sorted((s.status, s.examples) for s in list_stores(tmp_path / "cache"))
    assert stores == [("ok", 40), ("source changed", 30)]


def _store_for(cache, name, source):
    from rewardlab.data.token_store import source_fingerprint

    return build_token_store(cache / name, _synthetic(3, np.random.default_rng(3)), DropReport(total=3), lambda: 3,
                             {"source": source_fingerprint(str(source), "train")})


def test_cache_listing_tells_reusable_from_stale_stores_and_clearing_keeps_the_reusable(tmp_path, capsys):
    import os

    from rewardlab.cli import main
    from rewardlab.data.token_store import list_stores

    cache, kept, edited, deleted = tmp_path / "cache", tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    for source in (kept, edited, deleted):
        source.write_text('{"chosen": "x", "rejected": "y"}\n')
    names = {"kept": "a" * 32, "edited": "b" * 32, "deleted": "c" * 32, "old": "d" * 32,  # store_key-style folder names
             ".killed-build": "." + "e" * 32 + "-x1", ".running-build": "." + "f" * 32 + "-x2"}
    for name, source in (("kept", kept), ("edited", edited), ("deleted", deleted), ("old", kept)):
        _store_for(cache, names[name], source)
    build_token_store(cache / ("9" * 32), _synthetic(3, np.random.default_rng(3)), DropReport(total=3), lambda: 3,
                      {"source": {"name": str(tmp_path), "split": "train"}})  # a folder keyed by name, before folder digests
    names["old key"] = "9" * 32
    (cache / "notes").mkdir()  # not a store: never listed, never deleted
    edited.write_text('{"chosen": "x2", "rejected": "y"}\n')
    deleted.unlink()
    meta = json.loads((cache / names["old"] / "meta.json").read_text())
    (cache / names["old"] / "meta.json").write_text(json.dumps({**meta, "version": 0}))
    for name, age_s in ((".killed-build", 7200), (".running-build", 60)):  # temporary folders of unfinished builds
        folder = cache / names[name]
        folder.mkdir()
        (folder / "tokens.bin").write_bytes(b"\0" * 64)
        old = folder.stat().st_mtime - age_s
        os.utime(folder / "tokens.bin", (old, old))
        os.utime(folder, (old, old))
    label = {v: k for k, v in names.items()}
    left = lambda: sorted(label.get(p.name, p.name) for p in cache.iterdir())  # noqa: E731

    status = {label[s.root.name]: s.status for s in list_stores(cache)}
    assert status == {"kept": "ok", "edited": "source changed", "deleted": "source gone", "old": "old version 0",
                      "old key": "old key", ".killed-build": "incomplete", ".running-build": "incomplete"}
    assert main(["cache", "--dir", str(cache), "--stale"]) == 0
    out = capsys.readouterr()
    assert "source gone" in out.out and names["kept"] not in out.out and "5 token store(s)" in out.err
    assert left() == [".killed-build", ".running-build", "deleted", "edited", "kept", "notes", "old", "old key"]

    assert main(["cache", "--dir", str(cache), "--stale", "--clear"]) == 0
    assert "deleted 5 token store(s)" in capsys.readouterr().err
    assert left() == [".running-build", "kept", "notes"]  # a build in progress is never touched
    assert len(TokenStore(cache / names["kept"])) == 3

    assert main(["cache", "--dir", str(cache), "--older-than", "1", "--clear"]) == 0  # just used: kept
    assert (cache / names["kept"]).exists()
    assert main(["cache", "--dir", str(cache), "--clear"]) == 0
    assert left() == [".running-build", "notes"]


def test_opening_a_store_marks_it_used(tmp_path):
    import os

    (tmp_path / "data").mkdir()
    store = _store_for(tmp_path / "cache", "0" * 32, tmp_path / "data")  # an (empty) data folder
    os.utime(store.root / "meta.json", (0, 0))
    TokenStore(store.root)
    from rewardlab.data.token_store import list_stores

    (listed,) = list_stores(tmp_path / "cache")
    assert listed.status == "ok" and listed.last_used > 1e9
