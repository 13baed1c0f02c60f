"""Input bounds: error messages quote at most 100 characters of what they reject."""

from __future__ import annotations

import pytest

from gateway.client import InvalidArgumentError
from gateway.common import limits
from gateway.naming import parse_model_id
from gateway.service import _fields as f


def test_quote_keeps_short_values_and_cuts_long_ones() -> None:
    assert limits.quote("abc") == "'abc'"
    assert limits.quote("x" * 1000) == "'" + "x" * 100 + "'… (1000 characters)"


def test_shown_quotes_strings_and_cuts_other_values_short() -> None:
    assert limits.shown("x" * 1000) == limits.quote("x" * 1000)
    assert limits.shown(None) == "None" and limits.shown(5) == "5"
    assert limits.shown({"type": "json"}) == "{'type': 'json'}"
    assert len(limits.shown({"type": "x" * 100_000})) < 120
    assert len(limits.shown([[["x" * 100_000] * 1000] * 1000] * 1000)) < 1000


def test_a_huge_model_id_is_rejected_without_echoing_it() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        parse_model_id("/sax/test/" + "m" * 100_000)
    assert len(caught.value.message) < 250
    assert caught.value.message.endswith("characters is over the limit of 256")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: f.replicas(1025), "replicas: must be between 0 and 1024, got 1025"),
        (lambda: f.replicas(-1), "replicas: must be between 0 and 1024, got -1"),
        (
            lambda: f.overrides({str(i): "" for i in range(65)}),
            "overrides: 65 entries is over the limit of 64",
        ),
        (
            lambda: f.overrides({"k": "v" * 5000}),
            "overrides[k]: 5000 characters is over the limit of 4096",
        ),
        (
            lambda: f.texts(["s"] * 1025, "suffix"),
            "suffix: 1025 items is over the limit of 1024",
        ),
        (
            lambda: f.required("q" * (limits.MAX_TEXT_CHARS + 1), "query"),
            f"query: {limits.MAX_TEXT_CHARS + 1} characters is over the limit of "
            f"{limits.MAX_TEXT_CHARS}",
        ),
    ],
)
def test_field_bounds(call: object, message: str) -> None:
    assert callable(call)
    with pytest.raises(InvalidArgumentError) as caught:
        call()
    assert caught.value.message == message
