"""Selection schemas: pydantic v2 models that validate a model's ``selection`` dict.

A plugin subclasses :class:`SelectionSchema`, one field per selection key, and registers it for
its models through the ``register_selection_schemas`` hook. The core validates the user's dict
against it and turns every failure into an :class:`~berg_core.errors.InvalidParameterError` that
names the key, the value and what is allowed. The validated instance is handed to the model's
loader, which turns it into indices (the schema's :meth:`SelectionSchema.resolve` by convention).

Building blocks for common keys are provided: :func:`one_of` (a name from a list, with aliases),
:func:`names_from` (one name or a list of names) and :func:`binary_mask` (a 0/1 vector of fixed
length, returned as a boolean array). Each carries a :class:`ValueSpec` saying what it accepts,
from which :meth:`SelectionSchema.describe_properties` builds the reference toolkit's
``parameters["selection"]["properties"]`` entry of ``describe()``.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from berg_core.cards import EncodeOptions
from berg_core.errors import InvalidParameterError, describe_value

__all__ = [
    "SelectionSchema",
    "ValueSpec",
    "binary_mask",
    "names_from",
    "one_of",
    "validate_options",
    "validate_selection",
]


@dataclass(frozen=True, eq=False)  # hashed by identity: typing hashes Annotated metadata
class ValueSpec:
    """What a selection key accepts, as ``describe()`` reports it (kept in ``Annotated`` metadata).

    Attributes
    ----------
    type : str
        Type name in the reference cards' spelling (``"str"``, ``"list[str]"``,
        ``"numpy.ndarray"``).
    description : str
        One sentence for users.
    valid_values : tuple, optional
        Every accepted value, when they can be listed.
    example : object, optional
        A valid value.
    extra : dict
        Further facts (``aliases``, ``shape``), added to the entry as they are.
    """

    type: str
    description: str
    valid_values: tuple[Any, ...] | None = None
    example: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The entry of ``parameters["selection"]["properties"]`` (plain lists, no tuples)."""
        entry: dict[str, Any] = {"type": self.type, "description": self.description}
        if self.valid_values is not None:
            entry["valid_values"] = list(self.valid_values)
        if self.example is not None:
            entry["example"] = self.example
        entry.update(self.extra)
        return entry


class SelectionSchema(BaseModel):
    """Base class of selection schemas.

    Unknown keys are rejected, arrays are allowed as field values, and instances are immutable.
    Subclasses usually add a ``resolve(...)`` method that returns the selected indices.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)

    def as_plain_dict(self) -> dict[str, Any]:
        """Return the given (non-``None``) keys, arrays turned into lists of selected indices.

        Suitable for JSON, HDF5 attributes and logs.
        """
        plain: dict[str, Any] = {}
        for key, value in self.model_dump(exclude_none=True).items():
            if isinstance(value, np.ndarray):
                value = np.flatnonzero(value).tolist() if value.dtype == bool else value.tolist()
            elif isinstance(value, tuple):
                value = list(value)
            plain[key] = value
        return plain

    @classmethod
    def describe_properties(cls) -> dict[str, dict[str, Any]]:
        """What each selection key accepts, in the reference cards' structure.

        Returns
        -------
        dict of str to dict
            ``{key: {"type", "description", "required", "valid_values"?, "example"?, ...}}`` in
            field order. ``valid_values`` is present when the key's values can be listed (names
            from :func:`one_of` / :func:`names_from`, ``Literal`` types). A field's own
            ``Field(description=..., examples=[...])`` overrides the building block's.
        """
        return {name: _describe_field(info) for name, info in cls.model_fields.items()}


def _value_specs(annotation: Any) -> list[ValueSpec]:
    """Every :class:`ValueSpec` in *annotation*, looking through ``Annotated`` and unions."""
    found: list[ValueSpec] = []
    for metadata in getattr(annotation, "__metadata__", ()):
        if isinstance(metadata, ValueSpec):
            found.append(metadata)
    for argument in typing.get_args(annotation):
        if not isinstance(argument, ValueSpec):
            found.extend(_value_specs(argument))
    return found


def _type_name(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Union or type(annotation).__name__ == "UnionType":
        return " or ".join(_type_name(a) for a in args) if args else "None"
    if isinstance(annotation, type):
        module = annotation.__module__
        return (
            annotation.__qualname__ if module == "builtins" else f"{module}.{annotation.__name__}"
        )
    return str(annotation).replace("typing.", "")


def _describe_field(info: FieldInfo) -> dict[str, Any]:
    specs = [m for m in info.metadata if isinstance(m, ValueSpec)] or _value_specs(info.annotation)
    if specs:
        entry = specs[0].as_dict()
    else:
        entry = {"type": _type_name(info.annotation), "description": ""}
        literals = [
            a
            for a in (info.annotation, *typing.get_args(info.annotation))
            if typing.get_origin(a) is typing.Literal
        ]
        if literals:
            entry["valid_values"] = [v for lit in literals for v in typing.get_args(lit)]
    if info.description:
        entry["description"] = info.description
    if info.examples:
        entry["example"] = info.examples[0]
    entry["required"] = info.is_required()
    return entry


def _format_choices(choices: Sequence[object], limit: int = 40) -> str:
    shown = ", ".join(str(c) for c in list(choices)[:limit])
    return shown + (f", ... ({len(choices)} in all)" if len(choices) > limit else "")


def one_of(
    choices: Sequence[str], *, what: str = "a valid value", aliases: Mapping[str, str] | None = None
) -> Any:
    """Annotated ``str`` type accepting one of *choices* (or an alias, mapped to its target).

    Parameters
    ----------
    choices : sequence of str
        The valid names, in the order shown in error messages.
    what : str
        What a name is (``"ROI"``), used in the message.
    aliases : mapping of str to str, optional
        Alternative spellings accepted and replaced by the canonical name (e.g. the reference
        card's misspelling ``"OVWFA"`` -> ``"OWFA"``).
    """
    valid = tuple(choices)
    alias_map = dict(aliases or {})

    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"must be a string naming {what}, got {type(value).__name__}")
        value = alias_map.get(value, value)
        if value not in valid:
            raise ValueError(f"is not {what} of {{model_id}}; valid: {_format_choices(valid)}")
        return value

    spec = ValueSpec(
        type="str",
        description=f"{what[0].upper()}{what[1:]} (one name from valid_values).",
        valid_values=valid,
        example=valid[0] if valid else None,
        extra={"aliases": alias_map} if alias_map else {},
    )
    return Annotated[str, BeforeValidator(check), spec]


def names_from(
    choices: Sequence[str], *, what: str = "a valid value", aliases: Mapping[str, str] | None = None
) -> Any:
    """Annotated ``tuple[str, ...]`` type: one name or a non-empty list of names from *choices*.

    A single string is accepted and becomes a one-element tuple; order is kept.
    """
    single = one_of(choices, what=what, aliases=aliases)
    check_one = single.__metadata__[0].func
    one: ValueSpec = single.__metadata__[1]

    def check(value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"must be {what} or a list of them, got {type(value).__name__}")
        if not value:
            raise ValueError("must name at least one value (an empty list selects nothing)")
        return tuple(check_one(v) for v in value)

    spec = ValueSpec(
        type="list[str]",
        description=f"{what[0].upper()}{what[1:]}, or a non-empty list of them (order kept).",
        valid_values=one.valid_values,
        example=list(one.valid_values[:2]) if one.valid_values else None,
        extra=one.extra,
    )
    return Annotated[tuple[str, ...], BeforeValidator(check), spec]


def binary_mask(length: int) -> Any:
    """Annotated type for a 0/1 vector of exactly *length* elements (list or array).

    The validated value is a read-only boolean :class:`numpy.ndarray`. An all-zero mask is
    rejected (it would select nothing).
    """

    def check(value: Any) -> np.ndarray:
        if not isinstance(value, (list, tuple, np.ndarray)):
            raise ValueError(
                f"must be a list or numpy array of 0/1 of length {length}, "
                f"got {type(value).__name__}"
            )
        array = np.asarray(value)
        if array.ndim != 1 or array.shape[0] != length:
            raise ValueError(f"must have exactly {length} elements, got shape {array.shape}")
        if array.dtype != bool:
            if array.dtype.kind not in "iuf":
                raise ValueError(f"must contain only 0 and 1, got dtype {array.dtype}")
            bad = (array != 0) & (array != 1)
            if bad.any():
                first = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"must contain only 0 and 1, found {array[first].item()!r} at index {first}"
                )
            array = array.astype(bool)
        if not array.any():
            raise ValueError("selects nothing (all zeros); give at least one 1")
        array = array.copy()
        array.setflags(write=False)
        return array

    spec = ValueSpec(
        type="numpy.ndarray",
        description=(
            f"Binary one-hot vector (list or numpy array of 0/1) of length {length:,}; "
            f"the columns where it is 1 are computed."
        ),
        example=f"[0, 0, ..., 1, 1, 0] (length {length})",
        extra={"shape": [length]},
    )
    return Annotated[np.ndarray, BeforeValidator(check), spec]


def validate_selection(
    schema: type[SelectionSchema], selection: Mapping[str, Any] | None, model_id: str
) -> SelectionSchema:
    """Validate *selection* for *model_id* against *schema*.

    Returns
    -------
    SelectionSchema
        The validated instance (``schema()`` when *selection* is ``None`` or empty).

    Raises
    ------
    InvalidParameterError
        Naming every offending key, the value given and what is allowed.
    """
    if selection is None:
        selection = {}
    if isinstance(selection, SelectionSchema):
        selection = selection.model_dump(exclude_none=True)
    if not isinstance(selection, Mapping):
        raise InvalidParameterError(
            f"selection must be a dict (or None), got {type(selection).__name__} for {model_id}"
        )
    try:
        return schema.model_validate(dict(selection), context={"model_id": model_id})
    except ValidationError as exc:
        raise InvalidParameterError(_explain(exc, schema, model_id)) from None


def _explain(exc: ValidationError, schema: type[SelectionSchema], model_id: str) -> str:
    valid_keys = ", ".join(schema.model_fields)
    lines = []
    for error in exc.errors(include_url=False):
        loc = error.get("loc") or ()
        key = loc[0] if loc else None
        if error["type"] == "extra_forbidden":
            lines.append(
                f"selection key {key!r} is not known to {model_id}; valid keys: {valid_keys}"
            )
            continue
        msg = str(error.get("msg", ""))
        for prefix in ("Value error, ", "Assertion failed, "):
            if msg.startswith(prefix):
                msg = msg[len(prefix) :]
        msg = msg.replace("{model_id}", model_id)
        if key is None:
            lines.append(f"selection for {model_id}: {msg}")
        else:
            where = "".join(f"[{part!r}]" for part in loc)
            lines.append(f"selection{where} = {describe_value(error.get('input'))} {msg}")
    return "\n".join(lines)


def validate_options(
    options_model: type[EncodeOptions],
    options: Mapping[str, Any],
    model_id: str,
    *,
    strings: bool = False,
    caller: str = "get_encoding_model()",
) -> dict[str, Any]:
    """Validate the keyword options of ``get_encoding_model`` for *model_id*.

    Parameters
    ----------
    options_model : type of EncodeOptions
        The card's :attr:`~berg_core.ModelCard.options`.
    options : mapping
        What the caller passed (values from ``berg encode -o key=value`` arrive as strings and
        are converted: ``"8"`` to 8, ``"true"`` to True).
    model_id : str
        Named in messages.
    strings : bool
        Every value is a string to parse as its option's type (``"true"`` for a strict bool,
        ``"2.5"`` for a float), as ``berg encode -o key=value`` gives them.
    caller : str
        Who got the options, for the message about unknown ones.

    Returns
    -------
    dict
        Every option of the model, with its default where not given.

    Raises
    ------
    InvalidParameterError
        Naming every offending option, the value given and what is allowed.
    """
    try:
        if strings:
            return options_model.model_validate_strings(dict(options)).model_dump()
        return options_model.model_validate(dict(options)).model_dump()
    except ValidationError as exc:
        accepted = ", ".join(options_model.model_fields) or "none"
        errors = exc.errors(include_url=False)
        unknown = [str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden"]
        lines = []
        if unknown:
            lines.append(
                f"{caller} got unexpected option(s) {', '.join(sorted(unknown))} for "
                f"{model_id}; options it accepts: {accepted}"
            )
        for error in errors:
            key = (error.get("loc") or ("?",))[0]
            if error["type"] == "extra_forbidden":
                continue
            field = options_model.model_fields.get(str(key))
            what = f" ({field.description})" if field is not None and field.description else ""
            lines.append(
                f"option {key} = {describe_value(error.get('input'))} is not valid for "
                f"{model_id}: {error.get('msg', '')}{what}"
            )
        raise InvalidParameterError("\n".join(lines)) from None
