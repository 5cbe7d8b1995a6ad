"""Small simulated NSD and THINGS-fMRI1 subjects, in the published file formats, with a known brain.

Everything written here is labelled SIMULATED: a ``SIMULATED_DATA.txt`` file at the dataset root
(which the readers detect, so trained models, metadata, figures and printed summaries say so),
and the ground truth in ``simulation_truth.npz`` beside it.

The ground truth is a linear encoding model in the feature space of a backbone (by default the
untrained AlexNet, whose features need no download): for each image, ``m`` latent values are the
projections of its standardised backbone features on their ``m`` leading principal directions
(over the subject's images), and each "visual" vertex/voxel responds with a random linear mix of
them, scaled to unit variance. Each trial adds Gaussian noise of standard deviation
``1 / ncsnr`` (``ncsnr`` drawn per vertex), and each session has its own offset and gain, which
the per-session z-scoring removes. The noise ceiling of an ``n``-trial average is then exactly
``ncsnr² / (ncsnr² + 1/n)``, the value written to the ``ncsnr`` / ``nc_*`` files. Vertices outside
the visual set carry noise only (ncsnr 0), and a few are constant zero, as NSD's medial wall.

Sizes differ from the real datasets where the formats allow it (documented per function): fewer
images, trials and sessions, and small stimulus images (the real ``imgBrick`` holds 73,000 images
of 425 x 425; berg's preprocessing resizes any size to 224 x 224). Vertex and voxel counts are
the real ones (163,842 per hemisphere; 211,339 voxels), because the published models' loaders
require them.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from berg_nsd.fsaverage import N_VERTICES, ROI_ATLASES

from berg_train.datasets.base import SIMULATED_MARKER

__all__ = [
    "NSD_ROI_ATLASES",
    "SimulatedDataset",
    "simulate_nsd",
    "simulate_things",
    "smooth_images",
]

#: The ROI names of each NSD fsaverage atlas, in colour-table order (value 1, 2, ...).
NSD_ROI_ATLASES = ROI_ATLASES
#: ROIs left empty in the simulation (the real atlases have empty ROIs too).
_EMPTY_ROIS = ("mTL-bodies", "mTL-words")


@dataclass
class SimulatedDataset:
    """Where a simulated dataset was written and its ground truth.

    Attributes
    ----------
    root : Path
        Dataset root (pass it to the reader / ``berg train``).
    subject : int
    truth_path : Path
        ``simulation_truth.npz``: per output the visual columns (``{out}_columns``), their
        noise-free responses to every feature row's image (``{out}_signal``, rows in the reader's
        feature-row order) and ``{out}_ncsnr`` over all columns.
    backbone : str
        Backbone whose features define the truth.
    """

    root: Path
    subject: int
    truth_path: Path
    backbone: str

    def truth(self) -> dict[str, np.ndarray]:
        """The arrays of :attr:`truth_path`."""
        with np.load(self.truth_path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}


def smooth_images(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """*n* random smooth colour images ``(n, size, size, 3)`` uint8: gratings and blobs."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        image = np.zeros((size, size, 3), dtype=np.float32)
        for _ in range(3):
            theta, freq, phase = rng.uniform(0, np.pi), rng.uniform(1, 6), rng.uniform(0, 6.3)
            wave = np.sin(2 * np.pi * freq * (x * np.cos(theta) + y * np.sin(theta)) + phase)
            image += wave[..., None] * rng.uniform(-1, 1, 3)
        for _ in range(int(rng.integers(1, 4))):
            cx, cy, width = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
            blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * width**2))
            image += 2 * blob[..., None] * rng.uniform(-1, 1, 3)
        image = (image - image.min()) / max(float(np.ptp(image)), 1e-6)
        out[i] = np.clip(image * 255, 0, 255).astype(np.uint8)
    return out


def _marker(root: Path, what: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / SIMULATED_MARKER).write_text(
        f"SIMULATED DATA - NOT REAL BRAIN RESPONSES.\n\n"
        f"This folder is a simulated {what} written by berg-train (berg_train.simulate) in the "
        f"dataset's published file formats, with a known linear ground truth (see "
        f"simulation_truth.npz). Models trained on it are labelled SIMULATED.\n"
    )


def _latents(features: np.ndarray, m: int) -> np.ndarray:
    """``(n, m)`` unit-variance projections on the leading principal directions of *features*."""
    x = features.astype(np.float64)
    x -= x.mean(axis=0)
    std = x.std(axis=0)
    std[std == 0] = 1.0
    x /= std
    gram = x @ x.T
    _, vectors = np.linalg.eigh(gram)
    top = vectors[:, ::-1][:, :m]
    return top / top.std(axis=0)


def _signal(latent: np.ndarray, n_columns: int, rng: np.random.Generator) -> np.ndarray:
    weights = rng.normal(size=(latent.shape[1], n_columns))
    signal = latent @ weights
    signal -= signal.mean(axis=0)
    signal /= signal.std(axis=0)
    return signal.astype(np.float32)


class _ArrayImages:
    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def load(self, indices: Any) -> np.ndarray:
        return np.ascontiguousarray(self.images[list(indices)].transpose(0, 3, 1, 2))


def simulate_nsd(
    root: str | os.PathLike[str],
    *,
    subject: int = 1,
    backbone: Any = "alexnet_untrained",
    n_train: int = 400,
    n_test: int = 50,
    n_val: int = 30,
    sessions: int = 4,
    image_size: int = 64,
    visual_vertices: int = 2000,
    latent_dims: int = 6,
    ncsnr_range: tuple[float, float] = (0.5, 1.5),
    seed: int = 0,
    device: str = "auto",
    show_progress: bool = True,
) -> SimulatedDataset:
    """Write a simulated NSD subject (fsaverage betas) under *root*.

    Files, names and keys are NSD's (see :mod:`berg_train.datasets.nsd`). Differences from the
    real dataset: ``imgBrick`` holds ``n_shared + 8 * n_train`` images of ``image_size`` pixels
    (not 73,000 of 425); ``subjectim`` has ``n_shared + n_train`` columns (not 10,000), the first
    ``n_shared`` being the shared images; ``masterordering`` lists only the simulated trials;
    sessions hold ``trials / sessions`` trials (not 750). The subject sees each test image 3
    times, each validation image once or twice and each training image once (some twice).
    Only *subject*'s betas are written.

    Parameters
    ----------
    root : path-like
        Output folder (created).
    subject : int
        1..8.
    backbone : str or Backbone
        Feature space of the ground truth (default: the untrained AlexNet).
    n_train, n_test, n_val : int
        Training (non-shared), test (shared, 3 repeats) and validation (shared) images.
    sessions : int
        Scan sessions.
    image_size : int
        Side of the stored images.
    visual_vertices : int
        Vertices per hemisphere with a signal (the rest are noise).
    latent_dims : int
        Dimensions of the ground-truth latent space.
    ncsnr_range : (float, float)
        Range of the per-vertex noise-ceiling SNR of visual vertices.
    seed : int
        Random seed.
    device : str
        Device for the backbone.
    show_progress : bool
        Progress bars.

    Returns
    -------
    SimulatedDataset
    """
    import h5py
    import nibabel as nib
    from scipy.io import savemat

    from berg_train.datasets.nsd import EXPDESIGN, LABEL_DIR, STIMULI, NSDImages, betas_dir
    from berg_train.features import extract_array

    root = Path(root)
    rng = np.random.default_rng(seed)
    _marker(root, "Natural Scenes Dataset subject (fsaverage betas)")
    n_shared = n_test + n_val
    n_brick = n_shared + 8 * n_train
    perm = rng.permutation(n_brick)
    shared_ids = np.sort(perm[:n_shared])
    subjectim = np.empty((8, n_shared + n_train), dtype=np.int64)
    for s in range(8):
        subjectim[s, :n_shared] = shared_ids
        subjectim[s, n_shared:] = np.sort(
            perm[n_shared + s * n_train : n_shared + (s + 1) * n_train]
        )
    stim_path = root / STIMULI
    stim_path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(stim_path, "w") as h5:
        brick = h5.create_dataset(
            "imgBrick", shape=(n_brick, image_size, image_size, 3), dtype="uint8",
            chunks=(1, image_size, image_size, 3),
        )  # fmt: skip
        for start in range(0, n_brick, 256):
            stop = min(n_brick, start + 256)
            brick[start:stop] = smooth_images(stop - start, image_size, rng)

    # the schedule: positions (0-based columns of subjectim) of every trial
    shared_pos = rng.permutation(n_shared)
    test_pos, val_pos = shared_pos[:n_test], shared_pos[n_test:]
    train_pos = np.arange(n_shared, n_shared + n_train)
    trials = [np.repeat(test_pos, 3), val_pos, val_pos[rng.random(n_val) < 0.5], train_pos]
    trials.append(train_pos[rng.random(n_train) < 0.2])
    schedule = np.concatenate(trials)
    pad = (-schedule.size) % sessions
    schedule = np.concatenate([schedule, rng.choice(train_pos, pad, replace=False)])
    schedule = schedule[rng.permutation(schedule.size)]
    per_session = schedule.size // sessions
    (root / EXPDESIGN).parent.mkdir(parents=True, exist_ok=True)
    savemat(
        root / EXPDESIGN,
        {
            "masterordering": (schedule + 1).astype(np.float64)[None, :],
            "subjectim": (subjectim + 1).astype(np.float64),
            "sharedix": (shared_ids + 1).astype(np.float64)[None, :],
        },
    )

    # ground truth in the backbone's feature space, over the subject's images
    subject_ids = subjectim[subject - 1]
    images = NSDImages(stim_path, subject_ids)
    features = extract_array(
        backbone, images, device=device, show_progress=show_progress, desc="Simulation features"
    )
    images.close()
    latent = _latents(features, latent_dims)
    del features

    folder = betas_dir(root, subject)
    folder.mkdir(parents=True, exist_ok=True)
    label_dir = root / LABEL_DIR
    label_dir.mkdir(parents=True, exist_ok=True)
    truth: dict[str, np.ndarray] = {}
    for hemi in ("lh", "rh"):
        order = rng.permutation(N_VERTICES)
        visual = np.sort(order[:visual_vertices])
        dead = np.sort(order[visual_vertices : visual_vertices + 200])
        signal = _signal(latent, visual.size, rng)  # (subject images, visual)
        ncsnr = np.zeros(N_VERTICES, dtype=np.float32)
        ncsnr[visual] = rng.uniform(*ncsnr_range, visual.size)
        noise_sd = np.ones(N_VERTICES, dtype=np.float32)
        noise_sd[visual] = 1.0 / ncsnr[visual]
        for number in range(1, sessions + 1):
            positions = schedule[(number - 1) * per_session : number * per_session]
            data = rng.standard_normal((positions.size, N_VERTICES), dtype=np.float32)
            data *= noise_sd
            data[:, visual] += signal[positions]
            data *= np.float32(rng.uniform(0.5, 2.0))
            data += rng.normal(0, 1, N_VERTICES).astype(np.float32)
            data[:, dead] = 0.0
            image = nib.MGHImage(np.ascontiguousarray(data.T)[:, None, None, :], np.eye(4))
            nib.save(image, folder / f"{hemi}.betas_session{number:02d}.mgh")
            del data, image
        nib.save(nib.MGHImage(ncsnr[:, None, None], np.eye(4)), folder / f"{hemi}.ncsnr.mgh")
        _write_nsd_labels(label_dir, hemi, visual, rng)
        truth[f"{hemi}_columns"] = visual
        truth[f"{hemi}_ncsnr"] = ncsnr
        truth[f"{hemi}_signal_by_position"] = signal
    truth["subject_image_ids"] = subject_ids
    truth_path = root / "simulation_truth.npz"
    np.savez(truth_path, latent=latent, **truth)
    return SimulatedDataset(root, subject, truth_path, str(getattr(backbone, "name", backbone)))


def _write_nsd_labels(
    folder: Path, hemi: str, visual: np.ndarray, rng: np.random.Generator
) -> None:
    import nibabel as nib

    for atlas, names in NSD_ROI_ATLASES.items():
        labels = np.zeros(N_VERTICES, dtype=np.int32)
        if atlas == "nsdgeneral":
            labels[visual] = 1
        else:
            members = rng.permutation(visual)
            parts = np.array_split(members[: int(0.8 * members.size)], len(names))
            for value, (name, part) in enumerate(zip(names, parts, strict=True), start=1):
                if name not in _EMPTY_ROIS:
                    labels[part] = value
        nib.save(nib.MGHImage(labels[:, None, None], np.eye(4)), folder / f"{hemi}.{atlas}.mgz")
        lines = ["0 Unknown"] + [f"{v} {name}" for v, name in enumerate(names, start=1)]
        (folder / f"{hemi}.{atlas}.mgz.ctab").write_text("\n".join(lines) + "\n")


def simulate_things(
    root: str | os.PathLike[str],
    *,
    subject: int = 1,
    backbone: Any = "alexnet_untrained",
    n_train: int = 150,
    n_test: int = 10,
    test_repeats: int = 4,
    image_size: int = 48,
    visual_voxels: int = 3000,
    latent_dims: int = 5,
    ncsnr_range: tuple[float, float] = (0.5, 1.5),
    seed: int = 0,
    device: str = "auto",
    show_progress: bool = True,
) -> SimulatedDataset:
    """Write a simulated THINGS-fMRI1 subject under *root*.

    Files, names and columns are THINGS-fMRI1's (see :mod:`berg_train.datasets.things`), with
    all 211,339 voxels. Differences from the real dataset: *n_train* training images (not 8,640),
    *n_test* test images repeated *test_repeats* times (not 100 x 12), one session per test
    repeat, two ``catch`` trials per session, and small JPEG images.

    Parameters
    ----------
    root : path-like
        Output folder (created); images go to ``root/images/{concept}/{stimulus}``.
    subject : int
        1..3.
    backbone : str or Backbone
        Feature space of the ground truth.
    n_train, n_test, test_repeats : int
        Training images (one trial each), test images and their repeats.
    image_size : int
        Side of the images.
    visual_voxels : int
        Voxels with a signal.
    latent_dims : int
        Dimensions of the ground-truth latent space.
    ncsnr_range : (float, float)
        Range of the per-voxel noise-ceiling SNR of visual voxels.
    seed : int
        Random seed.
    device : str
        Device for the backbone.
    show_progress : bool
        Progress bars.

    Returns
    -------
    SimulatedDataset
    """
    import h5py
    from berg_things.card import N_VOXELS, ROIS
    from PIL import Image

    from berg_train.datasets.things import RESPONSES, ThingsImages
    from berg_train.features import extract_array

    root = Path(root)
    rng = np.random.default_rng(seed)
    _marker(root, "THINGS-fMRI1 subject")
    sub = f"sub-{subject:02d}"
    n_images = n_train + n_test
    concepts = [f"concept{i % 40:02d}" for i in range(n_images)]
    stimuli = [f"{c}_{i:04d}s.jpg" for i, c in enumerate(concepts)]
    pixels = smooth_images(n_images, image_size, rng)
    for concept, stimulus, image in zip(concepts, stimuli, pixels, strict=True):
        (root / "images" / concept).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "images" / concept / stimulus, quality=95)
    source = ThingsImages(root / "images", concepts, stimuli)
    features = extract_array(
        backbone, source, device=device, show_progress=show_progress, desc="Simulation features"
    )
    latent = _latents(features, latent_dims)
    del features

    # trials: one session per test repeat; training images spread over the sessions
    sessions = test_repeats
    train_split = np.array_split(rng.permutation(n_train), sessions)
    table = []
    for session in range(1, sessions + 1):
        items = [("train", i) for i in train_split[session - 1]]
        items += [("test", n_train + j) for j in range(n_test)]
        items += [("catch", int(rng.integers(n_train))) for _ in range(2)]
        for kind, index in (items[i] for i in rng.permutation(len(items))):
            table.append((session, kind, index))
    image_of_trial = np.array([index for _, _, index in table])
    session_of_trial = np.array([s for s, _, _ in table])

    visual = np.sort(rng.permutation(N_VOXELS)[:visual_voxels])
    signal = _signal(latent, visual.size, rng)
    ncsnr = np.zeros(N_VOXELS, dtype=np.float32)
    ncsnr[visual] = rng.uniform(*ncsnr_range, visual.size)
    noise_sd = np.ones(N_VOXELS, dtype=np.float32)
    noise_sd[visual] = 1.0 / ncsnr[visual]
    n_trials = len(table)
    responses = np.empty((N_VOXELS, n_trials), dtype=np.float32)
    for session in range(1, sessions + 1):
        cols = np.flatnonzero(session_of_trial == session)
        data = rng.standard_normal((cols.size, N_VOXELS), dtype=np.float32) * noise_sd
        data[:, visual] += signal[image_of_trial[cols]]
        data *= np.float32(rng.uniform(0.5, 2.0))
        data += rng.normal(0, 1, N_VOXELS).astype(np.float32)
        responses[:, cols] = data.T
        del data
    with h5py.File(root / f"{sub}_ResponseData.h5", "w") as h5:
        h5.create_dataset(RESPONSES, data=responses)
        h5.create_dataset("ResponseData/axis0", data=np.arange(n_trials, dtype=np.int64))
        h5.create_dataset("ResponseData/axis1", data=np.arange(N_VOXELS, dtype=np.int64))
    del responses
    with open(root / f"{sub}_StimulusMetadata.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(
            ["subject_id", "trial_id", "session", "run", "trial_type", "stimulus", "concept"]
        )
        for trial, (session, kind, index) in enumerate(table):
            writer.writerow([sub, trial, session, 1, kind, stimuli[index], concepts[index]])
    nc_single = 100 * ncsnr**2 / (ncsnr**2 + 1.0)
    nc_test = 100 * ncsnr**2 / (ncsnr**2 + 1.0 / test_repeats)
    coords = np.stack(np.unravel_index(rng.permutation(72 * 91 * 76)[:N_VOXELS], (72, 91, 76)), 1)
    roi_columns = {name: name.replace("_prf", " (prf)") for name in ROIS}
    roi_masks = np.zeros((N_VOXELS, len(ROIS)), dtype=np.int8)
    members = rng.permutation(visual)
    for j, part in enumerate(np.array_split(members, len(ROIS))):
        if ROIS[j] != "rSTS":  # one empty ROI, as real data can have
            roi_masks[part, j] = 1
    numeric = np.column_stack(
        [
            np.arange(N_VOXELS),
            coords,
            nc_single,
            nc_test,
            rng.uniform(-0.2, 0.9, N_VOXELS),
            rng.uniform(-0.2, 0.8, N_VOXELS),
            rng.uniform(0, 10, (N_VOXELS, 4)),
            roi_masks,
        ]
    )
    header = [
        "voxel_id", "voxel_x", "voxel_y", "voxel_z", "nc_singletrial", "nc_testset",
        "splithalf_corrected", "splithalf_uncorrected", "prf-eccentricity", "prf-polarangle",
        "prf-rsquared", "prf-size", *roi_columns.values(),
    ]  # fmt: skip
    formats = ["%d"] * 4 + ["%.6g"] * 8 + ["%d"] * len(ROIS)
    np.savetxt(
        root / f"{sub}_VoxelMetadata.csv",
        numeric,
        fmt=formats,
        delimiter=",",
        header=",".join(header),
        comments="",
    )
    truth_path = root / "simulation_truth.npz"
    np.savez(
        truth_path,
        latent=latent,
        responses_columns=visual,
        responses_ncsnr=ncsnr,
        responses_signal_by_image=signal,
        image_stimuli=np.array(stimuli),
    )
    return SimulatedDataset(root, subject, truth_path, str(getattr(backbone, "name", backbone)))
