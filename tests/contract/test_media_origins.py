"""Media origins on every backend: record, read from another node, refresh, expire, remove."""

from __future__ import annotations

from tests.contract.test_broker_contract import started
from tests.polling import until_async


async def test_media_origins_record_refresh_expire_and_remove(broker_factory):
    a, b = broker_factory("a"), broker_factory("b")
    await started(a)
    await started(b)
    assert await b.media_origins("app/r1") == {}
    await a.set_media_origin("app/r1", "host", b'{"node":"a"}', ttl_ms=30_000)
    await a.set_media_origin("app/r1", "co", b'{"node":"a"}', ttl_ms=300)
    await b.set_media_origin("app/r2", "host", b'{"node":"b"}', ttl_ms=30_000)
    assert await b.media_origins("app/r1") == {"host": b'{"node":"a"}', "co": b'{"node":"a"}'}
    assert await a.media_origins("app/r2") == {"host": b'{"node":"b"}'}

    async def co_expired() -> bool:
        return set(await b.media_origins("app/r1")) == {"host"}

    await until_async(co_expired, 10.0, "the co-host's entry to expire")
    # The host re-published on b: a's late removal of its own old entry leaves b's.
    await b.set_media_origin("app/r1", "host", b'{"node":"b"}', ttl_ms=30_000)
    await a.set_media_origin("app/r1", "host", b'{"node":"a"}', ttl_ms=0)
    assert await a.media_origins("app/r1") == {"host": b'{"node":"b"}'}
    await b.set_media_origin("app/r1", "host", b'{"node":"b"}', ttl_ms=0)
    assert await a.media_origins("app/r1") == {}
    assert await a.media_origins("app/r2") == {"host": b'{"node":"b"}'}
