"""berg-insilico against a simulated encoder with planted preferences and independent numpy."""

from __future__ import annotations

import csv

import berg_insilico as bi
import berg_insilico.plugin
import h5py
import numpy as np
import pytest
import scipy.stats
import simulated
from berg_insilico.similarity import area_rdms

from berg_core import InvalidParameterError, StimulusError
from berg_core.check import isolated_registry
from berg_core.cli import main

AREAS = [bi.Area(name, "sim-insilico", {"area": [name]}) for name in simulated.AREAS]


def _rank(berg, images, **kwargs):
    kwargs = {"subjects": [1, 2, 3, 4], "k": 5, "block_size": 64, "show_progress": False} | kwargs
    return bi.rank(berg, AREAS, images, **kwargs)


def test_running_stats_match_numpy():
    values = np.random.default_rng(0).normal(3.0, 2.0, (1000, 5)) * [1, 10, 1e3, 1e-3, 1]
    stats = bi.RunningStats(5)
    for start in range(0, 1000, 97):  # uneven blocks, a single-row block at the end
        stats.update(values[start : start + 97])
    assert stats.count == 1000
    # float64 merges: error a few ulps of the values' scale per merge (11 merges)
    np.testing.assert_allclose(stats.mean, values.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.variance(), values.var(axis=0), rtol=1e-11)
    np.testing.assert_allclose(stats.variance(ddof=1), values.var(axis=0, ddof=1), rtol=1e-11)


def test_topk_equals_full_stable_sort_with_ties():
    values = np.random.default_rng(1).integers(0, 20, (500, 3)).astype(np.float32)  # many ties
    top, bottom = bi.TopK(7, 3), bi.TopK(7, 3, largest=False)
    for start in range(0, 500, 64):
        top.update(values[start : start + 64], start)
        bottom.update(values[start : start + 64], start)
    for c in range(3):
        order = np.argsort(-values[:, c], kind="stable")[:7]
        np.testing.assert_array_equal(top.indices[:, c], order)
        np.testing.assert_array_equal(top.values[:, c], values[order, c])
        np.testing.assert_array_equal(
            bottom.indices[:, c], np.argsort(values[:, c], kind="stable")[:7]
        )


def test_rank_recovers_planted_preferences_and_matches_numpy(berg, planted):
    images, classes = planted
    result = _rank(berg, images, per_column=True)
    assert result.n_images == 300
    for subject in (1, 2, 3, 4):
        full = simulated.responses(images, subject)  # (N, 3, 4), computed without berg
        for j, area in enumerate(simulated.AREAS):
            r = result[(area, subject)]
            # the area mean of every image, and its statistics
            wanted = full[:, j].mean(axis=1, dtype=np.float64)
            np.testing.assert_allclose(r.score_array(), wanted, rtol=0, atol=1e-6)
            np.testing.assert_allclose(
                r.stats.mean[0], r.score_array().mean(dtype=np.float64), rtol=1e-12
            )
            np.testing.assert_allclose(
                r.stats.variance()[0], r.score_array().var(dtype=np.float64), rtol=1e-11
            )
            np.testing.assert_array_equal(
                r.top.indices[:, 0], np.argsort(-r.score_array(), kind="stable")[:5]
            )
            # per column: the same as a full sort of the responses
            np.testing.assert_array_equal(
                r.column_top.indices, np.argsort(-full[:, j], axis=0, kind="stable")[:5]
            )
            np.testing.assert_allclose(
                r.column_stats.mean, full[:, j].mean(axis=0, dtype=np.float64), rtol=1e-12
            )
        # planted: signal +-2 x mean gain 1.375 against noise sd 0.5 of a 4-column mean
        assert set(classes[result[("A", subject)].top.indices[:, 0]] & 1) == {1}
        assert set(classes[result[("A", subject)].bottom.indices[:, 0]] & 1) == {0}
        assert set(classes[result[("B", subject)].top.indices[:, 0]] & 2) == {2}
        assert set(classes[result[("B", subject)].bottom.indices[:, 0]] & 2) == {0}
    assert result[("A", 1)].columns[:2] == ["responses/0", "responses/1"]


def test_resume_and_every_source_give_identical_results(berg, planted, tmp_path):
    images = planted[0][:200]
    whole = _rank(berg, images, per_column=True)
    checkpoint = tmp_path / "state.npz"
    partial = _rank(berg, images, per_column=True, checkpoint=checkpoint, stop_after=2)
    assert partial.n_images == 128 and checkpoint.exists()
    resumed = _rank(berg, images, per_column=True, checkpoint=checkpoint, checkpoint_every=1)
    h5 = tmp_path / "brick.h5"
    with h5py.File(h5, "w") as file:  # NSD's imgBrick layout: (N, H, W, 3) uint8
        file["imgBrick"] = images.transpose(0, 2, 3, 1)
    from_h5 = _rank(berg, f"{h5}:imgBrick")
    from_generator = _rank(berg, (image for image in images))
    for other in (resumed, from_h5, from_generator):
        assert other.n_images == 200
        for key, r in whole.rankings.items():
            o = other[key]
            np.testing.assert_array_equal(o.score_array(), r.score_array())
            np.testing.assert_array_equal(o.top.indices, r.top.indices)
            np.testing.assert_array_equal(o.bottom.values, r.bottom.values)
            assert (o.stats.count, o.stats.mean[0], o.stats.m2[0]) == (
                r.stats.count,
                r.stats.mean[0],
                r.stats.m2[0],
            )
    for key, r in whole.rankings.items():  # resumed: every state, bit for bit
        np.testing.assert_array_equal(resumed[key].column_top.values, r.column_top.values)
        np.testing.assert_array_equal(resumed[key].column_stats.m2, r.column_stats.m2)
    with pytest.raises(InvalidParameterError, match=r"state\.npz.*other areas"):
        _rank(berg, images, k=3, checkpoint=checkpoint)


def test_control_recovers_the_four_planted_conditions(berg, planted):
    images, classes = planted
    result = bi.control(
        _rank(berg, images), "A", "B", train=[1, 2], test=[3, 4], n=10, n_random=199, seed=3
    )
    wanted = {
        "both_driven": 3,
        "both_suppressed": 0,
        "a_driven_b_suppressed": 1,
        "a_suppressed_b_driven": 2,
    }
    for name, cls in wanted.items():
        assert set(classes[result.indices[name]]) == {cls}, name
        # the planted effect is far outside every random set: the smallest p there is
        np.testing.assert_array_equal(result.p_values[name], [1 / 200, 1 / 200])
    rows = result.rows()
    assert len(rows) == 8 and {r["p_value"] for r in rows} == {1 / 200}
    again = bi.control(
        _rank(berg, images), "A", "B", train=[1, 2], test=[3, 4], n=10, n_random=199, seed=3
    )
    np.testing.assert_array_equal(again.null_means, result.null_means)


def test_null_area_gives_chance_on_held_out_subjects():
    """Areas of pure subject noise: images chosen on subjects 1-2 do nothing on 3-4."""
    rng = np.random.default_rng(5)
    n_sets, n_images = 60, 80
    p_null = []
    for s in range(n_sets):
        scores = {
            (area, subject): rng.normal(size=n_images) for area in "AN" for subject in (1, 2, 3)
        }
        result = bi.control(scores, "A", "N", train=[1, 2], test=[3], n=10, n_random=199, seed=s)
        p_null.append(result.p_values["both_driven"][1])
    # under the null, p is uniform on {1/200, ..., 1}: mean 0.5025, sd of the mean of 60
    # sqrt(1/12 / 60) = 0.037; 4 sd either side
    assert abs(np.mean(p_null) - 0.5025) < 4 * 0.0373
    assert scipy.stats.kstest(p_null, "uniform").pvalue > 1e-3


def test_rdm_and_rsa_match_numpy_and_scipy(berg, planted):
    patterns = np.random.default_rng(2).normal(size=(30, 12))
    np.testing.assert_allclose(bi.rdm(patterns), 1 - np.corrcoef(patterns), atol=1e-6)
    a, b = bi.rdm(patterns[:, :6]), bi.rdm(patterns[:, 6:] + patterns[:, :6])
    iu = np.triu_indices(30, 1)
    assert bi.rsa(a, b) == pytest.approx(scipy.stats.spearmanr(a[iu], b[iu])[0], abs=1e-12)
    assert bi.rsa(a, b, "pearson") == pytest.approx(
        scipy.stats.pearsonr(a[iu], b[iu])[0], abs=1e-12
    )
    ties = np.round(a, 1)  # Spearman with ties: average ranks, as scipy
    assert bi.rsa(ties, b) == pytest.approx(scipy.stats.spearmanr(ties[iu], b[iu])[0], abs=1e-12)
    images = planted[0][:40]
    rdms = area_rdms(
        berg,
        AREAS[:2],
        images,
        subjects=[1, 2],
        block_size=16,
        memory_bytes=100,
        show_progress=False,
    )  # forces the memory-mapped buffer
    full = simulated.responses(images, 2)
    # patterns are float32 (values |x| < 10, 4 columns): r is exact to ~1e-6
    np.testing.assert_allclose(rdms[("B", 2)], 1 - np.corrcoef(full[:, 1]), atol=1e-5)


def test_genetic_search_beats_random_subsets_and_is_seeded():
    rng = np.random.default_rng(4)
    shared = rng.normal(size=(60, 8))
    a = bi.rdm(shared + 0.8 * rng.normal(size=(60, 8)))
    b = bi.rdm(shared + 0.8 * rng.normal(size=(60, 8)))
    kwargs = {"population": 20, "generations": 25, "n_random": 199, "seed": 7}
    aligned = bi.multivariate_control(a, b, 12, objective="align", **kwargs)
    apart = bi.multivariate_control(a, b, 12, objective="disentangle", **kwargs)
    assert aligned.rsa > aligned.random_rsa.max() and aligned.p_value == 1 / 200
    assert apart.rsa < apart.random_rsa.min() and apart.p_value == 1 / 200
    assert np.all(np.diff(aligned.history) >= 0) and np.all(np.diff(apart.history) <= 0)
    idx = aligned.indices
    assert aligned.rsa == pytest.approx(bi.rsa(a[np.ix_(idx, idx)], b[np.ix_(idx, idx)]))
    again = bi.multivariate_control(a, b, 12, objective="align", **kwargs)
    np.testing.assert_array_equal(again.indices, aligned.indices)
    np.testing.assert_array_equal(again.random_rsa, aligned.random_rsa)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: bi.TopK(0, 1), InvalidParameterError, "k must be an integer >= 1, got 0"),
        (lambda: bi.rsa(np.eye(3), np.eye(4)), InvalidParameterError, r"\(3, 3\) and rdm_b"),
        (
            lambda: bi.rsa(np.eye(3), np.eye(3), "kendall"),
            InvalidParameterError,
            "method='kendall'; allowed: spearman, pearson",
        ),
        (lambda: bi.rdm(np.ones((4, 3))), InvalidParameterError, "image 0 has the same response"),
        (
            lambda: bi.control({}, "A", "B", train=[1], test=[1]),
            InvalidParameterError,
            r"train=\[1\] and test=\[1\] overlap",
        ),
        (
            lambda: bi.control(
                {
                    ("A", 1): np.zeros(8),
                    ("B", 1): np.zeros(8),
                    ("A", 2): np.zeros(8),
                    ("B", 2): np.zeros(8),
                },
                "A",
                "B",
                train=[1],
                test=[2],
                n=3,
            ),
            InvalidParameterError,
            r"n must be an integer in 1 \.\. 2",
        ),
        (
            lambda: bi.control({}, "A", "B", train=[1], test=[2]),
            InvalidParameterError,
            "no entry for area='A', subject=1",
        ),
        (
            lambda: bi.multivariate_control(np.eye(5), np.eye(5), 5),
            InvalidParameterError,
            r"n must be an integer in 3 \.\. 4, got 5",
        ),
        (
            lambda: bi.multivariate_control(np.eye(5), np.eye(5), 3, objective="max"),
            InvalidParameterError,
            "objective='max'; allowed: align, disentangle",
        ),
    ],
)
def test_bad_inputs_raise_named_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_bad_rank_inputs(berg, planted, tmp_path):
    images = planted[0][:10]
    with pytest.raises(InvalidParameterError, match="block_size must be an integer >= 1"):
        _rank(berg, images, block_size=0)
    with pytest.raises(InvalidParameterError, match="names must be unique"):
        bi.rank(berg, [AREAS[0], AREAS[0]], images, subjects=[1])
    with pytest.raises(InvalidParameterError, match="is an HDF5 file: name its images dataset"):
        _rank(berg, tmp_path / "x.h5")
    with pytest.raises(StimulusError, match=r"shape \(10, 5, 8, 8\)"):
        _rank(berg, np.zeros((10, 5, 8, 8), np.uint8))
    result = _rank(berg, images, store_scores=False)
    with pytest.raises(InvalidParameterError, match="scores were not stored"):
        result.scores("A", 1)
    with pytest.raises(InvalidParameterError, match=r"\('C', 1\) was not ranked"):
        result.scores("C", 1)
    collection = bi.images.open_images(iter(images))
    with pytest.raises(InvalidParameterError, match="one-pass iterable cannot be read again"):
        collection.take([0])


def test_cli_rank_control_rsa_write_tables_figures_and_hdf5(tmp_path, planted):
    images = planted[0][:120]
    np.save(tmp_path / "images.npy", images)
    out = tmp_path / "out"
    area_args = [a for name in "AB" for a in ("--area", name, "sim-insilico", f'area=["{name}"]')]
    common = ["--berg-dir", str(tmp_path), "insilico"]
    with isolated_registry(modules={"sim": simulated, "insilico": berg_insilico.plugin}):
        assert (
            main(
                [
                    *common,
                    "rank",
                    *area_args,
                    "--subjects",
                    "1",
                    "2",
                    "3",
                    "--images",
                    str(tmp_path / "images.npy"),
                    "--k",
                    "4",
                    "--out",
                    str(out),
                    "--quiet",
                ]
            )
            == 0
        )
        assert (
            main(
                [
                    *common,
                    "control",
                    "--rank",
                    str(out / "rank.h5"),
                    "--areas",
                    "A",
                    "B",
                    "--train",
                    "1",
                    "2",
                    "--test",
                    "3",
                    "--n",
                    "5",
                    "--random",
                    "50",
                    "--images",
                    str(tmp_path / "images.npy"),
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        assert (
            main(
                [
                    *common,
                    "rsa",
                    *area_args,
                    "--subjects",
                    "1",
                    "2",
                    "--images",
                    str(tmp_path / "images.npy"),
                    "--search",
                    "align",
                    "--n",
                    "8",
                    "--generations",
                    "3",
                    "--population",
                    "6",
                    "--random",
                    "20",
                    "--train",
                    "1",
                    "--test",
                    "2",
                    "--out",
                    str(out),
                    "--quiet",
                ]
            )
            == 0
        )
    rows = list(csv.DictReader(open(out / "rank.csv")))
    assert len(rows) == 2 * 3 * 2 * 4 and rows[0]["which"] == "top"
    with h5py.File(out / "rank.h5") as file:
        assert file["A/subject-2/scores"].shape == (120,)
    control_rows = list(csv.DictReader(open(out / "control.csv")))
    assert {r["condition"] for r in control_rows} == {c[0] for c in bi.relational.CONDITIONS}
    with h5py.File(out / "control.h5") as file:
        assert file["random/null_means"].shape == (50, 2)
    with h5py.File(out / "rsa.h5") as file:
        assert file["A/subject-1/rdm"].shape == (120, 120)
    for name in (
        "grid_both_driven.png",
        "hist_both_driven_A.png",
        "top_A_subject-1.png",
        "rdm_B_subject-2.png",
        "search_align.png",
        "search_align.h5",
    ):
        assert (out / name).stat().st_size > 0, name
