"""The encoding-model interface every plugin implements, and the load request it is built from.

A plugin's loader (registered with the ``register_models`` hook) receives a :class:`LoadRequest`
and returns an :class:`EncodingModel`. The model only has to say how many columns each output has
(:meth:`EncodingModel.output_sizes`) and yield responses batch by batch
(:meth:`EncodingModel.encode_batches`); the core turns that into preallocated arrays
(:meth:`EncodingModel.encode`), a progress bar, or rows streamed into an HDF5 file
(:func:`berg_core.output.encode_to_hdf5`), so memory stays flat however many images are encoded.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from berg_core.dims import apply_picks
from berg_core.errors import InvalidParameterError, PluginError

if TYPE_CHECKING:
    from berg_core.cards import ModelCard
    from berg_core.schemas import SelectionSchema
    from berg_core.stimulus import Stimulus

__all__ = ["EncodingModel", "LoadRequest", "OutputWriter"]


@dataclass(frozen=True)
class OutputWriter:
    """A brain-native output format of a model (NIfTI volume, GIFTI surface, ...).

    Attributes
    ----------
    description : str
        One line for help texts (``"4-D NIfTI volume, one volume per stimulus"``).
    targets : callable
        ``targets(path) -> list[Path]``: the files a write to *path* creates (checked for
        existence before any encoding starts).
    write : callable
        ``write(responses, path, reference=None, force=True) -> list[Path]`` with the tuple of
        arrays :meth:`EncodingModel.encode` computed (one per output). Columns not selected are
        written as NaN. *reference* is an optional image the format takes its geometry from.
        Without *force* an existing target is not replaced. Writers write through
        :func:`berg_core.atomic.atomic_outputs`, so a file appears whole or not at all.
    """

    description: str
    targets: Callable[[Path], list[Path]]
    write: Callable[..., list[Path]]


@dataclass(frozen=True)
class LoadRequest:
    """Everything a loader needs to build one model, already validated by the core.

    Attributes
    ----------
    model_id : str
        The id asked for (for a family member, the expanded id: ``brainscore_vision-alexnet``).
    card : ModelCard
        The model's card (for a family member, the family card with ``model_id`` replaced).
    berg_dir : Path
        Root of the model files.
    subject : int, str or None
        A member of ``card.subjects``, or ``None`` for models without subjects.
    selection : SelectionSchema or None
        The validated selection, or ``None`` if the model registered no schema.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``; ``"auto"`` is resolved by the
        plugin (the core never imports torch).
    options : dict
        Every option of ``card.options`` (validated; defaults where the caller gave none).
    dim_picks : dict
        Selections along labelled dims (:mod:`berg_core.dims`) that the core applies to the
        model's outputs; the loader may ignore them.
    """

    model_id: str
    card: ModelCard
    berg_dir: Path
    subject: int | str | None = None
    selection: SelectionSchema | None = None
    device: str = "auto"
    options: dict[str, Any] = field(default_factory=dict)
    dim_picks: dict[str, Any] = field(default_factory=dict)

    @property
    def batch_size(self) -> int | None:
        """The ``batch_size`` option, or ``None`` (the model chooses)."""
        return self.options.get("batch_size")

    def plain_selection(self) -> dict[str, Any]:
        """The selection as plain data (the family's keys, then the dim picks), for files."""
        plain = self.selection.as_plain_dict() if self.selection is not None else {}
        for dim, pick in self.dim_picks.items():
            plain[dim] = list(pick["labels"]) if "labels" in pick else dict(pick)
        return plain


class EncodingModel(ABC):
    """A loaded encoding model.

    Subclasses implement :meth:`encode_batches`, the size of each output (:meth:`output_sizes`
    for outputs with one axis, :meth:`output_shapes` for labelled outputs with several), and
    usually the coordinates of their positions (:meth:`column_indices` or :meth:`output_coords`),
    :meth:`subject_metadata` and :meth:`close`. The core does the rest, once for every family:
    batches, progress, shape checks, picks along labelled dims, preallocated results, files.
    Use a model as a context manager to free its memory (GPU memory included) when done::

        with berg.get_encoding_model("fmri-nsd_fsaverage-alexnet_untrained", subject=1) as model:
            lh, rh = berg.encode(model, images)

    Parameters
    ----------
    request : LoadRequest
        What was asked for.
    """

    #: Images per forward pass; plugins may override per instance.
    batch_size: int = 100

    def __init__(self, request: LoadRequest) -> None:
        self.request = request
        self.closed = False
        if request.batch_size is not None:
            self.batch_size = request.batch_size
        self._picks: dict[str, tuple[np.ndarray | None, ...]] | None = None

    # -- facts ------------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        """The id this model was loaded as."""
        return self.request.model_id

    @property
    def card(self) -> ModelCard:
        """The model's card."""
        return self.request.card

    @property
    def subject(self) -> int | str | None:
        """The subject this model predicts."""
        return self.request.subject

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the outputs, in the order :meth:`encode` returns them."""
        return self.card.output_names

    def output_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Shape (after the image axis) of each output as :meth:`encode_batches` yields it.

        One entry per dim of the card's output. The default is ``(n,)`` from
        :meth:`output_sizes`; models whose outputs have several dims override this instead.
        """
        if type(self).output_sizes is EncodingModel.output_sizes:
            raise PluginError(
                f"{type(self).__name__} implements neither output_sizes() nor output_shapes()"
            )
        return tuple((int(n),) for n in self.output_sizes())

    def output_sizes(self) -> tuple[int, ...]:
        """Number of values per image of each output (the product of its shape)."""
        if type(self).output_shapes is EncodingModel.output_shapes:
            raise PluginError(
                f"{type(self).__name__} implements neither output_sizes() nor output_shapes()"
            )
        return tuple(int(np.prod(shape)) for shape in self.output_shapes())

    def column_indices(self) -> dict[str, np.ndarray]:
        """For each output with one dim, the index of every column in the full output space.

        The default says columns are ``0..n-1``. Models with a selection override it so that a
        user can always tell which vertex, voxel or neuroid each column is. (Models with
        several dims give :meth:`output_coords` instead.)
        """
        return {
            name: np.arange(shape[0], dtype=np.int64)
            for name, shape in zip(self.output_names, self.output_shapes(), strict=True)
            if len(shape) == 1
        }

    def output_coords(self) -> dict[str, dict[str, np.ndarray]]:
        """Output -> dim -> the coordinate of every position, as :meth:`encode_batches` yields.

        The default: the card's coordinates where it declares them (times in ms, channel
        names), the :meth:`column_indices` for outputs with one dim, else ``0..n-1``. Models
        whose coordinates come from their files (a subject's channel names) override this.
        """
        columns = self.column_indices()
        coords: dict[str, dict[str, np.ndarray]] = {}
        for output, shape in zip(self.card.outputs, self.output_shapes(), strict=True):
            dims = {}
            for dim, size in zip(output.dims, shape, strict=True):
                if len(shape) == 1 and output.name in columns:
                    dims[dim.name] = np.asarray(columns[output.name])
                elif dim.coords is not None and len(dim.coords) == size:
                    dims[dim.name] = np.asarray(dim.coords)
                else:
                    dims[dim.name] = np.arange(size, dtype=np.int64)
            coords[output.name] = dims
        return coords

    def output_aux_coords(self) -> dict[str, dict[str, tuple[tuple[str, ...], np.ndarray]]]:
        """Output -> name -> ``(dims, values)``: coordinates that are not the index of one dim.

        A coordinate *name* along the given dims of the output, as :meth:`encode_batches` yields
        it (before the core's picks): the first axes of *values* are those dims, in that order,
        one position per position of the dim; further trailing axes are allowed (THINGS's
        ``voxel_xyz``: ``(("voxel",), array of shape (n_voxels, 3))``). *name* must differ
        from the output's dim names. The default: none.
        """
        return {}

    # -- what encode returns (after the core's picks along labelled dims) ------------------------
    def _positions(self) -> dict[str, tuple[np.ndarray | None, ...]]:
        """Output -> per dim, the positions the dim picks keep (``None``: all)."""
        if self._picks is None:
            from berg_core.dims import resolve_picks

            kept = resolve_picks(self.request.dim_picks, self.output_coords(), self.model_id)
            self._picks = {
                output.name: tuple(kept.get(output.name, {}).get(d) for d in output.dim_names)
                for output in self.card.outputs
            }
        return self._picks

    def shapes(self) -> tuple[tuple[int, ...], ...]:
        """Shape (after the image axis) of each array :meth:`encode` returns."""
        positions = self._positions()
        return tuple(
            tuple(n if index is None else len(index) for n, index in zip(shape, kept, strict=True))
            for shape, kept in zip(
                self.output_shapes(), (positions[name] for name in self.output_names), strict=True
            )
        )

    def coords(self) -> dict[str, dict[str, np.ndarray]]:
        """Output -> dim -> the coordinate of every position of what :meth:`encode` returns."""
        positions = self._positions()
        return {
            name: {
                dim: values if index is None else values[index]
                for (dim, values), index in zip(dims.items(), positions[name], strict=True)
            }
            for name, dims in self.output_coords().items()
        }

    def aux_coords(self) -> dict[str, dict[str, tuple[tuple[str, ...], np.ndarray]]]:
        """Output -> name -> ``(dims, values)`` of what :meth:`encode` returns.

        :meth:`output_aux_coords`, checked, with the core's picks applied along each of its dims
        (the same positions as :meth:`coords`).

        Raises
        ------
        PluginError
            An aux coordinate of an output the card does not have, named like one of the
            output's dims (or not a plain name), along dims the output does not have (or one
            dim twice, or none), or whose leading axes do not match the sizes of its dims.
        """
        positions = self._positions()
        shapes = dict(zip(self.output_names, self.output_shapes(), strict=True))
        result: dict[str, dict[str, tuple[tuple[str, ...], np.ndarray]]] = {}
        for output, entries in self.output_aux_coords().items():
            if output not in shapes:
                raise PluginError(
                    f"{type(self).__name__}.output_aux_coords(): output {output!r} is not one of "
                    f"{self.model_id}'s outputs {list(self.output_names)}"
                )
            dim_names = self.card.output(output).dim_names
            picked = {}
            for name, (dims, values) in entries.items():
                dims = tuple(dims)
                values = np.asarray(values)
                where = f"{type(self).__name__}.output_aux_coords()[{output!r}][{name!r}]"
                if not isinstance(name, str) or not name or "/" in name or name in dim_names:
                    raise PluginError(
                        f"{where}: the name must be a non-empty string without '/' that is not "
                        f"a dim of output {output!r} {list(dim_names)}"
                    )
                if not dims or len(set(dims)) != len(dims) or not set(dims) <= set(dim_names):
                    raise PluginError(
                        f"{where}: dims {list(dims)} must be distinct dims of output {output!r} "
                        f"{list(dim_names)} (at least one)"
                    )
                axes = [dim_names.index(dim) for dim in dims]
                want = tuple(shapes[output][axis] for axis in axes)
                if values.shape[: len(dims)] != want:
                    raise PluginError(
                        f"{where}: values of shape {values.shape} along dims {list(dims)} of "
                        f"sizes {want}; the leading axes must be those sizes"
                    )
                for i, axis in enumerate(axes):
                    kept = positions[output][axis]
                    if kept is not None:
                        values = np.take(values, kept, axis=i)
                picked[name] = (dims, values)
            result[output] = picked
        return result

    def columns(self) -> dict[str, np.ndarray]:
        """Output -> the full-space index of each column :meth:`encode` returns (one-dim outputs).

        The index of each vertex, voxel or neuroid after every selection (the family's and the
        dim picks); what file writers use to place the columns in the full output space. These
        are the integer :meth:`column_indices`, whatever the coordinates are (Brain-Score's
        coordinates are neuroid ids, its columns the neuroids' positions in the benchmark).
        """
        positions = self._positions()
        columns = {}
        for name, indices in self.column_indices().items():
            kept = positions[name][0]
            indices = np.asarray(indices, dtype=np.int64)
            columns[name] = indices if kept is None else indices[kept]
        return columns

    def dims(self) -> dict[str, tuple[str, ...]]:
        """Output -> the names of its axes, the image axis first."""
        return {output.name: ("image", *output.dim_names) for output in self.card.outputs}

    def output_writers(self) -> dict[str, OutputWriter]:
        """Brain-native file formats this model can write, by file-name suffix.

        The default offers none; HDF5 (``.h5``) is always available through
        :func:`berg_core.output.write_responses`.
        """
        return {}

    def subject_metadata(self) -> dict[str, Any]:
        """The per-subject metadata dict (as ``get_model_metadata`` returns it); ``{}`` if none."""
        return {}

    def response_metadata(self) -> dict[str, Any]:
        """Metadata returned by ``encode(..., return_metadata=True)``.

        The subject metadata (reference-compatible keys), plus an ``"output"`` entry describing the
        returned arrays: model id, subject, selection, output names, dims, coordinates
        (``coords``; ``aux_coords``: output -> name -> ``{"dims": [...], "values": array}``, see
        :meth:`aux_coords`) and column indices.
        """
        from berg_core.safe_npy import in_memory

        metadata = dict(in_memory(self.subject_metadata()))
        coords = self.coords()
        metadata["output"] = {
            "model_id": self.model_id,
            "subject": self.subject,
            "selection": self.request.plain_selection(),
            "names": list(self.output_names),
            "dims": {name: list(dims) for name, dims in self.dims().items()},
            "coords": coords,
            # coordinates that are not one dim's index: name -> {"dims": [...], "values": array}
            "aux_coords": {
                name: {key: {"dims": list(d), "values": v} for key, (d, v) in entries.items()}
                for name, entries in self.aux_coords().items()
            },
            # one-dim outputs: the index of each column (vertex, voxel ...), as before dims existed
            "columns": self.columns(),
        }
        return metadata

    # -- encoding ---------------------------------------------------------------------------
    @abstractmethod
    def encode_batches(self, stimulus: Stimulus) -> Iterator[tuple[np.ndarray, ...]]:
        """Yield responses for consecutive batches of *stimulus*, in order.

        Each item is a tuple with one ``float32`` array per output, ``(B, *output_shapes()[i])``
        (or flat, ``(B, output_sizes()[i])``); the batches together cover every image exactly
        once. Use ``stimulus.batches(self.batch_size)``.
        """

    def encode(
        self, stimulus: Stimulus, *, show_progress: bool = True
    ) -> np.ndarray | tuple[np.ndarray, ...]:
        """Encode *stimulus* into preallocated ``float32`` arrays.

        Returns
        -------
        numpy.ndarray or tuple of numpy.ndarray
            One array ``(N, *shape)`` per output (:meth:`shapes`, axes :meth:`dims`); a bare
            array when the model has one output.
        """
        self._check_open()
        n = len(stimulus)
        outputs = tuple(np.empty((n, *shape), dtype=np.float32) for shape in self.shapes())
        for start, stop, batch in self.iter_rows(stimulus, show_progress=show_progress):
            for target, values in zip(outputs, batch, strict=True):
                target[start:stop] = values
        return outputs[0] if len(outputs) == 1 else outputs

    def iter_rows(
        self, stimulus: Stimulus, *, show_progress: bool = True
    ) -> Iterator[tuple[int, int, tuple[np.ndarray, ...]]]:
        """The one encode loop: ``(start, stop, batch)`` with the arrays :meth:`encode` fills.

        Runs :meth:`encode_batches` with a progress bar, checks every batch's shapes, shapes
        flat batches and keeps the positions the dim picks select. Every sink (in-memory
        arrays, HDF5, brain-native files) consumes this.
        """
        from tqdm.auto import tqdm

        self._check_open()
        n = len(stimulus)
        shapes = self.output_shapes()
        positions = [self._positions()[name] for name in self.output_names]
        start = 0
        with tqdm(
            total=n, desc=f"Encoding {self.model_id}", unit="img", disable=not show_progress
        ) as bar:
            for batch in self.encode_batches(stimulus):
                batch = tuple(batch)
                rows = batch[0].shape[0] if batch and batch[0].ndim else -1
                if len(batch) != len(shapes) or any(
                    b.shape not in ((rows, *shape), (rows, int(np.prod(shape))))
                    for b, shape in zip(batch, shapes, strict=False)
                ):
                    raise PluginError(
                        f"{type(self).__name__}.encode_batches yielded shapes "
                        f"{tuple(b.shape for b in batch)}; expected (B, *shape) with shapes "
                        f"{shapes}"
                    )
                if start + rows > n:
                    raise PluginError(
                        f"{type(self).__name__}.encode_batches yielded more than the {n} images"
                    )
                yield (
                    start,
                    start + rows,
                    tuple(
                        apply_picks(values.reshape(rows, *shape), kept)
                        for values, shape, kept in zip(batch, shapes, positions, strict=True)
                    ),
                )
                start += rows
                bar.update(rows)
        if start != n:
            raise PluginError(f"{type(self).__name__}.encode_batches covered {start} of {n} images")

    def generate_response(
        self, stimulus: Any, show_progress: bool = True
    ) -> np.ndarray | tuple[np.ndarray, ...]:
        """Reference-toolkit name of ``BERG.encode(model, stimulus)``.

        *stimulus* is anything :func:`berg_core.stimulus.as_stimulus` reads (arrays, folders,
        image files, PIL images), checked as :meth:`BERG.encode` checks it.
        """
        from berg_core.arguments import require_flag
        from berg_core.stimulus import as_stimulus

        show_progress = require_flag(show_progress, "show_progress")
        return self.encode(as_stimulus(stimulus), show_progress=show_progress)

    def differentiable(self) -> Any:
        """The model's whole path as a differentiable ``torch.nn.Module``, for gradient work.

        The module maps ``(B, 3, H, W)`` float images with values in [0, 1] to one tensor per
        output, ``(B, *shapes()[i])``: what :meth:`encode` returns for those images, computed
        without in-place operations so that autograd can follow it (image synthesis). Models
        built with :mod:`berg_core.torchkit` provide it
        (:class:`berg_core.torchkit.differentiable.DifferentiableEncoder`); the default has none.

        Raises
        ------
        NotDifferentiableError
            The model has no differentiable torch path.
        """
        from berg_core.errors import NotDifferentiableError

        raise NotDifferentiableError(
            f"model {self.model_id} has no differentiable path: {type(self).__name__} does not "
            f"implement differentiable() (torch models built with berg_core.torchkit do)"
        )

    # -- reference-toolkit model methods ----------------------------------------------------
    def get_model_id(self) -> str:
        """The id this model was loaded as (reference-toolkit name of :attr:`model_id`)."""
        return self.model_id

    def describe(self, print_format: bool = True) -> dict[str, Any]:
        """What ``BERG.describe(model_id)`` returns for this model (printed when *print_format*).

        Returns
        -------
        dict
            The card, with the reference toolkit's ``parameters`` entry.
        """
        from berg_core.arguments import require_flag
        from berg_core.parameters import describe_entry
        from berg_core.registry import get_registry
        from berg_core.render import format_card

        info = describe_entry(*get_registry().resolve(self.model_id))
        if require_flag(print_format, "print_format"):
            print(format_card(info))
        return info

    def get_metadata(self) -> dict[str, Any]:
        """The subject's metadata, as ``BERG.get_model_metadata(model_id, subject)`` returns it.

        Read from ``berg_dir`` again (a fresh, writable copy); works after :meth:`close` too.

        Raises
        ------
        ModelLoadError
            The metadata file is missing or unsafe.
        """
        from berg_core.registry import get_registry, load_metadata

        entry, _ = get_registry().resolve(self.model_id)
        return load_metadata(entry, self.card, self.request.berg_dir, self.subject)

    # -- lifetime ---------------------------------------------------------------------------
    def close(self) -> None:
        """Free the model's memory. The model cannot encode afterwards."""
        self.closed = True

    def cleanup(self) -> None:
        """Reference-toolkit name of :meth:`close`."""
        self.close()

    def _check_open(self) -> None:
        if self.closed:
            raise InvalidParameterError(
                f"model {self.model_id} was closed; load it again to encode"
            )

    def __enter__(self) -> EncodingModel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        subject = f", subject={self.subject!r}" if self.subject is not None else ""
        state = ", closed" if self.closed else ""
        return f"<{type(self).__name__} {self.model_id}{subject}{state}>"
