"""Responses with their labels attached: an :class:`xarray.Dataset` (optional dependency).

:func:`to_xarray` turns what :meth:`berg_core.BERG.encode` returns into one ``xarray`` variable
per output, its axes named (``("image", "repetition", "channel", "time")``) and labelled with the
model's coordinates after every selection (:meth:`~berg_core.EncodingModel.coords`: channel
names, times in ms, vertex indices, neuroid ids). ``BERG.encode(..., return_xarray=True)`` does
the same in one call. xarray is imported only here, when asked for; without it these raise a
:class:`~berg_core.errors.BergError` saying ``pip install xarray``.

Naming: a dim that several outputs of a card have (``vertex`` of ``lh`` and ``rh``) may hold other
positions in each (an ROI's vertices differ between hemispheres), so in the dataset it is named
``<output>_<dim>`` (``lh_vertex``, ``rh_vertex``); a dim of one output keeps its name.

Aux coordinates (:meth:`~berg_core.EncodingModel.aux_coords`, THINGS's ``voxel_xyz``) become
non-index coordinates along their dims, named by the same rule (``<output>_<name>`` when several
outputs have one of that name). Their trailing axes, which are no dim of the output, get dims
of their own: ``<coordinate>_axis`` for one trailing axis (``voxel_xyz_axis``, size 3),
``<coordinate>_axis0``, ``<coordinate>_axis1`` ... for several; these have no coordinate.
Such a coordinate belongs to the dataset (``dataset.coords["voxel_xyz"]``, kept by
``dataset.sel``) but not to the output's variable, whose dims it exceeds; an aux coordinate
without trailing axes is also one of the variable's (``dataset["responses"].coords``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from berg_core.errors import BergError, InvalidParameterError, PluginError

if TYPE_CHECKING:
    import xarray

    from berg_core.encoder import EncodingModel

__all__ = ["dataset_dims", "require_xarray", "to_xarray"]


def require_xarray() -> Any:
    """Import and return :mod:`xarray`.

    Raises
    ------
    BergError
        xarray is not installed (the message says ``pip install xarray``).
    """
    try:
        import xarray
    except ImportError as exc:
        raise BergError(
            f"labelled responses (to_xarray, return_xarray=True) need xarray, which is not "
            f"installed ({exc}); pip install xarray"
        ) from None
    return xarray


def dataset_dims(model: EncodingModel) -> dict[str, tuple[str, ...]]:
    """Output -> its axes as :func:`to_xarray` names them (``"image"`` first).

    A dim shared by several outputs of the card is named ``<output>_<dim>``.
    """
    counts: dict[str, int] = {}
    for output in model.card.outputs:
        for dim in output.dim_names:
            counts[dim] = counts.get(dim, 0) + 1
    return {
        output.name: (
            "image",
            *(f"{output.name}_{dim}" if counts[dim] > 1 else dim for dim in output.dim_names),
        )
        for output in model.card.outputs
    }


def to_xarray(
    model: EncodingModel,
    responses: np.ndarray | Sequence[np.ndarray],
    *,
    images: Sequence[Any] | np.ndarray | None = None,
) -> xarray.Dataset:
    """Attach *model*'s dims and coordinates to *responses*.

    Parameters
    ----------
    model : EncodingModel
        The model that computed *responses* (its selection and picks give the coordinates).
    responses : numpy.ndarray or tuple of numpy.ndarray
        What :meth:`berg_core.BERG.encode` returned: one array per output, ``(N, *shape)``.
    images : sequence, optional
        A label of every image (its file name, say) as the ``image`` coordinate; default
        ``0..N-1``.

    Returns
    -------
    xarray.Dataset
        One variable per output (named as the output), dims :func:`dataset_dims`, coordinates
        :meth:`~berg_core.EncodingModel.coords` (a dim's ``unit`` as the coordinate's ``units``
        attribute, its description as ``description``) and the non-index
        :meth:`~berg_core.EncodingModel.aux_coords` (named as the module docstring says);
        attributes ``model_id``, ``subject``
        (``""`` when none), ``selection`` (JSON) and ``berg_core_version``.

    Raises
    ------
    BergError
        xarray is not installed.
    PluginError
        The model's aux coordinates are malformed (:meth:`~berg_core.EncodingModel.aux_coords`)
        or one's name in the dataset is already a dim, coordinate or variable there.
    InvalidParameterError
        *responses* do not have the model's shapes (:meth:`~berg_core.EncodingModel.shapes`),
        or *images* does not have one label per image.
    """
    xarray = require_xarray()
    from berg_core import __version__

    arrays = (responses,) if isinstance(responses, np.ndarray) else tuple(responses)
    shapes = model.shapes()
    if len(arrays) != len(shapes) or any(
        not isinstance(a, np.ndarray) or a.shape[1:] != s or a.ndim != len(s) + 1
        for a, s in zip(arrays, shapes, strict=False)
    ):
        got = tuple(getattr(a, "shape", type(a).__name__) for a in arrays)
        raise InvalidParameterError(
            f"responses of shapes {got} are not what {model.model_id} returns: (N, *shape) with "
            f"shapes {shapes}, one array per output ({', '.join(model.output_names)})"
        )
    n = arrays[0].shape[0]
    if any(a.shape[0] != n for a in arrays):
        raise InvalidParameterError(
            f"responses hold {[a.shape[0] for a in arrays]} images; every output has one row "
            f"per image"
        )
    if images is None:
        image_coord = np.arange(n, dtype=np.int64)
    else:
        image_coord = np.asarray(list(images))
        if image_coord.shape != (n,):
            raise InvalidParameterError(
                f"images: {image_coord.shape[0] if image_coord.ndim else 0} labels for {n} images"
            )
    names = dataset_dims(model)
    model_coords = model.coords()
    coords: dict[str, Any] = {"image": ("image", image_coord)}
    variables = {}
    for output, values in zip(model.card.outputs, arrays, strict=True):
        dims = names[output.name]
        for dim, name in zip(output.dims, dims[1:], strict=True):
            attrs = {"units": dim.unit} if dim.unit else {}
            if dim.description:
                attrs["description"] = dim.description
            coords[name] = (name, model_coords[output.name][dim.name], attrs)
        variables[output.name] = (dims, values, {"description": output.description})
    coords.update(_aux_coordinates(model, names, taken={*coords, *variables}))
    subject = model.subject
    return xarray.Dataset(
        variables,
        coords=coords,
        attrs={
            "model_id": model.model_id,
            "subject": "" if subject is None else str(subject),
            "selection": json.dumps(model.request.plain_selection()),
            "berg_core_version": __version__,
        },
    )


def _aux_coordinates(
    model: EncodingModel, names: dict[str, tuple[str, ...]], taken: set[str]
) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """The dataset's non-index coordinates: ``name -> (dims, values)`` (see the module doc)."""
    aux = model.aux_coords()
    counts: dict[str, int] = {}
    for entries in aux.values():
        for key in entries:
            counts[key] = counts.get(key, 0) + 1
    taken = taken | {dim for dims in names.values() for dim in dims}
    result: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
    for output, entries in aux.items():
        dim_names = model.card.output(output).dim_names
        for key, (dims, values) in entries.items():
            name = f"{output}_{key}" if counts[key] > 1 else key
            extra = values.ndim - len(dims)
            trailing = (
                (f"{name}_axis",) if extra == 1 else tuple(f"{name}_axis{k}" for k in range(extra))
            )
            for label in (name, *trailing):
                if label in taken:
                    raise PluginError(
                        f"{model.model_id}: aux coordinate {key!r} of output {output!r} would be "
                        f"named {label!r} in the dataset, which already has a dim, coordinate or "
                        f"variable of that name"
                    )
                taken.add(label)
            axes = tuple(names[output][1 + dim_names.index(dim)] for dim in dims)
            result[name] = ((*axes, *trailing), values)
    return result
