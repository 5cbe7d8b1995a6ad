"""Plugin discovery and the registry: isolation of broken plugins, conflicts, BERG_LOAD_PLUGINS,
unknown ids and model families.

Entry points are faked by monkeypatching ``berg_core.plugins._entry_points``; plugins are small
classes with hook implementations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from berg_core import (
    BERG,
    EncodingModel,
    InvalidParameterError,
    LoadRequest,
    ModelCard,
    ModelNotFoundError,
    PluginError,
    Stimulus,
    hookimpl,
    registry,
)
from berg_core import plugins as plugins_module
from berg_core.cli import main

# -- fakes ---------------------------------------------------------------------------------------


@dataclass
class FakeDist:
    name: str
    version: str = "1.0"

    @property
    def metadata(self) -> dict[str, str]:
        return {"Name": self.name}


@dataclass
class FakeEntryPoint:
    """Stands for an ``importlib.metadata.EntryPoint``; ``target`` may be an exception to raise."""

    name: str
    target: object
    dist: FakeDist
    loads: list[str] = field(default_factory=list)

    @property
    def value(self) -> str:
        return f"{self.dist.name.replace('-', '_')}.plugin"

    def load(self) -> object:
        self.loads.append(self.name)
        if isinstance(self.target, BaseException):
            raise self.target
        return self.target


class ConstantModel(EncodingModel):
    """One output of two columns, both equal to the model id's length."""

    def output_sizes(self) -> tuple[int, ...]:
        return (2,)

    def encode_batches(self, stimulus: Stimulus) -> Iterator[tuple[np.ndarray, ...]]:
        for batch in stimulus.batches(self.batch_size):
            yield (np.full((len(batch), 2), len(self.model_id), dtype=np.float32),)


def card(model_id: str, **fields: Any) -> ModelCard:
    return ModelCard(
        model_id=model_id, modality="fmri", training_dataset="test", species="none",
        model_type="constant", **fields,
    )  # fmt: skip


def models_plugin(*model_ids: str) -> object:
    """A plugin registering *model_ids*, each loaded as a :class:`ConstantModel`."""

    class Plugin:
        @hookimpl
        def register_models(self, register: Callable[..., None]) -> None:
            for model_id in model_ids:
                register(card(model_id), ConstantModel)

    return Plugin()


def use_entry_points(monkeypatch: pytest.MonkeyPatch, *eps: FakeEntryPoint) -> None:
    monkeypatch.setattr(plugins_module, "_entry_points", lambda: list(eps))


def ep(name: str, target: object, dist: str | None = None, version: str = "1.0") -> FakeEntryPoint:
    return FakeEntryPoint(name, target, FakeDist(dist or f"berg-{name}", version))


IMAGES = np.zeros((3, 3, 4, 4), dtype=np.uint8)


# -- discovery -----------------------------------------------------------------------------------


def test_entry_points_are_loaded_once_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    a = ep("a", models_plugin("fmri-a-one", "fmri-a-two"))
    use_entry_points(monkeypatch, a)
    berg = BERG("/nonexistent")
    assert a.loads == []  # nothing happens before a registry is needed
    assert berg.list_models() == ["fmri-a-one", "fmri-a-two"]
    assert berg.list_models("two") == ["fmri-a-two"]
    assert registry.get_registry() is registry.get_registry()
    assert a.loads == ["a"]
    (info,) = registry.get_registry().plugins
    assert (info.name, info.distribution, info.version, info.label) == (
        "a",
        "berg-a",
        "1.0",
        "berg-a 1.0",
    )
    assert info.error is None
    assert info.models == ["fmri-a-one", "fmri-a-two"]


def test_reset_reloads_and_adds_in_process_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    a = ep("a", models_plugin("fmri-a-one"))
    use_entry_points(monkeypatch, a)
    rebuilt = registry.reset({"local": models_plugin("fmri-local-x")})
    assert registry.get_registry() is rebuilt
    assert sorted(rebuilt.models) == ["fmri-a-one", "fmri-local-x"]
    assert rebuilt.models["fmri-local-x"].plugin.label == "local (in-process)"


def test_broken_import_is_skipped_with_a_warning_and_shown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = ep("broken", ModuleNotFoundError("No module named 'torchx'"), version="0.3")
    use_entry_points(monkeypatch, ep("good", models_plugin("fmri-good-model")), broken)
    with pytest.warns(RuntimeWarning) as warned:
        ids = BERG("/x").list_models()
    assert ids == ["fmri-good-model"]
    (message,) = [str(w.message) for w in warned]
    assert message == (
        "berg: skipped plugin 'broken' (berg-broken 0.3): failed to import berg_broken.plugin: "
        "ModuleNotFoundError: No module named 'torchx'"
    )
    info = next(i for i in registry.get_registry().plugins if i.name == "broken")
    assert info.module is None and info.models == []
    assert "No module named 'torchx'" in info.error
    # the good plugin still loads models
    model = BERG("/x").get_encoding_model("fmri-good-model")
    np.testing.assert_array_equal(BERG("/x").encode(model, IMAGES, show_progress=False), 15)
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "berg-broken 0.3" in out and "FAILED" in out
    assert "error: failed to import berg_broken.plugin: ModuleNotFoundError" in out
    assert "berg-good 1.0" in out and "1 models" in out and "fmri-good-model" in out


def test_plugin_whose_registration_raises_is_dropped_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    class HalfBroken:
        @hookimpl
        def register_models(self, register: Callable[..., None]) -> None:
            register(card("fmri-half-one"), ConstantModel)
            raise KeyError("card.yaml")

    use_entry_points(monkeypatch, ep("half", HalfBroken()), ep("ok", models_plugin("fmri-ok-1")))
    with pytest.warns(
        RuntimeWarning, match=r"skipped plugin 'half'.*registration failed: KeyError"
    ):
        reg = registry.get_registry()
    assert list(reg.models) == ["fmri-ok-1"]
    info = reg.plugins[0]
    assert info.error == "registration failed: KeyError: 'card.yaml'"
    assert info.models == []


def test_invalid_registration_is_a_plugin_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class BadCard:
        @hookimpl
        def register_models(self, register: Callable[..., None]) -> None:
            register({"model_id": "fmri-dict"}, ConstantModel)

    use_entry_points(monkeypatch, ep("bad", BadCard()))
    with pytest.warns(RuntimeWarning, match="card must be a ModelCard"):
        reg = registry.get_registry()
    assert reg.models == {}
    assert reg.plugins[0].error.startswith("registration failed: PluginError: register(card, ")


def test_misspelled_hook_skips_the_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    class Misspelled:
        @hookimpl
        def register_model(self, register: Callable[..., None]) -> None:  # missing "s"
            register(card("fmri-typo-model"), ConstantModel)

    use_entry_points(monkeypatch, ep("typo", Misspelled()), ep("ok", models_plugin("fmri-ok-1")))
    with pytest.warns(RuntimeWarning, match=r"skipped plugin 'typo'.*invalid hook implementation"):
        reg = registry.get_registry()
    info = reg.plugins[0]
    assert "register_model" in info.error
    assert info.module is None
    assert list(reg.models) == ["fmri-ok-1"]


def test_hook_with_unknown_argument_skips_the_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    class WrongArgs:
        @hookimpl
        def register_models(self, register: Callable[..., None], config: dict) -> None:
            raise AssertionError("never called")

    use_entry_points(monkeypatch, ep("args", WrongArgs()))
    with pytest.warns(RuntimeWarning, match="invalid hook implementation"):
        reg = registry.get_registry()
    assert "config" in reg.plugins[0].error


def test_duplicate_id_is_an_error_naming_both_distributions(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_entry_points(
        monkeypatch,
        ep("a", models_plugin("fmri-shared", "fmri-a-only"), "berg-alpha", "1.2"),
        ep("b", models_plugin("fmri-shared", "fmri-b-only"), "berg-beta", "0.9"),
    )
    with pytest.warns(RuntimeWarning, match=r"'fmri-shared' is registered by both berg-alpha 1.2"):
        ids = BERG("/x").list_models()
    assert ids == ["fmri-a-only", "fmri-b-only"]
    for call in (
        lambda: BERG("/x").get_encoding_model("fmri-shared"),
        lambda: BERG("/x").describe("fmri-shared", print_format=False),
        lambda: BERG("/x").get_model_metadata("fmri-shared"),
    ):
        with pytest.raises(PluginError) as info:
            call()
        assert str(info.value) == (
            "model 'fmri-shared' is registered by more than one plugin: berg-alpha 1.2 and "
            "berg-beta 0.9. Uninstall one of them."
        )
    # the other ids still work
    for model_id in ("fmri-a-only", "fmri-b-only"):
        model = BERG("/x").get_encoding_model(model_id)
        assert BERG("/x").encode(model, IMAGES, show_progress=False).shape == (3, 2)
    assert main(["plugins"]) == 0
    assert "CONFLICT fmri-shared: registered by berg-alpha 1.2 and berg-beta 0.9" in (
        capsys.readouterr().out
    )
    assert main(["describe", "fmri-shared"]) == 1
    assert "berg: error: model 'fmri-shared' is registered by more than one plugin" in (
        capsys.readouterr().err
    )


def test_a_third_registration_of_a_conflicting_id_is_named_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_entry_points(monkeypatch, *(ep(n, models_plugin("fmri-same")) for n in ("a", "b", "c")))
    with pytest.warns(RuntimeWarning):
        reg = registry.get_registry()
    assert reg.conflicts == {"fmri-same": ["berg-a 1.0", "berg-b 1.0", "berg-c 1.0"]}
    with pytest.raises(PluginError, match=r"berg-a 1\.0 and berg-b 1\.0 and berg-c 1\.0"):
        reg.resolve("fmri-same")


def test_registration_for_an_unknown_model_is_ignored_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Stray:
        @hookimpl
        def register_metadata_loaders(self, register: Callable[..., None]) -> None:
            register("fmri-nowhere", lambda card, berg_dir, subject: {})

    use_entry_points(monkeypatch, ep("stray", Stray()))
    with pytest.warns(RuntimeWarning, match="registered a metadata loader for unknown model"):
        reg = registry.get_registry()
    assert reg.plugins[0].error is None and reg.models == {}


def test_schema_of_another_plugins_model_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    from berg_core import SelectionSchema
    from berg_core.schemas import one_of

    class Extra(SelectionSchema):
        roi: one_of(["V1"], what="an ROI") | None = None

    class SchemaOnly:
        @hookimpl
        def register_selection_schemas(self, register: Callable[..., None]) -> None:
            register("fmri-a-one", Extra)

    use_entry_points(monkeypatch, ep("a", models_plugin("fmri-a-one")), ep("s", SchemaOnly()))
    assert BERG("/x").describe("fmri-a-one", print_format=False)["selection_keys"] == ["roi"]
    with pytest.raises(InvalidParameterError, match="is not an ROI of fmri-a-one; valid: V1"):
        BERG("/x").get_encoding_model("fmri-a-one", selection={"roi": "V2"})


def test_schema_that_is_not_a_selection_schema_is_a_plugin_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class WrongSchema:
        @hookimpl
        def register_models(self, register: Callable[..., None]) -> None:
            register(card("fmri-w"), ConstantModel)

        @hookimpl
        def register_selection_schemas(self, register: Callable[..., None]) -> None:
            register("fmri-w", dict)

    use_entry_points(monkeypatch, ep("w", WrongSchema()))
    with pytest.raises(PluginError, match="selection schema of fmri-w is <class 'dict'>, not a"):
        BERG("/x").get_encoding_model("fmri-w")


def test_loader_path_that_does_not_resolve_is_a_plugin_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class BadPath:
        @hookimpl
        def register_models(self, register: Callable[..., None]) -> None:
            register(card("fmri-p1"), "berg_core.api:NoSuchLoader")
            register(card("fmri-p2"), "berg_core.api.BERG")

    use_entry_points(monkeypatch, ep("p", BadPath()))
    with pytest.raises(PluginError, match=r"berg_core\.api has no attribute 'NoSuchLoader'"):
        BERG("/x").get_encoding_model("fmri-p1")
    with pytest.raises(PluginError, match=r"must look like 'package\.module:name'"):
        BERG("/x").get_encoding_model("fmri-p2")


def test_loader_returning_something_else_is_a_model_load_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from berg_core import ModelLoadError

    class NotAModel:
        @hookimpl
        def register_models(self, register: Callable[..., None]) -> None:
            register(card("fmri-n"), lambda request: "a string")

    use_entry_points(monkeypatch, ep("n", NotAModel()))
    with pytest.raises(ModelLoadError, match="the loader of fmri-n returned str, not an Encoding"):
        BERG("/x").get_encoding_model("fmri-n")


# -- BERG_LOAD_PLUGINS ---------------------------------------------------------------------------


@pytest.fixture
def three_plugins(monkeypatch: pytest.MonkeyPatch) -> list[FakeEntryPoint]:
    eps = [ep(n, models_plugin(f"fmri-{n}-m")) for n in ("a", "b", "c")]
    use_entry_points(monkeypatch, *eps)
    return eps


def test_berg_load_plugins_empty_loads_none(
    monkeypatch: pytest.MonkeyPatch, three_plugins: list[FakeEntryPoint]
) -> None:
    monkeypatch.setenv("BERG_LOAD_PLUGINS", "")
    assert BERG("/x").list_models() == []
    assert registry.get_registry().plugins == []
    assert all(e.loads == [] for e in three_plugins)


def test_berg_load_plugins_lists_entry_point_or_distribution_names(
    monkeypatch: pytest.MonkeyPatch, three_plugins: list[FakeEntryPoint]
) -> None:
    monkeypatch.setenv("BERG_LOAD_PLUGINS", " a , berg-c,")
    assert BERG("/x").list_models() == ["fmri-a-m", "fmri-c-m"]
    assert [i.name for i in registry.get_registry().plugins] == ["a", "c"]
    assert three_plugins[1].loads == []  # b was never imported


def test_berg_load_plugins_unset_loads_all(three_plugins: list[FakeEntryPoint]) -> None:
    assert BERG("/x").list_models() == ["fmri-a-m", "fmri-b-m", "fmri-c-m"]


def test_in_process_plugins_load_whatever_berg_load_plugins_says(
    monkeypatch: pytest.MonkeyPatch, three_plugins: list[FakeEntryPoint]
) -> None:
    monkeypatch.setenv("BERG_LOAD_PLUGINS", "")
    reg = registry.reset({"mine": models_plugin("fmri-mine")})
    assert list(reg.models) == ["fmri-mine"]


# -- unknown ids ---------------------------------------------------------------------------------


def not_found(model_id: str) -> str:
    with pytest.raises(ModelNotFoundError) as info:
        BERG("/x").get_encoding_model(model_id)
    message = str(info.value)
    with pytest.raises(ModelNotFoundError) as again:
        BERG("/x").describe(model_id)
    assert str(again.value) == message
    return message


def test_id_of_a_family_whose_plugin_is_not_installed_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_entry_points(monkeypatch, ep("toy", models_plugin("toy-a", "toy-b"), "berg-toy", "0.1"))
    assert not_found("fmri-nsd_fsaverage-foo") == (
        "no model 'fmri-nsd_fsaverage-foo': no installed plugin provides it. It belongs to "
        "berg-nsd: pip install berg-nsd. Installed: berg-toy 0.1 (2 models). See: berg plugins"
    )
    assert "pip install berg-things" in not_found("fmri-things_fmri_1-vit_b_32")
    assert "pip install berg-brainscore" in not_found("brainscore_vision-alexnet")


def test_nothing_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    use_entry_points(monkeypatch)
    assert not_found("fmri-nsd_fsaverage-foo").endswith("Installed: none. See: berg plugins")


def test_family_plugin_installed_but_broken_names_it_and_its_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = ep("nsd", ImportError("cannot import name 'x' from 'torch'"), "berg-nsd", "0.1.0")
    use_entry_points(monkeypatch, broken)
    with pytest.warns(RuntimeWarning):
        message = not_found("fmri-nsd_fsaverage-alexnet_untrained")
    assert message.startswith(
        "no model 'fmri-nsd_fsaverage-alexnet_untrained': it belongs to berg-nsd, which is "
        "installed but failed to load (berg-nsd 0.1.0: failed to import berg_nsd.plugin: "
        "ImportError: cannot import name 'x' from 'torch')."
    )


def test_family_plugin_installed_without_that_model_suggests_close_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nsd = models_plugin("fmri-nsd_fsaverage-alexnet_untrained", "fmri-nsd_fsaverage-vit_b_32")
    use_entry_points(monkeypatch, ep("nsd", nsd, "berg-nsd", "0.1.0"))
    message = not_found("fmri-nsd_fsaverage-alexnet_untraind")
    assert "berg-nsd is installed but provides no such model." in message
    assert "Did you mean: fmri-nsd_fsaverage-alexnet_untrained," in message  # best first


def test_unknown_id_gets_close_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    use_entry_points(monkeypatch, ep("toy", models_plugin("toy-synthetic-linear", "toy-other")))
    message = not_found("toy-synthetic-linaer")
    assert message.startswith("no model 'toy-synthetic-linaer': no installed plugin provides it.")
    assert "Did you mean: toy-synthetic-linear?" in message
    assert "Did you mean" not in not_found("completely-different")


def test_non_string_id(monkeypatch: pytest.MonkeyPatch) -> None:
    use_entry_points(monkeypatch)
    with pytest.raises(InvalidParameterError, match=r"model_id = 3 is not valid; expected a model"):
        BERG("/x").get_encoding_model(3)  # type: ignore[arg-type]
    with pytest.raises(ModelNotFoundError, match=r"model_id must be a string, got int \(3\)"):
        registry.get_registry().resolve(3)  # type: ignore[arg-type]


# -- model families (with the test plugin, in-process) -------------------------------------------


def test_family_lists_as_its_gateway_unless_expanded(
    toy_plugin: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    import berg_testplugin.family

    calls: list[int] = []
    original = berg_testplugin.family.members

    def counting_members() -> list[str]:
        calls.append(1)
        return original()

    monkeypatch.setattr(berg_testplugin.family, "members", counting_members)
    berg = BERG("/x")
    assert berg.list_models() == ["toy-synthetic-linear", "toy-synthetic-timecourse", "toy_family"]
    assert calls == []  # the lister may be slow: it runs only when asked to expand
    expanded = berg.list_models(expand=["toy_family"])
    assert expanded == [
        "toy-synthetic-linear",
        "toy-synthetic-timecourse",
        "toy_family-alpha",
        "toy_family-beta",
        "toy_family-gamma",
    ]
    assert calls == [1]
    assert berg.list_models("*beta", expand=("toy_family",)) == ["toy_family-beta"]
    assert registry.get_registry().plugins[0].families == ["toy_family"]


def test_expanding_an_unknown_family(toy_plugin: ModuleType) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        BERG("/x").list_models(expand_brainscore_vision=True)
    assert str(info.value) == (
        "cannot expand 'brainscore_vision': it is not a model family of any installed plugin; "
        "installed families: toy_family. It belongs to berg-brainscore: pip install "
        "berg-brainscore."
    )


def test_member_ids_route_to_the_family(toy_plugin: ModuleType, images: np.ndarray) -> None:
    berg = BERG("/x")
    info = berg.describe("toy_family-beta", print_format=False)
    assert info["model_id"] == "toy_family-beta"
    assert info["distribution"] == "testplugin (in-process)"
    assert "toy_family-beta" in info["example_usage"]
    with berg.get_encoding_model("toy_family-beta") as model:
        assert model.model_id == model.card.model_id == "toy_family-beta"
        responses = berg.encode(model, images, show_progress=False)
    # independent: mean R, G, B in [0, 1] times 2 * [[1..4], [5..8], [9..12]] (beta is member 2)
    means = images.astype(np.float64).mean(axis=(2, 3)) / 255
    expected = means @ (2 * np.arange(1, 13, dtype=np.float64).reshape(3, 4))
    assert responses.dtype == np.float32 and responses.shape == (7, 4)
    np.testing.assert_allclose(responses, expected, rtol=1e-6)
    assert berg.get_model_metadata("toy_family-gamma")["model_id"] == "toy_family-gamma"


def test_unknown_member_and_bare_gateway(toy_plugin: ModuleType) -> None:
    berg = BERG("/x")
    with pytest.raises(
        ModelNotFoundError,
        match="no model 'toy_family-zeta' in toy_family; members: toy_family-alpha",
    ):
        berg.get_encoding_model("toy_family-zeta")
    with pytest.raises(InvalidParameterError, match="toy_family is a model family, not a model"):
        berg.get_encoding_model("toy_family")
    with pytest.raises(ModelNotFoundError, match="no model 'toy_family-'"):
        berg.get_encoding_model("toy_family-")  # a bare prefix is no member


def test_family_members_take_no_subject_or_selection(toy_plugin: ModuleType) -> None:
    berg = BERG("/x")
    with pytest.raises(
        InvalidParameterError, match="subject = 1: toy_family-alpha takes no subject"
    ):
        berg.get_encoding_model("toy_family-alpha", subject=1)
    with pytest.raises(InvalidParameterError, match="toy_family-alpha takes no selection"):
        berg.get_encoding_model("toy_family-alpha", selection={"roi": "V1"})


def test_empty_prefix_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    class EmptyPrefix:
        @hookimpl
        def register_models(self, register: Callable[..., None]) -> None:
            register(card("fam"), ConstantModel)

        @hookimpl
        def register_model_families(self, register: Callable[..., None]) -> None:
            register("fam", "", lambda: ["x"])

    use_entry_points(monkeypatch, ep("e", EmptyPrefix()))
    with pytest.warns(RuntimeWarning, match="prefix must be a non-empty string"):
        assert BERG(tmp_path).list_models() == []


def test_load_request_carries_what_was_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[LoadRequest] = []

    def loader(request: LoadRequest) -> ConstantModel:
        seen.append(request)
        return ConstantModel(request)

    class Recording:
        @hookimpl
        def register_models(self, register: Callable[..., None]) -> None:
            register(card("fmri-rec", subjects=(1, "sub-02"), options=("layers",)), loader)

    use_entry_points(monkeypatch, ep("r", Recording()))
    BERG("/data").get_encoding_model("fmri-rec", subject="sub-02", device="cuda:1", layers=3)
    (request,) = seen
    assert request.model_id == "fmri-rec"
    assert request.berg_dir == Path("/data")
    assert request.subject == "sub-02"
    assert request.selection is None
    assert request.device == "cuda:1"
    assert request.options == {"batch_size": None, "layers": 3}  # every option, defaults too
