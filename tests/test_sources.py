"""berg_core.sources: every kind of image source against direct numpy reads, exact pixels."""

from __future__ import annotations

import os
import pickle
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest

from berg_core import BERG
from berg_core.cli import main
from berg_core.errors import InvalidParameterError, StimulusError
from berg_core.sources import ImageSource, open_source
from berg_core.stimulus import as_stimulus

LINEAR = "toy-synthetic-linear"


def pixels(n: int, h: int = 6, w: int = 5, seed: int = 0) -> np.ndarray:
    """Random ``(n, 3, h, w)`` uint8 images."""
    return np.random.default_rng(seed).integers(0, 256, (n, 3, h, w), dtype=np.uint8)


def read_all(source: ImageSource) -> np.ndarray:
    return np.concatenate([np.asarray(s.batch(0, len(s))) for _, s in source.blocks(3)])


def h5(path: Path, **datasets: np.ndarray) -> Path:
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f[name] = value
    return path


def save_pngs(folder: Path, images: np.ndarray) -> list[Path]:
    from PIL import Image

    folder.mkdir()
    paths = []
    for i, img in enumerate(images):
        paths.append(folder / f"{i:03d}.png")
        Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0))).save(paths[-1])
    return paths


@pytest.fixture
def kinds(tmp_path: Path) -> dict[str, tuple[object, np.ndarray]]:
    """Every kind of source, each with the (N, 3, H, W) images it must give."""
    imgs = pixels(7)
    last = np.ascontiguousarray(imgs.transpose(0, 2, 3, 1))
    np.save(tmp_path / "first.npy", imgs)
    np.save(tmp_path / "last.npy", last)
    h5(tmp_path / "s.h5", first=imgs, last=last)
    return {
        "paths": (save_pngs(tmp_path / "pngs", imgs), imgs),
        "folder": (tmp_path / "pngs", imgs),
        "npy": (tmp_path / "first.npy", imgs),
        "npy-last": (tmp_path / "last.npy", imgs),
        "hdf5": (f"{tmp_path / 's.h5'}:first", imgs),
        "hdf5-last": (f"{tmp_path / 's.h5'}:last", imgs),
        "array": (imgs, imgs),
        "array-last": (last, imgs),
        "iterable": (iter(list(imgs)), imgs),
        "iterable-batches": (iter([last[:4], last[4:]]), imgs),
    }


KINDS = ["paths", "folder", "npy", "npy-last", "hdf5", "hdf5-last", "array", "array-last",
         "iterable", "iterable-batches"]  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_gives_the_exact_pixels(kinds: dict, kind: str) -> None:
    obj, want = kinds[kind]
    source = open_source(obj)
    got = read_all(source)
    assert got.dtype == np.uint8 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    if source.rereadable:
        assert len(source) == 7
        np.testing.assert_array_equal(source.read(2, 5).batch(0, 3), want[2:5])
        np.testing.assert_array_equal(source.take([6, 0, 3]).batch(0, 3), want[[6, 0, 3]])
        np.testing.assert_array_equal(as_stimulus(source).batch(1, 7), want[1:7])
        back = pickle.loads(pickle.dumps(source))
        np.testing.assert_array_equal(back.read(0, 7).batch(0, 7), want)
        assert back.digest() == source.digest()
    else:
        assert source.n is None
        with pytest.raises(InvalidParameterError, match="one-pass iterable has no length"):
            len(source)


def test_blocks_start_and_sizes(kinds: dict) -> None:
    for kind in ("hdf5-last", "iterable-batches"):
        obj, want = kinds[kind]
        blocks = list(open_source(obj).blocks(3, start=2))
        assert [(first, len(s)) for first, s in blocks] == [(2, 3), (5, 2)]
        np.testing.assert_array_equal(blocks[1][1].batch(0, 2), want[5:7])


def test_layout_override_for_an_ambiguous_shape(tmp_path: Path) -> None:
    imgs = pixels(2, h=3, w=3)  # (2, 3, 3, 3): channel axis 1 or 3
    np.testing.assert_array_equal(read_all(open_source(imgs)), imgs)
    source = open_source(imgs, layout="channels_last")
    np.testing.assert_array_equal(read_all(source), imgs.transpose(0, 3, 1, 2))
    with pytest.raises(InvalidParameterError, match="layout is 'rows'; expected one of"):
        open_source(imgs, layout="rows")
    with pytest.raises(StimulusError, match=r"\(2, 3, 4, 5\) .*with layout='channels_last'"):
        open_source(pixels(2, 4, 5), layout="channels_last")


def test_float_dataset_and_out_of_range_values(tmp_path: Path) -> None:
    floats = pixels(4).astype(np.float32) / 255
    path = h5(tmp_path / "f.h5", ok=floats, bad=floats * 255)
    stim = as_stimulus(open_source(f"{path}:ok"))
    assert stim.kind == "float"
    got = stim.batch(0, 4)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, floats)
    source = open_source(path, dataset="bad")
    message = (
        r"f.h5:bad, images 0-2: stimulus has dtype float32 with values from 0 to 25[0-9]; float "
        r"stimuli must lie in \[0, 1\]"
    )
    with pytest.raises(StimulusError, match=message):
        source.read(0, 3)


def test_odd_inputs_are_named_errors(tmp_path: Path) -> None:
    path = h5(
        tmp_path / "odd.h5",
        flat=np.zeros((4, 8, 8), np.uint8),
        two=np.zeros((4, 2, 8, 8), np.uint8),
        text=np.array([[[[b"a"] * 3] * 2] * 2]),
    )
    with pytest.raises(StimulusError, match=r"odd.h5:flat has shape \(4, 8, 8\) \(3 dimensions\)"):
        open_source(f"{path}:flat")
    with pytest.raises(StimulusError, match=r"odd.h5:two has shape \(4, 2, 8, 8\)"):
        open_source(f"{path}:two")
    with pytest.raises(StimulusError, match=r"odd.h5:text has dtype \|S1; expected integers"):
        open_source(f"{path}:text")
    message = r"'missing' is not a dataset of .*odd.h5; it has: flat, text, two"
    with pytest.raises(InvalidParameterError, match=message):
        open_source(f"{path}:missing")
    with pytest.raises(InvalidParameterError, match=r"is an HDF5 file: name its images dataset"):
        open_source(path)
    fake = tmp_path / "fake.h5"
    fake.write_bytes(b"not hdf5 at all" * 10)
    with pytest.raises(StimulusError, match=r"fake.h5: not an HDF5 file"):
        open_source(fake, dataset="x")
    with pytest.raises(StimulusError, match=r"--stimulus .*nothere.h5: no such file"):
        open_source(tmp_path / "nothere.h5", dataset="x", name="--stimulus")
    with pytest.raises(StimulusError, match=r"stimulus has shape \(2, 5, 4\)"):
        open_source(np.zeros((2, 5, 4), np.uint8))
    with pytest.raises(StimulusError, match=r"images is a int; expected an array"):
        open_source(3, name="images")
    with pytest.raises(InvalidParameterError, match="dataset='x' is given but stimulus is not an"):
        open_source(pixels(1), dataset="x")


def test_range_and_one_pass_errors() -> None:
    source = open_source(pixels(4))
    with pytest.raises(InvalidParameterError, match=r"images 2:9 of stimulus .*0 <= start < stop"):
        source.read(2, 9)
    with pytest.raises(InvalidParameterError, match=r"index 4 is outside the 4 images"):
        source.take([4])
    with pytest.raises(InvalidParameterError, match="size is 0; expected an integer >= 1"):
        next(source.blocks(0))
    once = open_source(iter([pixels(2)]))
    with pytest.raises(InvalidParameterError, match="one-pass iterable cannot be read again"):
        once.take([0])
    with pytest.raises(InvalidParameterError, match="one-pass iterable cannot be pickled"):
        pickle.dumps(once)
    with pytest.raises(StimulusError, match="one-pass iterable, whose length is unknown"):
        as_stimulus(once)


def test_digests_change_with_the_data_and_only_then(tmp_path: Path) -> None:
    imgs = pixels(4)
    array = open_source(imgs)
    assert open_source(imgs.copy()).digest() == array.digest()
    changed = imgs.copy()
    changed[3, 2, 1, 0] ^= 1
    assert open_source(changed).digest() != array.digest()

    path = h5(tmp_path / "d.h5", imgs=imgs)
    source = open_source(f"{path}:imgs")
    before = source.digest()
    assert open_source(f"{path}:imgs").digest() == before
    with h5py.File(path, "r+") as f:
        del f["imgs"]
        f["imgs"] = imgs[:3]  # other shape
    assert source.digest() != before
    npy = tmp_path / "d.npy"
    np.save(npy, imgs)
    first = open_source(npy).digest()
    assert open_source(npy).digest() == first
    np.save(npy, changed)
    stat = os.stat(npy)
    os.utime(npy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert open_source(npy).digest() != first
    files = save_pngs(tmp_path / "p", imgs)
    digest = open_source(files).digest()
    assert open_source(files[::-1]).digest() != digest  # order is part of the identity


def test_shard_sends_only_its_slice() -> None:
    imgs = pixels(6)
    shard = open_source(imgs).shard(2, 5)
    assert shard.array.shape[0] == 3 and shard.offset == 2
    np.testing.assert_array_equal(shard.read(3, 5).batch(0, 2), imgs[3:5])
    restored = pickle.loads(pickle.dumps(shard))
    np.testing.assert_array_equal(restored.read(2, 3).batch(0, 1), imgs[2:3])
    with pytest.raises(InvalidParameterError, match=r"images 0:1 .*expected 2 <= start"):
        shard.read(0, 1)


def test_memory_holds_one_block_of_a_large_memmapped_file(tmp_path: Path) -> None:
    n, h, w, block = 400, 32, 32, 20
    path = tmp_path / "big.npy"
    big = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, h, w, 3))
    big[:] = np.arange(n, dtype=np.uint8)[:, None, None, None]
    del big
    block_bytes = block * 3 * h * w
    source = open_source(path)  # channel-last: every block is transposed
    tracemalloc.start()
    try:
        total = 0
        for first, stim in source.blocks(block):
            images = stim.batch(0, len(stim))
            assert images[0, 0, 0, 0] == first % 256
            total += images.nbytes
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == n * 3 * h * w == 20 * block_bytes
    # one block as read, its transposed copy, and a stacked batch: 3 blocks, plus 64 KiB of
    # Python objects; the whole file would be 20 blocks
    assert peak < 3 * block_bytes + 65536, (peak, block_bytes)


def test_api_and_cli_encode_an_hdf5_dataset_as_the_same_array(
    berg_dir: Path, tmp_path: Path, images: np.ndarray
) -> None:
    path = h5(tmp_path / "nsd.hdf5", imgBrick=np.ascontiguousarray(images.transpose(0, 2, 3, 1)))
    berg = BERG(berg_dir)
    with berg.get_encoding_model(LINEAR, subject=1) as model:
        want = berg.encode(model, images, show_progress=False)
        got = berg.encode(model, open_source(f"{path}:imgBrick"), show_progress=False)
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(a, b)
    outs = []
    for name, stimulus in (("a", tmp_path / "images.npy"), ("h", f"{path}:imgBrick")):
        np.save(tmp_path / "images.npy", images)
        out = tmp_path / f"{name}.h5"
        argv = ["--berg-dir", str(berg_dir), "encode", LINEAR, "--subject", "1", "--stimulus",
                str(stimulus), "--out", str(out), "--quiet", "--batch-size", "2"]  # fmt: skip
        assert main(argv) == 0
        outs.append(out)
    with h5py.File(outs[0], "r") as a, h5py.File(outs[1], "r") as b:
        for key in ("lh", "rh"):
            np.testing.assert_array_equal(a[key][()], b[key][()])
            np.testing.assert_array_equal(a[key][()], want[0 if key == "lh" else 1])
