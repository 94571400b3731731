"""The WebSocket edge: authenticate, parse frames, dispatch ops, reply.

Errors are values here: every bad frame becomes an error reply with a protocol
code, never a traceback or a dropped socket (except where the protocol says to
close: oversize frames 1009, expired tokens 4001, too many connections 4029).
Frames from one socket are handled one after the other, so replies and the
effects of one client's ops keep their order.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter
from typing import Any

from aiohttp import WSMsgType, web

from roomserver import logsetup
from roomserver.auth import AuthError, Identity, TokenVerifier
from roomserver.bus.base import BrokerUnavailable
from roomserver.contract import check as contract_check
from roomserver.core.i18n import DEFAULT_LANG, Lang, lang_of, localize_error
from roomserver.core.moderation import UserLimits
from roomserver.fanout import Connection
from roomserver.handlers import REGISTRY, OpContext, Session, check_role
from roomserver.logsafe import clean
from roomserver.node import Node
from roomserver.protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL_ERROR,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_TOO_LARGE,
    CLOSE_TOO_MANY_CONNECTIONS,
    MAX_FRAME_BYTES,
    OpError,
    convert_params,
    encode,
    now_ms,
    parse_request,
    reply_error,
    reply_ok,
)

log = logging.getLogger(__name__)

# aiohttp refuses frames above this itself (closing with 1009); frames between
# MAX_FRAME_BYTES and this get a `too_large` error reply first.
READ_LIMIT = 1024 * 1024


def bearer_token(request: web.Request) -> str:
    token = request.query.get("token", "")
    if not token:
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            token = auth[7:].strip()
    return token


def socket_lang(request: web.Request, identity: Identity) -> Lang:
    """The language of a socket's error replies: the ``lang`` query parameter, else the
    token's ``lang`` claim, else English (an unsupported language is English too)."""
    return lang_of(request.query.get("lang")) or lang_of(identity.lang) or DEFAULT_LANG


def json_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=encode({"error": {"code": code, "message": message}}),
        content_type="application/json",
        headers=headers,
    )


def www_authenticate(token_given: bool, message: str) -> dict[str, str]:
    """RFC 6750 §3: a 401 names the scheme; with a token, also why it was refused."""
    if not token_given:
        return {"WWW-Authenticate": 'Bearer realm="roomserver"'}
    # error_description allows printable ASCII except '"' and '\\' (RFC 6750 §3).
    reason = "".join(c for c in message if " " <= c <= "~" and c not in '"\\')[:200]
    return {
        "WWW-Authenticate": f'Bearer realm="roomserver", error="invalid_token", error_description="{reason}"'
    }


def unauthorized(request: web.Request, message: str) -> web.Response:
    return json_error(401, "unauthorized", message, www_authenticate(bool(bearer_token(request)), message))


class Gateway:
    def __init__(self, node: Node, verifier: TokenVerifier) -> None:
        self.node = node
        self.verifier = verifier
        self._ids = itertools.count(1)
        self._per_user: Counter[tuple[str, str]] = Counter()
        self._per_ip: Counter[str] = Counter()
        # Rate limits are per user (all of the user's sockets on this node share them).
        self._limits: dict[tuple[str, str], UserLimits] = {}
        self.sessions: set[Session] = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            identity = self.verifier.verify(bearer_token(request))
        except AuthError as exc:
            return unauthorized(request, str(exc))
        if self.node.draining:
            return json_error(503, "unavailable", "server is draining; reconnect elsewhere")
        key = (identity.app, identity.user)
        ip = request.remote or ""
        cfg = self.node.config
        refused = self._per_user[key] >= cfg.max_connections_per_user or bool(
            cfg.max_connections_per_ip and self._per_ip[ip] >= cfg.max_connections_per_ip
        )
        if not refused:
            self._take(key, ip)
        # Every count taken above is given back in the finally, whatever raises on the
        # way (the upgrade, the close, a bad token field): a leaked count locks the
        # user out with 4029 until the process restarts.
        try:
            ws = web.WebSocketResponse(max_msg_size=READ_LIMIT, compress=False, heartbeat=30.0)
            await ws.prepare(request)  # raising here is still an HTTP answer (errors middleware)
            try:
                if refused:
                    await ws.close(
                        code=CLOSE_TOO_MANY_CONNECTIONS, message=b"too many connections for this user or IP"
                    )
                else:
                    await self._serve(request, ws, identity, key)
            except ConnectionResetError:
                # The peer went away while we answered it, e.g. aiohttp's automatic pong to a
                # ping that arrived with the peer's reset (a client back from a partition
                # that had given up on us): a disconnect like any other, not a failure.
                log.info("socket of user %s was reset by the peer", clean(identity.user))
            except Exception:  # after the upgrade no HTTP answer can be sent: close the socket
                log.exception("socket of user %s failed", clean(identity.user))
                with contextlib.suppress(Exception):
                    await ws.close(code=CLOSE_INTERNAL_ERROR, message=b"internal error")
            return ws
        finally:
            if not refused:
                self._give_back(key, ip)

    def _take(self, key: tuple[str, str], ip: str) -> None:
        self._per_user[key] += 1
        self._per_ip[ip] += 1

    def _give_back(self, key: tuple[str, str], ip: str) -> None:
        self._per_ip[ip] -= 1
        if self._per_ip[ip] <= 0:
            del self._per_ip[ip]
        self._per_user[key] -= 1
        if self._per_user[key] <= 0:
            del self._per_user[key]
            self._limits.pop(key, None)

    async def _serve(
        self, request: web.Request, ws: web.WebSocketResponse, identity: Identity, key: tuple[str, str]
    ) -> None:
        transport = request.transport
        if transport is None:  # the peer went away during the upgrade
            return

        async def close(code: int, reason: str) -> None:
            await ws.close(code=code, message=reason.encode()[:120])

        conn = Connection(next(self._ids), identity.user, identity.is_staff, transport, close)
        logsetup.bind_user(identity.app, identity.user)  # this socket's task: its log records
        session = Session(
            conn,
            identity,
            limits=self._limits.setdefault(key, UserLimits()),
            lang=socket_lang(request, identity),
        )
        self.sessions.add(session)
        expiry: asyncio.TimerHandle | None = None
        try:
            self.node.fanout.add_connection(conn)
            expiry = asyncio.get_running_loop().call_later(
                max(0.0, identity.exp - time.time()),
                lambda: self.node.spawn(self.node.fanout.close(conn, CLOSE_TOKEN_EXPIRED, "token expired")),
            )
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    if not await self._on_text(session, msg.data, ws):
                        break
                elif msg.type == WSMsgType.BINARY:
                    err = OpError("bad_request", "binary frames are not supported; send JSON text")
                    self._send(session, None, err, always=True)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            if expiry is not None:
                expiry.cancel()
            self.sessions.discard(session)
            for room in conn.rooms:  # room.members webhook batch: a closed socket leaves
                self.node.members.left(room, identity.user)
            for room, joined_at in session.joined_at.items():  # the behaviour log: sessions end
                self.node.behaviour.record(room, identity.user, "leave", {"joined_at": joined_at})
            for room in self.node.fanout.remove_connection(conn):
                self.node.spawn(self.node.release_channel(room))

    async def _on_text(self, session: Session, data: str, ws: web.WebSocketResponse) -> bool:
        conn = session.conn
        # A str of n characters is at most 4n UTF-8 bytes: encode only when it matters.
        if len(data) * 4 > MAX_FRAME_BYTES and len(data.encode()) > MAX_FRAME_BYTES:
            self._send(
                session,
                None,
                OpError("too_large", f"frames are limited to {MAX_FRAME_BYTES} bytes"),
                always=True,
            )
            self.node.fanout.flush_connection(conn)
            await ws.close(code=CLOSE_TOO_LARGE, message=b"frame too large")
            return False
        try:
            req = parse_request(data)
        except OpError as err:
            self._send(session, getattr(err, "req_id", None), err, always=True)
            return True
        await self.dispatch(session, req.op, req.id, req.room, req.params)
        return True

    async def dispatch(
        self,
        session: Session,
        op_name: str,
        req_id: int | str | None,
        room: str | None,
        params: dict[str, Any],
    ) -> None:
        node, conn = self.node, session.conn
        spec = REGISTRY.get(op_name)
        result = "error"
        bound = logsetup.bind_room(room)
        try:
            if spec is None:
                raise OpError("bad_request", f"unknown op {op_name!r}")
            if spec.needs_room and not room:
                raise OpError("bad_request", f"{op_name} needs a room")
            # Rooms are the app's own: the same id in another app is another room.
            key = session.room_key(room) if room else ""
            check_role(session.identity, spec.who)
            if spec.joined and key not in conn.rooms:
                raise OpError("not_joined", f"join room {room} first")
            wait = session.limits.check(spec.family, now_ms())
            if wait:
                raise OpError("rate_limited", "too many requests", retry_after_ms=wait)
            p = convert_params(params, spec.schema)
            ctx = OpContext(node, session.identity, key, req_id, session)
            data = await spec.handler(ctx, p)
            if contract_check.ENABLED and not ctx.replied:
                contract_check.check_reply(op_name, data if data is not None else {})
            result = "ok"
            if req_id is not None and not ctx.replied:
                node.fanout.send_personal(conn, reply_ok(req_id, data if data is not None else {}))
        except OpError as err:
            result = err.code
            if log.isEnabledFor(logging.DEBUG):  # the room and user come from the log context
                log.debug("op %s answered %s: %s", op_name, err.code, err.message)
            self._send(session, req_id, err)
        except BrokerUnavailable as exc:
            result = "unavailable"
            self._send(
                session, req_id, OpError("unavailable", f"the bus is unavailable: {exc}", retry_after_ms=1000)
            )
        except Exception:
            log.exception("op %s failed", op_name)
            self._send(session, req_id, OpError("internal", "internal error"))
        finally:
            logsetup.ROOM.reset(bound)
            node.metrics.count_op(session.identity.app, op_name if spec else "unknown", result)

    def _send(
        self, session: Session, req_id: int | str | None, err: OpError, *, always: bool = False
    ) -> None:
        # An op without id is fire and forget; a frame we could not even parse
        # still gets an error (with "re": null) so the client learns why.
        if req_id is None and not always:
            return
        if session.lang == DEFAULT_LANG:
            body = reply_error(req_id, err)  # type: ignore[arg-type]
        else:
            body = encode({"re": req_id, "ok": False, "error": localize_error(err.to_wire(), session.lang)})
        self.node.fanout.send_personal(session.conn, body)

    async def drain(self) -> None:
        """Stop accepting, flush, close every socket with 1001."""
        self.node.draining = True
        self.node.fanout.flush()
        closes = [
            self.node.fanout.close(s.conn, CLOSE_GOING_AWAY, "server draining") for s in list(self.sessions)
        ]
        await asyncio.gather(*closes, return_exceptions=True)


def identity_of(request: web.Request, verifier: TokenVerifier) -> Identity:
    token = bearer_token(request)
    try:
        return verifier.verify(token)
    except AuthError as exc:
        raise web.HTTPUnauthorized(
            text=encode({"error": {"code": "unauthorized", "message": str(exc)}}).decode(),
            content_type="application/json",
            headers=www_authenticate(bool(token), str(exc)),
        ) from None
