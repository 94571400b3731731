"""The server SDKs (Python ``roomserver.admin``, Node.js ``sdk-node/``) against each other and
against a real server: webhook signatures made by one verify in the other (and a real
delivery in both), a token minted in Node is accepted by the server, and an op run through
either SDK's server API is the event a socket client receives."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from roomserver.admin import AdminClient, ApiError, WebhookRejected, check_signature_v2, mint, verify_webhook
from roomserver.client import RoomClient, RoomError
from roomserver.webhooks import signature, signature_v2
from tests.server_fixtures import APP, REPO, SECRET, Recorder, Server

NODE = shutil.which("node")
SDK_NODE = (REPO / "sdk-node" / "index.js").as_uri()
NODE_TIMEOUT_S = 60.0  # node's start under load; a hang fails the test instead of blocking it

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed (make system-deps)")

# Runs one async function of the Node SDK: stdin is its JSON argument, stdout its JSON result,
# an exception becomes {"error": name, "code", "message"} (the test asserts on it).
RUNNER = """
import * as sdk from %(sdk)s;
let input = "";
for await (const chunk of process.stdin) input += chunk;
const fn = async (sdk, arg) => { %(body)s };
try {
  process.stdout.write(JSON.stringify({ ok: await fn(sdk, JSON.parse(input)) }));
} catch (err) {
  process.stdout.write(JSON.stringify({ error: err.name, code: err.code ?? null, message: err.message }));
}
"""


async def node(body: str, arg: Any = None) -> dict[str, Any]:
    """Run ``body`` (a JS async function body over ``sdk`` and ``arg``) in a node process.
    Asynchronously: the server under test runs in this event loop and must keep answering."""
    assert NODE is not None
    script = RUNNER % {"sdk": json.dumps(SDK_NODE), "body": body}
    proc = await asyncio.create_subprocess_exec(
        NODE,
        "--input-type=module",
        "-e",
        script,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(json.dumps(arg).encode()), NODE_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


# -- webhook signatures ----------------------------------------------------------------

NODE_VERIFY = """
  const body = Buffer.from(arg.body, "base64");
  return sdk.verifyWebhook(arg.secret, body, arg.headers, { now: arg.now, allowV1: arg.allowV1 ?? false });
"""


def b64(body: bytes) -> str:
    import base64

    return base64.b64encode(body).decode()


async def test_signatures_made_by_either_sdk_verify_in_the_other() -> None:
    secret = "whsec-" + "k" * 40
    body = json.dumps(
        {"id": "w1", "event": "room.ended", "app": "shop", "room": "r1", "ts": 1, "data": {"é": 1}}
    ).encode()
    t = int(time.time())
    # Python (the server's own functions) -> Node
    server_headers = {
        "X-Roomserver-Signature": signature(secret, body),
        "X-Roomserver-Signature-V2": signature_v2(secret, body, t),
    }
    got = await node(NODE_VERIFY, {"secret": secret, "body": b64(body), "headers": server_headers})
    assert got == {"ok": json.loads(body)}
    # Node -> Python: the same header values, and Python accepts them
    signed = await node(
        "return sdk.signWebhook(arg.secret, Buffer.from(arg.body, 'base64'), arg.t);",
        {"secret": secret, "body": b64(body), "t": t},
    )
    assert signed["ok"] == {k.lower(): v for k, v in server_headers.items()}
    assert verify_webhook(secret, body, signed["ok"]) == json.loads(body)
    assert verify_webhook(
        secret, body, {"X-Roomserver-Signature": signed["ok"]["x-roomserver-signature"]}, allow_v1=True
    )


@pytest.mark.parametrize(
    ("case", "mutate"),
    [
        ("tampered body", lambda body, headers, now: (body + b" ", headers, now)),
        (
            "wrong secret",
            lambda body, headers, now: (
                body,
                {k: v.replace(v[-6:], "000000") for k, v in headers.items()},
                now,
            ),
        ),
        ("replayed after the tolerance", lambda body, headers, now: (body, headers, now + 301)),
        ("signed in the future", lambda body, headers, now: (body, headers, now - 301)),
        (
            "no V2 header",
            lambda body, headers, now: (
                body,
                {"X-Roomserver-Signature": headers["X-Roomserver-Signature"]},
                now,
            ),
        ),
        (
            "malformed V2 header",
            lambda body, headers, now: (body, {"X-Roomserver-Signature-V2": "t=abc,v1=00"}, now),
        ),
        (
            "two timestamps",
            lambda body, headers, now: (
                body,
                {"X-Roomserver-Signature-V2": headers["X-Roomserver-Signature-V2"] + ",t=1"},
                now,
            ),
        ),
    ],
)
async def test_both_sdks_refuse_the_same_bad_deliveries(case: str, mutate: Any) -> None:
    secret = "whsec-" + "k" * 40
    body = b'{"id":"w2","event":"room.started","app":"shop","room":"r1","ts":1,"data":{}}'
    now = int(time.time())
    headers = {
        "X-Roomserver-Signature": signature(secret, body),
        "X-Roomserver-Signature-V2": signature_v2(secret, body, now),
    }
    bad_body, bad_headers, at = mutate(body, headers, now)
    with pytest.raises(WebhookRejected):
        verify_webhook(secret, bad_body, bad_headers, now=at)
    got = await node(
        NODE_VERIFY, {"secret": secret, "body": b64(bad_body), "headers": bad_headers, "now": at}
    )
    assert got.get("error") == "WebhookRejected", (case, got)


async def test_a_rotated_secret_matches_any_v1_entry() -> None:
    body = b'{"id":"w3"}'
    t = int(time.time())
    old, new = signature_v2("old-" + "s" * 40, body, t), signature_v2("new-" + "s" * 40, body, t)
    header = f"{new},{old.split(',')[1]}"  # t=…,v1=<new>,v1=<old>
    check_signature_v2("old-" + "s" * 40, body, header)
    got = await node(
        "sdk.checkSignatureV2(arg.secret, Buffer.from(arg.body), arg.header); return true;",
        {"secret": "old-" + "s" * 40, "body": body.decode(), "header": header},
    )
    assert got == {"ok": True}


async def test_a_real_delivery_verifies_in_both_sdks(make_server: Any, room: str) -> None:
    got: list[tuple[bytes, dict[str, str]]] = []
    delivered = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        got.append((await request.read(), dict(request.headers)))
        delivered.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    receiver = TestServer(app, host="127.0.0.1", port=0)
    await receiver.start_server()
    try:
        server: Server = await make_server(webhook_url=f"http://127.0.0.1:{receiver.port}/hook")
        async with AdminClient(server.base_url, APP, SECRET) as api:
            await api.create_room(id=room, title="hooked", scheduled_at=int(time.time() * 1000) + 3_600_000)
        async with asyncio.timeout(15):
            await delivered.wait()
    finally:
        await receiver.close()
    body, headers = got[0]
    payload = verify_webhook(SECRET, body, headers)
    assert (payload["event"], payload["app"], payload["room"]) == ("room.scheduled", APP, room)
    from_node = await node(NODE_VERIFY, {"secret": SECRET, "body": b64(body), "headers": headers})
    assert from_node == {"ok": payload}
    other = await node(
        NODE_VERIFY, {"secret": "another-app-" + "x" * 40, "body": b64(body), "headers": headers}
    )
    assert other["error"] == "WebhookRejected"


# -- tokens ----------------------------------------------------------------------------------


async def test_a_token_minted_in_node_is_accepted_by_the_server(server: Server, room: str) -> None:
    minted = await node(
        "return sdk.mintToken(arg.app, arg.secret, 'nina', 'viewer', { room: arg.room, name: 'Nina N', tier: 2, ttlS: 600 });",
        {"app": APP, "secret": SECRET, "room": room},
    )
    tok = minted["ok"]
    claims = jwt.decode(tok, SECRET, algorithms=["HS256"])
    python_claims = jwt.decode(
        mint(APP, SECRET, "nina", room=room, name="Nina N", tier=2, ttl_s=600), SECRET, algorithms=["HS256"]
    )
    assert {k: v for k, v in claims.items() if k != "exp"} == {
        k: v for k, v in python_claims.items() if k != "exp"
    }
    assert abs(claims["exp"] - python_claims["exp"]) <= 5

    client = RoomClient(server.base_url, tok, request_timeout=10)
    server.clients.append(client)
    await client.connect()
    rec = Recorder(client)
    await client.join(room)
    await client.send_barrage(room, "hello from a node token")
    (ev,) = await rec.wait("barrage")
    assert ev["data"]["user"] == {"id": "nina", "name": "Nina N", "tier": 2}
    with pytest.raises(RoomError) as refused:  # the token names one room
        await client.join(room + "-other")
    assert refused.value.code == "forbidden"

    forged = await node(
        "return sdk.mintToken(arg.app, 'not-the-secret-' + 'x'.repeat(40), 'eve');", {"app": APP}
    )
    status, body = await server.rest("GET", f"/v1/rooms/{room}/history", forged["ok"])
    assert status == 401 and body["error"]["code"] == "unauthorized"
    bad_role = await node("return sdk.mintToken('a', 's', 'u', 'owner');")
    assert bad_role["error"] == "TypeError"


# -- the server API ----------------------------------------------------------------------


NODE_ANNOUNCE = """
  const api = new sdk.AdminClient({ url: arg.url, app: arg.app, secret: arg.secret, user: "ops-node" });
  const reply = await api.op(arg.room, "room.announce", { text: arg.text });
  const page = await api.history(arg.room, { since: arg.since });
  return { reply, events: page.events };
"""


async def test_an_op_through_either_sdk_is_the_event_a_socket_sees(server: Server, room: str) -> None:
    async with AdminClient(server.base_url, APP, SECRET, user="ops-py") as api:
        await api.create_room(id=room, title="sdk parity")
        viewer = await server.client("vic")
        rec = Recorder(viewer)
        snap = await viewer.join(room)
        since = snap["room"]["seq"]

        from_node = await node(
            NODE_ANNOUNCE,
            {
                "url": server.base_url,
                "app": APP,
                "secret": SECRET,
                "room": room,
                "text": "from node",
                "since": since,
            },
        )
        assert "ok" in from_node, from_node
        (seen,) = await rec.wait("room.announcement", lambda e: e["data"]["text"] == "from node")
        (logged,) = [e for e in from_node["ok"]["events"] if e["ev"] == "room.announcement"]
        assert (logged["seq"], logged["data"]) == (seen["seq"], seen["data"])

        reply = await api.op(room, "room.announce", text="from python")
        (seen_py,) = await rec.wait("room.announcement", lambda e: e["data"]["text"] == "from python")
        page = await api.history(room, since=seen["seq"])
        assert [(e["seq"], e["data"]) for e in page["events"]] == [(seen_py["seq"], seen_py["data"])]
        assert reply == from_node["ok"]["reply"]  # the same op answers the same shape

        # rooms, custom events, schedule and ending, from Node; read back from Python
        listed = await node(
            """
            const api = new sdk.AdminClient({ url: arg.url, app: arg.app, secret: arg.secret });
            const ev = await api.publishEvent(arg.room, "quiz", { q: 1 });
            const one = await api.getRoom(arg.room);
            const page = await api.listRooms({ limit: 1000 });
            const shows = await api.schedule();
            const ended = await api.endRoom(arg.room);
            return { ev, one: one.room.id, ids: page.rooms.map((r) => r.id), shows: shows.shows, ended: ended.room.id };
            """,
            {"url": server.base_url, "app": APP, "secret": SECRET, "room": room},
        )
        assert "ok" in listed, listed
        (custom,) = await rec.wait("custom.quiz")
        assert (custom["seq"], custom["data"]) == (listed["ok"]["ev"]["seq"], {"q": 1})
        assert listed["ok"]["one"] == room and room in listed["ok"]["ids"] and listed["ok"]["ended"] == room
        assert isinstance(listed["ok"]["shows"], list)
        assert (await api.get_room(room))["room"]["id"] == room
        assert room in [r["id"] for r in (await api.list_rooms(limit=1000))["rooms"]]


async def test_both_sdks_report_api_errors_with_code_and_status(server: Server, room: str) -> None:
    async with AdminClient(server.base_url, APP, SECRET) as api:
        await api.create_room(id=room)
        with pytest.raises(ApiError) as err:
            await api.op(room, "no.such.op")
        assert (err.value.status, err.value.code) == (404, "not_found")
        with pytest.raises(ApiError) as bad:
            await api.op(room, "room.announce", as_user="bad user!", text="x")
        assert (bad.value.status, bad.value.code) == (400, "bad_request")
    got = await node(
        """
        const api = new sdk.AdminClient({ url: arg.url, app: arg.app, secret: arg.secret });
        const out = [];
        for (const call of [() => api.op(arg.room, "no.such.op"), () => api.op(arg.room, "room.announce", { text: "x" }, { as: "bad user!" })]) {
          try { await call(); out.push(null); } catch (err) { out.push([err.name, err.status, err.code]); }
        }
        return out;
        """,
        {"url": server.base_url, "app": APP, "secret": SECRET, "room": room},
    )
    assert got == {"ok": [["ApiError", 404, "not_found"], ["ApiError", 400, "bad_request"]]}


async def test_both_sdks_reschedule_and_page_followers(server: Server, room: str) -> None:
    """Issue 12: `reschedule` and `followers` from Python and Node."""
    at = int(time.time() * 1000) + 3_600_000
    async with AdminClient(server.base_url, APP, SECRET) as api:
        await api.create_room(id=room, scheduled_at=at)
        for user in ("f2", "f1"):
            viewer = await server.client(user)
            await viewer.join(room)
            await viewer.track(room, "follow")
        assert (await api.reschedule(room, at + 60_000))["room"]["scheduled_at"] == at + 60_000
        assert await api.followers(room, limit=1) == {"followers": ["f1"], "count": 2, "next": "f1"}
    got = await node(
        """
        const api = new sdk.AdminClient({ url: arg.url, app: arg.app, secret: arg.secret });
        const moved = await api.reschedule(arg.room, null);
        const page = await api.followers(arg.room, { after: "f1" });
        return { at: moved.room.scheduled_at, page };
        """,
        {"url": server.base_url, "app": APP, "secret": SECRET, "room": room},
    )
    assert got == {"ok": {"at": None, "page": {"followers": ["f2"], "count": 2, "next": None}}}
