"""The training engine: features -> scaler + PCA -> regression per output chunk -> files.

Each step keeps its result in a work folder, keyed by everything it depends on, so an interrupted
run resumes from its last finished step (and within the steps: the features every 64 images,
the Gram pass of the PCA from its last checkpoint, the regression chunk by chunk), and a second
run with another regression reuses the features and the PCA.

Peak memory is bounded by :attr:`TrainConfig.memory_gb` for the feature blocks and target
chunks, plus the ``n x n`` Gram matrix (648 MB for 9,000 training images), the ``k x D`` PCA
components and, while the weights are written, the ``(outputs x k)`` regression weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from berg_train.backbones import Backbone, resolve_backbone
from berg_train.datasets.base import TrainingDataset
from berg_train.memory import release_memory
from berg_train.regression import DEFAULT_ALPHAS, make_solver
from berg_train.runner import Runner, SerialRunner

__all__ = ["TrainConfig", "TrainResult", "fit_regression_chunk", "save_npz_atomic", "train"]


@dataclass
class TrainConfig:
    """How to train.

    Attributes
    ----------
    backbone : str or Backbone, optional
        ``"alexnet_untrained"``, ``"alexnet"``, ``"vit_b_32"``, an import path, or a
        :class:`~berg_train.backbones.Backbone`. Default: the dataset's published model's
        (``alexnet_untrained`` for NSD, ``vit_b_32`` for THINGS-fMRI1).
    regression : str
        ``"ols"`` (ordinary least squares, the reference) or ``"ridge"`` (per-target penalty
        chosen by K-fold cross-validation).
    n_components : int
        PCA components (the reference: 250).
    alphas : tuple of float
        Ridge penalties to choose from.
    cv_folds : int
        Folds of the ridge cross-validation (THINGS: whole sessions per fold).
    seed : int
        Seed of the fold assignment (the reference's 20200220).
    device : str
        Where the backbone runs.
    batch_size : int, optional
        Images per forward pass.
    memory_gb : float
        Working memory for feature blocks and target chunks.
    chunk_size : int, optional
        Output columns per regression chunk (default: from *memory_gb*).
    work_dir : Path, optional
        Where intermediate results are kept (default ``<berg_dir>/model_training_work/...``).
    model_name : str, optional
        Model folder ``model-<name>`` (default: the backbone's name).
    keep_work : bool
        Keep the work folder (features, PCA) after success, for other regressions.
    show_progress : bool
        Progress bars.
    """

    backbone: str | Backbone | None = None
    regression: str = "ols"
    n_components: int = 250
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    cv_folds: int = 5
    seed: int = 20200220
    device: str = "auto"
    batch_size: int | None = None
    memory_gb: float = 2.0
    chunk_size: int | None = None
    work_dir: Path | None = None
    model_name: str | None = None
    keep_work: bool = True
    show_progress: bool = True


@dataclass
class TrainResult:
    """What :func:`train` wrote and measured.

    Attributes
    ----------
    weights_path, metadata_path, figure_path : Path
        The files written under ``berg_dir``.
    work_dir : Path
        The work folder (removed when ``keep_work`` is false).
    evaluation : dict
        ``{output: {"correlation", "r2", "noise_ceiling", "explained_variance"[, "alpha"]}}``,
        each an array over the output's columns.
    roi_summary : list of dict
        Per-ROI means (see :func:`berg_train.figure.roi_summary`).
    timings : dict
        Seconds spent in each step of this run.
    simulated : bool
        Whether the data was simulated.
    """

    weights_path: Path
    metadata_path: Path
    figure_path: Path
    work_dir: Path
    evaluation: dict[str, dict[str, np.ndarray]]
    roi_summary: list[dict[str, Any]]
    timings: dict[str, float] = field(default_factory=dict)
    simulated: bool = False

    def summary_lines(self) -> list[str]:
        """Human-readable accuracy lines, per output and overall."""
        label = "SIMULATED DATA: " if self.simulated else ""
        lines = []
        for output, ev in self.evaluation.items():
            nc = ev["noise_ceiling"]
            reliable = nc > 0.1
            r = ev["correlation"]
            text = (
                f"{label}{output}: test r median {np.median(r):.3f} over {r.size} columns; "
                f"where noise ceiling > 10% ({int(reliable.sum())} columns): mean r "
                f"{_mean(r[reliable]):.3f}, mean noise-ceiling r "
                f"{_mean(np.sqrt(nc[reliable])):.3f}, "
                f"mean % of noise ceiling explained {_mean(ev['explained_variance'][reliable]):.1f}"
            )
            lines.append(text)
        return lines


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else float("nan")


def _hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def feature_step(
    backbone: Backbone,
    images: Any,
    work: Path,
    key: str,
    config: Any,
    runner: Runner | None,
    timings: dict[str, float],
) -> Path:
    """Step 1 of a training run: *images*' features into ``work/features-<key>.h5`` (resumed).

    Shared by :func:`train` and :func:`berg_train.things_eeg2.train_things_eeg2`: runs
    :func:`berg_train.features.extract_features` with *config*'s ``device``, ``batch_size`` and
    ``show_progress``, records the seconds in ``timings["features"]`` and releases the
    backbone's memory before the PCA.

    Returns
    -------
    Path
        The features file.
    """
    from berg_train.features import extract_features

    started = time.perf_counter()
    features_path = work / f"features-{key}.h5"
    extract_features(
        backbone,
        images,
        features_path,
        key=key,
        device=config.device,
        batch_size=config.batch_size,
        show_progress=config.show_progress,
        runner=runner,
    )
    timings["features"] = time.perf_counter() - started
    release_memory()  # the backbone and the allocator's free pages, before the PCA's blocks
    return features_path


def _atomic_save_npy(path: Path, payload: Any) -> None:
    """``np.save(path, payload)`` (a pickled dict, as the reference), written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "wb") as stream:
        np.save(stream, payload, allow_pickle=True)
    os.replace(partial, path)


def _default_work_dir(berg_dir: Path, dataset: TrainingDataset, model: str) -> Path:
    return (
        Path(berg_dir)
        / "model_training_work"
        / f"train_dataset-{dataset.dataset_id}"
        / f"model-{model}"
        / f"subject-{dataset.subject:02d}"
    )


def _chunk_size(config: TrainConfig, dataset: TrainingDataset, k: int) -> int:
    if config.chunk_size:
        return int(config.chunk_size)
    rows = len(dataset.images) + len(dataset.train_rows)
    trials = int(getattr(dataset, "trials_in_memory", 1000))
    per_column = 24 * (rows + trials) + 120 * k
    chunk = int(config.memory_gb * 0.5e9 // per_column)
    return int(min(max(1024, chunk // 1024 * 1024), 32768))


def save_npz_atomic(target: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez(target, **arrays)`` under its final name only when complete (a per-process
    temporary name, so a task rerun elsewhere never collides with a lost one's leftovers)."""
    target = Path(target)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial.npz")
    np.savez(partial, **arrays)
    os.replace(partial, target)


def fit_regression_chunk(
    dataset: TrainingDataset,
    solver: Any,
    test_design: np.ndarray,
    output: str,
    start: int,
    stop: int,
    target: str | os.PathLike[str],
) -> tuple[int, int]:
    """Fit and evaluate output columns ``start:stop`` of *output*; write ``coef``,
    ``intercept``, test ``r`` (and ridge's ``alpha``) to the ``.npz`` file *target*.

    One task of the regression step, here or on a cluster's worker.

    Returns
    -------
    tuple of int
        ``(start, stop)``.
    """
    from berg_train.metrics import pearson_columns

    block = dataset.read_targets(output, start, stop)
    fit = solver.fit(block.train)
    predicted = test_design @ fit.coef.T + fit.intercept
    r = pearson_columns(predicted, block.test)
    arrays = {"coef": fit.coef, "intercept": fit.intercept, "r": r}
    if fit.alpha is not None:
        arrays["alpha"] = fit.alpha
    save_npz_atomic(Path(target), arrays)
    return start, stop


def train(
    dataset: TrainingDataset,
    berg_dir: str | os.PathLike[str],
    config: TrainConfig | None = None,
    *,
    runner: Runner | None = None,
) -> TrainResult:
    """Train an encoding model of *dataset*'s subject and write it under *berg_dir*.

    Parameters
    ----------
    dataset : TrainingDataset
        :class:`~berg_train.datasets.nsd.NSDDataset` or
        :class:`~berg_train.datasets.things.ThingsDataset` (or another reader).
    berg_dir : path-like
        Root of the model files; the weights, metadata and accuracy figure are written in the
        reference layout (``encoding_models/modality-fmri/train_dataset-.../model-...``).
    config : TrainConfig, optional
    runner : Runner, optional
        Where the feature shards, PCA blocks and regression chunks run
        (:mod:`berg_train.runner`): this process (default) or a cluster
        (``berg_distributed.training.DaskRunner``); the files are the same.

    Returns
    -------
    TrainResult
    """
    import h5py
    from tqdm.auto import tqdm

    from berg_train import __version__
    from berg_train.features import chunk_cols
    from berg_train.figure import roi_summary, write_accuracy_figure
    from berg_train.metrics import explained_variance
    from berg_train.pca import PCAResult, fit_scaler_pca

    config = config or TrainConfig()
    backbone = resolve_backbone(config.backbone or dataset.default_backbone)
    model = config.model_name or backbone.name
    berg_dir = Path(berg_dir)
    work = Path(config.work_dir) if config.work_dir else _default_work_dir(berg_dir, dataset, model)
    work.mkdir(parents=True, exist_ok=True)
    show = config.show_progress
    timings: dict[str, float] = {}
    k = int(config.n_components)

    # 1. features -------------------------------------------------------------------------------
    feature_key = _hash(backbone.name, backbone.identity, dataset.fingerprint())
    features_path = feature_step(
        backbone, dataset.images, work, feature_key, config, runner, timings
    )

    # 2. scaler + PCA ---------------------------------------------------------------------------
    started = time.perf_counter()
    pca_key = _hash(feature_key, k)
    pca_path = work / f"pca-{pca_key}.npz"
    if pca_path.is_file():
        pca = PCAResult.load(pca_path)
    else:
        with h5py.File(features_path, "r", rdcc_nbytes=0) as h5:
            features = h5["features"]
            pca = fit_scaler_pca(
                features,
                dataset.n_fit,
                k,
                memory_bytes=config.memory_gb * 0.5e9,
                chunk_cols=chunk_cols(features),
                checkpoint=work / f"pca-{pca_key}.checkpoint.npz",
                show_progress=show,
                runner=runner,
            )
        pca.save(pca_path)
    timings["pca"] = time.perf_counter() - started
    release_memory()  # the PCA's blocks, before the regression's chunks

    # 3. regression, chunk by chunk -------------------------------------------------------------
    started = time.perf_counter()
    method = config.regression
    reg_key = _hash(
        pca_key,
        method,
        list(config.alphas) if method == "ridge" else None,
        config.cv_folds if method == "ridge" else None,
        config.seed,
    )
    reg_dir = work / f"regression-{method}-{reg_key}"
    reg_dir.mkdir(exist_ok=True)
    design = pca.scores[dataset.train_rows]
    test_design = pca.scores[dataset.test_rows].astype(np.float32)
    solver = make_solver(
        method,
        design,
        alphas=tuple(config.alphas),
        cv_folds=config.cv_folds,
        groups=dataset.train_groups,
        seed=config.seed,
    )
    chunk = _chunk_size(config, dataset, k)
    total = sum(size for _, size in dataset.outputs)
    chunks = [
        (
            output,
            start,
            min(size, start + chunk),
            reg_dir / f"{output}-{start:07d}-{min(size, start + chunk):07d}.npz",
        )
        for output, size in dataset.outputs
        for start in range(0, size, chunk)
    ]
    todo = [item for item in chunks if not item[3].is_file()]
    run = runner or SerialRunner()
    if todo:
        shared = (run.share(dataset), run.share(solver), run.share(test_design))
        tasks = [
            (*shared, output, start, stop, os.fspath(target))
            for output, start, stop, target in todo
        ]
    else:
        tasks = []
    with tqdm(
        total=total,
        initial=total - sum(stop - start for _, start, stop, _ in todo),
        desc=f"Regression ({method})",
        unit="col",
        unit_scale=True,
        disable=not show,
    ) as bar:
        for start, stop in run.map(fit_regression_chunk, tasks, label="regression"):
            bar.update(stop - start)
    timings["regression"] = time.perf_counter() - started
    release_memory()  # the regression's chunks, before the weights are assembled and written

    # 4. assemble, evaluate, write --------------------------------------------------------------
    started = time.perf_counter()
    heads: dict[str, dict[str, Any]] = {}
    evaluation: dict[str, dict[str, np.ndarray]] = {}
    for output, size in dataset.outputs:
        coef = np.empty((size, k), dtype=np.float32)
        intercept = np.empty(size, dtype=np.float32)
        r = np.empty(size, dtype=np.float64)
        alpha = np.empty(size) if method == "ridge" else None
        for start in range(0, size, chunk):
            stop = min(size, start + chunk)
            with np.load(reg_dir / f"{output}-{start:07d}-{stop:07d}.npz") as saved:
                coef[start:stop] = saved["coef"]
                intercept[start:stop] = saved["intercept"]
                r[start:stop] = saved["r"]
                if alpha is not None:
                    alpha[start:stop] = saved["alpha"]
        heads[output] = {"coef_": coef, "intercept_": intercept, "n_features_in_": k}
        nc = dataset.noise_ceiling(output)
        r2 = r**2
        evaluation[output] = {
            "correlation": r,
            "r2": r2,
            "noise_ceiling": nc,
            "explained_variance": explained_variance(r2, nc),
        }
        if alpha is not None:
            evaluation[output]["alpha"] = alpha
    info = {
        "berg_train_version": __version__,
        "simulated": bool(dataset.simulated),
        "dataset_root": str(dataset.root),
        "backbone": backbone.name,
        "backbone_identity": backbone.identity,
        "regression": method,
        "n_components": k,
        "pca": "exact (eigendecomposition of the Gram or covariance matrix)",
        "pca_random_state": 20200220,
        "alphas": np.asarray(config.alphas, dtype=np.float64) if method == "ridge" else None,
        "cv_folds": int(config.cv_folds) if method == "ridge" else None,
        "n_train_rows": len(dataset.train_rows),
        "n_test_images": len(dataset.test_rows),
        "test_repeats": float(dataset.test_repeats),
    }
    info = {key: value for key, value in info.items() if value is not None}
    weights_path = dataset.weights_path(berg_dir, model)
    metadata_path = dataset.metadata_path(berg_dir, model)
    figure_path = dataset.figure_path(berg_dir, model)
    _atomic_save_npy(weights_path, dataset.weights_dict(pca.scaler_param, pca.pca_param, heads))
    del heads
    _atomic_save_npy(metadata_path, dataset.metadata_dict(evaluation, info))
    rois = dataset.roi_table()
    title = (
        f"{dataset.dataset_id} subject {dataset.subject}, {backbone.name}, {method.upper()}, "
        f"{k} PCs: test accuracy per ROI"
    )
    write_accuracy_figure(evaluation, rois, figure_path, title=title, simulated=dataset.simulated)
    timings["write"] = time.perf_counter() - started
    if not config.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return TrainResult(
        weights_path=weights_path,
        metadata_path=metadata_path,
        figure_path=figure_path,
        work_dir=work,
        evaluation=evaluation,
        roi_summary=roi_summary(evaluation, rois),
        timings=timings,
        simulated=dataset.simulated,
    )
