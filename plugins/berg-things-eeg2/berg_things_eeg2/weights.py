"""The three generations of THINGS EEG2 weight files, told apart and checked (numpy only).

Every file holds ``scaler_param`` (one ``StandardScaler``) and ``reg_param`` with one
``LinearRegression`` per repetition (``'rep-1'`` .. ``'rep-4'``, ``coef_`` ``(63 * 140, k)``,
rows channel-major). ``pca_param`` comes in three generations:

* **A**: one PCA for every repetition, a dict of its attributes (``components_``, ``mean_``, ...);
* **B**: one PCA per repetition, ``pca_param['rep-r']`` a dict of its attributes;
* **C**: one PCA per repetition, ``pca_param['rep-r']`` a pickled scikit-learn ``PCA`` object,
  which :func:`berg_core.safe_npy.load_pickled_npy` rebuilds as the dict of its stored
  attributes, without importing scikit-learn (so B and C read alike from here on).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from berg_core import ModelLoadError
from berg_core.checks import Location, require_mapping
from berg_things_eeg2.layout import REPETITIONS

__all__ = ["GENERATIONS", "WeightsLayout", "read_layout"]

#: What each generation of ``pca_param`` holds, for messages.
GENERATIONS = (
    "A: one PCA for all repetitions, a dict with 'components_' and 'mean_'",
    "B: one PCA per repetition, a dict per key 'rep-1'..'rep-4'",
    "C: one pickled scikit-learn PCA object per key 'rep-1'..'rep-4'",
)


@dataclass(frozen=True)
class WeightsLayout:
    """The parts of one weights file, in repetition order.

    Attributes
    ----------
    generation : str
        ``"A"`` (one PCA) or ``"B/C"`` (one PCA per repetition).
    scaler : mapping
        ``StandardScaler`` attributes.
    pcas : tuple of mapping
        One PCA attribute dict per repetition (the same object four times for generation A).
    regressions : tuple of mapping
        One ``LinearRegression`` attribute dict per repetition.
    """

    generation: str
    scaler: Mapping[str, Any]
    pcas: tuple[Mapping[str, Any], ...]
    regressions: tuple[Mapping[str, Any], ...]


def read_layout(weights: Any, where: Location) -> WeightsLayout:
    """Tell the generation of a weights file and return its parts.

    Parameters
    ----------
    weights : object
        What :func:`berg_core.safe_npy.load_pickled_npy` read from the file.
    where : Location
        The file, for messages.

    Returns
    -------
    WeightsLayout

    Raises
    ------
    ModelLoadError
        A missing dict or key, or a ``pca_param`` that is none of the generations (or looks like
        two of them); the message names the file, the key and the generations expected.
    """
    require_mapping(weights, where, ("scaler_param", "pca_param", "reg_param"))
    reg_at, pca_at = where["reg_param"], where["pca_param"]
    reg = require_mapping(weights["reg_param"], reg_at, REPETITIONS)
    regressions = tuple(require_mapping(reg[r], reg_at[r]) for r in REPETITIONS)
    pca = weights["pca_param"]
    expected = "one of the weight-file generations berg reads: " + "; ".join(GENERATIONS)
    if not isinstance(pca, Mapping):
        raise pca_at.error(f"a {type(pca).__name__}", expected)
    flat = "components_" in pca
    per_rep = [r for r in REPETITIONS if r in pca]
    if flat and per_rep:
        raise ModelLoadError(
            f"{pca_at} has both 'components_' and {per_rep}, so its generation cannot be told "
            f"apart; expected {expected}"
        )
    if flat:
        return WeightsLayout("A", weights["scaler_param"], (pca,) * len(REPETITIONS), regressions)
    if len(per_rep) != len(REPETITIONS):
        keys = ", ".join(map(str, pca)) or "none"
        raise ModelLoadError(f"{pca_at} holds keys {keys}; expected {expected}")
    pcas = []
    for r in REPETITIONS:
        if not isinstance(pca[r], Mapping):
            raise pca_at[r].error(
                f"a {type(pca[r]).__name__}",
                "a dict of PCA attributes (generation B) or a scikit-learn PCA object (C)",
            )
        pcas.append(pca[r])
    return WeightsLayout("B/C", weights["scaler_param"], tuple(pcas), regressions)
