"""How `saxgw up|serve` keeps its processes running: the config file's ``supervisor:`` section.

    supervisor:
      first_delay: 0.5       # a child that exits is started again after this, doubling
      max_delay: 30          #   while it keeps dying, up to this
      stable_after: 60       # a child that ran this long starts again from first_delay
      probe_interval: 2      # the watchdog asks each child's health endpoint this often; 0: off
      probe_timeout: 2       # an answer later than this is a failed probe
      probe_failures: 3      # failed probes in a row that get a child killed (SIGKILL)
      start_grace: 30        # a child that has not answered once since it started may fail
                             #   probes this long before they count

Parsed once at the edge (the CLI) into a frozen `RestartSettings`, which
`gateway.launch.supervisor` applies; a mistake is a `ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.common.limits import MAX_SECONDS
from gateway.config import ConfigError, unknown_key


@dataclass(frozen=True, kw_only=True)
class RestartSettings:
    """How the supervisor restarts a child that exits, and when it kills one that hangs
    (seconds)."""

    first_delay: float = 0.5
    max_delay: float = 30.0
    """The delay doubles with each exit up to this."""
    stable_after: float = 60.0
    """A child that ran this long before exiting starts again from ``first_delay``."""
    probe_interval: float = 2.0
    """How often the watchdog asks each child whether it answers (its health endpoint); 0
    turns the watchdog off."""
    probe_timeout: float = 2.0
    """A probe not answered within this failed."""
    probe_failures: int = 3
    """A child whose probes failed this many times in a row is killed (SIGKILL) and
    restarted as one that exited."""
    start_grace: float = 30.0
    """A child that has not answered a probe since it started is not judged for this long:
    slow to start is not hung."""


def _number(section: str, key: str, value: Any) -> float:
    where = f"{section}.{key}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected a number of seconds")
    if not math.isfinite(value) or not 0 <= value <= MAX_SECONDS:
        raise ConfigError(f"{where}: must be between 0 and {MAX_SECONDS}")
    return float(value)


def parse_restart(data: Any, section: str = "supervisor") -> RestartSettings:
    """The ``supervisor:`` section (None: every default)."""
    if data is None:
        return RestartSettings()
    if not isinstance(data, Mapping):
        raise ConfigError(f"{section}: expected a mapping")
    keys = tuple(f.name for f in dataclasses.fields(RestartSettings))
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in keys:
            raise unknown_key(section, key, f"expected one of {', '.join(keys)}")
        if key == "probe_failures":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{section}.{key}: expected a whole number, at least 1")
            values[key] = value
        else:
            values[key] = _number(section, key, value)
    if values.get("probe_timeout") == 0:
        raise ConfigError(f"{section}.probe_timeout: must be above 0")
    if values.get("first_delay") == 0:
        # The delay doubles from here: from 0 it never grows, and a process that dies at
        # start is restarted at once, forever, taking a core.
        raise ConfigError(f"{section}.first_delay: must be above 0 (the delay doubles from it)")
    settings = RestartSettings(**values)
    if settings.max_delay < settings.first_delay:
        raise ConfigError(f"{section}.max_delay: must be at least first_delay")
    return settings
