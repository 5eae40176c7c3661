"""The speculative engine's KV cache: rollback really discards rejected columns (per row,
different lengths in one batch) without touching the buffers. That the engine runs a whole
request on one cache allocated up front is tested with the engine (test_speculative.py)."""

import pytest
import torch

from illume_plus.mllm.kv_cache import PreallocatedKVCache


@pytest.fixture(scope="module")
def tiny_model():
    from illume_plus.mllm.config import IllumePlusConfig
    from illume_plus.mllm.model import IllumePlus

    torch.manual_seed(0)
    return IllumePlus(IllumePlusConfig.from_name("tiny")).eval()


def window_forward(model, cache, tokens):
    """Feed tokens (rows, k) after each row's cached columns, as the speculative engine does."""
    held = torch.tensor(cache.row_lengths() or [0] * len(tokens))  # None: nothing written yet
    k = tokens.shape[1]
    limit = held[:, None] + torch.arange(k)  # row r's query j sees its columns up to its own
    mask = (torch.arange(int(held.max()) + k) <= limit[:, :, None])[:, None]
    return model.step(input_ids=tokens, attention_mask=mask, position_ids=limit, past_key_values=cache,
                      all_positions=True).hidden


def fresh_run(model, tokens):
    """Hidden states of a cacheless forward over one row's whole sequence (1, L)."""
    length = tokens.shape[1]
    return model.step(input_ids=tokens, attention_mask=torch.ones(1, length, dtype=torch.long),
                      position_ids=torch.arange(length)[None], past_key_values=None, all_positions=True).hidden[0]


def test_rollback_discards_the_rejected_columns_of_each_row(tiny_model):
    """Prompt, a 5-token window, rollback to 1 and 3 kept columns (different per row), then a
    2-token window that differs from the rejected drafts: each row's output must equal a fresh
    run over its prompt + kept tokens + new tokens, as if the rejected drafts never existed."""
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, 200, (2, 6), generator=gen)
    drafts = torch.randint(0, 200, (2, 5), generator=gen)
    new = (drafts[:, :2] + 1) % 200  # differ from the drafts at the same places
    cache = PreallocatedKVCache(tiny_model.config.num_hidden_layers, max_length=16)
    window_forward(tiny_model, cache, prompt)
    buffers = [(layer.keys.data_ptr(), layer.values.data_ptr()) for layer in cache.layers]
    window_forward(tiny_model, cache, drafts)
    kept = [1, 3]
    cache.rollback([6 + a for a in kept])
    assert cache.row_lengths() == [7, 9] and cache.get_seq_length() == 9
    hidden = window_forward(tiny_model, cache, new)
    assert cache.row_lengths() == [9, 11]
    for row, a in enumerate(kept):
        reference = fresh_run(tiny_model, torch.cat([prompt[row], drafts[row, :a], new[row]])[None])
        torch.testing.assert_close(hidden[row], reference[-2:], rtol=1e-5, atol=1e-5)
    # same rows at one length again: back to plain slice writes, still the same buffers
    cache.rollback(8)
    assert cache.layers[0].rows is None and cache.row_lengths() == [8, 8]
    assert [(layer.keys.data_ptr(), layer.values.data_ptr()) for layer in cache.layers] == buffers


def test_rollback_refuses_columns_a_row_never_held():
    cache = PreallocatedKVCache(num_layers=1, max_length=8)
    with pytest.raises(ValueError, match="empty"):
        cache.rollback(0)
    cache.update(torch.randn(2, 1, 3, 4), torch.randn(2, 1, 3, 4), 0)
    with pytest.raises(ValueError, match="cannot roll back"):
        cache.rollback([2, 4])
