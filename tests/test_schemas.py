"""Selection schemas: building blocks, validation, and the messages users see."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import model_validator

from berg_core import InvalidParameterError, SelectionSchema
from berg_core.schemas import binary_mask, names_from, one_of, validate_selection

ROIS = ("V1v", "V1d", "FFA-1", "OWFA")
MODEL = "fmri-test-model"


class Selection(SelectionSchema):
    roi: one_of(ROIS, what="an ROI", aliases={"OVWFA": "OWFA"}) | None = None
    rois: names_from(ROIS, what="an ROI") | None = None
    lh_vertices: binary_mask(5) | None = None

    @model_validator(mode="after")
    def _not_both(self) -> Selection:
        if self.roi is not None and self.lh_vertices is not None:
            raise ValueError("give either 'roi' or 'lh_vertices', not both")
        return self


def check(selection: object) -> Selection:
    return validate_selection(Selection, selection, MODEL)  # type: ignore[arg-type,return-value]


def error(selection: object) -> str:
    with pytest.raises(InvalidParameterError) as info:
        check(selection)
    return str(info.value)


def test_none_and_empty_mean_no_selection() -> None:
    for empty in (None, {}):
        result = check(empty)
        assert result.roi is None and result.lh_vertices is None
        assert result.as_plain_dict() == {}


def test_valid_roi() -> None:
    result = check({"roi": "FFA-1"})
    assert result.roi == "FFA-1"
    assert result.as_plain_dict() == {"roi": "FFA-1"}


def test_alias_is_replaced_by_its_target() -> None:
    assert check({"roi": "OVWFA"}).roi == "OWFA"


def test_unknown_roi_names_key_value_model_and_the_valid_values() -> None:
    assert error({"roi": "V9"}) == (
        "selection['roi'] = 'V9' is not an ROI of fmri-test-model; valid: V1v, V1d, FFA-1, OWFA"
    )


def test_roi_of_wrong_type() -> None:
    assert error({"roi": 3}) == "selection['roi'] = 3 must be a string naming an ROI, got int"


def test_unknown_key_names_it_and_the_valid_keys() -> None:
    assert error({"region": "V1v"}) == (
        "selection key 'region' is not known to fmri-test-model; valid keys: roi, rois, lh_vertices"
    )


def test_every_bad_key_is_reported() -> None:
    lines = error({"roi": "V9", "colour": 1}).splitlines()
    assert len(lines) == 2
    assert any("selection['roi'] = 'V9'" in line for line in lines)
    assert any("selection key 'colour'" in line for line in lines)


def test_names_from_accepts_one_name_or_a_list() -> None:
    assert check({"rois": "V1v"}).rois == ("V1v",)
    assert check({"rois": ["OWFA", "V1d"]}).rois == ("OWFA", "V1d")
    assert check({"rois": ["V1v"]}).as_plain_dict() == {"rois": ["V1v"]}
    assert "must name at least one value" in error({"rois": []})
    assert "is not an ROI of fmri-test-model" in error({"rois": ["V1v", "V5"]})
    assert "must be an ROI or a list of them, got dict" in error({"rois": {"V1v": 1}})


@pytest.mark.parametrize("mask", [[0, 1, 0, 1, 1], (1, 0, 0, 0, 0), np.array([0.0, 1, 1, 0, 0])])
def test_mask_becomes_a_read_only_boolean_array(mask: object) -> None:
    result = check({"lh_vertices": mask}).lh_vertices
    assert isinstance(result, np.ndarray)
    assert result.dtype == bool
    np.testing.assert_array_equal(result, np.asarray(mask, dtype=bool))
    assert not result.flags.writeable


def test_plain_dict_lists_the_selected_indices() -> None:
    plain = check({"lh_vertices": [0, 1, 0, 1, 1]}).as_plain_dict()
    assert plain == {"lh_vertices": [1, 3, 4]}


def test_mask_of_wrong_length() -> None:
    assert error({"lh_vertices": [1, 0, 1]}) == (
        "selection['lh_vertices'] = [1, 0, 1] must have exactly 5 elements, got shape (3,)"
    )
    assert "must have exactly 5 elements, got shape (1, 5)" in error(
        {"lh_vertices": np.ones((1, 5))}
    )


def test_mask_with_other_values() -> None:
    message = error({"lh_vertices": [0, 1, 2, 0, 1]})
    assert message == (
        "selection['lh_vertices'] = [0, 1, 2, 0, 1] must contain only 0 and 1, found 2 at index 2"
    )
    assert "must contain only 0 and 1, got dtype <U1" in error({"lh_vertices": list("01010")})


def test_all_zero_mask_is_refused() -> None:
    assert error({"lh_vertices": np.zeros(5)}) == (
        "selection['lh_vertices'] = array(shape=(5,), dtype=float64) selects nothing "
        "(all zeros); give at least one 1"
    )


def test_mask_of_wrong_type() -> None:
    assert "must be a list or numpy array of 0/1 of length 5, got str" in error(
        {"lh_vertices": "11111"}
    )


def test_model_level_rule_is_reported_for_the_model() -> None:
    assert error({"roi": "V1v", "lh_vertices": [1, 0, 0, 0, 0]}) == (
        "selection for fmri-test-model: give either 'roi' or 'lh_vertices', not both"
    )


def test_selection_must_be_a_mapping() -> None:
    assert error("V1v") == "selection must be a dict (or None), got str for fmri-test-model"


def test_validated_selection_is_accepted_again_and_frozen() -> None:
    first = check({"roi": "V1d"})
    assert check(first) == first
    with pytest.raises(Exception, match="frozen"):
        first.roi = "V1v"  # type: ignore[misc]


def test_selection_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        check({"roi": "nope"})
