"""The JavaScript SDK's delivery logic, run in Chromium.

Against the real server where the server can be made to do the thing (token expiry, replay
with the same cid). Where it cannot be made to misbehave on demand (a hole in `seq`, a
duplicate, a lost history), a scripted socket plays the server's side of the wire protocol.
"""

from __future__ import annotations

import pytest

from tests.e2e.test_live_room import T

pytestmark = pytest.mark.e2e

# A WebSocket stand-in driven by the test: records frames, lets the test push server frames.
SCRIPTED_SOCKET = """
window.ScriptedSocket = class {
  constructor(url) {
    this.url = url; this.sent = []; ScriptedSocket.all.push(this);
    setTimeout(() => this.onopen && this.onopen(), 0);
  }
  send(text) { const m = JSON.parse(text); this.sent.push(m); ScriptedSocket.onsend(this, m); }
  push(...msgs) { this.onmessage && this.onmessage({ data: JSON.stringify(msgs) }); }
  close(code = 1000, reason = "") { setTimeout(() => this.onclose && this.onclose({ code, reason }), 0); }
};
ScriptedSocket.all = [];
ScriptedSocket.onsend = () => {};
"""


async def sdk_page(pages, room: str):
    page = await pages.open("viewer", room, "probe")
    await page.evaluate(SCRIPTED_SOCKET)
    return page


async def test_duplicates_dropped_and_a_gap_filled_by_resume_in_order(pages, room) -> None:
    page = await sdk_page(pages, room)
    result = await page.evaluate(
        """async () => {
          const { RoomClient } = await import('/sdk/roomserver.js');
          const got = [], gaps = [];
          ScriptedSocket.onsend = (ws, m) => {
            if (m.op === 'room.join') ws.push({ re: m.id, ok: true, data: { room: { id: 'r', seq: 10, epoch: 'e1', publishers: [] } } });
            if (m.op === 'room.resume') {
              // The server replies, then replays what was missed.
              setTimeout(() => ws.push(
                { re: m.id, ok: true, data: { replayed: 1 } },
                { ev: 'barrage', room: 'r', seq: 12, ts: 1, data: { text: 'b12' } }), 20);
            }
          };
          const c = new RoomClient({ url: location.origin, token: 'x.e30.x', WebSocket: ScriptedSocket });
          c.on('barrage', (d, meta) => got.push([meta.seq, d.text]));
          c.on('gap', (g) => gaps.push(g));
          await c.connect();
          await c.join('r');
          const ws = ScriptedSocket.all[0];
          const ev = (seq) => ({ ev: 'barrage', room: 'r', seq, ts: 1, data: { text: 'b' + seq } });
          ws.push(ev(9), ev(10), ev(11), ev(11));       // before the snapshot, at it, new, duplicate
          ws.push(ev(13), { ev: 'online', room: 'r', ts: 1, data: { count: 3 } }, ev(14));  // 12 is missing
          await new Promise((r) => setTimeout(r, 200));
          const resume = ws.sent.find((m) => m.op === 'room.resume');
          return { got, gaps, resume: resume && { since: resume.since, epoch: resume.epoch }, last: c.lastSeq('r') };
        }"""
    )
    assert result["got"] == [[11, "b11"], [12, "b12"], [13, "b13"], [14, "b14"]]
    assert result["gaps"] == [{"room": "r", "from": 12, "to": 12}]
    assert result["resume"] == {"since": 11, "epoch": "e1"}
    assert result["last"] == 14


async def test_history_gone_rejoins_and_emits_resync(pages, room) -> None:
    page = await sdk_page(pages, room)
    result = await page.evaluate(
        """async () => {
          const { RoomClient } = await import('/sdk/roomserver.js');
          let joins = 0;
          ScriptedSocket.onsend = (ws, m) => {
            if (m.op === 'room.join') {
              joins++;
              const snap = joins === 1 ? { seq: 50, epoch: 'old' } : { seq: 3, epoch: 'new' };
              ws.push({ re: m.id, ok: true, data: { room: { id: 'r', publishers: [], ...snap } } });
            }
            if (m.op === 'room.resume')
              ws.push({ re: m.id, ok: false, error: { code: 'history_gone', message: 'epoch changed' } });
          };
          const c = new RoomClient({ url: location.origin, token: 'x.e30.x', WebSocket: ScriptedSocket,
                                     minReconnectDelayMs: 10 });
          const resyncs = [], got = [];
          c.on('resync', (d) => resyncs.push([d.room, d.snapshot.room.epoch]));
          c.on('barrage', (d, meta) => got.push(meta.seq));
          await c.connect();
          await c.join('r');
          ScriptedSocket.all[0].close(4008, 'slow consumer');
          await new Promise((r) => setTimeout(r, 300));
          const ws = ScriptedSocket.all[1];
          ws.push({ ev: 'barrage', room: 'r', seq: 3, ts: 1, data: {} }, { ev: 'barrage', room: 'r', seq: 4, ts: 1, data: {} });
          return { resyncs, got, sockets: ScriptedSocket.all.length, state: c.state, last: c.lastSeq('r') };
        }"""
    )
    assert result["resyncs"] == [["r", "new"]]
    assert result["got"] == [4]  # seq restarted with the new epoch; 3 is in the snapshot
    assert result["sockets"] == 2
    assert result["state"] == "open"
    assert result["last"] == 4


async def test_buy_retries_with_one_cid_and_kicked_means_no_reconnect(pages, room) -> None:
    page = await sdk_page(pages, room)
    result = await page.evaluate(
        """async () => {
          const { RoomClient } = await import('/sdk/roomserver.js');
          const buys = [];
          ScriptedSocket.onsend = (ws, m) => {
            if (m.op !== 'sale.buy') return;
            buys.push(m.cid);
            if (buys.length === 1) ws.push({ re: m.id, ok: false, error: { code: 'unavailable', message: 'bus down', retry_after_ms: 10 } });
            else if (buys.length === 2) ws.close(1006, '');   // the reply is lost with the connection
            else ws.push({ re: m.id, ok: true, data: { order: { id: 'o1', qty: m.qty } } });
          };
          const c = new RoomClient({ url: location.origin, token: 'x.e30.x', WebSocket: ScriptedSocket,
                                     minReconnectDelayMs: 10 });
          await c.connect();
          const reply = await c.buy('r', 's1', 2);
          const sockets = ScriptedSocket.all.length;
          ScriptedSocket.all.at(-1).close(4003, 'kicked');
          await new Promise((r) => setTimeout(r, 300));
          return { reply, cids: buys, sockets, after: ScriptedSocket.all.length, state: c.state };
        }"""
    )
    assert result["reply"] == {"order": {"id": "o1", "qty": 2}}
    assert len(result["cids"]) == 3 and len(set(result["cids"])) == 1
    assert result["sockets"] == 2
    assert result["after"] == 2
    assert result["state"] == "closed"


async def test_token_expiry_gets_a_new_token_and_resumes(pages, server, bots, room) -> None:
    page = await pages.open("viewer", room, "probe")
    await page.evaluate(
        """async ([short, room]) => {
          const { RoomClient } = await import('/sdk/roomserver.js');
          window.provided = 0;
          const c = new RoomClient({
            url: location.origin, token: short,
            tokenProvider: async () => {
              provided++;
              const r = await fetch('/dev/token', { method: 'POST', body: JSON.stringify({ user: 'exp', role: 'viewer' }) });
              return (await r.json()).token;
            },
          });
          window.c2 = c; window.texts = []; window.disconnects = [];
          c.on('barrage', (d) => texts.push(d.text));
          c.on('disconnected', (d) => disconnects.push(d.code));
          await c.connect();
          await c.join(room);
        }""",
        [server.token("exp", "viewer", ttl_s=2), room],
    )
    await page.wait_for_function("() => disconnects.length === 1", timeout=T)
    bot = await bots("b1")
    await bot.request("room.join", room)
    await bot.request("barrage.send", room, text="after expiry")
    await page.wait_for_function("() => texts.includes('after expiry')", timeout=T)
    assert await page.evaluate("() => [disconnects, provided, c2.state]") == [[4001], 1, "open"]


async def test_requests_wait_until_rooms_are_restored_after_a_reconnect(pages, room) -> None:
    # The scripted server answers an op for a room this socket has not joined with
    # not_joined, as the real one does. Socket 2's resume fails (bus unavailable): the
    # client must drop it and try again; socket 3's resume is history_gone: re-join first.
    page = await sdk_page(pages, room)
    result = await page.evaluate(
        """async () => {
          const { RoomClient } = await import('/sdk/roomserver.js');
          const joined = new Map();  // socket -> joined
          ScriptedSocket.onsend = (ws, m) => {
            const n = ScriptedSocket.all.indexOf(ws) + 1;
            const later = (...msgs) => setTimeout(() => ws.push(...msgs), 30);
            if (m.op === 'room.join') {
              joined.set(ws, true);
              later({ re: m.id, ok: true, data: { room: { id: 'r', seq: n, epoch: 'e' + n, publishers: [] } } });
            } else if (m.op === 'room.resume') {
              if (n === 2) later({ re: m.id, ok: false, error: { code: 'unavailable', message: 'bus down', retry_after_ms: 1000 } });
              else later({ re: m.id, ok: false, error: { code: 'history_gone', message: 'epoch changed' } });
            } else if (m.op === 'barrage.send') {
              if (!joined.get(ws)) ws.push({ re: m.id, ok: false, error: { code: 'not_joined', message: 'join first' } });
              else ws.push({ re: m.id, ok: true, data: { seq: 9 } });
            }
          };
          const c = new RoomClient({ url: location.origin, token: 'x.e30.x', WebSocket: ScriptedSocket,
                                     minReconnectDelayMs: 10 });
          const states = [], disconnects = [];
          c.on('state', (d) => states.push(d.state));
          c.on('disconnected', (d) => disconnects.push(d.code));
          await c.connect();
          await c.join('r');
          ScriptedSocket.all[0].close(4008, 'slow consumer');
          await new Promise((r) => setTimeout(r, 0));
          let reply, error;
          try { reply = await c.sendBarrage('r', 'queued while reconnecting'); } catch (e) { error = e.code; }
          const ops = ScriptedSocket.all.map((ws) => ws.sent.map((m) => m.op));
          return { reply, error, ops, disconnects, state: c.state, states, last: c.lastSeq('r') };
        }"""
    )
    assert result["error"] is None and result["reply"] == {"seq": 9}
    assert result["ops"] == [
        ["room.join"],
        ["room.resume"],
        ["room.resume", "room.join", "barrage.send"],
    ]
    assert result["disconnects"] == [4008, 1000]  # the socket whose room was not restored
    assert result["state"] == "open" and result["last"] == 3
    assert "open" not in result["states"][2:-1]  # never "open" while rooms were not restored


async def test_every_cid_op_method_sends_a_cid_and_unavailable_errors_carry_it(pages, room) -> None:
    page = await sdk_page(pages, room)
    result = await page.evaluate(
        """async () => {
          const { RoomClient } = await import('/sdk/roomserver.js');
          const sent = [];
          ScriptedSocket.onsend = (ws, m) => {
            sent.push(m);
            if (m.op === 'gift.send' && m.text === undefined && sent.filter((x) => x.op === 'gift.send').length === 1)
              ws.push({ re: m.id, ok: false, error: { code: 'unavailable', message: 'bus down', retry_after_ms: 1 } });
            else if (m.op === 'barrage.send' && m.text === 'fails')
              ws.push({ re: m.id, ok: false, error: { code: 'unavailable', message: 'bus down', retry_after_ms: 1 } });
            else ws.push({ re: m.id, ok: true, data: {} });
          };
          const c = new RoomClient({ url: location.origin, token: 'x.e30.x', WebSocket: ScriptedSocket });
          await c.connect();
          await c.sendBarrage('r', 'hi');
          await c.sendGift('r', 'rose');                       // unavailable once, retried
          await c.buy('r', 's1');
          await c.claimCoupon('r', 'k1');
          await c.redeemPoints('tea');                         // no room: points are the app's
          await c.request('barrage.send', 'r', { text: 'raw' });
          await c.request('barrage.send', 'r', { text: 'mine', cid: 'my-cid' });
          let err;
          try { await c.sendBarrage('r', 'fails'); } catch (e) { err = { code: e.code, cid: e.cid }; }
          const redeem = sent.find((m) => m.op === 'points.redeem');
          return { sent: sent.map((m) => [m.op, m.text ?? null, m.cid ?? null]), err, redeemRoom: redeem.room ?? null };
        }"""
    )
    sent = result["sent"]
    assert all(cid for _, text, cid in sent if text != "raw"), sent
    assert ["barrage.send", "raw", None] in sent  # request() sends its params as given
    gifts = [cid for op, _, cid in sent if op == "gift.send"]
    assert len(gifts) == 2 and gifts[0] == gifts[1]  # the retry reused the cid
    assert ["barrage.send", "mine", "my-cid"] in sent
    fails = [cid for op, text, cid in sent if text == "fails"]
    assert len(fails) == 2 and len(set(fails)) == 1  # sendBarrage retries once, same cid
    assert result["err"] == {"code": "unavailable", "cid": fails[0]}
    assert result["redeemRoom"] is None and any(op == "points.redeem" and cid for op, _, cid in sent)


async def test_room_handle_delivers_only_its_rooms_events_and_binds_ops(pages, server, room) -> None:
    # Two rooms on one real connection: each handle's listeners see their own room only, its
    # ops go to its room, `off` stops delivery, and a handle is one object per room id.
    other = room + "-b"
    page = await pages.open("viewer", room, "probe")
    result = await page.evaluate(
        """async ([token, a, b]) => {
          const { RoomClient, Room } = await import('/sdk/roomserver.js');
          const c = new RoomClient({ url: location.origin, token });
          await c.connect();
          const ra = c.room(a), rb = c.room(b);
          const got = { a: [], b: [], bAll: [], offed: [] };
          ra.on('barrage', (d, m) => got.a.push([m.room, d.text]));
          rb.on('barrage', (d, m) => got.b.push([m.room, d.text]));
          rb.on('*', (d, m) => m.ev === 'barrage' && got.bAll.push(d.text));
          const offed = (d) => got.offed.push(d.text);
          rb.on('barrage', offed);
          const snapA = await ra.join();
          await rb.join();
          await ra.sendBarrage('to a');
          await rb.sendBarrage('to b');
          const until = (f) => new Promise((res, rej) => {
            const t0 = Date.now();
            const tick = () => f() ? res() : Date.now() - t0 > 15000 ? rej(new Error('timeout')) : setTimeout(tick, 20);
            tick();
          });
          await until(() => got.a.length === 1 && got.b.length === 1);
          rb.off('barrage', offed);
          await rb.sendBarrage('b again');
          await until(() => got.b.length === 2);
          let badId = null;
          try { c.room(''); } catch (err) { badId = err.code; }
          return {
            got, same: c.room(a) === ra, isRoom: ra instanceof Room, snapId: snapA.room.id,
            seqA: ra.lastSeq(), seqViaClient: c.lastSeq(a), badId,
          };
        }""",
        [server.token("probe", "viewer"), room, other],
    )
    assert result["got"]["a"] == [[room, "to a"]]
    assert result["got"]["b"] == [[other, "to b"], [other, "b again"]]
    assert result["got"]["bAll"] == ["to b", "b again"]
    assert result["got"]["offed"] == ["to b"]  # removed before "b again"
    assert result["same"] is True and result["isRoom"] is True
    assert result["snapId"] == room
    assert result["seqA"] == result["seqViaClient"] and result["seqA"] is not None
    assert result["badId"] == "bad_request"
