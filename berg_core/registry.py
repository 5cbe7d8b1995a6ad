"""The model registry: model ids -> lazy loaders, cards, schemas and metadata loaders.

Built once per process from the plugins' ``register_*`` hooks (:func:`get_registry`). Resolving an
id never imports a model's heavy dependencies; only :meth:`ModelEntry.load_model` does.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from berg_core.cards import ModelCard
from berg_core.errors import ModelNotFoundError, PluginError
from berg_core.plugins import PluginInfo, load_plugins
from berg_core.schemas import SelectionSchema

__all__ = [
    "KNOWN_FAMILIES",
    "FamilyEntry",
    "ModelEntry",
    "Registry",
    "get_registry",
    "load_metadata",
    "reset",
]

#: Id prefixes of the model families the berg project publishes, and the distribution of each,
#: so that an id whose plugin is missing gets a ``pip install`` hint.
KNOWN_FAMILIES: tuple[tuple[str, str], ...] = (
    ("fmri-nsd_fsaverage-factortopy", "berg-factortopy"),
    ("fmri-nsd_fsaverage-", "berg-nsd"),
    ("fmri-things_fmri_1-", "berg-things"),
    ("brainscore_vision", "berg-brainscore"),
)


def resolve_import_path(target: str | Callable[..., Any], what: str) -> Any:
    """Return *target*, importing it first if it is a ``"module:attribute"`` string."""
    if not isinstance(target, str):
        return target
    module_name, _, attribute = target.partition(":")
    if not attribute:
        raise PluginError(f"{what}: import path {target!r} must look like 'package.module:name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        from berg_core.errors import ModelLoadError

        missing = getattr(exc, "name", None) or "a dependency"
        raise ModelLoadError(
            f"{what}: importing {module_name} failed because {missing} is missing ({exc}). "
            f"Install the plugin's dependencies (pip install {missing} for a missing library)."
        ) from exc
    try:
        obj: Any = module
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise PluginError(f"{what}: {module_name} has no attribute {attribute!r}") from None
    return obj


@dataclass
class ModelEntry:
    """One registered model id."""

    card: ModelCard
    loader: str | Callable[..., Any]
    plugin: PluginInfo
    schema: type[SelectionSchema] | str | None = None
    metadata_loader: str | Callable[..., Any] | None = None

    def resolve_schema(self) -> type[SelectionSchema] | None:
        """The selection schema class, imported if registered as a path."""
        if self.schema is None:
            return None
        schema = resolve_import_path(self.schema, f"selection schema of {self.card.model_id}")
        if not (isinstance(schema, type) and issubclass(schema, SelectionSchema)):
            raise PluginError(
                f"{self.plugin.label}: selection schema of {self.card.model_id} is {schema!r}, "
                f"not a subclass of berg_core.SelectionSchema"
            )
        return schema


@dataclass
class FamilyEntry:
    """A gateway id standing for many models ``prefix + name``."""

    gateway_id: str
    prefix: str
    lister: str | Callable[[], Iterable[str]]
    plugin: PluginInfo

    def members(self) -> list[str]:
        """Full ids of the family's members (may be slow: it asks the family's own library)."""
        lister = resolve_import_path(self.lister, f"lister of {self.gateway_id}")
        return sorted(self.prefix + name for name in lister())


@dataclass
class _Staged:
    models: list[tuple[ModelCard, Any]] = field(default_factory=list)
    schemas: list[tuple[str, Any]] = field(default_factory=list)
    metadata: list[tuple[str, Any]] = field(default_factory=list)
    families: list[tuple[str, str, Any]] = field(default_factory=list)
    commands: list[CommandEntry] = field(default_factory=list)


@dataclass
class CommandEntry:
    """A ``berg`` subcommand contributed by a plugin (see ``register_commands``)."""

    words: tuple[str, ...]
    help: str
    configure: str | Callable[[Any], None]
    run: str | Callable[[Any], int]
    plugin: PluginInfo | None = None


#: Commands of the core itself; plugins cannot take these names.
BUILTIN_COMMANDS = (
    "plugins",
    "list",
    "describe",
    "metadata",
    "encode",
    "fetch",
    "check",
    "new-plugin",
)


class Registry:
    """All models the loaded plugins provide.

    Parameters
    ----------
    plugins : list of PluginInfo
        The plugins considered (from :func:`berg_core.plugins.load_plugins`).
    manager : pluggy.PluginManager
        The manager holding the successfully imported plugins.
    """

    def __init__(self, manager: Any, plugins: list[PluginInfo]) -> None:
        self.plugins = plugins
        self.models: dict[str, ModelEntry] = {}
        self.conflicts: dict[str, list[str]] = {}
        self.families: dict[str, FamilyEntry] = {}
        self.commands: dict[tuple[str, ...], CommandEntry] = {}
        by_name = {info.name: info for info in plugins}
        staged: dict[str, _Staged] = {}
        for info in plugins:
            if info.error is None and info.module is not None:
                staged[info.name] = self._collect(manager, info)
        for name, stage in staged.items():
            if by_name[name].error is None:
                self._commit_models(by_name[name], stage)
        for name, stage in staged.items():
            if by_name[name].error is None:
                self._commit_extras(by_name[name], stage)

    # -- building ---------------------------------------------------------------------------
    @staticmethod
    def _collect(manager: Any, info: PluginInfo) -> _Staged:
        stage = _Staged()

        def register_model(card: ModelCard, loader: str | Callable[..., Any]) -> None:
            if not isinstance(card, ModelCard):
                raise PluginError(f"register(card, loader): card must be a ModelCard, got {card!r}")
            if not (isinstance(loader, str) or callable(loader)):
                raise PluginError(
                    f"register(card, loader): loader of {card.model_id} is {loader!r}"
                )
            stage.models.append((card, loader))

        def register_schema(model_id: str, schema: Any) -> None:
            stage.schemas.append((model_id, schema))

        def register_metadata(model_id: str, loader: Any) -> None:
            stage.metadata.append((model_id, loader))

        def register_command(name: str, help: str, configure: Any, run: Any) -> None:
            words = tuple(str(name).split())
            if not 1 <= len(words) <= 2 or not all(w.replace("-", "").isalnum() for w in words):
                raise PluginError(f"command name {name!r} must be one or two words")
            if words[0] in BUILTIN_COMMANDS:
                raise PluginError(f"command {name!r} would replace the built-in 'berg {words[0]}'")
            stage.commands.append(CommandEntry(words, str(help), configure, run, info))

        def register_family(gateway_id: str, prefix: str, lister: Any) -> None:
            if not prefix or not isinstance(prefix, str):
                raise PluginError(f"family {gateway_id!r}: prefix must be a non-empty string")
            stage.families.append((gateway_id, prefix, lister))

        callbacks = {
            "register_models": register_model,
            "register_selection_schemas": register_schema,
            "register_metadata_loaders": register_metadata,
            "register_model_families": register_family,
            "register_commands": register_command,
        }
        try:
            for hook_name, callback in callbacks.items():
                for impl in getattr(manager.hook, hook_name).get_hookimpls():
                    if impl.plugin_name != info.name:
                        continue
                    impl.function(**{arg: callback for arg in impl.argnames})
        except Exception as exc:
            info.error = f"registration failed: {type(exc).__name__}: {exc}"
            warnings.warn(
                f"berg: skipped plugin {info.name!r} ({info.label}): {info.error}",
                RuntimeWarning,
                stacklevel=4,
            )
        return stage

    def _commit_models(self, info: PluginInfo, stage: _Staged) -> None:
        for card, loader in stage.models:
            model_id = card.model_id
            if model_id in self.conflicts:
                self.conflicts[model_id].append(info.label)
                continue
            if model_id in self.models:
                first = self.models.pop(model_id)
                first.plugin.models.remove(model_id)
                self.conflicts[model_id] = [first.plugin.label, info.label]
                warnings.warn(
                    f"berg: model id {model_id!r} is registered by both {first.plugin.label} and "
                    f"{info.label}; it is unusable until one of them is uninstalled",
                    RuntimeWarning,
                    stacklevel=4,
                )
                continue
            self.models[model_id] = ModelEntry(card=card, loader=loader, plugin=info)
            info.models.append(model_id)

    def _commit_extras(self, info: PluginInfo, stage: _Staged) -> None:
        def entry_for(model_id: str, what: str) -> ModelEntry | None:
            entry = self.models.get(model_id)
            if entry is None and model_id not in self.conflicts:
                warnings.warn(
                    f"berg: plugin {info.name!r} ({info.label}) registered {what} for unknown "
                    f"model {model_id!r}; ignored",
                    RuntimeWarning,
                    stacklevel=5,
                )
            return entry

        for model_id, schema in stage.schemas:
            if (entry := entry_for(model_id, "a selection schema")) is not None:
                entry.schema = schema
        for model_id, loader in stage.metadata:
            if (entry := entry_for(model_id, "a metadata loader")) is not None:
                entry.metadata_loader = loader
        for command in stage.commands:
            other = self.commands.get(command.words)
            if other is not None:
                del self.commands[command.words]
                warnings.warn(
                    f"berg: command 'berg {' '.join(command.words)}' is registered by both "
                    f"{other.plugin.label if other.plugin else '?'} and {info.label}; left out",
                    RuntimeWarning,
                    stacklevel=5,
                )
                continue
            self.commands[command.words] = command
        for gateway_id, prefix, lister in stage.families:
            if entry_for(gateway_id, "a model family") is not None:
                self.families[prefix] = FamilyEntry(gateway_id, prefix, lister, info)
                info.families.append(gateway_id)

    # -- queries ----------------------------------------------------------------------------
    def resolve(self, model_id: str) -> tuple[ModelEntry, ModelCard]:
        """Return the entry serving *model_id* and the card to use for it.

        Raises
        ------
        ModelNotFoundError
            No plugin provides the id; the message says which distribution would.
        PluginError
            Two plugins registered the id.
        """
        if not isinstance(model_id, str):
            raise ModelNotFoundError(
                f"model_id must be a string, got {type(model_id).__name__} ({model_id!r})"
            )
        if model_id in self.conflicts:
            raise PluginError(
                f"model {model_id!r} is registered by more than one plugin: "
                f"{' and '.join(self.conflicts[model_id])}. Uninstall one of them."
            )
        if model_id in self.models:
            entry = self.models[model_id]
            return entry, entry.card
        for prefix, family in self.families.items():
            if model_id.startswith(prefix) and len(model_id) > len(prefix):
                entry = self.models[family.gateway_id]
                return entry, entry.card.with_id(model_id)
        raise ModelNotFoundError(self._not_found_message(model_id))

    def _not_found_message(self, model_id: str) -> str:
        installed = [info for info in self.plugins if info.error is None]
        summary = ", ".join(f"{i.label} ({len(i.models)} models)" for i in installed) or "none"
        message = f"no model {model_id!r}: "
        hint = ""
        for prefix, distribution in KNOWN_FAMILIES:
            if model_id.startswith(prefix):
                broken = [i for i in self.plugins if i.distribution == distribution and i.error]
                if broken:
                    message += (
                        f"it belongs to {distribution}, which is installed but failed to load "
                        f"({broken[0].label}: {broken[0].error})."
                    )
                elif any(i.distribution == distribution for i in installed):
                    message += f"{distribution} is installed but provides no such model."
                else:
                    message += (
                        f"no installed plugin provides it. It belongs to {distribution}: "
                        f"pip install {distribution}."
                    )
                break
        else:
            message += "no installed plugin provides it."
        close = difflib.get_close_matches(model_id, list(self.models), n=3, cutoff=0.6)
        if close:
            hint = f" Did you mean: {', '.join(close)}?"
        return f"{message}{hint} Installed: {summary}. See: berg plugins"

    def model_ids(self, pattern: str | None = None, expand: Iterable[str] = ()) -> list[str]:
        """Registered ids, sorted; families in *expand* are replaced by their members.

        *pattern* is a shell-style wildcard (``"fmri-*"``); without wildcard characters it matches
        ids containing it.
        """
        ids = set(self.models)
        for gateway_id in expand:
            family = next((f for f in self.families.values() if f.gateway_id == gateway_id), None)
            if family is None:
                known = ", ".join(sorted(f.gateway_id for f in self.families.values())) or "none"
                hint = next(
                    (
                        f" It belongs to {dist}: pip install {dist}."
                        for prefix, dist in KNOWN_FAMILIES
                        if gateway_id.startswith(prefix.rstrip("-"))
                    ),
                    "",
                )
                raise ModelNotFoundError(
                    f"cannot expand {gateway_id!r}: it is not a model family of any installed "
                    f"plugin; installed families: {known}.{hint}"
                )
            ids.discard(gateway_id)
            ids.update(family.members())
        if pattern:
            if not any(ch in pattern for ch in "*?["):
                pattern = f"*{pattern}*"
            ids = {i for i in ids if fnmatch.fnmatchcase(i, pattern)}
        return sorted(ids)


_lock = threading.Lock()
_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built from the installed plugins on first call."""
    global _registry
    with _lock:
        if _registry is None:
            manager, infos = load_plugins()
            _registry = Registry(manager, infos)
        return _registry


def reset(extra: dict[str, object] | None = None) -> Registry:
    """Rebuild the registry now (after installing plugins, or to add in-process *extra* plugins)."""
    global _registry
    with _lock:
        manager, infos = load_plugins(extra)
        _registry = Registry(manager, infos)
        return _registry


def load_metadata(
    entry: ModelEntry, card: ModelCard, berg_dir: Path, subject: Any
) -> dict[str, Any]:
    """Call the entry's metadata loader (or return the card) for a validated subject.

    The result is in writable memory (:func:`berg_core.safe_npy.in_memory`).
    """
    if entry.metadata_loader is None:
        return card.to_dict()
    from berg_core.safe_npy import in_memory

    loader = resolve_import_path(entry.metadata_loader, f"metadata loader of {card.model_id}")
    return in_memory(loader(card, berg_dir, subject))
