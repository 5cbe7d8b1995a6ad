"""Image preprocessing bound to a backbone's weights, applied one batch at a time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["Preprocessor"]


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    """Wrap *array* as a tensor without copying when possible (copy read-only arrays)."""
    if not array.flags.writeable:
        array = np.array(array, copy=True)
    return torch.from_numpy(array)


class Preprocessor:
    """Turns stimulus batches into the normalised float32 tensor a backbone expects.

    Build it with :meth:`from_weights`: the transform is the one published with the backbone's
    weights (for torchvision ImageNet weights: resize the shorter side to 256 with bilinear
    antialiasing, centre-crop 224, scale to [0, 1], normalise with the ImageNet mean and std). It
    runs on each batch on the target device, never on the whole stimulus at once, so memory grows
    with the batch size only.

    Input forms (those :meth:`berg_core.Stimulus.batches` yields):

    * ``uint8`` arrays ``(B, 3, H, W)``: transformed as the ``uint8`` tensor, exactly as the
      reference toolkit does (``transform(torch.from_numpy(stimulus))``: the resize happens on the
      8-bit image and is rounded back to 8 bits before scaling to [0, 1]);
    * ``float32`` arrays ``(B, 3, H, W)`` with values in [0, 1]: transformed in floating point;
    * lists of ``(3, H, W)`` arrays of different sizes: each image resized and cropped on its own.

    For torchvision's ``ImageClassification`` presets the steps are run one by one with
    torchvision's own functions (``resize``, ``center_crop``), and the final scaling and
    normalisation - the same float32 operations as ``convert_image_dtype`` and ``normalize`` -
    are done in place in a buffer reused from batch to batch, already in the memory format the
    backbone wants. Results are identical to calling the preset.

    Parameters
    ----------
    transform : callable
        The weights' transform (``weights.transforms()``). Used as is (``transform(batch)``) when
        it is not a torchvision ``ImageClassification`` preset.
    device : torch.device
        Where the transform runs and the result lives.
    channels_last : bool
        Return the batch in channels-last memory format (faster convolutions on CPU).
    """

    def __init__(
        self,
        transform: Callable[[torch.Tensor], torch.Tensor],
        device: torch.device,
        *,
        channels_last: bool = False,
    ) -> None:
        self.transform = transform
        self.device = device
        self.channels_last = channels_last
        self._buffer: torch.Tensor | None = None
        steps = ("resize_size", "crop_size", "mean", "std", "interpolation", "antialias")
        self._preset = all(hasattr(transform, name) for name in steps)
        if self._preset:
            t: Any = transform
            self.resize_size = list(t.resize_size)
            self.crop_size = list(t.crop_size)
            self.interpolation = t.interpolation
            self.antialias = t.antialias
            self.mean = torch.as_tensor(t.mean, dtype=torch.float32, device=device).view(-1, 1, 1)
            self.std = torch.as_tensor(t.std, dtype=torch.float32, device=device).view(-1, 1, 1)

    @classmethod
    def from_weights(
        cls, weights: Any, device: torch.device, *, channels_last: bool = False
    ) -> Preprocessor:
        """The preprocessing published with a torchvision ``Weights`` member (``.transforms()``)."""
        return cls(weights.transforms(), device, channels_last=channels_last)

    def __call__(self, batch: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
        """Preprocess one batch.

        Parameters
        ----------
        batch : numpy.ndarray or sequence of numpy.ndarray
            ``(B, 3, H, W)`` ``uint8`` or ``float32`` array, or a list of ``(3, H, W)`` arrays.

        Returns
        -------
        torch.Tensor
            ``(B, 3, h, w)`` float32 on :attr:`device`. With a preset transform it is a buffer
            that the next call overwrites.
        """
        if isinstance(batch, np.ndarray):
            images = [_to_tensor(batch)]
        else:
            images = [_to_tensor(np.asarray(image))[None] for image in batch]
        for image in images:
            if image.dtype not in (torch.uint8, torch.float32):
                # Stimulus yields only uint8 or float32; anything else would be mis-scaled by
                # torchvision's convert_image_dtype (int64 is divided by 2**63 - 1).
                raise TypeError(f"expected uint8 or float32 images, got {image.dtype}")
        if not self._preset:
            out = torch.cat([self.transform(image.to(self.device)).float() for image in images])
            memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
            return out.contiguous(memory_format=memory_format)
        from torchvision.transforms import functional as tvf

        cropped = [
            tvf.center_crop(
                tvf.resize(
                    image.to(self.device),
                    self.resize_size,
                    interpolation=self.interpolation,
                    antialias=self.antialias,
                ),
                self.crop_size,
            )
            for image in images
        ]
        rows = sum(image.shape[0] for image in cropped)
        out = self._output(rows, tuple(cropped[0].shape[1:]))
        start = 0
        for image in cropped:
            target = out[start : start + image.shape[0]]
            target.copy_(image)
            if image.dtype == torch.uint8:
                target.div_(255.0)  # convert_image_dtype: image.to(float32) / 255
            start += image.shape[0]
        return out.sub_(self.mean).div_(self.std)  # normalize: sub_(mean).div_(std)

    def identity(self) -> tuple[object, ...] | None:
        """Every parameter of the computation, for the feature cache; ``None`` when unknown.

        A torchvision preset or an :class:`~berg_core.torchkit.ImageTransform` is described by
        its sizes, interpolation, antialiasing, mean, std and the memory format; an arbitrary
        callable cannot be described, so its features are never cached.
        """
        if not self._preset:
            return None
        return (
            "preset",
            tuple(int(n) for n in self.resize_size),
            tuple(int(n) for n in self.crop_size),
            str(self.interpolation),
            bool(self.antialias),
            tuple(float(v) for v in self.mean.flatten().tolist()),
            tuple(float(v) for v in self.std.flatten().tolist()),
            bool(self.channels_last),
        )

    def _output(self, rows: int, shape: tuple[int, ...]) -> torch.Tensor:
        buffer = self._buffer
        if buffer is None or buffer.shape[0] < rows or tuple(buffer.shape[1:]) != shape:
            self._buffer = None
            memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
            buffer = torch.empty(
                (rows, *shape), dtype=torch.float32, device=self.device, memory_format=memory_format
            )
            self._buffer = buffer
        return buffer[:rows]

    def release(self) -> None:
        """Drop the reusable buffer."""
        self._buffer = None
