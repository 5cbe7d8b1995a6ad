"""Reference-toolkit compatibility of describe() and of loaded models, and hostile API arguments.

The reference toolkit's own code reads ``info["parameters"]["subject"]["valid_values"]``,
``info["parameters"]["selection"]["properties"]`` and ``...["roi"]["valid_values"]``; its
documentation calls ``model.describe()``, ``model.get_metadata()`` and ``model.get_model_id()``.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from berg_core import BERG, InvalidParameterError
from berg_core.errors import BergError, describe_value

LINEAR = "toy-synthetic-linear"
REFERENCE_KEYS = {"description", "required", "type", "function"}


def reference_reads(info: dict[str, Any]) -> tuple[list[Any], list[str], list[str] | None]:
    """What the reference's model classes read from a card (subjects, selection keys, ROIs)."""
    subjects = info["parameters"]["subject"]["valid_values"]
    keys = list(info["parameters"]["selection"]["properties"].keys())
    properties = info["parameters"]["selection"]["properties"]
    rois = properties["roi"]["valid_values"] if "roi" in properties else None
    return subjects, keys, rois


def assert_reference_structure(info: dict[str, Any]) -> None:
    parameters = info["parameters"]
    for name in ("model_id", "subject", "selection", "device", "model", "stimulus"):
        assert REFERENCE_KEYS <= set(parameters[name]), name
    assert parameters["selection"]["type"] == "dict"
    for key, entry in parameters["selection"]["properties"].items():
        assert {"type", "description", "required"} <= set(entry), key
        assert entry["description"], key
    grouped = info["parameters_by_function"]
    assert "subject" in grouped["get_encoding_model"] and "subject" in grouped["get_model_metadata"]
    assert grouped["encode"] == ["model", "stimulus", "return_metadata", "show_progress"]


def test_toy_parameters_come_from_the_card_and_schema(toy_plugin: ModuleType) -> None:
    from berg_testplugin.layout import N_VERTICES, ROI_ALIASES, ROIS

    info = BERG("/x").describe(LINEAR, print_format=False)
    assert_reference_structure(info)
    subjects, keys, rois = reference_reads(info)
    assert subjects == [1, 2] and info["parameters"]["subject"]["type"] == "int"
    assert keys == info["selection_keys"] == ["roi", "lh_vertices", "rh_vertices"]
    assert rois == list(ROIS)
    roi = info["parameters"]["selection"]["properties"]["roi"]
    assert roi["aliases"] == ROI_ALIASES and roi["type"] == "str" and roi["required"] is False
    mask = info["parameters"]["selection"]["properties"]["lh_vertices"]
    assert mask["type"] == "numpy.ndarray" and mask["shape"] == [N_VERTICES["lh"]]
    assert "valid_values" not in mask
    assert info["parameters"]["device"]["valid_values"] == ["auto", "cpu", "cuda", "cuda:N", "mps"]
    assert info["parameters"]["batch_size"]["function"] == "get_encoding_model"  # card option


def test_every_listed_value_is_accepted_and_others_are_not(
    berg_dir: Path, toy_plugin: ModuleType
) -> None:
    """The valid values describe() lists are exactly what get_encoding_model accepts."""
    berg = BERG(berg_dir)
    subjects, _, rois = reference_reads(berg.describe(LINEAR, print_format=False))
    for subject in subjects:
        for roi in rois or []:
            berg.get_encoding_model(LINEAR, subject=subject, selection={"roi": roi}).close()
    with pytest.raises(InvalidParameterError):
        berg.get_encoding_model(LINEAR, subject=max(subjects) + 1)
    with pytest.raises(InvalidParameterError):
        berg.get_encoding_model(LINEAR, subject=1, selection={"roi": "not-" + rois[0]})


def test_a_model_without_subjects_or_selection_has_the_same_structure(
    toy_plugin: ModuleType,
) -> None:
    info = BERG("/x").describe("toy_family-alpha", print_format=False)
    assert_reference_structure(info)
    subjects, keys, _ = reference_reads(info)
    assert info["parameters"]["subject"]["required"] is (subjects != [])
    assert keys == info["selection_keys"]


@pytest.mark.parametrize(
    ("distribution", "model_id", "subjects", "roi_type", "n_rois"),
    [
        ("berg_nsd", "fmri-nsd_fsaverage-alexnet_untrained", [1, 2, 3, 4, 5, 6, 7, 8], "str", 32),
        ("berg_things", "fmri-things_fmri_1-vit_b_32", [1, 2, 3], "list[str]", 29),
    ],
)
def test_installed_families_describe_their_parameters(
    distribution: str, model_id: str, subjects: list[int], roi_type: str, n_rois: int
) -> None:
    pytest.importorskip(distribution)
    info = BERG("/x").describe(model_id, print_format=False)
    assert_reference_structure(info)
    got_subjects, keys, rois = reference_reads(info)
    assert got_subjects == subjects
    assert keys == info["selection_keys"] and "roi" in keys
    assert rois is not None and len(rois) == len(set(rois)) == n_rois
    assert info["parameters"]["selection"]["properties"]["roi"]["type"] == roi_type
    from importlib import import_module

    schema = import_module(f"{distribution}.selection")
    for roi in rois:  # each listed ROI validates
        selection = {"roi": roi if roi_type == "str" else [roi]}
        next(
            v for k, v in vars(schema).items() if k.endswith("Selection") and k != "SelectionSchema"
        ).model_validate(selection)


def test_nsd_lists_its_rois_and_the_reference_spelling(tmp_path: Path) -> None:
    pytest.importorskip("berg_nsd")
    from berg_nsd.selection import ROI_ALIASES, ROIS

    info = BERG(tmp_path).describe("fmri-nsd_fsaverage-vit_b_32", print_format=False)
    roi = info["parameters"]["selection"]["properties"]["roi"]
    assert roi["valid_values"] == list(ROIS) and roi["aliases"] == ROI_ALIASES
    masks = info["parameters"]["selection"]["properties"]
    assert masks["lh_vertices"]["shape"] == masks["rh_vertices"]["shape"] == [163842]


# -- methods of loaded models --------------------------------------------------------------------


def test_model_describe_and_get_metadata_match_the_berg_methods(
    berg_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    berg = BERG(berg_dir)
    model = berg.get_encoding_model(LINEAR, subject=2)
    assert model.get_model_id() == LINEAR
    assert model.describe(print_format=False) == berg.describe(LINEAR, print_format=False)
    capsys.readouterr()
    model.describe()  # printed by default, as the reference does
    assert "Model: toy-synthetic-linear" in capsys.readouterr().out
    metadata = model.get_metadata()
    expected = berg.get_model_metadata(LINEAR, subject=2)
    assert metadata.keys() == expected.keys()
    np.testing.assert_array_equal(metadata["fmri"]["lh_ncsnr"], expected["fmri"]["lh_ncsnr"])
    other = berg.get_model_metadata(LINEAR, subject=1)["fmri"]["lh_ncsnr"]
    assert not np.array_equal(metadata["fmri"]["lh_ncsnr"], other)  # subject 2's, not 1's
    model.close()
    assert model.get_metadata().keys() == expected.keys()  # no open model needed


def test_generate_response_is_encode(berg_dir: Path, images: np.ndarray) -> None:
    berg = BERG(berg_dir)
    model = berg.get_encoding_model(LINEAR, subject=1, selection={"roi": "V1"})
    lh, rh = model.generate_response(images, show_progress=False)
    want_lh, want_rh = berg.encode(model, images, show_progress=False)
    np.testing.assert_array_equal(lh, want_lh)
    np.testing.assert_array_equal(rh, want_rh)
    with pytest.raises(InvalidParameterError, match=r"show_progress = 'no' is not valid"):
        model.generate_response(images, show_progress="no")


# -- hostile arguments ---------------------------------------------------------------------------


def hostile() -> list[Any]:
    """Wrong types and values: None, floats, huge ints, bytes, nested lists, arrays, tensors."""
    try:
        import torch
    except ImportError:  # berg-core alone: no tensors to try
        tensors = []
    else:
        tensors = [torch.tensor([1, 2]), torch.tensor([1])]
    return [
        None, 1.0, 1.5, -1, 10**30, 10**5000, "", b"x", [1], [[1]], {"a": 1}, float("nan"),
        np.int64(5), np.float64(1.0), np.array([1, 2]), np.array([1]), *tensors, object(),
    ]  # fmt: skip


VALUES = hostile()


@pytest.mark.parametrize("value", [123, b"/data", 1.5, True, [Path("/x")], "", "a\x00b"])
def test_berg_dir_must_be_a_path(value: object) -> None:
    with pytest.raises(InvalidParameterError) as info:
        BERG(value)  # type: ignore[arg-type]
    assert str(info.value) == (
        f"berg_dir = {describe_value(value)} is not valid; expected a folder path (a non-empty "
        f"str or pathlib.Path)"
    )


def test_berg_dir_accepts_paths_and_path_likes(tmp_path: Path) -> None:
    assert BERG(tmp_path).berg_dir == tmp_path
    assert BERG(str(tmp_path)).berg_dir == tmp_path
    assert BERG(np.str_(str(tmp_path))).berg_dir == tmp_path  # type: ignore[arg-type]
    assert BERG("~/x").berg_dir == Path(os.path.expanduser("~/x"))


@pytest.mark.parametrize("value", VALUES, ids=describe_value)
def test_subject_values(berg_dir: Path, value: object) -> None:
    berg = BERG(berg_dir)
    for call in (
        lambda: berg.get_encoding_model(LINEAR, subject=value),
        lambda: berg.get_model_metadata(LINEAR, subject=value),
    ):
        with pytest.raises(InvalidParameterError, match=r"^subject") as info:
            call()
        assert "toy-synthetic-linear" in str(info.value) and "1, 2" in str(info.value)


def test_a_0d_array_or_tensor_is_a_subject(berg_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    berg = BERG(berg_dir)
    for value in (np.array(2), np.int32(2), torch.tensor(2)):
        model = berg.get_encoding_model(LINEAR, subject=value)
        assert model.subject == 2 and type(model.subject) is int
    with pytest.raises(InvalidParameterError, match=r"an array, not a single value; give one"):
        berg.get_encoding_model(LINEAR, subject=np.array([2]))


@pytest.mark.parametrize("value", [*VALUES, 0, 1, np.bool_(True)], ids=describe_value)
def test_flags(berg_dir: Path, images: np.ndarray, value: object) -> None:
    """Every bool parameter takes True or False (numpy bools too), nothing else."""
    berg = BERG(berg_dir)
    model = berg.get_encoding_model(LINEAR, subject=1)
    calls = {
        "print_format": lambda: berg.describe(LINEAR, print_format=value),
        "return_metadata": lambda: berg.encode(model, images, return_metadata=value),
        "show_progress": lambda: berg.encode(model, images, show_progress=value),
        "download": lambda: berg.get_encoding_model(LINEAR, subject=1, download=value),
        "expand_brainscore_vision": lambda: berg.list_models(expand_brainscore_vision=value),
    }
    for name, call in calls.items():
        if isinstance(value, np.bool_):
            if name != "expand_brainscore_vision":  # True expands a family not installed here
                call()
            continue
        with pytest.raises(InvalidParameterError, match=rf"^{name} = .* expected True or False"):
            call()


@pytest.mark.parametrize(
    "value", [*VALUES, True, "cpu\n", "cuda:\u0663", "CPU"], ids=describe_value
)
def test_device_and_model_id_values(berg_dir: Path, value: object) -> None:
    berg = BERG(berg_dir)
    with pytest.raises(InvalidParameterError, match=r"^device = .* expected 'auto', 'cpu'"):
        berg.get_encoding_model(LINEAR, subject=1, device=value)
    if not isinstance(value, str):
        with pytest.raises(InvalidParameterError, match=r"^model_id = .* expected a model id"):
            berg.describe(value, print_format=False)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value", [v for v in VALUES if v is not None and not isinstance(v, dict)], ids=describe_value
)
def test_selection_must_be_a_mapping(berg_dir: Path, value: object) -> None:
    with pytest.raises(InvalidParameterError, match=r"^selection = .* expected a dict \(or None\)"):
        BERG(berg_dir).get_encoding_model(LINEAR, subject=1, selection=value)  # type: ignore


def test_unknown_keywords_are_named(berg_dir: Path, images: np.ndarray) -> None:
    berg = BERG(berg_dir)
    model = berg.get_encoding_model(LINEAR, subject=1)
    with pytest.raises(InvalidParameterError, match=r"^encode\(\) got unexpected argument\(s\) b"):
        berg.encode(model, images, batch_size=2)
    with pytest.raises(InvalidParameterError, match=r"^fetch\(\) got unexpected option\(s\) foo"):
        berg.fetch(LINEAR, 1, foo=1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retries": -1}, "retries = -1 is not valid; expected an integer >= 0"),
        ({"retries": 1.0}, "retries = 1.0 is not valid; expected an integer"),
        ({"retries": True}, "retries = True is not valid; expected an integer"),
        ({"timeout": 0}, "timeout = 0 is not valid; expected a finite number > 0"),
        ({"timeout": float("nan")}, "timeout = nan is not valid; expected a finite number > 0"),
        ({"backoff": "1"}, "backoff = '1' is not valid; expected a number"),
        ({"verify_etag": 1}, "verify_etag = 1 is not valid; expected True or False"),
        ({"base_url": b"http://x"}, "base_url = b'http://x' is not valid; expected a mirror URL"),
        ({"show_progress": None}, "show_progress = None is not valid; expected True or False"),
    ],
)
def test_fetch_arguments(berg_dir: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        BERG(berg_dir).fetch(LINEAR, 1, **options)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("value", VALUES, ids=describe_value)
def test_list_models_arguments(toy_plugin: ModuleType, value: object) -> None:
    berg = BERG("/x")
    if value is not None:
        with pytest.raises(InvalidParameterError, match=r"^pattern = "):
            berg.list_models(value)  # type: ignore[arg-type]
        with pytest.raises(BergError):
            berg.list_models(expand=value)  # type: ignore[arg-type]


def test_list_models_expand_takes_one_name_or_a_list(toy_plugin: ModuleType) -> None:
    berg = BERG("/x")
    assert berg.list_models(expand="toy_family") == berg.list_models(expand=["toy_family"])
    assert "toy_family-alpha" in berg.list_models(expand=("toy_family",))
