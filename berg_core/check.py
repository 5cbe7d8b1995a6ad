"""``berg check``: does a plugin keep berg's contract?

:func:`check_plugin` loads one plugin alone (an installed distribution, or an importable plugin
module) and runs named checks on it, each reported as ``ok``, ``FAIL`` (with the reason) or
``skip``:

* ``load``: the plugin imports and registers without error, alone;
* ``hooks``: every function marked ``@hookimpl`` is a berg hook, every hook-named function is
  marked, and the plugin registers something (a missing ``@hookimpl`` registers nothing);
* ``unique ids``: no model id registered twice;
* ``cards``: every card renders (``to_dict``) and its file templates format for every subject;
* ``options``: options are typed (an :class:`~berg_core.EncodeOptions` subclass, not names);
* ``import paths``: every loader, schema, metadata loader, family lister and command resolves
  (this imports the model modules, never their weights);
* ``light registration``: registering, in a fresh interpreter, imports no heavy library
  (:data:`HEAVY_MODULES`);
* ``<model_id>: ...``: with a *fixture* (``berg_check_fixture`` in the plugin module, or a
  ``berg_dir`` and model id given on the command line), a few images are encoded and the results
  checked against the card and the model (:func:`contract_results`): shapes, ``float32``,
  dims and coordinates, finite values, determinism, batch-size independence, metadata and aux
  coordinates.

A fixture is a hook-free convention: the plugin module defines ``berg_check_fixture`` (a function,
or an import path ``"pkg.module:function"`` to keep the plugin module light) called as
``berg_check_fixture(tmp_path)`` with an empty folder; it writes what its models read there and
returns a dict (or a list of dicts, one per model to encode) with the keys ``berg_dir``,
``model_id`` and optionally ``subject``, ``selection``, ``options`` (keyword options of
``get_encoding_model``), ``images`` (anything ``encode`` accepts; default: three random
``uint8`` images of 48 x 48 pixels) and ``env`` (environment variables set while that model is
loaded and encoded, then restored: e.g. ``TORCH_HOME`` from
:func:`berg_core.testing.check_torch_env`, so that a backbone loads offline).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from berg_core import hookspecs
from berg_core.errors import InvalidParameterError, PluginError

__all__ = [
    "FIXTURE_ATTRIBUTE",
    "HEAVY_MODULES",
    "CheckReport",
    "CheckResult",
    "check_plugin",
    "contract_results",
    "isolated_registry",
]

#: Top-level packages registration must not import (in ``sys.modules`` after registering).
HEAVY_MODULES = (
    "torch",
    "torchvision",
    "tensorflow",
    "keras",
    "jax",
    "sklearn",
    "scipy",
    "brainscore_vision",
    "transformers",
    "timm",
)
#: Name of the optional module attribute giving ``berg check`` something to encode.
FIXTURE_ATTRIBUTE = "berg_check_fixture"
#: The hooks a plugin may implement.
HOOK_NAMES = tuple(
    sorted(name for name, obj in vars(hookspecs).items() if hasattr(obj, "berg_spec"))
)
_LOAD_ENV = "BERG_LOAD_PLUGINS"


@dataclass
class CheckResult:
    """The outcome of one named check: ``status`` is ``"ok"``, ``"FAIL"`` or ``"skip"``."""

    name: str
    status: str
    detail: str = ""

    @property
    def line(self) -> str:
        """One line of the report."""
        return f"{self.status:<4}  {self.name}" + (f": {self.detail}" if self.detail else "")


@dataclass
class CheckReport:
    """What :func:`check_plugin` found.

    Attributes
    ----------
    target : str
        What was checked.
    results : list of CheckResult
        One per check, in the order run.
    """

    target: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether no check failed (skipped checks do not fail)."""
        return all(result.status != "FAIL" for result in self.results)

    @property
    def problems(self) -> list[str]:
        """``"check: reason"`` of every failed check."""
        return [f"{r.name}: {r.detail}" for r in self.results if r.status == "FAIL"]

    @property
    def lines(self) -> list[str]:
        """The report, one line per check, then a summary line."""
        failed = len(self.problems)
        summary = (
            f"{self.target}: all {len(self.results)} checks passed"
            if self.ok
            else f"{self.target}: {failed} of {len(self.results)} checks failed"
        )
        return [r.line for r in self.results] + [summary]

    def add(self, name: str, problems: Sequence[str] | str | None, ok: str = "") -> bool:
        """Record check *name*: failed with *problems* (joined by ``"; "``) or passed."""
        if isinstance(problems, str):
            problems = [problems]
        if problems:
            self.results.append(CheckResult(name, "FAIL", "; ".join(problems)))
            return False
        self.results.append(CheckResult(name, "ok", ok))
        return True

    def skip(self, name: str, reason: str) -> None:
        """Record check *name* as not run, with the reason."""
        self.results.append(CheckResult(name, "skip", reason))


def _one_line(exc: BaseException) -> str:
    """An exception as one readable line (pydantic's multi-line messages condensed)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("For further information")]
    return f"{type(exc).__name__}: " + "; ".join(lines)


# -- the registry with one plugin only ------------------------------------------------------------
@dataclass
class _Target:
    """A plugin to check: an installed distribution or an importable module."""

    label: str
    distribution: str | None = None
    module_name: str | None = None


def _find_target(target: str) -> _Target:
    from importlib_metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(target)
    except (PackageNotFoundError, ValueError):
        dist = None
    if dist is not None:
        name = dist.metadata["Name"]
        return _Target(label=f"{name} {dist.version}", distribution=name)
    try:
        found = importlib.util.find_spec(target) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise InvalidParameterError(
            f"berg check {target!r}: neither an installed distribution (pip show {target}) nor "
            f"an importable module; give a distribution name such as berg-nsd or a plugin module "
            f"such as berg_nsd.plugin"
        )
    return _Target(label=target, module_name=target)


@contextmanager
def isolated_registry(
    distribution: str | None = None, modules: Mapping[str, object] | None = None
) -> Iterator[Any]:
    """The process-wide registry rebuilt with one plugin only; the previous one restored after.

    Parameters
    ----------
    distribution : str, optional
        An installed distribution whose ``berg`` entry points are loaded (and nothing else).
    modules : mapping of str to module, optional
        In-process plugins (name -> module) loaded instead of any entry point.

    Yields
    ------
    berg_core.registry.Registry
        The registry :class:`berg_core.BERG` uses inside the block.
    """
    from berg_core import registry

    previous_env = os.environ.get(_LOAD_ENV)
    previous = registry._registry
    os.environ[_LOAD_ENV] = distribution or ""
    try:
        yield registry.reset(dict(modules) if modules else None)
    finally:
        if previous_env is None:
            os.environ.pop(_LOAD_ENV, None)
        else:
            os.environ[_LOAD_ENV] = previous_env
        registry._registry = previous


# -- static checks ------------------------------------------------------------------------------
def _hook_problems(module: object) -> list[str]:
    """Functions marked ``@hookimpl`` that are no hook, hook-named functions not marked."""
    problems = []
    for name in sorted(dir(module)):
        try:
            obj = getattr(module, name)
        except Exception:  # a module __getattr__ that refuses: not ours to judge
            continue
        if not callable(obj) or isinstance(obj, type):
            continue
        marked = hasattr(obj, "berg_impl")
        if marked and name not in HOOK_NAMES:
            close = difflib.get_close_matches(name, HOOK_NAMES, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            problems.append(
                f"{name} is marked @hookimpl but berg has no such hook (hooks: "
                f"{', '.join(HOOK_NAMES)}){hint}"
            )
        elif not marked and name in HOOK_NAMES:
            problems.append(
                f"{name} is not marked @hookimpl, so berg never calls it: decorate it with "
                f"@hookimpl (from berg_core import hookimpl)"
            )
    return problems


def _card_problems(card: Any) -> list[str]:
    problems = []
    try:
        card.to_dict()
    except Exception as exc:
        problems.append(f"{card.model_id}: the card does not render: {_one_line(exc)}")
    for subject in card.subjects or (None,):
        try:
            card.files_for(subject)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            problems.append(
                f"{card.model_id}: file templates {[f.path for f in card.files]} do not format "
                f"for subject {subject!r}: {_one_line(exc)} (the only field is {{subject}})"
            )
            break
    return problems


def _option_problems(card: Any) -> list[str]:
    from berg_core.cards import EncodeOptions

    options = card.options
    if not (isinstance(options, type) and issubclass(options, EncodeOptions)):
        return [f"{card.model_id}: options {options!r} is not a berg_core.EncodeOptions subclass"]
    if options.__name__ == "LegacyOptions":
        names = ", ".join(n for n in options.model_fields if n != "batch_size")
        return [
            f"{card.model_id}: options declared by name only ({names}): untyped, no defaults or "
            f"help; declare a subclass of berg_core.EncodeOptions with typed fields"
        ]
    return []


def _import_path_problems(registry: Any) -> list[str]:
    from berg_core.registry import resolve_import_path

    problems = []

    def resolves(target: Any, what: str, check: Callable[[Any], bool] = callable) -> None:
        try:
            obj = resolve_import_path(target, what)
        except Exception as exc:
            problems.append(f"{what} {target!r} does not resolve: {_one_line(exc)}")
            return
        if not check(obj):
            problems.append(f"{what} {target!r} resolves to {obj!r}, which is not callable")

    for model_id, entry in registry.models.items():
        resolves(entry.loader, f"loader of {model_id}")
        if entry.metadata_loader is not None:
            resolves(entry.metadata_loader, f"metadata loader of {model_id}")
        if entry.schema is not None:
            try:
                entry.resolve_schema()
            except Exception as exc:
                problems.append(f"schema of {model_id} {entry.schema!r}: {_one_line(exc)}")
    for family in registry.families.values():
        resolves(family.lister, f"lister of family {family.gateway_id}")
    for words, command in registry.commands.items():
        resolves(command.configure, f"configure of 'berg {' '.join(words)}'")
        resolves(command.run, f"run of 'berg {' '.join(words)}'")
    return problems


_PROBE = """
import importlib, json, os, sys
from berg_core import registry
kind, name = sys.argv[1], sys.argv[2]
if kind == "distribution":
    os.environ["BERG_LOAD_PLUGINS"] = name
    registry.reset()
else:
    os.environ["BERG_LOAD_PLUGINS"] = ""
    registry.reset({name: importlib.import_module(name)})
heavy = set(json.loads(sys.argv[3]))
print("BERG-CHECK " + json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""


def _heavy_imports(target: _Target) -> list[str]:
    """Heavy modules imported by registering *target*, in a fresh interpreter."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env.setdefault("PYTHONWARNINGS", "ignore")
    kind, name = (
        ("distribution", target.distribution)
        if target.distribution
        else ("module", target.module_name)
    )
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, kind, str(name), json.dumps(HEAVY_MODULES)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    for line in result.stdout.splitlines():
        if line.startswith("BERG-CHECK "):
            return sorted({m.split(".")[0] for m in json.loads(line[len("BERG-CHECK ") :])})
    raise PluginError(f"the registration probe failed: {result.stderr.strip()[-500:]}")


# -- encoding a fixture -------------------------------------------------------------------------
def default_images() -> np.ndarray:
    """Three random ``uint8`` images ``(3, 3, 48, 48)`` (seeded: the same on every run)."""
    return np.random.default_rng(0).integers(0, 256, (3, 3, 48, 48), dtype=np.uint8)


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    nan = a.dtype.kind in "fc" and b.dtype.kind in "fc"
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=nan))


def contract_results(
    berg: Any,
    model_id: str,
    *,
    subject: int | str | None = None,
    selection: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    images: Any = None,
) -> list[CheckResult]:
    """Load *model_id*, encode *images* and check the results against the card and the model.

    Checks (each a :class:`CheckResult` named ``"<model_id>: <check>"``): ``load``; ``dims``
    (``output_shapes()`` and ``output_coords()`` agree with the card's dims, sizes and coords);
    ``aux coords`` (every ``output_aux_coords()`` entry has one value per position of its dims,
    and survives a pick along its first dim: the model loaded with only the last position of
    that dim has that position's values; skipped with a *selection*); ``encode``; ``shapes``
    (``(N, *model.shapes()[i])``, one bare array for one output);
    ``float32``; ``finite``; ``deterministic`` (a second encode is equal); ``batching`` (batches
    of one image give the same values, to float32 rounding); ``metadata``
    (``metadata["output"]`` names, dims, coords, aux coords and columns agree with the model).

    Parameters
    ----------
    berg : berg_core.BERG
        Over the ``berg_dir`` holding the model's files.
    model_id, subject, selection, options
        What to load (``options``: keyword options of ``get_encoding_model``).
    images : optional
        Anything ``encode`` accepts; default :func:`default_images`.

    Returns
    -------
    list of CheckResult
    """
    label = model_id + ("" if subject is None else f" (subject {subject})")
    report = CheckReport(label)
    images = default_images() if images is None else images
    try:
        model = berg.get_encoding_model(
            model_id, subject=subject, selection=selection, **dict(options or {})
        )
    except Exception as exc:
        report.add(f"{label}: load", _one_line(exc))
        return report.results
    report.add(f"{label}: load", None, repr(model))
    with model:
        if not report.add(f"{label}: dims", _dims_problems(model, selection)):
            return report.results
        aux_problems, aux_detail = _aux_problems(berg, model, subject, selection, options)
        if not report.add(f"{label}: aux coords", aux_problems, aux_detail):
            return report.results
        try:
            responses, metadata = berg.encode(
                model, images, return_metadata=True, show_progress=False
            )
            again = berg.encode(model, images, show_progress=False)
            model.batch_size = 1
            single = berg.encode(model, images, show_progress=False)
        except Exception as exc:
            report.add(f"{label}: encode", _one_line(exc))
            return report.results
        n_outputs = len(model.output_names)
        report.add(f"{label}: encode", None, f"{n_outputs} output(s)")
        arrays = _as_tuple(responses, n_outputs)
        if arrays is None:
            report.add(
                f"{label}: shapes",
                f"encode returned {type(responses).__name__}; expected "
                + ("one array" if n_outputs == 1 else f"a tuple of {n_outputs} arrays"),
            )
            return report.results
        n = len(arrays[0]) if arrays and hasattr(arrays[0], "shape") else -1
        want = [(n, *shape) for shape in model.shapes()]
        got = [getattr(a, "shape", None) for a in arrays]
        report.add(
            f"{label}: shapes",
            None if got == want else f"encode returned shapes {got}; model.shapes() says {want}",
            ", ".join(
                f"{name} {shape}" for name, shape in zip(model.output_names, got, strict=True)
            ),
        )
        dtypes = [str(a.dtype) for a in arrays] + _yielded_dtypes(model, images)
        report.add(
            f"{label}: float32",
            None
            if set(dtypes) == {"float32"}
            else f"encode_batches yields {dtypes[n_outputs:]}, encode returns "
            f"{dtypes[:n_outputs]}; every output is float32",
        )
        bad = [
            f"{name}: {int(np.size(a) - np.isfinite(a).sum())} non-finite values"
            for name, a in zip(model.output_names, arrays, strict=True)
            if not np.isfinite(a).all()
        ]
        report.add(f"{label}: finite", bad)
        again_arrays = _as_tuple(again, n_outputs) or ()
        report.add(
            f"{label}: deterministic",
            None
            if len(again_arrays) == n_outputs
            and all(_equal(a, b) for a, b in zip(arrays, again_arrays, strict=True))
            else "two encodes of the same images differ (seed every random draw, or make "
            "the model deterministic)",
        )
        single_arrays = _as_tuple(single, n_outputs) or ()
        report.add(f"{label}: batching", _batching_problems(arrays, single_arrays))
        report.add(f"{label}: metadata", _metadata_problems(model, metadata))
    return report.results


def _aux_problems(
    berg: Any,
    model: Any,
    subject: int | str | None,
    selection: Mapping[str, Any] | None,
    options: Mapping[str, Any] | None,
) -> tuple[list[str], str]:
    """Problems of the model's aux coordinates, and a summary of them."""
    try:
        aux = model.aux_coords()
    except Exception as exc:
        return [f"aux_coords() failed: {_one_line(exc)}"], ""
    entries = [(output, name) for output, named in aux.items() for name in named]
    if not entries:
        return [], "none"
    problems: list[str] = []
    if selection:  # a pick on top of a selection could select nothing
        return problems, ", ".join(f"{o}/{n}" for o, n in entries)
    coords = model.coords()
    for output, name in entries:
        dims, values = aux[output][name]
        dim = dims[0]
        last = np.asarray(coords[output][dim])[-1]
        pick = {dim: [last.item() if hasattr(last, "item") else last]}
        try:
            with berg.get_encoding_model(
                model.model_id, subject=subject, selection=pick, **dict(options or {})
            ) as picked:
                picked_dims, picked_values = picked.aux_coords()[output][name]
        except Exception as exc:
            problems.append(f"picking {pick} failed: {_one_line(exc)}")
            continue
        want = np.asarray(values)[-1:]
        if tuple(picked_dims) != tuple(dims) or not _equal(np.asarray(picked_values), want):
            problems.append(
                f"aux coordinate {output}/{name} along {list(dims)}: with the pick {pick} it "
                f"has shape {np.shape(picked_values)}, not the picked position's values "
                f"{want.shape}"
            )
    return problems, ", ".join(f"{o}/{n}" for o, n in entries)


def _yielded_dtypes(model: Any, images: Any) -> list[str]:
    """The dtypes of the first batch ``encode_batches`` yields (the core casts them silently)."""
    from berg_core.stimulus import as_stimulus

    batches = model.encode_batches(as_stimulus(images))
    try:
        return [str(np.asarray(values).dtype) for values in next(iter(batches))]
    finally:
        getattr(batches, "close", lambda: None)()


def _as_tuple(responses: Any, n_outputs: int) -> tuple[np.ndarray, ...] | None:
    if n_outputs == 1:
        return (responses,) if isinstance(responses, np.ndarray) else None
    if isinstance(responses, tuple) and len(responses) == n_outputs:
        return responses if all(isinstance(a, np.ndarray) for a in responses) else None
    return None


def _batching_problems(full: Sequence[np.ndarray], single: Sequence[np.ndarray]) -> list[str]:
    if len(single) != len(full):
        return ["encoding one image per batch returned a different number of outputs"]
    problems = []
    for a, b in zip(full, single, strict=True):
        if a.shape != b.shape:
            return [f"batches of one image give shape {b.shape}, not {a.shape}"]
        scale = float(np.nanmax(np.abs(a))) if a.size else 0.0
        if not np.allclose(a, b, rtol=1e-4, atol=1e-5 * max(scale, 1.0), equal_nan=True):
            worst = float(np.nanmax(np.abs(a - b)))
            problems.append(
                f"batches of one image differ from batches of {len(a)} by up to {worst:.3g} "
                f"(responses must not depend on which images share a batch)"
            )
    return problems


def _dims_problems(model: Any, selection: Mapping[str, Any] | None) -> list[str]:
    problems = []
    card = model.card
    try:
        shapes = model.output_shapes()
    except Exception as exc:
        return [f"output_shapes() failed: {_one_line(exc)}"]
    if len(shapes) != len(card.outputs):
        return [f"output_shapes() gives {len(shapes)} outputs; the card has {len(card.outputs)}"]
    for output, shape in zip(card.outputs, shapes, strict=True):
        if len(shape) != len(output.dims):
            problems.append(
                f"output {output.name!r} has dims {output.dim_names} in the card, but "
                f"output_shapes() gives {tuple(shape)}"
            )
    if problems:
        return problems
    try:
        coords = model.output_coords()
    except Exception as exc:
        return [f"output_coords() failed: {_one_line(exc)}"]
    for output, shape in zip(card.outputs, shapes, strict=True):
        for dim, size in zip(output.dims, shape, strict=True):
            if dim.size is not None and not selection and size != dim.size:
                problems.append(
                    f"output {output.name!r}: dim {dim.name!r} has size {dim.size} in the card, "
                    f"{size} in output_shapes() (no selection given)"
                )
            values = coords.get(output.name, {}).get(dim.name)
            if values is None or len(values) != size:
                got = "none" if values is None else f"{len(values)}"
                problems.append(
                    f"output {output.name!r}: output_coords() gives {got} coordinates for dim "
                    f"{dim.name!r} of size {size}"
                )
            elif dim.coords is not None and not selection and list(values) != list(dim.coords):
                problems.append(
                    f"output {output.name!r}: output_coords() of dim {dim.name!r} differ from "
                    f"the card's coords"
                )
    return problems


def _metadata_problems(model: Any, metadata: Any) -> list[str]:
    if not isinstance(metadata, dict) or not isinstance(metadata.get("output"), dict):
        return ["encode(..., return_metadata=True) gave no metadata['output'] dict"]
    output = metadata["output"]
    problems = []
    for key, want in (
        ("model_id", model.model_id),
        ("subject", model.subject),
        ("names", list(model.output_names)),
        ("dims", {name: list(dims) for name, dims in model.dims().items()}),
    ):
        if output.get(key) != want:
            problems.append(f"metadata['output'][{key!r}] = {output.get(key)!r}, expected {want!r}")
    coords = model.coords()
    for name, shape in zip(model.output_names, model.shapes(), strict=True):
        given = output.get("coords", {}).get(name, {})
        for (dim, values), size in zip(coords[name].items(), shape, strict=True):
            if dim not in given or not _equal(np.asarray(given[dim]), np.asarray(values)):
                problems.append(f"metadata['output']['coords'][{name!r}][{dim!r}] is wrong")
            elif len(values) != size:
                problems.append(f"{len(values)} coords for {name!r} dim {dim!r} of size {size}")
        for aux, (dims, values) in model.aux_coords().get(name, {}).items():
            entry = output.get("aux_coords", {}).get(name, {}).get(aux)
            if (
                not isinstance(entry, dict)
                or list(entry.get("dims", ())) != list(dims)
                or not _equal(np.asarray(entry.get("values")), np.asarray(values))
            ):
                problems.append(f"metadata['output']['aux_coords'][{name!r}][{aux!r}] is wrong")
        if len(shape) == 1:
            column = output.get("columns", {}).get(name)
            values = next(iter(coords[name].values()))
            if column is None or not _equal(np.asarray(column), np.asarray(values)):
                problems.append(f"metadata['output']['columns'][{name!r}] is wrong")
    return problems


# -- the whole check --------------------------------------------------------------------------
def _fixture_cases(
    fixture: Any, modules: Sequence[object], registry: Any, berg_dir: Path | None, tmp: Path
) -> list[dict[str, Any]] | str:
    """The models to encode, or the reason there are none."""
    from berg_core.registry import resolve_import_path

    if fixture is None and berg_dir is not None:
        return [
            {"berg_dir": berg_dir, "model_id": m, "subject": (e.card.subjects or (None,))[0]}
            for m, e in registry.models.items()
        ]
    if fixture is None:
        for module in modules:
            fixture = getattr(module, FIXTURE_ATTRIBUTE, None)
            if fixture is not None:
                break
    if fixture is None:
        return (
            f"no fixture: define {FIXTURE_ATTRIBUTE}(tmp_path) in the plugin module, or give "
            f"--berg-dir (and --model, --subject)"
        )
    if isinstance(fixture, str):
        fixture = resolve_import_path(fixture, FIXTURE_ATTRIBUTE)
    cases = fixture(tmp) if callable(fixture) else fixture
    cases = [cases] if isinstance(cases, Mapping) else list(cases)
    for case in cases:
        case = dict(case)
        if berg_dir is not None:
            case["berg_dir"] = berg_dir
        if "model_id" not in case or "berg_dir" not in case:
            raise InvalidParameterError(
                f"{FIXTURE_ATTRIBUTE} returned {sorted(case)}; it must give 'berg_dir' and "
                f"'model_id' (and may give 'subject', 'selection', 'options', 'images', 'env')"
            )
    return [dict(case, berg_dir=berg_dir or case["berg_dir"]) for case in cases]


def check_plugin(
    target: str,
    *,
    berg_dir: str | Path | None = None,
    fixture: Any = None,
    heavy_probe: bool = True,
) -> CheckReport:
    """Check the plugin *target* against berg's contract (see the module docstring).

    Parameters
    ----------
    target : str
        An installed distribution name (``"berg-nsd"``) or an importable plugin module
        (``"berg_nsd.plugin"``).
    berg_dir : path, optional
        A ``berg_dir`` holding the models' files. With a *fixture*, it replaces the fixture's;
        without one, every model of the plugin is encoded with its first subject.
    fixture : callable, dict, list of dict or import path, optional
        What to encode (see the module docstring); default: ``berg_check_fixture`` of the
        plugin module.
    heavy_probe : bool
        Run the ``light registration`` check (a fresh interpreter, a second or two).

    Returns
    -------
    CheckReport

    Raises
    ------
    InvalidParameterError
        *target* is neither an installed distribution nor an importable module.
    """
    from berg_core.api import BERG

    found = _find_target(target)
    report = CheckReport(found.label)
    modules: dict[str, object] = {}
    if found.module_name is not None:
        try:
            modules[found.module_name] = importlib.import_module(found.module_name)
        except Exception as exc:
            report.add("load", f"importing {found.module_name} failed: {_one_line(exc)}")
            return report
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with isolated_registry(found.distribution, modules) as registry:
            _check_loaded(report, registry, list(caught), found, modules)
            if not report.ok:
                return report
            if heavy_probe:
                try:
                    heavy = _heavy_imports(found)
                except (PluginError, subprocess.TimeoutExpired) as exc:
                    report.add("light registration", _one_line(exc))
                else:
                    report.add(
                        "light registration",
                        f"registering imports {', '.join(heavy)}: import heavy libraries only "
                        f"in the loader's module (name the loader by import path "
                        f"'pkg.model:load'), never in the plugin module or a hook"
                        if heavy
                        else None,
                    )
            with tempfile.TemporaryDirectory(prefix="berg-check-") as tmp:
                plugin_modules = [p.module for p in registry.plugins if p.module is not None]
                try:
                    cases = _fixture_cases(
                        fixture,
                        plugin_modules,
                        registry,
                        None if berg_dir is None else Path(berg_dir),
                        Path(tmp),
                    )
                except Exception as exc:
                    report.add("fixture", _one_line(exc))
                    return report
                if isinstance(cases, str):
                    report.skip("encode", cases)
                    return report
                for case in cases:
                    with _environment(case.get("env")):
                        report.results += contract_results(
                            BERG(case["berg_dir"]),
                            case["model_id"],
                            subject=case.get("subject"),
                            selection=case.get("selection"),
                            options=case.get("options"),
                            images=case.get("images"),
                        )
    return report


@contextmanager
def _environment(env: Mapping[str, str] | None) -> Iterator[None]:
    """Set the environment variables *env* inside the block, then restore what they were."""
    env = dict(env or {})
    bad = [
        key for key, value in env.items() if not isinstance(key, str) or not isinstance(value, str)
    ]
    if bad:
        raise InvalidParameterError(
            f"{FIXTURE_ATTRIBUTE} returned env with {bad!r}: names and values must be str"
        )
    previous = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _check_loaded(
    report: CheckReport,
    registry: Any,
    caught: list[Any],
    found: _Target,
    modules: Mapping[str, object],
) -> None:
    infos = registry.plugins
    if not infos:
        report.add("load", f"{found.label} declares no entry point in the 'berg' group")
        return
    errors = [f"[{i.name}] {i.error}" for i in infos if i.error]
    if errors:  # say which function is at fault when the module itself imported
        errors += [p for module in modules.values() for p in _hook_problems(module)]
    if not report.add("load", errors, ", ".join(f"[{i.name}]" for i in infos)):
        return
    loaded = [i.module for i in infos if i.module is not None]
    problems = [p for module in loaded for p in _hook_problems(module)]
    n_models = sum(len(i.models) for i in infos) + len(registry.conflicts)
    n_commands = len(registry.commands)
    if n_models == 0 and n_commands == 0 and not problems:
        problems.append(
            "the plugin registered 0 models and 0 commands: are its hooks marked @hookimpl, "
            f"named as berg's hooks ({', '.join(HOOK_NAMES)}), and do they call register(...)?"
        )
    problems += [str(w.message) for w in caught if str(w.message).endswith("; ignored")]
    report.add("hooks", problems, f"{n_models} models, {n_commands} commands")
    report.add(
        "unique ids",
        [
            f"model id {model_id!r} is registered more than once ({' and '.join(labels)})"
            for model_id, labels in registry.conflicts.items()
        ],
    )
    entries = list(registry.models.values())
    report.add("cards", [p for e in entries for p in _card_problems(e.card)], f"{len(entries)}")
    report.add("options", [p for e in entries for p in _option_problems(e.card)])
    report.add("import paths", _import_path_problems(registry))
