"""Features from named nodes of a network, flattened and concatenated into one row per image.

A network built from a :class:`~berg_core.torchkit.SharedBackbone` is built once per process
and shared by every extractor of the same backbone key, nodes, device and memory format while
one of them is open (weak references: releasing the last one frees it). The reference paper's
loop over 8 subjects x 3 ROIs builds its AlexNet once instead of 24 times.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Hashable, Sequence

import torch
from torch import nn

from berg_core.torchkit.backbones import SharedBackbone
from berg_core.torchkit.cache import state_digest

__all__ = ["NodeFeatureExtractor"]


class _Network:
    """A frozen feature-extraction network on its device, its node shapes and weights digest."""

    def __init__(self, module: nn.Module, node_shapes: tuple[tuple[int, ...], ...]) -> None:
        self.module = module
        self.node_shapes = node_shapes
        self._digest: bytes | None = None
        self._versions: tuple[tuple[int, int], ...] = ()
        self._lock = threading.Lock()

    def _snapshot(self) -> tuple[tuple[int, int], ...]:
        # In-place changes bump a tensor's version counter; replaced tensors change identity.
        tensors = self.module.state_dict(keep_vars=True).values()
        return tuple((id(t), int(t._version)) for t in tensors)

    def digest(self) -> bytes:
        """SHA-256 of the weights, recomputed only after a tensor was modified or replaced."""
        with self._lock:
            versions = self._snapshot()
            if self._digest is None or versions != self._versions:
                self._digest = state_digest(self.module)
                self._versions = versions
            return self._digest


#: Networks built from a SharedBackbone, alive while an extractor uses them.
_SHARED: weakref.WeakValueDictionary[Hashable, _Network] = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


class NodeFeatureExtractor:
    """Run a network and return the outputs of some of its nodes as one ``(B, D)`` matrix.

    Each node's output is flattened per image (``torch.flatten(out, start_dim=1)``, i.e. in the
    logical C, H, W order whatever the memory format) and the blocks are concatenated in the order
    of *nodes*. This is what ``torch.hstack([torch.flatten(v, 1) for v in
    create_feature_extractor(model, nodes)(x).values()])`` returns, written straight into a
    buffer that is reused from batch to batch.

    Parameters
    ----------
    model : torch.nn.Module or SharedBackbone
        The backbone (on the CPU or already on *device*), or the recipe of a backbone shared
        with the other extractors of the same key, nodes, device and memory format.
    nodes : sequence of str
        Node names as understood by
        :func:`torchvision.models.feature_extraction.create_feature_extractor` (module paths
        such as ``"features.2"`` or traced operations such as
        ``"encoder.layers.encoder_layer_0.add_1"``).
    device : torch.device
        Where the network runs.
    channels_last : bool
        Keep convolution activations in channels-last memory format (faster on CPU with
        oneDNN; values equal up to float32 rounding).
    input_size : int
        Side of the square input images, used once to measure each node's size.
    """

    def __init__(
        self,
        model: nn.Module | SharedBackbone,
        nodes: Sequence[str],
        device: torch.device,
        *,
        channels_last: bool = False,
        input_size: int = 224,
    ) -> None:
        self.nodes = tuple(nodes)
        self.device = device
        self.channels_last = channels_last
        self.input_size = input_size
        if isinstance(model, SharedBackbone):
            key = (model.key, self.nodes, str(device), channels_last, input_size)
            with _SHARED_LOCK:
                network = _SHARED.get(key)
                if network is None:
                    network = self._build(model.build())
                    _SHARED[key] = network
        else:
            network = self._build(model)
        self._network: _Network | None = network
        self.module: nn.Module | None = network.module
        self._buffer: torch.Tensor | None = None
        self.node_shapes = network.node_shapes
        #: Number of features per node, in node order.
        self.node_dims = tuple(int(torch.Size(shape).numel()) for shape in self.node_shapes)
        #: Total number of features D.
        self.feature_dim = int(sum(self.node_dims))

    def _build(self, model: nn.Module) -> _Network:
        from torchvision.models.feature_extraction import create_feature_extractor

        extractor = create_feature_extractor(model.eval(), return_nodes=list(self.nodes))
        extractor = extractor.to(self.device).eval()
        if self.channels_last:
            extractor = extractor.to(memory_format=torch.channels_last)
        for parameter in extractor.parameters():
            parameter.requires_grad_(False)
        self.module = extractor
        return _Network(extractor, self._measure())

    def identity(self) -> bytes:
        """What determines this extractor's features besides the input: a digest of the weights
        (:func:`~berg_core.torchkit.cache.state_digest`), the nodes, the device and the memory
        format. Hashing the weights takes about 0.3 s per 250 MB, once per network."""
        if self._network is None:
            raise RuntimeError("the feature extractor was released")
        described = repr((self.nodes, str(self.device), self.channels_last)).encode()
        return self._network.digest() + described

    def _measure(self) -> tuple[tuple[int, ...], ...]:
        probe = torch.zeros(1, 3, self.input_size, self.input_size, device=self.device)
        if self.channels_last:
            probe = probe.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            outputs = self._forward(probe)
        return tuple(tuple(outputs[name].shape[1:]) for name in self.nodes)

    def _forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.module is None:
            raise RuntimeError("the feature extractor was released")
        outputs = self.module(images)
        missing = [name for name in self.nodes if name not in outputs]
        if missing:  # pragma: no cover - create_feature_extractor guarantees the keys
            raise RuntimeError(f"the network did not return nodes {missing}")
        return outputs

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Features of a preprocessed batch.

        Parameters
        ----------
        images : torch.Tensor
            ``(B, 3, H, W)`` float32 on :attr:`device`.

        Returns
        -------
        torch.Tensor
            ``(B, D)`` float32. It is a view of an internal buffer that the next call overwrites;
            consumers may modify it in place.
        """
        outputs = self._forward(images)
        rows = images.shape[0]
        first = outputs[self.nodes[0]]
        if (
            self._buffer is None
            or self._buffer.shape[0] < rows
            or self._buffer.device != first.device
            or self._buffer.dtype != first.dtype
        ):
            self._buffer = None
            self._buffer = torch.empty(
                (rows, self.feature_dim), dtype=first.dtype, device=first.device
            )
        features = self._buffer[:rows]
        start = 0
        for name, size in zip(self.nodes, self.node_dims, strict=True):
            value = outputs[name]
            # A (rows, size) slice of a row-major matrix can be viewed as (rows, *node shape):
            # copy_ reorders channels-last activations into C, H, W order on the way.
            features[:, start : start + size].view(value.shape).copy_(value)
            start += size
        return features

    def release(self) -> None:
        """Drop the network and the buffer (after this the extractor cannot run).

        A shared network is freed when the last extractor using it is released.
        """
        self.module = None
        self._network = None
        self._buffer = None
