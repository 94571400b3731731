"""The media layer wired into the server: backend, authorization, room state.

    WHIP/WHEP ──► media_routes(backend, MediaGlue.authorize)
                     │ tokens (TokenVerifier) + the room document decide who publishes as what
                     ▼
                  backend: MediaRouter (media_workers == 0, media in this process)
                           MediaWorkerPool (N worker processes; room → worker in the bus)
                     │ on_publishers_changed(room)
                     ▼
                  node.transact(room): features["publishers"] + durable media.publishers

Publishing (PROTOCOL §4): in a ``call`` room anyone the token admits publishes as
``call`` (the router caps a room at 9 publishers); elsewhere a host token (role
host or admin) publishes as ``host``, a user in the room's co-host list as
``cohost``; everyone else gets 403. Playing and stopping need a token admitting
the room (a kicked viewer is refused, like ``room.join``).

Room state drives media through the hooks of ``node.StageMedia``, which
``MediaGlue`` implements and ``server.create_app`` hands the node as ``node.media``
(a node without media keeps ``NoMedia``): ``link_pk``/``unlink_pk``/``sync_pk``
(PK start/end), ``unpublish`` (co-host ended), ``close_room`` (show over),
``show_started`` (recording, issue 14). This module imports no handler: the
handlers reach media only through ``node.media``.

Recording: a show is recorded when the room's ``features["record"]`` says so
(PATCH /v1/rooms/{room}), else when ``--record`` is on; it starts at ``show_started``
or, on the node a host publishes to, at the publish (the node that handled
``room.start`` may not hold the media), and ends with ``close_room``. Files go to
``<data-dir>/recordings/<app>/<room>/`` (``recording_dir``).

Media across nodes (issue 13, media/cascade.py): a publisher's media lives on the node
whose WHIP endpoint it called; that node records it on the bus (``Broker.set_media_origin``:
node, address, role; refreshed every ``core.media_origin.REFRESH_S``, removed when the
publisher leaves). A WHEP request on another node for a publisher it does not hold is
served there: its router relays the publisher once from the origin (``locate_upstream``
gives it the origin's WHEP URL and a node-to-node token) and fans it out locally. With a
worker pool (``--media-workers N``) the pool locates the publisher and hands that to the
room's worker with the request, and the worker relays it. Room state (co-hosts, PK, publisher
lists) is shared through the bus as usual, and each node's deadline checks bring its own
media in line with it (PK links, dismissed co-hosts).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from roomserver.announce import advertised_address
from roomserver.auth import AuthError, Identity, TokenVerifier, mint_token
from roomserver.background import BackgroundTask
from roomserver.bus.base import BrokerUnavailable
from roomserver.config import Config
from roomserver.core import cohost as cohost_rules
from roomserver.core import media_origin
from roomserver.core.replay import hls_dir, recording_dir, records
from roomserver.core.room import Emit, RoomDoc, decode_doc, is_restricted, with_features
from roomserver.core.turn import ice_servers, link_header
from roomserver.media.cascade import Upstream
from roomserver.media.errors import BadRequest, Forbidden, MediaError, Unauthorized, Unavailable
from roomserver.media.recording import RecordingTarget
from roomserver.media.sfu import MediaRouter
from roomserver.media.whip import IceServers, MediaAction, MediaPrincipal, bearer_token, media_routes
from roomserver.media.workers import MediaWorkerPool
from roomserver.media_peers import MediaPeers, peer_layer_route
from roomserver.node import Node
from roomserver.protocol import OpError, now_ms
from roomserver.tenancy import app_of, public_room, room_key

log = logging.getLogger(__name__)

PUBLISHERS_KEY = "publishers"
WORKER_KEY = "media_worker"
STORE_ATTEMPTS = 5
NODE_TOKEN_TTL_S = 300  # a relay's token is used only to open and close it
ENDED_PKS_KEPT = 1000

MediaBackend = MediaRouter | MediaWorkerPool


class _Unchanged(Exception):
    """Raised inside a transact rule: nothing to commit."""


def publish_role(identity: Identity, doc: RoomDoc | None) -> str | None:
    """The role ``identity`` publishes with in the room (None = not allowed)."""
    if doc is not None and doc.mode == "call":
        return "call"
    if identity.role in ("host", "admin"):
        return "host"
    if doc is not None and identity.user in cohost_rules.cohost_ids(doc):
        return "cohost"
    return None


class BusRoomRouting:
    """``RoomRouting`` recorded in the bus: the room document's
    ``features["media_worker"] = {"node", "worker"}``, written with a CAS commit.

    A room stays on its worker while that worker lives; otherwise the least loaded
    live worker of this node takes it (fewest sessions, then fewest rooms placed
    here). A room recorded for another node is taken over by the node whose
    endpoint was called (media is not proxied between nodes)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._placed: dict[str, int] = {}

    def _owner(self, doc: RoomDoc | None) -> dict[str, Any] | None:
        owner = doc.features.get(WORKER_KEY) if doc is not None else None
        return owner if owner is not None and owner.get("node") == self.node.config.node_id else None

    async def assign(self, room: str, loads: Mapping[int, float]) -> int:
        if not loads:
            raise Unavailable("no media worker is running")
        chosen: list[int] = []

        def rule(doc: RoomDoc) -> tuple[RoomDoc, list[Emit]]:
            owner = self._owner(doc)
            if owner is not None and owner["worker"] in loads:
                chosen.append(owner["worker"])
                raise _Unchanged
            per_worker = collections.Counter(self._placed.values())
            worker = min(loads, key=lambda w: (loads[w], per_worker[w], w))
            chosen.append(worker)
            owner = {"node": self.node.config.node_id, "worker": worker}
            return with_features(doc, **{WORKER_KEY: owner}), []

        with contextlib.suppress(_Unchanged):
            await self.node.transact(room, rule, create=True)
        self._placed[room] = chosen[-1]
        return chosen[-1]

    async def lookup(self, room: str) -> int | None:
        rec = await self.node.broker.load(room)
        owner = self._owner(decode_doc(rec.doc) if rec.doc else None)
        return None if owner is None else int(owner["worker"])

    async def release(self, room: str, worker: int) -> None:
        if self._placed.get(room) == worker:
            del self._placed[room]

        def rule(doc: RoomDoc) -> tuple[RoomDoc, list[Emit]]:
            owner = self._owner(doc)
            if owner is None or owner["worker"] != worker:
                raise _Unchanged
            return with_features(doc, **{WORKER_KEY: None}), []

        # Best effort (also called while shutting down): a record left behind only
        # names a worker that is gone or idle, which ``assign`` replaces.
        with contextlib.suppress(Exception):
            await self.node.transact(room, rule)


class MediaGlue:
    def __init__(self, node: Node, verifier: TokenVerifier, config: Config) -> None:
        self.node = node
        self.verifier = verifier
        self.backend: MediaBackend
        if config.media_workers > 0:
            self.backend = MediaWorkerPool(
                config.media_workers,
                routing=BusRoomRouting(node),
                ice_host=config.ice_host,
                public_ip=config.public_ip,
                forwarding=config.media_forwarding,
            )
        else:
            self.backend = MediaRouter(
                ice_host=config.ice_host, public_ip=config.public_ip, forwarding=config.media_forwarding
            )
        self.backend.on_publishers_changed = self._publishers_changed
        self._storing: set[str] = set()
        self._rooms_with_publishers: set[str] = set()
        self._store_again: set[str] = set()
        self._linked: dict[str, str] = {}  # room → id of the PK whose opponent is linked into it
        self._ended_pks: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.config = config
        self._recording: dict[str, int] = {}  # room → show recorded here
        self.address = advertised_address(config)
        self._origins: dict[str, dict[str, bytes]] = {}  # room → publisher → entry written here
        self._origin_refresh = BackgroundTask("media origins")
        self._http: aiohttp.ClientSession | None = None
        self.peers = MediaPeers(node.broker, verifier, config.node_id, lambda: self._http)
        if isinstance(self.backend, (MediaRouter, MediaWorkerPool)):
            self.backend.upstreams = self.locate_upstream

    async def start(self) -> None:
        if isinstance(self.backend, MediaWorkerPool):
            await self.backend.start()
        self._http = aiohttp.ClientSession()
        self._origin_refresh.start(self._refresh_origins())

    async def close(self) -> None:
        """Stop all media; rooms that had publishers here get an empty list (their
        viewers stop waiting for streams that are gone) and lose their origin entries."""
        rooms = set(self._rooms_with_publishers)
        await self._origin_refresh.stop()
        await self.backend.close()
        for room, entries in list(self._origins.items()):
            for user, info in entries.items():
                with contextlib.suppress(Exception):
                    await self.node.broker.set_media_origin(room, user, info, 0)
        self._origins.clear()
        for room in rooms:
            with contextlib.suppress(Exception):
                await self._store(room, [])
        if self._http is not None:
            await self._http.close()

    def viewer_count(self) -> int:
        """WHEP viewers on this node (in this process or its media workers)."""
        if isinstance(self.backend, MediaWorkerPool):
            return self.backend.viewer_count()
        return sum(1 for s in self.backend.sessions.values() if s.kind == "play")

    # -- authorization -------------------------------------------------------------

    async def authorize(self, request: web.Request, room: str, action: MediaAction) -> MediaPrincipal:
        token = bearer_token(request)
        if token is None:
            raise Unauthorized("send the token as Authorization: Bearer JWT")
        try:
            identity = self.verifier.verify(token)
        except AuthError as exc:
            raise Unauthorized(str(exc)) from None
        if not identity.admits(room):
            raise Forbidden(f"this token admits room {identity.room} only")
        public_id, room = room, room_key(identity.app, room)  # the app's own room
        if action == "stop":  # the backend checks that the session is the caller's
            return MediaPrincipal(identity.user, room=room)
        try:
            doc = await self._doc(room, fresh=action == "publish")
            if (
                doc is not None
                and not identity.is_staff
                and is_restricted(doc.kicks, identity.user, now_ms())
            ):
                raise Forbidden("you were removed from this room")
            if action == "play":
                return MediaPrincipal(identity.user, room=room)
            role = publish_role(identity, doc)
            if role is None:
                raise Forbidden(
                    f"{identity.user} may not publish in room {public_id}: hosts, admitted co-hosts"
                    " and members of call rooms may"
                )
            if doc is None:  # a host going live in a room nobody joined yet (auto-create)
                await self.node.room(room, create=True)
            elif doc.state == "live":
                await self.show_started(room, doc)
        except OpError as exc:
            raise BadRequest(exc.message) from None
        except BrokerUnavailable:
            raise Unavailable("room state is unavailable, retry") from None
        return MediaPrincipal(identity.user, role, room=room)

    async def _doc(self, room: str, *, fresh: bool) -> RoomDoc | None:
        """Publishing reads the room from the bus: a co-host admitted on another node
        a moment ago must not meet this node's cached document."""
        if not fresh:
            return await self.node.room(room)
        rec = await self.node.broker.load(room)
        return decode_doc(rec.doc) if rec.doc else None

    # -- publisher lists → room state -------------------------------------------------

    # -- media origins (issue 13) ------------------------------------------------------

    def _origins_changed(self, room: str) -> None:
        """Write the entries of publishers new here, remove those of publishers gone."""
        node = self.node.config.node_id
        now = {
            p["user"]: media_origin.encode(media_origin.Origin(node, self.address, p["role"]))
            for p in self.backend.publishers(room)
            if p["role"] != "pk"
        }
        before = self._origins.pop(room, {})
        if now:
            self._origins[room] = now
        writes = [(u, info, media_origin.TTL_MS) for u, info in now.items() if before.get(u) != info]
        writes += [(u, info, 0) for u, info in before.items() if now.get(u) != info]
        if writes:
            self.node.spawn(self._write_origins(room, writes))

    async def _write_origins(self, room: str, writes: list[tuple[str, bytes, int]]) -> None:
        try:
            for user, info, ttl_ms in writes:
                await self.node.broker.set_media_origin(room, user, info, ttl_ms)
        except Exception as exc:  # the bus may be down: the refresh loop writes them again
            log.warning("media origin of %s not written: %r", room, exc)

    async def _refresh_origins(self) -> None:
        while True:
            await asyncio.sleep(media_origin.REFRESH_S)
            for room, entries in list(self._origins.items()):
                await self._write_origins(room, [(u, i, media_origin.TTL_MS) for u, i in entries.items()])

    async def locate_upstream(self, room: str, user: str | None) -> Upstream | None:
        """Where ``user`` (None: the host) of ``room`` publishes, if on another node: its
        WHEP URL there and a token for this node's service user (``node:<node id>``,
        minted with the app's secret, which every node of a deployment holds)."""
        try:
            entries = await self.node.broker.media_origins(room)
        except BrokerUnavailable:
            raise Unavailable("media origins are unavailable, retry") from None
        found = media_origin.pick(entries, user)
        if found is None or found[1].node == self.node.config.node_id or self._http is None:
            return None
        publisher, origin = found
        app, public = app_of(room), public_room(room)
        secret = self.verifier.apps.get(app)
        if secret is None:
            return None
        token = mint_token(
            app, secret, media_origin.node_user(self.node.config.node_id), room=public, ttl_s=NODE_TOKEN_TTL_S
        )
        url = media_origin.whep_url(origin.address, public, publisher)
        return Upstream(room, publisher, origin.role, url, token, self._http)

    def _publishers_changed(self, room: str) -> None:
        self._origins_changed(room)
        if self.backend.publishers(room):
            self._rooms_with_publishers.add(room)
        else:
            self._rooms_with_publishers.discard(room)
        if room in self._storing:
            self._store_again.add(room)
            return
        self._storing.add(room)
        self.node.spawn(self._store_changes(room))

    async def _store_changes(self, room: str) -> None:
        try:
            attempts = 0
            while True:
                self._store_again.discard(room)
                try:
                    await self._store(room, None)
                except Exception as exc:  # the bus may be down: retry a few times, then give up
                    attempts += 1
                    if attempts >= STORE_ATTEMPTS:
                        log.warning("media.publishers for %s not stored: %r", room, exc)
                        return
                    await asyncio.sleep(0.2 * attempts)
                    self._store_again.add(room)
                if room not in self._store_again:
                    return
        finally:
            self._storing.discard(room)

    async def _store(self, room: str, publishers: list[dict] | None) -> None:
        """Commit the room's current list (read inside the rule, so the newest wins)
        with a durable ``media.publishers`` event, unless it is unchanged."""

        # Publishers whose origin is another node keep their entries (media_origin.merge_publishers).
        elsewhere = media_origin.others(await self.node.broker.media_origins(room), self.node.config.node_id)

        def rule(doc: RoomDoc) -> tuple[RoomDoc, list[Emit]]:
            local = _public(self.backend.publishers(room) if publishers is None else publishers)
            current = media_origin.merge_publishers(local, doc.features.get(PUBLISHERS_KEY, []), elsewhere)
            if doc.features.get(PUBLISHERS_KEY, []) == current:
                raise _Unchanged
            return with_features(doc, **{PUBLISHERS_KEY: current}), [
                Emit("media.publishers", {"publishers": current})
            ]

        with contextlib.suppress(_Unchanged):
            await self.node.transact(room, rule, create=True)

    # -- PK links ----------------------------------------------------------------------

    # A PK names its rooms by public id; both are rooms of ``app``.

    def link_pk(self, app: str, pk: dict[str, Any]) -> None:
        if pk["id"] in self._ended_pks:
            return  # a stale document still shows a battle that ended here
        a, b = pk["rooms"]
        for room, other in ((a, b), (b, a)):
            self.backend.link(room_key(app, room), room_key(app, other), pk["hosts"][other], "pk")
            self._linked[room_key(app, room)] = pk["id"]

    def unlink_pk(self, app: str, pk: dict[str, Any]) -> None:
        self._ended_pks[pk["id"]] = None
        while len(self._ended_pks) > ENDED_PKS_KEPT:
            self._ended_pks.popitem(last=False)
        a, b = pk["rooms"]
        for room, other in ((a, b), (b, a)):
            key = room_key(app, room)
            self.backend.unlink(key, room_key(app, other))
            if self._linked.get(key) == pk["id"]:
                del self._linked[key]

    def sync_pk(self, app: str, doc: RoomDoc) -> None:
        pk = doc.features.get("pk")
        if pk is not None and pk["state"] == "started":
            self.link_pk(app, pk)
            return
        last = doc.features.get("pk_last")
        if last is not None and self._linked.get(room_key(app, doc.id)) == last["id"]:
            self.unlink_pk(app, last)

    def cohost_publishers(self, room: str) -> set[str]:
        return {e["user"] for e in self.backend.publishers(room) if e["role"] == "cohost"}

    async def unpublish(self, room: str, user: str) -> None:
        with contextlib.suppress(MediaError):
            await self.backend.unpublish(room, user)

    async def close_room(self, room: str) -> None:
        """The show is over: the room's recording, publishers, viewers and PK links close."""
        self._recording.pop(room, None)
        with contextlib.suppress(MediaError):
            await self.backend.close_room(room)

    async def set_layer(self, room: str, viewer: str, publisher: str, layer: str) -> str:
        """``media.layer`` on `viewer`'s WHEP sessions of `publisher`: this node's, else
        another node's (media_peers.py: the viewer's WHEP may have landed elsewhere)."""
        try:
            try:
                return await self.set_local_layer(room, viewer, publisher, layer)
            except MediaError as exc:
                if exc.code != "not_found":
                    raise
                elsewhere = await self.peers.set_layer(room, viewer, publisher, layer)
                if elsewhere is None:
                    raise
                return elsewhere
        except MediaError as exc:
            # By code, not class: a media worker's answer comes back as a plain MediaError.
            if exc.code == "not_found":
                raise OpError("not_found", exc.message) from None
            if exc.code == "bad_request":
                raise OpError("bad_request", exc.message) from None
            raise OpError("unavailable", exc.message) from None

    async def set_local_layer(self, room: str, viewer: str, publisher: str, layer: str) -> str:
        """``media.layer`` on the sessions in this node's media (MediaError NotFound: none)."""
        if isinstance(self.backend, MediaWorkerPool):
            return await self.backend.set_layer(room, viewer, publisher, layer)
        return self.backend.set_layer(room, viewer, publisher, layer)

    # -- recording (issue 14) ------------------------------------------------------------

    async def show_started(self, room: str, doc: RoomDoc) -> None:
        """Record the live show ``doc.show`` if the room records, and with ``--hls`` make its
        host's live HLS rendition (once per show per node)."""
        if doc.state != "live" or self._recording.get(room) == doc.show:
            return
        wants_record = records(doc, self.config.record)
        if not wants_record and not self.config.hls:
            return
        self._recording[room] = doc.show
        backend = self.backend
        try:
            if self.config.hls:
                directory = str(hls_dir(self.config.data_dir, room))
                if isinstance(backend, MediaWorkerPool):
                    await backend.start_hls(room, directory)
                else:
                    backend.start_hls(room, directory)
            if wants_record:
                target = RecordingTarget(
                    str(recording_dir(self.config.data_dir, room)), doc.show, doc.started_at or now_ms()
                )
                if isinstance(backend, MediaWorkerPool):
                    await backend.start_recording(room, target)
                else:
                    backend.start_recording(room, target)
        except (MediaError, BrokerUnavailable, OSError) as exc:  # the show goes on without; a publish retries
            self._recording.pop(room, None)
            log.warning("recording/HLS of %s not started: %s", room, exc)


def _public(publishers: list[dict]) -> list[dict]:
    """The backend names a PK opponent's room by its key; viewers see the public id."""
    return [{**p, "room": public_room(p["room"])} if "room" in p else p for p in publishers]


def install(app: web.Application, node: Node, verifier: TokenVerifier, config: Config) -> MediaGlue:
    """Mount WHIP/WHEP on ``app`` and tie the media backend's life to the app's;
    the caller hands the returned glue to the node (``node.media``)."""
    glue = MediaGlue(node, verifier, config)
    app.add_routes(media_routes(glue.backend, glue.authorize, ice_servers=turn_links(config)))
    app.add_routes([peer_layer_route(verifier, glue.set_local_layer)])

    async def on_startup(app: web.Application) -> None:
        await glue.start()

    async def on_shutdown(app: web.Application) -> None:
        await glue.close()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    return glue


def turn_links(config: Config, clock: Callable[[], float] = time.time) -> IceServers | None:
    """The `Link` headers of `--turn-url`s, credentials minted per caller (None: no TURN)."""
    if not config.turn_urls:
        return None
    urls, secret, ttl = tuple(config.turn_urls), config.turn_secret or "", config.turn_ttl_s

    def links(principal: MediaPrincipal) -> list[str]:
        return [link_header(s) for s in ice_servers(urls, secret, principal.user, clock(), ttl)]

    return links


def for_node(node: Node) -> MediaGlue | None:
    """The node's media glue, if it has one (tests reach the backend through it)."""
    return node.media if isinstance(node.media, MediaGlue) else None
