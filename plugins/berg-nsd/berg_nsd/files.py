"""The readers of the NSD fsaverage model files, under their former module name.

Kept for berg-nsd's own modules and for code written against berg-nsd 0.1.0; everything here is
defined in :mod:`berg_nsd.fsaverage`, the public module. Other plugins import that one.
"""

from __future__ import annotations

from berg_nsd.fsaverage import (
    HEMISPHERES,
    METADATA_KEYS,
    WEIGHT_KEYS,
    file_path,
    load_metadata,
    load_weights,
    require,
    roi_tables,
)

__all__ = [
    "HEMIS",
    "METADATA_KEYS",
    "WEIGHT_KEYS",
    "file_path",
    "load_metadata",
    "load_weights",
    "require",
    "roi_tables",
]

#: The hemispheres, in output order (:data:`berg_nsd.fsaverage.HEMISPHERES`).
HEMIS = HEMISPHERES
