"""A small simulated THINGS EEG2 subject in the reference's prepared layout, with a known truth.

Written under *root* (labelled SIMULATED, as :mod:`berg_train.simulate`'s datasets):

* ``model_training_datasets/train_dataset-things_eeg_2/eeg_sub-SS_split-train.h5`` (``eeg``
  float32 ``(n_train, 4, 63, 140)``), ``..._split-test.h5`` (``(n_test, test_repeats, 63, 140)``)
  and ``metadata_subject-N.npy`` (``ch_names``: the 63 real channel names in the card's order,
  ``times``: -0.1 ... 0.595 s, ``train_img_info`` / ``test_img_info``);
* ``image_set/training_images/<concept>/<file>.jpg`` and ``image_set/test_images/...``;
* ``simulation_truth.npz``: the noise-free responses and the noise SD per column.

Ground truth: ``m`` latent values per image are the standardised backbone features (scaler fitted
on the training images, the transform the trainer uses) projected on their ``m`` leading
principal directions over the training images, scaled to unit variance; every column (channel x
time, channel-major) is a random unit-norm mix of them, so its signal has unit variance over the
training images and lies exactly in the span of the training PCA's leading ``m`` components.
Columns before stimulus onset (t < 0) carry no signal. Every trial adds independent Gaussian
noise of SD ``1 / snr`` (``snr`` drawn per channel from *snr_range*).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from berg_things_eeg2.layout import CHANNELS, N_REPETITIONS, TIMES

from berg_train.simulate import SimulatedDataset, _marker, smooth_images

__all__ = ["simulate_things_eeg2"]


def _names(n: int, split: str) -> tuple[list[str], list[str], list[str]]:
    """Concept folders, THINGS concept names and file names, in sorted-path order."""
    concepts, things, files = [], [], []
    for i in range(n):
        c = i // 2
        word = f"{split}concept{c:04d}"
        concepts.append(f"{c + 1:05d}_{word}")
        things.append(f"{c + 1}_{word}")
        files.append(f"{word}_{i % 2 + 1:02d}{'b' if split == 'train' else 's'}.jpg")
    return concepts, things, files


def simulate_things_eeg2(
    root: str | Path,
    *,
    subject: int = 1,
    model: str = "alexnet_untrained",
    n_train: int = 120,
    n_test: int = 40,
    test_repeats: int = 80,
    image_size: int = 32,
    latent_dims: int = 6,
    snr_range: tuple[float, float] = (0.3, 1.0),
    seed: int = 0,
    device: str = "cpu",
    show_progress: bool = True,
) -> SimulatedDataset:
    """Write a simulated THINGS EEG2 subject under *root* (see the module docstring).

    Parameters
    ----------
    root : path-like
        Output folder; pass it as ``--data`` and ``root/image_set`` as ``--images``.
    subject : int
        1..10.
    model : str
        The backbone (and training transform) of the truth: a THINGS EEG2 model name.
    n_train, n_test, test_repeats : int
        Training images (4 repetitions each), test images and their repetitions.
    image_size : int
        Side of the square JPEG images.
    latent_dims : int
        Dimensions ``m`` of the truth.
    snr_range : (float, float)
        Range of the per-channel single-trial SNR (signal SD / noise SD).
    seed : int
    device : str
    show_progress : bool

    Returns
    -------
    SimulatedDataset
        ``truth()`` holds ``signal`` ``(n_train + n_test, 63 * 140)`` float64 (training rows
        first), ``noise_sd`` ``(63 * 140,)`` and ``latent``.
    """
    import h5py
    from PIL import Image

    from berg_train.datasets.things_eeg2 import DATA_FOLDER, EEG2Images
    from berg_train.eeg2_transform import eeg2_backbone
    from berg_train.features import extract_array

    root = Path(root)
    rng = np.random.default_rng(seed)
    _marker(root, "THINGS EEG2 subject")
    folder = root / DATA_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    paths, info = [], {}
    for split, n, sub in (("train", n_train, "training_images"), ("test", n_test, "test_images")):
        concepts, things, files = _names(n, split)
        pixels = smooth_images(n, image_size, rng)
        for concept, name, image in zip(concepts, files, pixels, strict=True):
            path = root / "image_set" / sub / concept / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path, quality=95)
            paths.append(path)
        info[f"{split}_img_info"] = {
            f"{split}_img_concepts": concepts,
            f"{split}_img_concepts_THINGS": things,
            f"{split}_img_files": files,
        }
    features = extract_array(
        eeg2_backbone(model), EEG2Images(paths), device=device, show_progress=show_progress,
        desc="Simulation features",
    ).astype(np.float64)  # fmt: skip
    mean = features[:n_train].mean(axis=0)
    std = features[:n_train].std(axis=0)
    std[std == 0] = 1.0
    x = (features - mean) / std
    del features
    x -= x[:n_train].mean(axis=0)
    _, vectors = np.linalg.eigh(x[:n_train] @ x[:n_train].T)
    directions = x[:n_train].T @ vectors[:, ::-1][:, :latent_dims]  # (D, m)
    latent = x @ directions
    del x, directions
    latent /= latent[:n_train].std(axis=0)
    n_cols = len(CHANNELS) * len(TIMES)
    weights = rng.normal(size=(latent_dims, n_cols))
    weights /= np.linalg.norm(weights, axis=0)
    weights.reshape(latent_dims, len(CHANNELS), len(TIMES))[:, :, TIMES < 0] = 0.0
    signal = latent @ weights
    snr = rng.uniform(*snr_range, len(CHANNELS))
    noise_sd = np.repeat(1.0 / snr, len(TIMES))
    sub = f"{subject:02d}"
    for split, rows, reps in (
        ("train", slice(0, n_train), N_REPETITIONS),
        ("test", slice(n_train, n_train + n_test), test_repeats),
    ):
        base = signal[rows][:, None, :]
        noise = rng.standard_normal((base.shape[0], reps, n_cols)) * noise_sd
        eeg = (base + noise).astype(np.float32).reshape(-1, reps, len(CHANNELS), len(TIMES))
        with h5py.File(folder / f"eeg_sub-{sub}_split-{split}.h5", "w") as h5:
            h5.create_dataset("eeg", data=eeg)
        del noise, eeg
    metadata = {"ch_names": list(CHANNELS), "times": TIMES.copy(), **info}
    np.save(folder / f"metadata_subject-{subject}.npy", metadata, allow_pickle=True)
    truth_path = root / "simulation_truth.npz"
    np.savez(truth_path, signal=signal, noise_sd=noise_sd, latent=latent)
    return SimulatedDataset(root, subject, truth_path, model)
