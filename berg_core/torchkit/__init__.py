"""Torch building blocks shared by berg's torch model families (``pip install berg-core[torch]``).

Importing :mod:`berg_core` never imports this subpackage; plugins import it in the module that
builds their models, so that registering them stays cheap. It provides:

* :func:`resolve_device` - ``"auto"`` -> CUDA when available, else CPU; clear errors otherwise;
* :func:`build_seeded` / :func:`load_pretrained` / :func:`checkpoint_path` - torchvision
  backbones, seeded exactly like the reference toolkit or read from torchvision's cache, without
  touching the caller's random state;
* :class:`Preprocessor` - the weights' own transform, applied batch by batch on the device;
* :class:`NodeFeatureExtractor` - flattened outputs of named nodes, concatenated into ``(B, D)``;
* :class:`LinearReadout` - scaler -> PCA -> float32 -> linear regression(s) in float32 torch;
* :class:`FeatureReadoutModel` - an :class:`~berg_core.EncodingModel` gluing the three together.
"""

from berg_core.torchkit.backbones import build_seeded, checkpoint_path, load_pretrained
from berg_core.torchkit.device import empty_device_cache, resolve_device
from berg_core.torchkit.features import NodeFeatureExtractor
from berg_core.torchkit.model import DEFAULT_BATCH_SIZE, FeatureReadoutModel, default_batch_size
from berg_core.torchkit.preprocess import Preprocessor
from berg_core.torchkit.readout import (
    PCA_KEYS,
    REGRESSION_KEYS,
    SCALER_KEYS,
    LinearReadout,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "PCA_KEYS",
    "REGRESSION_KEYS",
    "SCALER_KEYS",
    "FeatureReadoutModel",
    "LinearReadout",
    "NodeFeatureExtractor",
    "Preprocessor",
    "build_seeded",
    "checkpoint_path",
    "default_batch_size",
    "empty_device_cache",
    "load_pretrained",
    "resolve_device",
]
