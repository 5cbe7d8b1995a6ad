"""Plugins adding ``berg`` subcommands through the ``register_commands`` hook."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from berg_core import InvalidParameterError, hookimpl, registry
from berg_core.cli import main

calls: list[argparse.Namespace] = []


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subject", type=int, required=True)


def _run(args: argparse.Namespace) -> int:
    calls.append(args)
    if args.subject < 0:
        raise InvalidParameterError(f"--subject must be >= 0, got {args.subject}")
    print(f"trained subject {args.subject} into {args.berg_dir}")
    return 0


class CommandPlugin:
    @hookimpl
    def register_commands(self, register):
        register("train toy", "train the toy model", _configure, _run)
        register("maps", "draw maps", _configure, _run)


class ClashingPlugin:
    @hookimpl
    def register_commands(self, register):
        register("train toy", "another toy trainer", _configure, _run)


class BuiltinThief:
    @hookimpl
    def register_commands(self, register):
        register("encode", "steal a built-in", _configure, _run)


@pytest.fixture(autouse=True)
def _restore_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("BERG_LOAD_PLUGINS", "")  # only the in-process plugins of these tests
    calls.clear()
    yield
    registry._registry = None


def test_two_word_and_one_word_commands_run(capsys: pytest.CaptureFixture[str]) -> None:
    registry.reset({"cmds": CommandPlugin()})
    assert main(["--berg-dir", "/data/berg", "train", "toy", "--subject", "3"]) == 0
    assert "trained subject 3 into /data/berg" in capsys.readouterr().out
    assert main(["maps", "--subject", "1", "--berg-dir", "/x"]) == 0
    assert calls[-1].berg_dir == "/x"


def test_errors_from_a_plugin_command_are_berg_errors(capsys: pytest.CaptureFixture[str]) -> None:
    registry.reset({"cmds": CommandPlugin()})
    assert main(["train", "toy", "--subject", "-1"]) == 2
    assert "berg: error: --subject must be >= 0, got -1" in capsys.readouterr().err


def test_group_without_subcommand_shows_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    registry.reset({"cmds": CommandPlugin()})
    with pytest.raises(SystemExit) as info:
        main(["train"])
    assert info.value.code == 0
    assert "toy" in capsys.readouterr().out


def test_same_command_from_two_plugins_is_left_out() -> None:
    with pytest.warns(RuntimeWarning, match="'berg train toy' is registered by both"):
        reg = registry.reset({"cmds": CommandPlugin(), "clash": ClashingPlugin()})
    assert ("train", "toy") not in reg.commands
    assert ("maps",) in reg.commands


def test_builtin_commands_cannot_be_replaced() -> None:
    with pytest.warns(RuntimeWarning, match="would replace the built-in 'berg encode'"):
        reg = registry.reset({"thief": BuiltinThief()})
    assert reg.commands == {}
    assert reg.plugins[-1].error is not None
