"""Test kit for berg plugins: files in the reference layout, random torchvision weights, contract.

Import the helpers in a plugin's ``conftest.py`` or tests::

    from berg_core.testing import check_model, torch_home_fixture, write_npy_dict

    torch_home = torch_home_fixture("AlexNet_Weights.IMAGENET1K_V1")   # a session fixture

or enable the module as a pytest plugin (``pytest_plugins = ["berg_core.testing"]`` in the
top-level ``conftest.py``) for the fixtures ``write_npy_dict``, ``berg_images`` and
``only_plugin``. Nothing here downloads anything, and importing this module imports no torch
(:func:`make_torch_home` imports it when called).

* :func:`write_npy_dict` writes a dict as the reference toolkit saves its model files (a pickled
  ``.npy``) at a path under ``berg_dir``; :func:`write_card_files` writes every file a card lists
  for a subject that way, and :func:`reference_weights` makes a random readout in the reference
  layout (``scaler_param``, ``pca_param``, ``reg_param`` with every key scikit-learn saves);
* :func:`make_torch_home` / :func:`torch_home_fixture` put random weights for torchvision
  backbones in a ``TORCH_HOME`` under their real file names, so that ``load_pretrained`` finds
  them offline; the fixture sets ``TORCH_HOME`` for the session and restores it;
  :func:`check_torch_env` gives a ``berg_check_fixture`` the ``env`` entry that does the same for
  ``berg check`` (which sets it while encoding, then restores it);
* :func:`check_model` runs the contract checks ``berg check`` runs
  (:func:`berg_core.check.contract_results`) and fails the test with every problem found;
* :func:`only_plugin` rebuilds the registry with one plugin only (and restores it);
* :func:`vit_b_32_features`, :func:`reference_readout` and :func:`assert_within`: the independent
  computation of a ViT-B/32 + scaler/PCA/OLS family (torchvision with forward hooks, as the
  reference's torchextractor; scikit-learn objects rebuilt from the stored attributes) and its
  float32 tolerance (needs torch, torchvision and scikit-learn, imported when called).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from berg_core.check import CheckResult, contract_results, default_images, isolated_registry

__all__ = [
    "assert_within",
    "check_model",
    "check_torch_env",
    "make_torch_home",
    "only_plugin",
    "reference_readout",
    "reference_weights",
    "torch_home_fixture",
    "use_torch_home",
    "vit_b_32_features",
    "write_card_files",
    "write_npy_dict",
]

#: float32 unit roundoff, and the standard deviations a float32 result may lie from the exact
#: one (chance failure below 2.5e-14 per element; plugins/berg-nsd/tests/error_bounds.py)
_U = 2.0**-24
_LAMBDA = 8.0

#: Weight files already written this session: (weights name, seed) -> path (reused by link).
_WRITTEN: dict[tuple[str, int], Path] = {}


def write_npy_dict(berg_dir: str | Path, relative_path: str, data: Mapping[str, Any]) -> Path:
    """Write *data* at ``berg_dir / relative_path`` as the reference toolkit does (``np.save``).

    Parameters
    ----------
    berg_dir : path
        The root of the model files (created if missing).
    relative_path : str
        The file's path under ``berg_dir`` (a card's ``files_for(subject)`` entry).
    data : mapping
        Arrays, numbers, strings and nested dicts of them (what ``safe_npy`` reads back).

    Returns
    -------
    pathlib.Path
        The file written.
    """
    if not isinstance(data, Mapping):
        raise TypeError(f"write_npy_dict: data must be a mapping, got {type(data).__name__}")
    path = Path(berg_dir) / relative_path
    if path.suffix != ".npy":
        raise ValueError(f"write_npy_dict: {relative_path!r} must end in .npy (np.save adds it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, dict(data), allow_pickle=True)
    return path


def write_card_files(
    berg_dir: str | Path,
    card: Any,
    subject: int | str | None,
    contents: Mapping[str, Mapping[str, Any]],
    *,
    complete: bool = True,
) -> dict[str, Path]:
    """Write the files *card* lists for *subject*, each a dict as the reference saves it.

    Parameters
    ----------
    berg_dir : path
        The root of the model files (created if missing).
    card : ModelCard
        The model whose files these are.
    subject : int, str or None
        The subject the paths are formatted with.
    contents : mapping of str to mapping
        Path template (a card's ``FileSpec.path``, ``{subject}`` unformatted, or any other
        template under ``berg_dir``) -> the dict to write there.
    complete : bool
        Require a dict for every file of ``card.files_for(subject)`` (``False`` to leave some
        out, e.g. to test a missing file).

    Returns
    -------
    dict of str to Path
        Each template -> the file written.

    Raises
    ------
    ValueError
        With *complete*, a file of the card that *contents* does not give (named).
    """
    written = {
        template: write_npy_dict(berg_dir, template.format(subject=subject), data)
        for template, data in contents.items()
    }
    relative = {str(path.relative_to(Path(berg_dir))) for path in written.values()}
    missing = [f for f in card.files_for(subject) if f not in relative]
    if complete and missing:
        raise ValueError(
            f"write_card_files({card.model_id}, subject {subject!r}): no contents for "
            f"{', '.join(missing)}; give a dict for every file of the card, or complete=False"
        )
    return written


def reference_weights(
    n_features: int, n_rows: int, *, k: int = 3, seed: int | Sequence[int] = 0
) -> dict[str, Any]:
    """A random readout in the reference layout: scaler, one PCA (*k* components), one OLS.

    Every key scikit-learn saves is present (berg reads only some); values are seeded, with
    scales a float32 readout computes accurately (non-zero ``scale_``, unit-norm components).

    Parameters
    ----------
    n_features : int
        D, the features the backbone gives.
    n_rows : int
        The regression's outputs (e.g. channels x times, channel-major).
    k : int
        PCA components.
    seed : int or sequence of int
        Seed of :func:`numpy.random.default_rng`.

    Returns
    -------
    dict
        ``{"scaler_param": ..., "pca_param": ..., "reg_param": ...}``.
    """
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.5, 2.0, n_features)
    variance = np.sort(rng.uniform(1, 10, k))[::-1]
    return {
        "scaler_param": {
            "scale_": scale,
            "mean_": rng.normal(0, 0.5, n_features),
            "var_": scale**2,
            "n_features_in_": n_features,
            "n_samples_seen_": 100,
        },
        "pca_param": {
            "components_": (rng.normal(0, 1, (k, n_features)) / np.sqrt(n_features)).astype(
                np.float32
            ),
            "explained_variance_": variance,
            "explained_variance_ratio_": variance / variance.sum() / 2,
            "singular_values_": np.sqrt(variance * 100),
            "mean_": rng.normal(0, 0.01, n_features).astype(np.float32),
            "n_components_": k,
            "n_samples_": 100,
            "noise_variance_": 0.5,
            "n_features_in_": n_features,
        },
        "reg_param": {
            "coef_": rng.normal(0, 1, (n_rows, k)).astype(np.float32),
            "intercept_": rng.normal(0, 0.1, n_rows).astype(np.float32),
            "n_features_in_": k,
        },
    }


def check_torch_env(tmp_path: str | Path, *weights: Any, seed: int = 7) -> dict[str, str]:
    """The ``env`` a ``berg_check_fixture`` returns so that its backbones load offline.

    ``{}`` when torchvision's cache already holds every checkpoint of *weights*; else random
    weights are written under their real file names in ``tmp_path / "torch_home"``
    (:func:`make_torch_home`) and ``{"TORCH_HOME": that folder}`` is returned: ``berg check``
    sets it while it encodes the fixture's models and restores it after, so nothing leaks into
    the rest of the process::

        def berg_check_fixture(tmp_path):
            ...
            env = check_torch_env(tmp_path, "ViT_B_32_Weights.IMAGENET1K_V1")
            return {"berg_dir": berg_dir, "model_id": MODEL_ID, "subject": 1, "env": env}

    Parameters
    ----------
    tmp_path : path
        The fixture's folder.
    *weights
        As for :func:`make_torch_home`.
    seed : int
        Seed of the random weights.

    Returns
    -------
    dict of str to str
    """
    from berg_core.torchkit import checkpoint_path

    if all(checkpoint_path(_resolve_weights(spec)[1]).exists() for spec in weights):
        return {}
    home = make_torch_home(Path(tmp_path) / "torch_home", weights, seed=seed)
    return {"TORCH_HOME": str(home)}


def _resolve_weights(spec: Any) -> tuple[Callable[..., Any], Any]:
    """``(builder, weights)`` from a torchvision Weights member, its name, or a pair."""
    import torchvision

    if isinstance(spec, tuple):
        builder, weights = spec
        return builder, weights
    weights = torchvision.models.get_weight(spec) if isinstance(spec, str) else spec
    for name in torchvision.models.list_models():
        if torchvision.models.get_model_weights(name) is type(weights):
            return torchvision.models.get_model_builder(name), weights
    raise ValueError(f"no torchvision model builder takes the weights {weights}")


def make_torch_home(root: str | Path, weights: Sequence[Any], *, seed: int = 7) -> Path:
    """Fill ``root/hub/checkpoints`` with random weights for each of *weights*.

    Each file holds ``builder(weights=None).state_dict()`` built right after
    ``torch.manual_seed(seed)`` (the caller's random state is restored), saved under the real
    file name of the weights' URL, where torchvision's cache (``$TORCH_HOME``) looks for it.

    Parameters
    ----------
    root : path
        The folder to use as ``TORCH_HOME``.
    weights : sequence
        torchvision ``Weights`` members (``AlexNet_Weights.IMAGENET1K_V1``), their names
        (``"AlexNet_Weights.IMAGENET1K_V1"``), or ``(builder, weights)`` pairs.
    seed : int
        Seed of every network's random initialisation.

    Returns
    -------
    pathlib.Path
        *root*.
    """
    import torch

    root = Path(root)
    checkpoints = root / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    for spec in weights:
        builder, member = _resolve_weights(spec)
        target = checkpoints / os.path.basename(str(member.url).split("?", 1)[0])
        key = (f"{builder.__module__}.{builder.__name__}:{member}", seed)
        if target.exists():
            continue
        known = _WRITTEN.get(key)
        if known is not None and known.is_file():
            try:
                os.link(known, target)  # the same random weights, without building them again
                continue
            except OSError:  # another file system: build them
                pass
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            state = builder(weights=None).state_dict()
        torch.save(state, target)
        _WRITTEN[key] = target
    return root


@contextmanager
def use_torch_home(path: str | Path) -> Iterator[Path]:
    """Set ``TORCH_HOME`` to *path* inside the block, then restore what it was."""
    previous = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(path)
    try:
        yield Path(path)
    finally:
        if previous is None:
            os.environ.pop("TORCH_HOME", None)
        else:
            os.environ["TORCH_HOME"] = previous


def torch_home_fixture(*weights: Any, seed: int = 7, scope: str = "session") -> Any:
    """A pytest fixture: a ``TORCH_HOME`` with random *weights*, set while it is in use.

    Assign it in a ``conftest.py`` (each conftest gets a fixture of its own)::

        torch_home = torch_home_fixture("ViT_B_32_Weights.IMAGENET1K_V1")

    Parameters
    ----------
    *weights
        As for :func:`make_torch_home`.
    seed : int
        Seed of the random initialisation.
    scope : str
        The fixture's pytest scope.

    Returns
    -------
    fixture
        Yields the ``TORCH_HOME`` path; ``TORCH_HOME`` is set until the fixture's teardown.
    """

    @pytest.fixture(scope=scope)
    def torch_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
        home = make_torch_home(tmp_path_factory.mktemp("torch_home"), weights, seed=seed)
        with use_torch_home(home):
            yield home

    return torch_home


@contextmanager
def only_plugin(plugin: Any, name: str | None = None) -> Iterator[Any]:
    """The registry with only *plugin*: a module (loaded in-process) or a distribution name.

    Yields the registry; the previous registry and ``BERG_LOAD_PLUGINS`` are restored after.
    """
    if isinstance(plugin, str):
        with isolated_registry(distribution=plugin) as registry:
            yield registry
    else:
        label = name or getattr(plugin, "__name__", "plugin")
        with isolated_registry(modules={label: plugin}) as registry:
            yield registry


def check_model(
    berg: Any,
    model_id: str,
    *,
    subject: int | str | None = None,
    images: Any = None,
    selection: Mapping[str, Any] | None = None,
    **options: Any,
) -> list[CheckResult]:
    """Assert that *model_id* keeps berg's output contract (what ``berg check`` verifies).

    Loads the model through *berg*, encodes *images* (default: three random 48 x 48 images)
    and checks shapes against ``model.shapes()``, ``float32``, dims and coordinates against the
    card, finite values, determinism, batch-size independence and ``metadata["output"]``.

    Parameters
    ----------
    berg : berg_core.BERG
    model_id, subject, selection
        What to load.
    images : optional
        What to encode.
    **options
        Keyword options of ``get_encoding_model``.

    Returns
    -------
    list of CheckResult
        Every check (all passed).

    Raises
    ------
    AssertionError
        Listing every failed check.
    """
    results = contract_results(
        berg, model_id, subject=subject, selection=selection, options=options, images=images
    )
    failed = [r.line for r in results if r.status == "FAIL"]
    if failed:
        raise AssertionError("berg contract broken:\n" + "\n".join(failed))
    return results


# -- fixtures of the pytest plugin (pytest_plugins = ["berg_core.testing"]) ------------------------
@pytest.fixture(name="write_npy_dict")
def _write_npy_dict_fixture() -> Callable[..., Path]:
    """:func:`write_npy_dict`, as a fixture."""
    return write_npy_dict


@pytest.fixture
def berg_images() -> np.ndarray:
    """Three random ``uint8`` images ``(3, 3, 48, 48)``, the same on every run."""
    return default_images()


@pytest.fixture(name="only_plugin")
def _only_plugin_fixture() -> Callable[..., Any]:
    """:func:`only_plugin`, as a fixture (a context manager)."""
    return only_plugin


def vit_b_32_features(images: np.ndarray) -> np.ndarray:
    """``(N, 460800)``: ViT-B/32's 12 encoder blocks' outputs, flattened and concatenated.

    Taken as the reference's torchextractor takes them (forward hooks on the
    ``encoder.layers.encoder_layer_i`` modules), with the weights' own transforms; the weights
    come from torchvision's cache (:func:`torch_home_fixture`).
    """
    import torch
    import torchvision

    weights = torchvision.models.ViT_B_32_Weights.IMAGENET1K_V1
    net = torchvision.models.vit_b_32(weights=weights).eval()
    outputs: list[Any] = []
    hooks = [
        net.encoder.layers[i].register_forward_hook(lambda m, i, o: outputs.append(o))
        for i in range(12)
    ]
    with torch.no_grad():
        net(weights.transforms()(torch.from_numpy(images)))
    for hook in hooks:
        hook.remove()
    return torch.cat([o.flatten(1) for o in outputs], dim=1).numpy()


def _sklearn_object(cls: type, attributes: Mapping[str, Any]) -> Any:
    obj = cls()
    for key, value in attributes.items():
        setattr(obj, key, value)
    return obj


def reference_readout(
    weights: Mapping[str, Any], features: np.ndarray, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """The reference's responses ``(N, *shape)`` and the float32 tolerance of berg's readout.

    ``weights`` holds ``scaler_param``, ``pca_param`` and ``reg_param`` as the reference saves
    them; the scikit-learn objects are rebuilt from them and run in float64. The tolerance
    follows the probabilistic rounding-error model of berg's float32 readout.
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LinearRegression
    from sklearn.preprocessing import StandardScaler

    scaler = _sklearn_object(StandardScaler, weights["scaler_param"])
    pca = _sklearn_object(PCA, weights["pca_param"])
    reg = _sklearn_object(LinearRegression, weights["reg_param"])
    scaled = scaler.transform(features.astype(np.float64))
    z = pca.transform(scaled)
    out = reg.predict(z)
    comp = np.asarray(pca.components_, np.float64)
    centred = scaled - pca.mean_
    dim, k = comp.shape[1], comp.shape[0]
    # z: float32 dot products of length D over inputs with relative errors <= 3u
    sd_z = np.sqrt(dim + 1) * _U * (np.abs(centred) @ np.abs(comp).T)
    sd_z = np.sqrt(sd_z**2 + (3 * _U) ** 2 * ((centred**2) @ (comp**2).T))
    coef = np.asarray(reg.coef_, np.float64)
    sd_y = np.sqrt((sd_z**2) @ (coef**2).T)
    sd_y += np.sqrt(k + 1) * _U * (np.abs(z) @ np.abs(coef).T + np.abs(reg.intercept_))
    bound = _LAMBDA * sd_y + 1e-30
    n = features.shape[0]
    return out.reshape(n, *shape), bound.reshape(n, *shape)


def assert_within(actual: np.ndarray, wanted: np.ndarray, bound: np.ndarray) -> None:
    """Every element of *actual* within *bound* of *wanted* (the worst one reported)."""
    assert actual.shape == wanted.shape, (actual.shape, wanted.shape)
    excess = np.abs(actual.astype(np.float64) - wanted) - bound
    worst = np.unravel_index(np.argmax(excess), excess.shape)
    assert excess.max() <= 0, f"off by {excess[worst]:.3g} beyond the bound at {worst}"
