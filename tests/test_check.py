"""``berg check``: a good plugin passes; broken variants fail with a message naming the problem.

The variants are small plugin modules written into ``tmp_path`` and checked by module name (no
install). Only the good plugin and the heavy-import variant run the registration probe (a fresh
interpreter); the others skip it to stay fast.
"""

from __future__ import annotations

import itertools
import os
import textwrap
from pathlib import Path

import numpy as np
import pytest

from berg_core import InvalidParameterError
from berg_core.check import CheckReport, check_plugin
from berg_core.cli import main

GOOD = """
import numpy as np
from berg_core import Dim, EncodeOptions, EncodingModel, ModelCard, Output, hookimpl

CARD = ModelCard(
    model_id=MODEL_ID,
    modality="EEG",
    training_dataset="none",
    species="none",
    model_type="toy",
    outputs=(Output(name="eeg", dims=(
        Dim(name="channel", size=2, coords=("Oz", "Pz")), Dim(name="time", size=3)
    )),),
    options=EncodeOptions,
)


class Model(EncodingModel):
    def output_shapes(self):
        return ((2, 3),)

    def values(self, batch):
        means = np.stack([np.asarray(image, np.float32).mean() / 255 for image in batch])
        return np.outer(means, np.arange(1, 7, dtype=np.float32)).astype(np.float32)

    def encode_batches(self, stimulus):
        for batch in stimulus.batches(self.batch_size):
            yield (self.values(batch),)


def load(request):
    return Model(request)


@hookimpl
def register_models(register):
    register(CARD, __name__ + ":load")


def berg_check_fixture(tmp_path):
    return {"berg_dir": tmp_path, "model_id": MODEL_ID}
"""

_counter = itertools.count()


def write_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, replace: dict[str, str] | None = None
) -> str:
    """Write GOOD with *replace* applied as a new module; return its name."""
    name = f"berg_check_variant_{next(_counter)}"
    source = GOOD.replace("MODEL_ID", repr(f"toy-{name}"))
    for old, new in (replace or {}).items():
        assert old in source, old
        source = source.replace(old, new)
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, replace: dict[str, str]) -> CheckReport:
    return check_plugin(write_plugin(tmp_path, monkeypatch, replace), heavy_probe=False)


def failed(report: CheckReport) -> dict[str, str]:
    """Failed check -> reason (model checks under their suffix, e.g. 'shapes')."""
    return {r.name.rsplit(": ", 1)[-1]: r.detail for r in report.results if r.status == "FAIL"}


def test_a_good_plugin_passes_every_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = write_plugin(tmp_path, monkeypatch)
    report = check_plugin(name)
    assert report.ok, report.lines
    assert report.problems == []
    names = [r.name for r in report.results]
    for check_name in ("load", "hooks", "unique ids", "cards", "options", "import paths"):
        assert check_name in names
    assert "light registration" in names
    model = f"toy-{name}"
    for check_name in ("dims", "shapes", "float32", "finite", "deterministic", "batching"):
        assert f"{model}: {check_name}" in names
    assert f"ok    {model}: shapes: eeg (3, 2, 3)" in report.lines
    assert report.lines[-1] == f"{name}: all {len(names)} checks passed"


def test_cli_exit_status_and_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_plugin(tmp_path, monkeypatch)
    assert main(["check", good]) == 0
    out = capsys.readouterr().out
    assert "ok    hooks: 1 models, 0 commands" in out
    bad = write_plugin(tmp_path, monkeypatch, {"return ((2, 3),)": "return ((3, 2),)"})
    assert main(["check", bad]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "checks failed" in out
    assert main(["check", "no_such_plugin_module_xyz"]) == 2
    assert "neither an installed distribution" in capsys.readouterr().err


def test_unknown_target() -> None:
    with pytest.raises(InvalidParameterError, match="no_such_module_abc"):
        check_plugin("no_such_module_abc")


def test_missing_card_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = check(tmp_path, monkeypatch, {'    modality="EEG",\n': ""})
    assert not report.ok
    assert "modality" in failed(report)["load"]
    assert "Field required" in failed(report)["load"]


def test_duplicate_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loader = '    register(CARD, __name__ + ":load")\n'
    report = check(tmp_path, monkeypatch, {loader: loader * 2})
    reason = failed(report)["unique ids"]
    assert "toy-berg_check_variant_" in reason and "registered more than once" in reason


def test_loader_path_that_does_not_resolve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = check(tmp_path, monkeypatch, {'":load"': '":lod"'})
    reason = failed(report)["import paths"]
    assert "loader of toy-berg_check_variant_" in reason and "no attribute 'lod'" in reason
    report = check(tmp_path, monkeypatch, {'__name__ + ":load"': '"not_a_module_q:load"'})
    assert "not_a_module_q" in failed(report)["import paths"]


def test_heavy_import_at_registration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    name = write_plugin(
        tmp_path, monkeypatch, {"import numpy as np\n": "import numpy as np\nimport torch\n"}
    )
    report = check_plugin(name)
    reason = failed(report)["light registration"]
    assert "registering imports torch" in reason and "loader" in reason


def test_wrong_output_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = check(
        tmp_path, monkeypatch, {"yield (self.values(batch),)": "yield (self.values(batch)[:, :5],)"}
    )
    reason = failed(report)["encode"]
    assert "yielded shapes ((3, 5),)" in reason and "(2, 3)" in reason


def test_wrong_dims(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = check(tmp_path, monkeypatch, {"return ((2, 3),)": "return ((6,),)"})
    assert (
        "has dims ('channel', 'time') in the card, but output_shapes() gives (6,)"
        in (failed(report)["dims"])
    )
    report = check(tmp_path, monkeypatch, {"return ((2, 3),)": "return ((3, 2),)"})
    assert "dim 'channel' has size 2 in the card, 3 in output_shapes()" in failed(report)["dims"]


def test_non_deterministic_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    noisy = (
        "yield (self.values(batch) + np.random.default_rng().normal(size=(len(batch), 6))"
        ".astype(np.float32),)"
    )
    report = check(tmp_path, monkeypatch, {"yield (self.values(batch),)": noisy})
    assert "two encodes of the same images differ" in failed(report)["deterministic"]


def test_batch_dependent_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mixed = "yield (self.values(batch) - self.values(batch).mean(axis=0),)"
    report = check(tmp_path, monkeypatch, {"yield (self.values(batch),)": mixed})
    assert set(failed(report)) == {"batching"}
    assert "batches of one image differ from batches of 3" in failed(report)["batching"]


def test_dtype_and_finite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wide = "yield (self.values(batch).astype(np.float64),)"
    report = check(tmp_path, monkeypatch, {"yield (self.values(batch),)": wide})
    assert set(failed(report)) == {"float32"}
    assert "encode_batches yields ['float64']" in failed(report)["float32"]
    nan = "yield (np.where(np.arange(6) == 4, np.nan, self.values(batch)).astype(np.float32),)"
    report = check(tmp_path, monkeypatch, {"yield (self.values(batch),)": nan})
    assert failed(report)["finite"] == "eeg: 3 non-finite values"


def test_missing_hookimpl_and_misspelled_hook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = check(tmp_path, monkeypatch, {"@hookimpl\ndef register_models": "def register_models"})
    reason = failed(report)["hooks"]
    assert "register_models is not marked @hookimpl" in reason
    report = check(tmp_path, monkeypatch, {"def register_models(": "def register_model("})
    reason = failed(report)["load"]
    assert "register_model is marked @hookimpl but berg has no such hook" in reason
    assert "did you mean register_models?" in reason


def test_untyped_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = check(tmp_path, monkeypatch, {"options=EncodeOptions": 'options=("gain",)'})
    assert "options declared by name only (gain)" in failed(report)["options"]


def test_images_are_encoded_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = np.full((2, 3, 8, 8), 255, dtype=np.uint8)
    name = write_plugin(tmp_path, monkeypatch)
    fixture = {"berg_dir": tmp_path, "model_id": f"toy-{name}", "images": images}
    report = check_plugin(name, fixture=fixture, heavy_probe=False)
    assert report.ok, report.lines
    assert f"ok    toy-{name}: shapes: eeg (2, 2, 3)" in report.lines


AUX = {
    "    def values(self, batch):": """    def output_aux_coords(self):
        return {"eeg": {"position": (("channel",), np.array([[0.0, 1.0], [1.0, 0.5]]))}}

    def values(self, batch):"""
}


def test_aux_coords_are_checked_and_survive_picks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = check(tmp_path, monkeypatch, AUX)
    assert report.ok, report.lines
    assert any(line.endswith("aux coords: eeg/position") for line in report.lines)


def test_aux_coords_of_the_wrong_length_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    short = {
        old: new.replace("[[0.0, 1.0], [1.0, 0.5]]", "[[0.0, 1.0]]") for old, new in AUX.items()
    }
    reason = failed(check(tmp_path, monkeypatch, short))["aux coords"]
    assert "values of shape (1, 2) along dims ['channel'] of sizes (2,)" in reason


def test_aux_coords_that_ignore_picks_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    override = "    def aux_coords(self):\n        return self.output_aux_coords()\n\n"
    unpicked = {old: override + new for old, new in AUX.items()}
    reason = failed(check(tmp_path, monkeypatch, unpicked))["aux coords"]
    assert "with the pick {'channel': ['Pz']} it has shape (2, 2)" in reason
    assert "(1, 2)" in reason


def test_fixture_env_is_set_while_encoding_then_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BERG_TOY_ENV", raising=False)
    guard = "def load(request):\n    import os\n\n    assert os.environ['BERG_TOY_ENV'] == 'on'\n"
    needs_env = {
        "def load(request):\n": guard,
        '{"berg_dir": tmp_path,': '{"env": {"BERG_TOY_ENV": "on"}, "berg_dir": tmp_path,',
    }
    report = check(tmp_path, monkeypatch, needs_env)
    assert report.ok, report.lines
    assert "BERG_TOY_ENV" not in os.environ
    no_env = {"def load(request):\n": needs_env["def load(request):\n"]}
    assert "BERG_TOY_ENV" in failed(check(tmp_path, monkeypatch, no_env))["load"]
