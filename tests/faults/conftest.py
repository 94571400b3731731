"""Fault tests (issue 13): real server processes and Redis servers broken on purpose.

They take about a minute, so `make test` leaves them out (`-m "not faults"` in
pyproject.toml's addopts) and `make test-faults` runs them; `.ci/run` runs both."""

from __future__ import annotations

import pytest

from tests.cluster.conftest import two_servers  # noqa: F401  (the fixture, for these tests too)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in str(item.fspath):
            item.add_marker(pytest.mark.faults)
