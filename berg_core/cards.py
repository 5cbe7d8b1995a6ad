"""Model cards: the facts a model family declares about each model it provides.

A card binds together what belongs together: identity and provenance (shown by ``berg describe``
and :meth:`berg_core.BERG.describe`), the valid subjects, the names of the model's outputs, the
files it reads under ``berg_dir`` and the extra keyword options its loader accepts. Core code reads
the card; nothing about a model is repeated elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    create_model,
    field_validator,
)

from berg_core.arguments import scalar_value
from berg_core.errors import InvalidParameterError, describe_value

__all__ = [
    "Dim",
    "EncodeOptions",
    "FileSpec",
    "ModelCard",
    "Output",
    "ResolvedFile",
    "option_specs",
]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Dim(BaseModel):
    """One labelled axis of a model output (after the image axis).

    Parameters
    ----------
    name : str
        A Python identifier naming the axis: ``"vertex"``, ``"voxel"``, ``"neuroid"``,
        ``"repetition"``, ``"channel"``, ``"time"``. Selections may pick along it by this name.
    size : int, optional
        Length of the axis in the model's full output space; ``None`` when it depends on the
        subject or the files (the loaded model then says, :meth:`EncodingModel.output_shapes`).
    unit : str
        Unit of the coordinates (``"ms"`` for time).
    description : str
        What one position along the axis is.
    coords : tuple, optional
        The coordinate of every position when the card knows them (times in ms, channel
        names); otherwise the loaded model gives them (:meth:`EncodingModel.output_coords`),
        by default ``0..size-1``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    size: PositiveInt | None = None
    unit: str = ""
    description: str = ""
    coords: tuple[int | float | str, ...] | None = None

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _IDENTIFIER.fullmatch(value) or value == "image":
            raise ValueError(f"a dim name is a Python identifier other than 'image', got {value!r}")
        return value

    @field_validator("coords")
    @classmethod
    def _coords_fit(cls, value: tuple[Any, ...] | None, info: Any) -> tuple[Any, ...] | None:
        size = info.data.get("size")
        if value is not None and size is not None and len(value) != size:
            raise ValueError(f"{len(value)} coords for a dim of size {size}")
        return value


class Output(BaseModel):
    """One array a model returns: its name and its labelled axes (after the image axis).

    A plain string in :attr:`ModelCard.outputs` is an output with one axis, ``"column"``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    dims: tuple[Dim, ...] = (Dim(name="column"),)
    description: str = ""

    @field_validator("dims")
    @classmethod
    def _unique_dims(cls, value: tuple[Dim, ...]) -> tuple[Dim, ...]:
        if not value:
            raise ValueError("an output has at least one dim besides the image axis")
        names = [dim.name for dim in value]
        if len(set(names)) != len(names):
            raise ValueError(f"dim names of an output must be unique, got {names}")
        return value

    @property
    def dim_names(self) -> tuple[str, ...]:
        """The names of the axes after the image axis."""
        return tuple(dim.name for dim in self.dims)


class ResolvedFile(BaseModel):
    """One file of one subject: its key under ``berg_dir`` and what is known to verify it."""

    model_config = ConfigDict(frozen=True)

    key: str
    base_url: str | None = None
    size: int | None = None
    sha256: str | None = None


class FileSpec(BaseModel):
    """One file a model reads, for every subject: where it lies and how to verify it.

    Parameters
    ----------
    path : str
        Path under ``berg_dir`` (and under the download base URL), a :meth:`str.format`
        template with the field ``subject`` (``".../weights_subject-{subject:02d}.npy"``).
    base_url : str, optional
        Where the family publishes it (S3, Zenodo, OSF, a lab server ...); default: the
        reference toolkit's public bucket, or the mirror the user names.
    size, sha256 : optional
        Size in bytes and SHA-256 (hex): one value for a path without ``{subject}``, else a
        dict from the subject (as ``str``) to its value. ``berg fetch`` verifies what is given.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(min_length=1)
    base_url: str | None = None
    size: int | dict[str, int] | None = None
    sha256: str | dict[str, str] | None = None

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str | dict[str, str] | None) -> str | dict[str, str] | None:
        values = value.values() if isinstance(value, dict) else [value] if value else []
        for digest in values:
            if not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise ValueError(f"sha256 is 64 lower-case hex digits, got {digest!r}")
        return value

    def resolve(self, subject: int | str | None) -> ResolvedFile:
        """The key and checks of this file for *subject*."""

        def pick(value: Any) -> Any:
            return value.get(str(subject)) if isinstance(value, dict) else value

        return ResolvedFile(
            key=self.path.format(subject=subject),
            base_url=self.base_url,
            size=pick(self.size),
            sha256=pick(self.sha256),
        )


class EncodeOptions(BaseModel):
    """Options every model accepts as keyword arguments of ``get_encoding_model``.

    A family subclasses it to add its own (typed, with defaults, bounds and a description in
    ``Field(description=...)``) and names the subclass in :attr:`ModelCard.options`. The core
    validates the user's keywords with it before the loader runs (``berg encode -o key=value``
    sets them from the command line) and hands the result to the loader as
    :attr:`LoadRequest.options`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_size: PositiveInt | None = Field(
        None, description="Images per forward pass (default: the model's own choice)."
    )

    @field_validator("batch_size", mode="before")
    @classmethod
    def _not_a_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):  # True is an int to Python, not a batch size
            raise ValueError("a batch size is an integer, not a bool")
        return value


def _legacy_options(names: tuple[str, ...]) -> type[EncodeOptions]:
    """Options declared by name only (berg-core < 0.2 cards): typed ``Any``, default ``None``."""
    fields: dict[str, Any] = {
        name: (Any, Field(None, description="An option of this model (untyped)."))
        for name in names
        if name not in EncodeOptions.model_fields
    }
    return create_model("LegacyOptions", __base__=EncodeOptions, **fields)


class ModelCard(BaseModel):
    """Everything berg knows about one encoding model before loading it.

    Parameters
    ----------
    model_id : str
        Unique id, ``{modality}-{dataset}-{model}`` by convention (e.g.
        ``"fmri-nsd_fsaverage-alexnet_untrained"``).
    modality, training_dataset, species, stimuli, model_type, creator, description : str
        Human-readable provenance, as in the reference model cards.
    subjects : tuple of int or str
        Valid values of ``subject``. Empty when the model takes no subject.
    outputs : tuple of Output or str
        The arrays :func:`encode` returns, in order, each with its labelled axes (a plain name is
        an output with one axis, ``"column"``). One output means ``encode`` returns a single
        array; several mean a tuple (``lh`` and ``rh`` for fsaverage models).
    output_description : str
        What each output column is (vertex, voxel, neuroid ...).
    selection_required : bool
        Whether ``selection`` must be given.
    files : tuple of FileSpec or str
        The files the model reads for one subject (a plain string is a :class:`FileSpec` path:
        a template under ``berg_dir`` with the field ``subject``).
    options : type of EncodeOptions, or tuple of str
        The typed keyword options :meth:`BERG.get_encoding_model` accepts for this model (a
        subclass of :class:`EncodeOptions`); a tuple of names declares untyped options.
    references : dict of str to str
        Label -> URL or citation.
    performance : str
        Where to find accuracy figures.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_id: str = Field(min_length=1)
    modality: str
    training_dataset: str
    species: str
    stimuli: str = "Images"
    model_type: str
    creator: str = ""
    description: str = ""
    subjects: tuple[int | str, ...] = ()
    outputs: tuple[Output, ...] = (Output(name="responses"),)
    output_description: str = ""
    selection_required: bool = False
    files: tuple[FileSpec, ...] = ()
    options: type[EncodeOptions] = EncodeOptions
    references: dict[str, str] = Field(default_factory=dict)
    performance: str = ""

    @field_validator("model_id")
    @classmethod
    def _id_has_no_spaces(cls, value: str) -> str:
        if value != value.strip() or any(ch.isspace() for ch in value):
            raise ValueError(f"model ids contain no whitespace, got {value!r}")
        return value

    @field_validator("outputs", mode="before")
    @classmethod
    def _outputs_from_names(cls, value: Any) -> Any:
        if isinstance(value, (str, Output)):
            value = (value,)
        if isinstance(value, (list, tuple)):
            return tuple(Output(name=item) if isinstance(item, str) else item for item in value)
        return value

    @field_validator("outputs")
    @classmethod
    def _at_least_one_output(cls, value: tuple[Output, ...]) -> tuple[Output, ...]:
        if not value:
            raise ValueError("a model has at least one output")
        names = [output.name for output in value]
        if len(set(names)) != len(names):
            raise ValueError(f"output names must be unique, got {names}")
        return value

    @field_validator("files", mode="before")
    @classmethod
    def _files_from_paths(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return tuple(FileSpec(path=item) if isinstance(item, str) else item for item in value)
        return value

    @field_validator("options", mode="before")
    @classmethod
    def _options_from_names(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            if not all(isinstance(name, str) and _IDENTIFIER.fullmatch(name) for name in value):
                raise ValueError(f"option names are Python identifiers, got {value!r}")
            return _legacy_options(tuple(value))
        if not (isinstance(value, type) and issubclass(value, EncodeOptions)):
            raise ValueError(
                f"options is a subclass of berg_core.EncodeOptions (or a tuple of names), got "
                f"{value!r}"
            )
        return value

    @property
    def output_names(self) -> tuple[str, ...]:
        """The names of the outputs, in order."""
        return tuple(output.name for output in self.outputs)

    def output(self, name: str) -> Output:
        """The output called *name*."""
        for output in self.outputs:
            if output.name == name:
                return output
        raise KeyError(name)

    @property
    def dim_names(self) -> tuple[str, ...]:
        """Every dim name of every output, each once, in order of appearance."""
        return tuple(dict.fromkeys(d for output in self.outputs for d in output.dim_names))

    @property
    def option_names(self) -> tuple[str, ...]:
        """The keyword options the model accepts."""
        return tuple(self.options.model_fields)

    def check_subject(self, subject: Any) -> int | str | None:
        """Return the subject of this model that *subject* stands for.

        Parameters
        ----------
        subject : int, str or None
            A value of :attr:`subjects` (a numpy scalar or 0-d array stands for its value; the
            type must match: ``True`` is not ``1``, ``"1"`` is not ``1``), or ``None`` when the
            model takes no subject.

        Returns
        -------
        int, str or None
            The matching entry of :attr:`subjects` (``None`` for a model without subjects).

        Raises
        ------
        InvalidParameterError
            A subject missing, given to a model that takes none, or not one of :attr:`subjects`
            (the message lists the valid ones).
        """
        valid = self.subjects
        shown = ", ".join(str(s) for s in valid)
        if not valid:
            if subject is not None:
                raise InvalidParameterError(
                    f"subject = {describe_value(subject)}: {self.model_id} takes no subject"
                )
            return None
        if subject is None:
            raise InvalidParameterError(f"subject is required for {self.model_id}; valid: {shown}")
        try:  # a numpy scalar or 0-d array (numpy, torch) stands for its value
            candidate = scalar_value(subject)
        except ValueError as exc:
            raise InvalidParameterError(
                f"subject = {describe_value(subject)} is not a subject of {self.model_id}: {exc}; "
                f"give one subject, one of {shown}"
            ) from None
        for value in valid:  # the type first: True is not 1, 1.0 is not 1, '1' is not 1
            if type(candidate) is type(value) and candidate == value:
                return value
        raise InvalidParameterError(
            f"subject = {describe_value(subject)} is not a subject of {self.model_id}; "
            f"valid: {shown}"
        )

    def files_for(self, subject: int | str | None) -> list[str]:
        """Return the paths (relative to ``berg_dir``) this model reads for *subject*."""
        return [spec.resolve(subject).key for spec in self.files]

    def resolved_files(self, subject: int | str | None) -> list[ResolvedFile]:
        """The files this model reads for *subject*, with where they come from and checksums."""
        return [spec.resolve(subject) for spec in self.files]

    def with_id(self, model_id: str) -> ModelCard:
        """Return a copy of this card for a member *model_id* of a model family."""
        return self.model_copy(update={"model_id": model_id})

    def to_dict(self) -> dict[str, Any]:
        """Return the card as a plain dict, with the reference toolkit's ``describe`` keys added.

        ``outputs`` lists the output names (as before labelled outputs existed), ``output_dims``
        each output's axes, ``files`` the path templates, ``file_specs`` where they come from and
        their checksums, and ``options`` the option names; ``option_specs`` their types, defaults
        and descriptions.
        """
        data = _plain(self.model_dump(exclude={"outputs", "files", "options"}))
        data["outputs"] = list(self.output_names)
        data["output_dims"] = {
            output.name: [_plain(dim.model_dump()) for dim in output.dims]
            for output in self.outputs
        }
        data["files"] = [spec.path for spec in self.files]
        data["file_specs"] = [_plain(spec.model_dump()) for spec in self.files]
        data["options"] = list(self.option_names)
        data["option_specs"] = option_specs(self.options)
        data["model_info"] = {
            "modality": self.modality,
            "training_dataset": self.training_dataset,
            "model_architecture": self.model_type,
            "creator": self.creator,
        }
        data["example_usage"] = self.example_usage()
        return data

    def example_usage(self) -> str:
        """Return a short Python example that loads this model and encodes images."""
        subject = f", subject={self.subjects[0]!r}" if self.subjects else ""
        outputs = ", ".join(self.output_names) if len(self.outputs) > 1 else "responses"
        return (
            "from berg_core import BERG\n"
            'berg = BERG(berg_dir="path/to/brain-encoding-response-generator")\n'
            f"model = berg.get_encoding_model({self.model_id!r}{subject})\n"
            "# images: uint8 array (N, 3, H, W), a folder, or a list of image paths\n"
            f"{outputs} = berg.encode(model, images)\n"
        )


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively (cards are shown as JSON-like dicts)."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def option_specs(options: type[EncodeOptions]) -> dict[str, dict[str, Any]]:
    """Name -> ``{"type", "default", "description"}`` and bounds of each option, from its schema."""
    properties = options.model_json_schema().get("properties", {})
    specs = {}
    for name, field in options.model_fields.items():
        schema = properties.get(name, {})
        branches = schema.get("anyOf", [schema])
        types = [b.get("type", "any") for b in branches]
        spec: dict[str, Any] = {
            "type": " | ".join(types) if types != ["any"] else "any",
            "default": _plain(field.default),
            "description": field.description or "",
        }
        for branch in branches:
            for bound in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "enum"):
                if bound in branch:
                    spec[bound] = branch[bound]
        specs[name] = spec
    return specs
