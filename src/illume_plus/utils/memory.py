"""Large tensors from the heap: an allocation policy for the code that creates big feature maps.

glibc serves every allocation above its mmap threshold (at most 32 MiB) with a new mapping and
unmaps it on free, so such a tensor is page-faulted in, 4 KiB at a time, each time one is
created. The pixel CNNs' full-resolution maps pass that size from 512^2 (32 channels x 512^2
x 4 bytes) and every convolution there creates one: the faults cost 20-30% of DualViTok's
encode time on CPU. PyTorch's tuning guide answers this by preloading jemalloc or tcmalloc.
Here, inside `large_tensors_from_heap()`, glibc is told (mallopt) to serve large blocks from
its heap, so a map freed by one layer is reused by the next, and the heap's free top is kept
(up to 2 GiB) for the next call, like a caching allocator. Outside the scope, blocks above
32 MiB are mapped again (the threshold glibc's own dynamic rule settles at once large blocks
have been freed). The cost: the process keeps about the peak working set of those calls.

ILLUME_PLUS_HEAP_FOR_LARGE_TENSORS=0 leaves the allocator alone. Off glibc nothing changes.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import threading
from contextlib import contextmanager

ENV = "ILLUME_PLUS_HEAP_FOR_LARGE_TENSORS"
# mallopt parameters (glibc's malloc.h) and the values set inside / outside the scope; the trim
# threshold stays (a trimmed top would be faulted in again by the next call)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_INSIDE = {_M_MMAP_MAX: 0, _M_TRIM_THRESHOLD: 2**31 - 1}
_OUTSIDE = {_M_MMAP_MAX: 65536, _M_MMAP_THRESHOLD: 32 << 20}

_lock = threading.Lock()
_depth = 0  # scopes open in this process (threads share the allocator)


@functools.cache
def _mallopt():
    """glibc's mallopt, or None (not Linux, no such symbol, or a stub such as musl's)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt if mallopt(_M_MMAP_MAX, 65536) == 1 else None  # glibc answers 1; musl's stub 0


def available() -> bool:
    return os.environ.get(ENV, "1") != "0" and _mallopt() is not None


def _apply(settings: dict[int, int]) -> None:
    for parameter, value in settings.items():
        _mallopt()(parameter, value)


@contextmanager
def large_tensors_from_heap():
    """Within this block (nestable, any thread), large allocations come from the heap and stay."""
    global _depth
    if not available():
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            _apply(_INSIDE)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _apply(_OUTSIDE)


def uses_heap_for_large_tensors(method):
    """Decorator: run `method` inside large_tensors_from_heap()."""
    @functools.wraps(method)
    def wrapped(*args, **kwargs):
        with large_tensors_from_heap():
            return method(*args, **kwargs)
    return wrapped
