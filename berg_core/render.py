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
    if info.get("options"):
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
