"""Selections along labelled output dims, the same for every model family.

A card declares the axes of each output (:class:`~berg_core.cards.Dim`: ``vertex``, ``channel``,
``time`` ...), and a loaded model gives the coordinate of every position along them
(:meth:`~berg_core.EncodingModel.output_coords`: vertex indices, channel names, times in ms).
Any selection key that names a dim, and that the family's own selection schema does not define,
picks along that dim, without plugin code:

* a list of coordinates (or one): ``{"channel": ["O1", "Oz", "O2"]}``, ``{"neuroid": [3, 7]}``;
  positions are kept in the order given, duplicates included, as the reference keeps channels;
* a closed window of numeric coordinates: ``{"time": {"min": 0, "max": 200}}`` (both ends
  included; either may be left out).

The model computes its full output (after its own selection); the core keeps the selected
positions of each batch (:meth:`~berg_core.EncodingModel.encode`), so memory and files hold only
what was asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from berg_core.errors import InvalidParameterError, describe_value

__all__ = ["DimPick", "apply_picks", "resolve_picks", "split_selection"]

#: A selection along one dim: a tuple of coordinates, or a ``(min, max)`` window.
DimPick = dict[str, Any]

_WINDOW_KEYS = frozenset({"min", "max"})


def split_selection(
    selection: Mapping[str, Any] | None,
    dim_names: Sequence[str],
    schema_fields: Sequence[str],
    model_id: str,
) -> tuple[dict[str, Any], dict[str, DimPick]]:
    """Split *selection* into the family's keys and picks along labelled dims.

    Parameters
    ----------
    selection : mapping or None
        What the caller passed.
    dim_names : sequence of str
        The dims of the model's outputs (:attr:`~berg_core.ModelCard.dim_names`).
    schema_fields : sequence of str
        Keys the family's selection schema defines (they keep their family meaning).
    model_id : str
        Named in messages.

    Returns
    -------
    (dict, dict)
        The family's selection, and dim name -> pick (``{"labels": tuple}`` or
        ``{"min": x, "max": y}``).

    Raises
    ------
    InvalidParameterError
        A pick that is neither coordinates nor a window.
    """
    family: dict[str, Any] = {}
    picks: dict[str, DimPick] = {}
    for key, value in (selection or {}).items():
        if key in dim_names and key not in schema_fields:
            picks[key] = _pick(key, value, model_id)
        else:
            family[key] = value
    return family, picks


def _pick(dim: str, value: Any, model_id: str) -> DimPick:
    if isinstance(value, Mapping):
        keys = set(value)
        bounds = {k: value[k] for k in _WINDOW_KEYS & keys}
        numeric = all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            for v in bounds.values()
        )
        if not keys or not keys <= _WINDOW_KEYS or not numeric:
            raise InvalidParameterError(
                f"selection[{dim!r}] = {describe_value(value)} is not valid for {model_id}; a "
                f"window is a dict with numeric 'min' and/or 'max' (both ends included)"
            )
        if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
            raise InvalidParameterError(
                f"selection[{dim!r}] = {describe_value(value)}: 'min' is above 'max'"
            )
        return {"min": bounds.get("min"), "max": bounds.get("max")}
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (str, int, float, np.integer, np.floating)) and not isinstance(
        value, bool
    ):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise InvalidParameterError(
            f"selection[{dim!r}] = {describe_value(value)} is not valid for {model_id}; expected "
            f"a non-empty list of {dim} coordinates, or a window {{'min': ..., 'max': ...}}"
        )
    for item in value:
        if isinstance(item, bool) or not isinstance(
            item, (str, int, float, np.integer, np.floating)
        ):
            raise InvalidParameterError(
                f"selection[{dim!r}] holds {describe_value(item)}; coordinates are names or numbers"
            )
    return {"labels": tuple(value)}


def resolve_picks(
    picks: Mapping[str, DimPick],
    coords: Mapping[str, Mapping[str, np.ndarray]],
    model_id: str,
) -> dict[str, dict[str, np.ndarray]]:
    """The positions each pick keeps, for every output that has the dim.

    Parameters
    ----------
    picks : mapping
        From :func:`split_selection`.
    coords : mapping
        Output -> dim -> coordinate of every position (the model's own, before the picks).
    model_id : str
        Named in messages.

    Returns
    -------
    dict
        Output -> dim -> ``int64`` positions to keep, in order.

    Raises
    ------
    InvalidParameterError
        A coordinate the dim does not have (the message lists some it has), a window on
        non-numeric coordinates, or a window that keeps nothing.
    """
    kept: dict[str, dict[str, np.ndarray]] = {}
    for output, dims in coords.items():
        for dim, pick in picks.items():
            if dim in dims:
                kept.setdefault(output, {})[dim] = _positions(
                    np.asarray(dims[dim]), pick, dim, model_id
                )
    return kept


def _positions(values: np.ndarray, pick: DimPick, dim: str, model_id: str) -> np.ndarray:
    if "labels" in pick:
        where: dict[Any, int] = {}
        for position, label in enumerate(values.tolist()):
            where.setdefault(label, position)
        unknown = [label for label in pick["labels"] if _key(label) not in where]
        if unknown:
            shown = ", ".join(map(str, values.tolist()[:12]))
            more = ", ..." if len(values) > 12 else ""
            raise InvalidParameterError(
                f"selection[{dim!r}]: {describe_value(unknown)} not among the {len(values)} "
                f"{dim} coordinates of {model_id} ({shown}{more})"
            )
        return np.array([where[_key(label)] for label in pick["labels"]], dtype=np.int64)
    if values.dtype.kind not in "iuf":
        raise InvalidParameterError(
            f"selection[{dim!r}] is a window, but the {dim} coordinates of {model_id} are not "
            f"numbers ({values.dtype}); give a list of coordinates"
        )
    low = -np.inf if pick["min"] is None else pick["min"]
    high = np.inf if pick["max"] is None else pick["max"]
    positions = np.flatnonzero((values >= low) & (values <= high)).astype(np.int64)
    if positions.size == 0:
        raise InvalidParameterError(
            f"selection[{dim!r}] = {{'min': {pick['min']}, 'max': {pick['max']}}} keeps no "
            f"position of {model_id}; its {dim} coordinates run from {values.min()} to "
            f"{values.max()}"
        )
    return positions


def _key(label: Any) -> Any:
    """A label as it appears in ``ndarray.tolist()`` (numpy scalars become Python ones)."""
    return label.item() if isinstance(label, np.generic) else label


def apply_picks(values: np.ndarray, positions: Sequence[np.ndarray | None]) -> np.ndarray:
    """Keep *positions* along the axes after the first (``None``: the whole axis)."""
    for axis, index in enumerate(positions, start=1):
        if index is not None:
            values = np.take(values, index, axis=axis)
    return values
