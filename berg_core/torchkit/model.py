"""A ready-made :class:`~berg_core.EncodingModel`: backbone node features -> linear readout."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from berg_core.encoder import EncodingModel, LoadRequest
from berg_core.torchkit.cache import feature_cache, feature_key
from berg_core.torchkit.device import empty_device_cache
from berg_core.torchkit.features import NodeFeatureExtractor
from berg_core.torchkit.preprocess import Preprocessor
from berg_core.torchkit.readout import LinearReadout, MatrixReadout, StackedReadout

if TYPE_CHECKING:
    from berg_core.stimulus import Stimulus

__all__ = ["DEFAULT_BATCH_SIZE", "FeatureReadoutModel", "default_batch_size"]

#: Images per forward pass by device type. On the CPU, 50 is faster than 100 (better cache use)
#: and halves the per-batch working set.
DEFAULT_BATCH_SIZE = {"cpu": 50, "cuda": 100, "mps": 50}


def default_batch_size(device: torch.device) -> int:
    """Images per forward pass used on *device* unless the user says otherwise."""
    return DEFAULT_BATCH_SIZE.get(device.type, 50)


class FeatureReadoutModel(EncodingModel):
    """Preprocess -> backbone node features -> :class:`LinearReadout`, one batch at a time.

    Plugins build the three parts (usually in their loader) and subclass this to add metadata.
    Backbone features are looked up in the process's content-keyed feature cache
    (:mod:`berg_core.torchkit.cache`) first, so models sharing a backbone and preprocessing
    (NSD's subjects and ROIs) run the network once per image set.
    :meth:`encode_batches` runs under :func:`torch.inference_mode` and yields one float32 numpy
    array per readout head; the core's one encode loop (:meth:`berg_core.EncodingModel.iter_rows`)
    writes them into preallocated arrays or streams them to a file.

    Parameters
    ----------
    request : LoadRequest
        What was asked for; ``request.card.outputs`` must name the readout heads in order.
    preprocessor : Preprocessor
    extractor : NodeFeatureExtractor
    readout : LinearReadout, MatrixReadout or StackedReadout
    device : torch.device
    columns : mapping of str to numpy.ndarray, optional
        For each output, the index of each column in the model's full output space (the
        selected vertices/voxels); defaults to ``0..n-1``.
    batch_size : int, optional
        Images per forward pass (default: the ``batch_size`` option of the request, else
        :func:`default_batch_size` of *device*).
    shapes : mapping of str to tuple of int, optional
        For outputs with several dims (``("channel", "time")``), their shape after the image
        axis; its product is the number of readout columns, which are in C order (``channel``
        major, ``time`` minor). Outputs not named have one dim, of the readout's size.
    coords : mapping of str to mapping of str to array, optional
        Output -> dim -> the coordinate of every position (e.g. a subject's channel names from
        its metadata file), as :meth:`output_coords` returns them; dims not given get the
        default (the card's coords, the columns, or ``0..n-1``).
    metadata : mapping, optional
        The subject's metadata dict, returned by :meth:`subject_metadata` (default: none).
    """

    def __init__(
        self,
        request: LoadRequest,
        *,
        preprocessor: Preprocessor,
        extractor: NodeFeatureExtractor,
        readout: LinearReadout | MatrixReadout | StackedReadout,
        device: torch.device,
        columns: Mapping[str, np.ndarray] | None = None,
        batch_size: int | None = None,
        shapes: Mapping[str, tuple[int, ...]] | None = None,
        coords: Mapping[str, Mapping[str, np.ndarray]] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(request)
        heads = tuple(readout.heads)
        if heads != request.card.output_names:
            raise ValueError(
                f"readout heads {heads} differ from the outputs {request.card.output_names} of "
                f"the card"
            )
        if extractor.feature_dim != readout.feature_dim:
            raise ValueError(
                f"the backbone gives {extractor.feature_dim} features, the readout expects "
                f"{readout.feature_dim}"
            )
        self.preprocessor = preprocessor
        self.extractor = extractor
        self.readout = readout
        self.device = device
        self.batch_size = batch_size or request.batch_size or default_batch_size(device)
        sizes = readout.output_sizes()
        self._shapes = tuple(
            tuple(int(n) for n in (shapes or {}).get(name, (size,)))
            for name, size in zip(heads, sizes, strict=True)
        )
        for name, size, shape, output in zip(
            heads, sizes, self._shapes, request.card.outputs, strict=True
        ):
            if int(np.prod(shape)) != size or len(shape) != len(output.dims):
                raise ValueError(
                    f"output {name!r} has dims {output.dim_names}; shape {shape} does not fit "
                    f"them and its {size} readout columns"
                )
        if columns is None:
            columns = {
                name: np.arange(n, dtype=np.int64)
                for name, n, shape in zip(heads, sizes, self._shapes, strict=True)
                if len(shape) == 1
            }
        self._columns = {}
        for name, size, shape in zip(heads, sizes, self._shapes, strict=True):
            if len(shape) != 1:
                if name in columns:
                    raise ValueError(f"columns are for one-dim outputs; {name!r} has {shape}")
                continue
            index = np.asarray(columns[name])
            if index.shape != (size,):
                raise ValueError(f"columns of {name!r} do not match its {size} readout rows")
            if index.size and index.dtype.kind not in "iu":  # a cast would truncate 10.7 to 10
                raise ValueError(f"columns of {name!r} are {index.dtype}, not integer indices")
            self._columns[name] = index.astype(np.int64)
        self._sizes = sizes
        self._metadata = None if metadata is None else dict(metadata)
        self._coords: dict[str, dict[str, np.ndarray]] = {}
        for name, given in (coords or {}).items():
            if name not in heads:
                raise ValueError(f"coords of {name!r}, which is not an output {heads}")
            output = request.card.output(name)
            shape = dict(zip(output.dim_names, self._shapes[heads.index(name)], strict=True))
            for dim, values in given.items():
                values = np.asarray(values)
                if dim not in shape or values.shape != (shape[dim],):
                    raise ValueError(
                        f"coords[{name!r}][{dim!r}] of shape {values.shape}: output {name!r} "
                        f"has dims {shape}"
                    )
                self._coords.setdefault(name, {})[dim] = values

    def output_sizes(self) -> tuple[int, ...]:
        """Number of selected columns of each output."""
        return self._sizes

    def output_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Shape (after the image axis) of each output: ``(n,)``, or its ``shapes`` entry."""
        return self._shapes

    def column_indices(self) -> dict[str, np.ndarray]:
        """For each one-dim output, the index of every column in the full output space."""
        return {name: index.copy() for name, index in self._columns.items()}

    def output_coords(self) -> dict[str, dict[str, np.ndarray]]:
        """The default coordinates, replaced by those given as *coords* (copies)."""
        result = super().output_coords()
        for name, given in self._coords.items():
            result[name].update({dim: values.copy() for dim, values in given.items()})
        return result

    def subject_metadata(self) -> dict[str, Any]:
        """The *metadata* given (a shallow copy), else ``{}``."""
        return {} if self._metadata is None else dict(self._metadata)

    def _responses(
        self, batch: np.ndarray | list[np.ndarray], out: tuple[torch.Tensor, ...] | None = None
    ) -> tuple[torch.Tensor, ...]:
        """Responses of one stimulus batch (call under :func:`torch.inference_mode`)."""
        return self.readout(self._features(batch), out=out)

    def _features(self, batch: np.ndarray | list[np.ndarray]) -> torch.Tensor:
        """Backbone features of one batch, from the process's feature cache when there.

        The key covers the weights, the preprocessing, the nodes, the device and the batch's
        bytes (:mod:`berg_core.torchkit.cache`). The readouts never modify features, so a cached
        tensor is used as it is (moved to the device, not copied).
        """
        cache = feature_cache()
        described = self.preprocessor.identity() if cache.enabled else None
        if described is None:
            return self.extractor(self.preprocessor(batch))
        key = feature_key(self.extractor.identity(), described, batch)
        stored = cache.get(key)
        if stored is not None:
            return stored.to(self.device)
        features = self.extractor(self.preprocessor(batch))
        cache.put(key, features)
        return features

    def encode_batches(self, stimulus: Stimulus) -> Iterator[tuple[np.ndarray, ...]]:
        """Yield ``float32`` responses for consecutive batches of *stimulus*."""
        self._check_open()
        with torch.inference_mode():
            for batch in stimulus.batches(self.batch_size):
                yield tuple(r.cpu().numpy() for r in self._responses(batch))

    def differentiable(self) -> torch.nn.Module:
        """Preprocessing -> features -> readout -> selection as a differentiable module.

        See :class:`berg_core.torchkit.differentiable.DifferentiableEncoder`.
        """
        from berg_core.torchkit.differentiable import DifferentiableEncoder

        return DifferentiableEncoder.from_model(self)

    def close(self) -> None:
        """Free the backbone, the readout weights and cached device memory."""
        if not self.closed:
            self.extractor.release()
            self.readout.release()
            self.preprocessor.release()
            empty_device_cache(self.device)
        super().close()
