"""Peak memory of a block, for the benchmarks: CUDA max allocated, or the resident set size sampled
every 2 ms on the CPU. Torch and the standard library only, so that scripts running in another
environment (authors_generation.py, with the authors' transformers) share it.

    with PeakMemory(torch.device("cpu")) as memory:
        work()
    memory.peak, memory.extra   # MiB; extra: above the size when the block started
"""

from __future__ import annotations

import ctypes
import gc
import os
import threading
import time

import torch


class PeakMemory:
    """Peak memory of a block: CUDA max allocated, or sampled RSS on the CPU."""

    def __init__(self, device: torch.device):
        self.device = device

    @staticmethod
    def _rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def __enter__(self):
        gc.collect()
        try:  # hand freed heap back to the OS so the previous loop's peak does not hide this one's
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated() / 2**20
            return self
        self.start = self.peak = self._rss_mb()
        self._stop = threading.Event()

        def sample():
            while not self._stop.is_set():
                self.peak = max(self.peak, self._rss_mb())
                time.sleep(0.002)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._rss_mb())
        self.extra = self.peak - self.start
