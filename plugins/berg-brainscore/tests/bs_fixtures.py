"""Test world for berg-brainscore: a seeded random AlexNet and small benchmark data on disk.

Used by ``conftest.py`` and by the scripts the tests run in subprocesses. Import it only after
``BRAINIO_HOME``, ``RESULTCACHING_HOME``, ``BRAINSCORE_HOME`` and ``TORCH_HOME`` point at
temporary folders (:func:`isolate`), because Brain-Score reads some of them when imported.

* The model ``berg-test-alexnet`` is a torchvision AlexNet with seeded random weights, wrapped in
  Brain-Score's ``PytorchWrapper`` (images resized to 96 x 96) and ``ModelCommitment`` with an
  explicit layer per region, and registered in ``brainscore_vision.model_registry``.
* The data are small stand-ins for ``MajajHong2015.public`` (V4, IT) and
  ``FreemanZiemba2013.public`` (V1, V2), written with Brain-Score's own packaging functions as
  ``assy_*.nc`` / ``stimulus_*.csv`` / ``stimulus_*.zip`` under ``$BRAINIO_HOME/<sha1>/``, and
  registered under the real dataset names with the real loaders (``load_assembly_from_s3``,
  ``load_stimulus_set_from_s3``), so Brain-Score's real benchmarks read them. Only the sha1s
  differ from the real registration (the files' content differs).
* Each neuroid's response is a fixed random linear readout of the region's committed layer,
  computed here with plain torch (not through Brain-Score), plus noise per repetition.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MODEL_ID = "berg-test-alexnet"
IMAGE_SIZE = 96
LAYERS = ["features.2", "features.5", "features.7", "features.9", "features.12"]
REGION_LAYER_MAP = {"V1": "features.2", "V2": "features.7", "V4": "features.7", "IT": "features.12"}
NEUROIDS = {"V1": 8, "V2": 9, "V4": 10, "IT": 12}
N_HVM = 128  # stand-in for the 3200 HVM images
N_FZ = 96  # stand-in for the 135 FreemanZiemba images
REPETITIONS = 2
NOISE = 0.3  # noise sd per repetition, relative to the signal's sd
OBJECTS = ("blob", "bars", "checker", "ring", "gradient", "noise")

ENV_DIRS = {
    "BRAINIO_HOME": "brainio",
    "RESULTCACHING_HOME": "result_caching",
    "BRAINSCORE_HOME": "brain-score",
    "TORCH_HOME": "torch",
    "MT_HOME": "model-tools",
}


def isolate(root: Path) -> None:
    """Point Brain-Score's and torch's caches at folders under *root*, before importing them."""
    for variable, name in ENV_DIRS.items():
        os.environ[variable] = str(root / name)
        (root / name).mkdir(parents=True, exist_ok=True)
    os.environ["BS_INSTALL_DEPENDENCIES"] = "no"


# -- images ----------------------------------------------------------------------------------
def make_image(rng: np.random.Generator, kind: str, size: int = 64) -> np.ndarray:
    """A synthetic ``(size, size, 3)`` uint8 image of one of :data:`OBJECTS`."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    phase, freq = rng.uniform(0, 2 * np.pi), rng.uniform(2, 12)
    tint = rng.uniform(0.2, 1.0, 3)
    if kind == "blob":
        cx, cy, width = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.01, 0.05)
        image = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / width)[..., None] * tint
    elif kind == "bars":
        angle = rng.uniform(0, np.pi)
        wave = np.sin(freq * 2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
        image = (0.5 + 0.5 * wave)[..., None] * tint
    elif kind == "checker":
        image = ((np.floor(xx * freq) + np.floor(yy * freq)) % 2)[..., None] * tint
    elif kind == "ring":
        radius = np.hypot(xx - rng.uniform(0.3, 0.7), yy - rng.uniform(0.3, 0.7))
        image = (0.5 + 0.5 * np.sin(freq * 2 * np.pi * radius + phase))[..., None] * tint
    elif kind == "gradient":
        image = (xx * np.cos(phase) + yy * np.sin(phase))[..., None] * tint
    else:
        image = rng.uniform(0, 1, (size, size, 3)) * tint
    image = image + rng.normal(0, 0.03, image.shape)
    return np.round(255 * np.clip(image, 0, 1)).astype(np.uint8)


def make_images(seed: int, n: int, size: int = 64) -> tuple[np.ndarray, list[str]]:
    """*n* images ``(n, 3, size, size)`` uint8 and their object names."""
    rng = np.random.default_rng(seed)
    kinds = [OBJECTS[i % len(OBJECTS)] for i in range(n)]
    images = np.stack([make_image(rng, kind, size) for kind in kinds]).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(images), kinds


def write_pngs(images: np.ndarray, folder: Path, prefix: str = "img") -> list[Path]:
    """Write ``(N, 3, H, W)`` uint8 *images* as PNGs named ``{prefix}{i:04d}.png``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"{prefix}{i:04d}.png"
        Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).save(path)
        paths.append(path)
    return paths


# -- the model -------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def network() -> Any:
    """The seeded random AlexNet (torchvision, no weights downloaded), in eval mode."""
    import torch
    import torchvision

    torch.manual_seed(20261123)
    net = torchvision.models.alexnet(weights=None)
    return net.eval()


def make_commitment() -> Any:
    """A Brain-Score ``ModelCommitment`` of :func:`network` with :data:`REGION_LAYER_MAP`."""
    from brainscore_vision.model_helpers.activations.pytorch import (
        PytorchWrapper,
        load_preprocess_images,
    )
    from brainscore_vision.model_helpers.brain_transformation import ModelCommitment

    preprocessing = functools.partial(load_preprocess_images, image_size=IMAGE_SIZE)
    wrapper = PytorchWrapper(identifier=MODEL_ID, model=network(), preprocessing=preprocessing)
    wrapper.image_size = IMAGE_SIZE
    return ModelCommitment(
        identifier=MODEL_ID,
        activations_model=wrapper,
        layers=LAYERS,
        region_layer_map=dict(REGION_LAYER_MAP),
    )


def register_model() -> None:
    """Register :data:`MODEL_ID` in Brain-Score's model registry."""
    import brainscore_vision

    brainscore_vision.model_registry[MODEL_ID] = make_commitment


def layer_features(images: np.ndarray, layer: str) -> np.ndarray:
    """Activations of *layer* for uint8 ``(N, 3, H, W)`` *images*, computed with plain torch.

    Independent of Brain-Score's extraction: PIL resize to 96 x 96 (bilinear, as
    ``transforms.Resize``), ImageNet normalisation, a forward hook on the layer.
    """
    import torch
    from PIL import Image

    net = network()
    module = dict(net.named_modules())[layer]
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)[:, None, None]
    batch = []
    for image in images:
        pil = Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)))
        pil = pil.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
        array = np.asarray(pil, dtype=np.float32).transpose(2, 0, 1) / 255.0
        batch.append((array - mean) / std)
    captured: list[Any] = []
    handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
    try:
        with torch.no_grad():
            net(torch.from_numpy(np.stack(batch)))
    finally:
        handle.remove()
    return captured[0].reshape(len(images), -1).numpy().astype(np.float64)


@dataclass
class Readout:
    """A fixed linear readout of one layer: ``(features - mean) @ weights``."""

    layer: str
    mean: np.ndarray
    weights: np.ndarray

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return (layer_features(images, self.layer) - self.mean) @ self.weights


def make_readout(images: np.ndarray, region: str, rng: np.random.Generator) -> Readout:
    """A random readout of *region*'s committed layer, centred and scaled to unit sd on *images*."""
    features = layer_features(images, REGION_LAYER_MAP[region])
    mean = features.mean(0)
    weights = rng.normal(0, 1, (features.shape[1], NEUROIDS[region]))
    weights /= ((features - mean) @ weights).std(0)
    return Readout(REGION_LAYER_MAP[region], mean, weights)


# -- the data --------------------------------------------------------------------------------
@dataclass
class Dataset:
    """One stand-in dataset as written to disk."""

    images: np.ndarray  # (N, 3, H, W) uint8, in stimulus order
    stimulus_ids: list[str]
    readouts: dict[str, Readout]
    responses: dict[str, np.ndarray]  # region -> (N, neuroids), repetition-averaged
    sha1: dict[str, str] = field(default_factory=dict)  # nc, csv, zip


def _place(staging: Path, home: Path, name: str, sha1: str) -> str:
    target = home / sha1 / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(staging / name), target)
    return sha1


def _write_stimulus_set(
    images: np.ndarray, extra: dict[str, list[Any]], identifier: str, home: Path, staging: Path
) -> tuple[list[str], str, str]:
    import pandas as pd
    from brainscore_core.supported_data_standards.brainio.packaging import (
        create_stimulus_csv,
        create_stimulus_zip,
    )
    from brainscore_core.supported_data_standards.brainio.stimuli import StimulusSet

    ids = [f"{identifier.split('.')[0].lower()}{i:04d}" for i in range(len(images))]
    paths = write_pngs(images, staging / f"images-{identifier}", prefix="tmp")
    for path in paths:  # zip entries carry mtimes: fixed ones make the same images the same zip
        os.utime(path, (1577836800, 1577836800))
    proto = StimulusSet(pd.DataFrame({"stimulus_id": ids, **extra}))
    proto.stimulus_paths = {sid: str(path) for sid, path in zip(ids, paths, strict=True)}
    name = f"stimulus_{identifier.replace('.', '_')}"
    zip_sha1, arcnames = create_stimulus_zip(proto, str(staging / f"{name}.zip"))
    proto["filename"] = arcnames
    csv_sha1 = create_stimulus_csv(proto, str(staging / f"{name}.csv"))
    _place(staging, home, f"{name}.zip", zip_sha1)
    _place(staging, home, f"{name}.csv", csv_sha1)
    return ids, csv_sha1, zip_sha1


def _responses(
    images: np.ndarray, regions: tuple[str, ...], rng: np.random.Generator
) -> tuple[dict[str, Readout], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Readouts, clean responses (N, n) and noisy repetitions (REPETITIONS, N, n) per region."""
    readouts, clean, noisy = {}, {}, {}
    for region in regions:
        readouts[region] = make_readout(images, region, rng)
        clean[region] = readouts[region](images)
        noise = rng.normal(0, NOISE * clean[region].std(), (REPETITIONS, *clean[region].shape))
        noisy[region] = clean[region][None] + noise
    return readouts, clean, noisy


def write_majajhong(home: Path, seed: int = 1, shuffle: bool = False) -> Dataset:
    """Write the ``MajajHong2015.public`` stand-in (V4 and IT, one 70-170 ms bin).

    With *shuffle*, each stimulus gets another stimulus's responses (the misaligned control).
    """
    from brainscore_core.supported_data_standards.brainio.assemblies import (
        NeuronRecordingAssembly,
    )
    from brainscore_core.supported_data_standards.brainio.packaging import write_netcdf

    rng = np.random.default_rng(seed)
    images, kinds = make_images(seed, N_HVM)
    staging = Path(tempfile.mkdtemp(prefix="berg-bs-staging-"))
    try:
        ids, csv_sha1, zip_sha1 = _write_stimulus_set(
            images,
            {"object_name": kinds, "variation": [0] * len(kinds)},
            "hvm-public",
            home,
            staging,
        )
        readouts, _, noisy = _responses(images, ("V4", "IT"), rng)
        order = rng.permutation(len(ids)) if shuffle else np.arange(len(ids))
        values = np.concatenate([noisy["V4"], noisy["IT"]], axis=2)[:, order]  # (rep, N, n)
        n_rep, n_stim, n_neuroid = values.shape
        regions = ["V4"] * NEUROIDS["V4"] + ["IT"] * NEUROIDS["IT"]
        assembly = NeuronRecordingAssembly(
            values.reshape(n_rep * n_stim, n_neuroid, 1).astype(np.float32),
            coords={
                "stimulus_id": ("presentation", ids * n_rep),
                "repetition": ("presentation", np.repeat(np.arange(n_rep), n_stim)),
                "neuroid_id": ("neuroid", [f"{r}_{i:03d}" for i, r in enumerate(regions)]),
                "region": ("neuroid", regions),
                "animal": ("neuroid", ["Tito"] * n_neuroid),
                "time_bin_start": ("time_bin", [70]),
                "time_bin_end": ("time_bin", [170]),
            },
            dims=["presentation", "neuroid", "time_bin"],
        )
        name = "assy_dicarlo_MajajHong2015_public.nc"
        nc_sha1 = write_netcdf(assembly, str(staging / name))
        _place(staging, home, name, nc_sha1)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    averaged = {region: noisy[region].mean(0)[order] for region in ("V4", "IT")}
    return Dataset(
        images, ids, readouts, averaged, {"nc": nc_sha1, "csv": csv_sha1, "zip": zip_sha1}
    )


def write_freemanziemba(home: Path, seed: int = 2) -> Dataset:
    """Write the ``FreemanZiemba2013.public`` stand-in (V1 and V2, 1-ms bins from 0 to 220 ms)."""
    from brainscore_core.supported_data_standards.brainio.assemblies import (
        NeuronRecordingAssembly,
    )
    from brainscore_core.supported_data_standards.brainio.packaging import write_netcdf

    rng = np.random.default_rng(seed)
    images, kinds = make_images(seed, N_FZ, size=80)
    staging = Path(tempfile.mkdtemp(prefix="berg-bs-staging-"))
    try:
        ids, csv_sha1, zip_sha1 = _write_stimulus_set(
            images,
            {"texture_type": kinds, "resolution": [320] * len(kinds)},
            "FreemanZiemba2013.aperture-public",
            home,
            staging,
        )
        readouts, _, noisy = _responses(images, ("V1", "V2"), rng)
        values = np.concatenate([noisy["V1"], noisy["V2"]], axis=2)  # (rep, N, n)
        n_rep, n_stim, n_neuroid = values.shape
        starts = np.arange(0, 220)
        # the same rate in every 1-ms bin, so the benchmark's 50-200 ms mean is the value itself
        binned = np.repeat(values.reshape(n_rep * n_stim, n_neuroid, 1), len(starts), axis=2)
        regions = ["V1"] * NEUROIDS["V1"] + ["V2"] * NEUROIDS["V2"]
        assembly = NeuronRecordingAssembly(
            binned.astype(np.float32),
            coords={
                "stimulus_id": ("presentation", ids * n_rep),
                "repetition": ("presentation", np.repeat(np.arange(n_rep), n_stim)),
                "neuroid_id": ("neuroid", [f"{r}_{i:03d}" for i, r in enumerate(regions)]),
                "region": ("neuroid", regions),
                "time_bin_start": ("time_bin", starts),
                "time_bin_end": ("time_bin", starts + 1),
            },
            dims=["presentation", "neuroid", "time_bin"],
        )
        name = "assy_movshon_FreemanZiemba2013_public.nc"
        nc_sha1 = write_netcdf(assembly, str(staging / name))
        _place(staging, home, name, nc_sha1)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    averaged = {region: noisy[region].mean(0) for region in ("V1", "V2")}
    return Dataset(
        images, ids, readouts, averaged, {"nc": nc_sha1, "csv": csv_sha1, "zip": zip_sha1}
    )


#: The real registrations replaced by :func:`register_data`: (registry id, key) -> (registry,
#: key, loader).
REAL_REGISTRATIONS: dict[tuple[int, str], tuple[dict[str, Any], str, Any]] = {}


def restore_real_data() -> None:
    """Put Brain-Score's real registrations of the four datasets back."""
    for registry, key, loader in REAL_REGISTRATIONS.values():
        registry[key] = loader


def register_data(majajhong: Dataset, freemanziemba: Dataset) -> None:
    """Register the stand-ins under the real dataset names, with Brain-Score's real loaders."""
    import brainscore_vision
    import brainscore_vision.data.freemanziemba2013
    import brainscore_vision.data.majajhong2015
    from brainscore_core.supported_data_standards.brainio.assemblies import (
        NeuronRecordingAssembly,
    )
    from brainscore_core.supported_data_standards.brainio.s3 import (
        load_assembly_from_s3,
        load_stimulus_set_from_s3,
    )

    bucket = "brainscore-storage/brainio-brainscore"
    for registry, key in (
        (brainscore_vision.stimulus_set_registry, "hvm-public"),
        (brainscore_vision.stimulus_set_registry, "FreemanZiemba2013.aperture-public"),
        (brainscore_vision.data_registry, "MajajHong2015.public"),
        (brainscore_vision.data_registry, "FreemanZiemba2013.public"),
    ):
        REAL_REGISTRATIONS.setdefault((id(registry), key), (registry, key, registry[key]))
    for dataset, assembly_id, stimuli_id, key in (
        (majajhong, "dicarlo.MajajHong2015.public", "hvm-public", "MajajHong2015.public"),
        (
            freemanziemba,
            "movshon.FreemanZiemba2013.public",
            "FreemanZiemba2013.aperture-public",
            "FreemanZiemba2013.public",
        ),
    ):
        sha1 = dataset.sha1
        stimulus_loader = functools.partial(
            load_stimulus_set_from_s3,
            identifier=stimuli_id,
            bucket=bucket,
            csv_sha1=sha1["csv"],
            zip_sha1=sha1["zip"],
            csv_version_id="null",
            zip_version_id="null",
        )
        brainscore_vision.stimulus_set_registry[stimuli_id] = stimulus_loader
        brainscore_vision.data_registry[key] = functools.partial(
            load_assembly_from_s3,
            identifier=assembly_id,
            version_id="null",
            sha1=sha1["nc"],
            bucket=bucket,
            cls=NeuronRecordingAssembly,
            stimulus_set_loader=functools.partial(brainscore_vision.load_stimulus_set, stimuli_id),
        )


def build_world() -> tuple[Dataset, Dataset]:
    """Write both stand-in datasets under ``$BRAINIO_HOME``, register them and the model."""
    home = Path(os.environ["BRAINIO_HOME"])
    majajhong = write_majajhong(home)
    freemanziemba = write_freemanziemba(home)
    register_data(majajhong, freemanziemba)
    register_model()
    return majajhong, freemanziemba


def block_network() -> None:
    """Make name resolution and IP connections fail in this process (for subprocess scripts)."""
    import socket

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError("network access is disabled in berg-brainscore's tests")

    original_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            refuse()
        return original_connect(self, address)

    socket.getaddrinfo = refuse  # type: ignore[assignment]
    socket.create_connection = refuse  # type: ignore[assignment]
    socket.socket.connect = connect  # type: ignore[method-assign]


def real_data_check(berg_dir: Path) -> dict[str, Any]:
    """Check the real public benchmark data in ``$BRAINIO_HOME`` (run in a subprocess).

    Loads each region's benchmark through Brain-Score and records its neuroid and stimulus counts,
    then fits the test model for V1 (135 images) through berg and encodes a few images.
    """
    import brainscore_vision
    from berg_brainscore.benchmarks import BENCHMARKS

    from berg_core import BERG, registry

    counts = {}
    for roi, spec in BENCHMARKS.items():
        benchmark = brainscore_vision.load_benchmark(spec.benchmark)
        assembly = benchmark._assembly
        counts[roi] = {
            "neuroids": int(assembly.sizes["neuroid"]),
            "stimuli": len(set(assembly["stimulus_id"].values)),
            "identifier": benchmark.identifier,
            "time_bins": [
                list(map(int, np.ravel(t.item() if np.ndim(t) == 0 else t)))
                for t in benchmark.timebins
            ],
        }
    register_model()
    os.environ["BERG_LOAD_PLUGINS"] = "berg-brainscore"
    registry.reset()
    berg = BERG(berg_dir)
    model = berg.get_encoding_model("brainscore_vision-" + MODEL_ID, selection={"roi": "V1"})
    images, _ = make_images(5, 6)
    responses = berg.encode(model, images, show_progress=False)
    return {"counts": counts, "v1_shape": list(responses.shape)}
