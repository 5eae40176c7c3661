from collections import Counter

import pytest

from illume_plus.data import BucketBatchSampler

# 23 items over three sizes, so buckets leave partial batches and the batch count is odd.
SIZES = [(32, 32)] * 11 + [(32, 48)] * 7 + [(48, 32)] * 5


def epoch_batches(sizes, batch_size, world, epoch=0, seed=0, drop_last=False):
    per_rank = []
    for rank in range(world):
        sampler = BucketBatchSampler(sizes, batch_size, seed=seed, drop_last=drop_last, num_replicas=world, rank=rank)
        sampler.set_epoch(epoch)
        per_rank.append(list(sampler))
    return per_rank


@pytest.mark.parametrize("epoch", [0, 1])
def test_two_ranks_cover_every_sample_once_with_single_size_batches(epoch):
    per_rank = epoch_batches(SIZES, batch_size=4, world=2, epoch=epoch)
    assert len(per_rank[0]) == len(per_rank[1])  # DDP: same number of steps on every rank
    seen = Counter(i for batches in per_rank for batch in batches for i in batch)
    assert seen == Counter(range(len(SIZES)))
    for batches in per_rank:
        for batch in batches:
            assert 1 <= len(batch) <= 4
            assert len({SIZES[i] for i in batch}) == 1


def test_unreadable_items_are_never_sampled():
    sizes = [(32, 32), None, (32, 32), None, (64, 64)]
    seen = [i for batches in epoch_batches(sizes, 2, world=1) for batch in batches for i in batch]
    assert sorted(seen) == [0, 2, 4]


def test_order_is_deterministic_by_seed_and_epoch():
    assert epoch_batches(SIZES, 4, 2, epoch=3, seed=7) == epoch_batches(SIZES, 4, 2, epoch=3, seed=7)
    assert epoch_batches(SIZES, 4, 2, epoch=3, seed=7) != epoch_batches(SIZES, 4, 2, epoch=4, seed=7)
    assert epoch_batches(SIZES, 4, 2, epoch=3, seed=7) != epoch_batches(SIZES, 4, 2, epoch=3, seed=8)


def test_resume_from_position_yields_the_remaining_batches():
    sampler = BucketBatchSampler(SIZES, 4, seed=1, num_replicas=2, rank=1)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_epoch(2, start_batch=2)
    assert len(sampler) == len(full) - 2
    assert list(sampler) == full[2:]
    assert list(sampler) == full  # the skip applies to one iteration only


def test_drop_last_keeps_only_full_batches_and_equal_rank_counts():
    per_rank = epoch_batches(SIZES, 4, world=2, drop_last=True)
    assert len(per_rank[0]) == len(per_rank[1]) > 0
    assert all(len(batch) == 4 for batches in per_rank for batch in batches)


def test_fewer_items_than_ranks_still_gives_every_rank_a_batch():
    per_rank = epoch_batches([(16, 16)], 4, world=3)
    assert [len(b) for b in per_rank] == [1, 1, 1]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="batch_size"):
        BucketBatchSampler(SIZES, 0)
    with pytest.raises(ValueError, match="rank"):
        BucketBatchSampler(SIZES, 2, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="no readable samples"):
        BucketBatchSampler([None, None], 2)
