"""Give freed memory back to the operating system between the training steps.

After feature extraction the process still holds the backbone's buffers and, above all, heap
pages that glibc's allocator keeps after they are freed (a few hundred MB for AlexNet batches).
The PCA and the regression would allocate on top of them, so the peak would be their sum.
:func:`release_memory` collects unreachable objects and asks glibc to return free heap pages
(``malloc_trim(0)``); on other C libraries (macOS, musl, Windows) only the collection runs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
from functools import cache

__all__ = ["release_memory"]


@cache
def _malloc_trim() -> object | None:
    """glibc's ``malloc_trim``, or ``None`` where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_memory() -> bool:
    """Collect garbage and return free heap memory to the OS where the C library allows it.

    Returns
    -------
    bool
        Whether ``malloc_trim`` ran (glibc only).
    """
    gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)  # type: ignore[operator]
    return True
