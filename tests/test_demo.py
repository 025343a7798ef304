
from rewardlab.data.demo import DEMO_TASKS, demo_pairs
from rewardlab.demo import run_demo


def test_demo_data_is_deterministic_and_split_as_documented():
    assert demo_pairs("train", 200) == demo_pairs("train", 200)
    assert demo_pairs("train", 50, seed=1) != demo_pairs("train", 50, seed=0)
    train = demo_pairs("train", 2000)
    balanced = demo_pairs("balanced", 2000)
    longer = lambda pairs: sum(len(p.chosen) > len(p.rejected) for p in pairs) / len(pairs)
    assert 0.65 < longer(train) < 0.78
    assert 0.45 < longer(balanced) < 0.55
    assert {p.source.split(":")[-1] for p in train} == set(DEMO_TASKS)


def test_demo_gold_preferences_are_verifiable():
    for p in demo_pairs("test", 400):
        task, prompt = p.source.split(":")[-1], p.prompt[0].content
        if task == "keyword":
            word = prompt.split("'")[1]
            assert word in p.chosen and word not in p.rejected
        elif task == "word_limit":
            limit = int(prompt.split()[3])
            assert len(p.chosen.split()) <= limit < len(p.rejected.split())
        elif task == "bullets":
            assert p.chosen.count("\n- ") == 2 and "\n-" not in p.rejected


def test_run_demo_end_to_end_with_a_tiny_backbone(tiny_llama_dir, tmp_path, capsys):
    report = run_demo(output_dir=str(tmp_path), model=str(tiny_llama_dir), max_steps=3, show_progress=False)
    printed = capsys.readouterr().out
    assert "held-out accuracy" in printed and "length-balanced split accuracy" in printed
    assert 0 <= report.heldout_accuracy <= 1 and report.balanced_split_accuracy is not None
    assert (report.output_dir / "model.safetensors").exists()
