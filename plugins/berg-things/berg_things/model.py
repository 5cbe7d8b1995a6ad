"""``fmri-things_fmri_1-vit_b_32``: ViT-B/32 block outputs -> scaler -> PCA -> regression."""

from __future__ import annotations

from typing import Any

import numpy as np

from berg_core import LoadRequest, OutputWriter
from berg_core.checks import Location, require_mapping
from berg_core.files import load_model_file, require_file
from berg_core.reference import VIT_B_32_NODES
from berg_core.torchkit import (
    FeatureReadoutModel,
    LinearReadout,
    build_readout_model,
    load_pretrained,
    resolve_device,
)
from berg_things.card import N_FEATURES, N_VOXELS, WEIGHTS_FILE, model_file
from berg_things.plugin import load_metadata
from berg_things.selection import ThingsSelection

#: The output of each of the 12 encoder blocks, (B, 50, 768) each: N_FEATURES (460,800) in all.


class ThingsModel(FeatureReadoutModel):
    """The loaded THINGS-fMRI1 encoder; see :func:`load`."""

    def __init__(
        self,
        request: LoadRequest,
        *,
        metadata: dict[str, Any],
        roi_columns: dict[str, list[int]],
        **parts: Any,
    ) -> None:
        super().__init__(request, **parts)
        self._metadata = metadata
        self._roi_columns = roi_columns

    def subject_metadata(self) -> dict[str, Any]:
        """The subject's metadata dict (``fmri``, ``encoding_model``, ``prf``, ``roi``)."""
        return self._metadata

    def output_aux_coords(self) -> dict[str, dict[str, tuple[tuple[str, ...], np.ndarray]]]:
        """``voxel_xyz``: the (i, j, k) volume position of every voxel, ``(n_voxels, 3)`` int64.

        Rows of ``metadata['fmri']['voxel_coords']`` at the selected voxels' indices; the core
        applies any dim picks along ``voxel``.
        """
        xyz = np.asarray(self._metadata["fmri"]["voxel_coords"], dtype=np.int64)
        voxels = np.asarray(self.column_indices()["responses"], dtype=np.int64)
        return {"responses": {"voxel_xyz": (("voxel",), xyz[voxels])}}

    def output_writers(self) -> dict[str, OutputWriter]:
        """``.nii.gz`` / ``.nii``: a 4-D NIfTI volume, one volume per stimulus, NaN elsewhere."""
        from berg_things.volume import write_nifti

        coords = self._metadata["fmri"]["voxel_coords"]
        columns = self.columns()["responses"]

        def write(
            responses: tuple[Any, ...], path: Any, reference: Any = None, force: bool = True
        ) -> list[Any]:
            return [
                write_nifti(responses[0], columns, coords, path, reference=reference, force=force)
            ]

        writer = OutputWriter("4-D NIfTI volume, one volume per stimulus", lambda p: [p], write)
        return {".nii.gz": writer, ".nii": writer}

    def response_metadata(self) -> dict[str, Any]:
        """Subject metadata plus ``output`` (column voxel indices and ROI column ranges)."""
        metadata = super().response_metadata()
        metadata["output"]["roi_columns"] = {k: list(v) for k, v in self._roi_columns.items()}
        return metadata


def load(request: LoadRequest) -> ThingsModel:
    """Build the model for ``request`` (the loader registered for berg's ``register_models``).

    Raises
    ------
    ModelLoadError
        Missing or unsafe weights/metadata file, a key, dtype or shape that does not match the
        card (checked before use, naming the file and key), or missing ViT-B/32 weights in
        torchvision's cache.
    """
    import torchvision

    subject = request.subject
    assert isinstance(subject, int)
    weights_key = WEIGHTS_FILE.format(subject=subject)
    require_file(request.berg_dir, weights_key, request.model_id, subject)
    metadata = load_metadata(request.card, request.berg_dir, subject)  # checked there
    selection = request.selection if request.selection is not None else ThingsSelection()
    assert isinstance(selection, ThingsSelection)
    voxels, roi_columns = selection.resolve(metadata["roi"])

    device = resolve_device(request.device)
    weights = load_model_file(request.berg_dir, weights_key, request.model_id, subject)
    root = Location(model_file(request.berg_dir, WEIGHTS_FILE, subject), "weights")
    require_mapping(weights, root, ("scaler_param", "pca_param", "reg_param"))
    selected = None if selection.roi is None and selection.voxel_index is None else voxels
    readout = LinearReadout.from_params(
        weights["scaler_param"],
        weights["pca_param"],
        {"responses": (weights["reg_param"], selected)},
        device,
        source=root,
        reg_keys={"responses": "reg_param"},
        feature_dim=N_FEATURES,
        n_rows={"responses": N_VOXELS},
    )
    del weights

    vit_weights = torchvision.models.ViT_B_32_Weights.IMAGENET1K_V1
    return build_readout_model(
        request,
        backbone=load_pretrained(torchvision.models.vit_b_32, vit_weights),
        nodes=VIT_B_32_NODES,
        preprocessing=vit_weights,
        readout=readout,
        columns={"responses": voxels},
        model_class=ThingsModel,
        metadata=metadata,
        roi_columns=roi_columns,
    )
