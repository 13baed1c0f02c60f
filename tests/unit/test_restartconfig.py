"""The --config file's ``supervisor:`` section: how `saxgw up|serve` restarts children and
when its watchdog kills one; every error names the key at fault."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import ConfigError
from gateway.configfile import ConfigFile, parse_config
from gateway.restartconfig import RestartSettings


def test_every_key_is_read() -> None:
    section = {
        "first_delay": 1,
        "max_delay": 10,
        "stable_after": 120,
        "probe_interval": 0.5,
        "probe_timeout": 1.5,
        "probe_failures": 5,
        "start_grace": 45,
    }
    assert parse_config({"supervisor": section}).supervisor == RestartSettings(
        first_delay=1.0,
        max_delay=10.0,
        stable_after=120.0,
        probe_interval=0.5,
        probe_timeout=1.5,
        probe_failures=5,
        start_grace=45.0,
    )


def test_the_defaults_are_a_prompt_watchdog() -> None:
    assert parse_config({}).supervisor == ConfigFile().supervisor == RestartSettings()
    assert parse_config({"supervisor": None}).supervisor == RestartSettings()
    defaults = RestartSettings()
    assert (defaults.probe_interval, defaults.probe_timeout, defaults.probe_failures) == (2, 2, 3)
    assert defaults.start_grace == 30


def test_a_zero_interval_turns_the_watchdog_off() -> None:
    assert parse_config({"supervisor": {"probe_interval": 0}}).supervisor.probe_interval == 0


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ([], "supervisor: expected a mapping"),
        ({"probe_every": 2}, "supervisor.probe_every: unknown key; expected one of first_delay"),
        ({"probe_timeout": "2s"}, "supervisor.probe_timeout: expected a number of seconds"),
        ({"probe_timeout": True}, "supervisor.probe_timeout: expected a number of seconds"),
        ({"probe_timeout": 0}, "supervisor.probe_timeout: must be above 0"),
        ({"probe_interval": -1}, "supervisor.probe_interval: must be between 0 and"),
        ({"start_grace": float("inf")}, "supervisor.start_grace: must be between 0 and"),
        ({"probe_failures": 0}, "supervisor.probe_failures: expected a whole number, at least 1"),
        ({"probe_failures": 2.5}, "supervisor.probe_failures: expected a whole number"),
        ({"first_delay": 5, "max_delay": 1}, "supervisor.max_delay: must be at least first_delay"),
        ({"first_delay": 0}, "supervisor.first_delay: must be above 0 (the delay doubles from it)"),
    ],
)
def test_a_bad_value_names_its_key(section: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"supervisor": section})
    assert str(caught.value).startswith(message)


def test_the_section_is_a_known_one() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"supervisors": {}})
    assert "supervisors: unknown section" in str(caught.value)
    assert "supervisor" in str(caught.value).split("expected one of ")[1].split(", ")
