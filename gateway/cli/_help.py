"""How ``saxgw`` explains itself: defaults in ``--help``, "did you mean" for a mistyped command,
and flags anywhere among a command's arguments.

top = Parser(prog="saxgw")   # a parser whose errors suggest the closest command
top.add_subparsers(parser_class=CommandParser)  # commands take flags between their arguments
show_defaults(top)           # every option's help ends with its default
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Iterable, Sequence
from typing import NoReturn

_INVALID_CHOICE = re.compile(r"argument COMMAND: invalid choice: '([^']*)'")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that answers a mistyped command with the closest real ones."""

    def error(self, message: str) -> NoReturn:
        match = _INVALID_CHOICE.search(message)
        if match is not None:
            typed = match.group(1)
            close = close_commands(typed, _commands(self))
            suggestion = f"; did you mean {' or '.join(close)}?" if close else ""
            self.print_usage(sys.stderr)
            self.exit(
                2,
                f"{self.prog}: unknown command {typed!r}{suggestion}\n"
                f"`{self.prog} --help` lists the commands.\n",
            )
        if message.startswith("unrecognized arguments") and _SAX_ROOT.search(message):
            self.print_usage(sys.stderr)
            self.exit(
                2,
                f"{self.prog}: error: {message}\n"
                f"{self.prog.split()[0]} reaches Sax through a gateway, which reads SAX_ROOT "
                "itself: name the gateway with --gateway HOST:PORT (saxutil's --sax_root has no "
                "use here).\n",
            )
        super().error(message)


# saxutil's flag naming the Sax root (`--sax_root=gs://...`), which saxutil users carry over
# in their aliases: for `saxgw` the gateway knows the root, and the CLI only the gateway.
_SAX_ROOT = re.compile(r"(^|\s)--?sax_root(=|\s|$)")

# A suggestion is at least this similar (difflib's ratio) to what was typed, and within
# _RUNNER_UP of the best one: at 0.5 alone, "bogus" got "did you mean ops?" (two letters of
# five in common) and "list" got ls, publish and wait. A command that starts with what was
# typed (three letters or more: "envoy") counts as _PREFIX similar.
_CLOSE = 0.6
_RUNNER_UP = 0.1
_PREFIX = 0.8


def close_commands(typed: str, names: Iterable[str]) -> list[str]:
    """Up to three of ``names`` close to ``typed``, the closest first."""

    def similarity(name: str) -> float:
        ratio = difflib.SequenceMatcher(None, typed, name).ratio()
        return max(ratio, _PREFIX) if len(typed) >= 3 and name.startswith(typed) else ratio

    scored = sorted((-similarity(name), name) for name in names)
    if not scored or -scored[0][0] < _CLOSE:
        return []
    floor = max(_CLOSE, -scored[0][0] - _RUNNER_UP)
    return [name for score, name in scored[:3] if -score >= floor]


class CommandParser(Parser):
    """A command's parser: flags may come between its arguments, as in ``setacl ID --json
    METHOD ACL``, and an argument too many is this command's usage error, not the top
    level's. argparse alone fills an optional positional (METHOD) with nothing when a flag
    follows the one before it, and the rest is then "unrecognized"; intermixed parsing takes
    the flags first, then the positionals, whatever their order."""

    _intermixed = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._intermixed:  # parse_known_intermixed_args calls back here, for each pass
            return super().parse_known_args(args, namespace)
        self._intermixed = True
        try:
            parsed, extras = self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixed = False
        if extras:  # said here, with this command's usage; the top level's named no command
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def _commands(parser: argparse.ArgumentParser) -> list[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


class _DefaultsFormatter(argparse.HelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or not _meaningful(action.default):
            return text
        if isinstance(action, argparse._StoreFalseAction):
            return text  # --no-x: "default: True" would read as if --no-x were on
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return f"{text} {_default_note(action.default)}".lstrip()
        return text


def _default_note(default: object) -> str:
    """``(default: VALUE)``, the value written out rather than argparse's ``%(default)s``:
    `CommandParser` parses the flags first, and while it does, argparse sets an optional
    positional's default to SUPPRESS, so ``wait --help`` (REPLICAS, default 1) found no
    default to fill in and failed with a KeyError."""
    return f"(default: {default})".replace("%", "%%")  # argparse still %-formats the help


def _meaningful(default: object) -> bool:
    # "" is an unset string option (update --checkpoint): "(default: )" says nothing.
    return default not in (None, False, "", argparse.SUPPRESS) and default != [] and default != ()


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Makes ``parser`` and all its commands' ``--help`` show each option's default."""
    parser.formatter_class = _DefaultsFormatter
    for action in parser._actions:
        if action.help is None and _meaningful(action.default):
            action.help = _default_note(action.default)  # argparse shows nothing for no help
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                show_defaults(sub)


def go_style_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """``argv`` with saxutil's one-dash long flags (Go's flag package: ``-stream``,
    ``-extra=temperature:0.5``, ``-replicas=2``, ``-sax_timeout=10s``) spelled as argparse
    takes them (``--stream``, ...). Only names that are long options of saxgw are rewritten;
    ``-`` (stdin), negative numbers and anything after ``--`` are left alone. Go's flag takes
    one value after ``-extra V``: it becomes ``--extra=V``, which does not take the ID and
    QUERY after it as more values, as ``--extra V ID QUERY`` would. A switch given a value
    as Go's flag takes it (``-stream=true``, ``-terse=false``: strconv.ParseBool's spellings)
    is the switch, or nothing; one that defaults to true (``-acls=false``) is ``--no-acls``."""
    long_options, greedy, switches, negatable = _long_options(parser)
    out: list[str] = []
    tokens = iter(enumerate(argv))
    for index, token in tokens:
        if token == "--":
            return out + list(argv[index:])
        one_dash = token.startswith("-") and not token.startswith("--")
        name, sep, value = token.lstrip("-").partition("=")
        name = _SAXUTIL_NAMES.get(name, name)
        if token.startswith("-") and token != "-" and f"--{name}" in long_options:
            if one_dash and not sep and f"--{name}" in greedy and index + 1 < len(argv):
                sep, value = "=", next(tokens)[1]
            if sep and f"--{name}" in negatable and value in _GO_FALSE | _GO_TRUE:
                token = f"--{'' if value in _GO_TRUE else 'no-'}{name}"
                out.append(token)
                continue
            if sep and f"--{name}" in switches and value in _GO_FALSE:
                continue
            if sep and f"--{name}" in switches and value in _GO_TRUE:
                sep = value = ""
            token = f"--{name}{sep}{value}"
        out.append(token)
    return out


# saxutil's flags that saxgw names otherwise.
_SAXUTIL_NAMES = {"sax_timeout": "timeout"}

# The values Go's flag package takes for a boolean flag (strconv.ParseBool).
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def _long_options(
    parser: argparse.ArgumentParser,
) -> tuple[set[str], set[str], set[str], set[str]]:
    """Every long option of ``parser`` and its commands, those that take several values, the
    switches (``--stream``: true when given) and those with a ``--no-`` form (``--acls``)."""
    names: set[str] = set()
    greedy: set[str] = set()
    switches: set[str] = set()
    negatable: set[str] = set()
    for action in parser._actions:
        longs = {s for s in action.option_strings if s.startswith("--")}
        names |= longs
        if action.nargs in (argparse.ONE_OR_MORE, argparse.ZERO_OR_MORE):
            greedy |= longs
        if isinstance(action, argparse._StoreTrueAction):
            switches |= longs
        if isinstance(action, argparse.BooleanOptionalAction):
            negatable |= {s for s in longs if not s.startswith("--no-")}
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub_names, sub_greedy, sub_switches, sub_negatable = _long_options(sub)
                names |= sub_names
                greedy |= sub_greedy
                switches |= sub_switches
                negatable |= sub_negatable
    return names, greedy, switches, negatable
