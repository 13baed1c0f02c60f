"""Which module registers each ``saxgw`` command, so that a command loads its own family of
commands only. Every family's imports together (the gateway service, the cell, Envoy's
config, the OpenAI face) took half of each `saxgw ls` (0.2 of 0.4 s) for modules it never
used. tests/unit/test_cli_commands.py checks this table against what each family registers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

#: Family module (``gateway.cli.<name>``) -> its commands, in the order ``saxgw --help``
#: lists the families.
FAMILIES: dict[str, tuple[str, ...]] = {
    "run": ("up", "serve", "gateway"),
    "envoy_config": ("envoy-config",),
    "ops": ("ops",),
    "admin": (
        "ls",
        "publish",
        "unpublish",
        "update",
        "update_checkpoint",
        "stats",
        "watch",
        "wait",
        "getacl",
        "setacl",
    ),
    "lm": ("lm.generate", "lm.score", "lm.embed", "lm.gradient"),
    "vm": (
        "vm.classify",
        "vm.generate",
        "vm.embed",
        "vm.detect",
        "vm.image_to_text",
        "vm.image_to_image",
        "vm.text_and_image_to_image",
        "vm.video_to_text",
        "vm.video_to_token",
        "vm.token_to_video",
    ),
    "am": ("am.recognize",),
    "cm": ("cm.custom",),
}

_FAMILY_OF = {command: family for family, commands in FAMILIES.items() for command in commands}


def families_for(arguments: Sequence[str]) -> list[str]:
    """The families of the commands ``arguments`` may name: of each argument that is a command
    name (a flag's value may be one too: its family is loaded as well), or every family when
    none is (``--help``, no command, a misspelt one: the grammar then lists them all)."""
    named = {_FAMILY_OF[a] for a in arguments if a in _FAMILY_OF}
    return _in_order(named) if named else list(FAMILIES)


def _in_order(families: Iterable[str]) -> list[str]:
    wanted = set(families)
    return [f for f in FAMILIES if f in wanted]
