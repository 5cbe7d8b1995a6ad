"""Areas: a named (model, selection) whose responses an experiment summarises."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from berg_core import InvalidParameterError

__all__ = ["Area", "as_areas", "flatten_outputs"]


@dataclass(frozen=True)
class Area:
    """A cortical area (or any set of outputs) as one encoder configuration.

    Parameters
    ----------
    name : str
        The label used in results, tables and figures.
    model_id : str
        A berg model id.
    selection : dict, optional
        The model's selection (``{"roi": "V1v"}``, ``{"channels": ["Oz"]}``): the area's columns.
    options : dict, optional
        Typed options of ``get_encoding_model`` (``batch_size`` ...).

    The area's response to an image is the mean over every position of every output the
    selection keeps (both hemispheres of an NSD ROI, every channel x time of an EEG pick).
    """

    name: str
    model_id: str
    selection: Mapping[str, Any] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        """A canonical JSON description (what checkpoints compare)."""
        return json.dumps(
            [self.name, self.model_id, self.selection or {}, dict(self.options)],
            sort_keys=True,
            default=str,
        )


def as_areas(areas: Any) -> tuple[Area, ...]:
    """Validate *areas*: an :class:`Area`, a dict of its fields, or a sequence of them.

    Raises
    ------
    InvalidParameterError
        For an empty sequence, a wrong type, or two areas with one name.
    """
    if isinstance(areas, (Area, Mapping)):
        areas = [areas]
    if not isinstance(areas, Sequence) or isinstance(areas, str) or not areas:
        raise InvalidParameterError(
            f"areas={areas!r}: give an Area, a dict with name and model_id, or a non-empty list"
        )
    out = []
    for i, area in enumerate(areas):
        if isinstance(area, Mapping):
            try:
                area = Area(**area)
            except TypeError as exc:
                raise InvalidParameterError(
                    f"areas[{i}]={area!r}: {exc}; fields: name, model_id, selection, options"
                ) from None
        if not isinstance(area, Area) or not isinstance(area.name, str) or not area.name:
            raise InvalidParameterError(f"areas[{i}]={area!r} is not an Area with a name")
        out.append(area)
    names = [a.name for a in out]
    if len(set(names)) != len(names):
        raise InvalidParameterError(f"areas: names must be unique, got {names}")
    return tuple(out)


def flatten_outputs(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """One ``(B, P)`` float32 array: every position of every output, outputs in order."""
    rows = arrays[0].shape[0]
    return np.concatenate([np.asarray(a, np.float32).reshape(rows, -1) for a in arrays], axis=1)
