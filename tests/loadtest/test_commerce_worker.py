"""The commerce load generator's retry sweep: unanswered requests are resent once due, answered ones never."""

from __future__ import annotations

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
