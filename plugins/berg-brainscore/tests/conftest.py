"""Fixtures of berg-brainscore's tests: an isolated, offline Brain-Score with a small test world.

These tests run only where ``brainscore_vision`` is installed (berg-brainscore's own environment);
elsewhere every test module skips. Where it is installed, this file points Brain-Score's and
torch's caches at a temporary folder *before* anything imports Brain-Score (it reads some of them
at import time), and every test runs with the network switched off.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import importlib.util
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
# the helpers next to this file are imported by name, whatever pytest's import mode
sys.path.insert(0, str(HERE))

HAVE_BRAINSCORE = importlib.util.find_spec("brainscore_vision") is not None
if HAVE_BRAINSCORE:
    # the user's own $BRAINIO_HOME, for the test that uses the real public files if present
    os.environ.setdefault(
        "BERG_BS_TESTS_REAL_BRAINIO_HOME",
        str(Path(os.path.expanduser(os.environ.get("BRAINIO_HOME", "~/.brainio"))).resolve()),
    )
    if "brainscore_vision" in sys.modules or "result_caching" in sys.modules:
        raise RuntimeError(
            "brainscore_vision was imported before berg-brainscore's conftest could isolate its "
            "caches; run these tests in a fresh process"
        )
    ROOT = Path(tempfile.mkdtemp(prefix="berg-bs-tests-"))
    atexit.register(shutil.rmtree, ROOT, True)
    import bs_fixtures

    bs_fixtures.isolate(ROOT)


def _no_network(*args: Any, **kwargs: Any) -> Any:
    raise OSError("network access is disabled in berg-brainscore's tests")


@pytest.fixture(scope="session", autouse=True)
def offline() -> Iterator[None]:
    """No test touches the network: name resolution and IP connections fail at once."""
    original_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _no_network()
        return original_connect(self, address)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", _no_network)
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr(socket, "create_connection", _no_network)
        yield


def _installed() -> bool:
    try:
        dist = importlib.metadata.distribution("berg-brainscore")
    except importlib.metadata.PackageNotFoundError:
        return False
    return any(ep.group == "berg" and ep.name == "brainscore" for ep in dist.entry_points)


@pytest.fixture(scope="session")
def berg_registry() -> Iterator[None]:
    """berg's registry with this plugin only (its entry point if installed, else in-process)."""
    from berg_core import registry

    previous = os.environ.get("BERG_LOAD_PLUGINS")
    if _installed():
        os.environ["BERG_LOAD_PLUGINS"] = "berg-brainscore"
        registry.reset()
    else:  # a source tree without `pip install -e plugins/berg-brainscore`
        import berg_brainscore.plugin

        os.environ["BERG_LOAD_PLUGINS"] = ""
        registry.reset(extra={"brainscore": berg_brainscore.plugin})
    yield
    if previous is None:
        os.environ.pop("BERG_LOAD_PLUGINS", None)
    else:
        os.environ["BERG_LOAD_PLUGINS"] = previous
    registry.reset()


@pytest.fixture(scope="session")
def world(berg_registry: None) -> Any:
    """The test model and the two stand-in datasets, registered with Brain-Score."""
    import bs_fixtures

    majajhong, freemanziemba = bs_fixtures.build_world()
    return {"MajajHong2015": majajhong, "FreemanZiemba2013": freemanziemba}


@pytest.fixture(scope="session")
def shared_berg_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A berg_dir shared by the tests that only read regressions (fitted once per session)."""
    return tmp_path_factory.mktemp("berg_dir")
