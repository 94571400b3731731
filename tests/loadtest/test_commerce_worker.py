"""The commerce load generator: unanswered requests are resent once due, answered ones never; rate_limited waits."""

from __future__ import annotations

import asyncio
import multiprocessing
import time

from loadtest.commerce_worker import CommerceConfig, CommerceWorker, User


def _worker() -> CommerceWorker:
    _parent, child = multiprocessing.Pipe()
    cfg = CommerceConfig(
        index=0,
        users=3,
        first_user=0,
        user_prefix="u",
        targets=[("127.0.0.1", 1)],
        room="r",
        app_key="k",
        app_secret="s",
        connect_rate=1.0,
    )
    worker = CommerceWorker(child, cfg)
    worker.op, worker.params = "lottery.enter", {"lottery": "l-1"}
    return worker


async def test_only_unanswered_requests_are_resent_each_once_per_timeout() -> None:
    worker = _worker()
    users = [User(worker, "127.0.0.1", 1, "/v1/ws", f"u{i}") for i in range(3)]  # never connected
    worker.users = users
    for u in users:
        worker._new_attempt(u)
    answered = users[1]
    answered.pending.clear()  # as on_text does when the reply arrives
    due = time.perf_counter_ns() + 1

    worker.resend_stale(due)

    assert worker.outcomes["timeout"] == 2 and worker.retries == 2
    assert [len(u.pending) for u in users] == [1, 0, 1]  # the resends, under new request ids
    assert all(a.sends == 2 for _, a in users[0].pending.values())
    worker.resend_stale(due)  # the resends are newer than the limit: nothing more
    assert worker.retries == 2
    worker.resend_stale(time.perf_counter_ns() + 1)
    assert worker.retries == 4 and len(worker.sent_order) == 2


async def test_rate_limited_replies_are_resent_after_the_wait_and_never_make_an_attempt_give_up() -> None:
    # A buyer kept busy by its other in-flight attempts can be limited many times in a row;
    # counting those toward the six sends made a fresh-clone CI run report "1 gave up".
    worker = _worker()
    worker.op, worker.params = "sale.buy", {"sale": "s-1"}
    u = User(worker, "127.0.0.1", 1, "/v1/ws", "u0")
    worker.users = [u]
    worker._new_attempt(u)
    limited = {"ok": False, "error": {"code": "rate_limited", "retry_after_ms": 1}}
    for _ in range(10):
        ((rid, (_sent, attempt)),) = u.pending.items()
        u.pending.pop(rid)
        worker.on_reply(u, attempt, limited, 5)
        assert u.blocked_until > 0 and not u.pending  # nothing sent before the wait is over
        await asyncio.sleep(0.01)
    ((rid, (_sent, attempt)),) = u.pending.items()
    assert attempt.sends == 1 and worker.limited_resends == 10 and worker.retries == 0
    u.pending.pop(rid)
    worker.on_reply(u, attempt, {"ok": True, "data": {"order": {"id": "o-1"}}}, 5)
    assert worker.gave_up == 0 and worker.open_attempts == 0 and worker.acked == [["u0", "o-1", attempt.cid]]
    assert worker.outcomes == {"rate_limited": 10, "ok": 1}
