"""Loading and running the NSD fsaverage encoding models (imports torch and torchvision).

Pipeline, per batch of images (see :mod:`berg_core.torchkit`): the weights' ImageNet transform
-> backbone node features flattened and concatenated -> standardise -> PCA -> float32 -> one
linear regression per hemisphere, all in float32 torch on the model's device.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torchvision

from berg_core import (
    EncodingModel,
    InvalidParameterError,
    LoadRequest,
    OutputWriter,
)
from berg_core.checks import Location
from berg_core.torchkit import (
    FeatureReadoutModel,
    LinearReadout,
    build_readout_model,
    build_seeded,
    load_pretrained,
    resolve_device,
    shared_backbone,
)
from berg_nsd.cards import N_VERTICES, SPECS, BackboneSpec
from berg_nsd.files import HEMIS, file_path, load_metadata, load_weights, require, roi_tables
from berg_nsd.selection import NSDSelection

__all__ = ["NSDEncodingModel", "build_backbone", "load"]


def _weights_enum(spec: BackboneSpec) -> Any:
    enum_name, member = spec.weights.split(".")
    return getattr(getattr(torchvision.models, enum_name), member)


def build_backbone(spec: BackboneSpec) -> torch.nn.Module:
    """The backbone of *spec* on the CPU, in eval mode.

    Untrained networks are built right after seeding torch's CPU generator with ``spec.seed``
    (the reference toolkit's weights, identical in every process; the caller's random state is
    left untouched). Pretrained ones are read from torchvision's cache.
    """
    builder = getattr(torchvision.models, spec.builder)
    if spec.pretrained:
        return load_pretrained(builder, _weights_enum(spec))
    assert spec.seed is not None
    return build_seeded(builder, spec.seed, weights=None)


class NSDEncodingModel(FeatureReadoutModel):
    """A loaded NSD fsaverage model: ``encode`` returns ``(lh, rh)``.

    Columns are the selected fsaverage vertices in ascending order (:meth:`column_indices`).

    Parameters
    ----------
    request : LoadRequest
        What was asked for.
    metadata : dict or None
        The subject's metadata if already read (for an ROI selection); read lazily otherwise.
    **parts
        ``preprocessor``, ``extractor``, ``readout``, ``device``, ``columns``, ``batch_size``, as
        for :class:`berg_core.torchkit.FeatureReadoutModel`.
    """

    def __init__(
        self, request: LoadRequest, *, metadata: dict[str, Any] | None, **parts: Any
    ) -> None:
        super().__init__(request, **parts)
        self._metadata = metadata

    def subject_metadata(self) -> dict[str, Any]:
        """The subject's metadata dict (``fmri``, ``encoding_models``), read on first use."""
        if self._metadata is None:
            self._metadata = load_metadata(self.card, self.request.berg_dir, self.subject)
        return copy.deepcopy(self._metadata)

    def output_writers(self) -> dict[str, OutputWriter]:
        """``.func.gii``: fsaverage GIFTI, one file per hemisphere, one data array per stimulus."""
        from berg_nsd.gifti import gifti_paths, write_gifti

        columns = self.columns()

        def write(
            responses: tuple[np.ndarray, ...], path: Any, reference: Any = None, force: bool = True
        ) -> list[Any]:
            if reference is not None:
                raise InvalidParameterError(
                    "--reference-image is for volumetric output; fsaverage GIFTI needs none"
                )
            return write_gifti((responses[0], responses[1]), columns, path, force=force)

        writer = OutputWriter(
            "fsaverage GIFTI, <name>_hemi-L.func.gii and <name>_hemi-R.func.gii", gifti_paths, write
        )
        return {".func.gii": writer}

    def close(self) -> None:
        """Free the backbone, the readout weights, cached device memory and the metadata."""
        self._metadata = None
        super().close()


def load(request: LoadRequest) -> EncodingModel:
    """Loader registered for every NSD fsaverage model id (called by ``get_encoding_model``).

    Parameters
    ----------
    request : LoadRequest
        Validated by berg: ``subject`` in 1..8, ``selection`` an :class:`NSDSelection`.

    Returns
    -------
    NSDEncodingModel

    Raises
    ------
    ModelLoadError
        A weights or metadata file is missing (the message says how to get it), unsafe or
        malformed, or pretrained backbone weights are missing from torchvision's cache.
    InvalidParameterError
        The device is not available, or the ROI is not defined for the subject.
    """
    spec = SPECS[request.model_id]
    card, berg_dir, subject = request.card, request.berg_dir, request.subject
    assert isinstance(subject, int)
    device = resolve_device(request.device)
    weights_path = require(card, berg_dir, subject, "weights")

    selection = request.selection if request.selection is not None else NSDSelection()
    assert isinstance(selection, NSDSelection)
    metadata: dict[str, Any] | None = None
    if selection.roi is not None:
        metadata = load_metadata(card, berg_dir, subject)
        tables = roi_tables(metadata, file_path(card, berg_dir, subject, "metadata"))
        vertices = selection.vertices(lambda: tables)
    else:
        vertices = selection.vertices()

    # the weights are checked against the card (dtype, shape) before the backbone is built
    weights = load_weights(card, berg_dir, subject)
    readout = LinearReadout.from_params(
        weights.pop("scaler_param"),
        weights.pop("pca_param"),
        {
            hemisphere: (weights.pop(f"{hemisphere}_reg_param"), vertices[hemisphere])
            for hemisphere in HEMIS
        },
        device,
        source=Location(weights_path, "weights"),
        feature_dim=spec.feature_dim,
        n_rows=dict.fromkeys(HEMIS, N_VERTICES),
    )
    del weights
    return build_readout_model(
        request,
        backbone=shared_backbone(  # one network per process for every subject and ROI
            getattr(torchvision.models, spec.builder),
            weights=_weights_enum(spec) if spec.pretrained else None,
            seed=None if spec.pretrained else spec.seed,
        ),
        nodes=spec.nodes,
        preprocessing=_weights_enum(spec),
        readout=readout,
        columns=vertices,
        channels_last=spec.channels_last,
        model_class=NSDEncodingModel,
        metadata=metadata,
    )
