"""class BERG end to end with the test plugin's toy models (registered in-process)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from berg_core import (
    BERG,
    EncodingModel,
    InvalidParameterError,
    ModelLoadError,
    PluginError,
    registry,
)
from berg_core.api import default_berg_dir

LINEAR = "toy-synthetic-linear"

Expected = Callable[[Path, int, np.ndarray], dict[str, np.ndarray]]


def metadata_file(berg_dir: Path, subject: int) -> Path:
    return (
        berg_dir
        / "encoding_models/modality-toy/train_dataset-synthetic/model-linear/metadata"
        / f"metadata_subject-{subject:02d}.npy"
    )


def assert_same_tree(actual: object, expected: object) -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys()
        for key in expected:
            assert_same_tree(actual[key], expected[key])
    elif isinstance(expected, np.ndarray):
        assert isinstance(actual, np.ndarray) and actual.dtype == expected.dtype
        np.testing.assert_array_equal(actual, expected)
    else:
        assert actual == expected


# -- berg_dir ------------------------------------------------------------------------------------


def test_berg_dir_defaults_to_the_environment_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BERG_DIR", str(tmp_path / "models"))
    assert BERG().berg_dir == tmp_path / "models"
    assert default_berg_dir() == tmp_path / "models"
    monkeypatch.setenv("BERG_DIR", "~/berg-models")
    assert BERG().berg_dir == Path.home() / "berg-models"


def test_berg_dir_defaults_to_the_user_data_dir() -> None:
    from platformdirs import user_data_dir

    assert BERG().berg_dir == Path(user_data_dir("berg", appauthor=False))
    assert BERG().berg_dir.name == "berg"


def test_empty_environment_variable_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    from platformdirs import user_data_dir

    monkeypatch.setenv("BERG_DIR", "")
    assert BERG().berg_dir == Path(user_data_dir("berg", appauthor=False))


def test_explicit_berg_dir_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BERG_DIR", "/elsewhere")
    assert BERG(tmp_path).berg_dir == tmp_path
    assert BERG(str(tmp_path)).berg_dir == tmp_path
    assert BERG("~").berg_dir == Path.home()
    assert repr(BERG(tmp_path)) == f"BERG(berg_dir={str(tmp_path)!r})"


def test_constructing_berg_loads_no_plugin(toy_plugin: ModuleType) -> None:
    registry._registry = None
    BERG("/x")
    assert registry._registry is None


# -- discovery -----------------------------------------------------------------------------------


def test_list_catalog_and_describe(
    toy_plugin: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    berg = BERG("/x")
    assert berg.list_models() == [LINEAR, "toy-synthetic-timecourse", "toy_family"]
    assert berg.list_models("toy-*") == [LINEAR, "toy-synthetic-timecourse"]
    assert berg.list_models("nothing*") == []
    assert berg.get_model_catalog() == {"toy": ["Synthetic", "Synthetic family"]}
    assert capsys.readouterr().out == ""
    berg.get_model_catalog(print_format=True)
    assert capsys.readouterr().out.splitlines() == [
        "Available Modalities and Datasets:",
        "=" * 34,
        "• TOY",
        "  └─ Synthetic",
        "  └─ Synthetic family",
    ]
    info = berg.describe(LINEAR, print_format=False)
    assert capsys.readouterr().out == ""
    assert info["model_id"] == LINEAR
    assert info["subjects"] == [1, 2]
    assert info["outputs"] == ["lh", "rh"]
    assert info["selection_keys"] == ["roi", "lh_vertices", "rh_vertices"]
    assert info["options"] == ["batch_size"]
    assert info["model_info"]["modality"] == "toy"
    assert "get_encoding_model('toy-synthetic-linear', subject=1)" in info["example_usage"]
    assert berg.describe(LINEAR) == info  # printed by default, as the reference does
    out = capsys.readouterr().out
    assert "Model: toy-synthetic-linear   (testplugin (in-process))" in out
    assert "Selection keys:   roi, lh_vertices, rh_vertices" in out


# -- get_encoding_model --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        (None, "subject is required for toy-synthetic-linear; valid: 1, 2"),
        (3, "subject = 3 is not a subject of toy-synthetic-linear; valid: 1, 2"),
        ("1", "subject = '1' is not a subject of toy-synthetic-linear; valid: 1, 2"),
        (True, "subject = True is not a subject of toy-synthetic-linear; valid: 1, 2"),
        (1.0, "subject = 1.0 is not a subject of toy-synthetic-linear; valid: 1, 2"),
    ],
)
def test_subject_is_validated(berg_dir: Path, subject: object, message: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        BERG(berg_dir).get_encoding_model(LINEAR, subject=subject)
    assert str(info.value) == message


def test_numpy_integer_subject_is_accepted(berg_dir: Path) -> None:
    model = BERG(berg_dir).get_encoding_model(LINEAR, subject=np.int64(2))
    assert model.subject == 2 and type(model.subject) is int
    assert model.request.subject == 2


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "CPU", "", 0])
def test_device_is_validated(berg_dir: Path, device: object) -> None:
    with pytest.raises(InvalidParameterError) as info:
        BERG(berg_dir).get_encoding_model(LINEAR, subject=1, device=device)
    assert str(info.value).startswith(f"device = {device!r} is not valid; expected 'auto', 'cpu'")


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_valid_devices_reach_the_loader(berg_dir: Path, device: str) -> None:
    model = BERG(berg_dir).get_encoding_model(LINEAR, subject=1, device=device)
    assert model.request.device == device


def test_unknown_options_are_refused(berg_dir: Path) -> None:
    with pytest.raises(InvalidParameterError) as info:
        BERG(berg_dir).get_encoding_model(LINEAR, subject=1, batchsize=2, layers=3)
    assert str(info.value) == (
        "get_encoding_model() got unexpected option(s) batchsize, layers for "
        "toy-synthetic-linear; options it accepts: batch_size"
    )
    # every model takes batch_size (the core's option), whatever its card declares
    with pytest.raises(InvalidParameterError, match=r"options it accepts: batch_size$"):
        BERG(berg_dir).get_encoding_model("toy_family-alpha", layers=2)


@pytest.mark.parametrize("value", [0, -1, 1.5, "x", True])
def test_options_are_typed_and_checked_by_the_core(berg_dir: Path, value: object) -> None:
    with pytest.raises(InvalidParameterError) as info:
        BERG(berg_dir).get_encoding_model(LINEAR, subject=1, batch_size=value)
    message = str(info.value)
    assert message.startswith(f"option batch_size = {value!r} is not valid for toy-synthetic-")
    assert "Images per forward pass" in message  # the option's own description
    model = BERG(berg_dir).get_encoding_model(LINEAR, subject=1, batch_size=3)
    assert model.batch_size == 3
    assert model.request.batch_size == 3
    # a string from the command line (-o batch_size=5) is converted
    assert BERG(berg_dir).get_encoding_model(LINEAR, subject=1, batch_size="5").batch_size == 5


def test_missing_files_name_the_file_and_berg_dir(tmp_path: Path, toy_plugin: ModuleType) -> None:
    with pytest.raises(ModelLoadError) as info:
        BERG(tmp_path).get_encoding_model(LINEAR, subject=1)
    assert str(info.value).startswith(
        f"missing file {metadata_file(tmp_path, 1)} (berg_dir = {tmp_path})"
    )


# -- encode --------------------------------------------------------------------------------------


def test_encode_matches_an_independent_computation(
    berg_dir: Path, images: np.ndarray, expected: Expected
) -> None:
    berg = BERG(berg_dir)
    for subject in (1, 2):
        model = berg.get_encoding_model(LINEAR, subject=subject)
        lh, rh = berg.encode(model, images, show_progress=False)
        want = expected(berg_dir, subject, images)
        assert lh.shape == (7, 20) and rh.shape == (7, 16)
        assert lh.dtype == rh.dtype == np.float32
        np.testing.assert_allclose(lh, want["lh"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(rh, want["rh"], rtol=1e-5, atol=1e-6)
    # the two subjects have different weights
    assert not np.allclose(want["lh"], expected(berg_dir, 1, images)["lh"])


@pytest.mark.parametrize(
    "dtype", [np.int8, np.int16, np.int32, np.int64, np.uint16, np.uint32, np.uint64]
)
def test_every_integer_dtype_gives_the_uint8_responses(
    berg_dir: Path, images: np.ndarray, dtype: type
) -> None:
    images = images // 2 if dtype is np.int8 else images
    berg = BERG(berg_dir)
    model = berg.get_encoding_model(LINEAR, subject=1)
    lh8, rh8 = berg.encode(model, images, show_progress=False)
    lh, rh = berg.encode(model, images.astype(dtype), show_progress=False)
    np.testing.assert_array_equal(lh, lh8)
    np.testing.assert_array_equal(rh, rh8)
    assert np.ptp(lh, axis=0).max() > 0.01  # not the reference's near-constant int64 responses


def test_float_images_in_unit_range_give_the_same_responses(
    berg_dir: Path, images: np.ndarray, expected: Expected
) -> None:
    berg = BERG(berg_dir)
    model = berg.get_encoding_model(LINEAR, subject=2)
    lh, _ = berg.encode(model, images / 255.0, show_progress=False)
    lh8, _ = berg.encode(model, images, show_progress=False)
    np.testing.assert_allclose(lh, lh8, rtol=1e-5, atol=1e-6)


def test_batch_size_does_not_change_results(berg_dir: Path, images: np.ndarray) -> None:
    berg = BERG(berg_dir)
    small = berg.get_encoding_model(LINEAR, subject=1, batch_size=3)
    large = berg.get_encoding_model(LINEAR, subject=1)
    for a, b in zip(
        berg.encode(small, images, show_progress=False),
        berg.encode(large, images, show_progress=False),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


def test_encode_reads_folders_and_pil_images(
    berg_dir: Path, tmp_path: Path, images: np.ndarray, expected: Expected
) -> None:
    from PIL import Image

    folder = tmp_path / "stimuli"
    folder.mkdir()
    pil = [Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0))) for img in images]
    for i, img in enumerate(pil):
        img.save(folder / f"img_{i:02d}.png")
    berg = BERG(berg_dir)
    model = berg.get_encoding_model(LINEAR, subject=1)
    want = expected(berg_dir, 1, images)["lh"]
    for stimulus in (folder, sorted(folder.iterdir()), pil):
        lh, _ = berg.encode(model, stimulus, show_progress=False)
        np.testing.assert_allclose(lh, want, rtol=1e-5, atol=1e-6)


def test_encode_of_mixed_sizes(berg_dir: Path, tmp_path: Path, expected: Expected) -> None:
    from PIL import Image

    rng = np.random.default_rng(3)
    arrays = [rng.integers(0, 256, (3, h, w), dtype=np.uint8) for h, w in ((4, 4), (6, 9), (5, 5))]
    paths = []
    for i, array in enumerate(arrays):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.ascontiguousarray(array.transpose(1, 2, 0))).save(paths[-1])
    berg = BERG(berg_dir)
    lh, rh = berg.encode(berg.get_encoding_model(LINEAR, subject=1), paths, show_progress=False)
    for i, array in enumerate(arrays):
        want = expected(berg_dir, 1, array[None])
        np.testing.assert_allclose(lh[i], want["lh"][0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(rh[i], want["rh"][0], rtol=1e-5, atol=1e-6)


def test_stimulus_errors_reach_the_caller(berg_dir: Path) -> None:
    from berg_core import StimulusError

    berg = BERG(berg_dir)
    model = berg.get_encoding_model(LINEAR, subject=1)
    with pytest.raises(StimulusError, match="divide by 255"):
        berg.encode(model, np.full((2, 3, 4, 4), 200.0))


def test_encode_refuses_what_is_not_a_model(berg_dir: Path, images: np.ndarray) -> None:
    with pytest.raises(InvalidParameterError, match="model is a str; expected a model from get_"):
        BERG(berg_dir).encode(LINEAR, images)  # type: ignore[arg-type]


def test_encode_shows_progress_on_stderr(
    berg_dir: Path, images: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    berg = BERG(berg_dir)
    berg.encode(berg.get_encoding_model(LINEAR, subject=1), images)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Encoding toy-synthetic-linear" in captured.err and "7/7" in captured.err
    berg.encode(berg.get_encoding_model(LINEAR, subject=1), images, show_progress=False)
    assert capsys.readouterr().err == ""


# -- selection -----------------------------------------------------------------------------------


def test_roi_selection_returns_those_vertices(
    berg_dir: Path, images: np.ndarray, expected: Expected
) -> None:
    berg = BERG(berg_dir)
    metadata = np.load(metadata_file(berg_dir, 2), allow_pickle=True).item()
    want = expected(berg_dir, 2, images)
    for roi in ("V1", "V2", "FFA-1", "FFA-2"):
        model = berg.get_encoding_model(LINEAR, subject=2, selection={"roi": roi})
        (lh, rh), meta = berg.encode(model, images, return_metadata=True, show_progress=False)
        for hemi, result in (("lh", lh), ("rh", rh)):
            index = metadata["fmri"][f"{hemi}_fsaverage_rois"][roi]
            assert result.shape == (7, len(index))
            np.testing.assert_allclose(result, want[hemi][:, index], rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(meta["output"]["columns"][hemi], index)
        assert meta["output"]["selection"] == {"roi": roi}
    # FFA-2 has no left-hemisphere vertex: an empty (7, 0) array, not an error
    assert lh.shape == (7, 0)


def test_alias_is_recorded_under_its_real_name(berg_dir: Path, images: np.ndarray) -> None:
    berg = BERG(berg_dir)
    model = berg.get_encoding_model(LINEAR, subject=1, selection={"roi": "OVWFA"})
    assert model.request.selection.roi == "OWFA"
    assert berg.encode(model, images, return_metadata=True, show_progress=False)[1]["output"][
        "selection"
    ] == {"roi": "OWFA"}


def test_vertex_masks(berg_dir: Path, images: np.ndarray, expected: Expected) -> None:
    mask = np.zeros(20, dtype=int)
    mask[[0, 7, 19]] = 1
    berg = BERG(berg_dir)
    model = berg.get_encoding_model(LINEAR, subject=1, selection={"lh_vertices": mask})
    (lh, rh), meta = berg.encode(model, images, return_metadata=True, show_progress=False)
    want = expected(berg_dir, 1, images)
    np.testing.assert_allclose(lh, want["lh"][:, [0, 7, 19]], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rh, want["rh"], rtol=1e-5, atol=1e-6)  # no mask: all vertices
    np.testing.assert_array_equal(meta["output"]["columns"]["lh"], [0, 7, 19])
    np.testing.assert_array_equal(meta["output"]["columns"]["rh"], np.arange(16))
    assert meta["output"]["selection"] == {"lh_vertices": [0, 7, 19]}


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        (
            {"roi": "V9"},
            "selection['roi'] = 'V9' is not an ROI of toy-synthetic-linear; "
            "valid: V1, V2, FFA-1, FFA-2, OWFA",
        ),
        (
            {"rois": "V1"},
            "selection key 'rois' is not known to toy-synthetic-linear; valid keys: roi, "
            "lh_vertices, rh_vertices",
        ),
        (
            {"lh_vertices": [1] * 16},
            "selection['lh_vertices'] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1] must "
            "have exactly 20 elements, got shape (16,)",
        ),
        (
            {"rh_vertices": [0] * 16},
            "selection['rh_vertices'] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] "
            "selects nothing (all zeros); give at least one 1",
        ),
        (
            {"roi": "V1", "rh_vertices": [1] * 16},
            "selection for toy-synthetic-linear: give either 'roi' or "
            "'lh_vertices'/'rh_vertices', not both",
        ),
        (
            ["V1"],
            "selection = ['V1'] is not valid for toy-synthetic-linear; expected a dict (or None)",
        ),
    ],
)
def test_bad_selection_messages(berg_dir: Path, selection: object, message: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        BERG(berg_dir).get_encoding_model(LINEAR, subject=1, selection=selection)
    assert str(info.value) == message


# -- metadata ------------------------------------------------------------------------------------


def test_encode_with_metadata(berg_dir: Path, images: np.ndarray) -> None:
    berg = BERG(berg_dir)
    model = berg.get_encoding_model(LINEAR, subject=1)
    (lh, rh), metadata = berg.encode(model, images, return_metadata=True, show_progress=False)
    assert lh.shape == (7, 20) and rh.shape == (7, 16)
    on_disk = np.load(metadata_file(berg_dir, 1), allow_pickle=True).item()
    assert_same_tree({k: v for k, v in metadata.items() if k != "output"}, on_disk)
    output = metadata["output"]
    assert output["model_id"] == LINEAR
    assert output["subject"] == 1
    assert output["selection"] == {}
    assert output["names"] == ["lh", "rh"]
    np.testing.assert_array_equal(output["columns"]["lh"], np.arange(20))
    np.testing.assert_array_equal(output["columns"]["rh"], np.arange(16))
    assert output["columns"]["lh"].dtype == np.int64


def test_get_model_metadata_reads_the_subjects_file(berg_dir: Path) -> None:
    berg = BERG(berg_dir)
    for subject in (1, 2):
        metadata = berg.get_model_metadata(LINEAR, subject=subject)
        on_disk = np.load(metadata_file(berg_dir, subject), allow_pickle=True).item()
        assert_same_tree(metadata, on_disk)
        assert metadata["subject"] == subject


def test_get_model_metadata_validates_its_arguments(berg_dir: Path) -> None:
    berg = BERG(berg_dir)
    with pytest.raises(InvalidParameterError, match="subject is required for toy-synthetic-lin"):
        berg.get_model_metadata(LINEAR)
    with pytest.raises(InvalidParameterError, match="subject = 5 is not a subject"):
        berg.get_model_metadata(LINEAR, subject=5)
    with pytest.raises(InvalidParameterError) as info:
        berg.get_model_metadata(LINEAR, subject=1, roi="V1")
    assert str(info.value) == (
        "get_model_metadata() got unexpected argument(s) roi; it takes model_id and subject"
    )


def test_get_model_metadata_of_a_missing_or_unsafe_file(
    berg_dir: Path, tmp_path: Path, toy_plugin: ModuleType
) -> None:
    with pytest.raises(ModelLoadError, match="missing file"):
        BERG(tmp_path / "empty").get_model_metadata(LINEAR, subject=1)
    path = metadata_file(berg_dir, 1)
    np.save(path, {"fmri": {}, "evil": np.load})  # type: ignore[arg-type]
    with pytest.raises(ModelLoadError, match="unsafe or corrupt data file"):
        BERG(berg_dir).get_model_metadata(LINEAR, subject=1)


def test_model_without_metadata_loader_gives_its_card(toy_plugin: ModuleType) -> None:
    metadata = BERG("/x").get_model_metadata("toy_family-alpha")
    assert metadata["model_id"] == "toy_family-alpha"
    assert metadata["training_dataset"] == "Synthetic family"


# -- lifetime ------------------------------------------------------------------------------------


def test_model_as_context_manager_is_closed_after(berg_dir: Path, images: np.ndarray) -> None:
    berg = BERG(berg_dir)
    with berg.get_encoding_model(LINEAR, subject=1) as model:
        assert isinstance(model, EncodingModel)
        assert not model.closed
        berg.encode(model, images, show_progress=False)
    assert model.closed
    assert repr(model) == "<ToyLinearModel toy-synthetic-linear, subject=1, closed>"
    with pytest.raises(InvalidParameterError) as info:
        berg.encode(model, images, show_progress=False)
    assert str(info.value) == "model toy-synthetic-linear was closed; load it again to encode"


def test_model_is_closed_when_the_block_raises(berg_dir: Path) -> None:
    berg = BERG(berg_dir)
    with pytest.raises(KeyError), berg.get_encoding_model(LINEAR, subject=1) as model:
        raise KeyError("inside")
    assert model.closed


def test_cleanup_is_the_reference_name_of_close(berg_dir: Path) -> None:
    model = BERG(berg_dir).get_encoding_model(LINEAR, subject=2)
    assert repr(model) == "<ToyLinearModel toy-synthetic-linear, subject=2>"
    model.cleanup()
    assert model.closed


# -- a model that breaks its contract ------------------------------------------------------------


class _WrongShapes(EncodingModel):
    def __init__(self, request: object, rows: int, columns: int) -> None:
        super().__init__(request)  # type: ignore[arg-type]
        self.rows, self.columns = rows, columns

    def output_sizes(self) -> tuple[int, ...]:
        return (3,)

    def encode_batches(self, stimulus: object):  # type: ignore[no-untyped-def]
        yield (np.zeros((self.rows, self.columns), dtype=np.float32),)


@pytest.mark.parametrize(
    ("rows", "columns", "message"),
    [
        (
            2,
            4,
            r"_WrongShapes\.encode_batches yielded shapes \(\(2, 4\),\); expected \(B, \*shape\)",
        ),
        (2, 3, r"_WrongShapes\.encode_batches covered 2 of 7 images"),
    ],
)
def test_broken_model_is_a_plugin_error(
    toy_plugin: ModuleType, images: np.ndarray, rows: int, columns: int, message: str
) -> None:
    berg = BERG("/x")
    request = berg.get_encoding_model("toy_family-alpha").request
    with pytest.raises(PluginError, match=message):
        berg.encode(_WrongShapes(request, rows, columns), images, show_progress=False)
