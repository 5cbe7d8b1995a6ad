"""The ``threads`` setting: torch's intra-op thread count for one call, restored afterwards.

Why a setting: torch uses one thread per physical core by default, which is right on an idle
machine. On cores shared with other work, extra threads wait for each other at every parallel
region, and FactorTopy's many small operations hit many of them: on two busy shared cores,
training ran 3.5x faster with 1 thread than with 2. ``None`` leaves torch's setting alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from berg_core import InvalidParameterError

__all__ = ["check_threads", "torch_threads"]


def check_threads(threads: object, name: str = "threads") -> int | None:
    """*threads* if it is ``None`` or a positive integer.

    Raises
    ------
    InvalidParameterError
        Naming *name*, the value and what is allowed.
    """
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InvalidParameterError(
            f"{name} = {threads!r} must be a positive integer (torch's intra-op threads) or None "
            f"(leave torch's setting)"
        )
    return threads


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)``; restore the old count after.

    Parameters
    ----------
    threads : int or None
        Threads for the block; ``None`` changes nothing.
    """
    threads = check_threads(threads)
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
