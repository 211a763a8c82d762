"""Give the memory that start-up used and freed back to the system.

Importing and building a service (pydantic schemas, SQLAlchemy's tables, the config) leaves several MB of freed but
still mapped heap: the C allocator keeps it for reuse that never comes. Once a service is up, one garbage collection
and glibc's `malloc_trim(0)` return it (about 4 MB for all four services in one process, measured with
bench/footprint.py). Elsewhere than glibc there is nothing to trim and this does nothing.
"""

from __future__ import annotations

import ctypes
import gc
import sys
from functools import cache


@cache
def _malloc_trim() -> ctypes._NamedFuncPointer | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None).malloc_trim  # the C library this interpreter runs on
    except (OSError, AttributeError):  # musl (Alpine) has no malloc_trim
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function


def release_unused_memory() -> bool:
    """Collect garbage and return the freed heap to the system; False where the C library cannot."""
    gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
