"""The one exception hierarchy of berg.

Every error berg raises on purpose is a :class:`BergError`. Errors about a value the caller
passed (:class:`InvalidParameterError`, :class:`StimulusError`) are also :class:`ValueError`, so
code written against plain Python conventions keeps working.
"""

from __future__ import annotations

__all__ = [
    "BERGError",
    "BergError",
    "InvalidParameterError",
    "ModelLoadError",
    "ModelNotFoundError",
    "NotDifferentiableError",
    "PluginError",
    "StimulusError",
]


class BergError(Exception):
    """Base class of every error berg raises on purpose."""


#: Spelling used by the reference BERG toolkit; the same class.
BERGError = BergError


class ModelNotFoundError(BergError, LookupError):
    """No installed plugin provides the requested model id."""


class InvalidParameterError(BergError, ValueError):
    """A parameter (subject, selection, device, ...) has a value the model does not accept."""


class StimulusError(BergError, ValueError):
    """The stimulus is not something the model can encode (shape, dtype, range, unreadable file)."""


class ModelLoadError(BergError):
    """A model's files or backbone could not be loaded (missing, corrupt or unsafe file)."""


class PluginError(BergError):
    """A plugin is broken: it failed to import, or registered something invalid or twice."""


class NotDifferentiableError(BergError, TypeError):
    """A model has no differentiable torch path (``EncodingModel.differentiable``)."""


def describe_value(value: object, limit: int = 60) -> str:
    """Return a short ``repr`` of *value* for error messages (long values are elided)."""
    try:
        import numpy as np

        if isinstance(value, np.ndarray):
            return f"array(shape={value.shape}, dtype={value.dtype})"
    except ImportError:  # pragma: no cover - numpy is a hard dependency
        pass
    try:
        text = repr(value)
    except Exception:  # an int too long to print (> 4300 digits), a failing __repr__
        if isinstance(value, int):
            return f"<int of {value.bit_length()} bits>"
        return f"<{type(value).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
