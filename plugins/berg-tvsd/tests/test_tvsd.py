"""TVSD model against the reference computation, for the full output and each selection."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from berg_tvsd.fixture import ROI_RANGES, TIMES, make_metadata, make_weights, write_model_files
from berg_tvsd.plugin import METADATA_FILE_MISNAMED, MODEL_ID

from berg_core import InvalidParameterError, ModelLoadError
from berg_core.testing import assert_within
from berg_core.testing import reference_readout as expected

SHAPE = (1024, 300)


@pytest.fixture(scope="module")
def reference(vit_features):
    return expected(make_weights("F"), vit_features, SHAPE)


def test_responses_are_the_reference_computation(berg, images, reference):
    write_model_files(berg.berg_dir, "F")
    wanted, bound = reference
    with berg.get_encoding_model(MODEL_ID, subject="F", device="cpu") as model:
        responses, metadata = berg.encode(model, images, return_metadata=True, show_progress=False)
        coords = model.coords()["responses"]
    assert responses.dtype == np.float32 and responses.shape == (3, 1024, 300)
    assert_within(responses, wanted, bound)
    assert coords["electrode"].tolist() == list(range(1024))
    np.testing.assert_array_equal(coords["time"], TIMES)
    assert tuple(metadata["output"]["dims"]["responses"]) == ("image", "electrode", "time")
    assert metadata["utah-array"]["monkey_id"] == "monkeyF"


@pytest.mark.parametrize("roi", ["V4", "IT"])
def test_roi_and_electrodes_are_the_sorted_union(berg, images, reference, roi):
    write_model_files(berg.berg_dir, "F")
    wanted, bound = reference
    mask = np.zeros(1024, dtype=int)
    mask[[3, 600, 900]] = 1  # 600 is IT, 900 is V4 in monkey F
    times = np.zeros(300, dtype=int)
    times[[0, 100, 299]] = 1
    selection = {"roi": [roi], "electrodes": mask, "timepoints": times}
    with berg.get_encoding_model(MODEL_ID, subject="F", selection=selection) as model:
        picked = berg.encode(model, images, show_progress=False)
        coords = model.coords()["responses"]
    electrodes = sorted(set(ROI_RANGES["F"][roi]) | {3, 600, 900})
    assert picked.shape == (3, len(electrodes), 3)
    assert len(electrodes) == len(ROI_RANGES["F"][roi]) + 2
    t = [0, 100, 299]
    assert_within(picked, wanted[:, electrodes][..., t], bound[:, electrodes][..., t])
    assert coords["electrode"].tolist() == electrodes
    np.testing.assert_array_equal(coords["time"], TIMES[t])


def test_picks_along_dims(berg, images, reference):
    write_model_files(berg.berg_dir, "F")
    wanted, bound = reference
    picks = {"electrode": [1000, 7], "time": {"min": 0.0, "max": 0.01}}
    with berg.get_encoding_model(MODEL_ID, subject="F", selection=picks) as model:
        picked = berg.encode(model, images[:1], show_progress=False)
    window = list(range(100, 111))
    assert picked.shape == (1, 2, 11)
    assert_within(picked, wanted[:1, [1000, 7]][..., window], bound[:1, [1000, 7]][..., window])


def test_the_misnamed_metadata_file_of_the_reference_is_read(berg):
    write_model_files(berg.berg_dir, "N", metadata_file=METADATA_FILE_MISNAMED)
    with berg.get_encoding_model(MODEL_ID, subject="N", selection={"roi": ["V4"]}) as model:
        assert model.coords()["responses"]["electrode"].tolist() == list(range(512, 768))
    metadata = berg.get_model_metadata(MODEL_ID, subject="N")
    assert metadata["utah-array"]["monkey_id"] == "monkeyN"


def test_bad_parameters_name_the_key_value_and_what_is_allowed(berg):
    write_model_files(berg.berg_dir, "F")
    with pytest.raises(InvalidParameterError, match=r"selection\['roi'\].*'V2'.*V1"):
        berg.get_encoding_model(MODEL_ID, subject="F", selection={"roi": ["V2"]})
    with pytest.raises(InvalidParameterError, match=r"selection\['electrodes'\].*1024"):
        berg.get_encoding_model(MODEL_ID, subject="F", selection={"electrodes": [1, 0]})
    with pytest.raises(InvalidParameterError, match=r"selection\['timepoints'\].*300"):
        berg.get_encoding_model(MODEL_ID, subject="F", selection={"timepoints": [1] * 140})
    with pytest.raises(InvalidParameterError, match="subject"):
        berg.get_encoding_model(MODEL_ID, subject="__not_a_subject__")


def test_an_roi_missing_from_the_monkeys_metadata(berg):
    metadata = make_metadata("F")
    metadata["roi"]["roi_labels"] = np.array(["V1", "V4"])
    write_model_files(berg.berg_dir, "F", metadata=metadata)
    with pytest.raises(ModelLoadError, match=r"'IT'.*metadata_monkeyF\.npy"):
        berg.get_encoding_model(MODEL_ID, subject="F", selection={"roi": ["IT"]})


def test_wrong_shapes_name_the_file_and_key(berg):
    weights = make_weights("F")
    weights["reg_param"]["intercept_"] = weights["reg_param"]["intercept_"][:10]
    write_model_files(berg.berg_dir, "F", weights=weights)
    with pytest.raises(ModelLoadError, match=r"weights_monkeyF\.npy.*\['intercept_'\]"):
        berg.get_encoding_model(MODEL_ID, subject="F")


def test_missing_files_say_how_to_fetch_them(berg):
    with pytest.raises(ModelLoadError, match=f"berg fetch {MODEL_ID} --subject N"):
        berg.get_encoding_model(MODEL_ID, subject="N")


def test_berg_check_passes(torch_home):
    from berg_core.check import check_plugin

    report = check_plugin("berg_tvsd.plugin")
    assert report.ok, report.problems


def test_registering_imports_no_torch():
    code = "import sys, berg_tvsd.plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_fixture_files_are_in_the_bucket_layout(tmp_path: Path):
    weights, metadata = write_model_files(tmp_path, "N")
    assert weights.relative_to(tmp_path).as_posix() == (
        "encoding_models/modality-utah_array/train_dataset-tvsd/model-vit_b_32/"
        "encoding_models_weights/weights_monkeyN.npy"
    )
    assert metadata.name == "metadata_monkeyN.npy"
