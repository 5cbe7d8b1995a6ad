"""``fmri-nsd_fsaverage-factortopy`` as a berg encoding model: a trained checkpoint, loaded.

The selectors depend only on the vertices, so they are evaluated once when the model is loaded,
for the selected vertices only; encoding a batch then costs the backbone, the channel bottleneck
and one bilinear sample per layer and vertex (computed in chunks of vertices, so memory stays
bounded for all 327,684 fsaverage vertices).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from berg_nsd.fsaverage import file_path, load_metadata, roi_tables
from berg_nsd.selection import NSDSelection

from berg_core import EncodingModel, InvalidParameterError, LoadRequest, OutputWriter
from berg_core.torchkit import Preprocessor, default_batch_size, empty_device_cache, resolve_device
from berg_factortopy.backbones import build_backbone, check_tokens, transform_of
from berg_factortopy.checkpoint import Checkpoint, load_checkpoint
from berg_factortopy.layout import (
    NSD_METADATA_CARD,
    checkpoint_folder,
    preprocessing_of,
    subject_metadata,
)
from berg_factortopy.network import FactorTopy, Selection
from berg_factortopy.threads import torch_threads

if TYPE_CHECKING:
    from berg_core.stimulus import Stimulus

__all__ = ["FactorTopyEncodingModel", "load"]

#: Values of one ``(B, D, vertices)`` intermediate computed at once while encoding.
CHUNK_VALUES = 1 << 24


class FactorTopyEncodingModel(EncodingModel):
    """A trained FactorTopy encoder: ``encode`` returns ``(lh, rh)`` for the selected vertices.

    Parameters
    ----------
    request : LoadRequest
    checkpoint : Checkpoint
    rows : numpy.ndarray
        Rows of the network (its vertices, left hemisphere first) to compute, in output order.
    columns : dict of str to numpy.ndarray
        fsaverage vertex of each output column, per hemisphere.
    backbone : object
        With ``get_tokens``, on *device*.
    device : torch.device
    batch_size : int, optional
    """

    def __init__(
        self,
        request: LoadRequest,
        *,
        checkpoint: Checkpoint,
        rows: np.ndarray,
        columns: dict[str, np.ndarray],
        backbone: Any,
        device: torch.device,
    ) -> None:
        super().__init__(request)
        self.checkpoint_dir = checkpoint.folder
        self.device = device
        self.batch_size = request.batch_size or default_batch_size(device)
        self._columns = columns
        self._sizes = (len(columns["lh"]), len(columns["rh"]))
        network = checkpoint.network
        with torch.no_grad():
            index = torch.from_numpy(rows)
            self.selection: Selection = network.select(index).detach()
            self.weight = network.weight.detach()[index].to(device)
            self.bias = network.bias.detach()[index].to(device)
        self.selection = Selection(
            self.selection.layer.to(device),
            self.selection.location.to(device),
            self.selection.scale.to(device),
        )
        # only the token path is needed on the device: selectors and readout are precomputed
        self.network: FactorTopy = network.to(device)
        self.backbone = backbone
        whole = preprocessing_of(checkpoint.config) == "whole-image"
        self.preprocessor = Preprocessor(transform_of(backbone, whole_image=whole), device)
        self._metadata: dict[str, Any] | None = None

    def output_sizes(self) -> tuple[int, ...]:
        """Number of selected vertices of each hemisphere."""
        return self._sizes

    def column_indices(self) -> dict[str, np.ndarray]:
        """fsaverage vertex of every column, per hemisphere."""
        return {name: index.copy() for name, index in self._columns.items()}

    def subject_metadata(self) -> dict[str, Any]:
        """NSD's ``fmri`` metadata of the subject (``{}`` if berg_dir lacks the NSD file) and the
        checkpoint's validation R² (``encoding_models``)."""
        if self._metadata is None:
            self._metadata = subject_metadata(
                self.request.berg_dir, int(self.subject), self.checkpoint_dir, require_nsd=False
            )
        return copy.deepcopy(self._metadata)

    def output_writers(self) -> dict[str, OutputWriter]:
        """``.func.gii``: two fsaverage GIFTI files, one data array per stimulus, NaN elsewhere."""
        from berg_nsd.gifti import gifti_paths, write_gifti

        columns = self.columns()

        def write(
            responses: tuple[Any, ...], path: Any, reference: Any = None, force: bool = True
        ) -> list[Path]:
            return write_gifti(responses, columns, path, force=force)

        writer = OutputWriter("fsaverage GIFTI, one file per hemisphere", gifti_paths, write)
        return {".func.gii": writer}

    def _responses(self, batch: Any) -> torch.Tensor:
        """``(B, V_selected)`` responses of one stimulus batch (under inference mode)."""
        local, global_ = check_tokens(self.backbone.get_tokens(self.preprocessor(batch)))
        maps, globals_ = self.network.reduce(local, global_)
        rows, dim = globals_.shape[0], globals_.shape[1]
        total = self.selection.location.shape[0]
        out = torch.empty((rows, total), dtype=torch.float32, device=self.device)
        chunk = max(1, CHUNK_VALUES // max(1, rows * dim))
        sel = self.selection
        for start in range(0, total, chunk):
            part = slice(start, min(total, start + chunk))
            out[:, part] = FactorTopy.readout(
                maps,
                globals_,
                Selection(sel.layer[part], sel.location[part], sel.scale[part]),
                self.weight[part],
                self.bias[part],
            )
        return out

    def encode_batches(self, stimulus: Stimulus) -> Iterator[tuple[np.ndarray, ...]]:
        """Yield ``(lh, rh)`` float32 responses for consecutive batches of *stimulus*."""
        self._check_open()
        n_lh = self._sizes[0]
        threads = self.request.options.get("threads")
        for batch in stimulus.batches(self.batch_size):
            # torch's thread count is set per batch, never across a yield to the caller
            with torch_threads(threads), torch.inference_mode():
                responses = self._responses(batch).cpu().numpy()
            yield responses[:, :n_lh], responses[:, n_lh:]

    def close(self) -> None:
        """Free the backbone, the encoder and cached device memory."""
        if not self.closed:
            self.backbone = None
            self.network = None  # type: ignore[assignment]
            self.weight = self.bias = torch.empty(0)
            self.preprocessor.release()
            self._metadata = None
            empty_device_cache(self.device)
        super().close()


def _selected_vertices(request: LoadRequest, subject: int) -> dict[str, np.ndarray | None]:
    selection = request.selection if request.selection is not None else NSDSelection()
    assert isinstance(selection, NSDSelection)
    if selection.roi is None:
        return selection.vertices()
    card, berg_dir = NSD_METADATA_CARD, request.berg_dir
    metadata = load_metadata(card, berg_dir, subject)
    tables = roi_tables(metadata, file_path(card, berg_dir, subject, "metadata"))
    return selection.vertices(lambda: tables)


def load(request: LoadRequest) -> FactorTopyEncodingModel:
    """Loader of ``fmri-nsd_fsaverage-factortopy`` (called by ``get_encoding_model``).

    The checkpoint folder is ``request.options["checkpoint"]`` or, without it, the subject's
    folder in the ``berg_dir`` layout (:func:`berg_factortopy.layout.berg_dir_checkpoint`).

    Raises
    ------
    ModelLoadError
        No checkpoint, an unsafe or inconsistent one, a missing NSD metadata file (for ROI
        selections), or a backbone that cannot be built.
    InvalidParameterError
        The checkpoint is of another subject, the selection holds none of its vertices, the device
        is not available.
    """
    subject = request.subject
    assert isinstance(subject, int)
    device = resolve_device(request.device)
    folder = checkpoint_folder(request.berg_dir, subject, request.options.get("checkpoint"))
    checkpoint = load_checkpoint(folder)
    if checkpoint.subject != subject:
        raise InvalidParameterError(
            f"the checkpoint {folder} was trained on subject {checkpoint.subject}, not subject "
            f"{subject}; load it with subject={checkpoint.subject}"
        )
    wanted = _selected_vertices(request, subject)
    columns, rows = {}, []
    offset = 0
    for hemi in ("lh", "rh"):
        trained = checkpoint.vertices[hemi]
        keep = trained if wanted[hemi] is None else np.intersect1d(trained, wanted[hemi])
        columns[hemi] = keep.astype(np.int64)
        rows.append(offset + np.searchsorted(trained, keep))
        offset += len(trained)
    if not any(len(c) for c in columns.values()):  # only possible with a selection
        roi = getattr(request.selection, "roi", None)
        what = f"ROI {roi!r}" if roi else "the vertex masks"
        raise InvalidParameterError(
            f"{what} holds none of the {offset} vertices the checkpoint {folder} was trained on"
        )
    train = checkpoint.train_config
    backbone = build_backbone(train.backbone, train.backbone_kwargs)
    if isinstance(backbone, torch.nn.Module):
        backbone.to(device)
    return FactorTopyEncodingModel(
        request,
        checkpoint=checkpoint,
        rows=np.concatenate(rows).astype(np.int64),
        columns=columns,
        backbone=backbone,
        device=device,
    )
