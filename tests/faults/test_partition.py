"""A node cut off by a network partition, then restored (issue 13).

Node H runs in this network namespace, node N in its own one, joined to ours by a veth pair;
the test's Redis Cluster listens on our end of the veth (and announces that address), so N
reaches Redis only through the link. A lottery with an automatic draw and a flash sale run in
one room with viewers and buyers on both nodes; the namespace's end of the link goes down
(``ip link set … down``) while the lottery is open and the sale is selling, stays down past
the lottery's deadline, and comes back up. Checked afterwards:

- the lottery drew exactly once (one ``lottery.drawn`` in the history and for every client,
  the audit is the same from both nodes and recomputes: ``verify_draw`` and an independent
  recomputation), though N watched the same deadline and was cut off around it;
- the sale's orders reconcile: sold == stock exactly, every order acknowledged to a buyer is
  listed unchanged, every listed order was acknowledged (each cid was settled by retrying it,
  through the other node when N was unreachable), nobody over the limit;
- no room is stuck: new clients join and send through both nodes and receive each other's
  messages; N's ``/readyz`` (polled from inside its namespace) reported the outage and
  recovered; neither node logged a traceback (the first runs found one per socket the
  partition broke: tests/integration/test_peer_reset.py).
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from roomserver.client import RoomClient
from roomserver.core.lottery import verify_draw
from tests.commerce.draw_check import recompute_winners
from tests.commerce.sdk_buyers import Buyer, shop, unsettled_cids
from tests.media.netns import Namespace, namespace
from tests.redis_servers import RedisCluster
from tests.server_fixtures import Recorder
from tests.server_procs import ServerProcess, token

VIEWERS_EACH = 8  # per node; every other one enters the lottery
BUYERS_EACH = 25  # per node
STOCK = 100
LIMIT = 3
WANTS = LIMIT + 1  # 50 buyers x 4 tries > stock: the sale sells out
CUT_AT_ORDERS = 15  # the sale is selling when the link goes down
LOTTERY_MS = 10_000  # open when the link goes down (asserted), drawn while it is down
HOLD_AFTER_DEADLINE_S = 3.0  # the link stays down this long after the lottery's deadline
BUDGET_S = 90.0  # bounds, not waits: generous for a loaded machine
UNSETTLED = {"unavailable", "timeout", "disconnected", "rate_limited", "not_joined"}

READYZ_PROBE = """
import sys, time, urllib.error, urllib.request
while True:
    t = time.time()
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    except OSError:
        status = 0
    print(f"{t:.3f} {status}", flush=True)
    time.sleep(0.2)
"""


@pytest.fixture
def partitioned(tmp_path: Path) -> Iterator[tuple[Namespace, RedisCluster]]:
    """A namespace and a Redis Cluster reachable from it only over its veth link."""
    with namespace("part", 214) as ns:
        cluster = None
        for attempt in range(3):  # a port may be taken between probing and binding
            cluster = RedisCluster(tmp_path / f"redis{attempt}")
            for n in cluster.nodes:
                # Protected mode refuses non-loopback clients without a password; the veth's
                # address is reachable only from this test's namespace.
                n.extra += ["--bind", "127.0.0.1", ns.outer_ip, "--cluster-announce-ip", ns.outer_ip]
                n.extra += ["--protected-mode", "no"]
            try:
                cluster.create()
                break
            except (RuntimeError, subprocess.CalledProcessError):
                cluster.kill_all()
                if attempt == 2:
                    raise
        assert cluster is not None
        try:
            yield ns, cluster
        finally:
            cluster.kill_all()


@pytest.fixture
def nodes(partitioned, unique_prefix, tmp_path) -> Iterator[tuple[ServerProcess, ServerProcess, Namespace]]:
    ns, cluster = partitioned
    seeds = ",".join(f"{ns.outer_ip}:{n.port}" for n in cluster.nodes)
    common = ("--redis-cluster", seeds, "--redis-prefix", unique_prefix, "--flush-ms", "20")
    here = ServerProcess(*common, log_dir=tmp_path)
    cut = ServerProcess(*common, log_dir=tmp_path, host=ns.inner_ip, wrap=ns.command())
    try:
        here.start()
        cut.start()
        yield here, cut, ns
    finally:
        cut.stop()
        here.stop()


class ReadyzLog:
    """``/readyz`` of the cut node, polled from inside its namespace (the test cannot reach
    it while the link is down): ``(time, status)`` lines, status 0 when there was no answer."""

    def __init__(self, ns: Namespace, url: str, path: Path) -> None:
        self.path = path
        self.out = path.open("wb")
        self.proc = subprocess.Popen(
            ns.command(sys.executable, "-c", READYZ_PROBE, f"{url}/readyz"), stdout=self.out
        )

    def statuses(self, since: float = 0.0) -> list[int]:
        rows = [line.split() for line in self.path.read_text().splitlines()]
        return [int(s) for t, s in rows if float(t) >= since]

    async def until(self, status: int, since: float, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while status not in self.statuses(since):
            assert time.monotonic() < deadline, f"/readyz never {status}: {self.statuses(since)[-10:]}"
            await asyncio.sleep(0.1)
        return time.time()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(5)
        self.out.close()


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    headers = {"Authorization": f"Bearer {token('backend', 'admin')}"}
    async with session.get(url, headers=headers) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_a_partitioned_node_neither_draws_twice_nor_oversells_nor_sticks(nodes, tmp_path):
    here, cut, ns = nodes
    room = "part-" + uuid.uuid4().hex[:8]
    rng = random.Random(13)
    # A short connect timeout: a client whose node is unreachable tries the next URL soon.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=3)
    readyz = ReadyzLog(ns, cut.url, tmp_path / "readyz.log")
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:

        def client(first: ServerProcess, user: str, role: str = "viewer") -> RoomClient:
            # Every client may go on through the other node; a heartbeat of 2 s notices a
            # socket that stopped answering (the link is down: no FIN, no RST).
            other = cut if first is here else here
            return RoomClient(
                [first.url, other.url], token(user, role), session=session, request_timeout=3, heartbeat=2
            )

        host = client(here, "host-1", "host")
        viewers = [
            client(node, f"v{n}{i}") for n, node in (("h", here), ("c", cut)) for i in range(VIEWERS_EACH)
        ]
        buyers = [
            Buyer(f"b{n}{i}", client(node, f"b{n}{i}"))
            for n, node in (("h", here), ("c", cut))
            for i in range(BUYERS_EACH)
        ]
        everyone = [host, *viewers, *(b.client for b in buyers)]
        shopping: asyncio.Future | None = None
        try:
            for c in everyone:
                await c.connect()
                await c.join(room)
            recorders = [Recorder(c) for c in [host, *viewers]]
            lot = (await host.lottery_create(room, prize="Kettle", winners=3, duration_ms=LOTTERY_MS))[
                "lottery"
            ]
            entrants = viewers[::2]
            assert all(
                r == {"entered": True}
                for r in await asyncio.gather(*(v.lottery_enter(room, lot["id"]) for v in entrants))
            )
            entered = sorted(f"v{n}{i}" for n in "hc" for i in range(0, VIEWERS_EACH, 2))
            sale = (
                await host.sale_create(
                    room,
                    product={"id": "p-13", "title": "Kettle", "price_cents": 2900},
                    price_cents=2900,
                    stock=STOCK,
                    limit_per_user=LIMIT,
                )
            )["sale"]
            deadline = time.monotonic() + BUDGET_S

            shopping = asyncio.ensure_future(
                asyncio.gather(*(shop(b, room, sale["id"], WANTS, deadline, UNSETTLED, rng) for b in buyers))
            )
            while sum(len(b.acked()) for b in buyers) < CUT_AT_ORDERS:
                assert time.monotonic() < deadline and not shopping.done(), "the sale did not get under way"
                await asyncio.sleep(0.01)

            # -- the partition --------------------------------------------------------------
            cut_at = time.time()
            ns.link(up=False)
            sold_at_cut = sum(len(b.acked()) for b in buyers)
            assert cut_at * 1000 < lot["closes_at"], "the lottery closed before the link went down"
            assert sold_at_cut < STOCK, "sold out before the link went down"
            try:
                outage_seen = await readyz.until(503, cut_at, 30)
                # The draw happens while N is cut off: H's clients see it.
                await recorders[0].wait("lottery.drawn", timeout=BUDGET_S)
                await asyncio.sleep(max(0.0, lot["closes_at"] / 1000 + HOLD_AFTER_DEADLINE_S - time.time()))
            finally:
                restored_at = time.time()
                ns.link(up=True)
            recovered_at = await readyz.until(200, restored_at, 30)
            await asyncio.wait_for(shopping, BUDGET_S)
            assert unsettled_cids(buyers, UNSETTLED) == [], "attempts that never settled"

            # -- the lottery drew once ----------------------------------------------------------
            await asyncio.sleep(2.0)  # N's deadline loop ran several times since it came back
            drawn = [rec.named("lottery.drawn", room) for rec in recorders]
            assert all(len(d) == 1 for d in drawn), [len(d) for d in drawn]
            assert all(d[0] == drawn[0][0] for d in drawn), "not the same lottery.drawn everywhere"
            history = await get_json(session, f"{cut.url}/v1/rooms/{room}/history?since=0&limit=1000")
            assert [e["ev"] for e in history["events"]].count("lottery.drawn") == 1
            audits = [
                await get_json(session, f"{node.url}/v1/rooms/{room}/lotteries/{lot['id']}")
                for node in (here, cut)
            ]
            assert audits[0] == audits[1]
            audit = audits[0]
            assert audit["entrants"] == entered and audit["winners"] == drawn[0][0]["data"]["winners"]
            assert verify_draw(
                audit["seed"], audit["seed_hash"], audit["entrants"], audit["winners"], max_winners=3
            )
            assert recompute_winners(audit) == audit["winners"]

            # -- the sale's stock is exact --------------------------------------------------------
            acked = {o["id"]: o for b in buyers for o in b.acked().values()}
            for b in buyers:  # every cid has one order at most, whatever its retries were told
                for cid, answers in b.answers.items():
                    orders = [x for code, x in answers if code == "ok"]
                    assert all(o == orders[0] for o in orders), (b.user, cid, answers)
            listings = [
                await get_json(session, f"{node.url}/v1/rooms/{room}/sales/{sale['id']}/orders")
                for node in (here, cut)
            ]
            assert listings[0] == listings[1]
            listing = listings[0]
            listed = {o["id"]: o for o in listing["orders"]}
            assert listing["problems"] == []
            assert listing["sold"] == STOCK == sum(o["qty"] for o in listed.values())
            assert listing["sale"]["left"] == 0
            assert listed == acked, (
                f"{len(set(acked) - set(listed))} acknowledged orders not listed, "
                f"{len(set(listed) - set(acked))} listed orders never acknowledged"
            )
            assert max(Counter(o["user"] for o in listed.values()).values()) <= LIMIT
            codes = Counter(code for b in buyers for a in b.answers.values() for code, _ in a)
            assert set(codes) <= {"ok", "sold_out", "limit_reached"} | UNSETTLED, codes

            # -- no stuck room: join and send through both nodes, each sees the other ----------
            async with (
                RoomClient(here.url, token("late-h"), reconnect=False) as late_h,
                RoomClient(cut.url, token("late-c"), reconnect=False) as late_c,
            ):
                got_h, got_c = Recorder(late_h), Recorder(late_c)
                await late_h.join(room)
                await late_c.join(room)
                assert (await late_c.send_barrage(room, "from the cut node"))["seq"]
                assert (await late_h.send_barrage(room, "from the other node"))["seq"]
                await got_h.wait("barrage", lambda e: e["data"]["text"] == "from the cut node", timeout=30)
                await got_c.wait("barrage", lambda e: e["data"]["text"] == "from the other node", timeout=30)
            assert readyz.statuses(recovered_at)[-1] == 200

            # The sockets the partition broke were disconnects, not failures (test_peer_reset.py).
            for node in (here, cut):
                assert "Traceback" not in node.log_path.read_text(), node.log_path.read_text()[-3000:]
            # The partition was real: every client that started on N went on through H.
            started_on_cut = [*viewers[VIEWERS_EACH:], *(b.client for b in buyers[BUYERS_EACH:])]
            assert all(c.reconnects > 0 for c in started_on_cut)
            moved = sum(c.reconnects > 0 for c in everyone)
            print(
                f"\npartition: link down {restored_at - cut_at:.1f} s ({sold_at_cut} orders before); "
                f"/readyz 503 after {outage_seen - cut_at:.1f} s, 200 again {recovered_at - restored_at:.1f} s "
                f"after the link came back; {moved} of {len(everyone)} clients reconnected; "
                f"lottery drawn once ({len(entered)} entrants); {len(listed)} orders = stock; answers {dict(codes)}"
            )
        finally:
            if shopping is not None and not shopping.done():
                shopping.cancel()
                await asyncio.gather(shopping, return_exceptions=True)
            readyz.stop()
            await asyncio.gather(*(c.close() for c in everyone), return_exceptions=True)
