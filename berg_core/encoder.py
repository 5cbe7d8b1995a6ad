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
        Extra keyword arguments, restricted to ``card.options``.
    """

    model_id: str
    card: ModelCard
    berg_dir: Path
    subject: int | str | None = None
    selection: SelectionSchema | None = None
    device: str = "auto"
    options: dict[str, Any] = field(default_factory=dict)


class EncodingModel(ABC):
    """A loaded encoding model.

    Subclasses implement :meth:`output_sizes`, :meth:`encode_batches` and usually
    :meth:`column_indices`, :meth:`subject_metadata` and :meth:`close`. Use a model as a context
    manager to free its memory (GPU memory included) when done::

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
        return self.card.outputs

    @abstractmethod
    def output_sizes(self) -> tuple[int, ...]:
        """Number of columns of each output, in :attr:`output_names` order."""

    def column_indices(self) -> dict[str, np.ndarray]:
        """For each output, the index of every column in the model's full output space.

        The default says columns are ``0..n-1``. Models with a selection override it so that a
        user can always tell which vertex, voxel or neuroid each column is.
        """
        return {
            name: np.arange(size, dtype=np.int64)
            for name, size in zip(self.output_names, self.output_sizes(), strict=True)
        }

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
        returned arrays: model id, subject, selection, output names and column indices.
        """
        from berg_core.safe_npy import in_memory

        metadata = dict(in_memory(self.subject_metadata()))
        selection = self.request.selection
        metadata["output"] = {
            "model_id": self.model_id,
            "subject": self.subject,
            "selection": selection.as_plain_dict() if selection is not None else {},
            "names": list(self.output_names),
            "columns": self.column_indices(),
        }
        return metadata

    # -- encoding ---------------------------------------------------------------------------
    @abstractmethod
    def encode_batches(self, stimulus: Stimulus) -> Iterator[tuple[np.ndarray, ...]]:
        """Yield responses for consecutive batches of *stimulus*, in order.

        Each item is a tuple with one ``float32`` array ``(B, output_sizes()[i])`` per output; the
        batches together cover every image exactly once.
        """

    def encode(
        self, stimulus: Stimulus, *, show_progress: bool = True
    ) -> np.ndarray | tuple[np.ndarray, ...]:
        """Encode *stimulus* into preallocated ``float32`` arrays.

        Returns
        -------
        numpy.ndarray or tuple of numpy.ndarray
            One array ``(N, columns)`` per output; a bare array when the model has one output.
        """
        self._check_open()
        n = len(stimulus)
        outputs = tuple(np.empty((n, size), dtype=np.float32) for size in self.output_sizes())
        for start, stop, batch in self._iter_rows(stimulus, show_progress):
            for target, values in zip(outputs, batch, strict=True):
                target[start:stop] = values
        return outputs[0] if len(outputs) == 1 else outputs

    def _iter_rows(
        self, stimulus: Stimulus, show_progress: bool
    ) -> Iterator[tuple[int, int, tuple[np.ndarray, ...]]]:
        """Yield ``(start, stop, batch)`` row ranges with a progress bar, checking batch shapes."""
        from tqdm.auto import tqdm

        n = len(stimulus)
        sizes = self.output_sizes()
        start = 0
        with tqdm(
            total=n, desc=f"Encoding {self.model_id}", unit="img", disable=not show_progress
        ) as bar:
            for batch in self.encode_batches(stimulus):
                rows = batch[0].shape[0]
                got = tuple(b.shape for b in batch)
                if len(batch) != len(sizes) or any(
                    b.shape != (rows, size) for b, size in zip(batch, sizes, strict=True)
                ):
                    raise PluginError(
                        f"{type(self).__name__}.encode_batches yielded shapes {got}; expected "
                        f"({rows}, n) with n = {sizes}"
                    )
                yield start, start + rows, batch
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
        return self._berg().describe(self.model_id, print_format=print_format)

    def get_metadata(self) -> dict[str, Any]:
        """The subject's metadata, as ``BERG.get_model_metadata(model_id, subject)`` returns it.

        Read from ``berg_dir`` again (a fresh, writable copy); works after :meth:`close` too.

        Raises
        ------
        ModelLoadError
            The metadata file is missing or unsafe.
        """
        return self._berg().get_model_metadata(self.model_id, subject=self.subject)

    def _berg(self) -> Any:
        from berg_core.api import BERG

        return BERG(self.request.berg_dir)

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
