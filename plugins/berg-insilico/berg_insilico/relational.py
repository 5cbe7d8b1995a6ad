"""Univariate relational neural control between two or more areas, validated across subjects.

The method of Gifford et al. (Nature Human Behaviour 2025, "In silico discovery of
representational relationships across visual cortex"), on any encoder:

1. Each area's response to an image is its mean over columns (:func:`berg_insilico.rank` stores
   it per subject). With ``standardise=True`` (default) each subject's scores are z-scored over
   the images first, so areas weigh alike in sums and differences.
2. On the *selection* subjects, the area scores are averaged over subjects and combined. For two
   areas A and B: the sum ``A + B`` and the difference ``A - B``.
3. Four control conditions of *n* images each: **both driven** (the n highest sums), **both
   suppressed** (the n lowest sums), **A driven, B suppressed** (the n highest differences),
   **A suppressed, B driven** (the n lowest differences); ties go to the lower image index.
4. Validation on the *held-out* subjects (never used for choosing): each area's held-out score
   (standardised the same way, averaged over held-out subjects) of the chosen images, against
   the **baseline of random image sets**: *n_random* sets of n images drawn uniformly without
   replacement from all images (a seeded ``numpy`` generator).
5. Significance: a one-sided **Monte Carlo permutation (randomisation) test** per condition and
   area, in the direction the condition predicts: ``p = (1 + #{random sets at least as extreme})
   / (1 + n_random)``. A planted effect gives p near ``1 / (1 + n_random)``; an area with no
   effect gives p uniform on (0, 1].

**More than two areas.** A condition is a sign pattern ``s`` in ``{+1, -1}^k`` (each area driven
or suppressed); its images are the n highest of the contrast score ``sum_j s_j z_j`` (``z_j`` the
selection subjects' mean standardised score of area j, terms added in area order), which gives
``2^k`` conditions. Two areas are the case ``k = 2``: ``(+1, +1)`` is both driven (the highest
sums), ``(-1, -1)`` both suppressed (the highest ``-A - B``, i.e. the lowest sums: the same
images, bit for bit, since IEEE negation and addition are exact under sign changes), ``(+1, -1)``
and ``(-1, +1)`` the highest and lowest differences. Steps 4-5 are unchanged, one test per area.
A ``k``-area condition is named by each area's predicted direction in area order
(``driven_suppressed_driven``); two areas keep the four names above.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from berg_core import InvalidParameterError

__all__ = ["CONDITIONS", "ControlResult", "condition_signs", "control"]

#: The two-area conditions: (name, which combination, highest or lowest, predicted sign of A, B).
CONDITIONS = (
    ("both_driven", "sum", True, 1, 1),
    ("both_suppressed", "sum", False, -1, -1),
    ("a_driven_b_suppressed", "difference", True, 1, -1),
    ("a_suppressed_b_driven", "difference", False, -1, 1),
)
#: Largest number of areas (2^k conditions: 1,024 at 10).
MAX_AREAS = 10


def condition_signs(n_areas: int) -> dict[str, tuple[int, ...]]:
    """Every condition of *n_areas* areas: its name and predicted sign (+1 / -1) of each area.

    Two areas give :data:`CONDITIONS` (in that order); ``k`` areas give the ``2^k`` sign patterns
    in :func:`itertools.product` order (all driven first, all suppressed last), each named by the
    areas' directions in order (``driven_suppressed_driven``).

    Raises
    ------
    InvalidParameterError
        For fewer than 2 or more than :data:`MAX_AREAS` areas.
    """
    import itertools

    if isinstance(n_areas, bool) or not isinstance(n_areas, int) or not 2 <= n_areas <= MAX_AREAS:
        raise InvalidParameterError(
            f"number of areas {n_areas!r}: give 2 .. {MAX_AREAS} areas (2^k conditions)"
        )
    if n_areas == 2:
        return {name: tuple(signs) for name, _, _, *signs in CONDITIONS}
    words = {1: "driven", -1: "suppressed"}
    return {
        "_".join(words[s] for s in signs): signs
        for signs in itertools.product((1, -1), repeat=n_areas)
    }


@dataclass
class ControlResult:
    """What :func:`control` found.

    ``k`` is the number of areas (2 for A and B).

    Attributes
    ----------
    areas : tuple of str
        The areas, in order (A, B, ...).
    train, test : tuple
        Selection and held-out subjects.
    n, n_random, seed : int
    conditions : dict
        Condition name -> the predicted sign (+1 driven, -1 suppressed) of each area, ``(k,)``
        (:func:`condition_signs`).
    indices : dict
        Condition -> the chosen image indices ``(n,)``, best first.
    train_scores : dict
        Condition -> ``(n, k)``: the selection subjects' score of each area for the chosen images.
    test_means : dict
        Condition -> ``(k,)``: the held-out mean score of each area over the chosen images.
    test_subject_means : dict
        Condition -> ``(n_test, k)``: the same per held-out subject.
    null_means : numpy.ndarray
        ``(n_random, k)``: the held-out mean score of each area over each random image set.
    p_values : dict
        Condition -> ``(k,)``: the one-sided permutation p-value of each area.
    """

    areas: tuple[str, ...]
    train: tuple[Any, ...]
    test: tuple[Any, ...]
    n: int
    n_random: int
    seed: int
    standardise: bool
    conditions: dict[str, tuple[int, ...]] = field(default_factory=dict)
    indices: dict[str, np.ndarray] = field(default_factory=dict)
    train_scores: dict[str, np.ndarray] = field(default_factory=dict)
    test_means: dict[str, np.ndarray] = field(default_factory=dict)
    test_subject_means: dict[str, np.ndarray] = field(default_factory=dict)
    null_means: np.ndarray | None = None
    p_values: dict[str, np.ndarray] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """One table row per condition and area (what the CSV holds)."""
        rows = []
        for name, signs in self.conditions.items():
            for j, area in enumerate(self.areas):
                rows.append(
                    {
                        "condition": name,
                        "area": area,
                        "predicted": "driven" if signs[j] > 0 else "suppressed",
                        "train_mean": float(self.train_scores[name][:, j].mean()),
                        "test_mean": float(self.test_means[name][j]),
                        "random_mean": float(self.null_means[:, j].mean()),
                        "random_sd": float(self.null_means[:, j].std(ddof=1)),
                        "p_value": float(self.p_values[name][j]),
                        "images": " ".join(str(int(i)) for i in self.indices[name]),
                    }
                )
        return rows

    def to_hdf5(self, path: Any) -> Any:
        """Write every array needed to redo the figures to HDF5."""
        from berg_insilico.tables import write_hdf5

        groups = {
            name: {
                "indices": self.indices[name],
                "train_scores": self.train_scores[name],
                "test_means": self.test_means[name],
                "test_subject_means": self.test_subject_means[name],
                "p_values": self.p_values[name],
                "signs": np.array(signs, dtype=np.int8),
            }
            for name, signs in self.conditions.items()
        }
        groups["random"] = {"null_means": self.null_means}
        attrs = {
            "areas": list(self.areas),
            "train": [str(s) for s in self.train],
            "test": [str(s) for s in self.test],
            "n": self.n,
            "n_random": self.n_random,
            "seed": self.seed,
            "standardise": self.standardise,
            "significance": "one-sided Monte Carlo permutation test against random image sets",
        }
        return write_hdf5(path, groups, attrs)


def _scores_of(scores: Any, area: str, subject: Any) -> np.ndarray:
    if hasattr(scores, "scores") and callable(scores.scores):
        return np.asarray(scores.scores(area, subject), dtype=np.float64)
    if not isinstance(scores, Mapping) or (area, subject) not in scores:
        raise InvalidParameterError(
            f"scores has no entry for area={area!r}, subject={subject!r}; give a RankResult or a "
            f"dict (area, subject) -> (N,) scores"
        )
    return np.asarray(scores[(area, subject)], dtype=np.float64)


def _subject_scores(scores, area, subjects, standardise, n_images=None) -> np.ndarray:
    """``(len(subjects), N)``: each subject's scores, z-scored over images when asked."""
    rows = []
    for subject in subjects:
        s = _scores_of(scores, area, subject)
        if s.ndim != 1 or (n_images is not None and s.shape[0] != n_images):
            raise InvalidParameterError(
                f"scores of area={area!r}, subject={subject!r} have shape {s.shape}; expected "
                f"({n_images if n_images is not None else 'N'},), one per image"
            )
        n_images = s.shape[0]
        if standardise:
            sd = s.std()
            s = (s - s.mean()) / (sd if sd > 0 else 1.0)
        rows.append(s)
    return np.stack(rows)


def _subjects(value: Any, name: str) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise InvalidParameterError(f"{name}={value!r}: give a non-empty list of subjects")
    return tuple(value)


def control(
    scores: Any,
    area_a: str,
    area_b: str,
    *more_areas: str,
    train: Sequence[Any],
    test: Sequence[Any],
    n: int = 25,
    n_random: int = 1000,
    seed: int = 0,
    standardise: bool = True,
) -> ControlResult:
    """Univariate relational control of two or more areas (see the module docstring).

    Parameters
    ----------
    scores : RankResult or dict
        Per-image area scores: a :class:`berg_insilico.RankResult` ranked with
        ``store_scores=True``, or a dict ``(area, subject) -> (N,)`` array.
    area_a, area_b : str
        The first two areas.
    *more_areas : str
        Further areas (up to :data:`MAX_AREAS` in all): ``2^k`` conditions for ``k`` areas.
    train : list
        Subjects the images are chosen on.
    test : list
        Held-out subjects the effect is measured on (disjoint from *train*).
    n : int
        Images per condition.
    n_random : int
        Random image sets of the baseline and of the permutation test.
    seed : int
        Seed of the random image sets.
    standardise : bool
        z-score each subject's scores over images first.

    Returns
    -------
    ControlResult

    Raises
    ------
    InvalidParameterError
        For unknown or repeated areas, unknown subjects, overlapping *train* and *test*, scores
        of different lengths, or ``n`` not in 1 .. N // 2^k (the 2^k conditions need distinct
        images to mean anything: N // 4 for two areas).
    """
    train, test = _subjects(train, "train"), _subjects(test, "test")
    if set(map(str, train)) & set(map(str, test)):
        raise InvalidParameterError(
            f"train={list(train)} and test={list(test)} overlap; held-out subjects must not be "
            f"used for choosing"
        )
    areas = (area_a, area_b, *more_areas)
    if len(set(areas)) != len(areas):
        if len(areas) == 2:
            raise InvalidParameterError(f"area_a and area_b are both {area_a!r}; give two areas")
        raise InvalidParameterError(f"areas {list(areas)}: each area may be given once")
    conditions = condition_signs(len(areas))
    train_z = [_subject_scores(scores, areas[0], train, standardise)]
    n_images = train_z[0].shape[1]
    train_z += [_subject_scores(scores, a, train, standardise, n_images) for a in areas[1:]]
    test_z = [_subject_scores(scores, a, test, standardise, n_images) for a in areas]
    high_n = max(n_images // len(conditions), 1)
    for value, name, high in ((n, "n", high_n), (n_random, "n_random", None)):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, np.integer))
            or value < 1
            or (high is not None and value > high)
        ):
            allowed = f"1 .. {high} (N // {len(conditions)} for N = {n_images})" if high else ">= 1"
            raise InvalidParameterError(f"{name} must be an integer in {allowed}, got {value!r}")
    result = ControlResult(
        areas=areas,
        train=train,
        test=test,
        n=int(n),
        n_random=int(n_random),
        seed=int(seed),
        standardise=bool(standardise),
        conditions=conditions,
    )
    chosen_on = np.stack([z.mean(axis=0) for z in train_z], axis=1)  # (N, k)
    held = np.stack([z.mean(axis=0) for z in test_z], axis=1)  # (N, k)
    held_subjects = np.stack(test_z, axis=2)  # (n_test, N, k)
    rng = np.random.default_rng(seed)
    null = np.empty((n_random, len(areas)))
    for r in range(n_random):
        null[r] = held[rng.choice(n_images, size=n, replace=False)].mean(axis=0)
    result.null_means = null
    index = np.arange(n_images)
    for name, signs in conditions.items():
        contrast = signs[0] * chosen_on[:, 0]
        for j in range(1, len(areas)):  # in area order: two areas give a + b, a - b, -a + b ...
            contrast = contrast + signs[j] * chosen_on[:, j]
        chosen = np.lexsort((index, -contrast))[:n]  # highest first, ties: lower index
        observed = held[chosen].mean(axis=0)
        result.indices[name] = chosen
        result.train_scores[name] = chosen_on[chosen]
        result.test_means[name] = observed
        result.test_subject_means[name] = held_subjects[:, chosen].mean(axis=1)
        sign = np.array(signs)
        extreme = (sign * null >= sign * observed).sum(axis=0)
        result.p_values[name] = (1 + extreme) / (1 + n_random)
    return result
