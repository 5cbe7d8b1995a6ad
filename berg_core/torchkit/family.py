"""A "base network + readout" model in one call: the supported way to build a torch family.

A contributor gives what is special to the family - a backbone network, the nodes to read, the
image preprocessing and the stored readout arrays - and :func:`build_readout_model` builds the
:class:`~berg_core.torchkit.FeatureReadoutModel` around them: device, preprocessing batch by
batch, feature extraction, the readout (the reference toolkit's scaler -> PCA -> regression dicts,
or a plain ``(D, n)`` weight matrix and bias), the selected columns of one-dim outputs and the
shapes of labelled outputs with several dims. The core does the rest (batching, picks along
dims, shape checks, files)::

    def load(request):
        weights = load_pickled_npy(request.berg_dir / request.card.files_for(request.subject)[0])
        return build_readout_model(
            request,
            backbone=torchvision_backbone(torchvision.models.resnet18, seed=0),
            nodes=("avgpool",),
            preprocessing=ImageTransform(size=224, resize=256),
            readout=weights,  # {"weight": (512, 8 * 20), "bias": (160,)}
        )
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from berg_core.cards import Output
from berg_core.checks import Location, require_mapping
from berg_core.encoder import LoadRequest
from berg_core.errors import ModelLoadError, PluginError
from berg_core.torchkit.backbones import SharedBackbone, build_seeded, load_pretrained
from berg_core.torchkit.device import resolve_device
from berg_core.torchkit.features import NodeFeatureExtractor
from berg_core.torchkit.model import FeatureReadoutModel
from berg_core.torchkit.preprocess import Preprocessor
from berg_core.torchkit.readout import LinearReadout, MatrixReadout, StackedReadout

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageTransform",
    "build_readout_model",
    "grid_rows",
    "readout_from_arrays",
    "torchvision_backbone",
]

#: Channel means and standard deviations of ImageNet, used by most torchvision weights.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ImageTransform:
    """Resize the shorter side, centre-crop, scale to [0, 1], normalise: a network's input.

    The same steps, with the same torchvision functions, as torchvision's ImageNet presets
    (``weights.transforms()``); use it for a backbone that has no torchvision weights.
    :class:`~berg_core.torchkit.Preprocessor` runs it in place on each batch.

    Parameters
    ----------
    size : int
        Side of the square crop the network sees.
    resize : int
        The shorter side is resized to this first (bilinear, antialiased).
    mean, std : tuple of float
        Per-channel normalisation of the [0, 1] image.
    """

    size: int = 224
    resize: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if not 0 < self.size <= self.resize:
            raise PluginError(
                f"ImageTransform(size={self.size}, resize={self.resize}): need 0 < size <= resize"
            )
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise PluginError(
                f"ImageTransform mean={self.mean}, std={self.std}: three values each, std > 0"
            )

    # The attributes torchvision's ImageClassification preset has, which Preprocessor reads.
    @property
    def crop_size(self) -> list[int]:
        """``[size]``."""
        return [self.size]

    @property
    def resize_size(self) -> list[int]:
        """``[resize]``."""
        return [self.resize]

    @property
    def interpolation(self) -> Any:
        """Bilinear."""
        from torchvision.transforms import InterpolationMode

        return InterpolationMode.BILINEAR

    @property
    def antialias(self) -> bool:
        """Always ``True``."""
        return True

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Transform a ``(B, 3, H, W)`` uint8 or [0, 1] float tensor (unbatched use)."""
        from torchvision.transforms import functional as tvf

        images = tvf.resize(images, self.resize_size, self.interpolation, antialias=True)
        images = tvf.convert_image_dtype(tvf.center_crop(images, self.crop_size), torch.float32)
        return tvf.normalize(images, list(self.mean), list(self.std))


def torchvision_backbone(
    builder: Callable[..., nn.Module], *, weights: Any = None, seed: int | None = None
) -> nn.Module:
    """A torchvision network: pretrained (*weights*) from the cache, or untrained and seeded.

    Parameters
    ----------
    builder : callable
        A torchvision model builder, e.g. ``torchvision.models.resnet18``.
    weights : torchvision Weights member, optional
        Pretrained weights, read from torchvision's cache (:func:`load_pretrained`).
    seed : int, optional
        Without *weights*: the seed of the random initial weights (:func:`build_seeded`), the
        same in every process.

    Returns
    -------
    torch.nn.Module
        On the CPU, in eval mode.

    Raises
    ------
    PluginError
        Neither or both of *weights* and *seed* given.
    ModelLoadError
        Pretrained weights missing from the cache and not downloadable.
    """
    if (weights is None) == (seed is None):
        raise PluginError(
            f"torchvision_backbone({builder.__name__}): give weights= (pretrained) or seed= "
            f"(untrained), exactly one; got weights={weights!r}, seed={seed!r}"
        )
    if weights is not None:
        return load_pretrained(builder, weights)
    return build_seeded(builder, int(seed), weights=None)  # type: ignore[arg-type]


def _key(kind: str, name: str, single: bool, arrays: Mapping[str, Any]) -> str:
    """``<name>_<kind>``; plain ``<kind>`` for a single output unless the file has the other."""
    prefixed = f"{name}_{kind}"
    return kind if single and (kind in arrays or prefixed not in arrays) else prefixed


def readout_from_arrays(
    arrays: Mapping[str, Any],
    outputs: Sequence[str],
    device: torch.device,
    *,
    source: str | Location = "readout arrays",
    feature_dim: int | None = None,
    n_columns: Mapping[str, int | None] | None = None,
    columns: Mapping[str, np.ndarray | None] | None = None,
) -> LinearReadout | MatrixReadout:
    """The readout stored in *arrays*, in one of two layouts, checked against the model.

    * the reference toolkit's: ``scaler_param`` and ``pca_param`` dicts and one regression dict
      per output, ``<output>_reg_param`` (``reg_param`` for a model with one output) ->
      :class:`LinearReadout` (keys used: :data:`~berg_core.torchkit.readout.USED_KEYS`);
    * a plain linear map: ``<output>_weight`` ``(D, n)`` and ``<output>_bias`` ``(n,)``
      (``weight`` and ``bias`` for one output) -> :class:`MatrixReadout`.

    Parameters
    ----------
    arrays : mapping
        What the weights file holds (read with :func:`berg_core.safe_npy.load_pickled_npy`).
    outputs : sequence of str
        The model's output names, in order (``card.output_names``).
    device : torch.device
        Where the readout computes.
    source : str or Location
        The file, for error messages.
    feature_dim : int, optional
        Features the backbone gives.
    n_columns : mapping of str to int or None, optional
        Columns each output must have in the file.
    columns : mapping of str to array or None, optional
        The columns to keep of each output (a selection); ``None``: all.

    Returns
    -------
    LinearReadout or MatrixReadout

    Raises
    ------
    ModelLoadError
        A missing key or an array of the wrong kind or shape; the message names the file and
        the key.
    """
    root = source if isinstance(source, Location) else Location(source, "weights")
    require_mapping(arrays, root)
    single = len(outputs) == 1
    reg_keys = {name: _key("reg_param", name, single, arrays) for name in outputs}
    keys = {
        name: (_key("weight", name, single, arrays), _key("bias", name, single, arrays))
        for name in outputs
    }
    if "scaler_param" in arrays or "pca_param" in arrays:
        require_mapping(arrays, root, ("scaler_param", "pca_param", *reg_keys.values()))
        return LinearReadout.from_params(
            arrays["scaler_param"],
            arrays["pca_param"],
            {name: (arrays[reg_keys[name]], (columns or {}).get(name)) for name in outputs},
            device,
            source=root,
            reg_keys=reg_keys,
            feature_dim=feature_dim,
            n_rows=None if n_columns is None else {n: n_columns.get(n) for n in outputs},  # type: ignore[misc]
        )
    expected = [key for pair in keys.values() for key in pair]
    if not any(key in arrays for key in expected):
        reference = ", ".join(("scaler_param", "pca_param", *reg_keys.values()))
        raise ModelLoadError(
            f"{root} holds no readout: expected the reference layout ({reference}) or a linear "
            f"map ({', '.join(expected)}); has: {', '.join(map(str, arrays)) or 'nothing'}"
        )
    require_mapping(arrays, root, expected)
    return MatrixReadout.from_arrays(
        {name: (arrays[w], arrays[b]) for name, (w, b) in keys.items()},
        device,
        source=root,
        keys=keys,
        feature_dim=feature_dim,
        n_columns=n_columns,
        columns=columns,
    )


def grid_rows(indices: Sequence[np.ndarray], sizes: Sequence[int]) -> np.ndarray:
    """The rows of a C-order flattened ``sizes`` grid that keep *indices* along each axis.

    For a regression whose rows are ``(channel, time)`` flattened channel-major, the rows of
    channels ``c`` and times ``t`` are ``grid_rows([c, t], (n_channels, n_times))``: every
    ``c[i] * n_times + t[j]``, ``i`` major. Indices keep their order and repeats.

    Parameters
    ----------
    indices : sequence of integer arrays
        One index array per axis.
    sizes : sequence of int
        The full size of each axis.

    Returns
    -------
    numpy.ndarray
        ``int64`` rows, ``prod(len(i) for i in indices)`` of them.
    """
    if len(indices) != len(sizes):
        raise PluginError(f"grid_rows: {len(indices)} index arrays for {len(sizes)} axes")
    arrays = [np.asarray(index, dtype=np.int64) for index in indices]
    for axis, (index, size) in enumerate(zip(arrays, sizes, strict=True)):
        if index.ndim != 1 or (index.size and not 0 <= index.min() <= index.max() < size):
            raise PluginError(f"grid_rows: indices of axis {axis} outside 0..{int(size) - 1}")
    if not arrays:
        return np.zeros(1, dtype=np.int64)
    return np.ravel_multi_index(np.ix_(*arrays), tuple(int(n) for n in sizes)).ravel()


def _full_shape(output: Output) -> tuple[int, ...] | None:
    """The output's shape from the card, or ``None`` if a dim's size is not declared."""
    sizes = tuple(dim.size for dim in output.dims)
    return None if any(size is None for size in sizes) else sizes  # type: ignore[return-value]


def build_readout_model(
    request: LoadRequest,
    *,
    backbone: nn.Module | SharedBackbone,
    nodes: Sequence[str],
    preprocessing: Any,
    readout: Mapping[str, Any] | LinearReadout | MatrixReadout | StackedReadout,
    source: str | Location = "readout arrays",
    columns: Mapping[str, np.ndarray | None] | None = None,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    rows: Mapping[str, np.ndarray] | None = None,
    coords: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    metadata: Mapping[str, Any] | None = None,
    channels_last: bool = False,
    model_class: type[FeatureReadoutModel] = FeatureReadoutModel,
    **model_kwargs: Any,
) -> FeatureReadoutModel:
    """Build a loaded "base network + linear readout" model for *request*.

    Parameters
    ----------
    request : LoadRequest
        What the loader received; its device, batch size option and card are used.
    backbone : torch.nn.Module or SharedBackbone
        The network, e.g. from :func:`torchvision_backbone`, or a recipe from
        :func:`~berg_core.torchkit.shared_backbone`: built once and shared by the models of
        the same spec while one is open.
    nodes : sequence of str
        The nodes whose outputs, flattened and concatenated in this order, are the features
        (names as :func:`torchvision.models.feature_extraction.get_graph_node_names` gives).
    preprocessing : torchvision Weights member, ImageTransform or callable
        The image transform: a torchvision weights' own (``ResNet18_Weights.IMAGENET1K_V1``),
        an :class:`ImageTransform`, or any callable taking a ``(B, 3, H, W)`` tensor.
    readout : mapping, LinearReadout, MatrixReadout or StackedReadout
        The stored readout arrays (layouts in :func:`readout_from_arrays`), or a readout
        already built on ``resolve_device(request.device)`` (a
        :class:`~berg_core.torchkit.StackedReadout` for one PCA and regression per repetition).
    source : str or Location
        Where the arrays come from (the weights file), for error messages.
    columns : mapping of str to array or None, optional
        For one-dim outputs, the columns a selection keeps (indices into the readout's
        columns, which are reported as each column's coordinate).
    shapes : mapping of str to tuple of int, optional
        The shape of each output with several dims whose sizes the card does not declare.
        The readout's columns of such an output are the C-order flattening of that shape.
        With *rows*, the shape of what the rows keep.
    rows : mapping of str to array, optional
        For outputs with several dims, the readout columns (rows of the stored regression) a
        selection keeps, as :func:`grid_rows` gives them; the file must hold the full output
        (the card's sizes), only these are read. Their count must match the *shapes* entry.
    coords : mapping of str to mapping of str to array, optional
        Output -> dim -> coordinates of what the model yields (after *rows*), e.g. a subject's
        channel names read from its metadata file (see :class:`FeatureReadoutModel`).
    metadata : mapping, optional
        The subject's metadata dict, returned by ``subject_metadata()``.
    channels_last : bool
        Run convolutions in channels-last memory format (faster on CPU).
    model_class : type, optional
        A :class:`~berg_core.torchkit.FeatureReadoutModel` subclass (to add metadata or file
        writers); *model_kwargs* are passed to it.

    Returns
    -------
    FeatureReadoutModel

    Raises
    ------
    ModelLoadError
        Readout arrays missing, of the wrong kind, or whose sizes do not match the backbone's
        features or the card's output sizes (naming the file and key).
    PluginError
        An output with several dims and neither declared sizes nor a *shapes* entry, or
        *columns* given for such an output.
    InvalidParameterError
        The requested device is not available.
    """
    card = request.card
    device = resolve_device(request.device)
    output_shapes: dict[str, tuple[int, ...]] = {}
    n_columns: dict[str, int | None] = {}
    kept_rows: dict[str, np.ndarray | None] = dict(columns or {})
    for output in card.outputs:
        full = _full_shape(output)
        shape = (shapes or {}).get(output.name) or full
        if len(output.dims) > 1:
            if shape is None:
                raise PluginError(
                    f"{card.model_id}: output {output.name!r} has dims {output.dim_names} "
                    f"without sizes on the card; give build_readout_model(shapes=...)"
                )
            if (columns or {}).get(output.name) is not None:
                raise PluginError(
                    f"{card.model_id}: columns= is for one-dim outputs; {output.name!r} has dims "
                    f"{output.dim_names} (give its rows= instead)"
                )
            output_shapes[output.name] = tuple(int(n) for n in shape)
            keep = (rows or {}).get(output.name)
            if keep is not None:
                if full is None:
                    raise PluginError(
                        f"{card.model_id}: rows= of {output.name!r} need the sizes of its dims "
                        f"{output.dim_names} on the card"
                    )
                if len(keep) != int(np.prod(shape)):
                    raise PluginError(
                        f"{card.model_id}: {len(keep)} rows= of {output.name!r} for its shape "
                        f"{tuple(shape)}"
                    )
                kept_rows[output.name] = np.asarray(keep)
                shape = full
        n_columns[output.name] = None if shape is None else int(np.prod(shape))

    if isinstance(preprocessing, ImageTransform) or not hasattr(preprocessing, "transforms"):
        preprocessor = Preprocessor(preprocessing, device, channels_last=channels_last)
        input_size = getattr(preprocessing, "size", 224)
    else:
        preprocessor = Preprocessor.from_weights(preprocessing, device, channels_last=channels_last)
        input_size = int(getattr(preprocessor, "crop_size", [224])[0])
    extractor = NodeFeatureExtractor(
        backbone, nodes, device, channels_last=channels_last, input_size=input_size
    )
    if not isinstance(readout, (LinearReadout, MatrixReadout, StackedReadout)):
        readout = readout_from_arrays(
            readout,
            card.output_names,
            device,
            source=source,
            feature_dim=extractor.feature_dim,
            n_columns=n_columns,
            columns=kept_rows,
        )
    elif readout.feature_dim != extractor.feature_dim:
        root = source if isinstance(source, Location) else Location(source, "weights")
        raise ModelLoadError(
            f"{root} is a readout of {readout.feature_dim} features; the backbone's nodes give "
            f"{extractor.feature_dim}"
        )
    selected = {}
    for name, size in zip(card.output_names, readout.output_sizes(), strict=True):
        keep = (columns or {}).get(name)
        if name not in output_shapes:
            selected[name] = np.arange(size, dtype=np.int64) if keep is None else np.asarray(keep)
    return model_class(
        request,
        preprocessor=preprocessor,
        extractor=extractor,
        readout=readout,
        device=device,
        columns=selected,
        shapes=output_shapes,
        coords=coords,
        metadata=metadata,
        **model_kwargs,
    )
