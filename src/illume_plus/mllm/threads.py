"""How many intra-op threads a CPU decoding step uses.

A decoding step is a few hundred small operations (matrix-vector products, norms, RoPE,
attention over one query, sampling). With N threads each of them is an OpenMP parallel
region that ends in a barrier, so a step waits N-way a few hundred times. On a quiet machine
that pays off once the step's matrices are big enough. On a busy machine (other processes
competing for the cores) it is a disaster: a barrier waits until the descheduled thread gets
a core back, every region costs a scheduler time slice, and we measured the same step of the
384M-shape model at 170 ms with 1 thread and 900 ms with 2 (load ~11 on 2 cores).

Policy (`StepThreads`):
- a model whose decoder is tiny (under `SMALL_MODEL_PARAMETERS`) decodes with 1 thread:
  its step is overhead, which threads only add to;
- otherwise the thread count is measured, not guessed: a few steps run alternately with
  the caller's thread count and with 1 thread, the faster (min of the probes) is kept for
  the next `period` steps, then both are probed again, so a machine that becomes busy (or
  quiet) mid-image is followed; the period doubles (up to `max_period`) while the choice holds;
- `num_threads=k` fixes it.
The prefill keeps the caller's setting (one large call, where threads pay off), and the
caller's setting is restored when decoding ends. For the shapes a decoding step uses
(a few rows), a matrix product gives bit-identical results with 1 or 2 threads on CPU, so
the choice changes the speed, not the tokens.
"""

from __future__ import annotations

import time

import torch

__all__ = ["StepThreads", "SMALL_MODEL_PARAMETERS"]

# Decoder parameters (embeddings excluded) below which a step is all overhead: 1 thread.
SMALL_MODEL_PARAMETERS = 20_000_000


class StepThreads:
    """Sets the thread count for each decoding step and learns which count is faster.

    Use: `with StepThreads.for_model(model) as threads:` then, around each step's work,
    `threads.begin()` ... `threads.end()` (the time in between is that step's cost)."""

    def __init__(self, choices: tuple[int, ...], probes: int = 2, period: int = 32, max_period: int = 256):
        self.choices = tuple(dict.fromkeys(int(c) for c in choices if c >= 1)) or (1,)
        self.probes, self.base_period, self.max_period = probes, period, max_period
        self._plan: list[int] = []  # thread counts of the steps still to run in the current probe round
        self._times: dict[int, list[float]] = {}
        self._current = self.choices[0]
        self._period = period
        self._exploit_left = 0
        self._started = 0.0
        self._restore = None

    @classmethod
    def for_model(cls, model, num_threads: int | None = None) -> "StepThreads":
        if num_threads is not None:
            if num_threads < 1:
                raise ValueError(f"num_threads must be >= 1, got {num_threads}")
            return cls((num_threads,))
        available = torch.get_num_threads()
        if available == 1 or decoder_parameters(model) < SMALL_MODEL_PARAMETERS:
            return cls((1,))
        return cls((available, 1))

    @property
    def current(self) -> int:
        return self._current

    def __enter__(self) -> "StepThreads":
        self._restore = torch.get_num_threads()
        return self

    def __exit__(self, *exc) -> None:
        torch.set_num_threads(self._restore)

    def begin(self) -> None:
        if len(self.choices) > 1 and not self._plan and self._exploit_left == 0:
            self._plan = [c for _ in range(self.probes) for c in self.choices]  # interleaved: a b a b
            self._times = {c: [] for c in self.choices}
        want = self._plan[0] if self._plan else self._current
        if want != torch.get_num_threads():
            torch.set_num_threads(want)
        self._started = time.perf_counter()

    def end(self) -> None:
        elapsed = time.perf_counter() - self._started
        if not self._plan:
            self._exploit_left = max(self._exploit_left - 1, 0)
            return
        self._times[self._plan.pop(0)].append(elapsed)
        if not self._plan:  # probe round done: keep the faster, probe again later
            best = min(self.choices, key=lambda c: min(self._times[c]))
            self._period = min(self._period * 2, self.max_period) if best == self._current else self.base_period
            self._current = best
            self._exploit_left = self._period


def decoder_parameters(model) -> int:
    """Parameters a decoding step reads, embeddings and LM head excluded (the head runs on a slice)."""
    layers = model.language_model.model.layers
    return sum(p.numel() for p in layers.parameters())
