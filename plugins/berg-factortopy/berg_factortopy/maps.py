"""Brain maps of a trained FactorTopy encoder: what each vertex reads from the network.

For every trained vertex the selectors give a mixture over layers, a sampling location and a
local/global scale; :func:`compute_maps` turns them into per-vertex maps:

=================  =======================================================================
``layer_argmax``   index (0-based, in the order of ``config.json``'s ``layers``) of the layer
                   with the largest weight
``layer_expected`` weight-averaged layer index ``sum_l p_l * l`` (0 .. L-1)
``scale``          weight of the global token: 0 reads the local token at the location, 1 the
                   layer's global token
``location_x``     horizontal sampling location, -1 (left edge of the image) .. 1 (right edge)
``location_y``     vertical sampling location, -1 (top) .. 1 (bottom)
``val_r2``         validation R² of the vertex
=================  =======================================================================

:func:`write_maps` saves each as a pair of fsaverage GIFTI files (``<map>_hemi-L.func.gii``,
``<map>_hemi-R.func.gii``: 163,842 values, NaN at untrained vertices, written by berg-nsd's GIFTI
writer) and draws it as ``<map>.png``: lateral, medial and ventral views of both hemispheres on
the inflated fsaverage5 surface that nilearn ships (drawn offline; the first 10,242 fsaverage
vertices are the fsaverage5 vertices). ``maps.json`` lists the files and the layer names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from berg_nsd.fsaverage import N_VERTICES

from berg_core import InvalidParameterError
from berg_factortopy.checkpoint import Checkpoint, load_checkpoint
from berg_factortopy.layout import ACCURACY_FILE, read_accuracy

__all__ = ["FSAVERAGE5_VERTICES", "MAPS", "compute_maps", "draw_map", "map_paths", "write_maps"]

#: Vertices per hemisphere of fsaverage5 (the first vertices of fsaverage).
FSAVERAGE5_VERTICES = 10_242
#: Names of the maps, in the order they are written.
MAPS = ("layer_argmax", "layer_expected", "scale", "location_x", "location_y", "val_r2")
_VIEWS = ("lateral", "medial", "ventral")
_TITLES = {
    "layer_argmax": "Layer with the largest weight",
    "layer_expected": "Expected layer index",
    "scale": "Scale: local token (0) to global token (1)",
    "location_x": "Sampling location x: left (-1) to right (1)",
    "location_y": "Sampling location y: top (-1) to bottom (1)",
    "val_r2": "Validation R²",
}


def compute_maps(checkpoint: Checkpoint) -> dict[str, np.ndarray]:
    """Per-vertex maps of a checkpoint (see the module docstring).

    Returns
    -------
    dict of str to numpy.ndarray
        Each ``(V,)`` float32 over the trained vertices, left hemisphere first (``val_r2`` only
        when the checkpoint has ``accuracy.npz``).
    """
    with torch.no_grad():
        selection = checkpoint.network.select()
    layer = selection.layer.numpy()
    location = selection.location.numpy()
    maps = {
        "layer_argmax": layer.argmax(axis=1).astype(np.float32),
        "layer_expected": (layer * np.arange(layer.shape[1])).sum(axis=1).astype(np.float32),
        "scale": selection.scale.numpy().astype(np.float32),
        "location_x": location[:, 0].astype(np.float32),
        "location_y": location[:, 1].astype(np.float32),
    }
    if (checkpoint.folder / ACCURACY_FILE).is_file():
        accuracy = read_accuracy(checkpoint.folder)
        maps["val_r2"] = np.concatenate([accuracy["lh_r2_val"], accuracy["rh_r2_val"]])
    return maps


def map_paths(out: str | os.PathLike[str], name: str) -> dict[str, Path]:
    """Files of map *name* in *out*: ``lh`` / ``rh`` GIFTI and ``png``."""
    from berg_nsd.gifti import gifti_paths

    lh, rh = gifti_paths(Path(out) / f"{name}.func.gii")
    return {"lh": lh, "rh": rh, "png": Path(out) / f"{name}.png"}


def _style(name: str, layers: Sequence[str]) -> dict[str, Any]:
    """Colour map, range and tick labels of a map."""
    top = len(layers) - 1
    if name == "layer_argmax":
        import matplotlib as mpl
        from matplotlib.colors import ListedColormap

        base = mpl.colormaps["tab10" if len(layers) <= 10 else "tab20"]
        colors = [base(i % base.N) for i in range(len(layers))]
        return {"cmap": ListedColormap(colors), "vmin": -0.5, "vmax": top + 0.5, "labels": layers}
    if name == "layer_expected":
        return {"cmap": "viridis", "vmin": 0.0, "vmax": float(max(top, 1)), "labels": layers}
    if name == "scale":
        return {"cmap": "cividis", "vmin": 0.0, "vmax": 1.0}
    if name in ("location_x", "location_y"):
        return {"cmap": "coolwarm", "vmin": -1.0, "vmax": 1.0}
    return {"cmap": "hot", "vmin": 0.0, "vmax": 1.0}


def draw_map(
    values: dict[str, np.ndarray],
    path: str | os.PathLike[str],
    *,
    title: str,
    cmap: Any,
    vmin: float,
    vmax: float,
    labels: Sequence[str] | None = None,
) -> Path:
    """Draw a map on inflated fsaverage5: lateral, medial, ventral views of both hemispheres.

    Parameters
    ----------
    values : dict
        ``{"lh": ..., "rh": ...}``, each ``(163842,)`` (fsaverage) or ``(10242,)`` values, NaN
        where there is nothing to show (drawn as the grey, sulcal-depth shaded surface).
    path : path-like
        PNG file to write.
    title : str
    cmap : str or matplotlib colormap
    vmin, vmax : float
        Colour range.
    labels : sequence of str, optional
        Tick labels at 0, 1, ... on the colour bar (layer names).

    Returns
    -------
    Path
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from nilearn import datasets, plotting

    mesh = datasets.fetch_surf_fsaverage("fsaverage5")
    figure = plt.figure(figsize=(12, 6.4))
    grid = figure.add_gridspec(3, 3, height_ratios=[1, 1, 0.08], hspace=0.02, wspace=0.0)
    for row, (hemi, side) in enumerate((("lh", "left"), ("rh", "right"))):
        data = np.asarray(values[hemi], dtype=np.float64)[:FSAVERAGE5_VERTICES]
        for col, view in enumerate(_VIEWS):
            axes = figure.add_subplot(grid[row, col], projection="3d")
            plotting.plot_surf(
                mesh[f"infl_{side}"],
                data,
                bg_map=mesh[f"sulc_{side}"],
                hemi=side,
                view=view,
                engine="matplotlib",
                cmap=cmap,
                vmin=vmin,
                vmax=vmax,
                colorbar=False,
                avg_method="median",
                axes=axes,
                figure=figure,
            )
            axes.set_box_aspect(None, zoom=1.45)  # nilearn leaves wide margins around the mesh
            axes.set_title(f"{'left' if hemi == 'lh' else 'right'} {view}", fontsize=9, y=0.95)
    bar = figure.add_subplot(grid[2, :])
    mappable = ScalarMappable(norm=Normalize(vmin, vmax), cmap=cmap)
    colorbar = figure.colorbar(mappable, cax=bar, orientation="horizontal")
    if labels is not None:
        step = max(1, len(labels) // 12)
        ticks = list(range(0, len(labels), step))
        colorbar.set_ticks(ticks)
        colorbar.set_ticklabels([labels[i] for i in ticks], fontsize=7)
    figure.suptitle(title)
    path = Path(path)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def write_maps(
    checkpoint: str | os.PathLike[str] | Checkpoint,
    out: str | os.PathLike[str],
    *,
    figures: bool = True,
    force: bool = False,
) -> list[Path]:
    """Write every map of a checkpoint as fsaverage GIFTI files and PNG figures.

    Parameters
    ----------
    checkpoint : path-like or Checkpoint
        A checkpoint folder (or one already loaded).
    out : path-like
        Folder for the maps (created).
    figures : bool
        Also draw the PNG figures (needs nilearn and matplotlib).
    force : bool
        Overwrite existing files.

    Returns
    -------
    list of Path
        The files written (``maps.json`` last).

    Raises
    ------
    InvalidParameterError
        A file exists and *force* is false.
    """
    from berg_nsd.gifti import write_gifti

    if not isinstance(checkpoint, Checkpoint):
        checkpoint = load_checkpoint(checkpoint)
    out = Path(out)
    maps = compute_maps(checkpoint)
    layers = list(checkpoint.config["layers"])
    targets = [out / "maps.json"]
    for name in maps:
        targets += [p for key, p in map_paths(out, name).items() if figures or key != "png"]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not force:
        raise InvalidParameterError(
            f"{existing[0]} exists ({len(existing)} map files in {out}); pass --force to overwrite"
        )
    out.mkdir(parents=True, exist_ok=True)
    n_lh = len(checkpoint.vertices["lh"])
    written: list[Path] = []
    for name, values in maps.items():
        paths = map_paths(out, name)
        responses = (values[None, :n_lh], values[None, n_lh:])
        written += write_gifti(responses, checkpoint.vertices, out / f"{name}.func.gii")
        if figures:
            full = {
                hemi: _full(part, checkpoint.vertices[hemi])
                for hemi, part in (("lh", values[:n_lh]), ("rh", values[n_lh:]))
            }
            style = _style(name, layers)
            written.append(draw_map(full, paths["png"], title=_TITLES[name], **style))
    index = {
        "checkpoint": str(checkpoint.folder),
        "subject": checkpoint.subject,
        "epoch": checkpoint.epoch,
        "layers": layers,
        "maps": {
            name: {
                "description": _TITLES[name],
                "files": [p.name for k, p in map_paths(out, name).items() if figures or k != "png"],
            }
            for name in maps
        },
    }
    (out / "maps.json").write_text(json.dumps(index, indent=2) + "\n")
    written.append(out / "maps.json")
    return written


def _full(values: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    full = np.full(N_VERTICES, np.nan, dtype=np.float32)
    full[vertices] = values
    return full
