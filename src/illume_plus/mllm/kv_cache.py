"""A KV cache preallocated for a whole decoding request.

The engine knows every request's length before it starts (prompt + schedule), so each
layer's keys and values get ONE buffer (rows, kv_heads, max_length, head_dim), zero-filled
up front, and each step writes its position in place. Compared with transformers'
`DynamicCache` (a `torch.cat` of the whole cache per layer per step) nothing is allocated or
copied while decoding, and no fresh pages are touched step by step: the per-step page
faults that made CPU decoding swing by an order of magnitude under memory pressure are gone.

Unlike transformers' `StaticCache`, `update` returns views of the filled prefix, so
attention runs over the tokens that exist (not over `max_length` masked slots) and the
caller's padding mask keeps its natural length (cache + new tokens); writes are slice
copies, with no index tensor built per step. Left padding, CFG rows and per-row positions
are the caller's business, exactly as with `DynamicCache`: the cache only stores.

Speculative decoding writes a window of tokens per forward and keeps only the accepted ones,
a different number per row: `rollback(lengths)` sets how many columns each row keeps (an
int for all rows, or one per row). Nothing is freed or copied; the next forward simply
writes over the discarded columns, each row at its own length. While rows differ, the
attention view runs to the longest row, and the caller's mask hides each shorter row's
stale columns (there are no holes inside a row: its kept columns stay contiguous).
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

__all__ = ["PreallocatedKVCache"]


class _PreallocatedLayer(CacheLayerMixin):
    """One layer's keys/values in buffers sized for the whole request (allocated on first update)."""

    is_compileable = False
    is_sliding = False

    def __init__(self, max_length: int):
        super().__init__()
        self.max_length = max_length
        self.length = 0  # columns the attention view covers: the longest row
        self.rows = None  # per-row lengths and their device copy while rows differ, else None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        rows, heads = key_states.shape[:2]
        self.device = key_states.device
        # zeros, not empty: every page is touched now, not one by one as steps write into them
        self.keys = torch.zeros(rows, heads, self.max_length, key_states.shape[-1], dtype=key_states.dtype,
                                device=self.device)
        self.values = torch.zeros(rows, heads, self.max_length, value_states.shape[-1], dtype=value_states.dtype,
                                  device=self.device)
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        k = key_states.shape[-2]
        start, stop = self.length, self.length + k
        if stop > self.max_length:
            raise ValueError(f"the KV cache holds {self.max_length} positions; writing {stop} overflows it")
        if self.rows is None:  # every row at the same length: one slice copy
            self.keys[:, :, start:stop].copy_(key_states)
            self.values[:, :, start:stop].copy_(value_states)
        else:  # each row writes after its own kept columns (one indexed copy per tensor)
            lengths, starts = self.rows
            columns = starts[:, None] + torch.arange(k, device=starts.device)  # (rows, k)
            row = torch.arange(len(lengths), device=starts.device)[:, None]
            # indices on dims 0 and 2 put (rows, k) first: (rows, k, heads, head_dim)
            self.keys[row, :, columns] = key_states.transpose(1, 2)
            self.values[row, :, columns] = value_states.transpose(1, 2)
            self.rows = ([n + k for n in lengths], starts + k)
        self.length = stop
        return self.keys[:, :, :stop], self.values[:, :, :stop]

    def rollback(self, lengths: list[int], starts: torch.Tensor | None) -> None:
        self.length = max(lengths)
        self.rows = None if starts is None else (list(lengths), starts)

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.length + query_length, 0

    def get_seq_length(self) -> int:
        return self.length

    def get_max_length(self) -> int:
        return self.max_length

    def reset(self) -> None:
        self.length = 0
        self.rows = None


class PreallocatedKVCache(Cache):
    """A transformers `Cache` whose layers hold at most `max_length` positions, preallocated.

    Used wherever a `DynamicCache` would be: pass it as the model's `past_key_values` for the
    prefill and every step; `get_seq_length()` is the number of positions written so far (the
    longest row's, after a per-row `rollback`)."""

    def __init__(self, num_layers: int, max_length: int):
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        super().__init__(layers=[_PreallocatedLayer(max_length) for _ in range(num_layers)])

    def row_lengths(self) -> list[int] | None:
        """Columns each row holds (None before the first write)."""
        layer = self.layers[0]
        if not layer.is_initialized:
            return None
        return list(layer.rows[0]) if layer.rows is not None else [layer.length] * layer.keys.shape[0]

    def rollback(self, lengths) -> None:
        """Keep the first `lengths` columns (an int: every row; a sequence: per row) and
        discard the rest: the next forward writes over them. Nothing is reallocated or copied."""
        held = self.row_lengths()
        if held is None:
            raise ValueError("nothing to roll back: the cache is empty")
        lengths = [int(lengths)] * len(held) if isinstance(lengths, int) else [int(n) for n in lengths]
        if len(lengths) != len(held) or any(not 0 <= n <= h for n, h in zip(lengths, held)):
            raise ValueError(f"cannot roll back rows holding {held} columns to {lengths}")
        ragged = len(set(lengths)) > 1
        starts = torch.tensor(lengths, device=self.layers[0].device) if ragged else None  # shared by the layers
        for layer in self.layers:
            layer.rollback(lengths, starts)
