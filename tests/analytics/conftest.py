"""Fixtures shared by the store tests: each runs on both engines, SQLite in a
temporary directory and PostgreSQL (the session's server, tests/pg_server.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from roomserver.store.db import Database, open_database


@pytest.fixture(params=["sqlite", "pg"])
def store_args(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Where the store lives: ``open_database`` / ``AnalyticsStore.open`` keywords."""
    if request.param == "pg":
        return {"url": request.getfixturevalue("postgres_url")}
    return {"data_dir": tmp_path}


@pytest.fixture
async def db(store_args: dict[str, Any]) -> AsyncIterator[Database]:
    """A migrated database on each engine."""
    database = await open_database(**store_args)
    await database.migrate()
    yield database
    await database.close()
