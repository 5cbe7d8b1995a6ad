"""Training a FactorTopy encoder: a plain torch loop over cached backbone tokens.

::

    from berg_factortopy.config import TrainConfig
    from berg_factortopy.data import TrainingData
    from berg_factortopy.train import train

    data = TrainingData.from_algonauts("/data/algonauts2023/subj01")
    result = train(data, "/opt/freesurfer/subjects/fsaverage/surf", "ckpt/subj01",
                   TrainConfig(backbone="vit_b_16", epochs=20))
    print(result.best_epoch, result.val_r2_mean)

Each epoch visits the training images in a new random order; each step predicts every vertex and
minimises the mean squared error plus the selector regulariser
(:func:`berg_factortopy.network.selector_penalty`) weighted by ``reg_weight``, decaying linearly
to zero over ``reg_decay_steps`` steps. After each epoch the validation R² of every vertex is
computed; the weights of the best epoch (highest mean R²) become ``model.pt``, and the latest
state (weights, optimiser, shuffling generator) ``training_state.pt``, from which
``train(..., resume=True)`` continues exactly where an interrupted run stopped.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional

from berg_core import InvalidParameterError
from berg_core.torchkit import Preprocessor, empty_device_cache, resolve_device
from berg_factortopy import __version__
from berg_factortopy.backbones import build_backbone, transform_of
from berg_factortopy.checkpoint import load_tensors, save_atomic
from berg_factortopy.config import TrainConfig
from berg_factortopy.data import TrainingData, vertex_coords
from berg_factortopy.layout import (
    ACCURACY_FILE,
    CONFIG_FILE,
    FORMAT,
    METRICS_FILE,
    MODEL_ID,
    STATE_FILE,
    WEIGHTS_FILE,
    preprocessing_of,
    read_config,
)
from berg_factortopy.network import FactorTopy, selector_penalty
from berg_factortopy.threads import torch_threads
from berg_factortopy.tokens import (
    TokenStore,
    build_token_store,
    images_fingerprint,
    token_computer,
    tokens_to,
)

__all__ = ["TrainResult", "r2_score", "train"]


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes
    ----------
    folder : Path
        The checkpoint folder.
    best_epoch : int
        Epoch (1-based) of the saved weights.
    val_r2 : dict of str to numpy.ndarray
        Validation R² of each ``lh`` / ``rh`` vertex at the best epoch.
    val_indices : numpy.ndarray
        The validation images (indices into the training data).
    val_predictions : numpy.ndarray
        ``(n_val, V)`` predictions of the best epoch for them, left hemisphere first.
    history : list of dict
        One record per epoch (as in ``metrics.json``).
    """

    folder: Path
    best_epoch: int
    val_r2: dict[str, np.ndarray]
    val_indices: np.ndarray
    val_predictions: np.ndarray
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def val_r2_mean(self) -> float:
        """Mean validation R² over all vertices at the best epoch."""
        return float(np.nanmean(np.concatenate([self.val_r2["lh"], self.val_r2["rh"]])))


def r2_score(targets: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Coefficient of determination of each column: ``1 - SS_res / SS_tot`` (NaN if constant)."""
    targets = np.asarray(targets, dtype=np.float64)
    residual = ((targets - predictions) ** 2).sum(axis=0)
    total = ((targets - targets.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = 1.0 - residual / total
    r2[total == 0] = np.nan
    return r2.astype(np.float32)


def _split(n: int, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(config.seed).permutation(n)
    n_val = min(n - 1, max(1, round(n * config.val_fraction)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


@torch.no_grad()
def _fit_standardization(
    network: FactorTopy, store: TokenStore, indices: np.ndarray, chunk: int = 32
) -> None:
    """Set every channel's mean and std from the tokens of images *indices*."""
    sums: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor, int]] = {}
    for start in range(0, len(indices), chunk):
        local, global_ = tokens_to(store.get(indices[start : start + chunk]), torch.device("cpu"))
        for kind, tokens in (("local", local), ("global", global_)):
            for i, name in enumerate(network.layers):
                x = tokens[name].double()
                dims = [d for d in range(x.ndim) if d != 1]
                count = x.numel() // x.shape[1]
                s, q, c = sums.get((kind, i), (0.0, 0.0, 0))
                sums[(kind, i)] = (s + x.sum(dims), q + (x * x).sum(dims), c + count)
    for (kind, i), (s, q, c) in sums.items():
        mean = s / c
        std = (q / c - mean * mean).clamp_min(0).sqrt()
        norm = (network.local_norm if kind == "local" else network.global_norm)[i]
        norm.mean.copy_(mean.float())
        norm.std.copy_(std.float().clamp_min(1e-6))


@torch.no_grad()
def _predict(
    network: FactorTopy,
    store: TokenStore,
    indices: np.ndarray,
    device: torch.device,
    batch_size: int,
) -> np.ndarray:
    selection = network.select()
    out = np.empty((len(indices), network.n_vertices), dtype=np.float32)
    for start in range(0, len(indices), batch_size):
        index = indices[start : start + batch_size]
        maps, globals_ = network.reduce(*tokens_to(store.get(index), device))
        pred = network.readout(maps, globals_, selection, network.weight, network.bias)
        out[start : start + len(index)] = pred.cpu().numpy()
    return out


def _write_json(path: Path, value: Any) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(partial, path)


def train(
    data: TrainingData,
    spheres: str | os.PathLike[str] | Mapping[str, Any],
    out: str | os.PathLike[str],
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    show_progress: bool = True,
) -> TrainResult:
    """Train a FactorTopy encoder on *data* and write its checkpoint folder *out*.

    Parameters
    ----------
    data : TrainingData
        Images and responses (e.g. :meth:`TrainingData.from_algonauts`).
    spheres : path-like or mapping
        FreeSurfer's fsaverage ``lh.sphere`` / ``rh.sphere``: their folder, or ``{"lh": ...,
        "rh": ...}`` with paths or ``(163842, 3)`` coordinates
        (see :func:`berg_factortopy.data.vertex_coords`).
    out : path-like
        Checkpoint folder (created; must not hold a checkpoint unless *resume*).
    config : TrainConfig, optional
        Settings (default: :class:`TrainConfig` ``()``). When resuming, only its runtime settings
        (epochs, device, threads, cache) are used; the rest come from the checkpoint.
    resume : bool
        Continue the run in *out* from its last completed epoch, up to ``config.epochs``.
        ``config.threads`` (torch's threads during the call, restored after) is this call's.
    show_progress : bool
        Progress bars for token caching and each epoch.

    Returns
    -------
    TrainResult

    Raises
    ------
    InvalidParameterError
        *out* holds a checkpoint and *resume* is false, or there is nothing to resume, or the
        data differ from those of the run being resumed.
    """
    with torch_threads(config.threads if config is not None else None):
        return _train(data, spheres, out, config, resume=resume, show_progress=show_progress)


def _train(
    data: TrainingData,
    spheres: str | os.PathLike[str] | Mapping[str, Any],
    out: str | os.PathLike[str],
    config: TrainConfig | None,
    *,
    resume: bool,
    show_progress: bool,
) -> TrainResult:
    """:func:`train` under its thread setting."""
    from tqdm.auto import tqdm

    out = Path(out)
    state: dict[str, Any] | None = None
    if resume:
        if not (out / STATE_FILE).is_file():
            raise InvalidParameterError(f"nothing to resume: {out / STATE_FILE} does not exist")
        stored = read_config(out)
        config = TrainConfig.from_dict(stored["train"]).resumed(config)
        state = load_tensors(out / STATE_FILE)
        for hemi in ("lh", "rh"):
            saved = state[f"{hemi}_vertices"].numpy()
            if not np.array_equal(saved, getattr(data, f"{hemi}_vertices")):
                raise InvalidParameterError(
                    f"cannot resume {out}: the data's {hemi} vertices differ from the checkpoint's"
                )
        if stored["data"]["n_images"] != len(data) or stored["subject"] != data.subject:
            raise InvalidParameterError(
                f"cannot resume {out}: it was trained on {stored['data']['n_images']} images of "
                f"subject {stored['subject']}, not {len(data)} of subject {data.subject}"
            )
    else:
        if (out / CONFIG_FILE).exists() or (out / STATE_FILE).exists():
            raise InvalidParameterError(
                f"{out} already holds a FactorTopy checkpoint; resume it (resume=True, "
                f"--resume) or choose another folder"
            )
        config = config or TrainConfig()
    assert config is not None
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)

    backbone = build_backbone(config.backbone, config.backbone_kwargs)
    if isinstance(backbone, torch.nn.Module):
        backbone.to(device)
    # the whole image, resized to the backbone's input size: the selectors' locations are where
    # in the image a vertex looks, so nothing may be cropped away (a resumed run keeps its own)
    preprocessing = preprocessing_of(stored) if resume else "whole-image"
    preprocessor = Preprocessor(
        transform_of(backbone, whole_image=preprocessing == "whole-image"), device
    )
    train_idx, val_idx = _split(len(data), config)
    coords = torch.from_numpy(vertex_coords(spheres, data.lh_vertices, data.rh_vertices))
    store = build_token_store(
        token_computer(backbone, preprocessor, to_cpu=config.cache != "none"),
        data.images,
        mode=config.cache,
        dtype=config.cache_dtype,
        path=Path(config.cache_path) if config.cache_path else out / "token_cache.h5",
        fingerprint={
            "backbone": config.backbone,
            "backbone_kwargs": config.backbone_kwargs,
            "preprocessing": preprocessing,
            "images": images_fingerprint(data.images),
        },
        ram_bytes=None if config.cache_ram_gb is None else int(config.cache_ram_gb * 2**30),
        batch_size=max(config.batch_size, 32),
        pin_memory=device.type == "cuda",
        show_progress=show_progress,
    )
    layers = store.layers
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        network = FactorTopy(
            layers,
            [store.local_shapes[name][0] for name in layers],
            [store.global_shapes[name][0] for name in layers],
            coords,
            bottleneck=config.bottleneck,
            hidden=config.hidden,
            n_frequencies=config.n_frequencies,
        )
    if state is not None:
        network.load_state_dict(state["state_dict"])
    else:
        _fit_standardization(network, store, train_idx[: config.stats_images])
    network.to(device)
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    generator = torch.Generator().manual_seed(config.seed)
    step, first_epoch, best, history = 0, 0, -np.inf, []
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        step, first_epoch = int(state["step"]), int(state["epoch"])
        best, history = float(state["best"]), list(state["history"])

    config_json = {
        "format": FORMAT,
        "model_id": MODEL_ID,
        "subject": int(data.subject),
        "layers": list(layers),
        "preprocessing": preprocessing,
        "local_channels": [store.local_shapes[name][0] for name in layers],
        "global_channels": [store.global_shapes[name][0] for name in layers],
        "local_shapes": {name: list(store.local_shapes[name]) for name in layers},
        "n_lh": data.n_lh,
        "n_rh": data.n_rh,
        "train": config.to_dict(),
        "data": {
            "source": data.source,
            "n_images": len(data),
            "n_train": len(train_idx),
            "n_val": len(val_idx),
        },
        "berg_factortopy": __version__,
    }
    vertex_tensors = {
        "lh_vertices": torch.from_numpy(data.lh_vertices),
        "rh_vertices": torch.from_numpy(data.rh_vertices),
    }
    val_targets = data.targets(val_idx)
    best_predictions: np.ndarray | None = None
    best_r2: np.ndarray | None = None
    if first_epoch > 0 and (out / WEIGHTS_FILE).is_file():
        best_epoch = int(read_config(out).get("best_epoch", 0))
    else:
        best_epoch = 0
    try:
        for epoch in range(first_epoch, config.epochs):
            started = time.perf_counter()
            order = torch.randperm(len(train_idx), generator=generator).numpy()
            network.train()
            total, seen = 0.0, 0
            with tqdm(
                total=len(train_idx),
                desc=f"Epoch {epoch + 1}/{config.epochs}",
                unit="img",
                disable=not show_progress,
            ) as bar:
                for start in range(0, len(order), config.batch_size):
                    index = np.sort(train_idx[order[start : start + config.batch_size]])
                    local, global_ = tokens_to(store.get(index), device)
                    target = torch.from_numpy(data.targets(index)).to(device)
                    prediction, selection = network(local, global_)
                    loss = functional.mse_loss(prediction, target)
                    weight = _reg_weight(config, step)
                    objective = loss + weight * selector_penalty(selection) if weight else loss
                    optimizer.zero_grad(set_to_none=True)
                    objective.backward()
                    optimizer.step()
                    step += 1
                    total += loss.item() * len(index)
                    seen += len(index)
                    bar.set_postfix(mse=f"{total / seen:.4f}", reg=f"{weight:.3g}")
                    bar.update(len(index))
            network.eval()
            predictions = _predict(network, store, val_idx, device, max(config.batch_size, 32))
            r2 = r2_score(val_targets, predictions)
            record = {
                "epoch": epoch + 1,
                "train_mse": total / max(seen, 1),
                "val_r2_mean": float(np.nanmean(r2)),
                "val_r2_median": float(np.nanmedian(r2)),
                "reg_weight": _reg_weight(config, step),
                "steps": step,
                "seconds": time.perf_counter() - started,
            }
            history.append(record)
            if show_progress:
                tqdm.write(
                    f"epoch {epoch + 1}: train MSE {record['train_mse']:.4f}, validation R² "
                    f"mean {record['val_r2_mean']:.4f}, median {record['val_r2_median']:.4f}"
                )
            state_dict = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
            score = record["val_r2_mean"] if np.isfinite(record["val_r2_mean"]) else -np.inf
            if score > best or best_epoch == 0:
                best, best_epoch = score, epoch + 1
                best_predictions, best_r2 = predictions, r2
                save_atomic(
                    {"state_dict": state_dict, "epoch": epoch + 1, **vertex_tensors},
                    out / WEIGHTS_FILE,
                )
                np.savez(
                    out / ACCURACY_FILE,
                    lh_vertices=data.lh_vertices,
                    rh_vertices=data.rh_vertices,
                    lh_r2_val=r2[: data.n_lh],
                    rh_r2_val=r2[data.n_lh :],
                )
                _write_json(
                    out / CONFIG_FILE,
                    {
                        **config_json,
                        "best_epoch": best_epoch,
                        "val_r2_mean": record["val_r2_mean"],
                        "val_r2_median": record["val_r2_median"],
                    },
                )
            save_atomic(
                {
                    "state_dict": state_dict,
                    "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(),
                    "epoch": epoch + 1,
                    "step": step,
                    "best": best,
                    "history": history,
                    **vertex_tensors,
                },
                out / STATE_FILE,
            )
            _write_json(out / METRICS_FILE, history)
        if best_predictions is None:  # resumed after the best epoch: predict with its weights
            network.load_state_dict(load_tensors(out / WEIGHTS_FILE)["state_dict"])
            network.eval()
            best_predictions = _predict(network, store, val_idx, device, max(config.batch_size, 32))
            best_r2 = r2_score(val_targets, best_predictions)
    finally:
        store.close()
        if device.type != "cpu":
            empty_device_cache(device)
    assert best_r2 is not None
    return TrainResult(
        folder=out,
        best_epoch=best_epoch,
        val_r2={"lh": best_r2[: data.n_lh], "rh": best_r2[data.n_lh :]},
        val_indices=val_idx,
        val_predictions=best_predictions,
        history=history,
    )


def _reg_weight(config: TrainConfig, step: int) -> float:
    """Weight of the selector regulariser at optimisation step *step*."""
    if config.reg_decay_steps == 0:
        return 0.0
    return config.reg_weight * max(0.0, 1.0 - step / config.reg_decay_steps)
