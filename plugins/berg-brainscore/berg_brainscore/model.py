"""Loading a Brain-Score vision model as a berg encoding model (imports brainscore_vision, torch).

For ``brainscore_vision-<identifier>`` and ``selection={"roi": R}``:

1. the model is built through Brain-Score's registry (``brainscore_vision.load_model``), with
   ``BS_INSTALL_DEPENDENCIES=no`` so that Brain-Score never runs ``pip install`` on load;
2. the regression for R is read from ``berg_dir`` (:mod:`berg_brainscore.cache`), or, the first
   time, fitted: the benchmark of R is loaded (``brainscore_vision.load_benchmark``), the model
   records from R in the benchmark's time bins (``start_recording``) while looking at the
   benchmark's stimulus set (``look_at``), and Brain-Score's own ``pls_regression()``
   (``PLSRegression(n_components=25, scale=False)``) is fitted from those activations to the
   benchmark's repetition-averaged responses, on all stimuli;
3. :meth:`BrainScoreModel.encode_batches` shows new images to the model in the same way and
   applies the regression.

As in the reference toolkit, the benchmark images are shown to the model as they are, like the
user's images, without Brain-Score's ``place_on_screen`` rescaling (which matters for the 4-degree
FreemanZiemba2013 images only).
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
import time
import warnings
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from berg_brainscore import __version__
from berg_brainscore.benchmarks import BENCHMARKS, RoiBenchmark, brainio_home
from berg_brainscore.cache import FORMAT, Regression, cache_path, load_or_fit, predict
from berg_brainscore.catalog import (
    INSTALL_HINT,
    PREFIX,
    model_requirements,
    model_revision,
    registry_identifiers,
)
from berg_core import (
    EncodingModel,
    InvalidParameterError,
    LoadRequest,
    ModelLoadError,
    ModelNotFoundError,
    PluginError,
    Stimulus,
)

__all__ = ["BrainScoreModel", "fit_regression", "load"]

_logger = logging.getLogger("berg_brainscore")

#: PLS settings of Brain-Score's ``pls_regression()`` (checked against it when fitting).
N_COMPONENTS = 25
SCALE = False


def _versions() -> dict[str, str]:
    versions = {}
    for name in (
        "brainscore-vision",
        "brainscore-core",
        "scikit-learn",
        "numpy",
        "xarray",
        "torch",
        "torchvision",
    ):
        try:
            versions[name.replace("-", "_")] = version(name)
        except PackageNotFoundError:
            versions[name.replace("-", "_")] = "not installed"
    versions["berg_brainscore"] = __version__
    return versions


def import_brainscore() -> ModuleType:
    """Import ``brainscore_vision`` with dependency installation turned off.

    Brain-Score's default (``BS_INSTALL_DEPENDENCIES=yes``) runs ``pip install -r`` with the
    model's requirements, through whichever ``pip`` is first on ``PATH``, on every load. berg sets
    the variable to ``no`` for the process and says which requirements to install instead.

    Raises
    ------
    ModelLoadError
        If ``brainscore_vision`` is not installed.
    """
    if os.environ.get("BS_INSTALL_DEPENDENCIES") != "no":
        os.environ["BS_INSTALL_DEPENDENCIES"] = "no"
    try:
        with warnings.catch_warnings():
            # xarray's "subclass Score should explicitly define __slots__", on import only
            warnings.filterwarnings(
                "ignore", "xarray subclass .* should explicitly define __slots__", FutureWarning
            )
            import brainscore_vision
    except ImportError as exc:
        import sys

        raise ModelLoadError(INSTALL_HINT.format(python=sys.executable)) from exc
    return brainscore_vision


# -- loading ---------------------------------------------------------------------------------
def load(request: LoadRequest) -> BrainScoreModel:
    """Loader of the ``brainscore_vision`` family (``register_models`` calls it).

    Raises
    ------
    ModelNotFoundError
        For the bare gateway id or an identifier Brain-Score does not register.
    InvalidParameterError
        For a device or option the model cannot use.
    ModelLoadError
        When the model, its weights, its dependencies or the benchmark data cannot be loaded.
    """
    identifier = _identifier(request.model_id)
    allow_selection = request.options["allow_layer_selection"]  # a bool: the core checked it
    spec: RoiBenchmark = request.selection.benchmark  # type: ignore[union-attr]
    brainscore_vision = import_brainscore()
    _check_known(identifier)
    model = _build_model(brainscore_vision, identifier)
    layer = _committed_layer(model, identifier, spec.roi, allow_selection)
    _place_on_device(model, request.device, request.model_id)
    versions = _versions()
    key = {
        "format": FORMAT,
        "model_identifier": identifier,
        "model_revision": model_revision(identifier),
        "region": spec.roi,
        "layer": layer,
        "benchmark": spec.benchmark,
        "n_components": N_COMPONENTS,
        "scale": SCALE,
        "brainscore_vision": versions["brainscore_vision"],
        "brainscore_core": versions["brainscore_core"],
        "scikit_learn": versions["scikit_learn"],
    }
    path = cache_path(request.berg_dir, identifier, spec.roi)
    regression, fitted = load_or_fit(
        path, key, lambda: fit_regression(brainscore_vision, model, spec, layer)
    )
    return BrainScoreModel(request, model, regression, path=path, fitted=fitted)


def _identifier(model_id: str) -> str:
    if not model_id.startswith(PREFIX) or len(model_id) == len(PREFIX):
        raise ModelNotFoundError(
            f"{model_id!r} is the gateway of the Brain-Score family, not a model: load a member "
            f"'{PREFIX}<identifier>', e.g. '{PREFIX}alexnet'. List them with "
            f"`berg list --expand brainscore_vision` or "
            f"BERG.list_models(expand_brainscore_vision=True)."
        )
    identifier = model_id[len(PREFIX) :]
    if identifier in (".", "..") or any(ch in identifier for ch in "/\\\0"):
        raise ModelNotFoundError(f"{model_id!r}: {identifier!r} is not a Brain-Score identifier")
    return identifier


def _check_known(identifier: str) -> None:
    known = registry_identifiers()
    if identifier in known:
        return
    from berg_brainscore.catalog import _scan, package_dir

    loadable, ambiguous = _scan(package_dir() / "models")
    hint = ""
    in_folder = sorted(i for i, folder in loadable.items() if folder == identifier)
    if in_folder:
        hint = (
            f" {identifier!r} is the name of a model folder; it registers "
            f"{', '.join(PREFIX + i for i in in_folder)}."
        )
    elif identifier in ambiguous:
        hint = (
            " More than one Brain-Score model folder registers it, so Brain-Score cannot load it."
        )
    else:
        close = difflib.get_close_matches(identifier, known, n=3, cutoff=0.6)
        if close:
            hint = f" Did you mean: {', '.join(PREFIX + c for c in close)}?"
    raise ModelNotFoundError(
        f"no model '{PREFIX}{identifier}': brainscore-vision {_versions()['brainscore_vision']} "
        f"registers no model {identifier!r}.{hint} List the {len(known)} models with "
        f"`berg list --expand brainscore_vision`."
    )


def _build_model(brainscore_vision: ModuleType, identifier: str) -> Any:
    """Build the model through Brain-Score's registry, with errors that say what to do."""
    try:
        registry = brainscore_vision.model_registry
        if identifier in registry:  # registered in this process, or its plugin already imported
            return registry[identifier]()
        return brainscore_vision.load_model(identifier)
    except ImportError as exc:
        requirements_file, requirements = model_requirements(identifier)
        missing = getattr(exc, "name", None) or str(exc)
        if requirements_file is not None:
            advice = (
                f"Its requirements ({requirements_file}) are: {', '.join(requirements)}. Install "
                f"them into this environment: pip install -r {requirements_file}"
            )
        else:
            advice = f"Install the missing package into this environment: pip install {missing}"
        raise ModelLoadError(
            f"Brain-Score model {identifier!r} needs {missing!r}, which is not installed "
            f"({type(exc).__name__}: {exc}). {advice}. (berg sets BS_INSTALL_DEPENDENCIES=no, "
            f"so Brain-Score never pip-installs into the running environment by itself.)"
        ) from exc
    except Exception as exc:
        torch_home = os.environ.get("TORCH_HOME", "~/.cache/torch")
        brainscore_home = os.environ.get("BRAINSCORE_HOME", "~/.brain-score")
        raise ModelLoadError(
            f"building Brain-Score model {identifier!r} failed: {type(exc).__name__}: {exc}. "
            f"If it could not download its weights (no network), put them where it looks: "
            f"torchvision and torch.hub weights in $TORCH_HOME/hub/checkpoints/ (TORCH_HOME = "
            f"{torch_home}), Brain-Score's own weights in $BRAINSCORE_HOME/models/ "
            f"(BRAINSCORE_HOME = {brainscore_home}), Hugging Face weights in $HF_HOME."
        ) from exc


def _committed_layer(model: Any, identifier: str, roi: str, allow_selection: bool) -> Any:
    """The layer(s) the model commits to *roi*, without starting Brain-Score's layer selection."""
    layer_model = getattr(model, "layer_model", None)
    mapping = getattr(layer_model, "region_layer_map", None)
    if mapping is None:  # not a ModelCommitment: it maps regions itself
        return "(chosen by the model)"
    from brainscore_vision.model_helpers.brain_transformation import RegionLayerMap

    if isinstance(mapping, RegionLayerMap) and not dict.__contains__(mapping, roi):
        if not allow_selection:
            raise ModelLoadError(
                f"Brain-Score model {identifier!r} commits no layer to {roi} (its folder has no "
                f"region_layer_map/{identifier}.json). Brain-Score would choose one by scoring "
                f"every layer on the four public benchmarks, with ImageNet validation images "
                f"downloaded for a PCA: hours of work and several GB. To do that, pass "
                f"allow_layer_selection=True to get_encoding_model."
            )
    try:
        layer = mapping[roi]
    except KeyError:
        raise ModelLoadError(
            f"Brain-Score model {identifier!r} commits no layer to {roi}; its region_layer_map "
            f"has {', '.join(map(str, dict.keys(mapping)))}"
        ) from None
    return list(layer) if isinstance(layer, (list, tuple)) else str(layer)


def _place_on_device(model: Any, device: str, model_id: str) -> None:
    """Move a PyTorch model to *device* (``"auto"``: where Brain-Score put it, CUDA if any)."""
    if device == "auto":
        return
    wrapper = getattr(model, "activations_model", None)
    wrapper = getattr(wrapper, "_wrapper", wrapper)  # disable_activation_caching's proxy
    network = getattr(wrapper, "_model", None)
    if network is None or not hasattr(wrapper, "_device") or not hasattr(network, "to"):
        raise InvalidParameterError(
            f"device = {device!r}: {model_id} is not a PyTorch model berg can move; Brain-Score "
            f"chooses its device. Use device='auto'."
        )
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidParameterError(f"device = {device!r}, but CUDA is not available; use 'cpu'")
    if device == "mps" and not torch.backends.mps.is_available():
        raise InvalidParameterError("device = 'mps', but MPS is not available; use 'cpu'")
    target = torch.device(device)
    wrapper._model = network.to(target)
    wrapper._device = target


# -- fitting ---------------------------------------------------------------------------------
def _static(activations: Any) -> Any:
    """``(presentation, neuroid)`` activations: drop a single time bin if Brain-Score kept it."""
    if "time_bin" in activations.dims:
        if activations.sizes["time_bin"] != 1:
            raise PluginError(
                f"the model returned {activations.sizes['time_bin']} time bins; berg-brainscore "
                f"predicts one"
            )
        activations = activations.squeeze("time_bin")
    return activations.transpose("presentation", "neuroid")


def _feature_digest(activations: Any) -> str:
    """sha256 of the activations' feature (neuroid) ids, to check their order at prediction."""
    ids = activations["neuroid_id"].values if "neuroid_id" in activations.coords else None
    if ids is None:
        return f"n={activations.sizes['neuroid']}"
    return hashlib.sha256("\0".join(map(str, ids)).encode("utf-8", "replace")).hexdigest()


def _load_benchmark(brainscore_vision: ModuleType, spec: RoiBenchmark) -> Any:
    """Load the ROI's benchmark and its data; say which files are missing if that fails."""
    try:
        benchmark = brainscore_vision.load_benchmark(spec.benchmark)
        assembly = benchmark._assembly
        assembly["stimulus_id"]
        return benchmark
    except Exception as exc:
        raise _data_error(spec, exc) from exc


def _data_error(spec: RoiBenchmark, exc: Exception) -> ModelLoadError:
    home = brainio_home()
    missing = [f for f in spec.files if not f.local_path(home).is_file()]
    for data_file in spec.files:  # a failed download leaves an empty <sha1>/ folder behind
        folder = home / data_file.sha1
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    reason = f"{type(exc).__name__}: {exc}"
    if not missing:
        return ModelLoadError(
            f"loading Brain-Score benchmark {spec.benchmark} (for {spec.roi}) failed: {reason}"
        )
    listing = "\n".join(
        f"  {f.local_path(home)}   ({f.what}; {f.url})" for f in spec.files if f in missing
    )
    return ModelLoadError(
        f"{spec.roi} is fitted on Brain-Score's {spec.benchmark} benchmark, whose public data "
        f"files are not in $BRAINIO_HOME = {home}, and Brain-Score could not download them "
        f"({reason}). Missing:\n{listing}\n"
        f"Download each URL to the path shown, or, on a machine with network and the same "
        f"brainscore-vision, run: BRAINIO_HOME=DIR BS_INSTALL_DEPENDENCIES=no python -c "
        f"\"import brainscore_vision as b; b.load_dataset('{spec.dataset}')\" and copy DIR's "
        f"contents into {home} (or set BRAINIO_HOME to it)."
    )


def fit_regression(
    brainscore_vision: ModuleType, model: Any, spec: RoiBenchmark, layer: Any
) -> Regression:
    """Fit Brain-Score's ``pls_regression()`` from *model*'s activations to *spec*'s benchmark.

    Parameters
    ----------
    brainscore_vision : module
        The imported package.
    model : BrainModel
        The model (its committed layer for the region is recorded).
    spec : RoiBenchmark
        The region and its benchmark.
    layer : str or list
        The committed layer (for the record).

    Returns
    -------
    Regression
        The fitted arrays, with provenance in ``info``.
    """
    from brainscore_vision.metrics.regression_correlation.metric import pls_regression

    started = time.time()
    benchmark = _load_benchmark(brainscore_vision, spec)
    assembly = benchmark._assembly.transpose("presentation", "neuroid")
    if benchmark.region != spec.roi:
        raise PluginError(
            f"benchmark {spec.benchmark} records from {benchmark.region}, expected {spec.roi}"
        )
    time_bins = _time_bins(benchmark.timebins)
    model.start_recording(benchmark.region, time_bins=time_bins)
    stimuli = assembly.stimulus_set
    try:
        activations = _static(model.look_at(stimuli))
    except AssertionError as exc:
        # attach_stimulus_set_meta: activations stored for this set name hold other image paths
        store = "brainscore_vision.model_helpers.activations.core.ActivationsExtractorHelper"
        folder = Path(os.environ.get("RESULTCACHING_HOME", "~/.result_caching")) / (
            store + "._from_paths_stored"
        )
        raise ModelLoadError(
            f"Brain-Score's stored activations of {getattr(model, 'identifier', '?')} for the "
            f"stimulus set {getattr(stimuli, 'identifier', '?')} refer to images at other paths "
            f"(was $BRAINIO_HOME moved or replaced?). Delete "
            f"{folder}/identifier={getattr(model, 'identifier', '*')},"
            f"stimuli_identifier={getattr(stimuli, 'identifier', '*')},*.pkl and load again."
        ) from exc
    # XarrayRegression.fit sorts both sides by stimulus_id and trusts that they hold the same ids
    source_ids = sorted(map(str, activations["stimulus_id"].values))
    target_ids = sorted(map(str, assembly["stimulus_id"].values))
    if len(set(target_ids)) != len(target_ids) or source_ids != target_ids:
        raise PluginError(
            f"{spec.benchmark}: the model's activations ({len(source_ids)} stimuli) and the "
            f"benchmark's responses ({len(target_ids)} rows) do not cover the same stimulus ids"
        )
    regression = pls_regression()
    pls = regression._regression
    if (pls.n_components, pls.scale) != (N_COMPONENTS, SCALE):
        raise PluginError(
            f"brainscore's pls_regression() is PLSRegression(n_components={pls.n_components}, "
            f"scale={pls.scale}); berg-brainscore expects n_components={N_COMPONENTS}, "
            f"scale={SCALE}"
        )
    _logger.info(
        "fitting PLS for %s: %s activations -> %s responses",
        spec.benchmark,
        activations.shape,
        assembly.shape,
    )
    regression.fit(activations, assembly)
    neuroids = regression._target_neuroid_values
    neuroid_id = np.asarray(neuroids["neuroid_id"]).astype(str)
    region = np.asarray(neuroids.get("region", [spec.roi] * len(neuroid_id))).astype(str)
    versions = _versions()
    info = {
        "benchmark_identifier": str(benchmark.identifier),
        "benchmark_version": _plain(getattr(benchmark, "version", None)),
        "model_brainscore_identifier": str(getattr(model, "identifier", "")),
        "n_stimuli": len(target_ids),
        "feature_digest": _feature_digest(activations),
        "versions": versions,
        "fit_seconds": round(time.time() - started, 1),
        "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return Regression(
        x_mean=np.asarray(pls._x_mean, dtype=np.float64),
        coef=np.asarray(pls.coef_, dtype=np.float64),
        intercept=np.asarray(pls.intercept_, dtype=np.float64),
        neuroid_id=neuroid_id,
        neuroid_region=region,
        time_bins=np.asarray(time_bins, dtype=np.int64).reshape(-1, 2),
        info=info,
    )


def _time_bins(timebins: Any) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` from a benchmark's ``timebins`` (tuples, or 0-d arrays of them)."""
    bins = []
    for time_bin in timebins:
        if isinstance(time_bin, np.ndarray) and time_bin.ndim == 0:
            time_bin = time_bin.item()
        start, end = time_bin
        bins.append((int(start), int(end)))
    return bins


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


# -- the encoding model ----------------------------------------------------------------------
class BrainScoreModel(EncodingModel):
    """A Brain-Score model with a fitted PLS readout for one region.

    Parameters
    ----------
    request : LoadRequest
        What was asked for.
    model : BrainModel
        The Brain-Score model.
    regression : Regression
        The fitted (or cached) regression.
    path : Path
        The regression's cache file.
    fitted : bool
        Whether the regression was fitted while loading (``False``: read from the cache).
    """

    #: Images per chunk handed to Brain-Score (which runs the network in batches of its own).
    batch_size = 256

    def __init__(
        self,
        request: LoadRequest,
        model: Any,
        regression: Regression,
        *,
        path: Path,
        fitted: bool,
    ) -> None:
        super().__init__(request)
        self.brain_model = model
        self.regression = regression
        self.cache_file = path
        self.fitted = fitted
        self.roi: str = request.selection.roi  # type: ignore[union-attr]
        self.spec = BENCHMARKS[self.roi]
        self._n_neuroids = regression.n_neuroids
        self._features_checked = False
        self._info = self._describe(regression)

    def output_sizes(self) -> tuple[int, ...]:
        """One output: one column per neuroid of the region's benchmark."""
        return (self._n_neuroids,)

    def output_coords(self) -> dict[str, dict[str, np.ndarray]]:
        """The benchmark's neuroid id of every column (``column_indices`` stay ``0..n-1``)."""
        return {"responses": {"neuroid": np.asarray(self._info["neuroid_id"]).astype(str)}}

    def _describe(self, regression: Regression) -> dict[str, Any]:
        info = regression.info
        return {
            "model_identifier": info.get("model_identifier"),
            "region": self.roi,
            "layer": info.get("layer"),
            "benchmark": self.spec.benchmark,
            "benchmark_identifier": info.get("benchmark_identifier"),
            "benchmark_version": info.get("benchmark_version"),
            "neuroid_id": regression.neuroid_id.copy(),
            "neuroid_region": regression.neuroid_region.copy(),
            "time_bins": regression.time_bins.copy(),
            "versions": {**info.get("versions", {}), "model_revision": info.get("model_revision")},
            "regression": {
                "method": "sklearn PLSRegression via brainscore_vision pls_regression()",
                "n_components": info.get("n_components"),
                "scale": info.get("scale"),
                "n_stimuli": info.get("n_stimuli"),
                "fitted_at": info.get("fitted_at"),
                "cache_file": str(self.cache_file),
                "fitted_on_load": self.fitted,
            },
        }

    def response_metadata(self) -> dict[str, Any]:
        """The core's metadata plus ``brainscore``: neuroids, region, benchmark, versions."""
        metadata = super().response_metadata()
        metadata["brainscore"] = self._info
        return metadata

    def encode_batches(self, stimulus: Stimulus) -> Iterator[tuple[np.ndarray, ...]]:
        """Yield ``float32`` ``(B, neuroids)`` predictions for consecutive chunks of *stimulus*."""
        from berg_brainscore.stimuli import stimulus_set, to_uint8

        self._check_open()
        sources = stimulus.sources
        for start in range(0, len(stimulus), self.batch_size):
            stop = min(start + self.batch_size, len(stimulus))
            if sources is not None:
                chunk = stimulus_set(self.roi, paths=[Path(p) for p in sources[start:stop]])
            else:
                images = to_uint8(stimulus.batch(start, stop), stimulus.kind)
                chunk = stimulus_set(self.roi, images=images)
            with chunk as frame:
                activations = self._activations(frame)
            yield (predict(self.regression, activations).astype(np.float32),)

    def _activations(self, frame: Any) -> np.ndarray:
        model = self.brain_model
        model.start_recording(self.roi, time_bins=self.regression.time_bin_list())
        activations = _static(model.look_at(frame))
        order = [str(s) for s in activations["stimulus_id"].values]
        if order != [str(s) for s in frame["stimulus_id"].values]:
            raise PluginError("Brain-Score returned the activations in another order than asked")
        if not self._features_checked:
            expected = self.regression.info.get("feature_digest")
            if expected is not None and _feature_digest(activations) != expected:
                raise ModelLoadError(
                    f"{self.model_id}: the layer's features differ from those the regression in "
                    f"{self.cache_file} was fitted on; delete that file to refit"
                )
            self._features_checked = True
        return np.asarray(activations.values)

    def close(self) -> None:
        """Drop the network and the regression arrays."""
        self.brain_model = None
        self.regression = None  # type: ignore[assignment]
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover - torch comes with brainscore-vision
            pass
        super().close()
