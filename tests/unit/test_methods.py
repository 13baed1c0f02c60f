"""The API's routes as Envoy matches them (gateway/launch/_methods.py), for its 405s."""

from __future__ import annotations

import re

import pytest

from gateway.launch._methods import Route, path_regex, routes
from gateway.launch.envoy import descriptor_set


@pytest.mark.parametrize(
    ("template", "matches", "does_not_match"),
    [
        ("/generate", ["/generate", "/generate?x=1"], ["/generates", "/generate/x", "/v1/x"]),
        (
            "/v1/{model=sax/*/*}:generate",
            ["/v1/sax/test/lm:generate", "/v1/sax/test/lm:generate?a=b"],
            ["/v1/sax/test/lm", "/v1/sax/a/b/c:generate", "/v1/sax/test/lm:generates"],
        ),
        (
            "/v1/{model=sax/*/*}",
            ["/v1/sax/test/lm"],
            ["/v1/sax/test/lm:generate", "/v1/sax/test", "/v1/sax/test/lm/x"],
        ),
        (
            "/v1/{name=sax/**}:stats",
            ["/v1/sax/test:stats", "/v1/sax/test/lm:stats"],
            ["/v1/sax:stats", "/v1/sax/test/lm:generate"],
        ),
        ("/v1/models/{model=**}", ["/v1/models/gpt", "/v1/models/sax/test/lm"], ["/v1/models"]),
    ],
)
def test_path_regex_matches_the_paths_of_its_template_only(
    template: str, matches: list[str], does_not_match: list[str]
) -> None:
    regex = path_regex(template)
    for path in matches:
        assert re.fullmatch(regex, path), (regex, path)
    for path in does_not_match:
        assert not re.fullmatch(regex, path), (regex, path)


def test_routes_come_from_every_http_rule_of_the_descriptor_set() -> None:
    by_regex = {r.regex: r for r in routes(descriptor_set())}
    assert by_regex[path_regex("/update")] == Route(
        path_regex("/update"), frozenset({"POST", "PUT"}), openai=False
    )
    assert by_regex[path_regex("/listcell")].verbs == {"GET"}
    assert by_regex[path_regex("/v1/{model=sax/*/*}:generate")].verbs == {"POST"}
    assert by_regex[path_regex("/v1/chat/completions")].openai
    assert not by_regex[path_regex("/v1/cells")].openai
