"""Choosing the torch device a model runs on, and giving its memory back."""

from __future__ import annotations

import gc

import torch

from berg_core.errors import InvalidParameterError

__all__ = ["empty_device_cache", "resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn a user's device string into a :class:`torch.device` that exists on this machine.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or
        ``"mps"``.

    Returns
    -------
    torch.device

    Raises
    ------
    InvalidParameterError
        If the device is not available here (``"cuda"`` without a GPU, ``"cuda:3"`` on a machine
        with two GPUs, ``"mps"`` off Apple silicon) or the string is not a device.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidParameterError(f"device = {device!r} is not a torch device: {exc}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidParameterError(
                f"device = {device!r} but CUDA is not available on this machine "
                f"(torch {torch.__version__}); use device='cpu' or 'auto'"
            )
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise InvalidParameterError(
                f"device = {device!r} but this machine has {count} CUDA device(s)"
            )
    elif resolved.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise InvalidParameterError(f"device = {device!r} but MPS is not available here")
    elif resolved.type != "cpu":
        raise InvalidParameterError(
            f"device = {device!r} is not supported; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        )
    return resolved


def empty_device_cache(device: torch.device) -> None:
    """Collect garbage and return cached accelerator memory of *device* to the driver."""
    gc.collect()
    if device.type == "cuda" and torch.cuda.is_available():
        with torch.cuda.device(device):
            torch.cuda.empty_cache()
    elif device.type == "mps":
        mps = getattr(torch, "mps", None)
        if mps is not None and hasattr(mps, "empty_cache"):
            mps.empty_cache()
