"""Training of a THINGS EEG2 encoding model (``berg train things-eeg2``), resumable and bounded.

The reference's recipe (more-families.md §2.6): backbone features of the 16,540 training images,
ONE ``StandardScaler`` on all of them, a 250-component PCA per training repetition and an OLS
regression per repetition from the PCA scores onto that repetition's ``(images, 63 * 140)``
EEG (rows channel-major); tested on the 200 test images' EEG averaged over its 80 repetitions.

Steps, each kept in the work folder under a key of everything it depends on, so an interrupted
run continues from its last finished step:

1. features: :func:`berg_train.features.extract_to_h5` (every 64 images saved);
2. scaler + PCA: ``exact`` (default) - one exact PCA, fitted out of core by
   :func:`berg_train.pca.fit_scaler_pca` and stored once per repetition (the reference's four
   randomized PCAs differ only through their solver seeds, and an exact PCA is the same for
   every seed); or ``randomized`` - scikit-learn's ``PCA(k, random_state=seed_r)`` per
   repetition with the reference's seeds ``20200220 + subject * 1000 + (r + 1) * 10``, in
   memory (refused when the features do not fit the budget);
3. regression per repetition and channel chunk (:func:`berg_train.regression.make_solver`:
   OLS, or ridge with a per-column penalty by K-fold cross-validation), every chunk saved;
4. evaluation, noise ceiling, weights + metadata (written atomically) and a figure.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from berg_core import InvalidParameterError
from berg_train.regression import DEFAULT_ALPHAS

__all__ = [
    "PCA_METHODS",
    "WEIGHTS_FORMATS",
    "EEG2TrainConfig",
    "EEG2TrainResult",
    "fit_channel_chunk",
    "noise_ceiling",
    "pca_seed",
    "train_things_eeg2",
]

#: ``exact``: one exact PCA (default); ``randomized``: scikit-learn's, seeded per repetition.
PCA_METHODS = ("exact", "randomized")
#: ``B``: per-repetition dicts of PCA attributes (default); ``C``: pickled scikit-learn PCAs.
WEIGHTS_FORMATS = ("B", "C")
#: Base of the reference's seeds.
_SEED = 20200220


def pca_seed(subject: int, repetition: int) -> int:
    """The reference's PCA seed of *repetition* (0-based): ``20200220 + s*1000 + (r+1)*10``."""
    return _SEED + int(subject) * 1000 + (int(repetition) + 1) * 10


@dataclass
class EEG2TrainConfig:
    """How to train a THINGS EEG2 model.

    Attributes
    ----------
    model : str
        ``"vit_b_32"`` (default), ``"alexnet"`` or ``"alexnet_untrained"``: the backbone, and the
        model folder ``model-<model>`` berg-things-eeg2 loads.
    vit_transform : str
        ``"training"`` (the reference's ViT training transform: square centre crop + resize 224,
        default) or ``"inference"`` (the weights' preset). AlexNet: always its preset.
    pca : str
        ``"exact"`` or ``"randomized"`` (see the module docstring).
    regression : str
        ``"ols"`` (the reference) or ``"ridge"``.
    n_components : int
        PCA components (250).
    alphas : tuple of float
        Ridge penalties.
    cv_folds : int
        Ridge cross-validation folds (over images).
    weights_format : str
        ``"B"`` (dicts; berg and the reference's f3e7819a loader read it, no scikit-learn needed)
        or ``"C"`` (pickled scikit-learn ``PCA`` objects, which the newest reference loader
        needs; requires scikit-learn to write).
    device : str
    batch_size : int, optional
    memory_gb : float
        Working memory for feature blocks and EEG chunks.
    work_dir : Path, optional
        Default ``<berg_dir>/model_training_work/train_dataset-things_eeg_2/model-<m>/subject-SS``.
    keep_work : bool
        Keep the work folder after success.
    force : bool
        Replace existing weights/metadata files (otherwise an existing file is refused before
        any work).
    show_progress : bool
    """

    model: str = "vit_b_32"
    vit_transform: str = "training"
    pca: str = "exact"
    regression: str = "ols"
    n_components: int = 250
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    cv_folds: int = 5
    weights_format: str = "B"
    device: str = "auto"
    batch_size: int | None = None
    memory_gb: float = 2.0
    work_dir: Path | None = None
    keep_work: bool = True
    force: bool = False
    show_progress: bool = True

    def check(self) -> None:
        """Refuse unknown choices and out-of-range numbers (:class:`InvalidParameterError`)."""
        choices = {
            "pca": (self.pca, PCA_METHODS),
            "regression": (self.regression, ("ols", "ridge")),
            "weights_format": (self.weights_format, WEIGHTS_FORMATS),
        }
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise InvalidParameterError(f"{name} {value!r} is not one of {', '.join(allowed)}")
        if int(self.n_components) < 1:
            raise InvalidParameterError(f"n_components must be >= 1, got {self.n_components}")
        if not float(self.memory_gb) > 0:
            raise InvalidParameterError(f"memory_gb must be > 0, got {self.memory_gb}")


@dataclass
class EEG2TrainResult:
    """What :func:`train_things_eeg2` wrote and measured.

    Attributes
    ----------
    weights_path, metadata_path, figure_path, work_dir : Path
    correlation_averaged : numpy.ndarray
        ``(63, 140)`` r of the mean of the 4 predicted repetitions with the repeat-averaged
        test EEG.
    correlation_single : numpy.ndarray
        ``(4, 63, 140)`` r of each repetition's prediction.
    noise_ceiling : numpy.ndarray
        ``(63, 140)`` percent of the averaged test EEG's variance that is signal.
    test_predictions : numpy.ndarray
        ``(n_test, 4, 63, 140)`` float32, the model's predictions of the test images.
    timings : dict
    simulated : bool
    """

    weights_path: Path
    metadata_path: Path
    figure_path: Path
    work_dir: Path
    correlation_averaged: np.ndarray
    correlation_single: np.ndarray
    noise_ceiling: np.ndarray
    test_predictions: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    simulated: bool = False

    def summary_lines(self) -> list[str]:
        """Human-readable accuracy lines."""
        label = "SIMULATED DATA: " if self.simulated else ""
        r = self.correlation_averaged
        ceiling = np.sqrt(np.clip(self.noise_ceiling, 0, 100) / 100)
        peak = np.unravel_index(np.argmax(r.mean(axis=0, keepdims=True)), (1, r.shape[1]))[1]
        return [
            f"{label}test r (mean of 4 predicted repetitions vs the test repetitions' "
            f"average), mean over {r.shape[0]} channels x {r.shape[1]} times {r.mean():.3f}; "
            f"noise-ceiling r {ceiling.mean():.3f}",
            f"{label}single repetitions: mean r "
            + ", ".join(f"rep-{i + 1} {v:.3f}" for i, v in enumerate(
                self.correlation_single.mean(axis=(1, 2))))
            + f"; best time index {int(peak)} (channel-mean r {r.mean(axis=0).max():.3f})",
        ]  # fmt: skip


def noise_ceiling(test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ncsnr and the noise ceiling (percent) of the repeat-averaged test data, per column.

    With ``R`` repetitions per image: noise variance ``σ²_n`` = mean over images of the
    across-repetition variance (ddof 1); signal variance ``σ²_s`` = variance over images of the
    repeat-averaged data (ddof 1) minus ``σ²_n / R`` (its noise part), clipped at 0 - both
    unbiased; ``ncsnr = σ_s / σ_n`` and ``NC = 100 ncsnr² / (ncsnr² + 1/R)``, the share of the
    averaged data's variance a perfect model explains (its r is at most ``sqrt(NC / 100)``).

    Parameters
    ----------
    test : numpy.ndarray
        ``(images, R, columns)``.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ncsnr and NC (percent), ``(columns,)`` float64.
    """
    x = np.asarray(test, dtype=np.float64)
    reps = x.shape[1]
    noise = x.var(axis=1, ddof=1).mean(axis=0)
    signal = np.clip(x.mean(axis=1).var(axis=0, ddof=1) - noise / reps, 0.0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        ncsnr = np.nan_to_num(np.sqrt(signal / noise), nan=0.0, posinf=0.0)
    nc = 100.0 * ncsnr**2 / (ncsnr**2 + 1.0 / reps)
    return ncsnr, nc


def _channel_chunk(n_rows: int, n_test_trials: int, n_times: int, memory_gb: float) -> int:
    """Channels per regression chunk: targets (float32, ~4 copies) within half the budget."""
    per_channel = n_times * 4 * (4 * n_rows + 2 * n_test_trials)
    return int(max(1, memory_gb * 0.5e9 // per_channel))


def _randomized_pcas(
    features_path: Path, n_fit: int, k: int, subject: int, memory_gb: float
) -> list[Any]:
    """Scaler + one scikit-learn PCA per repetition, in memory (the reference's computation)."""
    import h5py
    from berg_things_eeg2.layout import N_REPETITIONS
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    from berg_train.pca import PCAResult

    with h5py.File(features_path, "r") as h5:
        n_rows, dim = h5["features"].shape
        need = 3 * 4 * n_rows * dim
        if need > memory_gb * 1e9:
            raise InvalidParameterError(
                f"pca 'randomized' holds the features in memory: {n_rows} x {dim} needs about "
                f"{need / 1e9:.1f} GB, over memory_gb = {memory_gb}; raise --memory-gb or use "
                f"--pca exact (out of core)"
            )
        features = np.asarray(h5["features"][:], dtype=np.float32)
    scaler = StandardScaler().fit(features[:n_fit])
    scaled = scaler.transform(features).astype(np.float32)
    del features
    scaler_param = {
        "scale_": scaler.scale_,
        "mean_": scaler.mean_,
        "var_": scaler.var_,
        "n_features_in_": int(scaler.n_features_in_),
        "n_samples_seen_": int(scaler.n_samples_seen_),
    }
    results = []
    for r in range(N_REPETITIONS):
        pca = PCA(n_components=k, random_state=pca_seed(subject, r)).fit(scaled[:n_fit])
        pca_param = {
            "components_": np.asarray(pca.components_, dtype=np.float32),
            "explained_variance_": pca.explained_variance_,
            "explained_variance_ratio_": pca.explained_variance_ratio_,
            "singular_values_": pca.singular_values_,
            "mean_": pca.mean_,
            "n_components_": int(pca.n_components_),
            "n_samples_": int(pca.n_samples_),
            "noise_variance_": float(pca.noise_variance_),
            "n_features_in_": int(pca.n_features_in_),
        }
        scores = pca.transform(scaled).astype(np.float32).astype(np.float64)
        results.append(PCAResult(scaler_param, pca_param, scores))
    return results


def _sklearn_pca(attributes: dict[str, Any]) -> Any:
    """A scikit-learn ``PCA`` carrying *attributes* (weights generation C)."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=int(attributes["n_components_"]))
    for name, value in attributes.items():
        setattr(pca, name, value)
    return pca


def _save_npy_atomic(payloads: list[tuple[Path, Any]], force: bool) -> None:
    from berg_core.atomic import atomic_outputs

    with atomic_outputs([path for path, _ in payloads], force=force) as parts:
        for part, (_, payload) in zip(parts, payloads, strict=True):
            with open(part, "wb") as stream:
                np.save(stream, payload, allow_pickle=True)  # a pickled dict, as the reference


def fit_channel_chunk(
    dataset: Any, solver: Any, repetition: int, c0: int, c1: int, target: str | os.PathLike[str]
) -> tuple[int, int, int]:
    """Fit channels ``c0:c1`` of training repetition *repetition* (all their times); write
    ``coef``, ``intercept`` (and ridge's ``alpha``) to the ``.npz`` file *target*.

    One task of the regression step, here or on a cluster's worker.

    Returns
    -------
    tuple of int
        ``(repetition, c0, c1)``.
    """
    from berg_train.engine import save_npz_atomic

    fit = solver.fit(dataset.read_train(repetition, c0, c1))
    arrays = {"coef": fit.coef, "intercept": fit.intercept}
    if fit.alpha is not None:
        arrays["alpha"] = fit.alpha
    save_npz_atomic(Path(target), arrays)
    return repetition, c0, c1


def train_things_eeg2(
    data: str | os.PathLike[str],
    images: str | os.PathLike[str],
    subject: int,
    berg_dir: str | os.PathLike[str],
    config: EEG2TrainConfig | None = None,
    *,
    runner: Any = None,
    **options: Any,
) -> EEG2TrainResult:
    """Train a THINGS EEG2 model of *subject* and write it under *berg_dir* (reference layout).

    Parameters
    ----------
    data : path-like
        The prepared data (see :class:`berg_train.datasets.things_eeg2.ThingsEEG2Data`).
    images : path-like
        The THINGS EEG2 ``image_set`` folder.
    subject : int
        1..10.
    berg_dir : path-like
        Output root: ``encoding_models/modality-eeg/train_dataset-things_eeg_2/model-<model>/
        {encoding_models_weights/weights_subject-SS.npy, metadata/metadata_subject-SS.npy,
        encoding_models_accuracy/accuracy_subject-SS.png}``.
    config : EEG2TrainConfig, optional
        *options* override its fields.
    runner : berg_train.runner.Runner, optional
        Where the feature shards, exact-PCA blocks and regression chunks run: this process
        (default) or a cluster (``berg_distributed.training.DaskRunner``); the files are the
        same.

    Returns
    -------
    EEG2TrainResult

    Raises
    ------
    berg_core.InvalidParameterError
        Bad inputs (files, options), or existing outputs without ``force``.
    """
    from dataclasses import fields, replace

    import h5py
    from berg_things_eeg2.layout import N_REPETITIONS, REPETITIONS, metadata_file, weights_file
    from tqdm.auto import tqdm

    from berg_core.atomic import check_output_path
    from berg_train import __version__
    from berg_train.datasets.things_eeg2 import ThingsEEG2Data
    from berg_train.eeg2_figure import write_eeg2_figure
    from berg_train.eeg2_transform import eeg2_backbone
    from berg_train.engine import _hash, feature_step
    from berg_train.features import chunk_cols
    from berg_train.memory import release_memory
    from berg_train.metrics import pearson_columns
    from berg_train.pca import PCAResult, fit_scaler_pca
    from berg_train.regression import make_solver
    from berg_train.runner import SerialRunner

    known = {f.name for f in fields(EEG2TrainConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidParameterError(
            f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    config = replace(config or EEG2TrainConfig(), **options)
    config.check()
    backbone = eeg2_backbone(config.model, config.vit_transform)
    dataset = ThingsEEG2Data(data, images, subject)
    berg_dir = Path(berg_dir)
    subject = dataset.subject
    weights_path = berg_dir / weights_file(config.model).format(subject=subject)
    metadata_path = berg_dir / metadata_file(config.model).format(subject=subject)
    figure_path = (
        weights_path.parent.parent
        / "encoding_models_accuracy"
        / f"accuracy_subject-{subject:02d}.png"
    )
    for path in (weights_path, metadata_path):  # refuse before hours of work, not after
        check_output_path(path, force=config.force)
    k = int(config.n_components)
    if k > dataset.n_train:
        raise InvalidParameterError(
            f"n_components = {k} exceeds the {dataset.n_train} training images"
        )
    work = (
        Path(config.work_dir)
        if config.work_dir
        else berg_dir / "model_training_work" / "train_dataset-things_eeg_2"
        / f"model-{config.model}" / f"subject-{subject:02d}"
    )  # fmt: skip
    work.mkdir(parents=True, exist_ok=True)
    show = config.show_progress
    timings: dict[str, float] = {}
    n_train, n_test, reps = dataset.n_train, dataset.n_test, dataset.test_repeats
    n_channels, n_times = len(dataset.ch_names), len(dataset.times)

    # 1. features ---------------------------------------------------------------------------------
    feature_key = _hash(backbone.name, backbone.identity, dataset.identity()["images"], n_train)
    features_path = feature_step(
        backbone, dataset.images, work, feature_key, config, runner, timings
    )

    # 2. scaler + PCA -----------------------------------------------------------------------------
    started = time.perf_counter()
    pca_key = _hash(feature_key, k, config.pca, subject if config.pca == "randomized" else None)
    pca_paths = [work / f"pca-{pca_key}-rep-{r + 1}.npz" for r in range(N_REPETITIONS)]
    if config.pca == "exact":
        exact_path = work / f"pca-{pca_key}.npz"
        if not exact_path.is_file():
            with h5py.File(features_path, "r", rdcc_nbytes=0) as h5:
                features = h5["features"]
                exact = fit_scaler_pca(
                    features,
                    n_train,
                    k,
                    memory_bytes=config.memory_gb * 0.5e9,
                    chunk_cols=chunk_cols(features),
                    checkpoint=work / f"pca-{pca_key}.checkpoint.npz",
                    show_progress=show,
                    runner=runner,
                )
            exact.save(exact_path)
        # always the saved copy, so that a resumed run writes the same bytes as an unbroken one
        pcas = [PCAResult.load(exact_path)] * N_REPETITIONS
    else:
        if not all(path.is_file() for path in pca_paths):
            fitted = _randomized_pcas(features_path, n_train, k, subject, config.memory_gb)
            for pca, path in zip(fitted, pca_paths, strict=True):
                pca.save(path)
            del fitted
        pcas = [PCAResult.load(path) for path in pca_paths]
    timings["pca"] = time.perf_counter() - started
    release_memory()

    # 3. regression per repetition and channel chunk ----------------------------------------------
    started = time.perf_counter()
    method = config.regression
    reg_key = _hash(
        pca_key,
        dataset.fingerprint(),
        method,
        list(config.alphas) if method == "ridge" else None,
        config.cv_folds if method == "ridge" else None,
    )
    reg_dir = work / f"regression-{method}-{reg_key}"
    reg_dir.mkdir(exist_ok=True)
    chunk = min(n_channels, _channel_chunk(n_train, n_test * reps, n_times, config.memory_gb))
    starts = list(range(0, n_channels, chunk))
    todo = [
        (r, c0, min(n_channels, c0 + chunk))
        for r in range(N_REPETITIONS)
        for c0 in starts
        if not (reg_dir / f"rep-{r + 1}-{c0:02d}-{min(n_channels, c0 + chunk):02d}.npz").is_file()
    ]
    run = runner or SerialRunner()
    shared_dataset = run.share(dataset) if todo else None
    solvers = {
        r: run.share(
            make_solver(
                method,
                pcas[r].scores[:n_train],
                alphas=tuple(config.alphas),
                cv_folds=config.cv_folds,
                groups=None,
                seed=_SEED,
            )
        )
        for r in sorted({r for r, _, _ in todo})
    }
    tasks = [
        (
            shared_dataset,
            solvers[r],
            r,
            c0,
            c1,
            os.fspath(reg_dir / f"rep-{r + 1}-{c0:02d}-{c1:02d}.npz"),
        )
        for r, c0, c1 in todo
    ]
    with tqdm(
        total=N_REPETITIONS * n_channels,
        initial=N_REPETITIONS * n_channels - sum(c1 - c0 for _, c0, c1 in todo),
        desc=f"Regression ({method})",
        unit="channel",
        disable=not show,
    ) as bar:
        for _, c0, c1 in run.map(fit_channel_chunk, tasks, label="regression"):
            bar.update(c1 - c0)
    del solvers
    timings["regression"] = time.perf_counter() - started
    release_memory()

    # 4. assemble, evaluate, write ----------------------------------------------------------------
    started = time.perf_counter()
    n_out = n_channels * n_times
    heads: dict[str, dict[str, Any]] = {}
    alphas: dict[str, np.ndarray] = {}
    for r, rep in enumerate(REPETITIONS):
        coef = np.empty((n_out, k), dtype=np.float32)
        intercept = np.empty(n_out, dtype=np.float32)
        alpha = np.empty(n_out) if method == "ridge" else None
        for c0 in starts:
            c1 = min(n_channels, c0 + chunk)
            with np.load(reg_dir / f"rep-{r + 1}-{c0:02d}-{c1:02d}.npz") as saved:
                coef[c0 * n_times : c1 * n_times] = saved["coef"]
                intercept[c0 * n_times : c1 * n_times] = saved["intercept"]
                if alpha is not None:
                    alpha[c0 * n_times : c1 * n_times] = saved["alpha"]
        heads[rep] = {"coef_": coef, "intercept_": intercept, "n_features_in_": k}
        if alpha is not None:
            alphas[rep] = alpha.reshape(n_channels, n_times).astype(np.float32)
    predictions = np.empty((n_test, N_REPETITIONS, n_out), dtype=np.float32)
    for r, rep in enumerate(REPETITIONS):
        test_scores = pcas[r].scores[n_train:]
        predictions[:, r] = test_scores @ heads[rep]["coef_"].T.astype(np.float64) + heads[rep][
            "intercept_"
        ].astype(np.float64)
    corr_single = np.empty((N_REPETITIONS, n_out))
    corr_avg = np.empty(n_out)
    ncsnr = np.empty(n_out)
    nc = np.empty(n_out)
    for c0 in starts:
        c1 = min(n_channels, c0 + chunk)
        cols = slice(c0 * n_times, c1 * n_times)
        test = dataset.read_test(c0, c1)
        ncsnr[cols], nc[cols] = noise_ceiling(test)
        average = test.mean(axis=1, dtype=np.float64)
        del test
        for r in range(N_REPETITIONS):
            corr_single[r, cols] = pearson_columns(predictions[:, r, cols], average, clip=False)
        corr_avg[cols] = pearson_columns(
            predictions[:, :, cols].mean(axis=1, dtype=np.float64), average, clip=False
        )
    shape = (n_channels, n_times)
    info: dict[str, Any] = {
        "berg_train_version": __version__,
        "simulated": bool(dataset.simulated),
        "dataset_root": str(dataset.root),
        "image_set": str(dataset.image_dir),
        "backbone": backbone.name,
        "backbone_identity": backbone.identity,
        "vit_transform": config.vit_transform if config.model == "vit_b_32" else "preset",
        "regression": method,
        "n_components": k,
        "pca": config.pca,
        "pca_random_state": (
            [pca_seed(subject, r) for r in range(N_REPETITIONS)]
            if config.pca == "randomized"
            else "none (exact PCA, the same for every seed)"
        ),
        "weights_format": config.weights_format,
        "n_train_images": n_train,
        "n_test_images": n_test,
        "test_repeats": reps,
        "noise_ceiling": "NC = 100 ncsnr^2 / (ncsnr^2 + 1/R); see berg_train.things_eeg2",
    }
    if alphas:
        info["ridge_alpha"] = alphas
        info["alphas"] = np.asarray(config.alphas, dtype=np.float64)
        info["cv_folds"] = int(config.cv_folds)
    if config.weights_format == "C":
        pca_param: dict[str, Any] = {
            rep: _sklearn_pca(pcas[r].pca_param) for r, rep in enumerate(REPETITIONS)
        }
    else:
        pca_param = {rep: dict(pcas[r].pca_param) for r, rep in enumerate(REPETITIONS)}
    weights = {"scaler_param": pcas[0].scaler_param, "pca_param": pca_param, "reg_param": heads}

    def listed(info_dict: dict[str, Any]) -> dict[str, Any]:
        return {
            key: (np.asarray(v).astype(str).tolist() if not np.isscalar(v) else v)
            for key, v in info_dict.items()
        }

    metadata = {
        "eeg": {
            "ch_names": list(dataset.ch_names),
            "times": dataset.times.copy(),
            "ncsnr": ncsnr.reshape(shape).astype(np.float32),
            "noise_ceiling": nc.reshape(shape).astype(np.float32),
        },
        "encoding_models": {
            "correlation_averaged_repetitions": corr_avg.reshape(shape).astype(np.float32),
            "correlation_single_repetitions": corr_single.reshape(N_REPETITIONS, *shape).astype(
                np.float32
            ),
            "train_img_info": listed(dataset.train_img_info),
            "test_img_info": listed(dataset.test_img_info),
        },
        "berg_train": info,
    }
    # the metadata last: its presence means the model is complete
    _save_npy_atomic([(weights_path, weights), (metadata_path, metadata)], config.force)
    del weights, heads
    predictions = predictions.reshape(n_test, N_REPETITIONS, n_channels, n_times)
    title = (
        f"THINGS EEG2 subject {subject}, {config.model}, {config.pca} PCA, {method.upper()}, "
        f"{k} PCs"
    )
    write_eeg2_figure(
        corr_avg.reshape(shape),
        corr_single.reshape(N_REPETITIONS, *shape),
        nc.reshape(shape),
        dataset.ch_names,
        dataset.times,
        figure_path,
        title=title,
        simulated=dataset.simulated,
    )
    timings["write"] = time.perf_counter() - started
    if not config.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return EEG2TrainResult(
        weights_path=weights_path,
        metadata_path=metadata_path,
        figure_path=figure_path,
        work_dir=work,
        correlation_averaged=corr_avg.reshape(shape),
        correlation_single=corr_single.reshape(N_REPETITIONS, *shape),
        noise_ceiling=nc.reshape(shape),
        test_predictions=predictions,
        timings=timings,
        simulated=dataset.simulated,
    )
