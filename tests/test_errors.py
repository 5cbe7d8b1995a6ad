"""The one exception hierarchy, exported at top level."""

from __future__ import annotations

import pytest

import berg_core
from berg_core import errors


@pytest.mark.parametrize(
    "name",
    [
        "ModelNotFoundError",
        "InvalidParameterError",
        "StimulusError",
        "ModelLoadError",
        "PluginError",
    ],
)
def test_every_error_is_a_berg_error_exported_at_top_level(name: str) -> None:
    cls = getattr(berg_core, name)
    assert cls is getattr(errors, name)
    assert issubclass(cls, berg_core.BergError)
    assert name in berg_core.__all__


def test_caller_value_errors_are_value_errors() -> None:
    assert issubclass(berg_core.InvalidParameterError, ValueError)
    assert issubclass(berg_core.StimulusError, ValueError)
    for cls in (berg_core.ModelLoadError, berg_core.PluginError, berg_core.ModelNotFoundError):
        assert not issubclass(cls, ValueError)
    with pytest.raises(ValueError, match="bad"):
        raise berg_core.InvalidParameterError("bad")


def test_reference_spelling_is_the_same_class() -> None:
    assert berg_core.BERGError is berg_core.BergError
    assert issubclass(berg_core.BergError, Exception)


def test_model_not_found_is_a_lookup_error() -> None:
    assert issubclass(berg_core.ModelNotFoundError, LookupError)


def test_describe_value_shortens_long_values_and_summarises_arrays() -> None:
    import numpy as np

    assert errors.describe_value("V1") == "'V1'"
    assert errors.describe_value(np.zeros((2, 3), np.uint8)) == "array(shape=(2, 3), dtype=uint8)"
    long = errors.describe_value(list(range(100)), limit=20)
    assert len(long) == 20 and long.endswith("...")
