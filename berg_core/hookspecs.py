"""Hook specifications: the whole contract between berg and its plugins.

A plugin is a module named by an entry point in the ``berg`` group, for example in its
``pyproject.toml``::

    [project.entry-points.berg]
    nsd = "berg_nsd.plugin"

and implements any of the hooks below with :data:`berg_core.hookimpl`. Every hook receives a
``register`` callback: calling it declares something, and the core validates each declaration and
records which distribution made it. Registration must be cheap and must not import heavy
libraries (torch, torchvision, brainscore_vision): name the code that builds a model with an
import path string (``"berg_nsd.model:load"``) or a small callable that imports lazily.

Each hook is called once per plugin, when berg first needs its registry. If a plugin's hook raises,
everything that plugin registered is dropped, a warning is issued, and ``berg plugins`` shows the
error; other plugins are unaffected.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

__all__ = ["hookimpl", "hookspec"]

#: Marker for hook specifications (used by berg itself).
hookspec = pluggy.HookspecMarker("berg")
#: Marker plugins put on their hook implementations.
hookimpl = pluggy.HookimplMarker("berg")


@hookspec
def register_models(register: Callable[..., None]) -> None:
    """Declare encoding models.

    Parameters
    ----------
    register : callable
        ``register(card, loader)``:

        * ``card`` - a :class:`berg_core.ModelCard`. Its ``model_id`` must be unique across all
          installed plugins; a second registration of the same id (by any plugin) makes the id
          unusable and every request for it raises :class:`berg_core.PluginError` naming both
          distributions.
        * ``loader`` - an import path ``"package.module:attribute"`` or a callable. It is
          resolved and called only when the model is requested, as ``loader(request)`` with a
          :class:`berg_core.LoadRequest` whose subject, selection, device and options the core has
          already validated against the card. It returns a :class:`berg_core.EncodingModel`.
          It raises :class:`berg_core.ModelLoadError` for missing or unreadable files (naming
          the file and ``berg_dir``) and :class:`berg_core.InvalidParameterError` for values only
          it can check.

    Returns
    -------
    None
    """


@hookspec
def register_selection_schemas(register: Callable[..., None]) -> None:
    """Declare how a model's ``selection`` dict is validated.

    Parameters
    ----------
    register : callable
        ``register(model_id, schema)``: ``schema`` is a subclass of
        :class:`berg_core.SelectionSchema` (a pydantic v2 model, one field per selection key) or an
        import path to one. ``model_id`` must have been registered through
        :func:`register_models` by any plugin. The core validates the user's ``selection``
        against it (``None`` and ``{}`` validate as "no selection") before calling the loader,
        turning pydantic's errors into :class:`berg_core.InvalidParameterError` messages that name
        the key, the value and what is allowed; field validators may write ``{model_id}`` in
        their messages. A model without a schema accepts only an empty selection.

    Returns
    -------
    None
    """


@hookspec
def register_metadata_loaders(register: Callable[..., None]) -> None:
    """Declare how per-subject metadata is read without loading the model.

    Parameters
    ----------
    register : callable
        ``register(model_id, loader)``: ``loader`` is an import path or a callable called as
        ``loader(card, berg_dir, subject)`` (``berg_dir`` a :class:`pathlib.Path`, ``subject``
        already validated against ``card.subjects``) that returns the metadata dict of that
        subject, in the layout of the reference toolkit's metadata files. It raises
        :class:`berg_core.ModelLoadError` naming the file when the file is missing or unsafe.
        ``BERG.get_model_metadata`` of a model without a loader returns its card as a dict.

    Returns
    -------
    None
    """


@hookspec
def register_model_families(register: Callable[..., None]) -> None:
    """Declare a family of many models listed under one gateway id (e.g. Brain-Score).

    Parameters
    ----------
    register : callable
        ``register(gateway_id, prefix, lister)``:

        * ``gateway_id`` - a model id registered through :func:`register_models`; its loader
          also loads every member, receiving the member's full id in ``request.model_id``.
        * ``prefix`` - member ids are ``prefix + name`` (``"brainscore_vision-"``); any id with
          this prefix is routed to the gateway's loader, schema and metadata loader.
        * ``lister`` - import path or callable returning the member names (without prefix).
          Called only when a user asks to expand the family (``list_models(expand=...)``,
          ``berg list --expand``); it may be slow and may import heavy libraries.

    Returns
    -------
    None
    """


@hookspec
def register_commands(register: Callable[..., None]) -> None:
    """Add subcommands to the ``berg`` command line.

    Parameters
    ----------
    register : callable
        ``register(name, help, configure, run)``:

        * ``name`` - the command words, e.g. ``"maps"`` or ``"train nsd"`` (a two-word name
          creates or joins the group ``berg train``). Built-in commands
          (:data:`berg_core.registry.BUILTIN_COMMANDS`) cannot be replaced; a name registered
          twice is an error naming both plugins, and the command is left out.
        * ``help`` - one line for ``berg --help``.
        * ``configure`` - callable (or import path) ``configure(parser)`` adding arguments to an
          :class:`argparse.ArgumentParser`. It runs whenever the command line is parsed, so it must
          be cheap and import nothing heavy.
        * ``run`` - callable (or import path) ``run(args) -> int`` returning the exit status. It
          may import heavy libraries. :class:`berg_core.BergError` raised from it is printed as
          ``berg: error: ...`` with exit status 1. ``args.berg_dir`` holds ``--berg-dir`` (or
          ``None``).

    Returns
    -------
    None
    """
