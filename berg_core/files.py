"""Locating a model's files under ``berg_dir``, with an error that says how to get a missing one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from berg_core.errors import ModelLoadError
from berg_core.safe_npy import load_pickled_npy

__all__ = ["load_model_file", "require_file"]

BUCKET = "brain-encoding-response-generator"


def require_file(berg_dir: Path, relative: str, model_id: str, subject: Any = None) -> Path:
    """Return ``berg_dir / relative``, or raise :class:`ModelLoadError` saying how to get it.

    Parameters
    ----------
    berg_dir : Path
        Root of the model files.
    relative : str
        Path of the file under *berg_dir* (its key in the public bucket).
    model_id : str
        The model needing it (for the message).
    subject : int or str, optional
        The subject (for the message).
    """
    path = Path(berg_dir) / relative
    if path.is_file():
        return path
    subject_arg = f" --subject {subject}" if subject is not None else ""
    raise ModelLoadError(
        f"{model_id} needs {relative} under berg_dir {berg_dir}, and it is missing. Get it with "
        f"`berg fetch {model_id}{subject_arg} --berg-dir {berg_dir}`, or with the AWS CLI: "
        f"aws s3 cp --no-sign-request s3://{BUCKET}/{relative} {path}"
    )


def load_model_file(berg_dir: Path, relative: str, model_id: str, subject: Any = None) -> Any:
    """:func:`require_file`, then read it with the safe loader :func:`load_pickled_npy`."""
    return load_pickled_npy(require_file(berg_dir, relative, model_id, subject))
