"""The ``parameters`` entry of ``describe()``, in the reference toolkit's model-card structure.

Code written for the reference toolkit reads a model's valid values from it::

    info = berg.describe(model_id, print_format=False)
    subjects = info["parameters"]["subject"]["valid_values"]
    keys = list(info["parameters"]["selection"]["properties"].keys())
    rois = info["parameters"]["selection"]["properties"]["roi"]["valid_values"]

Every model gets the same entries (``model_id``, ``subject``, ``selection``, ``device``,
``download``, its options, ``model``, ``stimulus``, ``return_metadata``, ``show_progress``), each a
dict with the reference's keys ``description``, ``required``, ``type``, ``function`` and, where
they apply, ``valid_values``, ``example`` and ``default``. ``subject`` and ``selection`` are built
from the card's subjects and the model's selection schema
(:meth:`~berg_core.schemas.SelectionSchema.describe_properties`), so they cannot disagree with
what :meth:`~berg_core.BERG.get_encoding_model` accepts.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from berg_core.arguments import DEVICES
from berg_core.cards import option_specs

if TYPE_CHECKING:
    from berg_core.cards import ModelCard
    from berg_core.registry import ModelEntry
    from berg_core.schemas import SelectionSchema

__all__ = ["describe_entry", "describe_parameters", "parameters_by_function"]

_LOAD = "get_encoding_model"
_LOAD_AND_METADATA = "get_encoding_model, get_model_metadata"


def describe_parameters(
    card: ModelCard, schema: type[SelectionSchema] | None
) -> dict[str, dict[str, Any]]:
    """The ``parameters`` entry for the model of *card* with selection schema *schema*."""
    parameters: dict[str, dict[str, Any]] = {
        "model_id": {
            "description": "Unique identifier of the model to load.",
            "required": True,
            "type": "str",
            "valid_values": [card.model_id],
            "example": card.model_id,
            "function": _LOAD_AND_METADATA,
        },
        "subject": _subject(card),
        "selection": _selection(card, schema),
        "device": {
            "description": "Device to run the model on; 'auto' uses CUDA if available, else CPU. "
            "'cuda:N' is CUDA device number N.",
            "required": False,
            "type": "str",
            "valid_values": list(DEVICES),
            "example": "auto",
            "default": "auto",
            "function": _LOAD,
        },
        "download": {
            "description": "First download the files the model needs for the subject that are "
            "missing from berg_dir.",
            "required": False,
            "type": "bool",
            "default": False,
            "example": False,
            "function": _LOAD,
        },
    }
    for option, spec in option_specs(card.options).items():
        parameters[option] = {
            "description": spec["description"]
            or f"Option of {card.model_id} (a keyword argument of get_encoding_model).",
            "required": False,
            "type": spec["type"],
            "default": spec["default"],
            "function": _LOAD,
        }
    parameters.update(
        {
            "model": {
                "description": "A model loaded with get_encoding_model.",
                "required": True,
                "type": "EncodingModel",
                "function": "encode",
            },
            "stimulus": {
                "description": "Images to encode: an array (N, 3, H, W) of integers 0-255 or "
                "floats in [0, 1], a folder of images, image files or PIL images.",
                "required": True,
                "type": "numpy.ndarray",
                "shape": ["batch_size", 3, "height", "width"],
                "example": "An array of shape [100, 3, 224, 224] representing 100 RGB images.",
                "function": "encode",
            },
            "return_metadata": {
                "description": "Also return the subject's metadata and which vertex, voxel or "
                "neuroid each column is.",
                "required": False,
                "type": "bool",
                "default": False,
                "example": True,
                "function": "encode",
            },
            "show_progress": {
                "description": "Show a progress bar while encoding.",
                "required": False,
                "type": "bool",
                "default": True,
                "example": True,
                "function": "encode",
            },
        }
    )
    return parameters


def parameters_by_function(parameters: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Names of the *parameters* each API function takes, in order."""
    grouped: dict[str, list[str]] = {}
    for name, entry in parameters.items():
        for function in str(entry.get("function", "other")).split(","):
            grouped.setdefault(function.strip(), []).append(name)
    return grouped


def _subject(card: ModelCard) -> dict[str, Any]:
    subjects = list(card.subjects)
    kinds = sorted({type(s).__name__ for s in subjects})
    entry: dict[str, Any] = {
        "description": (
            f"Subject whose brain data the model was trained on; one of {len(subjects)}."
            if subjects
            else "This model takes no subject."
        ),
        "required": bool(subjects),
        "type": " or ".join(kinds) if kinds else "None",
        "valid_values": subjects,
        "function": _LOAD_AND_METADATA,
    }
    if subjects:
        entry["example"] = subjects[0]
    return entry


def _selection(card: ModelCard, schema: type[SelectionSchema] | None) -> dict[str, Any]:
    if schema is None:
        description = "This model takes no selection."
        properties: dict[str, dict[str, Any]] = {}
    else:
        own = schema.__dict__.get("__doc__")  # not the base class's
        description = inspect.cleandoc(own) if own else "Which outputs to compute."
        properties = schema.describe_properties()
    return {
        "description": description,
        "required": card.selection_required,
        "type": "dict",
        "function": _LOAD,
        "properties": properties,
    }


def describe_entry(entry: ModelEntry, card: ModelCard) -> dict[str, Any]:
    """What ``describe()`` returns for the model of *card*, registered as *entry*.

    The card's fields (:meth:`~berg_core.ModelCard.to_dict`), ``distribution`` (the plugin),
    ``selection_keys``, and the reference toolkit's ``parameters`` entry with
    ``parameters_by_function``.
    """
    info = card.to_dict()
    info["distribution"] = entry.plugin.label
    schema = entry.resolve_schema()
    info["selection_keys"] = list(schema.model_fields) if schema is not None else []
    info["parameters"] = describe_parameters(card, schema)
    info["parameters_by_function"] = parameters_by_function(info["parameters"])
    return info
