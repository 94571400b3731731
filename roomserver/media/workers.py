"""Media across cores: each room's media lives in one of N worker processes.

    client ──WHIP/WHEP──► main process: authorize, pick the room's worker ──HTTP──► worker k
                                                                             (MediaRouter)
    client ◄────────────────── RTP/RTCP over UDP, straight to worker k ──────────┘

One asyncio loop forwards media on at most one core, so a node runs N workers. The main
process keeps the public endpoints (it knows tokens and room state) and is a `MediaBackend`
like `MediaRouter`, so `media_routes(pool, authorize)` serves both. Each room is owned by one
worker, chosen by a `RoomRouting` (least loaded among live workers, recorded so every request
for the room lands on the same worker; in memory here, the lead backs it by the bus later).
Sessions are remembered by id → worker, so DELETE goes to the right process.

PK: a viewer of room A playing B's host is proxied to B's worker (where the forwarder is);
`link`/`unlink` and the merged publisher lists live here, as in `MediaRouter`.

Workers report their rooms' publishers and closed sessions on stdout (see worker.py); a
worker that dies loses its sessions (clients see their peer connection fail and reconnect),
its rooms are released and it is restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import aiohttp

from roomserver import logsetup

from .cascade import UpstreamLocator, encode_upstream
from .errors import MediaError, NotFound, Unavailable, session_at
from .links import ListChanges, PublisherLinks
from .recording import RecordingTarget
from .trickle import TRICKLE_CONTENT_TYPE
from .whip import SDP_CONTENT_TYPE, parse_error_body
from .worker import ROLE_HEADER, SECRET_ENV, SECRET_HEADER, UPSTREAM_HEADER, USER_HEADER

logger = logging.getLogger(__name__)


class RoomRouting(Protocol):
    """Room → worker index, shared by everything that may route a room's requests."""

    async def assign(self, room: str, loads: Mapping[int, float]) -> int:
        """The worker owning `room`; if none (or not in `loads`), the least loaded of `loads`."""
        ...

    async def lookup(self, room: str) -> int | None: ...

    async def release(self, room: str, worker: int) -> None:
        """Forget `room` → `worker` (no-op if the room has moved on to another worker)."""
        ...


class InMemoryRoomRouting:
    def __init__(self) -> None:
        self._owner: dict[str, int] = {}

    async def assign(self, room: str, loads: Mapping[int, float]) -> int:
        owner = self._owner.get(room)
        if owner is not None and owner in loads:
            return owner
        if not loads:
            raise Unavailable("no media worker is running")
        rooms_per_worker = {w: 0 for w in loads}
        for w in self._owner.values():
            if w in rooms_per_worker:
                rooms_per_worker[w] += 1
        chosen = min(loads, key=lambda w: (loads[w], rooms_per_worker[w], w))
        self._owner[room] = chosen
        return chosen

    async def lookup(self, room: str) -> int | None:
        return self._owner.get(room)

    async def release(self, room: str, worker: int) -> None:
        if self._owner.get(room) == worker:
            del self._owner[room]

    def snapshot(self) -> dict[str, int]:
        return dict(self._owner)


@dataclass
class _SessionRoute:
    worker: int
    worker_room: str  # the room the session lives in on the worker (the source room for PK)
    room: str  # the room in the client's URL
    kind: str
    user: str


class _Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.process: asyncio.subprocess.Process | None = None
        self.port: int | None = None
        self.reader: asyncio.Task | None = None
        self.ready = asyncio.Event()
        self.failed_starts = 0  # consecutive exits before "ready"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None and self.port is not None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class MediaWorkerPool:
    """N media worker processes behind one `MediaBackend` (publish, play, stop, publishers)."""

    def __init__(
        self,
        workers: int,
        *,
        routing: RoomRouting | None = None,
        ice_host: str | None = None,
        public_ip: str | None = None,
        forwarding: str = "rtp",
        on_publishers_changed: Callable[[str], None] | None = None,
        start_timeout: float = 30.0,
        request_timeout: float = 20.0,
        restart_delay: float = 1.0,
    ) -> None:
        if workers < 1:
            raise ValueError("a pool needs at least one worker")
        self.routing: RoomRouting = routing or InMemoryRoomRouting()
        self.ice_host = ice_host
        self.public_ip = public_ip
        self.forwarding = forwarding
        self.on_publishers_changed = on_publishers_changed
        self.start_timeout = start_timeout
        self.request_timeout = request_timeout
        self.restart_delay = restart_delay
        self._secret = secrets.token_urlsafe(24)
        self._workers = [_Worker(i) for i in range(workers)]
        self._sessions: dict[str, _SessionRoute] = {}
        self._publishers: dict[str, list[dict]] = {}  # room → its local publishers, as reported
        self._room_worker: dict[str, int] = {}  # room → worker that reported its publishers
        self._links = PublisherLinks()
        # Where publishers held by other nodes are (set by the node, as for MediaRouter).
        self.upstreams: UpstreamLocator | None = None
        self._list_changes = ListChanges(self.publishers)
        self._http: aiohttp.ClientSession | None = None
        self._closing = False
        self._restarts: set[asyncio.Task] = set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.request_timeout))
        try:
            await asyncio.gather(*(self._spawn(w) for w in self._workers))
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        self._closing = True
        for task in list(self._restarts):
            task.cancel()
        await asyncio.gather(*self._restarts, return_exceptions=True)
        await asyncio.gather(*(self._stop_worker(w) for w in self._workers), return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None

    @property
    def worker_pids(self) -> list[int | None]:
        return [w.process.pid if w.process and w.process.returncode is None else None for w in self._workers]

    def worker_of_session(self, session_id: str) -> int | None:
        route = self._sessions.get(session_id)
        return route.worker if route else None

    def viewer_count(self) -> int:
        """WHEP sessions over every worker (the node's announcement, GET /v1/nodes)."""
        return sum(1 for route in self._sessions.values() if route.kind == "play")

    def loads(self) -> dict[int, float]:
        """Sessions per live worker: the measure rooms are placed by."""
        loads = {w.index: 0.0 for w in self._workers if w.alive}
        for route in self._sessions.values():
            if route.worker in loads:
                loads[route.worker] += 1
        return loads

    async def _spawn(self, worker: _Worker) -> None:
        args = [sys.executable, "-m", "roomserver.media.worker", "--host", "127.0.0.1", "--port", "0"]
        args += logsetup.child_args()  # the node's log format; its node id + worker index
        args[-1] = f"{args[-1]}/w{worker.index}"
        if self.ice_host:
            args += ["--ice-host", self.ice_host]
        if self.public_ip:
            args += ["--public-ip", self.public_ip]
        args += ["--forwarding", self.forwarding]
        worker.ready.clear()
        worker.port = None
        worker.process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, SECRET_ENV: self._secret},
        )
        worker.reader = asyncio.ensure_future(self._read_events(worker, worker.process))
        try:
            await asyncio.wait_for(worker.ready.wait(), self.start_timeout)
        except TimeoutError:
            raise Unavailable(f"media worker {worker.index} did not start") from None

    async def _stop_worker(self, worker: _Worker) -> None:
        process = worker.process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(Exception):
                if process.stdin is not None:
                    process.stdin.close()  # the worker exits when its stdin closes
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        if worker.reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await worker.reader

    async def _read_events(self, worker: _Worker, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while True:
            line = await process.stdout.readline()
            if not line:
                break
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self._on_event(worker, event)
        await process.wait()
        if worker.process is process:
            self._on_worker_exit(worker)

    def _on_event(self, worker: _Worker, event: dict) -> None:
        kind = event.get("type")
        if kind == "ready":
            worker.port = int(event["port"])
            worker.failed_starts = 0
            worker.ready.set()
        elif kind == "publishers":
            room = event["room"]
            if event["publishers"]:
                self._publishers[room] = event["publishers"]
                self._room_worker[room] = worker.index
            elif self._room_worker.get(room) == worker.index:
                self._publishers.pop(room, None)
                self._room_worker.pop(room, None)
            self._notify_publishers_of(room)
        elif kind == "session_closed":
            route = self._sessions.pop(event["session"], None)
            if route is not None:
                self._release_if_idle(route.worker, route.worker_room)

    def _on_worker_exit(self, worker: _Worker) -> None:
        if not worker.ready.is_set():
            worker.failed_starts += 1
        worker.port = None
        lost = [sid for sid, r in self._sessions.items() if r.worker == worker.index]
        rooms = {self._sessions[sid].worker_room for sid in lost}
        for sid in lost:
            del self._sessions[sid]
        rooms |= {room for room, w in self._room_worker.items() if w == worker.index}
        for room in rooms:
            if self._room_worker.get(room) == worker.index:
                self._publishers.pop(room, None)
                self._room_worker.pop(room, None)
            self._spawn_task(self.routing.release(room, worker.index))
            self._notify_publishers_of(room)
        if not self._closing:
            logger.error(
                "media worker %d exited (code %s); restarting",
                worker.index,
                worker.process.returncode if worker.process is not None else None,
            )
            self._spawn_task(self._restart(worker))

    async def _restart(self, worker: _Worker) -> None:
        # Back off while a worker keeps dying before it is ready (a broken install, no ports).
        delay = min(30.0, self.restart_delay * 2**worker.failed_starts)
        await asyncio.sleep(delay)
        if not self._closing:
            try:
                await self._spawn(worker)
            except Exception:
                logger.exception("restarting media worker %d failed", worker.index)

    def _spawn_task(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    def _release_if_idle(self, worker: int, room: str) -> None:
        busy = any(r.worker == worker and r.worker_room == room for r in self._sessions.values())
        if not busy:
            self._spawn_task(self.routing.release(room, worker))

    # ------------------------------------------------------------------ MediaBackend

    async def publish(
        self, room: str, user: str, role: str, offer_sdp: str, layers: tuple[str, ...] | None = None
    ) -> tuple[str, str]:
        worker = await self._worker_for(room)
        path = f"/v1/rooms/{quote(room, safe='')}/whip"
        if layers is not None:
            path += f"?layers={','.join(layers)}"
        session, answer = await self._post(worker, path, user, role, offer_sdp)
        self._sessions[session] = _SessionRoute(worker.index, room, room, "publish", user)
        self._room_worker.setdefault(room, worker.index)
        return session, answer

    def _holds(self, room: str, publisher_user: str | None) -> bool:
        """Whether a worker reported `publisher_user` (None: a host) publishing in `room`."""
        return any(
            p["role"] == "host" if publisher_user is None else p["user"] == publisher_user
            for p in self._publishers.get(room, [])
        )

    async def play(
        self,
        room: str,
        publisher_user: str | None,
        viewer_user: str,
        offer_sdp: str,
        layers: tuple[str, ...] | None = None,
    ) -> tuple[str, str]:
        source_room = room
        if publisher_user is not None and not self._holds(room, publisher_user):
            link = self._links.find(room, publisher_user)
            if link is not None:
                source_room = link.source_room
        # Published on another node: the room's worker relays it (cascade.py), told where
        # from, since workers have no bus.
        upstream = None
        if self.upstreams is not None and not self._holds(source_room, publisher_user):
            upstream = await self.upstreams(source_room, publisher_user)
        worker_index = await self.routing.lookup(source_room)
        if worker_index is None:
            worker_index = self._room_worker.get(source_room)
        if worker_index is not None:
            worker = self._workers[worker_index]
        elif upstream is not None:
            worker = await self._worker_for(source_room)
        else:
            raise NotFound(f"nobody is publishing in room {source_room}")
        query = {"publisher": publisher_user, "layers": ",".join(layers) if layers else None}
        path = f"/v1/rooms/{quote(source_room, safe='')}/whep"
        if any(query.values()):
            path += "?" + urlencode({k: v for k, v in query.items() if v})
        extra = {UPSTREAM_HEADER: encode_upstream(upstream)} if upstream is not None else None
        session, answer = await self._post(worker, path, viewer_user, "viewer", offer_sdp, extra)
        self._sessions[session] = _SessionRoute(worker.index, source_room, room, "play", viewer_user)
        return session, answer

    async def stop(
        self, session_id: str, user: str, *, room: str | None = None, kind: str | None = None
    ) -> None:
        route = session_at(self._sessions, session_id, room, kind)
        worker = self._workers[route.worker]
        segment = "whip" if route.kind == "publish" else "whep"
        path = f"/v1/rooms/{quote(route.worker_room, safe='')}/{segment}/{quote(session_id, safe='')}"
        try:
            async with self._request(worker, "DELETE", path, user, "viewer") as resp:
                if resp.status != 200:
                    raise _remote_error(resp.status, await resp.text())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"media worker {worker.index} did not answer: {type(exc).__name__}") from None
        if self._sessions.pop(session_id, None) is not None:
            self._release_if_idle(route.worker, route.worker_room)

    async def trickle(
        self,
        session_id: str,
        user: str,
        fragment_text: str,
        *,
        room: str | None = None,
        kind: str | None = None,
    ) -> None:
        route = session_at(self._sessions, session_id, room, kind)
        worker = self._workers[route.worker]
        segment = "whip" if route.kind == "publish" else "whep"
        path = f"/v1/rooms/{quote(route.worker_room, safe='')}/{segment}/{quote(session_id, safe='')}"
        body = fragment_text.encode()
        try:
            async with self._request(
                worker, "PATCH", path, user, "viewer", body, content_type=TRICKLE_CONTENT_TYPE
            ) as resp:
                if resp.status != 204:
                    raise _remote_error(resp.status, await resp.text())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"media worker {worker.index} did not answer: {type(exc).__name__}") from None

    async def unpublish(self, room: str, user: str) -> bool:
        """Server-side stop of `user`'s publishing in `room` (co-host ended, kicked)."""
        for session_id, route in list(self._sessions.items()):
            if route.kind == "publish" and route.worker_room == room and route.user == user:
                with contextlib.suppress(NotFound):
                    await self.stop(session_id, user)
                return True
        return False

    async def start_recording(self, room: str, target: RecordingTarget) -> None:
        """Record `room`'s publishers in the worker that owns the room (recording.py)."""
        await self._set_recording(await self._worker_for(room), room, target)

    async def stop_recording(self, room: str) -> None:
        index = await self.routing.lookup(room)
        if index is not None and 0 <= index < len(self._workers) and self._workers[index].alive:
            await self._set_recording(self._workers[index], room, None)

    async def start_hls(self, room: str, directory: str) -> None:
        """The room's host as live HLS in `directory`, made by the room's worker (hls.py)."""
        await self._post_recording(await self._worker_for(room), room, {"hls": directory})

    async def stop_hls(self, room: str) -> None:
        index = await self.routing.lookup(room)
        if index is not None and 0 <= index < len(self._workers) and self._workers[index].alive:
            await self._post_recording(self._workers[index], room, {"hls": None})

    async def _set_recording(self, worker: _Worker, room: str, target: RecordingTarget | None) -> None:
        await self._post_recording(worker, room, {"target": None if target is None else target.to_json()})

    async def _post_recording(self, worker: _Worker, room: str, request: dict) -> None:
        await self._post_internal(worker, "recording", room, request)

    async def _post_internal(self, worker: _Worker, route: str, room: str, request: dict) -> Any:
        """POST `request` to the worker's `/internal/<route>/<room>` (as the server); its JSON
        answer, or the worker's error as a MediaError."""
        body = json.dumps(request).encode()
        path = f"/internal/{route}/{quote(room, safe='')}"
        try:
            async with self._request(
                worker, "POST", path, "server", "host", body, content_type="application/json"
            ) as resp:
                if resp.status != 200:
                    raise _remote_error(resp.status, await resp.text())
                return await resp.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"media worker {worker.index} did not answer: {type(exc).__name__}") from None

    async def set_layer(self, room: str, viewer: str, publisher: str, layer: str) -> str:
        """`media.layer` in the worker that holds `room`'s media (MediaRouter.set_layer)."""
        worker_index = self._room_worker.get(room)
        if worker_index is None:
            worker_index = await self.routing.lookup(room)
        if worker_index is None or not 0 <= worker_index < len(self._workers):
            raise NotFound(f"no media of room {room} here")
        answer = await self._post_internal(
            self._workers[worker_index],
            "layer",
            room,
            {"viewer": viewer, "publisher": publisher, "layer": layer},
        )
        return str(answer["layer"])

    async def close_room(self, room: str) -> None:
        """End all media of `room`: its recordings, publishers (their viewers follow), viewers."""
        with contextlib.suppress(MediaError):
            await self.stop_recording(room)
        with contextlib.suppress(MediaError):
            await self.stop_hls(room)
        for session_id, route in list(self._sessions.items()):
            if route.worker_room == room or route.room == room:
                with contextlib.suppress(MediaError):
                    await self.stop(session_id, route.user)
        self._links.remove(room)

    def publishers(self, room: str) -> list[dict]:
        return self._links.merged(room, self._publishers.get(room, []), lambda r: self._publishers.get(r, []))

    def link(self, room: str, source_room: str, user: str, role: str = "pk") -> None:
        if self._links.add(room, source_room, user, role):
            self._notify(room)

    def unlink(self, room: str, source_room: str | None = None, user: str | None = None) -> None:
        if self._links.remove(room, source_room, user):
            self._notify(room)

    # ------------------------------------------------------------------ internals

    async def _worker_for(self, room: str) -> _Worker:
        if self._closing:
            raise Unavailable("media is shutting down")
        index = await self.routing.assign(room, self.loads())
        worker = self._workers[index]
        if not worker.alive:
            raise Unavailable(f"media worker {index} is restarting")
        return worker

    def _request(
        self,
        worker: _Worker,
        method: str,
        path: str,
        user: str,
        role: str,
        body: bytes | None = None,
        *,
        content_type: str = SDP_CONTENT_TYPE,
        extra_headers: Mapping[str, str] | None = None,
    ):
        if self._http is None or not worker.alive:
            raise Unavailable("media worker unavailable")
        headers = {SECRET_HEADER: self._secret, USER_HEADER: user, ROLE_HEADER: role, **(extra_headers or {})}
        if body is not None:
            headers["Content-Type"] = content_type
        return self._http.request(method, worker.base_url + path, data=body, headers=headers)

    async def _post(
        self,
        worker: _Worker,
        path: str,
        user: str,
        role: str,
        offer_sdp: str,
        extra_headers: Mapping[str, str] | None = None,
    ) -> tuple[str, str]:
        try:
            async with self._request(
                worker, "POST", path, user, role, offer_sdp.encode(), extra_headers=extra_headers
            ) as resp:
                text = await resp.text()
                if resp.status != 201:
                    raise _remote_error(resp.status, text)
                location = resp.headers.get("Location", "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"media worker {worker.index} did not answer: {type(exc).__name__}") from None
        return location.rsplit("/", 1)[-1], text

    def _notify_publishers_of(self, room: str) -> None:
        self._notify(room)
        for linked in self._links.rooms_showing(room):
            self._notify(linked)

    def _notify(self, room: str) -> None:
        if self._list_changes.changed(room) and self.on_publishers_changed is not None and not self._closing:
            try:
                self.on_publishers_changed(room)
            except Exception:
                logger.exception("on_publishers_changed failed for %s", room)


def _remote_error(status: int, text: str) -> MediaError:
    code, message = parse_error_body(text)
    return MediaError(message, code=code, status=status)
