import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rewardlab.cli import main
from rewardlab.data.records import Message
from rewardlab.data.templating import tokenize_with_boundary
from rewardlab.losses import dpo_loss
from rewardlab.scoring.config import DPOConfig
from rewardlab.scoring.dpo import DPOScorer, load_dpo_scorer, sequence_logprobs
from rewardlab.scoring import Scorer

from ..conftest import write_jsonl

PROMPTS = ["Tell me about bees.", "List three facts about rain as bullet points."]
REPLIES = ["Bees make honey.", "- Rain falls.\n- Rain fills rivers.\n- Rainbows appear."]


@pytest.fixture(scope="module")
def models(tiny_llama_dir):
    torch.manual_seed(1)
    policy = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    reference = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    with torch.no_grad():  # make the policy differ from the reference
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return policy, reference, AutoTokenizer.from_pretrained(tiny_llama_dir)


def test_identical_policy_and_reference_give_zero_reward(models):
    _, reference, tokenizer = models
    scorer = DPOScorer(reference, reference, tokenizer, DPOConfig(model="p", reference="r", beta=0.5))
    assert isinstance(scorer, Scorer)
    assert scorer.score(PROMPTS, REPLIES) == [0.0, 0.0]


def test_only_response_tokens_count(models):
    policy, _, tokenizer = models
    ids, start = tokenize_with_boundary(tokenizer, (Message("user", PROMPTS[0]),), REPLIES[0], 512)
    with torch.no_grad():
        logits = policy(torch.tensor([ids])).logits
    manual = sum(torch.log_softmax(logits[0, t - 1], -1)[ids[t]].item() for t in range(start, len(ids)))
    scorer = DPOScorer(policy, None, tokenizer, DPOConfig(model="p", beta=1.0, reference_free=True))
    assert scorer.score(PROMPTS[:1], REPLIES[:1])[0] == pytest.approx(manual, abs=1e-4)
    assert tokenizer.decode(ids[start:]).startswith(REPLIES[0])


def test_settings_change_the_reward_as_documented(models):
    policy, reference, tokenizer = models
    full = DPOScorer(policy, reference, tokenizer, DPOConfig(model="p", reference="r", beta=0.1))
    policy_lp = full.logprobs(policy, PROMPTS, REPLIES)
    reference_lp = full.logprobs(reference, PROMPTS, REPLIES)
    assert full.score(PROMPTS, REPLIES) == pytest.approx((0.1 * (policy_lp - reference_lp)).tolist(), abs=1e-6)
    free = DPOScorer(policy, None, tokenizer, DPOConfig(model="p", beta=0.1, reference_free=True))
    assert free.score(PROMPTS, REPLIES) == pytest.approx((0.1 * policy_lp).tolist(), abs=1e-6)
    normalized = DPOScorer(policy, reference, tokenizer, DPOConfig(model="p", reference="r", beta=0.1, length_normalize=True))
    lengths = torch.tensor([len(ids) - start for ids, start in (
        tokenize_with_boundary(tokenizer, (Message("user", p),), r, 1024) for p, r in zip(PROMPTS, REPLIES))], dtype=torch.float32)
    assert normalized.score(PROMPTS, REPLIES) == pytest.approx((0.1 * (policy_lp - reference_lp) / lengths).tolist(), abs=1e-5)
    with pytest.raises(ValueError, match="reference model is required"):
        DPOScorer(policy, None, tokenizer, DPOConfig(model="p", reference="r"))


def test_dpo_loss_from_implicit_rewards_equals_loss_from_log_ratios(models):
    policy, reference, tokenizer = models
    scorer = DPOScorer(policy, reference, tokenizer, DPOConfig(model="p", reference="r", beta=0.2))
    chosen, rejected = scorer.score(PROMPTS, REPLIES), scorer.score(PROMPTS, REPLIES[::-1])
    from rewardlab.losses import bradley_terry_loss

    via_rewards = bradley_terry_loss(torch.tensor(chosen), torch.tensor(rejected))
    lp = lambda m, replies: scorer.logprobs(m, PROMPTS, replies)
    direct = dpo_loss(lp(policy, REPLIES), lp(policy, REPLIES[::-1]), lp(reference, REPLIES), lp(reference, REPLIES[::-1]), 0.2)
    assert torch.allclose(via_rewards, direct, atol=1e-5)


def test_cli_records_the_dpo_settings_with_every_score(tiny_llama_dir, tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": p, "chosen": r, "rejected": "no"} for p, r in zip(PROMPTS, REPLIES)])
    out = tmp_path / "s.jsonl"
    assert main(["score", "--model", str(tiny_llama_dir), "--reference", str(tiny_llama_dir), "--data", str(data),
                 "--output", str(out), "--beta", "0.3", "--length-normalize"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["chosen_reward"] == 0.0 and rows[0]["rejected_reward"] == 0.0
    assert (rows[1]["dpo_beta"], rows[1]["reference_free"], rows[1]["length_normalized"]) == (0.3, False, True)


def test_sequence_logprobs_mask_shapes():
    logits = torch.randn(2, 5, 7)
    ids = torch.randint(0, 7, (2, 5))
    none = sequence_logprobs(logits, ids, torch.zeros(2, 5))
    assert torch.equal(none, torch.zeros(2))


@pytest.mark.slow
def test_smollm2_policy_as_its_own_reference_scores_zero_and_reference_free_is_negative():
    scorer = load_dpo_scorer("builtin:smollm2", None, beta=0.1, reference_free=True, max_length=256)
    free = scorer.score(PROMPTS, REPLIES)
    assert all(v < 0 for v in free)  # log-probabilities of real text are negative
    same = DPOScorer(scorer.policy, scorer.policy, scorer.tokenizer, DPOConfig(model="p", reference="r", beta=0.1))
    assert same.score(PROMPTS, REPLIES) == [0.0, 0.0]
