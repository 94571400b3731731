"""``AnalyticsStore``: the store's facets over one database.

Each facet owns its tables (its migrations in ``migrations/``) and its SQL, and
answers for them when a user exercises their rights (PIPL/GDPR): ``export_user``
returns what the facet holds on the user, ``erase_user`` deletes it inside the
one transaction that erases the user everywhere. A facet that derives figures
from the behaviour log adds an ``EventLog.on_ingest`` step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from roomserver.store.db import Database, Tx, open_database
from roomserver.store.events import EventLog
from roomserver.store.loyalty import LoyaltyStore
from roomserver.store.reports import ShowReports


class Facet(Protocol):
    name: str

    async def export_user(self, app: str, user: str) -> Any:
        """Everything this facet holds on ``user`` of ``app``, JSON-ready."""

    async def erase_user(self, tx: Tx, app: str, user: str) -> None:
        """Delete it (inside the erasure's transaction)."""


class AnalyticsStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.events = EventLog(db)
        self.loyalty = LoyaltyStore(db)
        self.events.on_ingest.append(self.loyalty.step)
        self.reports = ShowReports(db, self.events)
        self.facets: list[Facet] = [self.events, self.loyalty, self.reports]

    @classmethod
    async def open(cls, *, url: str | None = None, data_dir: Path | None = None) -> AnalyticsStore:
        """Connect and bring the schema up to date."""
        db = await open_database(url=url, data_dir=data_dir)
        await db.migrate()
        return cls(db)

    async def export_user(self, app: str, user: str) -> dict[str, Any]:
        return {facet.name: await facet.export_user(app, user) for facet in self.facets}

    async def erase_user(self, app: str, user: str) -> None:
        async with self.db.transaction() as tx:
            for facet in self.facets:
                await facet.erase_user(tx, app, user)

    async def close(self) -> None:
        await self.db.close()
