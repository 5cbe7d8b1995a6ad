"""THINGS MEG1 model against the reference computation, for the full output and each selection."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from berg_things_meg.fixture import (
    SENSOR_NAMES,
    TIMES,
    make_metadata,
    make_weights,
    write_model_files,
)
from berg_things_meg.plugin import MODEL_ID

from berg_core import InvalidParameterError, ModelLoadError
from berg_core.testing import assert_within
from berg_core.testing import reference_readout as expected

SHAPE = (271, 281)
PREFIXES = np.array([name[:3] for name in SENSOR_NAMES])


@pytest.fixture(scope="module")
def reference(vit_features):
    weights = make_weights(1)
    return expected(weights, vit_features, SHAPE)


def test_responses_are_the_reference_computation(berg, images, reference):
    write_model_files(berg.berg_dir, 1)
    wanted, bound = reference
    with berg.get_encoding_model(MODEL_ID, subject=1, device="cpu") as model:
        responses, metadata = berg.encode(model, images, return_metadata=True, show_progress=False)
        coords = model.coords()["responses"]
    assert responses.dtype == np.float32 and responses.shape == (3, 271, 281)
    assert_within(responses, wanted, bound)
    assert coords["sensor"].tolist() == list(SENSOR_NAMES)
    np.testing.assert_array_equal(coords["time"], TIMES)
    assert tuple(metadata["output"]["dims"]["responses"]) == ("image", "sensor", "time")
    assert metadata["meg"]["subject_id"] == "P1"  # the whole file, not subsetted
    assert metadata["sensors"]["sensor_names"].shape == (271,)


def test_selections_are_the_sorted_union_of_region_prefix_and_index(berg, images, reference):
    write_model_files(berg.berg_dir, 1)
    wanted, bound = reference
    index = np.zeros(271, dtype=int)
    index[[0, 270]] = 1
    mask = np.zeros(281, dtype=int)
    mask[[0, 20, 21, 280]] = 1
    selection = {
        "region": ["Occipital"],
        "sensors": ["MZC", "MLO"],  # MLO overlaps the region: no repeats
        "sensor_index": index,
        "timepoints": mask,
    }
    with berg.get_encoding_model(MODEL_ID, subject=1, selection=selection) as model:
        picked = berg.encode(model, images, show_progress=False)
        coords = model.coords()["responses"]
    regions = np.array([{"O": "Occipital"}.get(p[2], "") for p in PREFIXES])
    keep = (regions == "Occipital") | (PREFIXES == "MZC") | (PREFIXES == "MLO") | (index == 1)
    sensors = np.flatnonzero(keep)
    times = [0, 20, 21, 280]
    assert picked.shape == (3, len(sensors), 4) and len(sensors) == 19 + 19 + 3 + 4 + 2
    assert_within(picked, wanted[:, sensors][..., times], bound[:, sensors][..., times])
    assert coords["sensor"].tolist() == [SENSOR_NAMES[i] for i in sensors]
    np.testing.assert_array_equal(coords["time"], TIMES[times])


def test_picks_along_dims(berg, images, reference):
    write_model_files(berg.berg_dir, 1)
    wanted, bound = reference
    picks = {"sensor": ["MRT11", "MLC12"], "time": {"min": 0.0, "max": 0.1}}
    with berg.get_encoding_model(MODEL_ID, subject=1, selection=picks) as model:
        picked = berg.encode(model, images[:1], show_progress=False)
    index = [SENSOR_NAMES.index("MRT11"), SENSOR_NAMES.index("MLC12")]
    window = list(range(20, 41))
    assert picked.shape == (1, 2, 21)
    assert_within(picked, wanted[:1, index][..., window], bound[:1, index][..., window])


def test_bad_parameters_name_the_key_value_and_what_is_allowed(berg):
    write_model_files(berg.berg_dir, 1)
    with pytest.raises(InvalidParameterError, match=r"selection\['region'\].*'Limbic'.*Occipital"):
        berg.get_encoding_model(MODEL_ID, subject=1, selection={"region": ["Limbic"]})
    with pytest.raises(InvalidParameterError, match=r"selection\['sensors'\].*'MXX'.*MLC"):
        berg.get_encoding_model(MODEL_ID, subject=1, selection={"sensors": ["MXX"]})
    with pytest.raises(InvalidParameterError, match=r"selection\['timepoints'\].*281"):
        berg.get_encoding_model(MODEL_ID, subject=1, selection={"timepoints": [1, 0]})
    with pytest.raises(InvalidParameterError, match=r"selection\['sensor_index'\].*271"):
        berg.get_encoding_model(MODEL_ID, subject=1, selection={"sensor_index": [1] * 270})
    with pytest.raises(InvalidParameterError, match="subject"):
        berg.get_encoding_model(MODEL_ID, subject=5)


def test_single_training_splits_are_refused_naming_what_is_missing(berg):
    write_model_files(berg.berg_dir, 1)
    with pytest.raises(InvalidParameterError, match=r"train_splits.*'single'.*not available"):
        berg.get_encoding_model(MODEL_ID, subject=1, train_splits="single")
    with pytest.raises(InvalidParameterError, match="train_splits"):
        berg.get_encoding_model(MODEL_ID, subject=1, train_splits="full")


def test_a_region_missing_from_the_subjects_metadata(berg):
    metadata = make_metadata(1)
    metadata["sensors"]["sensor_regions"] = np.where(
        metadata["sensors"]["sensor_regions"] == "Temporal",
        "Central",
        metadata["sensors"]["sensor_regions"],
    )
    write_model_files(berg.berg_dir, 1, metadata=metadata)
    with pytest.raises(ModelLoadError, match=r"'Temporal'.*metadata_P1\.npy"):
        berg.get_encoding_model(MODEL_ID, subject=1, selection={"region": ["Temporal"]})


def test_wrong_shapes_name_the_file_and_key(berg):
    weights = make_weights(1)
    weights["reg_param"]["coef_"] = weights["reg_param"]["coef_"][:100]
    write_model_files(berg.berg_dir, 1, weights=weights)
    with pytest.raises(ModelLoadError, match=r"weights_P1_all_training_splits\.npy.*\['coef_'\]"):
        berg.get_encoding_model(MODEL_ID, subject=1)


def test_missing_files_say_how_to_fetch_them(berg):
    with pytest.raises(ModelLoadError, match=f"berg fetch {MODEL_ID} --subject 2"):
        berg.get_encoding_model(MODEL_ID, subject=2)


def test_metadata_without_loading(berg):
    write_model_files(berg.berg_dir, 3)
    metadata = berg.get_model_metadata(MODEL_ID, subject=3)
    np.testing.assert_array_equal(metadata["meg"]["times"], TIMES)


def test_berg_check_passes(torch_home):
    from berg_core.check import check_plugin

    report = check_plugin("berg_things_meg.plugin")
    assert report.ok, report.problems


def test_registering_imports_no_torch():
    code = "import sys, berg_things_meg.plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_fixture_files_are_in_the_bucket_layout(tmp_path: Path):
    weights, metadata = write_model_files(tmp_path, 4)
    assert weights.relative_to(tmp_path).as_posix() == (
        "encoding_models/modality-meg/train_dataset-things_meg_1/model-vit_b_32/"
        "encoding_models_weights/weights_P4_all_training_splits.npy"
    )
    assert metadata.name == "metadata_P4.npy"
