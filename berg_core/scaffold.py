"""``berg new-plugin NAME``: a renamed copy of the plugin template (``plugins/_template``).

The template is a working distribution, ``berg-template`` (package ``berg_template``, model ids
``eeg-template-readout`` and ``fmri-template-brainmodel``). :func:`new_plugin` copies it and
replaces those names: ``NAME = "my-family"`` gives the distribution ``berg-my-family``, the package
``berg_my_family``, the entry point ``my_family`` and the ids ``eeg-my_family-readout`` and
``fmri-my_family-brainmodel``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from berg_core.errors import InvalidParameterError, describe_value

__all__ = ["NAME_PATTERN", "find_template", "new_plugin", "renames"]

#: Valid family names: lower-case words of letters and digits joined by ``-`` or ``_``.
NAME_PATTERN = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")
#: Files and folders of a template checkout that are not copied.
_SKIP = ("__pycache__", "*.egg-info", "build", "dist", ".pytest_cache", "*.pyc")
_TEXT_SUFFIXES = {".py", ".toml", ".md", ".txt", ".cfg", ".ini", ".json", ".yaml", ".yml"}


def find_template() -> Path:
    """The template folder: ``berg_core/_template`` when installed with it, else the checkout's.

    Raises
    ------
    InvalidParameterError
        No template is found (berg-core installed from a wheel without it).
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / "_template", here.parent / "plugins" / "_template"):
        if (candidate / "pyproject.toml").is_file():
            return candidate
    raise InvalidParameterError(
        "the plugin template was not found: it ships with berg's source repository "
        "(plugins/_template); clone it, or pass --template DIR"
    )


def renames(name: str) -> dict[str, str]:
    """Template name -> new name, for every name the template uses (longest first)."""
    family = name.replace("-", "_")
    return {
        'template = "berg_template.plugin"': f'{family} = "berg_{family}.plugin"',
        "berg_template": f"berg_{family}",
        "berg-template": f"berg-{name.replace('_', '-')}",
        "eeg-template-readout": f"eeg-{family}-readout",
        "fmri-template-brainmodel": f"fmri-{family}-brainmodel",
        "train_dataset-template": f"train_dataset-{family}",
    }


def new_plugin(name: str, directory: str | Path, *, template: str | Path | None = None) -> Path:
    """Copy the template to ``directory / berg-NAME`` with its names replaced.

    Parameters
    ----------
    name : str
        The family name (:data:`NAME_PATTERN`: ``things-eeg2``, ``my_lab``).
    directory : path
        Where the new distribution's folder is made.
    template : path, optional
        The template folder (default: :func:`find_template`).

    Returns
    -------
    pathlib.Path
        The new folder.

    Raises
    ------
    InvalidParameterError
        An invalid *name*, a *directory* that is not a folder, or a target that exists.
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or name == "template":
        raise InvalidParameterError(
            f"NAME = {describe_value(name)}: a family name is lower-case letters and digits, "
            f"words joined by '-' or '_', starting with a letter, and not 'template' (e.g. "
            f"things-eeg2)"
        )
    directory = Path(directory)
    if not directory.is_dir():
        raise InvalidParameterError(f"--dir {directory}: no such folder")
    source = Path(template) if template is not None else find_template()
    mapping = renames(name)
    target = directory / mapping["berg-template"]
    if target.exists():
        raise InvalidParameterError(f"{target} exists; choose another NAME or --dir")
    staging = directory / f".{target.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(source, staging, ignore=shutil.ignore_patterns(*_SKIP))
    try:
        for path in sorted(staging.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_file() and path.suffix in _TEXT_SUFFIXES:
                text = path.read_text(encoding="utf-8")
                for old, new in mapping.items():
                    text = text.replace(old, new)
                path.write_text(text, encoding="utf-8")
            if "berg_template" in path.name:
                path.rename(
                    path.with_name(path.name.replace("berg_template", mapping["berg_template"]))
                )
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
