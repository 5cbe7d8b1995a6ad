"""Reading NSD stimuli in index order and prefetching batches on a worker thread."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from berg_train.datasets.nsd import NSDImages
from berg_train.prefetch import Prefetcher

from berg_core import BergError, InvalidParameterError

THREAD = "berg-train-prefetch"


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD]


@pytest.fixture(scope="module")
def brick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """An ``imgBrick`` of 20 random 6 x 5 images in chunks of one image, as NSD's."""
    images = np.random.default_rng(0).integers(0, 256, (20, 6, 5, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("stimuli") / "nsd_stimuli.hdf5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("imgBrick", data=images, chunks=(1, 6, 5, 3))
    return path, images


def test_reader_returns_the_requested_images_in_the_requested_order(brick: Any) -> None:
    path, images = brick
    ids = np.array([17, 3, 3, 9, 0, 12, 19, 5])  # feature row -> image id: unsorted, repeated
    reader = NSDImages(path, ids)
    rows = [6, 1, 2, 1, 0, 7, 3, 6]  # unsorted rows, repeated, two rows of the same id
    got = reader.load(rows)
    expected = images[ids[rows]].transpose(0, 3, 1, 2)
    assert got.shape == (8, 3, 6, 5) and got.dtype == np.uint8 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(reader.load(range(8)), images[ids].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(reader.load([4]), images[[0]].transpose(0, 3, 1, 2))
    reader.close()


def test_reader_reads_each_image_once_in_ascending_order(brick: Any, monkeypatch: Any) -> None:
    path, _ = brick
    reads: list[int] = []
    original = h5py.Dataset.read_direct

    def spy(self: Any, dest: Any, source_sel: Any = None, dest_sel: Any = None) -> None:
        reads.append(int(source_sel))
        original(self, dest, source_sel, dest_sel)

    monkeypatch.setattr(h5py.Dataset, "read_direct", spy)
    reader = NSDImages(path, np.array([17, 3, 3, 9, 0]))
    reader.load([0, 4, 1, 2, 3, 0])
    assert reads == [0, 3, 9, 17]
    reader.close()


def test_reader_errors_name_the_value_and_what_is_allowed(brick: Any, tmp_path: Path) -> None:
    path, _ = brick
    reader = NSDImages(path, np.array([1, 2, 3]))
    with pytest.raises(InvalidParameterError, match=r"row 3 requested; allowed 0\.\.2"):
        reader.load([0, 3])
    with pytest.raises(InvalidParameterError, match=r"row -1 requested"):
        reader.load([-1])
    reader.close()
    outside = NSDImages(path, np.array([4, 20]))
    with pytest.raises(InvalidParameterError, match=r"image id 20 .*allowed 0\.\.19"):
        outside.load([0, 1])
    outside.close()
    other = tmp_path / "other.hdf5"
    with h5py.File(other, "w") as h5:
        h5.create_dataset("images", data=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(InvalidParameterError, match="no dataset 'imgBrick'"):
        NSDImages(other, np.array([0])).load([0])


def test_prefetcher_yields_every_result_in_order_and_ends_its_thread() -> None:
    with Prefetcher(lambda i: i * i, range(7)) as batches:
        assert list(batches) == [(i, i * i) for i in range(7)]
        assert not batches.alive
    assert not _prefetch_threads()


def test_prefetcher_raises_the_loaders_error_after_the_good_batches() -> None:
    def load(i: int) -> int:
        if i == 3:
            raise OSError("disk gone at batch 3")
        return i

    seen = []
    with pytest.raises(OSError, match="disk gone at batch 3"), Prefetcher(load, range(6)) as p:
        for item, _ in p:
            seen.append(item)
    assert seen == [0, 1, 2]
    assert not p.alive and not _prefetch_threads()


def test_prefetcher_stops_its_thread_when_the_consumer_fails_or_breaks() -> None:
    calls = []

    def load(i: int) -> int:
        calls.append(i)
        return i

    with pytest.raises(RuntimeError, match="backbone failed"), Prefetcher(load, range(1000)) as p:
        for item, _ in p:
            if item == 2:
                raise RuntimeError("backbone failed")
    assert not p.alive
    # bounded: the consumed batches, one queued, one being loaded when it stopped
    assert len(calls) <= 3 + 1 + 1
    with Prefetcher(load, range(1000), depth=2) as q:
        for item, _ in q:
            if item == 1:
                break
    assert not q.alive and not _prefetch_threads()


def test_prefetcher_loads_while_the_consumer_works() -> None:
    """With a 50 ms load and 50 ms of work per batch, 8 batches take ~0.45 s, not 0.8 s."""

    def load(i: int) -> int:
        time.sleep(0.05)
        return i

    started = time.perf_counter()
    with Prefetcher(load, range(8)) as batches:
        for _ in batches:
            time.sleep(0.05)
    assert time.perf_counter() - started < 0.7


@pytest.mark.parametrize("depth", [0, -1, 1.5, True])
def test_prefetcher_depth_must_be_a_positive_integer(depth: Any) -> None:
    with pytest.raises(InvalidParameterError, match=f"depth must be an integer >= 1, got {depth}"):
        Prefetcher(lambda i: i, range(2), depth=depth)
    assert issubclass(InvalidParameterError, BergError)


def test_extraction_through_the_prefetcher_equals_batches_read_directly(
    brick: Any, helpers: Any
) -> None:
    """The features are the extractor's on exactly the images h5py reads one by one.

    Same extractor, same batch shapes, bit-identical pixels: the same float32 operations in the
    same order, so the features are identical (the scaler, PCA and regression after them are
    deterministic functions of the features, so trained weights are unchanged too).
    """
    from berg_train.features import FeatureExtractor, extract_array

    path, _ = brick
    ids = np.array([19, 2, 7, 7, 11, 0, 5])
    extractor = FeatureExtractor(helpers.tiny_backbone(), "cpu")
    got = extract_array(extractor, NSDImages(path, ids), batch_size=3, show_progress=False)
    with h5py.File(path, "r") as h5:
        direct = np.stack([h5["imgBrick"][int(i)] for i in ids]).transpose(0, 3, 1, 2)
    expected = np.concatenate([extractor(direct[s : s + 3]) for s in range(0, ids.size, 3)])
    assert got.shape == (7, 576) and got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    assert not _prefetch_threads()


def test_extraction_error_propagates_without_leaking_a_thread(helpers: Any) -> None:
    from berg_train.features import FeatureExtractor, extract_array

    class Broken:
        def __len__(self) -> int:
            return 10

        def load(self, indices: Any) -> np.ndarray:
            if 6 in indices:
                raise InvalidParameterError("stimulus file truncated at row 6")
            return np.zeros((len(indices), 3, 16, 16), np.uint8)

    extractor = FeatureExtractor(helpers.tiny_backbone(), "cpu")
    with pytest.raises(InvalidParameterError, match="truncated at row 6"):
        extract_array(extractor, Broken(), batch_size=3, show_progress=False)
    assert not _prefetch_threads()
