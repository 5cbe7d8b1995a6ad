"""fmri-nsd_fsaverage-alexnet_untrained against the independent reference-style computation."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from error_bounds import assert_within, exact_readout
from nsd_reference import UNTRAINED, Model

from berg_core import BERG, InvalidParameterError
from berg_core.output import encode_to_hdf5
from berg_core.stimulus import as_stimulus

N = 163_842


def _mask(indices: np.ndarray) -> np.ndarray:
    mask = np.zeros(N, dtype=np.uint8)
    mask[indices] = 1
    return mask


def assert_same(
    untrained: Model,
    stimulus: np.ndarray,
    actual: tuple[np.ndarray, np.ndarray],
    expected: tuple[np.ndarray, np.ndarray],
    lh: np.ndarray | None = None,
    rh: np.ndarray | None = None,
) -> None:
    """Two float32 computations of the same responses agree within the arithmetic's bound.

    BLAS kernels (and so the last bits) differ between CPUs, thread counts, batch shapes and
    column counts; the tolerance follows from the computation (see ``error_bounds``).
    """
    for got, wanted, tolerance in zip(
        actual, expected, untrained.tolerance(stimulus, lh, rh), strict=True
    ):
        assert got.dtype == np.float32
        assert_within(got, wanted, tolerance)


@pytest.fixture(scope="module")
def full(berg: BERG, untrained: Model, stimulus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """berg's full-brain responses (default batch size)."""
    with berg.get_encoding_model(UNTRAINED, subject=1, device="cpu") as model:
        return berg.encode(model, stimulus, show_progress=False)


def test_full_brain_matches_reference(full: tuple, untrained: Model, stimulus: np.ndarray) -> None:
    lh, rh = full
    assert lh.shape == rh.shape == (len(stimulus), N)
    assert_same(untrained, stimulus, full, untrained.responses(stimulus))
    # responses differ between images and vertices (the comparison is not trivially satisfied)
    assert np.std(lh[:, :1000], axis=0).min() > 1e-3


def test_tolerance_catches_real_mistakes(
    untrained: Model, stimulus: np.ndarray, full: tuple
) -> None:
    """The derived tolerance passes the right responses and fails plausible wrong ones."""
    (exact_lh, _), (bound_lh, _) = untrained.exact_and_bound(stimulus)
    tolerance_lh, _ = untrained.tolerance(stimulus)
    # berg's float32 responses are within the bound of the float64 ones
    assert_within(full[0], exact_lh, bound_lh)

    def beyond(wrong: np.ndarray, tolerance: np.ndarray) -> float:
        return float(np.mean(np.abs(wrong - full[0][:, : wrong.shape[1]]) > tolerance))

    # each vertex given its neighbour's column
    assert beyond(full[0][:, 1:], tolerance_lh[:, :-1]) > 0.9
    # the hemispheres swapped
    assert beyond(full[1], tolerance_lh) > 0.9
    # the scaler step left out
    features, _ = untrained.exact_features(stimulus)
    scaler = untrained.weights["scaler_param"]
    unscaled = {
        **scaler,
        "mean_": np.zeros_like(scaler["mean_"]),
        "scale_": np.ones_like(scaler["scale_"]),
    }
    weights = {**untrained.weights, "scaler_param": unscaled}
    assert beyond(exact_readout(features, weights, {"lh": None})["lh"], tolerance_lh) > 0.9


@pytest.mark.parametrize("batch_size", [1, 2, 4, 64])
def test_batch_size_does_not_change_results(
    berg: BERG, untrained: Model, full: tuple, stimulus: np.ndarray, batch_size: int
) -> None:
    model = berg.get_encoding_model(UNTRAINED, subject=1, batch_size=batch_size)
    assert model.batch_size == batch_size
    lh, rh = berg.encode(model, stimulus, show_progress=False)
    assert_same(untrained, stimulus, (lh, rh), full)
    # streaming per batch gives the same rows
    batches = list(model.encode_batches(as_stimulus(stimulus)))
    assert [b[0].shape[0] for b in batches] == [
        min(batch_size, len(stimulus) - i) for i in range(0, len(stimulus), batch_size)
    ]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), rh)


@pytest.mark.parametrize("roi", ["V1v", "FBA-2", "mTL-faces", "mfs-words", "nsdgeneral"])
def test_roi(berg: BERG, untrained: Model, stimulus: np.ndarray, full: tuple, roi: str) -> None:
    lh_index, rh_index = untrained.rois(roi)
    model = berg.get_encoding_model(UNTRAINED, subject=1, selection={"roi": roi})
    lh, rh = berg.encode(model, stimulus, show_progress=False)
    assert lh.shape == (len(stimulus), len(lh_index))
    assert rh.shape == (len(stimulus), len(rh_index))
    reference = untrained.responses(stimulus, lh_index, rh_index)
    assert_same(untrained, stimulus, (lh, rh), reference, lh_index, rh_index)
    # the selected columns are the full-brain columns of those vertices (computed with other
    # column counts, so other BLAS kernels: equal up to rounding)
    selected = (full[0][:, lh_index], full[1][:, rh_index])
    assert_same(untrained, stimulus, (lh, rh), selected, lh_index, rh_index)
    columns = model.column_indices()
    np.testing.assert_array_equal(columns["lh"], lh_index)
    np.testing.assert_array_equal(columns["rh"], rh_index)


def test_vertex_pick(berg: BERG, stimulus: np.ndarray, full: tuple) -> None:
    """selection['vertex'] (the core's pick along the labelled dim) keeps those columns of the
    full-brain computation, in the order given, in both hemispheres."""
    model = berg.get_encoding_model(UNTRAINED, subject=1, selection={"vertex": [N - 1, 7, 7]})
    (lh, rh), metadata = berg.encode(model, stimulus, return_metadata=True, show_progress=False)
    np.testing.assert_array_equal(lh, full[0][:, [N - 1, 7, 7]])
    np.testing.assert_array_equal(rh, full[1][:, [N - 1, 7, 7]])
    output = metadata["output"]
    assert output["dims"] == {"lh": ["image", "vertex"], "rh": ["image", "vertex"]}
    for hemi in ("lh", "rh"):
        np.testing.assert_array_equal(output["coords"][hemi]["vertex"], [N - 1, 7, 7])
        np.testing.assert_array_equal(output["columns"][hemi], [N - 1, 7, 7])
    with pytest.raises(InvalidParameterError, match=r"\[163842\] not among the 163842 vertex"):
        berg.get_encoding_model(UNTRAINED, subject=1, selection={"vertex": [N]})


def test_empty_roi_gives_zero_columns(berg: BERG, stimulus: np.ndarray, untrained: Model) -> None:
    model = berg.get_encoding_model(UNTRAINED, subject=1, selection={"roi": "FBA-2"})
    lh, rh = berg.encode(model, stimulus, show_progress=False)
    assert lh.shape == (len(stimulus), 0)
    assert lh.dtype == np.float32
    assert rh.shape == (len(stimulus), 1234)


def test_roi_alias_ovwfa(berg: BERG, stimulus: np.ndarray, untrained: Model) -> None:
    owfa = berg.encode(
        berg.get_encoding_model(UNTRAINED, subject=1, selection={"roi": "OWFA"}),
        stimulus,
        show_progress=False,
    )
    ovwfa_model = berg.get_encoding_model(UNTRAINED, subject=1, selection={"roi": "OVWFA"})
    ovwfa = berg.encode(ovwfa_model, stimulus, show_progress=False)
    assert ovwfa[0].shape == (len(stimulus), 317)
    np.testing.assert_array_equal(ovwfa[0], owfa[0])
    np.testing.assert_array_equal(ovwfa[1], owfa[1])
    assert ovwfa_model.request.selection.roi == "OWFA"


def test_lh_mask_only_keeps_rh_whole(
    berg: BERG, untrained: Model, stimulus: np.ndarray, full: tuple
) -> None:
    index = np.array([0, 17, 5000, 163_841])
    model = berg.get_encoding_model(
        UNTRAINED, subject=1, selection={"lh_vertices": _mask(index).tolist()}
    )
    lh, rh = berg.encode(model, stimulus, show_progress=False)
    assert lh.shape == (len(stimulus), 4)
    assert rh.shape == (len(stimulus), N)
    reference = untrained.responses(stimulus, index, None)
    assert_same(untrained, stimulus, (lh, rh), reference, index, None)
    assert_same(untrained, stimulus, (lh, rh), (full[0][:, index], full[1]), index, None)


def test_both_masks(berg: BERG, untrained: Model, stimulus: np.ndarray) -> None:
    rng = np.random.default_rng(5)
    lh_index = np.sort(rng.choice(N, 300, replace=False))
    rh_index = np.sort(rng.choice(N, 20, replace=False))
    selection = {"lh_vertices": _mask(lh_index).astype(bool), "rh_vertices": _mask(rh_index)}
    model = berg.get_encoding_model(UNTRAINED, subject=1, selection=selection)
    lh, rh = berg.encode(model, stimulus, show_progress=False)
    reference = untrained.responses(stimulus, lh_index, rh_index)
    assert_same(untrained, stimulus, (lh, rh), reference, lh_index, rh_index)


def test_int64_input_equals_uint8(berg: BERG, stimulus: np.ndarray, full: tuple) -> None:
    # np.random.randint(0, 255, ...) gives int64: the reference divides it by 2**63 - 1
    model = berg.get_encoding_model(UNTRAINED, subject=1)
    lh, rh = berg.encode(model, stimulus.astype(np.int64), show_progress=False)
    np.testing.assert_array_equal(lh, full[0])
    np.testing.assert_array_equal(rh, full[1])


def test_float_input(berg: BERG, untrained: Model, stimulus: np.ndarray, full: tuple) -> None:
    images = (stimulus / 255.0).astype(np.float32)
    model = berg.get_encoding_model(UNTRAINED, subject=1)
    lh, rh = berg.encode(model, images, show_progress=False)
    # the transform on the float tensor (resized in floating point, not rounded to 8 bits)
    reference = untrained.responses(images)
    assert_same(untrained, images, (lh, rh), reference)
    # close to, but not the same as, the uint8 route
    assert not np.array_equal(lh, full[0])
    np.testing.assert_allclose(lh, full[0], atol=0.05 * np.abs(full[0]).max())
    # float64 input is the same images
    lh64, _ = berg.encode(model, images.astype(np.float64), show_progress=False)
    np.testing.assert_array_equal(lh64, lh)


def test_images_of_different_sizes(
    berg: BERG, untrained: Model, stimulus: np.ndarray, tmp_path: Path
) -> None:
    from PIL import Image

    rng = np.random.default_rng(3)
    shapes = [(240, 262), (300, 224), (231, 231)]
    images = [rng.integers(0, 256, (3, h, w), dtype=np.uint8) for h, w in shapes]
    for i, image in enumerate(images):
        Image.fromarray(image.transpose(1, 2, 0)).save(tmp_path / f"img{i}.png")
    model = berg.get_encoding_model(UNTRAINED, subject=1, selection={"roi": "V2d"})
    lh, rh = berg.encode(model, tmp_path, show_progress=False)
    lh_index, rh_index = untrained.rois("V2d")
    for i, image in enumerate(images):
        reference = untrained.responses(image[None], lh_index, rh_index)
        rows = (lh[i : i + 1], rh[i : i + 1])
        assert_same(untrained, image[None], rows, reference, lh_index, rh_index)


def test_return_metadata(berg: BERG, stimulus: np.ndarray, untrained: Model) -> None:
    model = berg.get_encoding_model(UNTRAINED, subject=1, selection={"roi": "hV4"})
    (lh, _), metadata = berg.encode(model, stimulus, return_metadata=True, show_progress=False)
    assert lh.shape == (len(stimulus), 531)
    assert set(metadata) == {"fmri", "encoding_models", "output"}
    assert "lh_fsaverage_rois" in metadata["fmri"]
    np.testing.assert_array_equal(
        metadata["encoding_models"]["lh_r2_nsdcore"],
        untrained.metadata["encoding_models"]["lh_r2_nsdcore"],
    )
    output = metadata["output"]
    assert output["model_id"] == UNTRAINED
    assert output["subject"] == 1
    assert output["selection"] == {"roi": "hV4"}
    assert output["names"] == ["lh", "rh"]
    np.testing.assert_array_equal(output["columns"]["lh"], untrained.rois("hV4")[0])
    np.testing.assert_array_equal(output["columns"]["rh"], untrained.rois("hV4")[1])
    np.testing.assert_array_equal(output["coords"]["lh"]["vertex"], untrained.rois("hV4")[0])
    # the metadata handed out is a copy: changing it does not change the model's
    metadata["fmri"]["lh_ncsnr"][:] = -1
    assert model.subject_metadata()["fmri"]["lh_ncsnr"].min() >= 0


def test_full_brain_metadata_is_read_lazily(berg: BERG, untrained: Model) -> None:
    model = berg.get_encoding_model(UNTRAINED, subject=1)
    assert model._metadata is None
    np.testing.assert_array_equal(model.column_indices()["rh"], np.arange(N))
    assert set(model.subject_metadata()) == {"fmri", "encoding_models"}


def test_hdf5_streaming_equals_encode(
    berg: BERG, stimulus: np.ndarray, tmp_path: Path, untrained: Model
) -> None:
    selection = {"roi": "EBA"}
    model = berg.get_encoding_model(UNTRAINED, subject=1, selection=selection, batch_size=2)
    expected = berg.encode(model, stimulus, show_progress=False)
    path = encode_to_hdf5(model, as_stimulus(stimulus), tmp_path / "out.h5", show_progress=False)
    with h5py.File(path, "r") as h5:
        np.testing.assert_array_equal(h5["lh"][()], expected[0])
        np.testing.assert_array_equal(h5["rh"][()], expected[1])
        np.testing.assert_array_equal(h5["columns/lh"][()], untrained.rois("EBA")[0])
        assert h5.attrs["model_id"] == UNTRAINED
        assert h5["rh"].dtype == np.float32


def test_loading_leaves_rng_alone_and_close_frees(berg: BERG, stimulus: np.ndarray) -> None:
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    model = berg.get_encoding_model(UNTRAINED, subject=1)
    berg.encode(model, stimulus[:1], show_progress=False)
    assert torch.equal(torch.random.get_rng_state(), state)
    model.close()
    assert model.closed
    assert model.extractor.module is None
    assert model.readout.heads == {}
    with pytest.raises(InvalidParameterError, match="closed"):
        berg.encode(model, stimulus, show_progress=False)
