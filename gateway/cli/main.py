"""Entry point of ``saxgw``: it only registers the command families and dispatches.

The families (and grpc) are imported inside `parser`, not here: Ctrl-C while they load (a
second or so) then ends ``saxgw`` with 130, as any other moment does, not with a traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def parser() -> argparse.ArgumentParser:
    """The full command-line grammar."""
    from gateway import __version__
    from gateway.cli import admin, am, lm, ops, run, vm
    from gateway.cli._common import add_global_flags
    from gateway.cli._help import Parser, show_defaults

    top = Parser(prog="saxgw", description="gRPC and HTTP/JSON gateway for Saxml (Sax) cells.")
    top.add_argument("--version", action="version", version=f"saxgw {__version__}")
    top.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr")
    add_global_flags(top, defaults=True)
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for family in (run, ops, admin, lm, vm, am):
        family.register(commands)
    show_defaults(top)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns the process exit status."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # before a command's own handling, e.g. while importing
        return 130


def _main(argv: Sequence[str] | None) -> int:
    import logging
    import sys

    from gateway.cli._help import go_style_flags
    from gateway.common import logs

    grammar = parser()
    args = grammar.parse_args(go_style_flags(grammar, sys.argv[1:] if argv is None else argv))
    # Commands that run servers take --log-format; the client verbs log as text.
    logs.configure(
        getattr(args, "log_format", "text"), logging.DEBUG if args.verbose else logging.INFO
    )
    status: int = args.handler(args)
    return status
