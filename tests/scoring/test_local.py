import pytest
import torch

from rewardlab.data.records import Message
from rewardlab.errors import SequenceTooLongError
from rewardlab.models.io import RewardModelMetadata, build_reward_model, save_pretrained
from rewardlab.scoring import LocalScorer, Scorer, load_reward_model
from rewardlab.scoring.config import RewardModelConfig


@pytest.fixture(scope="module")
def scorer(tiny_llama_dir, tmp_path_factory):
    model, tokenizer = build_reward_model(str(tiny_llama_dir))
    torch.nn.init.normal_(model.hf_model.score.weight, std=1.0)
    out = tmp_path_factory.mktemp("rm")
    save_pretrained(model, tokenizer, RewardModelMetadata(pooling=model.pooling, max_length=128, reward_mean=0.5, reward_std=2.0), out)
    return load_reward_model(out, batch_size=3)


PROMPTS = ["Tell me about bees.", [{"role": "user", "content": "Tell me about rain."}], (Message("user", "Hi"),), "q"]
REPLIES = ["Bees make honey and live in hives.", "Rain falls.", "Hello there, how are you today?", "a"]


def test_local_scorer_satisfies_the_protocol(scorer):
    assert isinstance(scorer, Scorer)


def test_results_come_back_in_input_order_whatever_the_batching(scorer):
    rewards = scorer.score(PROMPTS, REPLIES)
    singles = [scorer.score([p], [r])[0] for p, r in zip(PROMPTS, REPLIES)]
    assert rewards == pytest.approx(singles, abs=1e-5)
    perm = [2, 0, 3, 1]
    permuted = scorer.score([PROMPTS[i] for i in perm], [REPLIES[i] for i in perm])
    assert permuted == pytest.approx([rewards[i] for i in perm], abs=1e-5)
    for batch_size in (1, 2, 64):
        scorer.batch_size = batch_size
        assert scorer.score(PROMPTS, REPLIES) == pytest.approx(rewards, abs=1e-5)
    scorer.batch_size = 3


def test_token_capped_batches_give_the_same_rewards(scorer):
    from rewardlab.scoring import CPU_BATCH_TOKENS

    assert scorer.max_batch_tokens == CPU_BATCH_TOKENS  # "auto" on a CPU
    rewards = scorer.score(PROMPTS, REPLIES)
    ids = scorer.tokenize(PROMPTS, REPLIES)
    batches = []
    scorer.max_batch_tokens, scorer.batch_size = max(map(len, ids)), 64  # every batch closes at the longest item's size
    original = scorer.model.forward
    scorer.model.forward = lambda *a, **k: batches.append(1) or original(*a, **k)
    try:
        assert scorer.score(PROMPTS, REPLIES) == pytest.approx(rewards, abs=1e-5)
    finally:
        scorer.model.forward, scorer.max_batch_tokens, scorer.batch_size = original, CPU_BATCH_TOKENS, 3
    assert 1 < len(batches) < len(PROMPTS) + 1  # the cap split the batch that batch_size alone would not


def test_prompt_formats_are_equivalent(scorer):
    text = scorer.score(["Hi"], ["Hello"])
    msgs = scorer.score([[{"role": "user", "content": "Hi"}]], ["Hello"])
    records = scorer.score([(Message("user", "Hi"),)], ["Hello"])
    assert text == msgs == records


def test_normalization_uses_saved_statistics(scorer):
    normalized = LocalScorer(scorer.model, scorer.tokenizer, RewardModelConfig(model="rm", max_length=128, normalize=True), scorer.metadata)
    raw = scorer.score(PROMPTS, REPLIES)
    assert normalized.score(PROMPTS, REPLIES) == pytest.approx([(r - 0.5) / 2.0 for r in raw], abs=1e-5)


def test_too_long_response_is_an_error_naming_the_item(scorer):
    with pytest.raises(SequenceTooLongError, match=r"items \[1\]"):
        scorer.score(["q", "q"], ["short", "word " * 400])


def test_mismatched_lengths_and_empty_input(scorer):
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        scorer.score(["a", "b"], ["c"])
    assert scorer.score([], []) == []


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_bert_dir"])
def test_packed_scoring_equals_padded_scoring(fixture, request):
    model, tokenizer = build_reward_model(str(request.getfixturevalue(fixture)))
    prompts = [[Message("user", f"Question {i}: tell me about item {i * 7}.")] for i in range(9)]
    replies = ["Short." if i % 3 else "A much longer reply about the item, " * (1 + i % 4) for i in range(9)]
    packed = LocalScorer(model, tokenizer, RewardModelConfig(model="rm", max_length=192, batch_size=4))
    padded = LocalScorer(model, tokenizer, RewardModelConfig(model="rm", max_length=192, batch_size=4, layout="padded"))
    assert packed.layout == "packed" and padded.layout == "padded"
    assert packed.score(prompts, replies) == pytest.approx(padded.score(prompts, replies), abs=1e-4)


def test_score_file_writes_every_record_and_resumes_only_with_the_same_scorer(scorer, tmp_path):
    import json

    from rewardlab.errors import ConfigError
    from rewardlab.scoring import score_file

    from ..conftest import write_jsonl

    data = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "Hi", "chosen": "Hello there", "rejected": "Go away"},
                                                {"prompt": "Hi", "response": "Hello"}])
    out = tmp_path / "scores.jsonl"
    result = score_file(scorer, data, out, show_progress=False)
    assert (result.lines, result.resumed_lines, result.too_long) == (2, 0, 0)
    lines = out.read_text().splitlines()
    expected = scorer.score(["Hi", "Hi", "Hi"], ["Hello there", "Go away", "Hello"])
    first, second = (json.loads(line) for line in lines)
    assert [first["chosen_reward"], first["rejected_reward"], second["reward"]] == pytest.approx(expected, abs=1e-5)
    before, scorer.show_progress = scorer.show_progress, True
    again = score_file(scorer, data, out, resume=True, show_progress=False)  # nothing left to score
    assert scorer.show_progress is True  # the scorer is handed back as it came
    scorer.show_progress = before
    assert (again.lines, again.resumed_lines) == (2, 2) and out.read_text().splitlines() == lines
    other = LocalScorer(scorer.model, scorer.tokenizer, RewardModelConfig(model="rm", max_length=64), scorer.metadata)
    with pytest.raises(ConfigError, match="differs in max_length"):
        score_file(other, data, out, resume=True, show_progress=False)


def test_neighbours_with_a_common_prompt_share_it_and_keep_their_rewards(scorer, monkeypatch):
    import rewardlab.scoring.local as scoring

    packed_tokens = []
    real = scoring.pack_for

    def counting(pooling, examples, share_prefix):
        ids, layout = real(pooling, examples, share_prefix)
        packed_tokens.append((ids.shape[1], sum(len(s) for e in examples for s in e.sequences)))
        return ids, layout

    monkeypatch.setattr(scoring, "pack_for", counting)
    long_prompt = "Please describe in detail how honey bees organise their hive, divide their work and survive the winter months."
    prompts = [long_prompt] * 2 + ["Hi"] + [long_prompt + " Be brief."] * 5 + ["q", long_prompt]
    replies = ["They dance.", "No idea.", "Hello!", "Workers forage.", "A queen lays eggs.", "Drones mate.", "They cluster.",
               "Wax.", "a", "Bees are insects that live in colonies."]
    assert len(scorer.tokenize([long_prompt], ["x"])[0]) > 2 * scoring.MIN_SHARED_PREFIX  # the prompt is worth sharing
    shared = scorer.score(prompts, replies)
    assert sum(p for p, _ in packed_tokens) < sum(t for _, t in packed_tokens)  # prompts were stored once
    groups = scoring.prefix_groups(scorer.tokenize(prompts, replies), max_size=scorer.batch_size)
    assert [len(g) for g in groups if len(g) > 1] == [2, 3, 2]  # batch_size 3 splits the five candidates
    plain = LocalScorer(scorer.model, scorer.tokenizer,
                        RewardModelConfig(model="rm", max_length=scorer.max_length, batch_size=3, share_prefix=False), scorer.metadata)
    assert shared == pytest.approx(plain.score(prompts, replies), abs=1e-5)
    assert len(set(round(r, 4) for r in shared)) > 5  # distinct rewards were compared


def test_samples_of_one_prompt_share_it_wherever_they_are_in_the_input(scorer, monkeypatch):
    """A server batch interleaves the samples of many prompts (one request each): they are still grouped by prompt,
    each batch packs the tokens the cap counts, and every reward is the unshared one, in input order."""
    import rewardlab.scoring.local as scoring

    packed = []
    real = scoring.pack_for

    def counting(pooling, examples, share_prefix):
        ids, layout = real(pooling, examples, share_prefix)
        packed.append((ids.shape[1], [len(e.sequences) for e in examples]))
        return ids, layout

    monkeypatch.setattr(scoring, "pack_for", counting)
    topics = ["honey bees organise their hive and survive the winter", "rivers carve canyons out of solid rock over time",
              "volcanoes form islands in the middle of the ocean"]
    prompts = [f"Please describe in careful detail how {t}, with examples." for t in topics] * 3  # A B C A B C A B C
    replies = [f"Answer number {i}: {'it is complicated' if i % 2 else 'slowly'}." for i in range(9)]
    shared = scorer.score(prompts, replies)
    assert sorted(n for _, groups in packed for n in groups) == [3, 3, 3]  # one group per prompt (batch_size 3)
    ids = scorer.tokenize(prompts, replies)
    by_prompt = [[ids[i] for i in range(k, 9, 3)] for k in range(3)]
    assert sum(t for t, _ in packed) == sum(scoring._packed_tokens(g) for g in by_prompt) < sum(map(len, ids))
    plain = LocalScorer(scorer.model, scorer.tokenizer,
                        RewardModelConfig(model="rm", max_length=scorer.max_length, batch_size=3, share_prefix=False), scorer.metadata)
    assert shared == pytest.approx(plain.score(prompts, replies), abs=1e-5)
    assert len(set(round(r, 4) for r in shared)) == 9


@pytest.mark.parametrize("layout", ["packed", "padded"])
def test_identical_inputs_get_identical_rewards_in_every_layout(tiny_llama_dir, layout):
    model, tokenizer = build_reward_model(str(tiny_llama_dir))
    scorer = LocalScorer(model, tokenizer, RewardModelConfig(model="rm", max_length=192, batch_size=8, layout=layout))
    prompts = ["Tell me about bees and their hives in some detail please."] * 6
    replies = ["Bees live in hives.", "They make honey.", "Bees live in hives.", "Bees live in hives.", "Wax.", "They make honey."]
    rewards = scorer.score(prompts, replies)
    assert rewards[0] == rewards[2] == rewards[3] and rewards[1] == rewards[5]  # exactly, not approximately
    assert rewards[0] != rewards[1]
