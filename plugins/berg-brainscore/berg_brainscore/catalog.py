"""Which Brain-Score models exist, read from the installed ``brainscore_vision`` (not imported).

``brainscore_vision.load_model(identifier)`` finds a model by reading every
``brainscore_vision/models/<folder>/__init__.py`` and looking for the text
``model_registry['<identifier>']``: it accepts an identifier found in exactly one folder and
imports that folder. The identifier is not the folder name (folder ``AT_efficientnet_b2``
registers ``AT_efficientnet-b2``), so listing folder names, as the reference toolkit does, lists
names that do not load. :func:`registry_identifiers` applies ``load_model``'s own rule to the same
files instead; it takes about 0.05 s and imports nothing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

from berg_core import ModelLoadError

__all__ = [
    "INSTALL_HINT",
    "PREFIX",
    "member_names",
    "model_folder",
    "model_requirements",
    "model_revision",
    "package_dir",
    "registry_identifiers",
]

#: Member ids are ``PREFIX + identifier``.
PREFIX = "brainscore_vision-"

INSTALL_HINT = (
    "brainscore-vision is not installed in this environment ({python}). berg-brainscore needs "
    "Python 3.11 and an environment of its own (brainscore-vision pins numpy<2): "
    "python3.11 -m venv bs-env && bs-env/bin/pip install berg-core berg-brainscore"
)

_REGISTRATION = re.compile(r"model_registry\['([^']*)'\]")
_ASSIGNMENT = re.compile(r"\s*=(?!=)")


def package_dir() -> Path:
    """The folder of the installed ``brainscore_vision`` package (found without importing it).

    Raises
    ------
    ModelLoadError
        If ``brainscore_vision`` is not installed.
    """
    spec = importlib.util.find_spec("brainscore_vision")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(INSTALL_HINT.format(python=sys.executable))
    return Path(next(iter(spec.submodule_search_locations)))


@lru_cache(maxsize=4)
def _scan(models_dir: Path) -> tuple[dict[str, str], frozenset[str]]:
    """Map each loadable identifier to its folder; also return the ambiguous identifiers."""
    mentioned: dict[str, set[str]] = defaultdict(set)  # identifier -> folders naming it
    assigned: dict[str, set[str]] = defaultdict(set)  # identifier -> folders assigning it
    for folder in sorted(models_dir.iterdir()):
        if folder.name.startswith((".", "_")) or not folder.is_dir():
            continue
        init = folder / "__init__.py"
        if not init.is_file():
            continue
        for line in init.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.replace('"', "'")  # load_model's own normalisation
            for match in _REGISTRATION.finditer(line):
                identifier = match.group(1)
                mentioned[identifier].add(folder.name)
                code = not line.lstrip().startswith("#")
                if code and _ASSIGNMENT.match(line, match.end()):
                    assigned[identifier].add(folder.name)
    loadable = {}
    for identifier, folders in mentioned.items():
        # load_model asserts exactly one folder mentions it; the folder must really assign it
        if len(folders) == 1 and assigned.get(identifier) == folders:
            loadable[identifier] = next(iter(folders))
    ambiguous = frozenset(i for i, folders in mentioned.items() if len(folders) > 1)
    return loadable, ambiguous


def _registered_in_process() -> list[str]:
    """Identifiers added to ``brainscore_vision.model_registry`` in this process."""
    module = sys.modules.get("brainscore_vision")
    return list(getattr(module, "model_registry", {}) or {}) if module is not None else []


def registry_identifiers() -> list[str]:
    """The identifiers ``brainscore_vision.load_model`` accepts, sorted.

    Those of the installed package's model folders, plus any registered in this process with
    ``brainscore_vision.model_registry[identifier] = ...`` (berg loads those directly).
    """
    loadable, _ = _scan(package_dir() / "models")
    return sorted(set(loadable) | set(_registered_in_process()))


def member_names() -> list[str]:
    """The lister of the ``brainscore_vision`` family (see ``register_model_families``)."""
    return registry_identifiers()


def model_folder(identifier: str) -> Path | None:
    """The model folder registering *identifier*; ``None`` if unknown or registered in-process."""
    loadable, _ = _scan(package_dir() / "models")
    folder = loadable.get(identifier)
    return package_dir() / "models" / folder if folder is not None else None


def model_requirements(identifier: str) -> tuple[Path | None, list[str]]:
    """The model folder's ``requirements.txt`` and the requirements it lists (no comments)."""
    folder = model_folder(identifier)
    path = folder / "requirements.txt" if folder is not None else None
    if path is None or not path.is_file():
        return None, []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    requirements = [line.split("#", 1)[0].strip() for line in lines]
    return path, [r for r in requirements if r]


def model_revision(identifier: str) -> str:
    """A content hash of the model's folder: changes whenever its code or layer map changes.

    ``"in-process:<identifier>"`` for a model registered in this process (no folder to hash).
    """
    folder = model_folder(identifier)
    if folder is None:
        return f"in-process:{identifier}"
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder)
        if "__pycache__" in relative.parts or path.suffix in (".pyc", ".pyo"):
            continue
        digest.update(str(relative.as_posix()).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return f"sha256:{digest.hexdigest()[:16]}"
