"""The access log's grpc_status (gateway/launch/_access_log.py): Envoy's own replies tell it
the code their body carries, from the one table of local reply mappers. What Envoy logs is
tested against the real stack in tests/e2e/security/test_access_log.py."""

from __future__ import annotations

from typing import Any

import grpc

from gateway.launch._access_log import METADATA, grpc_status_format, status_rules
from gateway.launch._replies import CODE_HEADER, local_reply_mappers
from gateway.launch.envoy import descriptor_set


def _headers(mapper: dict[str, Any]) -> dict[str, list[str]]:
    added: dict[str, list[str]] = {}
    for entry in mapper["headers_to_add"]:
        added.setdefault(entry["header"]["key"], []).append(entry["header"]["value"])
    return added


def test_every_local_reply_tells_the_log_the_code_of_its_body() -> None:
    mappers: list[dict[str, Any]] = local_reply_mappers(descriptor_set())
    for mapper in mappers:
        headers = _headers(mapper)
        [tagged] = headers[CODE_HEADER]
        body = mapper["body_format_override"].get("json_format")
        if body is None:  # a gRPC call's plain message: its code is the grpc-status
            assert "grpc-status" in headers, mapper
        elif isinstance(body.get("code"), str):  # Connect's error, its code by name
            assert grpc.StatusCode[body["code"].upper()].value[0] == int(tagged), mapper
        elif "code" in body:  # the gateway's shape; OpenAI's envelope has no number to compare
            assert int(tagged) == body["code"], mapper
        if "grpc-status" in headers:  # what a gRPC client gets
            assert headers["grpc-status"] == [tagged], mapper
        assert int(tagged) in {c.value[0] for c in grpc.StatusCode}, mapper
    # Any other error status: UNKNOWN, in the body and in the log.
    assert _headers(mappers[-1])[CODE_HEADER] == [str(grpc.StatusCode.UNKNOWN.value[0])]


def test_the_log_reads_the_metadata_the_filter_writes() -> None:
    namespace, key = METADATA
    rules: list[dict[str, Any]] = status_rules()
    for rule in rules:
        assert rule["on_header_present"]["metadata_namespace"] == namespace
        assert rule["on_header_present"]["key"] == key
    # The code header is the filter's to remove: no client sees it.
    assert [r["remove"] for r in rules if r["header"] == CODE_HEADER] == [True]
    assert f'"param": "{namespace}:{key}"' in grpc_status_format()
