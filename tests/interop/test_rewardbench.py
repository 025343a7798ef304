"""reward-bench 0.1.4's own pipeline scores a rewardlab folder with the rewards ``rewardlab score`` writes (issue 32).

reward-bench 0.1.4 cannot be imported as a package under transformers 5 (``rewardbench/models/beaver.py`` imports
``_CONFIG_FOR_DOC``, which transformers removed), and its pipeline moves inputs to ``cuda`` unconditionally. So the
test loads the two files a default sequence-classifier evaluation runs, ``rewardbench/models/pipeline.py``
(``RewardBenchPipeline``) and ``rewardbench/utils.py`` (``prepare_dialogue_from_tokenizer``, the chat-template
rendering), from the installed package, with its model registry replaced by the ``default`` entry it holds
(``AutoModelForSequenceClassification`` + ``RewardBenchPipeline``) and ``cuda`` mapped to the CPU; the rendering,
tokenization, padding, BOS handling and forward pass are reward-bench's. docs/design.md says so.
"""

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

spec = importlib.util.find_spec("rewardbench")  # finds the package without running its __init__
if spec is None or spec.submodule_search_locations is None:
    pytest.skip("the interop tier needs rewardbench==0.1.4 (.ci/run installs it with --no-deps)", allow_module_level=True)
pytest.importorskip("fastchat", reason="reward-bench's utils import fastchat (fschat, installed with --no-deps)")
pytestmark = pytest.mark.interop

ROOT = Path(list(spec.submodule_search_locations)[0])


def _load(name: str, path: Path):
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


@pytest.fixture
def rewardbench(monkeypatch):
    from transformers import AutoModelForSequenceClassification
    from transformers.tokenization_utils_base import BatchEncoding

    pipeline = _load("rewardbench_pipeline", ROOT / "models" / "pipeline.py")
    registry = types.ModuleType("rewardbench.models")
    registry.REWARD_MODEL_CONFIG = {"default": {"model_builder": AutoModelForSequenceClassification.from_pretrained,
                                                "pipeline_builder": pipeline.RewardBenchPipeline, "quantized": True,
                                                "custom_dialogue": False, "model_type": "Seq. Classifier"}}
    monkeypatch.setitem(sys.modules, "rewardbench", types.ModuleType("rewardbench"))
    monkeypatch.setitem(sys.modules, "rewardbench.models", registry)
    utils = _load("rewardbench_utils", ROOT / "utils.py")
    to = BatchEncoding.to
    monkeypatch.setattr(BatchEncoding, "to", lambda self, device, **kw: to(self, "cpu" if str(device) == "cuda" else device, **kw))
    return registry.REWARD_MODEL_CONFIG["default"], utils


def test_rewardbench_pipeline_scores_a_rewardlab_folder_like_rewardlab(rewardbench, tiny_rm_dir, tmp_path):
    from transformers import AutoTokenizer

    from rewardlab.cli import main

    config, utils = rewardbench
    pairs = [{"prompt": "What is 2+2?", "chosen": "It is 4.", "rejected": "Five, I think."},
             {"prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                         {"role": "user", "content": "Name a bird."}], "chosen": "A robin.", "rejected": "A trout."},
             {"prompt": "Tell me about rivers.", "chosen": "Rivers carry water and sediment to the sea.", "rejected": "No."}]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    assert main(["score", "--model", str(tiny_rm_dir), "--data", str(data), "--output", str(tmp_path / "s.jsonl")]) == 0
    mine = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]

    tokenizer = AutoTokenizer.from_pretrained(tiny_rm_dir)
    model = config["model_builder"](str(tiny_rm_dir))
    pipe = config["pipeline_builder"]("text-classification", model, tokenizer)
    rendered = [utils.prepare_dialogue_from_tokenizer(dict(p), tokenizer) for p in pairs]
    chosen = pipe([r["text_chosen"] for r in rendered], truncation=True, padding=True, max_length=2048)[:, 0].tolist()
    rejected = pipe([r["text_rejected"] for r in rendered], truncation=True, padding=True, max_length=2048)[:, 0].tolist()
    assert chosen == pytest.approx([m["chosen_reward"] for m in mine], abs=1e-4)
    assert rejected == pytest.approx([m["rejected_reward"] for m in mine], abs=1e-4)
