"""tests/container needs a container engine and built images: `make container-test` runs it
(with SAXGW_CONTAINER_TEST=1); plain `pytest` and `make test` leave it out."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

from gateway.common.logs import JsonFormatter, TextFormatter

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
