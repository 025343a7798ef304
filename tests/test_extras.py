"""Every optional dependency is imported through ``rewardlab.extras.require``: with the module blocked, the command that
needs it ends with exit code 2 and one line naming the feature and ``pip install "rewardlab[EXTRA]"`` (issue 33, item 1).
"""

import sys

import pytest

from rewardlab.cli import main

from .conftest import write_jsonl


def _block(monkeypatch, module: str) -> None:
    """Make ``import module`` (and its submodules) fail as if it were not installed."""
    for name in [n for n in sys.modules if n == module or n.startswith(module + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, module, None)


@pytest.fixture
def files(tmp_path, tiny_rm_dir, tiny_llama_dir):
    items = write_jsonl(tmp_path / "items.jsonl", [{"prompt": "hi", "response": "hello"}])
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": f"q{i}", "chosen": "a b c", "rejected": "a"} for i in range(4)])
    votes = write_jsonl(tmp_path / "votes.jsonl", [{"item": i, "annotator": a, "label": (i + a) % 2}
                                                  for i in range(4) for a in range(3)])
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "hi"}])
    return {"items": str(items), "pairs": str(pairs), "votes": str(votes), "prompts": str(prompts), "rm": str(tiny_rm_dir),
            "llama": str(tiny_llama_dir), "out": str(tmp_path / "out")}


COMMANDS = {
    "uvicorn": ("serve", ["serve", "--model", "{rm}", "--port", "0"]),
    "fastapi": ("serve", ["serve", "--model", "{rm}", "--port", "0"]),
    "prometheus_client": ("serve", ["serve", "--model", "{rm}", "--port", "0"]),
    "ray": ("ray", ["score", "--model", "{rm}", "--data", "{items}", "--output", "{out}.jsonl", "--ray"]),
    "peft": ("lora", ["train", "--model", "{llama}", "--data", "{pairs}", "--output-dir", "{out}", "--lora-rank", "2",
                      "--max-steps", "1", "--batch-size", "2", "--max-length", "64"]),
    "datasketch": ("data", ["data", "dedup", "--data", "{pairs}"]),
    "krippendorff": ("data", ["data", "agreement", "--annotations", "{votes}", "--output-dir", "{out}", "--bootstrap", "10"]),
    "gguf": ("gguf", ["score", "--model", "builtin:smollm2", "--data", "{items}", "--output", "{out}.jsonl"]),
    "trl": ("rl", ["rlhf", "--output-dir", "{out}", "--policy", "{llama}", "--proxy", "{rm}", "--prompts", "{prompts}"]),
}


@pytest.mark.parametrize("module", sorted(COMMANDS))
def test_missing_optional_module_is_one_line(module, files, monkeypatch, capsys):
    extra, argv = COMMANDS[module]
    _block(monkeypatch, module)
    code = main([a.format(**files) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    last = err.splitlines()[-1]
    assert last.startswith("rewardlab: error:") and f"needs '{module}'" in last and f'pip install "rewardlab[{extra}]"' in last
    assert "Traceback" not in err


def test_httpx_is_a_core_dependency():
    """Remote scorers and LLM judges are core features: httpx is in the base install (docs/design.md says why)."""
    from importlib.metadata import requires

    assert any(r.split(";")[0].replace(" ", "").startswith("httpx") and "extra" not in r for r in requires("rewardlab"))
