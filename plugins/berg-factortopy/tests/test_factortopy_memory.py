"""How much RAM the token cache may use: MemAvailable, not MemFree, and the cgroup limit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from berg_factortopy import tokens

MEMINFO = """MemTotal:       32000000 kB
MemFree:          500000 kB
MemAvailable:   20000000 kB
Buffers:          100000 kB
Cached:         19000000 kB
"""


@pytest.fixture
def fake_linux(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake /proc/meminfo (a full page cache: little free, much available), no cgroup limit."""
    (tmp_path / "meminfo").write_text(MEMINFO)
    (tmp_path / "cgroup").mkdir()
    (tmp_path / "self_cgroup").write_text("0::/\n")
    monkeypatch.setattr(tokens, "MEMINFO_PATH", tmp_path / "meminfo")
    monkeypatch.setattr(tokens, "CGROUP_DIR", tmp_path / "cgroup")
    monkeypatch.setattr(tokens, "CGROUP_SELF", tmp_path / "self_cgroup")

    def no_sysconf(name: str) -> int:
        raise AssertionError(f"sysconf({name!r}) read although /proc/meminfo exists")

    monkeypatch.setattr(os, "sysconf", no_sysconf)
    return tmp_path


def test_available_memory_is_memavailable_not_memfree(fake_linux: Path) -> None:
    assert tokens.available_memory() == 20_000_000 * 1024


def test_a_cgroup_limit_lowers_it(fake_linux: Path) -> None:
    group = fake_linux / "cgroup" / "job" / "step"
    group.mkdir(parents=True)
    (fake_linux / "self_cgroup").write_text("0::/job/step\n")
    (group / "memory.max").write_text("max\n")  # no limit at this level ...
    (group / "memory.current").write_text("100\n")
    assert tokens.available_memory() == 20_000_000 * 1024
    parent = group.parent  # ... but the parent's limit applies to it
    (parent / "memory.max").write_text(f"{8 * 1024**3}\n")
    (parent / "memory.current").write_text(f"{3 * 1024**3}\n")
    assert tokens.available_memory() == 5 * 1024**3
    (group / "memory.max").write_text(f"{4 * 1024**3}\n")
    (group / "memory.current").write_text(f"{1 * 1024**3}\n")
    assert tokens.available_memory() == 3 * 1024**3  # the tightest level wins
    (group / "memory.current").write_text(f"{5 * 1024**3}\n")  # over the limit: nothing left
    assert tokens.available_memory() == 0


def test_the_root_cgroup_limit_of_a_container(fake_linux: Path) -> None:
    (fake_linux / "cgroup" / "memory.max").write_text(f"{2 * 1024**3}\n")
    (fake_linux / "cgroup" / "memory.current").write_text(f"{1024**3}\n")
    assert tokens.available_memory() == 1024**3


@pytest.mark.parametrize(
    "content",
    [
        "",
        "MemTotal: 1 kB\n",
        "MemAvailable: lots kB\n",
        "MemAvailable:\n",
        "MemAvailable: 5 pages\n",
    ],
)
def test_without_a_usable_memavailable_sysconf_is_the_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(content)
    monkeypatch.setattr(tokens, "MEMINFO_PATH", meminfo)
    monkeypatch.setattr(tokens, "CGROUP_SELF", tmp_path / "missing")
    monkeypatch.setattr(tokens, "CGROUP_DIR", tmp_path / "no-cgroup")
    pages = {"SC_AVPHYS_PAGES": 1000, "SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(os, "sysconf", pages.__getitem__)
    assert tokens.available_memory() == 4096 * 1000


def test_missing_meminfo_and_no_sysconf_is_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens, "MEMINFO_PATH", tmp_path / "missing")
    monkeypatch.setattr(tokens, "CGROUP_DIR", tmp_path / "no-cgroup")

    def unsupported(name: str) -> int:
        raise ValueError(f"unrecognized configuration name {name}")

    monkeypatch.setattr(os, "sysconf", unsupported)
    assert tokens.available_memory() is None
