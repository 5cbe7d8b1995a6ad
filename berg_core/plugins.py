"""Discovering and loading plugins: entry points of the ``berg`` group, each isolated from the rest.

:func:`load_plugins` imports every entry point (or those named in ``BERG_LOAD_PLUGINS``), registers
each module with a pluggy manager, and records what went wrong for any that failed. Loading happens
once per process, on first use; :func:`berg_core.registry.reset` forgets it (for tests).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from berg_core import hookspecs

__all__ = ["ENTRY_POINT_GROUP", "PluginInfo", "load_plugins"]

#: Entry-point group plugins register under.
ENTRY_POINT_GROUP = "berg"
#: Environment variable: comma-separated entry-point or distribution names to load ("" = none).
LOAD_PLUGINS_ENV = "BERG_LOAD_PLUGINS"


@dataclass
class PluginInfo:
    """What berg knows about one plugin (one entry point).

    Attributes
    ----------
    name : str
        Entry-point name.
    distribution : str
        Name of the installed distribution that declares it (``"?"`` if unknown).
    version : str
        Its version.
    module : module or None
        The loaded module, ``None`` if it failed to import.
    error : str or None
        Why it was skipped, if it was.
    models, families : list of str
        Ids it registered.
    """

    name: str
    distribution: str = "?"
    version: str = "?"
    module: ModuleType | None = None
    error: str | None = None
    models: list[str] = field(default_factory=list)
    families: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """``"distribution version"``, for messages."""
        return f"{self.distribution} {self.version}"


def _wanted() -> set[str] | None:
    value = os.environ.get(LOAD_PLUGINS_ENV)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def _entry_points() -> list[Any]:
    # the standard library's reader (Python >= 3.10 selects by group): the importlib_metadata
    # backport parses every distribution's METADATA through its email adapters, several times
    # slower for the same entry points
    from importlib.metadata import entry_points

    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def load_plugins(
    extra: dict[str, ModuleType | object] | None = None,
) -> tuple[pluggy.PluginManager, list[PluginInfo]]:
    """Import the ``berg`` entry points and register them with a new plugin manager.

    Parameters
    ----------
    extra : dict, optional
        Name -> plugin object to register in addition to the entry points (used by tests and by
        applications embedding berg).

    Returns
    -------
    (pluggy.PluginManager, list of PluginInfo)
        The manager and one record per plugin considered, failed ones included.
    """
    manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
    manager.add_hookspecs(hookspecs)
    wanted = _wanted()
    infos: list[PluginInfo] = []
    for ep in _entry_points():
        dist = getattr(ep, "dist", None)
        info = PluginInfo(
            name=ep.name,
            distribution=dist.metadata["Name"] if dist is not None else "?",
            version=dist.version if dist is not None else "?",
        )
        if wanted is not None and ep.name not in wanted and info.distribution not in wanted:
            continue
        infos.append(info)
        try:
            module = ep.load()
        except Exception as exc:  # a broken plugin must never break berg
            _fail(info, f"failed to import {ep.value}: {type(exc).__name__}: {exc}")
            continue
        _register(manager, info, module)
    for name, plugin in (extra or {}).items():
        info = PluginInfo(name=name, distribution=name, version="(in-process)")
        infos.append(info)
        _register(manager, info, plugin)
    return manager, infos


def _register(manager: pluggy.PluginManager, info: PluginInfo, plugin: object) -> None:
    try:
        manager.register(plugin, name=info.name)
        manager.check_pending()
    except Exception as exc:
        if manager.is_registered(plugin):
            manager.unregister(plugin)
        _fail(info, f"invalid hook implementation: {exc}")
        return
    info.module = plugin  # type: ignore[assignment]


def _fail(info: PluginInfo, reason: str) -> None:
    info.error = reason
    warnings.warn(
        f"berg: skipped plugin {info.name!r} ({info.label}): {reason}",
        RuntimeWarning,
        stacklevel=3,
    )
