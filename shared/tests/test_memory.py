from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import pytest
from chargebus.memory import release_unused_memory


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim, Linux only")
def test_freed_heap_in_the_middle_goes_back_to_the_system() -> None:
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    blocks = [libc.malloc(4000) for _ in range(10_000)]  # 40 MB below the mmap threshold: heap, not mappings
    for block in blocks:
        libc.memset(block, 1, 4000)  # touched, so resident
    keep = libc.malloc(4000)  # above them: the heap's top cannot shrink by itself
    for block in blocks:
        libc.free(block)
    before = rss_mb()
    try:
        assert release_unused_memory()
        assert before - rss_mb() > 20
    finally:
        libc.free(keep)
