"""Univariate relational control of more than two areas: 2^k sign patterns of a contrast score."""

from __future__ import annotations

import csv
import itertools

import berg_insilico as bi
import berg_insilico.plugin
import h5py
import numpy as np
import pytest
import simulated
from berg_insilico.relational import MAX_AREAS, condition_signs

from berg_core import BERG, InvalidParameterError
from berg_core.check import isolated_registry
from berg_core.cli import main


def _planted_scores(n_per_class: int = 50, signal: float = 3.0, noise: float = 0.5, seed: int = 0):
    """Three areas, 8 classes: bit j of an image's class drives area j (+signal) or suppresses it.

    Each subject adds its own noise (sd *noise*); returns the scores dict and the classes.
    """
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.repeat(np.arange(8), n_per_class))
    scores = {}
    for j, area in enumerate("ABC"):
        planted = np.where((classes >> j) & 1, signal, -signal)
        for subject in (1, 2, 3, 4):
            scores[(area, subject)] = planted + rng.normal(0, noise, classes.size)
    return scores, classes


def test_condition_signs_two_areas_are_the_papers_four_and_k_areas_every_pattern():
    assert condition_signs(2) == {
        "both_driven": (1, 1),
        "both_suppressed": (-1, -1),
        "a_driven_b_suppressed": (1, -1),
        "a_suppressed_b_driven": (-1, 1),
    }
    three = condition_signs(3)
    assert list(three.values()) == list(itertools.product((1, -1), repeat=3))
    assert list(three)[:2] == ["driven_driven_driven", "driven_driven_suppressed"]
    assert len(condition_signs(5)) == 32


def test_three_planted_areas_recover_all_eight_conditions():
    scores, classes = _planted_scores()
    result = bi.control(
        scores, "A", "B", "C", train=[1, 2], test=[3, 4], n=25, n_random=199, seed=1
    )
    assert result.areas == ("A", "B", "C") and len(result.conditions) == 8
    for name, signs in result.conditions.items():
        # the planted class of this sign pattern: bit j set where area j is driven
        wanted = sum(1 << j for j, s in enumerate(signs) if s > 0)
        assert set(classes[result.indices[name]]) == {wanted}, name
        # held-out means in the predicted direction, beyond every random set: the smallest p
        assert np.all(np.sign(result.test_means[name]) == signs), name
        np.testing.assert_array_equal(result.p_values[name], np.full(3, 1 / 200))
        assert result.train_scores[name].shape == (25, 3)
        assert result.test_subject_means[name].shape == (2, 3)
    assert result.null_means.shape == (199, 3)
    assert len(result.rows()) == 8 * 3


def test_two_areas_equal_an_independent_sum_and_difference_computation():
    scores, _ = _planted_scores(n_per_class=12, signal=0.3, noise=1.0, seed=2)  # weak: mixed sets
    result = bi.control(scores, "A", "B", train=[1, 2], test=[3], n=6, n_random=99, seed=5)

    def z(area, subject):
        s = scores[(area, subject)]
        return (s - s.mean()) / s.std()

    a = (z("A", 1) + z("A", 2)) / 2
    b = (z("B", 1) + z("B", 2)) / 2
    held = np.stack([z("A", 3), z("B", 3)], axis=1)
    index = np.arange(a.size)
    rng = np.random.default_rng(5)
    null = np.stack([held[rng.choice(a.size, 6, replace=False)].mean(axis=0) for _ in range(99)])
    np.testing.assert_array_equal(result.null_means, null)
    for name, key, sign in (
        ("both_driven", -(a + b), (1, 1)),
        ("both_suppressed", a + b, (-1, -1)),
        ("a_driven_b_suppressed", -(a - b), (1, -1)),
        ("a_suppressed_b_driven", a - b, (-1, 1)),
    ):
        chosen = np.lexsort((index, key))[:6]
        np.testing.assert_array_equal(result.indices[name], chosen)
        observed = held[chosen].mean(axis=0)
        np.testing.assert_allclose(result.test_means[name], observed, rtol=0, atol=1e-12)
        s = np.array(sign)
        wanted = (1 + (s * null >= s * observed).sum(axis=0)) / 100
        np.testing.assert_array_equal(result.p_values[name], wanted)


def test_three_areas_through_rank_and_cli_separate_planted_from_null(tmp_path, planted):
    """Simulated A and B are planted, N is noise: A and B recovered, N within chance."""
    images, classes = planted
    areas = [bi.Area(name, "sim-insilico", {"area": [name]}) for name in simulated.AREAS]
    with isolated_registry(modules={"sim": simulated, "insilico": berg_insilico.plugin}):
        ranked = bi.rank(
            BERG(tmp_path),
            areas,
            images,
            subjects=[1, 2, 3, 4],
            k=3,
            block_size=100,
            show_progress=False,
        )
        ranked.to_hdf5(tmp_path / "rank.h5")
        out = tmp_path / "out"
        argv = ["--berg-dir", str(tmp_path), "insilico", "control", "--rank"]
        argv += [str(tmp_path / "rank.h5"), "--areas", "A", "B", "N", "--train", "1", "2"]
        argv += ["--test", "3", "4", "--n", "10", "--random", "199", "--out", str(out)]
        assert main(argv) == 0
    result = bi.control(ranked, "A", "B", "N", train=[1, 2], test=[3, 4], n=10, n_random=199)
    for name, signs in result.conditions.items():
        wanted = (1 if signs[0] > 0 else 0) | (2 if signs[1] > 0 else 0)
        assert set(classes[result.indices[name]]) == {wanted}, name
        np.testing.assert_array_equal(result.p_values[name][:2], [1 / 200, 1 / 200])
        # N: images chosen on subjects 1-2's noise; on 3-4 a random set's mean, so within
        # 4 sd of the random sets (chance of a 4 sd excursion ~6e-5 per condition)
        null = result.null_means[:, 2]
        assert abs(result.test_means[name][2] - null.mean()) < 4 * null.std(ddof=1), name
    rows = list(csv.DictReader(open(out / "control.csv")))
    assert len(rows) == 8 * 3
    by_key = {(r["condition"], r["area"]): r for r in rows}
    assert float(by_key[("driven_suppressed_driven", "B")]["p_value"]) == 1 / 200
    assert by_key[("driven_suppressed_driven", "B")]["predicted"] == "suppressed"
    with h5py.File(out / "control.h5") as file:
        np.testing.assert_array_equal(file["suppressed_driven_driven/signs"][()], [-1, 1, 1])
        assert file["random/null_means"].shape == (199, 3)
    assert (out / "hist_suppressed_suppressed_suppressed_N.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda s: bi.control(s, "A", "B", "A", train=[1], test=[2]),
            r"areas \['A', 'B', 'A'\]: each area may be given once",
        ),
        (
            lambda s: bi.control(s, "A", "B", "C", train=[1], test=[2], n=51),
            r"n must be an integer in 1 \.\. 50 \(N // 8 for N = 400\), got 51",
        ),
        (
            lambda s: bi.control(s, "A", "B", "D", train=[1], test=[2]),
            "no entry for area='D', subject=1",
        ),
        (lambda s: condition_signs(1), r"number of areas 1: give 2 \.\. 10 areas"),
        (lambda s: condition_signs(MAX_AREAS + 1), "number of areas 11"),
    ],
)
def test_bad_area_counts_raise_named_errors(call, message):
    scores, _ = _planted_scores()
    with pytest.raises(InvalidParameterError, match=message):
        call(scores)
