"""Outputs appear whole or not at all: kill -9, SIGTERM, concurrent writers, path errors, names.

The writers killed here run in subprocesses slowed down at a chosen point (after the first batch,
between the two GIFTI renames, ...): they announce it by creating a marker file, and the test
kills them there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from berg_core import BERG, InvalidParameterError, as_stimulus
from berg_core.atomic import PART_SUFFIX, atomic_outputs, check_output_path
from berg_core.cli import main
from berg_core.output import encode_to_hdf5, write_metadata
from berg_core.testing_kill import kill9, start_script, wait_for_marker

TESTPLUGIN_DIR = Path(__file__).resolve().parent / "plugins" / "berg-testplugin"
LINEAR = "toy-synthetic-linear"

#: A subprocess that encodes 6 images (seed argv[4]) into argv[2] with the toy linear model of
#: berg_dir argv[1], one image per batch; after the first batch it creates the marker argv[3],
#: waits for the marker argv[6] if given (another writer's), and sleeps argv[5] s per batch.
HDF5_WRITER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {plugin_dir!r})
import numpy as np
import berg_testplugin.plugin
from berg_core import BERG, as_stimulus, registry
from berg_core.output import encode_to_hdf5

registry.reset({{"testplugin": berg_testplugin.plugin}})
berg_dir, out, marker, seed, pause = sys.argv[1:6]
model = BERG(berg_dir).get_encoding_model("toy-synthetic-linear", subject=1, batch_size=1)
original = model.encode_batches

def slow(stimulus):
    for i, batch in enumerate(original(stimulus)):
        yield batch
        if i == 0:
            Path(marker).touch()
            other = sys.argv[6] if len(sys.argv) > 6 and sys.argv[6] != "--force" else None
            while other is not None and not Path(other).exists():
                time.sleep(0.01)
        time.sleep(float(pause))

model.encode_batches = slow
images = np.random.default_rng(int(seed)).integers(0, 256, (6, 3, 9, 11), dtype=np.uint8)
encode_to_hdf5(model, as_stimulus(images), out, force="--force" in sys.argv, show_progress=False)
print("done")
"""


def _env() -> dict[str, str]:
    env = dict(os.environ, BERG_LOAD_PLUGINS="", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("BERG_DIR", None)
    return env


def _start(script: str, *args: object) -> subprocess.Popen[str]:
    return start_script(script, *args, env=_env())


def _parts(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(PART_SUFFIX))


def _expected_rows(berg_dir: Path, seed: int) -> dict[str, np.ndarray]:
    images = np.random.default_rng(seed).integers(0, 256, (6, 3, 9, 11), dtype=np.uint8)
    model = BERG(berg_dir).get_encoding_model(LINEAR, subject=1)
    lh, rh = model.encode(as_stimulus(images), show_progress=False)
    return {"lh": lh, "rh": rh}


def _read_h5(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as h5:
        return {"lh": h5["lh"][()], "rh": h5["rh"][()]}


# --- HDF5: kill -9, SIGTERM, stale temporary files ------------------------------------------------


@pytest.mark.parametrize("force", [False, True])
def test_hdf5_killed_mid_write_leaves_no_file_and_the_old_one_intact(
    berg_dir: Path, tmp_path: Path, force: bool
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "r.h5"
    if force:
        out.write_bytes(b"previous run")
    marker = tmp_path / "marker"
    args = ["--force"] if force else []
    writer = _start(
        HDF5_WRITER.format(plugin_dir=str(TESTPLUGIN_DIR)), berg_dir, out, marker, 1, 30, *args
    )
    wait_for_marker(marker, writer)
    kill9(writer)
    assert out.exists() == force
    if force:
        assert out.read_bytes() == b"previous run"
    # what kill -9 leaves: one recognisable temporary file, named after the target and the pid
    (part,) = _parts(out_dir)
    assert part.startswith(".r.h5.berg-") and f"-{writer.pid}-" in part
    # the next write to the same target removes it (its process is dead), and writes whole
    model = BERG(berg_dir).get_encoding_model(LINEAR, subject=1)
    images = np.random.default_rng(1).integers(0, 256, (6, 3, 9, 11), dtype=np.uint8)
    encode_to_hdf5(model, as_stimulus(images), out, force=True, show_progress=False)
    assert sorted(p.name for p in out_dir.iterdir()) == ["r.h5"]
    got, want = _read_h5(out), _expected_rows(berg_dir, 1)
    for hemi in ("lh", "rh"):
        np.testing.assert_allclose(got[hemi], want[hemi], rtol=1e-6)


def test_sigterm_removes_the_temporary_file(berg_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "r.h5"
    marker = tmp_path / "marker"
    writer = _start(
        HDF5_WRITER.format(plugin_dir=str(TESTPLUGIN_DIR)), berg_dir, out, marker, 1, 30
    )
    wait_for_marker(marker, writer)
    writer.send_signal(signal.SIGTERM)
    writer.communicate(timeout=30)
    assert writer.returncode == 128 + signal.SIGTERM
    assert list(out.parent.iterdir()) == []


def test_only_dead_writers_temporary_files_are_removed(berg_dir: Path, tmp_path: Path) -> None:
    from berg_core.atomic import _host_tag

    out = tmp_path / "r.h5"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"],
            capture_output=True,
            text=True,
            check=True,
        )
        host = _host_tag()
        names = {
            "dead": f".r.h5.berg-{host}-{int(dead.stdout)}-0000abcd{PART_SUFFIX}",
            "alive": f".r.h5.berg-{host}-{sleeper.pid}-0000abcd{PART_SUFFIX}",
            "other host": f".r.h5.berg-zzzzzz-{int(dead.stdout)}-0000abcd{PART_SUFFIX}",
            "other target": f".q.h5.berg-{host}-{int(dead.stdout)}-0000abcd{PART_SUFFIX}",
            "not berg's": f".r.h5.{int(dead.stdout)}{PART_SUFFIX}",
        }
        for name in names.values():
            (tmp_path / name).write_bytes(b"x")
        model = BERG(berg_dir).get_encoding_model(LINEAR, subject=1)
        stimulus = as_stimulus(np.zeros((2, 3, 4, 4), dtype=np.uint8))
        encode_to_hdf5(model, stimulus, out, show_progress=False)
    finally:
        sleeper.kill()
        sleeper.wait()
    left = set(_parts(tmp_path))
    assert left == {n for k, n in names.items() if k != "dead"}


# --- concurrent writers --------------------------------------------------------------------------


def test_two_concurrent_forced_writers_both_succeed(berg_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "same.h5"
    script = HDF5_WRITER.format(plugin_dir=str(TESTPLUGIN_DIR))
    # each writer waits, after its first batch, until the other one got there too: both hold
    # their temporary files at the same time
    writers = [
        _start(
            script,
            berg_dir,
            out,
            tmp_path / f"m{seed}",
            seed,
            0,
            tmp_path / f"m{3 - seed}",
            "--force",
        )
        for seed in (1, 2)
    ]
    results = [w.communicate(timeout=120) for w in writers]
    assert [w.returncode for w in writers] == [0, 0], results
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".h5") == ["same.h5"]
    assert _parts(tmp_path) == []
    got = _read_h5(out)
    matches = []
    for seed in (1, 2):
        want = _expected_rows(berg_dir, seed)
        matches.append(all(np.allclose(got[h], want[h], rtol=1e-6) for h in ("lh", "rh")))
    assert matches.count(True) == 1  # whole, and exactly one writer's


def test_interleaved_writers_last_rename_wins_and_no_clobber_without_force(
    tmp_path: Path,
) -> None:
    out = tmp_path / "f.bin"
    # with force: A starts first, B finishes first; both complete, A's rename is last
    with atomic_outputs([out], force=True) as (part_a,):
        part_a.write_bytes(b"A")
        with atomic_outputs([out], force=True) as (part_b,):
            part_b.write_bytes(b"B")
        assert out.read_bytes() == b"B" and part_a.exists()
    assert out.read_bytes() == b"A"
    out.unlink()
    # without force: the file B created meanwhile is not overwritten, A's temporary file goes
    with pytest.raises(InvalidParameterError) as info:
        with atomic_outputs([out], force=False) as (part_a,):
            part_a.write_bytes(b"A")
            with atomic_outputs([out], force=False) as (part_b,):
                part_b.write_bytes(b"B")
    assert str(info.value) == f"output file {out} exists; pass --force to overwrite it"
    assert out.read_bytes() == b"B"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_a_pair_claimed_halfway_is_undone(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    with pytest.raises(InvalidParameterError, match="b exists"):
        with atomic_outputs([first, second], force=False) as parts:
            for part in parts:
                part.write_bytes(b"new")
            second.write_bytes(b"someone else's")  # appears while we write
    assert not first.exists()
    assert second.read_bytes() == b"someone else's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_exception_inside_leaves_nothing(tmp_path: Path, error: BaseException) -> None:
    (tmp_path / "a").write_bytes(b"old")
    with pytest.raises(type(error)):
        with atomic_outputs([tmp_path / "a", tmp_path / "b"], force=True) as parts:
            parts[0].write_bytes(b"new")
            raise error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    assert (tmp_path / "a").read_bytes() == b"old"


def test_file_mode_follows_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        with atomic_outputs([tmp_path / "f"], force=False) as (part,):
            part.write_bytes(b"x")
    finally:
        os.umask(previous)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o640


# --- path errors ------------------------------------------------------------------------------


def test_path_under_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    for out in (tmp_path / "file.txt" / "out.h5", tmp_path / "file.txt" / "a" / "b" / "out.h5"):
        with pytest.raises(InvalidParameterError) as info:
            check_output_path(out, force=True, parameter="--out")
        assert str(info.value) == (
            f"--out '{out}': its parent '{tmp_path / 'file.txt'}' is not a directory; "
            "give a path inside a directory"
        )


@pytest.mark.parametrize("force", [False, True])
def test_path_onto_a_directory(tmp_path: Path, force: bool) -> None:
    (tmp_path / "d.h5").mkdir()
    with pytest.raises(InvalidParameterError) as info:
        check_output_path(tmp_path / "d.h5", force=force)
    assert str(info.value) == (
        f"output file '{tmp_path / 'd.h5'}' is a directory; give a file name (for example "
        f"'{tmp_path / 'd.h5' / 'responses.h5'}')"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_path_in_a_read_only_directory(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    with pytest.raises(InvalidParameterError, match="is not writable"):
        check_output_path(folder / "new" / "out.h5", force=False)


def test_cli_encode_path_errors(
    berg_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stimulus = tmp_path / "s.npy"
    np.save(stimulus, np.zeros((2, 3, 4, 4), dtype=np.uint8))
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "dir.h5").mkdir()
    base = [
        "--berg-dir",
        str(berg_dir),
        "encode",
        LINEAR,
        "--stimulus",
        str(stimulus),
        "--subject",
        "1",
    ]
    for out, says in (
        (tmp_path / "file.txt" / "out.h5", "is not a directory"),
        (tmp_path / "dir.h5", "is a directory"),
    ):
        for force in ([], ["--force"]):
            status = main([*base, "--out", str(out), *force])
            err = capsys.readouterr().err
            assert status != 0 and err.startswith(f"berg: error: --out '{out}'") and says in err
            assert "Traceback" not in err
    assert (tmp_path / "file.txt").read_text() == "x"
    assert list((tmp_path / "dir.h5").iterdir()) == []


def test_cli_metadata_path_errors(
    berg_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "dir.json").mkdir()
    base = ["--berg-dir", str(berg_dir), "metadata", LINEAR, "--subject", "1", "--force"]
    for out, says in (
        (tmp_path / "file.txt" / "m.h5", "is not a directory"),
        (tmp_path / "dir.json", "is a directory"),
    ):
        status = main([*base, "--out", str(out)])
        err = capsys.readouterr().err
        assert status != 0 and err.startswith(f"berg: error: --out '{out}'") and says in err


# --- names: non-ASCII and undecodable stimulus paths, non-ASCII metadata -------------------------


def _save_png(path: str | bytes, value: int) -> None:
    from PIL import Image

    Image.fromarray(np.full((4, 4, 3), value, dtype=np.uint8)).save(os.fsdecode(path), "PNG")


def test_non_ascii_and_undecodable_stimulus_names_round_trip(
    berg_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "stimuli"
    folder.mkdir()
    names = [b"a-caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac.png", b"b-\xff\xfe latin1 \xe9.png", b"c.png"]
    for i, name in enumerate(names):
        _save_png(os.path.join(os.fsencode(folder), name), 10 * i)
    model = BERG(berg_dir).get_encoding_model(LINEAR, subject=1)
    out = encode_to_hdf5(model, as_stimulus(folder), tmp_path / "r.h5", show_progress=False)
    with h5py.File(out, "r") as h5:
        text = list(h5["stimulus_sources"].asstr()[()])
        exact = [bytes(b) for b in h5["stimulus_sources_bytes"][()]]
        assert h5["stimulus_sources"].dtype == h5py.string_dtype("utf-8")
    folder_text = str(folder)
    assert text == [
        f"{folder_text}/a-café 日本.png",
        f"{folder_text}/b-\\xff\\xfe latin1 \\xe9.png",  # documented replacement
        f"{folder_text}/c.png",
    ]
    assert exact == [os.path.join(os.fsencode(folder), n) for n in names]  # lossless


def test_valid_utf8_names_need_no_byte_copy(berg_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "stimuli"
    folder.mkdir()
    _save_png(folder / "ünïcode.png", 1)
    model = BERG(berg_dir).get_encoding_model(LINEAR, subject=1)
    out = encode_to_hdf5(model, as_stimulus(folder), tmp_path / "r.h5", show_progress=False)
    with h5py.File(out, "r") as h5:
        assert list(h5["stimulus_sources"].asstr()[()]) == [str(folder / "ünïcode.png")]
        assert "stimulus_sources_bytes" not in h5


def test_metadata_with_non_ascii_strings(tmp_path: Path) -> None:
    metadata = {
        "name": "Gesicht ü 面",
        "labels": np.array(["é", "ascii", "\udcff"]),
        "objects": np.array([b"\xff", "x"], dtype=object),
        "a/b": {"n": np.arange(3)},
    }
    out = write_metadata(metadata, tmp_path / "m.h5")
    with h5py.File(out, "r") as h5:
        assert h5["name"].asstr()[()] == "Gesicht ü 面"
        assert list(h5["labels"].asstr()[()]) == ["é", "ascii", "\\udcff"]
        assert list(h5["objects"].asstr()[()]) == ["\\xff", "x"]
        np.testing.assert_array_equal(h5["a_b/n"][()], [0, 1, 2])
    with pytest.raises(InvalidParameterError, match="exists; pass --force"):
        write_metadata(metadata, out)
    json_out = write_metadata(metadata, tmp_path / "m.json")
    assert '"Gesicht \\u00fc \\u9762"' in json_out.read_text(encoding="utf-8")


def test_metadata_hdf5_cannot_hold_a_value(tmp_path: Path) -> None:
    out = tmp_path / "m.h5"
    with pytest.raises(InvalidParameterError) as info:
        write_metadata({"fmri": {"when": np.array([1, 2], dtype="datetime64[s]")}}, out)
    assert str(info.value).startswith(f"path {out}: metadata entry /fmri/when (array(shape=(2,)")
    assert "use a .json file" in str(info.value)
    assert list(tmp_path.iterdir()) == []
