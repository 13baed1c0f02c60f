"""Fixtures shared by the integration tests."""

from tests.integration._cell_fixtures import embedded_cell, inproc_cell  # noqa: F401
from tests.integration._client_fixtures import cell, client, lm  # noqa: F401
