"""Level 1, base network + readout: your torch network's features -> stored linear readout.

What you write: :func:`build_network` (any ``torch.nn.Module`` mapping a preprocessed batch to
``(B, D)`` features; load pretrained weights here, e.g. with
``berg_core.torchkit.load_pretrained``) and :data:`INPUT_SIZE` / :func:`preprocess`. What berg
does: batching, device, dim picks (``{"channel": ["Oz"], "time": {"min": 0, "max": 50}}``),
shape checks, HDF5 output and metadata. Imported only when the model is loaded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from berg_core import EncodingModel, LoadRequest, Stimulus
from berg_core.torchkit import build_seeded, default_batch_size, empty_device_cache, resolve_device
from berg_template.files import read_arrays
from berg_template.plugin import CHANNELS, N_FEATURES, TIMES_MS

#: Side of the square images the network takes.
INPUT_SIZE = 32
#: Seed of the network's weights (a real family loads trained weights instead).
SEED = 20240101


def build_network() -> nn.Module:
    """The base network: ``(B, 3, 32, 32)`` normalised images -> ``(B, 16)`` features."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=2),
        nn.ReLU(),
        nn.Conv2d(8, N_FEATURES, 3, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def preprocess(batch: np.ndarray | Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """Images (``uint8`` 0-255 or float 0-1, any size) -> ``(B, 3, 32, 32)`` normalised floats.

    Each image is resized on its own, so a response never depends on the batch it is in.
    """
    tensors = []
    for image in batch:
        array = np.asarray(image)
        pixels = torch.as_tensor(array, dtype=torch.float32, device=device)
        if array.dtype == np.uint8:
            pixels = pixels / 255.0
        pixels = functional.interpolate(
            pixels[None], size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True
        )
        tensors.append((pixels - 0.5) / 0.25)
    return torch.cat(tensors)


def load(request: LoadRequest) -> ReadoutModel:
    """Loader of ``eeg-template-readout``: the network, and the subject's readout arrays."""
    device = resolve_device(request.device)
    size = len(CHANNELS) * len(TIMES_MS)
    arrays = read_arrays(
        request.berg_dir,
        request.card.files_for(request.subject)[0],
        {"weight": (N_FEATURES, size), "bias": (size,)},
    )
    network = build_seeded(build_network, SEED).to(device)
    return ReadoutModel(request, network, arrays["weight"], arrays["bias"], device)


class ReadoutModel(EncodingModel):
    """Features of :func:`build_network` times a ``(D, channels * times)`` readout, reshaped."""

    def __init__(
        self,
        request: LoadRequest,
        network: nn.Module,
        weight: np.ndarray,
        bias: np.ndarray,
        device: torch.device,
    ) -> None:
        super().__init__(request)
        self.network = network
        self.device = device
        self.weight = torch.as_tensor(weight, dtype=torch.float32, device=device)
        self.bias = torch.as_tensor(bias, dtype=torch.float32, device=device)
        self.batch_size = request.batch_size or default_batch_size(device)

    def output_shapes(self) -> tuple[tuple[int, ...], ...]:
        """One output, ``(channel, time)``."""
        return ((len(CHANNELS), len(TIMES_MS)),)

    def encode_batches(self, stimulus: Stimulus) -> Iterator[tuple[np.ndarray, ...]]:
        """Flat ``(B, channels * times)`` float32 blocks; the core reshapes and picks."""
        with torch.inference_mode():
            for batch in stimulus.batches(self.batch_size):
                features = self.network(preprocess(batch, self.device))
                yield ((features @ self.weight + self.bias).cpu().numpy(),)

    def close(self) -> None:
        """Free the network and the readout (GPU memory included)."""
        if not self.closed:
            self.network = self.weight = self.bias = None  # type: ignore[assignment]
            empty_device_cache(self.device)
        super().close()
