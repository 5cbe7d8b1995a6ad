"""Reader of the reference's prepared THINGS EEG2 layout, for training (every file checked).

Files of subject ``N`` (the reference's ``01_prepare_data`` output, more-families.md §2.6), under
``<data>/model_training_datasets/train_dataset-things_eeg_2/`` (or ``<data>`` itself):

* ``eeg_sub-{NN}_split-train.h5``, dataset ``eeg``: float32 ``(n_train_images, 4, 63, 140)``
  (image condition, repetition, channel, time);
* ``eeg_sub-{NN}_split-test.h5``, dataset ``eeg``: float32 ``(n_test_images, R, 63, 140)``
  (R = 80 in the real data);
* ``metadata_subject-{N}.npy`` (N unpadded): a pickled dict with ``ch_names`` (63 str),
  ``times`` (140,), ``train_img_info`` and ``test_img_info`` (``{train,test}_img_files`` and,
  when present, ``{train,test}_img_concepts``), read with berg's safe loader;

and the THINGS EEG2 image set: ``<images>/training_images/<concept>/<file>`` and
``<images>/test_images/<concept>/<file>``. As the reference, the images of a split are the
sorted list of ``.jpg``/``.JPEG`` files under its folder; row ``i`` of the EEG is image ``i`` of
that list, which must be the ``i``-th of the metadata's ``img_files`` (and ``img_concepts``).

Targets are flattened channel-major (``channel * 140 + time``), as the reference's training and
berg-things-eeg2's regression rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from berg_things_eeg2.layout import CHANNELS, N_REPETITIONS, N_TIMES

from berg_core import InvalidParameterError
from berg_train.datasets.base import ImageFiles, is_simulated

__all__ = [
    "DATA_FOLDER",
    "EEG_DATASET",
    "IMAGE_SUFFIXES",
    "EEG2Images",
    "ThingsEEG2Data",
    "list_images",
]

#: Folder of the prepared files under the data root (the reference's layout).
DATA_FOLDER = Path("model_training_datasets") / "train_dataset-things_eeg_2"
#: The HDF5 dataset holding the EEG.
EEG_DATASET = "eeg"
#: File endings the reference lists as images.
IMAGE_SUFFIXES = (".jpg", ".JPEG")
#: Image-set sub-folder of each split.
_IMAGE_FOLDERS = {"train": "training_images", "test": "test_images"}


def list_images(folder: Path) -> list[Path]:
    """The reference's image list: every ``.jpg``/``.JPEG`` file under *folder*, sorted by path."""
    found = [
        path
        for path in Path(folder).rglob("*")
        if path.is_file() and path.name.endswith(IMAGE_SUFFIXES)
    ]
    return sorted(found, key=lambda path: str(path))


class EEG2Images(ImageFiles):
    """Images at given paths, decoded to uint8 ``(3, H, W)`` (a list: sizes may differ)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        super().__init__(paths, "THINGS EEG2 image")


def _names(value: Any, where: str) -> list[str]:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise InvalidParameterError(f"{where} is a {type(value).__name__}; expected a list of str")
    return list(value)


class ThingsEEG2Data:
    """One THINGS EEG2 subject in the reference's prepared layout, checked on construction.

    Parameters
    ----------
    data : path-like
        The prepared-data root (holding ``model_training_datasets/train_dataset-things_eeg_2``)
        or that folder itself.
    images : path-like
        The THINGS EEG2 ``image_set`` folder (``training_images``, ``test_images``).
    subject : int
        1..10.

    Raises
    ------
    berg_core.InvalidParameterError
        A missing file or key; an EEG array of the wrong rank, dtype, channel or time count, or
        without 4 training repetitions; metadata whose channels, times or image lists do not
        fit the EEG or the image folders. The message names the file and the key.
    """

    dataset_id = "things_eeg_2"

    def __init__(self, data: str | Path, images: str | Path, subject: int) -> None:
        if isinstance(subject, bool) or not isinstance(subject, (int, np.integer)):
            raise InvalidParameterError(f"subject must be an int 1..10, got {subject!r}")
        if not 1 <= int(subject) <= 10:
            raise InvalidParameterError(f"THINGS EEG2 subject must be 1..10, got {subject}")
        self.subject = int(subject)
        root = Path(data)
        self.folder = root / DATA_FOLDER if (root / DATA_FOLDER).is_dir() else root
        self.root = root
        self.simulated = is_simulated(root) or is_simulated(self.folder)
        sub = f"{self.subject:02d}"
        self.files = {
            "train": self.folder / f"eeg_sub-{sub}_split-train.h5",
            "test": self.folder / f"eeg_sub-{sub}_split-test.h5",
            "metadata": self.folder / f"metadata_subject-{self.subject}.npy",
        }
        for key, path in self.files.items():
            if not path.is_file():
                raise InvalidParameterError(
                    f"THINGS EEG2 {key} file not found: {path} (expected the reference's "
                    f"prepared layout {DATA_FOLDER}/eeg_sub-{sub}_split-{{train,test}}.h5 and "
                    f"metadata_subject-{self.subject}.npy)"
                )
        self.train_shape = self._eeg_shape("train")
        self.test_shape = self._eeg_shape("test")
        if self.train_shape[1] != N_REPETITIONS:
            raise InvalidParameterError(
                f"{self.files['train']}: dataset '{EEG_DATASET}' has {self.train_shape[1]} "
                f"repetitions (shape {self.train_shape}); THINGS EEG2 training data has "
                f"{N_REPETITIONS}, one regression each"
            )
        if self.test_shape[1] < 2:
            raise InvalidParameterError(
                f"{self.files['test']}: dataset '{EEG_DATASET}' has {self.test_shape[1]} "
                f"repetitions (shape {self.test_shape}); at least 2 are needed (80 in THINGS EEG2)"
            )
        self._read_metadata()
        image_root = Path(images)
        self.image_dir = image_root
        self.train_images = self._image_list("train", image_root, self.train_shape[0])
        self.test_images = self._image_list("test", image_root, self.test_shape[0])
        self.images = EEG2Images(self.train_images + self.test_images)
        self.n_train = self.train_shape[0]
        self.n_test = self.test_shape[0]
        self.test_repeats = int(self.test_shape[1])

    # -- checks --------------------------------------------------------------------------------
    def _eeg_shape(self, split: str) -> tuple[int, ...]:
        import h5py

        path = self.files[split]
        try:
            h5 = h5py.File(path, "r")
        except OSError as exc:
            raise InvalidParameterError(f"{path} is not a readable HDF5 file ({exc})") from None
        with h5:
            if EEG_DATASET not in h5:
                raise InvalidParameterError(
                    f"{path} has no dataset '{EEG_DATASET}' (found: {', '.join(h5) or 'none'})"
                )
            dataset = h5[EEG_DATASET]
            shape, dtype = tuple(int(s) for s in dataset.shape), dataset.dtype
        expected = f"(images, repetitions, {len(CHANNELS)}, {N_TIMES}) float32"
        if len(shape) != 4 or shape[2:] != (len(CHANNELS), N_TIMES) or shape[0] < 1:
            raise InvalidParameterError(
                f"{path}: dataset '{EEG_DATASET}' has shape {shape}; expected {expected}"
            )
        if dtype != np.float32:
            raise InvalidParameterError(
                f"{path}: dataset '{EEG_DATASET}' has dtype {dtype}; expected {expected}"
            )
        return shape

    def _read_metadata(self) -> None:
        from berg_core.safe_npy import in_memory, load_pickled_npy

        path = self.files["metadata"]
        try:
            meta = in_memory(load_pickled_npy(path))
        except Exception as exc:  # ModelLoadError and friends: name the file as an input
            raise InvalidParameterError(f"{path} cannot be read as a pickled dict: {exc}") from None
        if not isinstance(meta, Mapping):
            raise InvalidParameterError(f"{path} holds a {type(meta).__name__}; expected a dict")
        source = meta["eeg"] if isinstance(meta.get("eeg"), Mapping) else meta
        for key in ("ch_names", "times"):
            if key not in source:
                raise InvalidParameterError(f"{path} has no key {key!r}")
        for key in ("train_img_info", "test_img_info"):
            if not isinstance(meta.get(key), Mapping):
                raise InvalidParameterError(f"{path} has no dict {key!r}")
        self.ch_names = _names(source["ch_names"], f"{path}['ch_names']")
        if len(self.ch_names) != len(CHANNELS):
            raise InvalidParameterError(
                f"{path}['ch_names'] lists {len(self.ch_names)} channels; the EEG has "
                f"{len(CHANNELS)}"
            )
        times = np.asarray(source["times"])
        if times.shape != (N_TIMES,) or not np.issubdtype(times.dtype, np.number):
            raise InvalidParameterError(
                f"{path}['times'] has shape {times.shape} and dtype {times.dtype}; expected "
                f"({N_TIMES},) numbers (seconds)"
            )
        self.times = times.astype(np.float64)
        self.train_img_info = dict(meta["train_img_info"])
        self.test_img_info = dict(meta["test_img_info"])

    def _image_list(self, split: str, image_root: Path, n_eeg: int) -> list[Path]:
        folder = image_root / _IMAGE_FOLDERS[split]
        if not folder.is_dir():
            raise InvalidParameterError(f"THINGS EEG2 image folder not found: {folder}")
        paths = list_images(folder)
        info_key = f"{split}_img_info"
        info = getattr(self, info_key)
        meta = self.files["metadata"]
        files_key = f"{split}_img_files"
        if files_key not in info:
            raise InvalidParameterError(f"{meta}['{info_key}'] has no key {files_key!r}")
        files = _names(info[files_key], f"{meta}['{info_key}']['{files_key}']")
        if len(files) != n_eeg or len(paths) != n_eeg:
            raise InvalidParameterError(
                f"image count mismatch for the {split} split: {self.files[split]} has {n_eeg} "
                f"images, {meta}['{info_key}']['{files_key}'] lists {len(files)}, {folder} holds "
                f"{len(paths)} .jpg/.JPEG files"
            )
        concepts_key = f"{split}_img_concepts"
        concepts = (
            _names(info[concepts_key], f"{meta}['{info_key}']['{concepts_key}']")
            if concepts_key in info
            else None
        )
        for i, path in enumerate(paths):
            wrong_file = path.name != files[i]
            wrong_concept = concepts is not None and path.parent.name != concepts[i]
            if wrong_file or wrong_concept:
                listed = f"{concepts[i]}/{files[i]}" if concepts is not None else files[i]
                raise InvalidParameterError(
                    f"image order mismatch for the {split} split at row {i}: the sorted image "
                    f"list of {folder} has {path.relative_to(folder)}, "
                    f"{meta}['{info_key}'] lists {listed}"
                )
        return paths

    # -- reading -------------------------------------------------------------------------------
    def read_train(self, repetition: int, c0: int, c1: int) -> np.ndarray:
        """Repetition *repetition* (0-based) of channels ``c0:c1``: ``(n_train, (c1-c0)*140)``."""
        import h5py

        with h5py.File(self.files["train"], "r") as h5:
            block = np.asarray(h5[EEG_DATASET][:, repetition, c0:c1, :], dtype=np.float32)
        return block.reshape(block.shape[0], -1)

    def read_test(self, c0: int, c1: int) -> np.ndarray:
        """All test repetitions of channels ``c0:c1``: ``(n_test, R, (c1-c0)*140)`` float32."""
        import h5py

        with h5py.File(self.files["test"], "r") as h5:
            block = np.asarray(h5[EEG_DATASET][:, :, c0:c1, :], dtype=np.float32)
        return block.reshape(block.shape[0], block.shape[1], -1)

    def identity(self) -> dict[str, Any]:
        """What identifies the data, for the resume keys."""
        stats = {k: (str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns)
                 for k, p in self.files.items()}  # fmt: skip
        listing = hashlib.sha256("\n".join(map(str, self.images.paths)).encode()).hexdigest()
        return {
            "dataset": self.dataset_id,
            "subject": self.subject,
            "files": stats,
            "images": listing[:16],
        }

    def fingerprint(self) -> str:
        """Short hash of :meth:`identity`."""
        return hashlib.sha256(repr(sorted(self.identity().items())).encode()).hexdigest()[:16]
