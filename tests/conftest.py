"""tests/container needs a container engine and built images: `make container-test` runs it
(with SAXGW_CONTAINER_TEST=1); plain `pytest` and `make test` leave it out."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

from gateway.common.logs import JsonFormatter, TextFormatter
from gateway.launch import processes

collect_ignore = [] if os.environ.get("SAXGW_CONTAINER_TEST") == "1" else ["container"]


@pytest.fixture(autouse=True)
def _root_logger_as_it_was() -> Iterator[None]:
    """Tests that run `saxgw`'s main() in-process configure the root logger (JSON off a
    terminal). Left in place, a later test in the same process that reads what the CLI
    writes to stderr saw JSON records instead of its lines: which test ran first decided.
    Only `logs.configure`'s handler is taken away: pytest's own come and go each phase."""
    root = logging.getLogger()
    level = root.level
    yield
    for handler in list(root.handlers):
        if isinstance(handler.formatter, JsonFormatter | TextFormatter):
            root.removeHandler(handler)
    root.setLevel(level)


class ClosedLoopCallbacks(logging.Filter):
    """Drops one record the test harness makes and the product cannot: pytest-asyncio gives
    each test its own event loop, and grpc.aio's poller hands a call's completion to the loop
    the call was made on. A call an earlier test left open (a channel closed by the garbage
    collector, a server killed after its loop ended) completes later, and the then-current
    loop logs 'Exception in callback PollerCompletionQueue._handle_events' with
    RuntimeError('Event loop is closed') through the "asyncio" logger. A test that asserts
    every record it captured then failed on which tests had run before it in its worker (CI,
    stop 46). The gateway runs one loop per process, so the record can only come from here.

    The one source found (the embedded cell admin's wait on each model server's channel,
    cancelled at close, and a Join cancelled during its dial-back) is gone: with this filter
    off, tests/unit and tests/integration in one process each logged no such record
    (tests/_closed_loops.py sees it; test_cell_admin.py's tests of both). Kept as insurance
    for tests/e2e and tests/faults, of which only the files using grpc.aio in-process were
    run that way."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (
            isinstance(error, RuntimeError)
            and str(error) == "Event loop is closed"
            and "PollerCompletionQueue._handle_events" in record.getMessage()
        )


@pytest.fixture(autouse=True, scope="session")
def _no_records_of_closed_test_loops() -> Iterator[None]:
    asyncio_logger, dropper = logging.getLogger("asyncio"), ClosedLoopCallbacks()
    asyncio_logger.addFilter(dropper)
    yield
    asyncio_logger.removeFilter(dropper)


@pytest.fixture(autouse=True, scope="session")
def _ports_of_this_worker() -> Iterator[None]:
    """Each pytest-xdist worker picks free ports from its own slice of the range. A port is
    found free seconds before the stack under test binds it, and a port another worker had
    found free the same way could be busy by then, and `saxgw up|serve` refuses a busy port
    (exit 1): the likely cause of one such exit in a full run, whose stderr was not kept."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    whole = processes._port_candidates()
    if not worker.startswith("gw") or count < 2 or not whole:
        yield
        return
    index, size = int(worker[2:]), len(whole) // count
    mine = whole[index * size : (index + 1) * size]
    original = processes._port_candidates
    processes._port_candidates = lambda: mine
    try:
        yield
    finally:
        processes._port_candidates = original
