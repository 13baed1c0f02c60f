"""Entry point of ``saxgw``: it only registers the command families and dispatches.

The families (and grpc) are imported inside `parser`, not here: Ctrl-C while they load (a
second or so) then ends ``saxgw`` with 130, as any other moment does, not with a traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def parser(arguments: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command-line grammar: of the families of the commands ``arguments`` name (a
    command loads its own only: gateway/cli/_families.py), or the whole of it."""
    import importlib

    from gateway import __version__
    from gateway.cli._common import add_global_flags
    from gateway.cli._families import FAMILIES, families_for
    from gateway.cli._help import CommandParser, Parser, show_defaults

    top = Parser(prog="saxgw", description="gRPC and HTTP/JSON gateway for Saxml (Sax) cells.")
    top.add_argument("--version", action="version", version=f"saxgw {__version__}")
    add_global_flags(top, defaults=True)
    commands = top.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=CommandParser
    )
    for family in list(FAMILIES) if arguments is None else families_for(arguments):
        importlib.import_module(f"gateway.cli.{family}").register(commands)
    show_defaults(top)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns the process exit status."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # before a command's own handling, e.g. while importing
        return 130


#: The commands that run servers (gateway/cli/run.py, ops.py) or write their config
#: (envoy_config.py): their grpc logs matter.
_SERVERS = frozenset({"up", "serve", "gateway", "envoy-config", "ops"})


def _quiet_grpc(argv: Sequence[str]) -> None:
    """For the client verbs, grpc's own log lines (a failed TLS handshake's "Corruption
    detected") say nothing the error and hint saxgw prints do not; grpc reads the setting
    when it is imported, before the grammar knows the command. Any argument that names a
    server command keeps them, so a server is never silenced; -v keeps them too."""
    import os

    if not _SERVERS.intersection(argv) and not {"-v", "--verbose"}.intersection(argv):
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")


def _main(argv: Sequence[str] | None) -> int:
    import logging
    import sys

    arguments = sys.argv[1:] if argv is None else argv
    _quiet_grpc(arguments)

    from gateway.cli._help import go_style_flags
    from gateway.common import logs

    grammar = parser(arguments)
    args = grammar.parse_args(go_style_flags(grammar, arguments))
    # Commands that run servers take --log-format; the client verbs log as text.
    logs.configure(
        getattr(args, "log_format", "text"), logging.DEBUG if args.verbose else logging.INFO
    )
    status: int = args.handler(args)
    return status
