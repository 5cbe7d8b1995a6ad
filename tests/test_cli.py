"""The ``berg`` command, run in-process through ``berg_core.cli.main`` with the toy models."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import h5py
import numpy as np
import pytest

from berg_core import __version__
from berg_core.cli import main

LINEAR = "toy-synthetic-linear"
Expected = Callable[[Path, int, np.ndarray], dict[str, np.ndarray]]
Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """``run("list", ...)`` -> (exit status, stdout, stderr)."""

    def run(*argv: str | Path) -> tuple[int, str, str]:
        try:
            status = main([str(a) for a in argv])
        except SystemExit as exit:  # argparse's usage errors
            status = exit.code if isinstance(exit.code, int) else 1
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


def save_pngs(folder: Path, images: np.ndarray) -> Path:
    from PIL import Image

    folder.mkdir()
    for i, img in enumerate(images):
        Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0))).save(folder / f"{i:03d}.png")
    return folder


def test_version_and_help(run: Run) -> None:
    assert run("--version") == (0, f"berg-core {__version__}\n", "")
    status, out, _ = run()
    assert status == 0
    for command in ("plugins", "list", "describe", "metadata", "encode"):
        assert command in out


def test_plugins(run: Run, toy_plugin: ModuleType) -> None:
    status, out, _ = run("plugins")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["testplugin", "(in-process)", "[testplugin]", "3", "models"]
    assert "    toy-synthetic-linear" in lines
    assert "    toy_family (a family: berg list --expand toy_family)" in lines


def test_plugins_when_none_is_installed(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERG_LOAD_PLUGINS", "")
    status, out, _ = run("plugins")
    assert status == 0
    assert out.startswith("No berg plugins loaded: BERG_LOAD_PLUGINS is set")


def test_berg_dir_after_the_command(run: Run, toy_plugin: ModuleType, tmp_path: Path) -> None:
    status, _, err = run(
        "metadata",
        "toy-synthetic-linear",
        "--subject",
        "1",
        "--berg-dir",
        str(tmp_path / "nowhere"),
    )
    assert status == 1  # reads the given berg_dir, where the file is missing
    assert str(tmp_path / "nowhere") in err


def test_pickled_npy_stimulus_is_a_stimulus_error(
    run: Run, toy_plugin: ModuleType, tmp_path: Path
) -> None:
    stimulus = tmp_path / "objects.npy"
    np.save(stimulus, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    status, _, err = run(
        "encode",
        "toy-synthetic-linear",
        "--subject",
        "1",
        "--stimulus",
        str(stimulus),
        "--out",
        str(tmp_path / "r.h5"),
    )
    assert status == 1
    assert "not a plain numeric .npy array" in err


def test_list(run: Run, toy_plugin: ModuleType) -> None:
    assert run("list") == (0, "toy-synthetic-linear\ntoy-synthetic-timecourse\ntoy_family\n", "")
    assert run("list", "toy_*") == (0, "toy_family\n", "")
    assert run("list", "linear") == (0, "toy-synthetic-linear\n", "")
    assert run("list", "nothing") == (0, "", "")


def test_list_expand(run: Run, toy_plugin: ModuleType) -> None:
    status, out, _ = run("list", "--expand", "toy_family")
    assert status == 0
    assert out.split() == [
        LINEAR, "toy-synthetic-timecourse",
        "toy_family-alpha", "toy_family-beta", "toy_family-gamma",
    ]  # fmt: skip
    assert run("list", "*alpha", "--expand", "toy_family") == (0, "toy_family-alpha\n", "")
    status, out, err = run("list", "--expand", "nope")
    assert (status, out) == (1, "")
    assert err == (
        "berg: error: cannot expand 'nope': it is not a model family of any installed plugin; "
        "installed families: toy_family.\n"
    )


def test_describe(run: Run, toy_plugin: ModuleType) -> None:
    status, out, _ = run("describe", LINEAR)
    assert status == 0
    assert "Model: toy-synthetic-linear   (testplugin (in-process))" in out
    assert "Subjects:         1, 2" in out
    assert "Outputs:          lh, rh" in out
    assert "Selection keys:   roi, lh_vertices, rh_vertices" in out
    assert "weights_subject-{subject:02d}.npy" in out
    status, out, _ = run("describe", "toy_family-beta")
    assert status == 0 and "Model: toy_family-beta" in out


def test_unknown_model_is_an_error(run: Run, toy_plugin: ModuleType, tmp_path: Path) -> None:
    status, out, err = run("describe", "fmri-nsd_fsaverage-foo")
    assert (status, out) == (1, "")
    assert err.startswith("berg: error: no model 'fmri-nsd_fsaverage-foo': ")
    assert "pip install berg-nsd" in err
    stimulus = tmp_path / "images.npy"
    np.save(stimulus, np.zeros((2, 3, 4, 4), dtype=np.uint8))
    out = tmp_path / "x.h5"
    status, _, err = run("encode", "toy-synthetic-linaer", "--stimulus", stimulus, "--out", out)
    assert status == 1 and "Did you mean: toy-synthetic-linear, toy-synthetic-timecourse?" in err
    assert not out.exists()


def test_metadata_printed(run: Run, berg_dir: Path) -> None:
    status, out, _ = run("--berg-dir", berg_dir, "metadata", LINEAR, "--subject", "1")
    assert status == 0
    lines = out.splitlines()
    assert "fmri:" in lines
    assert "  lh_ncsnr: array (20,) float32" in lines
    assert "  lh_fsaverage_rois:" in lines
    assert "    V1: array (3,) int64" in lines
    assert "subject: 1" in lines


def test_metadata_uses_berg_dir_from_the_environment(
    run: Run, berg_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BERG_DIR", str(berg_dir))
    assert run("metadata", LINEAR, "--subject", "2")[0] == 0
    status, _, err = run("metadata", LINEAR, "--subject", "3")
    assert status == 2
    assert err == (
        "berg: error: subject = 3 is not a subject of toy-synthetic-linear; valid: 1, 2\n"
    )


def test_metadata_to_hdf5(run: Run, berg_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "meta.h5"
    status, stdout, _ = run(
        "--berg-dir", berg_dir, "metadata", LINEAR, "--subject", "2", "--out", out
    )
    assert (status, stdout) == (0, f"wrote {out}\n")
    on_disk = np.load(
        berg_dir / "encoding_models/modality-toy/train_dataset-synthetic/model-linear/metadata"
        "/metadata_subject-02.npy",
        allow_pickle=True,
    ).item()
    with h5py.File(out, "r") as h5:
        np.testing.assert_array_equal(h5["fmri/lh_ncsnr"][()], on_disk["fmri"]["lh_ncsnr"])
        for roi, index in on_disk["fmri"]["rh_fsaverage_rois"].items():
            np.testing.assert_array_equal(h5[f"fmri/rh_fsaverage_rois/{roi}"][()], index)
        assert h5["fmri/lh_fsaverage_rois/FFA-2"].shape == (0,)
        assert h5["subject"][()] == 2
    # refuses to overwrite without --force
    status, _, err = run("--berg-dir", berg_dir, "metadata", LINEAR, "--subject", "2", "--out", out)
    assert (
        status == 2
        and err == f"berg: error: output file {out} exists; pass --force to overwrite it\n"
    )
    args = ("--berg-dir", berg_dir, "metadata", LINEAR, "--subject", "1", "--out", out, "--force")
    assert run(*args)[0] == 0
    with h5py.File(out, "r") as h5:
        assert h5["subject"][()] == 1


def test_metadata_to_json(run: Run, berg_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "meta.json"
    assert run("--berg-dir", berg_dir, "metadata", LINEAR, "--subject", "1", "--out", out)[0] == 0
    data = json.loads(out.read_text())
    metadata = np.load(
        berg_dir / "encoding_models/modality-toy/train_dataset-synthetic/model-linear/metadata"
        "/metadata_subject-01.npy",
        allow_pickle=True,
    ).item()
    assert data["fmri"]["lh_fsaverage_rois"]["V1"] == [0, 1, 2]
    np.testing.assert_allclose(data["fmri"]["rh_ncsnr"], metadata["fmri"]["rh_ncsnr"], rtol=1e-6)
    assert data["subject"] == 1


def test_metadata_to_other_formats_is_refused(run: Run, berg_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "meta.txt"
    status, _, err = run("--berg-dir", berg_dir, "metadata", LINEAR, "--subject", "1", "--out", out)
    assert status == 2
    assert err == f"berg: error: --out {out}: use a .h5 or .json file name\n"
    assert not out.exists()


def test_encode_folder_with_roi(
    run: Run, berg_dir: Path, tmp_path: Path, images: np.ndarray, expected: Expected
) -> None:
    folder = save_pngs(tmp_path / "stimuli", images)
    out = tmp_path / "out.h5"
    args = ["--berg-dir", berg_dir, "encode", LINEAR, "--subject", "1", "--stimulus", folder]
    status, stdout, _ = run(*args, "--roi", "V2", "--out", out, "--quiet")
    assert status == 0
    assert stdout == f"wrote {out}: 7 images x (lh 4, rh 2) columns\n"
    want = expected(berg_dir, 1, images)
    with h5py.File(out, "r") as h5:
        np.testing.assert_allclose(h5["lh"][()], want["lh"][:, [5, 6, 7, 8]], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(h5["rh"][()], want["rh"][:, [4, 5]], rtol=1e-5, atol=1e-6)
        assert h5.attrs["selection"] == '{"roi": "V2"}'
        assert h5.attrs["subject"] == "1"
        assert len(h5["stimulus_sources"]) == 7
    # a second run needs --force
    status, _, err = run(*args, "--roi", "V1", "--out", out)
    assert status == 2
    assert err == f"berg: error: output file {out} exists; pass --force to overwrite it\n"
    assert run(*args, "--roi", "V1", "--out", out, "--force", "--quiet")[0] == 0
    with h5py.File(out, "r") as h5:
        assert h5.attrs["selection"] == '{"roi": "V1"}'
        assert h5["lh"].shape == (7, 3)


def test_encode_npy_of_int64(
    run: Run, berg_dir: Path, tmp_path: Path, images: np.ndarray, expected: Expected
) -> None:
    stimulus = tmp_path / "images.npy"
    np.save(stimulus, images.astype(np.int64))
    out = tmp_path / "out.h5"
    status, _, err = run(
        "--berg-dir", berg_dir, "encode", LINEAR, "--subject", "2", "--stimulus", stimulus,
        "--out", out, "--batch-size", "2",
    )  # fmt: skip
    assert status == 0
    assert "Encoding toy-synthetic-linear" in err  # progress bar without --quiet
    want = expected(berg_dir, 2, images)
    with h5py.File(out, "r") as h5:
        np.testing.assert_allclose(h5["lh"][()], want["lh"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(h5["rh"][()], want["rh"], rtol=1e-5, atol=1e-6)
        assert "stimulus_sources" not in h5


def test_encode_with_selection_json(run: Run, berg_dir: Path, tmp_path: Path) -> None:
    stimulus = tmp_path / "images.npy"
    np.save(stimulus, np.zeros((2, 3, 4, 4), dtype=np.uint8))
    out = tmp_path / "out.h5"
    mask = [0] * 20
    mask[4] = 1
    args = ["--berg-dir", berg_dir, "encode", LINEAR, "--subject", "1", "--stimulus", stimulus]
    selection = json.dumps({"lh_vertices": mask})
    assert run(*args, "--selection", selection, "--out", out, "--quiet")[0] == 0
    with h5py.File(out, "r") as h5:
        assert h5["lh"].shape == (2, 1) and h5["rh"].shape == (2, 16)
        np.testing.assert_array_equal(h5["columns/lh"][()], [4])


@pytest.mark.parametrize(
    ("extra", "status", "message"),
    [
        (["--roi", "V9"], 2, "selection['roi'] = 'V9' is not an ROI of toy-synthetic-linear"),
        (["--roi", "V1", "V2"], 2, "selection['roi'] = ['V1', 'V2'] must be a string naming an"),
        (["--subject", "7"], 2, "subject = 7 is not a subject of toy-synthetic-linear; valid: 1"),
        (["--subject", "\u00b2"], 2, "subject = '\u00b2' is not a subject of toy-synthetic-linear"),
        (["--subject", "1.0"], 2, "subject = '1.0' is not a subject of toy-synthetic-linear"),
        (["--subject", "9" * 5000], 2, "subject = '99999999"),
        (["--selection", "{bad json"], 2, "--selection is not valid JSON"),
        (["--selection", "[" * 100_000], 2, "--selection is not valid JSON: nested too deeply"),
        (["--selection", "[1]"], 2, "--selection must be a JSON object"),
        (["--selection", '"V1"'], 2, "--selection must be a JSON object"),
        (["--roi", "V1", "--selection", '{"roi": "V2"}'], 2, "give the ROI with --roi or in"),
        (["--device", "tpu"], 2, "argument --device: device = 'tpu' is not valid; expected 'auto'"),
        (["--device", "cpu\n"], 2, "argument --device: device = 'cpu\\n' is not valid"),
        (["--device", ""], 2, "argument --device: device = '' is not valid"),
        (["--batch-size", "0"], 2, "argument --batch-size: must be an integer >= 1, got '0'"),
        (["--batch-size", "-3"], 2, "argument --batch-size: must be an integer >= 1, got '-3'"),
        (["--batch-size", "1.5"], 2, "argument --batch-size: must be an integer >= 1, got '1.5'"),
        (["--batch-size", "\u00b2"], 2, "argument --batch-size: must be an integer >= 1, got"),
        (["--batch-size", "9" * 30], 2, "argument --batch-size: must be an integer >= 1, got"),
        (["--reference-image", ""], 2, "argument --reference-image: must be a path, got an empty"),
    ],
)
def test_encode_errors(
    run: Run, berg_dir: Path, tmp_path: Path, extra: list[str], status: int, message: str
) -> None:
    """Bad option values exit with 2, whether argparse or the model finds them."""
    stimulus = tmp_path / "images.npy"
    np.save(stimulus, np.zeros((2, 3, 4, 4), dtype=np.uint8))
    out = tmp_path / "out.h5"
    got, stdout, err = run(
        "--berg-dir", berg_dir, "encode", LINEAR, "--subject", "1", "--stimulus", stimulus,
        "--out", out, *extra,
    )  # fmt: skip
    assert (got, stdout) == (status, "")
    assert message in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(("berg: error: ", "berg encode: "))
    assert "Traceback" not in err
    assert not out.exists()


def test_encode_bad_stimulus(run: Run, berg_dir: Path, tmp_path: Path) -> None:
    stimulus = tmp_path / "images.npy"
    np.save(stimulus, np.full((2, 3, 4, 4), 128.0))
    out = tmp_path / "out.h5"
    args = ["--berg-dir", berg_dir, "encode", LINEAR, "--subject", "1", "--out", out]
    status, _, err = run(*args, "--stimulus", stimulus)
    assert status == 1
    assert "berg: error: stimulus has dtype float64 with values from 128 to 128" in err
    assert "divide by 255" in err
    status, _, err = run(*args, "--stimulus", tmp_path / "missing")
    assert status == 1
    assert f"berg: error: stimulus: no such file or folder: {tmp_path / 'missing'}" in err
    assert not out.exists()


def test_encode_requires_stimulus_and_out(run: Run, toy_plugin: ModuleType) -> None:
    with pytest.raises(SystemExit) as info:
        main(["encode", LINEAR])
    assert info.value.code == 2  # argparse usage error


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a .npy file (0 bytes, without the NumPy header)"),
        (b"hello world" * 20, "not a .npy file (220 bytes, without the NumPy header)"),
        ("header", "not a plain numeric .npy array (EOF: reading array header"),
        ("truncated", "not a plain numeric .npy array (mmap length is greater than file size)"),
        ("pickle", "not a plain numeric .npy array (Array can't be memory-mapped: Python objects"),
    ],
)
def test_unreadable_npy_stimulus_is_a_stimulus_error(
    run: Run, berg_dir: Path, tmp_path: Path, content: bytes | str, message: str
) -> None:
    stimulus = tmp_path / "x.npy"
    if isinstance(content, bytes):
        stimulus.write_bytes(content)
    elif content == "pickle":
        np.save(stimulus, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    else:
        np.save(stimulus, np.zeros((2, 3, 4, 4), dtype=np.uint8))
        whole = stimulus.read_bytes()
        stimulus.write_bytes(whole[:20] if content == "header" else whole[:-10])
    out = tmp_path / "out.h5"
    status, stdout, err = run(
        "--berg-dir", berg_dir, "encode", LINEAR, "--subject", "1", "--stimulus", stimulus,
        "--out", out,
    )  # fmt: skip
    assert (status, stdout) == (1, "")
    assert err == f"berg: error: --stimulus {stimulus}: {message}" + err.split(message, 1)[1]
    assert err.count("\n") == 1 and not out.exists()


def test_empty_stimulus_path_is_a_usage_error(run: Run, berg_dir: Path, tmp_path: Path) -> None:
    args = ("encode", LINEAR, "--subject", "1", "--out", tmp_path / "o.h5", "--stimulus", "")
    status, _, err = run("--berg-dir", berg_dir, *args)
    assert status == 2
    assert "argument --stimulus: must be a path, got an empty string" in err


def test_bad_berg_dir_names_the_parameter(run: Run, toy_plugin: ModuleType) -> None:
    status, _, err = run("metadata", LINEAR, "--subject", "1", "--berg-dir", "")
    assert status == 2
    assert err == (
        "berg: error: berg_dir = '' is not valid; expected a folder path (a non-empty str or "
        "pathlib.Path)\n"
    )


def test_an_unexpected_exception_is_an_internal_error_without_traceback(
    run: Run, berg_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from berg_core import api

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("oops")

    monkeypatch.setattr(api.BERG, "get_model_metadata", broken)
    status, stdout, err = run("--berg-dir", berg_dir, "metadata", LINEAR, "--subject", "1")
    assert (status, stdout) == (1, "")
    assert err.startswith("berg: internal error: KeyError: 'oops'\nThis is a bug in berg")
    assert "BERG_DEBUG=1" in err and "Traceback" not in err
    monkeypatch.setenv("BERG_DEBUG", "1")
    with pytest.raises(KeyError, match="oops"):
        main(["--berg-dir", str(berg_dir), "metadata", LINEAR, "--subject", "1"])


def test_an_os_error_is_a_runtime_error(
    run: Run, berg_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from berg_core import api

    def refused(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", "/somewhere/file.npy")

    monkeypatch.setattr(api.BERG, "get_model_metadata", refused)
    status, _, err = run("--berg-dir", berg_dir, "metadata", LINEAR, "--subject", "1")
    assert status == 1
    assert err == "berg: error: [Errno 13] Permission denied: '/somewhere/file.npy'\n"
