"""Client commands declared as a table: one object per command, its arguments beside its
handler (saxutil's shape: a command's flags, usage and Execute live together).

A family module decorates each handler and lists the results; ``register`` adds them::

    @command("lm.embed", "ID TEXT", "use a language model to embed text", ID, arg("text"), EXTRA)
    def embed(session: Session, args: argparse.Namespace) -> None: ...

    COMMANDS = (embed,)
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import struct_pb2

from gateway.cli._common import Commands, Run, add_command
from gateway.cli._inputs import extra_arg, extra_inputs


@dataclass(frozen=True)
class Arg:
    """One ``add_argument`` call: its name or flags and its options."""

    flags: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)


def arg(*flags: str, **options: Any) -> Arg:
    """An argument; a positional one is shown by its upper-case name unless told otherwise."""
    if not flags[0].startswith("-"):
        options.setdefault("metavar", flags[0].upper())
    return Arg(flags, options)


ID = arg("id", help=None)
EXTRA = arg(
    "--extra",
    type=extra_arg,
    nargs="+",
    action="extend",
    default=[],
    metavar="k=v",
    help="extra inputs the model's method declares (it refuses others), such as "
    "temperature=0.5 for an LM's lm.generate, or as saxutil takes them: temperature:0.5,n:2 "
    "(numbers are sent as numbers; a quoted value, '\"1\"', as a string)",
)


@dataclass(frozen=True)
class Command:
    """``saxgw NAME USAGE``: what it does, what it takes, and the function that runs it."""

    name: str
    usage: str
    synopsis: str
    args: tuple[Arg, ...]
    run: Run

    def add_to(self, commands: Commands) -> argparse.ArgumentParser:
        """Adds this command (with the global client flags) to ``commands``."""
        cmd = add_command(commands, self.name, self.usage, self.synopsis, self.run)
        for item in self.args:
            cmd.add_argument(*item.flags, **item.options)
        return cmd


def command(name: str, usage: str, synopsis: str, *args: Arg) -> Callable[[Run], Command]:
    """Declares the decorated handler as the command ``name``."""

    def declare(run: Run) -> Command:
        return Command(name, usage, synopsis, args, run)

    return declare


def register_all(commands: Commands, table: Iterable[Command]) -> None:
    """Adds every command of ``table``, in order."""
    for item in table:
        item.add_to(commands)


def model_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """The request fields every data command sends: the model ID and its ``--extra`` inputs."""
    # Each --extra value is a list of pairs (saxutil's form holds several).
    extra: dict[str, struct_pb2.Value] = extra_inputs(p for group in args.extra for p in group)
    return {"model": args.id, "extra_inputs": extra}
