"""Where berg keeps model files: the default ``berg_dir``.

A layer below the API, the CLI and :mod:`berg_core.fetch`: all three import it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["BERG_DIR_ENV", "default_berg_dir"]

#: Environment variable naming the default ``berg_dir``.
BERG_DIR_ENV = "BERG_DIR"


def default_berg_dir() -> Path:
    """``$BERG_DIR`` if set, else the platform's user data directory for berg."""
    if os.environ.get(BERG_DIR_ENV):
        return Path(os.environ[BERG_DIR_ENV]).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("berg", appauthor=False))
