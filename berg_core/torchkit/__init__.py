"""Torch building blocks shared by berg's torch model families (``pip install berg-core[torch]``).

Importing :mod:`berg_core` never imports this subpackage; plugins import it in the module that
builds their models, so that registering them stays cheap. It provides:

* :func:`resolve_device` - ``"auto"`` -> CUDA when available, else CPU; clear errors otherwise;
* :func:`build_seeded` / :func:`load_pretrained` / :func:`checkpoint_path` - torchvision
  backbones, seeded exactly like the reference toolkit or read from torchvision's cache, without
  touching the caller's random state; :func:`shared_backbone` - one network per process for the
  models of the same spec;
* :func:`feature_cache` - the process's bounded, content-keyed cache of backbone features
  (``BERG_FEATURE_CACHE_BYTES``);
* :class:`Preprocessor` - the weights' own transform, applied batch by batch on the device;
* :class:`NodeFeatureExtractor` - flattened outputs of named nodes, concatenated into ``(B, D)``;
* :class:`LinearReadout` - scaler -> PCA -> float32 -> linear regression(s) in float32 torch;
* :class:`MatrixReadout` - a plain ``(D, n)`` weight matrix and bias per output, the same way;
* :class:`StackedReadout` - one output stacked from scaler -> PCA_r -> regression_r parts that
  share the scaler (one PCA and regression per repetition);
* :class:`FeatureReadoutModel` - an :class:`~berg_core.EncodingModel` gluing the three together;
* :func:`build_readout_model` - the whole "base network + readout" model from a backbone, its
  nodes, the preprocessing (:class:`ImageTransform` or torchvision weights) and the stored
  readout arrays (:func:`readout_from_arrays`), keeping the rows a selection keeps
  (:func:`grid_rows`) and labelling them with coordinates and metadata read from the subject's
  files; :func:`torchvision_backbone` builds the network.

See ``docs/torchkit.md``.
"""

from berg_core.torchkit.backbones import (
    SharedBackbone,
    build_seeded,
    checkpoint_path,
    load_pretrained,
    shared_backbone,
)
from berg_core.torchkit.cache import FeatureCache, feature_cache
from berg_core.torchkit.device import empty_device_cache, resolve_device
from berg_core.torchkit.family import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageTransform,
    build_readout_model,
    grid_rows,
    readout_from_arrays,
    torchvision_backbone,
)
from berg_core.torchkit.features import NodeFeatureExtractor
from berg_core.torchkit.model import DEFAULT_BATCH_SIZE, FeatureReadoutModel, default_batch_size
from berg_core.torchkit.preprocess import Preprocessor
from berg_core.torchkit.readout import (
    PCA_KEYS,
    REGRESSION_KEYS,
    SCALER_KEYS,
    LinearReadout,
    MatrixReadout,
    StackedReadout,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PCA_KEYS",
    "REGRESSION_KEYS",
    "SCALER_KEYS",
    "FeatureCache",
    "FeatureReadoutModel",
    "ImageTransform",
    "LinearReadout",
    "MatrixReadout",
    "NodeFeatureExtractor",
    "Preprocessor",
    "SharedBackbone",
    "StackedReadout",
    "build_readout_model",
    "build_seeded",
    "checkpoint_path",
    "default_batch_size",
    "empty_device_cache",
    "feature_cache",
    "grid_rows",
    "load_pretrained",
    "readout_from_arrays",
    "resolve_device",
    "shared_backbone",
    "torchvision_backbone",
]
