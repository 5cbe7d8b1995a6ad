"""Registration, listing and selection of the Brain-Score family (no model is built here)."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("brainscore_vision")

from berg_brainscore import catalog
from berg_brainscore.benchmarks import BENCHMARKS, ROIS, brainio_home

from berg_core import BERG, InvalidParameterError, ModelLoadError, ModelNotFoundError


@pytest.fixture
def berg(berg_registry: None, tmp_path: Path) -> BERG:
    return BERG(tmp_path / "berg_dir")


def test_registration_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from berg_core import BERG\n"
        "import berg_brainscore.plugin\n"
        "ids = BERG('/nonexistent').list_models()\n"
        "assert 'brainscore_vision' in ids, ids\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'brainscore_vision', 'xarray', "
        "'sklearn') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_one_gateway_and_its_members(berg: BERG) -> None:
    assert berg.list_models() == ["brainscore_vision"]
    members = berg.list_models(expand_brainscore_vision=True)
    identifiers = catalog.registry_identifiers()
    assert members == sorted("brainscore_vision-" + i for i in identifiers)
    assert "brainscore_vision" not in members
    assert len(members) > 500  # 741 in brainscore-vision 2.4.2
    # registry ids, not folder names: folder AT_efficientnet_b2 registers AT_efficientnet-b2
    assert "brainscore_vision-alexnet" in members
    assert "brainscore_vision-AT_efficientnet-b2" in members
    assert "brainscore_vision-AT_efficientnet_b2" not in members
    assert berg.list_models(expand=["brainscore_vision"]) == members


def test_listed_identifiers_are_exactly_those_load_model_finds() -> None:
    """Brain-Score's own lookup (ImportPlugin.locate_plugin) agrees, on a sample (0.1 s each)."""
    from brainscore_core.plugin_management.import_plugin import ImportPlugin

    loadable, _ = catalog._scan(catalog.package_dir() / "models")
    renamed = sorted(i for i, folder in loadable.items() if i != folder)
    plain = sorted(i for i, folder in loadable.items() if i == folder)
    sample = random.Random(5).sample(renamed, 12) + random.Random(5).sample(plain, 8)
    for identifier in sample:
        found = ImportPlugin("brainscore_vision", "models", identifier).plugin_dirname
        assert found == loadable[identifier]
    folders = {p.name for p in (catalog.package_dir() / "models").iterdir() if p.is_dir()}
    unlisted = sorted(folders - set(loadable) - {"__pycache__"})
    assert unlisted, "some folder names are not identifiers"
    for folder in random.Random(5).sample(unlisted, 8):
        with pytest.raises(AssertionError, match="No registrations found"):
            ImportPlugin("brainscore_vision", "models", folder)


def test_cli_lists_the_family(berg_registry: None) -> None:
    berg_cli = Path(sys.executable).parent / "berg"
    listing = subprocess.run(
        [str(berg_cli), "list"], check=True, capture_output=True, text=True
    ).stdout.split()
    assert listing == ["brainscore_vision"]
    expanded = subprocess.run(
        [str(berg_cli), "list", "--expand", "brainscore_vision", "brainscore_vision-alexnet*"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert "brainscore_vision-alexnet" in expanded and "brainscore_vision" not in expanded


def test_describe(berg: BERG) -> None:
    info = berg.describe("brainscore_vision-alexnet", print_format=False)
    assert info["modality"] == "ephys"
    assert info["species"] == "Macaque"
    assert info["selection_required"] is True
    assert info["selection_keys"] == ["roi"]
    assert info["model_id"] == "brainscore_vision-alexnet"


@pytest.mark.parametrize("selection", [None, {}, {"roi": None}])
def test_roi_is_required(berg: BERG, selection: dict | None) -> None:
    with pytest.raises(InvalidParameterError) as info:
        berg.get_encoding_model("brainscore_vision-alexnet", selection=selection)
    for roi in ("V1", "V2", "V4", "IT"):
        assert roi in str(info.value)


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        (
            {"roi": "V3"},
            r"'V3' is not a region of brainscore_vision-alexnet; valid: V1, V2, V4, IT",
        ),
        ({"roi": 4}, r"must be a string"),
        ({"region": "IT"}, r"selection key 'region' is not known"),
    ],
)
def test_bad_selections(berg: BERG, selection: dict, message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        berg.get_encoding_model("brainscore_vision-alexnet", selection=selection)


def test_gateway_and_unknown_ids(berg: BERG) -> None:
    with pytest.raises(ModelNotFoundError, match="gateway of the Brain-Score family"):
        berg.get_encoding_model("brainscore_vision", selection={"roi": "IT"})
    with pytest.raises(ModelNotFoundError, match="registers brainscore_vision-AT_efficientnet-b2"):
        berg.get_encoding_model("brainscore_vision-AT_efficientnet_b2", selection={"roi": "IT"})
    with pytest.raises(ModelNotFoundError, match="Did you mean: brainscore_vision-alexnet"):
        berg.get_encoding_model("brainscore_vision-alexnett", selection={"roi": "IT"})
    with pytest.raises(ModelNotFoundError, match="not a Brain-Score identifier"):
        berg.get_encoding_model("brainscore_vision-../../etc", selection={"roi": "IT"})


def test_option_type_is_checked(berg: BERG) -> None:
    with pytest.raises(InvalidParameterError, match="allow_layer_selection"):
        berg.get_encoding_model(
            "brainscore_vision-alexnet", selection={"roi": "IT"}, allow_layer_selection="yes"
        )


def test_missing_model_dependencies_are_named(berg: BERG) -> None:
    """A model whose requirements are not installed: which, and how to install them."""
    import importlib.util

    if importlib.util.find_spec("timm") is not None:
        pytest.skip("timm is installed here")
    with pytest.raises(ModelLoadError) as info:
        berg.get_encoding_model("brainscore_vision-convnext_base_fb_in1k", selection={"roi": "V4"})
    message = str(info.value)
    assert "'timm'" in message
    assert "pip install -r " in message
    assert re.search(r"convnext_base_fb_in1k/requirements\.txt", message)
    assert "BS_INSTALL_DEPENDENCIES=no" in message


def test_benchmark_table_matches_the_installed_brainscore() -> None:
    """The sha1s and file names berg names in its messages are those Brain-Score registers."""
    data = catalog.package_dir() / "data"
    sources = {
        "MajajHong2015.public": (data / "majajhong2015" / "__init__.py").read_text(),
        "FreemanZiemba2013.public": (data / "freemanziemba2013" / "__init__.py").read_text(),
    }
    for roi in ROIS:
        spec = BENCHMARKS[roi]
        source = sources[spec.dataset]
        for data_file in spec.files:
            assert f'"{data_file.sha1}"' in source, (roi, data_file)
        assert f"data_registry['{spec.dataset}']" in source
        benchmarks = catalog.package_dir() / "benchmarks"
        registered = "\n".join(p.read_text() for p in benchmarks.glob("*/__init__.py"))
        assert f"benchmark_registry['{spec.benchmark}']" in registered
    assert [BENCHMARKS[r].n_neurons for r in ROIS] == [102, 103, 88, 168]


def test_brainio_home_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delitem(
        sys.modules, "brainscore_core.supported_data_standards.brainio.fetch", raising=False
    )
    monkeypatch.setenv("BRAINIO_HOME", str(tmp_path))
    assert brainio_home() == tmp_path
    monkeypatch.delenv("BRAINIO_HOME")
    assert brainio_home() == Path("~/.brainio").expanduser()
