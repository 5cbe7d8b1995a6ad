"""Registration, cards, selection validation, metadata and file errors (no forward passes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from nsd_reference import ALEXNET, ROI_SIZES, UNTRAINED, VIT, Model, metadata_path, weights_path

from berg_core import BERG, InvalidParameterError, ModelLoadError

IDS = [UNTRAINED, ALEXNET, VIT]
N = 163_842


def test_models_are_registered_with_full_cards(berg: BERG) -> None:
    assert set(IDS) <= set(berg.list_models("fmri-nsd_fsaverage-*"))
    for model_id in IDS:
        info = berg.describe(model_id, print_format=False)
        assert info["modality"] == "fMRI"
        assert info["training_dataset"] == "Natural Scenes Dataset (NSD) (fsaverage surface space)"
        assert info["species"] == "Human"
        assert info["creator"] == "Alessandro Gifford"
        assert info["subjects"] == [1, 2, 3, 4, 5, 6, 7, 8]
        assert info["outputs"] == ["lh", "rh"]
        for hemi in ("lh", "rh"):
            (vertex,) = info["output_dims"][hemi]
            assert (vertex["name"], vertex["size"]) == ("vertex", 163_842)
        assert info["selection_keys"] == ["roi", "lh_vertices", "rh_vertices"]
        assert "250 principal components" in info["description"]
        assert "Natural Scenes Dataset (NSD) (Allen et al., 2022)" in info["description"]
        assert "NSD paper (Allen et al., 2022)" in info["references"]
        folder = model_id.split("-")[-1]
        prefix = f"encoding_models/modality-fmri/train_dataset-nsd_fsaverage/model-{folder}"
        assert info["files"] == [
            f"{prefix}/encoding_models_weights/weights_subject-{{subject:02d}}.npy",
            f"{prefix}/metadata/metadata_subject-{{subject:02d}}.npy",
        ]
    assert berg.describe(UNTRAINED, print_format=False)["model_type"] == "AlexNet (untrained)"
    assert "Krizhevsky" in berg.describe(UNTRAINED, print_format=False)["description"]


def test_registration_imports_no_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "import berg_nsd.plugin, berg_nsd.selection, berg_nsd.files\n"
        "from berg_core import BERG\n"
        f"berg = BERG({str(tmp_path)!r})\n"
        f"assert {UNTRAINED!r} in berg.list_models()\n"
        f"berg.describe({UNTRAINED!r}, print_format=False)\n"
        "from berg_nsd.selection import NSDSelection\n"
        "assert NSDSelection.model_validate({'roi': 'OVWFA'}).roi == 'OWFA'\n"
        "try:\n"
        f"    berg.get_model_metadata({UNTRAINED!r}, subject=1)\n"
        "except Exception as exc:\n"
        "    assert type(exc).__name__ == 'ModelLoadError', exc\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'torchvision', 'sklearn'))\n"
        "print(heavy)\n"
        "assert not heavy, heavy\n"
    )
    # only this plugin: another installed plugin importing torch must not fail this test
    env = {**os.environ, "BERG_LOAD_PLUGINS": "nsd"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr + result.stdout


# -- selection validation ---------------------------------------------------------------------
@pytest.mark.parametrize("subject", [0, 9, "1", 1.0, None, True])
def test_bad_subject(berg: BERG, subject: object) -> None:
    with pytest.raises(InvalidParameterError, match="subject"):
        berg.get_encoding_model(UNTRAINED, subject=subject)


def test_bad_roi_lists_valid_rois(berg: BERG) -> None:
    with pytest.raises(InvalidParameterError) as info:
        berg.get_encoding_model(UNTRAINED, subject=1, selection={"roi": "V9"})
    message = str(info.value)
    assert "'V9' is not an ROI of fmri-nsd_fsaverage-alexnet_untrained" in message
    for roi in ("V1v", "FFA-1", "OWFA", "mfs-words", "nsdgeneral"):
        assert roi in message


def test_roi_with_mask_is_an_error(berg: BERG) -> None:
    mask = np.zeros(N, dtype=np.uint8)
    mask[:10] = 1
    with pytest.raises(InvalidParameterError, match="either 'roi' or vertex masks"):
        berg.get_encoding_model(UNTRAINED, subject=1, selection={"roi": "V1v", "rh_vertices": mask})


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        ([1, 0, 1], "exactly 163842 elements"),
        (np.ones(N + 1), "exactly 163842 elements"),
        (np.full(N, 2), "only 0 and 1"),
        (np.zeros(N), "selects nothing"),
        ("all", "list or numpy array"),
    ],
)
def test_bad_masks(berg: BERG, mask: object, message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        berg.get_encoding_model(UNTRAINED, subject=1, selection={"lh_vertices": mask})


def test_unknown_selection_key(berg: BERG) -> None:
    with pytest.raises(InvalidParameterError, match="'voxels' is not known"):
        berg.get_encoding_model(UNTRAINED, subject=1, selection={"voxels": [1]})


def test_schema_resolves_vertices() -> None:
    from berg_nsd.selection import NSDSelection

    mask = np.zeros(N, dtype=int)
    mask[[5, 3, 100]] = 1
    vertices = NSDSelection.model_validate({"lh_vertices": mask.tolist()}).vertices()
    assert vertices["lh"].tolist() == [3, 5, 100]
    assert vertices["rh"] is None  # the other hemisphere stays whole
    assert NSDSelection.model_validate({"roi": "OVWFA"}).roi == "OWFA"
    assert NSDSelection.model_validate({"roi": None}).roi is None
    tables = {"lh": {"V1v": np.array([9, 2, 2])}, "rh": {"V1v": np.array([], dtype=np.int64)}}
    resolved = NSDSelection.model_validate({"roi": "V1v"}).vertices(lambda: tables)
    assert resolved["lh"].tolist() == [2, 9]
    assert resolved["rh"].shape == (0,)
    with pytest.raises(InvalidParameterError, match="not defined for this subject"):
        NSDSelection.model_validate({"roi": "PPA"}).vertices(lambda: tables)


def test_bad_batch_size_option(berg: BERG, untrained: Model) -> None:
    with pytest.raises(InvalidParameterError, match="batch_size"):
        berg.get_encoding_model(UNTRAINED, subject=1, batch_size=0)


def test_unavailable_cuda_is_an_error(berg: BERG, untrained: Model) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(InvalidParameterError, match="CUDA is not available"):
        berg.get_encoding_model(UNTRAINED, subject=1, device="cuda")


# -- metadata and files -----------------------------------------------------------------------
def test_get_model_metadata(berg: BERG, untrained: Model) -> None:
    metadata = berg.get_model_metadata(UNTRAINED, subject=1)
    fmri = metadata["fmri"]
    assert set(fmri) == {
        "lh_ncsnr",
        "rh_ncsnr",
        "lh_ncsnr_nsdsynthetic",
        "rh_ncsnr_nsdsynthetic",
        "lh_fsaverage_rois",
        "rh_fsaverage_rois",
    }
    assert set(fmri["lh_fsaverage_rois"]) == set(ROI_SIZES["lh"])
    assert fmri["rh_fsaverage_rois"]["mTL-words"].shape == (0,)
    np.testing.assert_array_equal(fmri["lh_ncsnr"], untrained.metadata["fmri"]["lh_ncsnr"])
    assert metadata["encoding_models"]["test_img_num"].shape == (515,)
    assert metadata["encoding_models"]["rh_r2_nsdsynthetic"].shape == (N,)


def test_missing_files_say_how_to_get_them(berg: BERG, berg_dir: Path, untrained: Model) -> None:
    expected = weights_path(berg_dir, "alexnet_untrained", 3)
    relative = expected.relative_to(berg_dir).as_posix()
    with pytest.raises(ModelLoadError) as info:
        berg.get_encoding_model(UNTRAINED, subject=3)
    message = str(info.value)
    assert f"needs {relative} under berg_dir {berg_dir}" in message
    assert f"berg fetch {UNTRAINED} --subject 3" in message
    assert f"s3://brain-encoding-response-generator/{relative} {expected}" in message
    with pytest.raises(ModelLoadError, match=r"metadata_subject-04\.npy under berg_dir"):
        berg.get_model_metadata(UNTRAINED, subject=4)


class _Payload:
    """Unpickling this would run ``exec`` and create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


@pytest.mark.parametrize("which", ["weights", "metadata"])
def test_malicious_pickle_runs_nothing(tmp_path: Path, which: str) -> None:
    berg_dir = tmp_path / "berg_dir"
    marker = tmp_path / "pwned"
    for path in (
        weights_path(berg_dir, "alexnet_untrained", 2),
        metadata_path(berg_dir, "alexnet_untrained", 2),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"scaler_param": _Payload(marker)} if which in path.name else {"fmri": {}}
        array = np.empty((), dtype=object)
        array[()] = payload
        np.save(path, array, allow_pickle=True)
    # the crafted file really is a code-running pickle
    raw_path = (metadata_path if which == "metadata" else weights_path)(
        berg_dir, "alexnet_untrained", 2
    )
    assert b"exec" in raw_path.read_bytes()
    berg = BERG(berg_dir)
    with pytest.raises(ModelLoadError, match=r"refusing to load builtins\.exec"):
        if which == "weights":
            berg.get_encoding_model(UNTRAINED, subject=2)
        else:
            berg.get_model_metadata(UNTRAINED, subject=2)
    assert not marker.exists()
    # the test can fail: numpy's own loader does run the payload
    np.load(raw_path, allow_pickle=True)
    assert marker.read_text() == "pwned"


def test_weights_file_missing_a_key(tmp_path: Path) -> None:
    berg_dir = tmp_path / "berg_dir"
    path = weights_path(berg_dir, "alexnet_untrained", 5)
    path.parent.mkdir(parents=True)
    np.save(path, {"scaler_param": {}, "pca_param": {}}, allow_pickle=True)
    with pytest.raises(ModelLoadError, match="lacks key\\(s\\) lh_reg_param, rh_reg_param"):
        BERG(berg_dir).get_encoding_model(UNTRAINED, subject=5)
