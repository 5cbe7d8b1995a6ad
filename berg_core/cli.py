"""The ``berg`` command line.

Exit status: 0 on success; 2 for a usage error: an option missing or malformed (argparse's
messages) or a value the command or the model does not accept (``berg: error: ...`` for every
:class:`~berg_core.errors.InvalidParameterError`: unknown subject, ROI or selection, bad option
value, output exists without ``--force`` ...); 1 for any other error at run time (``berg: error:
...``: unknown model, missing, corrupt or unsafe file, unreadable stimulus, failed download);
130 when interrupted. An unexpected exception (a bug) prints ``berg: internal error: ...`` and
exits with 1; set ``BERG_DEBUG=1`` to get its traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from berg_core.errors import BergError, InvalidParameterError, describe_value
from berg_core.render import format_card

__all__ = ["UsageError", "format_card", "main"]

#: Set to 1 to let unexpected exceptions propagate with their traceback.
DEBUG_ENV = "BERG_DEBUG"
#: A subject given as digits (ASCII only: ``str.isdigit`` also accepts ``'²'``) is an integer.
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}", re.ASCII)


class UsageError(InvalidParameterError):
    """A command-line option has a value the command cannot use (exit status 2, as every
    :class:`~berg_core.errors.InvalidParameterError`)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="berg", description="In silico neural responses from brain encoding models."
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument(
        "--berg-dir", help="folder with the model files (default: $BERG_DIR or a user data dir)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--berg-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    sub.add_parser(
        "plugins", parents=[common], help="installed plugins, their models and load errors"
    )

    p = sub.add_parser("list", parents=[common], help="list model ids")
    p.add_argument("pattern", nargs="?", help="wildcard pattern or substring, e.g. 'fmri-*'")
    p.add_argument(
        "--expand",
        action="append",
        default=[],
        metavar="FAMILY",
        help="list the members of a model family (e.g. brainscore_vision)",
    )

    p = sub.add_parser("describe", parents=[common], help="show a model's card")
    p.add_argument("model_id")

    p = sub.add_parser("metadata", parents=[common], help="show or save a subject's metadata")
    p.add_argument("model_id")
    p.add_argument("--subject", help="subject id")
    p.add_argument("--out", type=Path, help="save to FILE (.h5 or .json) instead of printing")
    p.add_argument("--force", action="store_true", help="overwrite --out")

    p = sub.add_parser("encode", parents=[common], help="encode images into an HDF5 file")
    p.add_argument("model_id")
    p.add_argument("--subject", help="subject id")
    p.add_argument(
        "--stimulus",
        required=True,
        type=_path,
        help="a folder of images, an image file, a .npy array (N, 3, H, W) or (N, H, W, 3), or "
        "an HDF5 dataset FILE.h5:DATASET (NSD: nsd_stimuli.hdf5:imgBrick), read batch by batch",
    )
    p.add_argument("--roi", nargs="+", help="ROI name(s) for selection['roi']")
    p.add_argument("--selection", help='selection as JSON, e.g. \'{"roi": "V1v"}\'')
    p.add_argument("--device", default="auto", type=_device, help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--batch-size", type=_positive_int, help="images per forward pass (>= 1): -o batch_size=N"
    )
    p.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a model option (repeatable); berg describe MODEL_ID lists them with their "
        "types and defaults",
    )
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output file: .h5 (any model), or a brain-native format the model writes "
        "(.nii.gz for volumetric models, .func.gii for fsaverage models)",
    )
    p.add_argument(
        "--reference-image",
        type=_path,
        help="NIfTI image giving the volume's shape and affine (volumetric output only)",
    )
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--cluster",
        metavar="SPEC",
        help="encode on a Dask cluster (needs berg-distributed): local[:N], tcp://HOST:8786 or "
        "slurm[:CONFIG.yaml]; see docs/scaling.md",
    )
    p.add_argument(
        "--shard-size", type=_positive_int, help="with --cluster: images per task (default 256)"
    )
    p.add_argument(
        "--assemble",
        choices=("copy", "virtual"),
        help="with --cluster: copy the parts into one self-contained file (default), or map them "
        "with HDF5 virtual datasets (no copy; the file reads as NaN if moved without its "
        "OUT.parts folder)",
    )

    p = sub.add_parser(
        "fetch",
        help="download the files a model needs into berg_dir",
        description="Download the files MODEL_ID needs for a subject that are missing from "
        "berg_dir, from the public BERG bucket or a mirror (resumable, size- and "
        "checksum-verified).",
    )
    p.add_argument("model_id")
    p.add_argument("--subject", help="subject id")
    p.add_argument(
        "--berg-dir",
        default=argparse.SUPPRESS,
        help="destination (default: $BERG_DIR or a user dir)",
    )
    p.add_argument(
        "--base-url", help="mirror to download from (default: $BERG_BASE_URL or the BERG bucket)"
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--list", action="store_true", help="show the files, their sizes and which are present"
    )
    mode.add_argument(
        "--dry-run", action="store_true", help="say what would be downloaded, download nothing"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars or messages")

    p = sub.add_parser(
        "check",
        help="check that a plugin keeps berg's contract (exit 0: all checks pass)",
        description="Load one plugin alone and check its hooks, cards, options, import paths and "
        "light registration; encode a few images through its berg_check_fixture (or the models "
        "of --berg-dir) and check shapes, dtypes, dims, finiteness, determinism and metadata.",
    )
    p.add_argument("target", help="an installed distribution (berg-nsd) or a module (pkg.plugin)")
    p.add_argument(
        "--berg-dir", default=argparse.SUPPRESS, help="model files to encode with (no fixture)"
    )
    p.add_argument("--model", help="with --berg-dir: only this model id")
    p.add_argument("--subject", help="with --model: the subject")

    p = sub.add_parser(
        "new-plugin",
        help="start a model family: a renamed copy of the plugin template",
        description="Copy plugins/_template into DIR/berg-NAME with the distribution, package, "
        "entry point and model ids renamed; it installs and passes `berg check` as it stands.",
    )
    p.add_argument("name", help="family name: lower-case words joined by - or _ (things-eeg2)")
    p.add_argument("--dir", type=_path, default=Path("."), help="where to create it (default: .)")
    _add_plugin_commands(sub, common)
    return parser


def _add_plugin_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the subcommands plugins registered (``berg train nsd``, ``berg maps`` ...)."""
    from berg_core.registry import get_registry, resolve_import_path

    groups: dict[str, Any] = {}
    for words, command in sorted(get_registry().commands.items()):
        if len(words) == 1:
            parser = sub.add_parser(words[0], parents=[common], help=command.help)
        else:
            if words[0] not in groups:
                group = sub.add_parser(words[0], help=f"{words[0]} commands of installed plugins")
                groups[words[0]] = group.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
            parser = groups[words[0]].add_parser(words[1], parents=[common], help=command.help)
        label = f"configure of 'berg {' '.join(words)}'"
        resolve_import_path(command.configure, label)(parser)
        parser.set_defaults(plugin_command=command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``berg`` command; return its exit status (see the module docstring)."""
    try:
        return _run(argv)
    except InvalidParameterError as exc:  # a value the user gave: a usage error
        print(f"berg: error: {exc}", file=sys.stderr)
        return 2
    except BergError as exc:
        print(f"berg: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("berg: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("berg: error: out of memory", file=sys.stderr)
        return 1
    except OSError as exc:  # the system refused: permissions, disk full, ...
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        print(f"berg: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        print(
            f"berg: internal error: {type(exc).__name__}: {exc}\n"
            f"This is a bug in berg or one of its plugins; please report it with the command you "
            f"ran. Run it again with {DEBUG_ENV}=1 to see the traceback.",
            file=sys.stderr,
        )
        return 1


def _run(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.version:
        from berg_core import __version__

        print(f"berg-core {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 0
    command = getattr(args, "plugin_command", None)
    if command is not None:
        from berg_core.registry import resolve_import_path

        run = resolve_import_path(command.run, f"run of 'berg {' '.join(command.words)}'")
        return int(run(args) or 0)
    if args.command not in _COMMANDS:  # a command group given without its subcommand
        parser.parse_args([args.command, "--help"])
    return _COMMANDS[args.command](args)


def _berg(args: argparse.Namespace) -> Any:
    from berg_core.api import BERG

    return BERG(args.berg_dir)


def _cmd_plugins(args: argparse.Namespace) -> int:
    from berg_core.registry import get_registry

    registry = get_registry()
    if not registry.plugins:
        if os.environ.get("BERG_LOAD_PLUGINS") is not None:
            print("No berg plugins loaded: BERG_LOAD_PLUGINS is set and names none installed.")
        else:
            print("No berg plugins installed. Model families: pip install berg-nsd berg-things")
        return 0
    for info in registry.plugins:
        status = "FAILED" if info.error else f"{len(info.models)} models"
        print(f"{info.label:<28} [{info.name}] {status}")
        if info.error:
            print(f"    error: {info.error}")
        for model_id in info.models:
            family = ""
            if model_id in info.families:
                family = f" (a family: berg list --expand {model_id})"
            print(f"    {model_id}{family}")
    for model_id, labels in registry.conflicts.items():
        print(f"CONFLICT {model_id}: registered by {' and '.join(labels)}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    for model_id in _berg(args).list_models(args.pattern, expand=args.expand):
        print(model_id)
    return 0


def _cmd_describe(args: argparse.Namespace) -> int:
    _berg(args).describe(args.model_id, print_format=True)
    return 0


def _subject(value: str | None) -> int | str | None:
    """``--subject``: digits are an integer subject, anything else a subject name."""
    if value is None:
        return None
    return int(value) if _INTEGER.fullmatch(value) else value


def _positive_int(text: str) -> int:
    """argparse type of counts (``--batch-size``): an integer >= 1."""
    if not _INTEGER.fullmatch(text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return int(text)


def _path(text: str) -> Path:
    """argparse type of file and folder options: a non-empty path."""
    if not text:
        raise argparse.ArgumentTypeError("must be a path, got an empty string")
    return Path(text)


def _device(text: str) -> str:
    """argparse type of ``--device``."""
    from berg_core.arguments import require_device

    try:
        return require_device(text)
    except InvalidParameterError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _selection(text: str) -> dict[str, Any]:
    """``--selection``: a JSON object."""
    try:
        selection = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise UsageError(f"--selection is not valid JSON: {reason}") from None
    if not isinstance(selection, dict):
        raise UsageError(
            f'--selection must be a JSON object such as \'{{"roi": "V1v"}}\', got '
            f"{describe_value(text)}"
        )
    return selection


def _cmd_metadata(args: argparse.Namespace) -> int:
    metadata = _berg(args).get_model_metadata(args.model_id, subject=_subject(args.subject))
    if args.out is None:
        _print_tree(metadata)
        return 0
    from berg_core.output import write_metadata

    write_metadata(metadata, args.out, force=args.force, parameter="--out")
    print(f"wrote {args.out}")
    return 0


def _print_tree(data: dict[str, Any], indent: int = 0) -> None:
    for key, value in data.items():
        pad = "  " * indent
        if isinstance(value, dict):
            print(f"{pad}{key}:")
            _print_tree(value, indent + 1)
        elif isinstance(value, np.ndarray):
            print(f"{pad}{key}: array {value.shape} {value.dtype}")
        else:
            print(f"{pad}{key}: {value!r}")


def _options(
    berg: Any, model_id: str, pairs: Sequence[str], batch_size: int | None
) -> dict[str, Any]:
    """The model options of ``-o KEY=VALUE`` (and ``--batch-size``), parsed as their types.

    Raises
    ------
    UsageError
        A malformed or repeated ``-o``, or ``batch_size`` given twice.
    InvalidParameterError
        An option the model does not have, or a value its type does not accept.
    """
    raw: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(
                f"-o {pair!r} is not KEY=VALUE; e.g. -o batch_size=8 (berg describe {model_id} "
                f"lists the options)"
            )
        if key in raw:
            raise UsageError(f"-o {key}= is given twice ({raw[key]!r} and {value!r})")
        raw[key] = value
    if not raw:
        return {} if batch_size is None else {"batch_size": batch_size}
    from berg_core.schemas import validate_options

    card = berg.registry.resolve(model_id)[1]
    typed = validate_options(
        card.options, raw, card.model_id, strings=True, caller="berg encode -o"
    )
    options = {key: typed[key] for key in raw}
    if batch_size is not None:
        if "batch_size" in options:
            raise UsageError("give the batch size with --batch-size or -o batch_size=, not both")
        options["batch_size"] = batch_size
    return options


def _cmd_encode(args: argparse.Namespace) -> int:
    from berg_core.atomic import check_output_path
    from berg_core.output import write_responses
    from berg_core.sources import open_source
    from berg_core.stimulus import as_stimulus

    selection = _selection(args.selection) if args.selection is not None else {}
    if args.roi:
        if "roi" in selection:
            raise UsageError("give the ROI with --roi or in --selection, not both")
        selection["roi"] = args.roi[0] if len(args.roi) == 1 else args.roi
    check_output_path(args.out, force=args.force, parameter="--out")
    if args.cluster is not None:
        return _encode_on_cluster(args, selection)
    if args.shard_size is not None:
        raise UsageError("--shard-size is the size of a --cluster task; give --cluster too")
    if args.assemble is not None:
        raise UsageError("--assemble builds a --cluster run's file; give --cluster too")
    if args.reference_image is not None and not args.reference_image.is_file():
        raise InvalidParameterError(f"--reference-image {args.reference_image}: no such file")
    stimulus = as_stimulus(open_source(args.stimulus, name="--stimulus"))
    berg = _berg(args)
    model = berg.get_encoding_model(
        args.model_id,
        subject=_subject(args.subject),
        selection=selection or None,
        device=args.device,
        **_options(berg, args.model_id, args.option, args.batch_size),
    )
    with model:
        paths = write_responses(
            model,
            stimulus,
            args.out,
            force=args.force,
            show_progress=not args.quiet,
            reference=args.reference_image,
        )
        shapes = model.shapes()
        dims = model.dims()
    written = ", ".join(str(p) for p in paths)
    if all(len(shape) == 1 for shape in shapes):  # "7 images x (lh 4, rh 2) columns"
        sizes = ", ".join(f"{n} {s[0]}" for n, s in zip(dims, shapes, strict=True))
        print(f"wrote {written}: {len(stimulus)} images x ({sizes}) columns")
    else:  # "7 images x responses[repetition 2, channel 3, time 5]"
        sizes = ", ".join(
            f"{name}[{', '.join(f'{d} {k}' for d, k in zip(dims[name][1:], s, strict=True))}]"
            for name, s in zip(dims, shapes, strict=True)
        )
        print(f"wrote {written}: {len(stimulus)} images x {sizes}")
    return 0


def _encode_on_cluster(args: argparse.Namespace, selection: dict[str, Any]) -> int:
    """``berg encode --cluster``: run by berg-distributed, imported only here."""
    import importlib.util

    if importlib.util.find_spec("berg_distributed") is None:
        raise UsageError("--cluster needs berg-distributed: pip install berg-distributed")
    from berg_distributed.cli import encode_command

    berg = _berg(args)
    options = _options(berg, args.model_id, args.option, args.batch_size)
    return encode_command(args, berg, _subject(args.subject), selection, options)


def _cmd_fetch(args: argparse.Namespace) -> int:
    from berg_core import fetch

    berg = _berg(args)
    subject = _subject(args.subject)
    keys = fetch.model_files(args.model_id, subject)
    about = args.model_id + ("" if subject is None else f", subject {subject}")
    if not keys:
        print(
            f"{about}: the model's card lists no files to fetch (it reads nothing from berg_dir, "
            f"or gets what it needs itself)"
        )
        return 0
    base_url = args.base_url  # a mirror named here serves every file (fetch.source_url)
    sources = dict.fromkeys(fetch.source_url(key, base_url) for key in keys)
    statuses = fetch.inspect_files(keys, berg.berg_dir, base_url, remote=args.list)
    todo = [s for s in statuses if not s.present]
    if args.list:

        def remote(s: Any) -> int | None:  # the server's size, else the card's
            return s.remote_size if s.remote_size is not None else s.size

        size = fetch.format_size(fetch.total_size(remote(s) for s in statuses))
        need = fetch.format_size(fetch.total_size(remote(s) for s in todo))
        print(f"{about}: {len(keys)} file(s), {size}; {len(todo)} to download ({need})")
        print(f"from {', '.join(sources)}\ninto {berg.berg_dir}")
        for s in statuses:
            state = "present" if s.present else "partial" if s.partial_size else "missing"
            shown = remote(s) if remote(s) is not None else s.local_size
            note = ""
            if s.present and None not in (s.local_size, s.remote_size):
                if s.local_size != s.remote_size:
                    note = f"  (local file has {s.local_size} bytes: differs from the server)"
            elif s.partial_size:
                note = f"  ({fetch.format_size(s.partial_size)} downloaded, will resume)"
            if s.error:
                note += f"  [{s.error}]"
            check = "sha256" if s.sha256 else "-"  # a checksum declared by the card
            if len(sources) > 1:
                note += f"  (from {s.url})"
            print(f"  {state:<8}{fetch.format_size(shown):>11}  {check:<7}{s.key}{note}")
        return 0
    if args.dry_run:
        if not todo:
            print(f"{about}: all {len(keys)} file(s) are present in {berg.berg_dir}; nothing to do")
            return 0
        print(f"{about}: would download {len(todo)} of {len(keys)} file(s) into {berg.berg_dir}")
        for s in todo:
            resume = f" (resuming at byte {s.partial_size})" if s.partial_size else ""
            print(f"  {s.url}\n    -> {s.path}{resume}")
        return 0
    fetch.fetch_files(keys, berg.berg_dir, base_url, show_progress=not args.quiet)
    if not args.quiet:
        done = len(keys) - len(todo)
        print(
            f"{about}: {len(todo)} file(s) downloaded, {done} already present, in {berg.berg_dir}"
        )
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from berg_core.check import check_plugin

    if (args.model or args.subject) and args.berg_dir is None:
        raise UsageError("--model and --subject need --berg-dir")
    if args.subject and not args.model:
        raise UsageError("--subject needs --model")
    fixture = None
    if args.model:
        fixture = {"berg_dir": args.berg_dir, "model_id": args.model}
        fixture["subject"] = _subject(args.subject)
    report = check_plugin(args.target, berg_dir=args.berg_dir, fixture=fixture)
    print("\n".join(report.lines))
    return 0 if report.ok else 1


def _cmd_new_plugin(args: argparse.Namespace) -> int:
    from berg_core.scaffold import new_plugin

    target = new_plugin(args.name, args.dir)
    print(
        f"created {target}\nnext: pip install -e {target}; berg check {target.name}; "
        f"python -m pytest {target / 'tests'}"
    )
    return 0


_COMMANDS = {
    "plugins": _cmd_plugins,
    "list": _cmd_list,
    "describe": _cmd_describe,
    "metadata": _cmd_metadata,
    "encode": _cmd_encode,
    "fetch": _cmd_fetch,
    "check": _cmd_check,
    "new-plugin": _cmd_new_plugin,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
