"""The engine's preallocated KV cache and its per-step thread policy (no timings asserted)."""

import pytest
import torch

from illume_plus.mllm import threads as threads_module
from illume_plus.mllm.kv_cache import PreallocatedKVCache
from illume_plus.mllm.threads import StepThreads


def test_cache_writes_in_place_and_returns_the_filled_prefix():
    cache = PreallocatedKVCache(num_layers=2, max_length=5)
    k1, v1 = torch.randn(3, 2, 2, 4), torch.randn(3, 2, 2, 4)
    keys, values = cache.update(k1, v1, 0)
    buffer = cache.layers[0].keys
    assert buffer.shape == (3, 2, 5, 4)
    assert torch.equal(keys, k1) and torch.equal(values, v1)
    k2, v2 = torch.randn(3, 2, 1, 4), torch.randn(3, 2, 1, 4)
    keys, values = cache.update(k2, v2, 0)
    assert torch.equal(keys, torch.cat([k1, k2], dim=2)) and torch.equal(values, torch.cat([v1, v2], dim=2))
    assert keys.data_ptr() == buffer.data_ptr() and cache.layers[0].keys is buffer  # no reallocation
    assert cache.get_seq_length(0) == 3 and cache.get_seq_length(1) == 0
    with pytest.raises(ValueError, match="holds 5 positions"):
        cache.update(torch.randn(3, 2, 3, 4), torch.randn(3, 2, 3, 4), 0)


class _FakeClock:
    """perf_counter that advances by the cost of the current thread count on each call pair."""

    def __init__(self, cost):
        self.now, self.cost, self.calls = 0.0, cost, 0

    def __call__(self):
        self.calls += 1
        if self.calls % 2 == 0:  # end of a step
            self.now += self.cost[torch.get_num_threads()]
        return self.now


def run_steps(threads, n):
    used = []
    for _ in range(n):
        threads.begin()
        used.append(torch.get_num_threads())
        threads.end()
    return used


@pytest.mark.parametrize("cost, winner", [({1: 1.0, 2: 5.0}, 1), ({1: 5.0, 2: 1.0}, 2)])
def test_thread_count_follows_the_faster_choice(monkeypatch, cost, winner):
    monkeypatch.setattr(threads_module.time, "perf_counter", _FakeClock(cost))
    before = torch.get_num_threads()
    with StepThreads((2, 1), probes=2, period=8) as threads:
        used = run_steps(threads, 4 + 8)
    assert used[:4] == [2, 1, 2, 1]  # interleaved probes
    assert used[4:] == [winner] * 8
    assert torch.get_num_threads() == before  # the caller's setting comes back


def test_tiny_models_decode_with_one_thread(monkeypatch):
    from illume_plus.mllm.config import IllumePlusConfig
    from illume_plus.mllm.model import IllumePlus

    model = IllumePlus(IllumePlusConfig.from_name("tiny"))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert StepThreads.for_model(model).choices == (1,)
    assert StepThreads.for_model(model, num_threads=3).choices == (3,)
    with pytest.raises(ValueError, match="num_threads"):
        StepThreads.for_model(model, num_threads=0)
