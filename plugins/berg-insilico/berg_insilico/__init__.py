"""berg-insilico: in-silico experiments through any berg encoder.

* :func:`rank` streams an image collection through one or many encoders (areas x subjects) in
  bounded memory, keeping each area's top- and bottom-k images, running statistics and, per
  image, the area's mean response; resumable from a checkpoint.
* :func:`control` is univariate relational neural control between two areas (the four
  conditions: both driven, both suppressed, A > B, B > A) or more (every driven/suppressed sign
  pattern), chosen on some subjects and validated on held-out ones against random image sets.
* :func:`rdm`, :func:`rsa` and :func:`multivariate_control`: representational dissimilarity
  matrices (streamed), RSA between them, and a seeded genetic search for image subsets that align
  or disentangle two areas' RDMs.
* :func:`synthesise` optimises images by gradient ascent through an encoder's differentiable
  path (``EncodingModel.differentiable()``) to drive or suppress areas or a contrast of areas.

The heavy parts (h5py, matplotlib, the models) are imported when used; the plugin module itself
(:mod:`berg_insilico.plugin`) imports berg-core only.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Area",
    "ControlResult",
    "GeneticResult",
    "RankResult",
    "RunningStats",
    "SynthesisResult",
    "TopK",
    "control",
    "multivariate_control",
    "rank",
    "rdm",
    "rsa",
    "synthesise",
]

_WHERE = {
    "Area": "berg_insilico.areas",
    "RankResult": "berg_insilico.ranking",
    "rank": "berg_insilico.ranking",
    "RunningStats": "berg_insilico.stats",
    "TopK": "berg_insilico.stats",
    "ControlResult": "berg_insilico.relational",
    "control": "berg_insilico.relational",
    "rdm": "berg_insilico.similarity",
    "rsa": "berg_insilico.similarity",
    "GeneticResult": "berg_insilico.search",
    "multivariate_control": "berg_insilico.search",
    "synthesise": "berg_insilico.synthesis",
    "SynthesisResult": "berg_insilico.synthesis",
}


def __getattr__(name: str) -> Any:
    """Import the public names lazily (keeps ``berg list`` light)."""
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'berg_insilico' has no attribute {name!r}")
