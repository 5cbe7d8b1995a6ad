"""Facts of the THINGS EEG2 family, defined once: subjects, channels, time axis, repetitions, files.

Public (``PUBLIC_MODULES``): other plugins (berg-train's ``things-eeg2`` trainer) read the layout
and axes from here. Imports numpy only.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CHANNELS",
    "FOLDERS",
    "N_REPETITIONS",
    "N_TIMES",
    "REPETITIONS",
    "ROOT",
    "SUBJECTS",
    "TIMES",
    "metadata_file",
    "weights_file",
]

#: Subjects with model files.
SUBJECTS = tuple(range(1, 11))
#: The 63 EEG channels in the subjects' metadata order (``metadata['eeg']['ch_names']``).
CHANNELS = (
    "Fp1 F3 F7 FT9 FC5 FC1 C3 T7 TP9 CP5 CP1 Pz P3 P7 O1 Oz O2 P4 P8 TP10 CP6 CP2 Cz C4 T8 FT10 "
    "FC6 FC2 F4 F8 Fp2 AF7 AF3 AFz F1 F5 FT7 FC3 FCz C1 C5 TP7 CP3 P1 P5 PO7 PO3 POz PO4 PO8 P6 "
    "P2 CPz CP4 TP8 C6 C2 FC4 FT8 F6 F2 AF4 AF8"
).split()
#: Time points per channel: -0.1 s to 0.595 s at 200 Hz (``metadata['eeg']['times']``).
N_TIMES = 140
#: The subjects' time axis in seconds (index 20 is stimulus onset).
TIMES = np.round(np.arange(-20, N_TIMES - 20) * 0.005, 3)
#: Repetitions: one regression (and, in newer files, one PCA) per training repetition.
N_REPETITIONS = 4
REPETITIONS = tuple(f"rep-{r}" for r in range(1, N_REPETITIONS + 1))
#: Model folder (``model-<folder>``) of each model id.
FOLDERS = {
    "eeg-things_eeg_2-vit_b_32": "vit_b_32",
    "eeg-things_eeg_2-alexnet": "alexnet",
    "eeg-things_eeg_2-alexnet_untrained": "alexnet_untrained",
}
ROOT = "encoding_models/modality-eeg/train_dataset-things_eeg_2/model-{folder}"


def weights_file(folder: str) -> str:
    """Path template of a model's weights file under berg_dir (and in the public bucket)."""
    return ROOT.format(folder=folder) + "/encoding_models_weights/weights_subject-{subject:02d}.npy"


def metadata_file(folder: str) -> str:
    """Path template of a model's per-subject metadata file."""
    return ROOT.format(folder=folder) + "/metadata/metadata_subject-{subject:02d}.npy"
