"""Text rendering of model cards (``berg describe`` and :meth:`berg_core.BERG.describe`).

A layer below the API and the CLI: both import it; it imports nothing of berg's.
"""

from __future__ import annotations

import textwrap
from typing import Any

__all__ = ["format_card"]

#: Width of the rendered card, in characters.
WIDTH = 88


def format_card(info: dict[str, Any]) -> str:
    """Render a card dict (from :meth:`BERG.describe`) as text."""
    width = WIDTH
    title = f"Model: {info['model_id']}   ({info.get('distribution', '')})"
    lines = ["=" * width, title, "=" * width]
    for label, key in (
        ("Modality", "modality"),
        ("Training dataset", "training_dataset"),
        ("Species", "species"),
        ("Stimuli", "stimuli"),
        ("Model type", "model_type"),
        ("Creator", "creator"),
    ):
        if info.get(key):
            lines.append(f"{label + ':':<18}{info[key]}")
    if info.get("subjects"):
        lines.append(f"{'Subjects:':<18}{', '.join(str(s) for s in info['subjects'])}")
    lines.append(f"{'Outputs:':<18}{', '.join(info['outputs'])}")
    if info.get("selection_keys"):
        required = " (required)" if info.get("selection_required") else ""
        lines.append(f"{'Selection keys:':<18}{', '.join(info['selection_keys'])}{required}")
    if info.get("output_dims"):
        lines += ["", "Output axes (after the image axis; selection picks along them by name):"]
        for output, dims in info["output_dims"].items():
            lines.append(f"  {output}: {' x '.join(_dim(dim) for dim in dims)}")
    if info.get("option_specs"):
        lines += ["", "Options (keywords of get_encoding_model; berg encode -o KEY=VALUE):"]
        for name, spec in info["option_specs"].items():
            lines.append(f"  {name}: {_option(spec)}")
    elif info.get("options"):
        lines.append(f"{'Options:':<18}{', '.join(info['options'])}")
    for title, key in (("Description", "description"), ("Output", "output_description")):
        if info.get(key):
            lines += ["", f"{title}:", *textwrap.wrap(info[key], width)]
    if info.get("files"):
        lines += ["", "Files under berg_dir (per subject):", *(f"  {f}" for f in info["files"])]
    if info.get("performance"):
        lines += ["", "Performance:", *textwrap.wrap(info["performance"], width)]
    if info.get("references"):
        lines += ["", "References:", *(f"  {k}: {v}" for k, v in info["references"].items())]
    lines += ["", "Example:", textwrap.indent(info["example_usage"], "  ")]
    return "\n".join(lines)


def _dim(dim: dict[str, Any]) -> str:
    """``time (5, ms)``: a dim with its size (``?`` when the model decides) and unit."""
    size = "?" if dim.get("size") is None else f"{dim['size']:,}"
    unit = f", {dim['unit']}" if dim.get("unit") else ""
    return f"{dim['name']} ({size}{unit})"


_BOUNDS = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}


def _option(spec: dict[str, Any]) -> str:
    """``number = 1.0 (> 0)  Multiplies every response.``: type, default, bounds, help."""
    bounds = [f"{sign} {spec[key]}" for key, sign in _BOUNDS.items() if key in spec]
    if "enum" in spec:
        bounds.append("one of " + ", ".join(map(str, spec["enum"])))
    shown = f" ({', '.join(bounds)})" if bounds else ""
    help_text = f"  {spec['description']}" if spec.get("description") else ""
    return f"{spec['type']} = {spec['default']!r}{shown}{help_text}"
