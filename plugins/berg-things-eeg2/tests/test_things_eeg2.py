"""THINGS EEG2 models against the reference computation, for every model and weight generation."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from berg_things_eeg2.fixture import FEATURES, make_weights, write_model_files
from berg_things_eeg2.layout import CHANNELS, FOLDERS, REPETITIONS, TIMES
from eeg2_reference import expected, features
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from berg_core import InvalidParameterError, ModelLoadError
from berg_core.output import encode_to_hdf5
from berg_core.stimulus import as_stimulus
from berg_core.testing import assert_within

VIT, ALEX, UNTRAINED = FOLDERS


def generation_c(folder: str, subject: int, k: int = 3) -> dict:
    """Weights as the final training scripts save them: one fitted scikit-learn PCA per rep."""
    weights = make_weights(folder, subject, generation="B", k=k)
    rng = np.random.default_rng(subject)
    data = rng.normal(0, 1, (k + 3, FEATURES[folder])).astype(np.float32)
    scaler = StandardScaler().fit(data)
    weights["scaler_param"] = {key: getattr(scaler, key) for key in weights["scaler_param"]}
    scaled = scaler.transform(data)
    weights["pca_param"] = {
        r: PCA(k, random_state=20200220 + subject * 1000 + (i + 1) * 10).fit(scaled + 0.01 * i)
        for i, r in enumerate(REPETITIONS)
    }
    return weights


def write(berg, model_id: str, generation: str, subject: int = 1) -> dict:
    folder = FOLDERS[model_id]
    if generation == "C":
        weights = generation_c(folder, subject)
    else:
        weights = make_weights(folder, subject, generation=generation)
    write_model_files(berg.berg_dir, model_id, subject, weights=weights)
    return weights


@pytest.mark.parametrize(
    ("model_id", "generation"),
    [(VIT, "C"), (ALEX, "A"), (UNTRAINED, "B"), (UNTRAINED, "C"), (ALEX, "B")],
)
def test_responses_are_the_reference_computation(berg, images, model_id, generation):
    weights = write(berg, model_id, generation)
    wanted, bound = expected(weights, features(model_id, images))
    with berg.get_encoding_model(model_id, subject=1, device="cpu") as model:
        responses = berg.encode(model, images, show_progress=False)
        coords = model.coords()["responses"]
    assert responses.dtype == np.float32 and responses.shape == (3, 4, 63, 140)
    assert_within(responses, wanted, bound)
    assert coords["channel"].tolist() == CHANNELS
    np.testing.assert_array_equal(coords["time"], TIMES)
    assert coords["repetition"].tolist() == [1, 2, 3, 4]
    # every repetition has its own PCA and regression: no two are alike
    for a in range(4):
        for b in range(a):
            assert not np.allclose(responses[:, a], responses[:, b])


def test_selections_keep_the_reference_order_and_repeats(berg, images):
    weights = write(berg, UNTRAINED, "B")
    wanted, bound = expected(weights, features(UNTRAINED, images))
    channels = ["Oz", "Cz", "Fp1", "Oz"]
    mask = np.zeros(140, dtype=int)
    mask[[0, 20, 21, 139]] = 1
    selection = {"channels": channels, "timepoints": mask}
    with berg.get_encoding_model(UNTRAINED, subject=1, selection=selection) as model:
        picked = berg.encode(model, images, show_progress=False)
        coords = model.coords()["responses"]
    index = [CHANNELS.index(c) for c in channels]
    times = [0, 20, 21, 139]
    assert picked.shape == (3, 4, 4, 4)
    assert_within(picked, wanted[:, :, index][..., times], bound[:, :, index][..., times])
    assert coords["channel"].tolist() == channels
    np.testing.assert_array_equal(coords["time"], TIMES[times])


def test_picks_along_dims_and_no_squeeze(berg, images):
    """One image, one channel, one time point keep their axes (the reference squeezed them)."""
    weights = write(berg, UNTRAINED, "A")
    wanted, bound = expected(weights, features(UNTRAINED, images[:1]))
    selection = {"channels": ["O1"], "timepoints": np.eye(140, dtype=int)[20]}
    with berg.get_encoding_model(UNTRAINED, subject=1, selection=selection) as model:
        one = berg.encode(model, images[:1], show_progress=False)
    assert one.shape == (1, 4, 1, 1)
    o1 = CHANNELS.index("O1")
    assert_within(one, wanted[:, :, [o1]][..., [20]], bound[:, :, [o1]][..., [20]])
    picks = {"channel": ["PO7", "O1"], "time": {"min": 0.0, "max": 0.1}, "repetition": [2]}
    with berg.get_encoding_model(UNTRAINED, subject=1, selection=picks) as model:
        picked = berg.encode(model, images[:1], show_progress=False)
        coords = model.coords()["responses"]
    index = [CHANNELS.index("PO7"), o1]
    window = list(range(20, 41))
    assert picked.shape == (1, 1, 2, 21)
    assert_within(
        picked, wanted[:, [1]][:, :, index][..., window], bound[:, [1]][:, :, index][..., window]
    )
    assert coords["repetition"].tolist() == [2]
    np.testing.assert_array_equal(coords["time"], TIMES[window])


def test_hdf5_has_dims_coords_and_metadata_is_the_reference_dict(berg, images, tmp_path):
    write(berg, UNTRAINED, "B")
    selection = {"channels": ["Oz", "Pz"]}
    with berg.get_encoding_model(UNTRAINED, subject=1, selection=selection) as model:
        responses, metadata = berg.encode(model, images, return_metadata=True, show_progress=False)
        encode_to_hdf5(model, as_stimulus(images), tmp_path / "r.h5", show_progress=False)
    assert metadata["eeg"]["ch_names"] == CHANNELS  # whole file, not subsetted
    assert metadata["encoding_models"]["correlation_single_repetitions"].shape == (4, 63, 140)
    assert tuple(metadata["output"]["dims"]["responses"]) == (
        "image",
        "repetition",
        "channel",
        "time",
    )
    with h5py.File(tmp_path / "r.h5") as f:
        np.testing.assert_array_equal(f["responses"][...], responses)
        assert [
            d.decode() if isinstance(d, bytes) else d for d in f["responses"].attrs["dims"]
        ] == [
            "image",
            "repetition",
            "channel",
            "time",
        ]
        assert [c.decode() for c in f["coords/responses/channel"][...]] == ["Oz", "Pz"]
        np.testing.assert_array_equal(f["coords/responses/time"][...], TIMES)
    same = berg.get_model_metadata(UNTRAINED, subject=1)
    np.testing.assert_array_equal(same["eeg"]["times"], TIMES)


def test_bad_selections_name_the_key_value_and_what_is_allowed(berg):
    write(berg, UNTRAINED, "B")
    with pytest.raises(InvalidParameterError, match=r"selection\['channels'\].*'Xz'.*Fp1"):
        berg.get_encoding_model(UNTRAINED, subject=1, selection={"channels": ["Oz", "Xz"]})
    with pytest.raises(InvalidParameterError, match=r"selection\['timepoints'\].*140"):
        berg.get_encoding_model(UNTRAINED, subject=1, selection={"timepoints": [1, 0]})
    with pytest.raises(InvalidParameterError, match="subject"):
        berg.get_encoding_model(UNTRAINED, subject=11)


def test_a_channel_missing_from_the_subjects_metadata(berg):
    _, meta_path = write_model_files(berg.berg_dir, UNTRAINED, 1)
    from berg_things_eeg2.fixture import make_metadata

    metadata = make_metadata(1)
    metadata["eeg"]["ch_names"] = [c if c != "Oz" else "Oz2" for c in CHANNELS]
    np.save(meta_path, metadata, allow_pickle=True)
    with pytest.raises(ModelLoadError, match=r"\['Oz'\].*metadata_subject-01.npy"):
        berg.get_encoding_model(UNTRAINED, subject=1, selection={"channels": ["Oz"]})


@pytest.mark.parametrize(
    ("pca", "message"),
    [
        ("both", "cannot be told apart"),
        ("three", "holds keys rep-1, rep-2, rep-3"),
        ("list", "is a list"),
        ("rep-not-dict", r"\['rep-2'\] is a ndarray"),
    ],
)
def test_files_of_no_known_generation(berg, pca, message):
    weights = make_weights("alexnet_untrained", 1, generation="B")
    per_rep = weights["pca_param"]
    if pca == "both":
        weights["pca_param"] = {**per_rep, **per_rep["rep-1"]}
    elif pca == "three":
        weights["pca_param"] = {r: per_rep[r] for r in REPETITIONS[:3]}
    elif pca == "list":
        weights["pca_param"] = [per_rep[r] for r in REPETITIONS]
    else:
        weights["pca_param"]["rep-2"] = np.zeros(3)
    write_model_files(berg.berg_dir, UNTRAINED, 1, weights=weights)
    with pytest.raises(ModelLoadError, match=message) as info:
        berg.get_encoding_model(UNTRAINED, subject=1)
    assert "weights_subject-01.npy" in str(info.value)
    if pca != "rep-not-dict":
        assert "A: one PCA" in str(info.value) and "C: one pickled scikit-learn PCA" in str(
            info.value
        )


def test_wrong_shapes_name_the_file_and_key(berg):
    weights = make_weights("alexnet_untrained", 1, generation="B")
    weights["reg_param"]["rep-3"]["coef_"] = weights["reg_param"]["rep-3"]["coef_"][:100]
    write_model_files(berg.berg_dir, UNTRAINED, 1, weights=weights)
    with pytest.raises(ModelLoadError, match=r"weights\['reg_param'\]\['rep-3'\]\['coef_'\]"):
        berg.get_encoding_model(UNTRAINED, subject=1)


def test_missing_files_say_how_to_fetch_them(berg):
    with pytest.raises(ModelLoadError, match="berg fetch eeg-things_eeg_2-alexnet --subject 2"):
        berg.get_encoding_model(ALEX, subject=2)


def test_berg_check_passes():
    from berg_core.check import check_plugin

    report = check_plugin("berg_things_eeg2.plugin")
    assert report.ok, report.problems


def test_registering_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, berg_things_eeg2.plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_fixture_files_are_in_the_bucket_layout(tmp_path: Path):
    weights, metadata = write_model_files(tmp_path, VIT, 10)
    assert weights.relative_to(tmp_path).as_posix() == (
        "encoding_models/modality-eeg/train_dataset-things_eeg_2/model-vit_b_32/"
        "encoding_models_weights/weights_subject-10.npy"
    )
    assert metadata.name == "metadata_subject-10.npy"
