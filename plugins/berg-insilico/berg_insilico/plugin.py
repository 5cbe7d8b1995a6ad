"""The ``berg`` entry point of berg-insilico: ``berg insilico rank|control|rsa``.

Registration only. Each subcommand has its own module (``berg_insilico.cli_<name>``) with a
``configure(parser)`` (argparse only) and a ``run(args)``, named by import path, so
``berg --help`` imports nothing heavy. A new subcommand is a new module and one line in
:data:`SUBCOMMANDS`.
"""

from __future__ import annotations

from collections.abc import Callable

from berg_core import hookimpl

__all__ = ["SUBCOMMANDS", "register_commands"]

#: name -> (help, module); the module defines configure(parser) and run(args).
SUBCOMMANDS = {
    "rank": (
        "stream images through encoders, keep each area's top/bottom images (berg-insilico)",
        "berg_insilico.cli_rank",
    ),
    "control": (
        "univariate relational control of two or more areas, validated on held-out subjects "
        "(berg-insilico)",
        "berg_insilico.cli_control",
    ),
    "rsa": (
        "RDMs, RSA between areas, multivariate relational control (berg-insilico)",
        "berg_insilico.cli_rsa",
    ),
    "synthesise": (
        "optimise images to drive/suppress areas (berg-insilico)",
        "berg_insilico.cli_synthesis",
    ),
}


@hookimpl
def register_commands(register: Callable[..., None]) -> None:
    """Register ``insilico <name>`` for every entry of :data:`SUBCOMMANDS`."""
    for name, (text, module) in SUBCOMMANDS.items():
        register(f"insilico {name}", text, f"{module}:configure", f"{module}:run")
