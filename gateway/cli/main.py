"""Entry point of ``saxgw``: it only registers the command families and dispatches."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from gateway import __version__
from gateway.cli import admin, am, lm, ops, run, vm
from gateway.cli._common import add_global_flags
from gateway.cli._help import Parser, show_defaults
from gateway.common import logs

FAMILIES = (run, ops, admin, lm, vm, am)


def parser() -> argparse.ArgumentParser:
    """The full command-line grammar."""
    top = Parser(prog="saxgw", description="gRPC and HTTP/JSON gateway for Saxml (Sax) cells.")
    top.add_argument("--version", action="version", version=f"saxgw {__version__}")
    top.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr")
    add_global_flags(top, defaults=True)
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for family in FAMILIES:
        family.register(commands)
    show_defaults(top)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns the process exit status."""
    args = parser().parse_args(argv)
    # Commands that run servers take --log-format; the client verbs log as text.
    logs.configure(
        getattr(args, "log_format", "text"), logging.DEBUG if args.verbose else logging.INFO
    )
    status: int = args.handler(args)
    return status
