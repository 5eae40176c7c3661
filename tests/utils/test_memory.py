"""utils/memory.py's allocation scope, observed through the page faults of a process that
creates the same large tensor again and again."""

import os
import subprocess
import sys

import pytest

PROBE = r"""
import contextlib, resource, sys
import torch
from illume_plus.utils.memory import available, large_tensors_from_heap
print("available", available(), file=sys.stderr)
MIB48 = 48 << 20  # above glibc's largest mmap threshold

def faults_per_tensor(size=MIB48):
    for _ in range(10):  # the heap settles
        torch.empty(size, dtype=torch.uint8).fill_(1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        torch.empty(size, dtype=torch.uint8).fill_(1)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10 / (size // MIB48)

plain = faults_per_tensor()
with large_tensors_from_heap():
    with large_tensors_from_heap():  # nested: the inner exit keeps the policy
        pass
    inside = faults_per_tensor()
after = faults_per_tensor(4 * MIB48)  # larger than any block the heap kept
print(plain, inside, after)
"""


def run(env=None):
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})})
    return [float(v) for v in out.stdout.split()], out.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the policy is glibc's mallopt")
def test_large_tensors_reuse_freed_memory_inside_the_scope_only():
    pages = (48 << 20) // 4096
    (plain, inside, after), stderr = run()
    if "available False" in stderr:
        pytest.skip("this C library has no mallopt (not glibc)")
    assert plain > pages / 4  # each tensor faulted in afresh (fewer with transparent huge pages)
    assert inside < pages / 50
    assert after > pages / 4  # outside the scope, glibc maps new large blocks again (per 48 MiB)
    (plain, inside, after), stderr = run({"ILLUME_PLUS_HEAP_FOR_LARGE_TENSORS": "0"})
    assert "available False" in stderr and inside > pages / 4
