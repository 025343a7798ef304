import random

from rewardlab.training.batching import global_batches, shard


def test_every_pair_is_seen_once_per_epoch_without_skips():
    lengths = [random.Random(i).randint(5, 500) for i in range(37)]
    seen = [i for b in global_batches(lengths, batch=8, steps=37, seed=3) for i in b]  # 8 epochs of 37
    assert len(seen) == 8 * 37
    for epoch in range(8):
        assert sorted(seen[epoch * 37 : (epoch + 1) * 37]) != [] and len(set(seen)) == 37
    counts = {i: seen.count(i) for i in range(37)}
    assert set(counts.values()) == {8}


def test_length_grouping_makes_batches_homogeneous_and_order_random():
    lengths = [random.Random(i).randint(5, 500) for i in range(512)]
    grouped = list(global_batches(lengths, batch=8, steps=64, seed=0, group_by_length=True))
    plain = list(global_batches(lengths, batch=8, steps=64, seed=0, group_by_length=False))
    spread = lambda batches: sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)
    assert spread(grouped) < spread(plain) / 5
    firsts = [max(lengths[i] for i in b) for b in grouped]
    assert firsts != sorted(firsts) and firsts != sorted(firsts, reverse=True)


def test_shards_partition_the_global_batch():
    batch = list(range(24))
    parts = [shard(batch, micro_steps=3, processes=2, rank=r) for r in range(2)]
    flat = sorted(i for rank in parts for micro in rank for i in micro)
    assert flat == batch
    assert all(len(micro) == 4 for rank in parts for micro in rank)


def test_the_batch_with_most_tokens_comes_first():
    lengths = [random.Random(i).randint(5, 500) for i in range(512)]
    batches = list(global_batches(lengths, batch=8, steps=64, seed=1, group_by_length=True))
    tokens = [sum(lengths[i] for i in b) for b in batches]
    assert tokens[0] == max(tokens) and tokens[1:] != sorted(tokens[1:], reverse=True)
    assert sorted(i for b in batches for i in b) == list(range(512))  # still every pair once
