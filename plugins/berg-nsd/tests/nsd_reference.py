"""Test helpers: reference-layout berg_dirs with random weights, and an independent pipeline.

``write_model_files`` writes ``weights_subject-SS.npy`` and ``metadata_subject-SS.npy`` exactly
as the reference toolkit lays them out (pickled dicts saved with ``np.save``; real vertex counts;
real ROI names with the sizes of the reference card, empty ROIs included), with ``k`` random PCA
components instead of 250.

``ReferencePipeline`` recomputes responses the way the reference toolkit does, sharing no code
with berg: torchvision's transform on the whole uint8 tensor, ``create_feature_extractor`` in
the standard memory format, ``torch.hstack`` of flattened nodes, and scikit-learn
``StandardScaler`` / ``PCA`` / ``LinearRegression`` objects rebuilt from the saved attributes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from error_bounds import exact_readout, feature_sd, readout_bound

UNTRAINED = "fmri-nsd_fsaverage-alexnet_untrained"
ALEXNET = "fmri-nsd_fsaverage-alexnet"
VIT = "fmri-nsd_fsaverage-vit_b_32"
SUBJECT = 1
N_VERTICES = 163_842
ROOT = "encoding_models/modality-fmri/train_dataset-nsd_fsaverage"
ALEXNET_NODES = [
    "features.2",
    "features.5",
    "features.7",
    "features.9",
    "features.12",
    "classifier.2",
    "classifier.5",
    "classifier.6",
]
VIT_NODES = [f"encoder.layers.encoder_layer_{i}.add_1" for i in range(12)]

#: ROI sizes of the reference card (subject 1), empty ROIs included.
ROI_SIZES = {
    "lh": {
        "V1v": 710, "V1d": 828, "V2v": 632, "V2d": 692, "V3v": 567, "V3d": 669, "hV4": 531,
        "EBA": 3231, "FBA-1": 574, "FBA-2": 0, "mTL-bodies": 0, "OFA": 432, "FFA-1": 552,
        "FFA-2": 0, "mTL-faces": 0, "aTL-faces": 329, "OPA": 2021, "PPA": 1859, "RSC": 1298,
        "OWFA": 317, "VWFA-1": 1395, "VWFA-2": 474, "mfs-words": 490, "mTL-words": 475,
        "early": 5758, "midventral": 867, "midlateral": 1091, "midparietal": 1079,
        "ventral": 9680, "lateral": 10253, "parietal": 5176, "nsdgeneral": 18461,
    },
    "rh": {
        "V1v": 444, "V1d": 991, "V2v": 887, "V2d": 725, "V3v": 682, "V3d": 535, "hV4": 765,
        "EBA": 4421, "FBA-1": 206, "FBA-2": 1234, "mTL-bodies": 0, "OFA": 305, "FFA-1": 330,
        "FFA-2": 1003, "mTL-faces": 0, "aTL-faces": 283, "OPA": 2849, "PPA": 1250, "RSC": 1136,
        "OWFA": 590, "VWFA-1": 397, "VWFA-2": 649, "mfs-words": 0, "mTL-words": 0,
        "early": 5634, "midventral": 1050, "midlateral": 1191, "midparietal": 1181,
        "ventral": 9393, "lateral": 10535, "parietal": 4818, "nsdgeneral": 19523,
    },
}  # fmt: skip


def model_folder(berg_dir: Path, folder: str) -> Path:
    return Path(berg_dir) / ROOT / f"model-{folder}"


def weights_path(berg_dir: Path, folder: str, subject: int) -> Path:
    return (
        model_folder(berg_dir, folder)
        / "encoding_models_weights"
        / f"weights_subject-{subject:02d}.npy"
    )


def metadata_path(berg_dir: Path, folder: str, subject: int) -> Path:
    return model_folder(berg_dir, folder) / "metadata" / f"metadata_subject-{subject:02d}.npy"


def make_weights(
    feature_mean: np.ndarray, feature_std: np.ndarray, k: int, rng: np.random.Generator
) -> dict[str, Any]:
    """A weights dict with the reference keys, float32 arrays, and a well-conditioned scaler.

    ``feature_mean``/``feature_std`` are statistics of real backbone features (so standardised
    features are of order one, as with the real files).
    """
    dim = feature_mean.shape[0]
    f32 = np.float32
    rms = float(np.sqrt(np.mean(feature_std**2 + feature_mean**2))) or 1.0
    scale = np.sqrt(feature_std.astype(np.float64) ** 2 + (0.1 * rms) ** 2)
    mean = feature_mean + 0.05 * rng.standard_normal(dim) * scale
    components = rng.standard_normal((k, dim))
    components /= np.linalg.norm(components, axis=1, keepdims=True)
    explained = np.sort(rng.uniform(1.0, 100.0, k))[::-1]
    weights: dict[str, Any] = {
        "scaler_param": {
            "scale_": scale.astype(f32),
            "mean_": mean.astype(f32),
            "var_": (scale**2).astype(f32),
            "n_features_in_": dim,
            "n_samples_seen_": 9000,
        },
        "pca_param": {
            "components_": components.astype(f32),
            "explained_variance_": explained.astype(f32),
            "explained_variance_ratio_": (explained / explained.sum() / 2).astype(f32),
            "singular_values_": np.sqrt(explained * 8999).astype(f32),
            "mean_": (0.01 * rng.standard_normal(dim)).astype(f32),
            "n_components_": k,
            "n_samples_": 9000,
            "noise_variance_": f32(0.5),
            "n_features_in_": dim,
        },
    }
    for hemisphere in ("lh", "rh"):
        weights[f"{hemisphere}_reg_param"] = {
            "coef_": (rng.standard_normal((N_VERTICES, k)) / np.sqrt(k)).astype(f32),
            "intercept_": (0.1 * rng.standard_normal(N_VERTICES)).astype(f32),
            "n_features_in_": k,
        }
    return weights


def make_metadata(rng: np.random.Generator) -> dict[str, Any]:
    """A metadata dict with the reference keys and ROI dicts of the reference sizes."""
    fmri: dict[str, Any] = {}
    for hemisphere in ("lh", "rh"):
        fmri[f"{hemisphere}_ncsnr"] = rng.uniform(0, 1, N_VERTICES).astype(np.float32)
        fmri[f"{hemisphere}_ncsnr_nsdsynthetic"] = rng.uniform(0, 1, N_VERTICES).astype(np.float32)
        fmri[f"{hemisphere}_fsaverage_rois"] = {
            name: np.sort(rng.choice(N_VERTICES, size, replace=False)).astype(np.int64)
            for name, size in ROI_SIZES[hemisphere].items()
        }
    encoding: dict[str, Any] = {
        "train_img_num": np.sort(rng.choice(73000, 9000, replace=False)),
        "val_img_num": np.sort(rng.choice(1000, 485, replace=False)),
        "test_img_num": np.sort(rng.choice(1000, 515, replace=False)),
    }
    for hemisphere in ("lh", "rh"):
        for measure in ("correlation", "r2", "noise_ceiling", "explained_variance"):
            for split in ("nsdcore", "nsdsynthetic"):
                encoding[f"{hemisphere}_{measure}_{split}"] = rng.uniform(0, 1, N_VERTICES).astype(
                    np.float32
                )
    return {"fmri": fmri, "encoding_models": encoding}


def write_model_files(
    berg_dir: Path,
    folder: str,
    subject: int,
    feature_mean: np.ndarray,
    feature_std: np.ndarray,
    *,
    k: int = 16,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write one subject's weights and metadata files; return (weights, metadata)."""
    rng = np.random.default_rng(seed)
    weights = make_weights(feature_mean, feature_std, k, rng)
    metadata = make_metadata(rng)
    for path, data in (
        (weights_path(berg_dir, folder, subject), weights),
        (metadata_path(berg_dir, folder, subject), metadata),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, data, allow_pickle=True)
    return weights, metadata


class ReferencePipeline:
    """Reference-style responses for one model and one weights dict (no berg code involved)."""

    def __init__(self, backbone: Any, nodes: list[str], transform: Any) -> None:
        from torchvision.models.feature_extraction import create_feature_extractor

        self.backbone = backbone.eval()
        self.nodes = list(nodes)
        self.extractor = create_feature_extractor(self.backbone, return_nodes=nodes).eval()
        self.transform = transform

    def features(self, stimulus: np.ndarray) -> np.ndarray:
        """Transform the whole tensor at once, extract, flatten and hstack, as the reference."""
        import torch

        with torch.no_grad():
            images = self.transform(torch.from_numpy(np.ascontiguousarray(stimulus)))
            outputs = self.extractor(images)
            features = torch.hstack([torch.flatten(v, start_dim=1) for v in outputs.values()])
        return features.numpy()

    @staticmethod
    def readout(
        features: np.ndarray, weights: dict[str, Any], lh: Any = None, rh: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """scikit-learn objects rebuilt from the attribute dicts; rows ``lh``/``rh`` kept."""
        from sklearn.decomposition import PCA
        from sklearn.linear_model import LinearRegression
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler()
        for key, value in weights["scaler_param"].items():
            setattr(scaler, key, value)
        pca = PCA(n_components=weights["pca_param"]["n_components_"], random_state=20200220)
        for key, value in weights["pca_param"].items():
            setattr(pca, key, value)
        projected = pca.transform(scaler.transform(features.copy())).astype(np.float32)
        outputs = []
        for hemisphere, rows in (("lh", lh), ("rh", rh)):
            params = weights[f"{hemisphere}_reg_param"]
            reg = LinearRegression()
            index = slice(None) if rows is None else np.asarray(rows)
            reg.coef_ = params["coef_"][index]
            reg.intercept_ = params["intercept_"][index]
            reg.n_features_in_ = params["n_features_in_"]
            outputs.append(reg.predict(projected).astype(np.float32))
        return outputs[0], outputs[1]


def assert_float32_close(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal up to 1e-5 of the response scale: for the ViT backbone only.

    AlexNet comparisons use the bound derived from the arithmetic (:meth:`Model.tolerance`); no
    such error model is written for transformer blocks (layer norm, softmax, GELU), so the ViT
    comparison keeps this fixed tolerance, far above float32 rounding of its sums and far below
    the difference a wrong column or a missing step makes.
    """
    assert actual.dtype == np.float32
    assert actual.shape == expected.shape
    if expected.size == 0:
        return
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * scale)


@dataclass
class Model:
    """Everything a test needs about one model written into the berg_dir."""

    model_id: str
    folder: str
    weights: dict[str, Any]
    metadata: dict[str, Any]
    pipeline: ReferencePipeline
    _features: dict[str, Any] = field(default_factory=dict)

    def features(self, stimulus: np.ndarray) -> np.ndarray:
        """Reference features of *stimulus* (cached by content)."""
        digest = hashlib.sha1(np.ascontiguousarray(stimulus).tobytes()).hexdigest()
        key = f"{stimulus.shape}{stimulus.dtype}{digest}"
        if key not in self._features:
            self._features[key] = self.pipeline.features(stimulus)
        return self._features[key]

    def responses(
        self, stimulus: np.ndarray, lh: Any = None, rh: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Reference responses of *stimulus*, vertices ``lh``/``rh`` (``None`` = all)."""
        return ReferencePipeline.readout(self.features(stimulus), self.weights, lh, rh)

    def exact_features(self, stimulus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Float64 features of *stimulus* and the standard deviation of float32 features' error.

        AlexNet backbones only (:func:`error_bounds.feature_sd`); cached by content.
        """
        import torch

        digest = hashlib.sha1(np.ascontiguousarray(stimulus).tobytes()).hexdigest()
        key = f"exact{stimulus.shape}{stimulus.dtype}{digest}"
        if key not in self._features:
            images = self.pipeline.transform(torch.from_numpy(np.ascontiguousarray(stimulus)))
            self._features[key] = feature_sd(self.pipeline.backbone, images, self.pipeline.nodes)
        return self._features[key]

    def exact_and_bound(
        self, stimulus: np.ndarray, lh: Any = None, rh: Any = None
    ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """Float64 responses of *stimulus* and the bound of a float32 computation's error.

        The bound follows from the arithmetic (:mod:`error_bounds`); AlexNet backbones only.
        """
        features, error_sd = self.exact_features(stimulus)
        rows = {"lh": lh, "rh": rh}
        exact = exact_readout(features, self.weights, rows)
        bound = readout_bound(features, error_sd, self.weights, rows)
        return (exact["lh"], exact["rh"]), (bound["lh"], bound["rh"])

    def tolerance(
        self, stimulus: np.ndarray, lh: Any = None, rh: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """How far two float32 computations of these responses may differ (twice the bound)."""
        _, (lh_bound, rh_bound) = self.exact_and_bound(stimulus, lh, rh)
        return 2 * lh_bound, 2 * rh_bound

    def rois(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        fmri = self.metadata["fmri"]
        return fmri["lh_fsaverage_rois"][name], fmri["rh_fsaverage_rois"][name]
