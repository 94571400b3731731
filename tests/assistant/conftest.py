"""The real server for the assistant's integration tests (tests/integration's fixtures)."""

from tests.integration.conftest import make_server, room, server  # noqa: F401
