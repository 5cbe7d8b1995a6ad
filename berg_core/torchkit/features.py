"""Features from named nodes of a network, flattened and concatenated into one row per image."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["NodeFeatureExtractor"]


class NodeFeatureExtractor:
    """Run a network and return the outputs of some of its nodes as one ``(B, D)`` matrix.

    Each node's output is flattened per image (``torch.flatten(out, start_dim=1)``, i.e. in the
    logical C, H, W order whatever the memory format) and the blocks are concatenated in the order
    of *nodes*. This is what ``torch.hstack([torch.flatten(v, 1) for v in
    create_feature_extractor(model, nodes)(x).values()])`` returns, written straight into a
    buffer that is reused from batch to batch.

    Parameters
    ----------
    model : torch.nn.Module
        The backbone (on the CPU or already on *device*).
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
        model: nn.Module,
        nodes: Sequence[str],
        device: torch.device,
        *,
        channels_last: bool = False,
        input_size: int = 224,
    ) -> None:
        from torchvision.models.feature_extraction import create_feature_extractor

        self.nodes = tuple(nodes)
        self.device = device
        self.channels_last = channels_last
        self.input_size = input_size
        extractor = create_feature_extractor(model.eval(), return_nodes=list(self.nodes))
        extractor = extractor.to(device).eval()
        if channels_last:
            extractor = extractor.to(memory_format=torch.channels_last)
        for parameter in extractor.parameters():
            parameter.requires_grad_(False)
        self.module: nn.Module | None = extractor
        self._buffer: torch.Tensor | None = None
        self.node_shapes = self._measure()
        #: Number of features per node, in node order.
        self.node_dims = tuple(int(torch.Size(shape).numel()) for shape in self.node_shapes)
        #: Total number of features D.
        self.feature_dim = int(sum(self.node_dims))

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
        """Drop the network and the buffer (after this the extractor cannot run)."""
        self.module = None
        self._buffer = None
