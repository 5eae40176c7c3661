"""A batch sampler that never mixes image sizes in a batch, shards across DDP ranks, and resumes.

For each epoch, with a generator seeded by (seed, epoch):
1. items are grouped by output size (H, W) and each group is shuffled;
2. each group is cut into batches of `batch_size` (the last one of a group may be smaller);
3. the batch order is shuffled;
4. batch j goes to rank j % num_replicas.
Every rank must run the same number of steps, so when the batch count is not a multiple of
`num_replicas` the largest batches are halved (two smaller batches of the same size) until it is;
with `drop_last=True` the last incomplete round is dropped instead, and so are the partial
batches of each group. Only a dataset with fewer items than ranks forces repeats. Apart from
that corner case, each item is seen exactly once per epoch across all processes, and a batch
never needs transposing or cropping to be stacked.

Resuming: `set_epoch(epoch, start_batch=k)` makes the next iteration skip this rank's first k
batches of that epoch.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class BucketBatchSampler(Sampler[list[int]]):
    def __init__(self, sample_sizes: Sequence[tuple[int, int] | None], batch_size: int, seed: int = 0,
                 shuffle: bool = True, drop_last: bool = False, num_replicas: int = 1, rank: int = 0):
        """sample_sizes: the (H, W) each item will have (None = unreadable, never sampled)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"invalid rank {rank} for num_replicas {num_replicas}")
        self.buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
        for index, size in enumerate(sample_sizes):
            if size is not None:
                self.buckets[tuple(size)].append(index)
        if not self.buckets:
            raise ValueError("no readable samples to draw batches from")
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch; `start_batch` skips this rank's first batches (resuming mid-epoch).
        The skip applies to the next iteration only."""
        self.epoch = epoch
        self.start_batch = start_batch

    def _all_batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        batches = []
        for size in sorted(self.buckets):  # sorted: same order in every process
            indices = np.array(self.buckets[size])
            if self.shuffle:
                rng.shuffle(indices)
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size].tolist()
                if len(chunk) == self.batch_size or not self.drop_last:
                    batches.append(chunk)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return self._even_out(batches)

    def _even_out(self, batches: list[list[int]]) -> list[list[int]]:
        world = self.num_replicas
        if len(batches) % world == 0:
            return batches
        if self.drop_last:
            complete = len(batches) // world * world
            if complete == 0:
                raise ValueError(f"drop_last leaves no batch for {world} ranks; lower batch_size or use drop_last=False")
            return batches[:complete]
        target = -(-len(batches) // world) * world  # next multiple of the world size
        batches = list(batches)
        while len(batches) < target and max(len(b) for b in batches) > 1:
            largest = max(range(len(batches)), key=lambda i: len(batches[i]))  # first of the largest
            batch = batches.pop(largest)
            batches[largest:largest] = [batch[: len(batch) // 2], batch[len(batch) // 2:]]
        for i in range(target - len(batches)):  # fewer items than ranks: repeat (the only duplicates)
            batches.append(batches[i])
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches()[self.rank::self.num_replicas]
        start, self.start_batch = self.start_batch, 0
        yield from batches[start:]

    def batches_per_epoch(self) -> int:
        return len(self._all_batches()) // self.num_replicas

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch() - self.start_batch)
