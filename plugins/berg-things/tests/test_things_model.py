"""fmri-things_fmri_1-vit_b_32 against an independent scikit-learn + torchvision computation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from berg_things.card import METADATA_FILE, MODEL_ID, N_VOXELS, WEIGHTS_FILE

from berg_core import InvalidParameterError, ModelLoadError

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
sklearn = pytest.importorskip("sklearn")


def _images(n: int, size: int = 240, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8)


def _reference(berg_dir: Path, images: np.ndarray) -> np.ndarray:
    """The reference toolkit's recipe, rebuilt independently: sklearn objects + forward hooks."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LinearRegression
    from sklearn.preprocessing import StandardScaler

    params = np.load(berg_dir / WEIGHTS_FILE.format(subject=1), allow_pickle=True).item()
    scaler = StandardScaler()
    for key, value in params["scaler_param"].items():
        setattr(scaler, key, value)
    pca = PCA(n_components=params["pca_param"]["n_components_"], random_state=20200220)
    for key, value in params["pca_param"].items():
        setattr(pca, key, value)
    regression = LinearRegression()
    for key, value in params["reg_param"].items():
        setattr(regression, key, value)

    weights = torchvision.models.ViT_B_32_Weights.IMAGENET1K_V1
    model = torchvision.models.vit_b_32(weights=weights).eval()
    captured: list = []
    for block in model.encoder.layers:
        block.register_forward_hook(lambda _m, _i, out: captured.append(out))
    with torch.no_grad():
        model(weights.transforms()(torch.from_numpy(images)))
    features = torch.cat([out.flatten(1) for out in captured], dim=1).numpy()
    reduced = pca.transform(scaler.transform(features)).astype(np.float32)
    return regression.predict(reduced).astype(np.float32)


@pytest.fixture(scope="module")
def expected(berg_dir: Path, torch_home: Path) -> np.ndarray:
    previous = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(torch_home)
    try:
        return _reference(berg_dir, _images(5))
    finally:
        if previous is None:
            del os.environ["TORCH_HOME"]
        else:
            os.environ["TORCH_HOME"] = previous


def _close(actual: np.ndarray, wanted: np.ndarray) -> None:
    assert actual.dtype == np.float32
    assert actual.shape == wanted.shape
    scale = float(np.abs(wanted).max())
    np.testing.assert_allclose(actual, wanted, rtol=1e-4, atol=1e-4 * scale)


def test_full_brain_matches_reference(berg, expected):
    model = berg.get_encoding_model(MODEL_ID, subject=1, device="cpu")
    model.batch_size = 2  # several batches, the last one partial
    responses = berg.encode(model, _images(5), show_progress=False)
    assert responses.shape == (5, N_VOXELS)
    _close(responses, expected)


def test_int64_and_float_input(berg, expected):
    model = berg.get_encoding_model(MODEL_ID, subject=1, device="cpu")
    images = _images(5)
    from_int64 = berg.encode(model, images.astype(np.int64), show_progress=False)
    _close(from_int64, expected)
    # float input is resized in floating point, not in 8 bits: equal up to resampling rounding
    from_float = berg.encode(model, images.astype(np.float32) / 255, show_progress=False)
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(from_float, expected, atol=0.05 * scale)


def test_roi_list_keeps_order_and_duplicates(berg, expected):
    metadata = berg.get_model_metadata(MODEL_ID, subject=1)
    rois = ["V2", "V1"]
    model = berg.get_encoding_model(MODEL_ID, subject=1, selection={"roi": rois}, device="cpu")
    responses, meta = berg.encode(model, _images(5), return_metadata=True, show_progress=False)
    columns = np.concatenate([metadata["roi"]["V2"], metadata["roi"]["V1"]])
    assert len(np.unique(columns)) < len(columns)  # the fixture makes V1 and V2 overlap
    _close(responses, expected[:, columns])
    np.testing.assert_array_equal(meta["output"]["columns"]["responses"], columns)
    n_v2 = len(metadata["roi"]["V2"])
    assert meta["output"]["roi_columns"] == {"V2": [0, n_v2], "V1": [n_v2, len(columns)]}
    assert set(meta) >= {"fmri", "encoding_model", "prf", "roi", "output"}


def test_single_roi_string_and_mask(berg, expected):
    metadata = berg.get_model_metadata(MODEL_ID, subject=1)
    mask = np.zeros(N_VOXELS, dtype=np.uint8)
    mask[[5, 100, 200_000]] = 1
    selection = {"roi": "hV4", "voxel_index": mask}
    model = berg.get_encoding_model(MODEL_ID, subject=1, selection=selection, device="cpu")
    responses = berg.encode(model, _images(5), show_progress=False)
    columns = np.concatenate([metadata["roi"]["hV4"], [5, 100, 200_000]])
    _close(responses, expected[:, columns])
    only_mask = berg.get_encoding_model(MODEL_ID, subject=1, selection={"voxel_index": mask})
    _close(berg.encode(only_mask, _images(5), show_progress=False), expected[:, [5, 100, 200_000]])


def test_empty_roi_gives_zero_columns(berg):
    model = berg.get_encoding_model(MODEL_ID, subject=1, selection={"roi": ["rSTS"]}, device="cpu")
    assert berg.encode(model, _images(2), show_progress=False).shape == (2, 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"subject": 4}, "valid: 1, 2, 3"),
        ({"subject": 1, "selection": {"roi": ["V1", "FFA"]}}, "'FFA'"),
        ({"subject": 1, "selection": {"roi": []}}, "at least one"),
        ({"subject": 1, "selection": {"voxel_index": [1, 0]}}, "211339 elements"),
        ({"subject": 1, "selection": {"voxels": [1]}}, "valid keys: roi, voxel_index"),
    ],
)
def test_invalid_parameters(berg, kwargs, message):
    with pytest.raises(InvalidParameterError, match=message):
        berg.get_encoding_model(MODEL_ID, **kwargs)


def test_missing_weights_names_file_and_fetch(berg, tmp_path):
    from berg_core import BERG

    with pytest.raises(ModelLoadError) as info:
        BERG(tmp_path).get_encoding_model(MODEL_ID, subject=2)
    message = str(info.value)
    assert WEIGHTS_FILE.format(subject=2) in message
    assert str(tmp_path) in message
    assert f"berg fetch {MODEL_ID} --subject 2" in message


def test_malicious_weights_file_runs_nothing(berg, tmp_path):
    from berg_core import BERG

    sentinel = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {sentinel}",))

    target = tmp_path / METADATA_FILE.format(subject=3)
    target.parent.mkdir(parents=True)
    np.save(target, {"roi": Exploit()}, allow_pickle=True)
    with pytest.raises(ModelLoadError, match="refusing"):
        BERG(tmp_path).get_model_metadata(MODEL_ID, subject=3)
    assert not sentinel.exists()


def test_missing_backbone_weights_say_where(berg_dir, tmp_path, monkeypatch):
    from berg_core import BERG, registry

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _offline)
    registry.reset()
    with pytest.raises(ModelLoadError, match=r"vit_b_32-d86f8d99\.pth"):
        BERG(berg_dir).get_encoding_model(MODEL_ID, subject=1, device="cpu")
    registry.reset()


def _offline(*args, **kwargs):
    raise OSError("network unreachable")


def test_registration_imports_no_torch():
    code = (
        "import sys; from berg_core import BERG; "
        f"assert {MODEL_ID!r} in BERG('/nonexistent').list_models(); "
        "print(sorted(m for m in ('torch', 'torchvision', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_metadata_given_to_users_is_writable_memory(berg):
    metadata = berg.get_model_metadata(MODEL_ID, subject=1)
    coords = metadata["fmri"]["voxel_coords"]  # 5 MB: memory-mapped by the loader
    assert not isinstance(coords, np.memmap) and coords.flags.writeable
    coords[:] = 0  # a user's in-place edit never reaches the file
    assert berg.get_model_metadata(MODEL_ID, subject=1)["fmri"]["voxel_coords"].any()
    model = berg.get_encoding_model(MODEL_ID, subject=1, selection={"roi": "V1"}, device="cpu")
    _, meta = berg.encode(model, _images(1), return_metadata=True, show_progress=False)
    assert not isinstance(meta["fmri"]["voxel_coords"], np.memmap)
