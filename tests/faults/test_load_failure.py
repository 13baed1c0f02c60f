"""A model that fails to load is visibly broken: no active replica, the load error in its
details, and data calls that fail at once instead of waiting for their deadline."""

from __future__ import annotations

import time

import httpx

from tests.e2e._published import publish_body
from tests.faults.conftest import TEST_LM, Faults


def test_load_failure_is_reported_and_calls_fail_fast(faults: Faults, http: httpx.Client) -> None:
    model = "/sax/test/broken"
    body = publish_body(model, TEST_LM, fail_load="weights are corrupt")
    response = http.post("/publish", json=body)
    assert response.status_code == 200, response.text
    try:
        details: dict[str, object] = {}

        def failed() -> bool:
            details.update(http.get(f"/v1{model}").json()["model"])
            return bool(details.get("load_error"))

        faults.wait_until(failed, 30, "the load error to be reported")
        assert details["active_replicas"] == 0
        assert details["addresses"] == []
        load_error = str(details["load_error"])
        assert load_error.startswith(f"{model} failed to load (127.0.0.1:")
        assert ": TestLM failed to load: weights are corrupt)" in load_error
        listed = http.request("GET", "/listcell", json={"model": model}).json()
        assert listed["active_replicas"] == 0

        started = time.monotonic()
        call = http.post("/generate", json={"model": model, "query": "hi", "timeout": "20s"})
        elapsed = time.monotonic() - started
        assert call.status_code == 400, call.text  # FAILED_PRECONDITION
        assert call.json()["code"] == 9
        assert "TestLM failed to load: weights are corrupt)" in call.json()["message"]
        assert elapsed < 10  # it used to wait for the whole deadline

        # `saxgw wait` after a publish (a deploy script's "is it up?") gets the same answer,
        # where it used to wait out its deadline and say only DEADLINE_EXCEEDED (504).
        wait = http.post(f"/v1{model}:waitForReady", json={"timeout": "20s"})
        assert wait.status_code == 400, wait.text
        assert wait.json()["code"] == 9
        assert "TestLM failed to load: weights are corrupt)" in wait.json()["message"]
    finally:
        http.post("/unpublish", json={"model": model})
