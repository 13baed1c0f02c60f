"""Schema-driven fuzzing of the OpenAI-compatible routes: see _fuzz.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import requests

from gateway.launch.stack import Stack
from tests.e2e.fuzz._fuzz import FUZZED, OPENAI_REGEX, check, schema

if TYPE_CHECKING:  # an alias schemathesis defines for type checkers only
    from schemathesis.specs.openapi.schemas import OpenApiCase


# Each route sends up to ~EXAMPLES requests (some render images on CPU): on a loaded 2-core
# machine that outgrows the suite's 120 s per-test hang guard, which is not what this tests.
@pytest.mark.timeout(600)
@schema.include(path_regex=OPENAI_REGEX).parametrize()
@FUZZED
def test_fuzz_openai(case: OpenApiCase, stack: Stack, session: requests.Session) -> None:
    check(case, stack, session)
