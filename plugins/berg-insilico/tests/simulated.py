"""A simulated encoder whose areas prefer planted image classes (a berg plugin module).

``sim-insilico`` (subjects 1-4) returns ``(N, 3, 4)``: area (``A``, ``B``, ``N``) x column.
An image's class is planted in its colour: red mean > 127.5 drives A (+2), else suppresses it
(-2); green likewise drives or suppresses B; area N has no signal. Every subject adds its own
noise (sd 1 per position, drawn from a generator seeded by the subject and the image's bytes, so
the same image always gets the same noise in one subject, independent across subjects).
Columns scale the signal by 1, 1.25, 1.5, 1.75.
"""

from __future__ import annotations

import hashlib

import numpy as np

from berg_core import Dim, EncodingModel, ModelCard, Output, hookimpl

AREAS = ("A", "B", "N")
GAIN = np.array([1.0, 1.25, 1.5, 1.75])
SIGNAL = 2.0
CARD = ModelCard(
    model_id="sim-insilico",
    modality="simulated",
    training_dataset="none",
    species="simulated",
    model_type="planted colour preferences + subject noise",
    subjects=(1, 2, 3, 4),
    outputs=(
        Output(
            name="responses",
            dims=(Dim(name="area", size=3, coords=AREAS), Dim(name="column", size=4)),
        ),
    ),
)


def signal(images: np.ndarray) -> np.ndarray:
    """``(N, 3)``: the planted signal of areas A, B, N (before gains and noise)."""
    images = np.asarray(images, dtype=np.float64)
    red, green = images[:, 0].mean(axis=(1, 2)), images[:, 1].mean(axis=(1, 2))
    out = np.zeros((len(images), 3))
    out[:, 0] = np.where(red > 127.5, SIGNAL, -SIGNAL)
    out[:, 1] = np.where(green > 127.5, SIGNAL, -SIGNAL)
    return out


def responses(images: np.ndarray, subject: int) -> np.ndarray:
    """The model's responses ``(N, 3, 4)``, computed independently of berg."""
    out = signal(images)[:, :, None] * GAIN
    for i, image in enumerate(np.asarray(images)):
        seed = int.from_bytes(hashlib.sha256(image.tobytes()).digest()[:8], "little") + subject
        out[i] += np.random.default_rng(seed).normal(0, 1, (3, 4))
    return out.astype(np.float32)


class SimModel(EncodingModel):
    batch_size = 7  # blocks are split into several batches

    def output_shapes(self):
        return ((3, 4),)

    def encode_batches(self, stimulus):
        for batch in stimulus.batches(self.batch_size):
            yield (responses(batch, self.subject),)


@hookimpl
def register_models(register):
    register(CARD, SimModel)


def make_images(n: int, seed: int = 0, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images ``(n, 3, size, size)`` and their classes (0-3: red high, green high)."""
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, 4, n)
    images = rng.integers(0, 256, (n, 3, size, size)).astype(np.uint8)
    for channel, bit in ((0, 1), (1, 2)):
        high = (classes & bit) > 0
        low_values = rng.integers(0, 100, (n, size, size))
        high_values = rng.integers(156, 256, (n, size, size))
        images[:, channel] = np.where(high[:, None, None], high_values, low_values)
    return images, classes
