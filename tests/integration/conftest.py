"""Fixtures shared by the integration tests."""

from tests.integration._client_fixtures import cell, client, lm  # noqa: F401
