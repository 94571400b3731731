"""MediaRouter: the per-process selective forwarding unit.

    rooms ─► publishers (user, role: host|cohost|call, one RTCPeerConnection, one
             TrackForwarder per m-line) ─► viewers (one RTCPeerConnection each, one
             ForwardedTrack per forwarded m-line)

Sessions are WHIP (publish) or WHEP (play) sessions; each owns exactly one peer connection
and is closed on `stop`, on ICE/DTLS failure or remote close, when it does not connect within
`connect_timeout`, when its publisher goes away (viewers), and on `close()`. Every peer
connection the router creates is in `_live_pcs` from creation until `close()` has finished,
so `peer_connections` is an exact leak check.

PK: `link(room, source_room, user)` shows `user` (publishing in `source_room`) in `room`'s
publisher list with role "pk", and `play(room, user, ...)` plays it from `room`.

Cascade (cascade.py): with `upstreams` set, playing a publisher this router does not hold
asks it where the publisher is; one on another node is relayed here once (a relay session:
a PublisherSession whose pc is a WHEP client of that node) and shared by every local viewer.
Relays are not listed in `publishers()` (the origin's list is the room's) and close
`relay_idle_s` after their last viewer left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError, OperationError
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import SessionDescription, candidate_from_sdp

from roomserver.core.layers import CHOICES as LAYER_CHOICES
from roomserver.core.layers import HIGH, LAYERS, LOW

from .cascade import Upstream, UpstreamLocator
from .errors import BadRequest, Forbidden, LimitReached, NotFound, Unavailable, session_at
from .forwarding import (
    AUDIO_QUEUE_FRAMES,
    KEYFRAME_REQUEST_INTERVAL_S,
    VIDEO_QUEUE_FRAMES,
    TrackForwarder,
    relay_keyframe_requests,
    tap_receiver,
)
from .hls import HlsRendition, hls_capable
from .ice import advertise_public_ip, pin_host_addresses, rtc_configuration
from .layer_switching import LayerSwitcher
from .links import ROLE_ORDER, ListChanges, PublisherLinks
from .negotiation import MEDIA_KINDS, bundles_all, media_lines, parse_offer, publisher_codec
from .recording import PublisherRecording, RecordingTarget, recording_extension
from .rtp_forwarding import RtpFanout, SilentTrack, tap_rtp
from .trickle import Unprocessable, parse_fragment
from .udp_batch import SendBatcher

logger = logging.getLogger(__name__)

PUBLISH_ROLES = ("host", "cohost", "call")
SENDING = ("sendonly", "sendrecv")
RECEIVING = ("recvonly", "sendrecv")
# "rtp": packets are rewritten and sent on (rtp_forwarding.py); "frame": frames are
# reassembled and re-packetized per viewer (forwarding.py), the earlier path.
FORWARDING_MODES = ("rtp", "frame")
# Errors aiortc raises for offers it cannot apply (bad fingerprints, no common codec, ...).
_NEGOTIATION_ERRORS = (ValueError, OperationError, InvalidAccessError, InvalidStateError, InternalError)
RELAY_LAYERS = (HIGH, LOW)  # what a relay asks the origin for (WHEP `?layers=`)
RELAY_IDLE_S = 5.0  # a relay outlives its last viewer this long (a viewer re-joining reuses it)
# A relay that received no frame for this long is closed: its origin died without a word (a
# kill -9 sends no DTLS close, and aiortc's ICE consent check gives up only after 30 s). Its
# viewers are closed with it, and play again through whatever origin the bus names now.
RELAY_SILENT_S = 5.0


@dataclass(eq=False)
class Session:
    id: str
    kind: str  # "publish" | "play"
    room: str
    user: str
    pc: RTCPeerConnection
    created_at: float = field(default_factory=time.monotonic)
    closed: bool = False


@dataclass(eq=False)
class PublisherSession(Session):
    role: str = "host"
    stream: str = ""
    forwarders: list[TrackForwarder] = field(default_factory=list)
    fanouts: dict[TrackForwarder, RtpFanout] = field(default_factory=dict)  # "rtp" mode
    batcher: SendBatcher = field(default_factory=SendBatcher)  # its fanouts' staged sends
    viewer_ids: set[str] = field(default_factory=set)
    upstream: Upstream | None = None  # set on a relay of a publisher on another node
    joining: int = 0  # viewers negotiating (a relay is not idle while one is)
    # Quality layers (`?layers=` on WHIP): the video forwarder in `forwarders` is the high
    # layer, `low` the other encoding (kept out of `forwarders`: recording, HLS and the
    # publisher list see one video track).
    low: TrackForwarder | None = None

    def layer_fanouts(self, forwarder: TrackForwarder) -> dict[str, RtpFanout] | None:
        """{"high": …, "low": …} when `forwarder` is this publisher's layered video."""
        if self.low is None or forwarder.kind != "video" or forwarder not in self.fanouts:
            return None
        return {HIGH: self.fanouts[forwarder], LOW: self.fanouts[self.low]}

    def entry(self) -> dict:
        """The PROTOCOL.md `media.publishers` entry; `stream` changes on every re-publish."""
        return {
            "user": self.user,
            "role": self.role,
            "stream": self.stream,
            "tracks": [self._track_entry(f) for f in self.forwarders],
        }

    def _track_entry(self, forwarder: TrackForwarder) -> dict:
        entry: dict[str, Any] = {"kind": forwarder.kind, "codec": forwarder.choice.name}
        if forwarder.kind == "video" and self.low is not None:
            entry["layers"] = list(LAYERS)
        return entry


@dataclass(eq=False)
class ViewerSession(Session):
    publisher_id: str = ""
    publisher_user: str = ""
    tracks: list[MediaStreamTrack] = field(default_factory=list)  # ForwardedTrack | SilentTrack
    layers: LayerSwitcher | None = None  # video of a layered publisher, "rtp" mode


class MediaRouter:
    """Per-process SFU. All methods run on the event loop that created the router.

    Options: `ice_host` pins the addresses host candidates are gathered on (process-wide,
    see ice.py; "127.0.0.1" in tests), `public_ip` is advertised instead of them in answers,
    `max_publishers_per_room` caps a room (host + 8 co-hosts, or a 9-person call),
    `max_peer_connections` caps this process (503 `unavailable` beyond it),
    `connect_timeout` closes sessions that never connect, the queue sizes bound each
    viewer's backlog, `keyframe_interval` rate-limits keyframe requests to a publisher,
    `forwarding` picks RTP-level or frame-level forwarding (FORWARDING_MODES).
    """

    def __init__(
        self,
        *,
        ice_host: str | None = None,
        public_ip: str | None = None,
        max_publishers_per_room: int = 9,
        max_peer_connections: int | None = None,
        connect_timeout: float = 20.0,
        video_queue_frames: int = VIDEO_QUEUE_FRAMES,
        audio_queue_frames: int = AUDIO_QUEUE_FRAMES,
        keyframe_interval: float = KEYFRAME_REQUEST_INTERVAL_S,
        forwarding: str = "rtp",
        on_publishers_changed: Callable[[str], None] | None = None,
        on_session_closed: Callable[[str], None] | None = None,
        upstreams: UpstreamLocator | None = None,
        relay_idle_s: float = RELAY_IDLE_S,
        relay_silent_s: float = RELAY_SILENT_S,
    ) -> None:
        if ice_host is not None:
            pin_host_addresses([ice_host])
        self.ice_host = ice_host
        self.public_ip = public_ip
        self.max_publishers_per_room = max_publishers_per_room
        self.max_peer_connections = max_peer_connections
        self.connect_timeout = connect_timeout
        if forwarding not in FORWARDING_MODES:
            raise ValueError(f"forwarding must be one of {FORWARDING_MODES}, not {forwarding!r}")
        self.forwarding = forwarding
        self._forwarder_options: dict[str, Any] = {
            "video_queue_frames": video_queue_frames,
            "audio_queue_frames": audio_queue_frames,
            "keyframe_interval": keyframe_interval,
        }
        self.on_publishers_changed = on_publishers_changed
        self.on_session_closed = on_session_closed
        self.upstreams = upstreams
        self.relay_idle_s = relay_idle_s
        self.relay_silent_s = relay_silent_s
        self._relays: dict[tuple[str, str], PublisherSession] = {}
        self._relaying: dict[tuple[str, str], asyncio.Task[PublisherSession]] = {}
        self._sessions: dict[str, Session] = {}
        self._publishers: dict[str, dict[str, PublisherSession]] = {}
        self._links = PublisherLinks()
        self._list_changes = ListChanges(self.publishers)
        self._live_pcs: set[RTCPeerConnection] = set()
        self._closing_pcs: dict[RTCPeerConnection, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._closing = False
        self._record_targets: dict[str, RecordingTarget] = {}
        self._recordings: dict[str, PublisherRecording] = {}  # publisher session id → its file
        self._hls_dirs: dict[str, str] = {}  # room → where its host's live HLS goes
        self._hls: dict[str, HlsRendition] = {}  # host session id → its rendition

    # ------------------------------------------------------------------ queries

    @property
    def peer_connections(self) -> int:
        """Peer connections created and not yet fully closed (negotiating ones included)."""
        return len(self._live_pcs)

    @property
    def sessions(self) -> dict[str, Session]:
        return dict(self._sessions)

    def session(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def rooms(self) -> list[str]:
        return sorted({s.room for s in self._sessions.values()})

    def local_publishers(self, room: str) -> list[dict]:
        """Publishers of `room` itself (no PK links), in display order."""
        sessions = sorted(
            self._publishers.get(room, {}).values(), key=lambda s: (ROLE_ORDER[s.role], s.created_at)
        )
        return [s.entry() for s in sessions]

    def publishers(self, room: str) -> list[dict]:
        """PROTOCOL.md `media.publishers` list of `room`, PK-linked publishers included."""
        return self._links.merged(room, self.local_publishers(room), self.local_publishers)

    def publisher_session(self, room: str, user: str) -> PublisherSession | None:
        return self._publishers.get(room, {}).get(user)

    def relays(self) -> list[PublisherSession]:
        """Open relays of publishers on other nodes (cascade.py)."""
        return [r for r in self._relays.values() if not r.closed]

    # ------------------------------------------------------------------ PK links

    def link(self, room: str, source_room: str, user: str, role: str = "pk") -> None:
        if self._links.add(room, source_room, user, role):
            self._notify(room)

    def unlink(self, room: str, source_room: str | None = None, user: str | None = None) -> None:
        if self._links.remove(room, source_room, user):
            self._notify(room)

    # ------------------------------------------------------------------ recording

    def start_recording(self, room: str, target: RecordingTarget) -> None:
        """Record every publisher of `room` (those here now and those who publish later) into
        `target.directory` until `stop_recording`/`close_room`. A new target (the next show)
        closes the previous show's files first."""
        if self._record_targets.get(room) not in (None, target):
            self.stop_recording(room)
        self._record_targets[room] = target
        for session in self._publishers.get(room, {}).values():
            self._record(session)

    def stop_recording(self, room: str) -> None:
        self._record_targets.pop(room, None)
        for session_id in list(self._recordings):
            session = self._sessions.get(session_id)
            if session is None or session.room == room:
                self._finish_recording(session_id)

    def recording(self, session_id: str) -> PublisherRecording | None:
        return self._recordings.get(session_id)

    def start_hls(self, room: str, directory: str) -> None:
        """A live HLS rendition of `room`'s host (H.264, or VP8 transcoded) in `directory`, now and after
        every (re)publish, until `stop_hls`/`close_room` (hls.py)."""
        self._hls_dirs[room] = directory
        for session in self._publishers.get(room, {}).values():
            self._start_hls(session)

    def stop_hls(self, room: str) -> None:
        self._hls_dirs.pop(room, None)
        for session_id, rendition in list(self._hls.items()):
            session = self._sessions.get(session_id)
            if session is None or session.room == room:
                del self._hls[session_id]
                rendition.close()

    def hls(self, session_id: str) -> HlsRendition | None:
        return self._hls.get(session_id)

    def _start_hls(self, session: PublisherSession) -> None:
        directory = self._hls_dirs.get(session.room)
        if directory is None or session.role != "host" or session.id in self._hls or session.closed:
            return
        if not hls_capable(session.forwarders):
            logger.info(
                "no HLS for %s in %s: the host sends neither H.264 nor VP8", session.user, session.room
            )
            return
        for other_id in [i for i, r in self._hls.items() if r.target.directory == directory]:
            self._hls.pop(other_id).close()  # one rendition per room: the newest host publish
        try:
            self._hls[session.id] = HlsRendition(directory, session.forwarders, user=session.user)
        except OSError as exc:
            logger.error("cannot start HLS of %s: %r", session.room, exc)

    def _record(self, session: PublisherSession) -> None:
        target = self._record_targets.get(session.room)
        if target is None or session.id in self._recordings or session.closed:
            return
        if recording_extension(session.forwarders) is None:
            logger.info("not recording %s in %s: no VP8/H.264 video", session.user, session.room)
            return
        try:
            self._recordings[session.id] = PublisherRecording(
                target, session.forwarders, user=session.user, role=session.role
            )
        except OSError as exc:
            logger.error("cannot record %s in %s: %r", session.user, session.room, exc)

    def _finish_recording(self, session_id: str) -> None:
        recording = self._recordings.pop(session_id, None)
        if recording is not None:
            recording.close()

    # ------------------------------------------------------------------ publish

    async def publish(
        self, room: str, user: str, role: str, offer_sdp: str, layers: tuple[str, ...] | None = None
    ) -> tuple[str, str]:
        """WHIP: accept `user`'s offer in `room`; returns (session id, answer SDP).

        `layers` (core/layers.py `parse_layers`) names the offer's two video m-lines, in
        order: two encodings of one camera, each viewer getting one of them.
        A second publish by the same user in the same room replaces the first (a reconnect).
        """
        if role not in PUBLISH_ROLES:
            raise BadRequest(f"cannot publish with role {role!r}")
        offer = parse_offer(offer_sdp)
        lines = media_lines(offer)
        sending = [m for m in lines if m.direction in SENDING]
        if not sending:
            raise BadRequest("a WHIP offer must send audio or video (sendonly)")
        choices = {id(m): publisher_codec(m) for m in sending}
        layer_of: dict[int, str] = {}
        if layers is not None:
            videos = [m for m in sending if m.kind == "video"]
            if len(videos) != len(layers):
                raise BadRequest(f"layers names {len(layers)} video m-lines, the offer sends {len(videos)}")
            if len({choices[id(m)].name for m in videos}) != 1:
                raise BadRequest("the layers of a video must use the same codec")
            layer_of = {id(m): name for m, name in zip(videos, layers, strict=True)}
        others = [u for u in self._publishers.get(room, {}) if u != user]
        if len(others) >= self.max_publishers_per_room:
            raise LimitReached(f"room {room} already has {len(others)} publishers")

        pc = self._new_pc(max_bundle=bundles_all(offer))
        session = PublisherSession(
            id=_new_id(), kind="publish", room=room, user=user, pc=pc, role=role, stream=_new_id()
        )
        try:
            by_transceiver: dict[RTCRtpTransceiver, TrackForwarder] = {}
            for media in lines:
                choice = choices.get(id(media))
                if choice is None:
                    pc.addTransceiver(media.kind, direction="inactive")
                    continue
                transceiver = pc.addTransceiver(media.kind, direction="recvonly")
                transceiver.setCodecPreferences(choice.preferences())
                forwarder = TrackForwarder(choice, **self._forwarder_options)
                by_transceiver[transceiver] = forwarder
                if layer_of.get(id(media)) == LOW:
                    session.low = forwarder
                else:
                    session.forwarders.append(forwarder)
                if self.forwarding == "rtp":
                    session.fanouts[forwarder] = RtpFanout(forwarder, session.batcher)

            tapped = _tap_tracks(session, by_transceiver)
            answer = await self._answer(pc, offer_sdp)
            if tapped != set(by_transceiver):
                raise BadRequest("the offer's m-lines did not bind to the expected tracks")
            others = [u for u in self._publishers.get(room, {}) if u != user]
            if len(others) >= self.max_publishers_per_room:  # filled up while we negotiated
                raise LimitReached(f"room {room} already has {len(others)} publishers")
        except BaseException:
            await self._discard_pc(pc)
            raise

        previous = self._publishers.get(room, {}).get(user)
        self._register(session)
        self._publishers.setdefault(room, {})[user] = session
        if previous is not None:
            await self._close_session(previous, "replaced by a new publish", notify=False)
        relay = self._relays.get((room, user))
        if relay is not None and not relay.closed:
            # The publisher moved here (its node drained or died): the relay of its old
            # session goes, and with it its viewers, who play again from this publish.
            await self._close_session(relay, "its publisher now publishes on this node")
        self._record(session)
        self._start_hls(session)
        self._notify_publishers_of(room)
        return session.id, answer

    # ------------------------------------------------------------------ play

    async def play(
        self,
        room: str,
        publisher_user: str | None,
        viewer_user: str,
        offer_sdp: str,
        layers: tuple[str, ...] | None = None,
    ) -> tuple[str, str]:
        """WHEP: `viewer_user` plays `publisher_user` (default: the host) as seen from `room`.

        `layers` (WHEP `?layers=high,low`, what a relay asks) names the offer's video m-lines
        in order: each gets that layer of a layered publisher, fixed (no switching); a layer
        the publisher does not send is inactive. Without it a viewer gets one video track
        on the layer its link sustains."""
        offer: SessionDescription | None = None
        try:
            publisher = self._resolve_publisher(room, publisher_user)
        except NotFound:
            if self.upstreams is None:
                raise
            offer = _play_offer(offer_sdp, layers)  # a bad offer opens no relay
            publisher = await self._relayed_publisher(room, publisher_user)
        if offer is None:
            offer = _play_offer(offer_sdp, layers)
        publisher.joining += 1
        try:
            return await self._play(room, publisher, viewer_user, offer_sdp, offer, layers)
        finally:
            publisher.joining -= 1
            if publisher.upstream is not None and not publisher.viewer_ids:
                self._spawn(self._close_if_idle(publisher))

    async def _play(
        self,
        room: str,
        publisher: PublisherSession,
        viewer_user: str,
        offer_sdp: str,
        offer: SessionDescription,
        layers: tuple[str, ...] | None,
    ) -> tuple[str, str]:
        lines = media_lines(offer)
        pc = self._new_pc(max_bundle=bundles_all(offer))
        session = ViewerSession(
            id=_new_id(),
            kind="play",
            room=room,
            user=viewer_user,
            pc=pc,
            publisher_id=publisher.id,
            publisher_user=publisher.user,
        )
        try:
            unused = list(publisher.forwarders)
            named = iter(layers or ())
            for media in lines:
                forwarder = next((f for f in unused if f.kind == media.kind), None)
                fixed = next(named, None) if media.kind == "video" else None
                if fixed == LOW:  # the low layer, as asked (inactive when there is none)
                    forwarder = publisher.low if publisher.low in publisher.fanouts else None
                if forwarder is None or media.direction not in RECEIVING:
                    pc.addTransceiver(media.kind, direction="inactive")
                    continue
                if forwarder in unused:
                    unused.remove(forwarder)
                fanout = publisher.fanouts.get(forwarder)
                if fanout is not None:
                    silent = SilentTrack(forwarder.kind)
                    session.tracks.append(silent)
                    transceiver = pc.addTransceiver(silent, direction="sendonly")
                    sink = fanout.subscribe(silent, transceiver.sender)
                    layered = None if fixed else publisher.layer_fanouts(forwarder)
                else:
                    track: MediaStreamTrack = forwarder.subscribe()
                    session.tracks.append(track)
                    transceiver = pc.addTransceiver(track, direction="sendonly")
                    layered = None  # frame mode forwards the high layer only
                transceiver.setCodecPreferences(forwarder.choice.viewer_preferences())
                relay_keyframe_requests(transceiver.sender, forwarder)
                if layered is not None:  # its keyframe requests go to the layer it is on
                    session.layers = LayerSwitcher(sink, layered)
            if not session.tracks:
                kinds = ", ".join(f.kind for f in publisher.forwarders)
                raise BadRequest(f"the offer receives none of the publisher's tracks ({kinds})")
            answer = await self._answer(pc, offer_sdp)
        except BaseException:
            for track in session.tracks:
                track.stop()
            await self._discard_pc(pc)
            raise

        if publisher.closed:  # the publisher left while we negotiated
            for track in session.tracks:
                track.stop()
            await self._discard_pc(pc)
            raise NotFound(f"{publisher.user} stopped publishing")
        self._register(session)
        publisher.viewer_ids.add(session.id)
        return session.id, answer

    async def _relayed_publisher(self, room: str, user: str | None) -> PublisherSession:
        """The relay of `user` (None: the host) publishing on another node, opened if need be."""
        assert self.upstreams is not None
        link = self._links.find(room, user) if user is not None else None  # PK: the other room's
        upstream = await self.upstreams(link.source_room if link is not None else room, user)
        if upstream is None:
            return self._resolve_publisher(room, user)  # NotFound, unless one published meanwhile
        return await self._relay(upstream)

    def set_layer(self, room: str, viewer_user: str, publisher_user: str, choice: str) -> str:
        """PROTOCOL `media.layer`: `viewer_user`'s plays of `publisher_user` in `room` get the
        `high` or `low` layer, or the estimated one again (`auto`); returns the layer now
        chosen. NotFound if the viewer plays no layered video of that publisher here."""
        if choice not in LAYER_CHOICES:
            raise BadRequest(f"layer must be one of {', '.join(LAYER_CHOICES)}")
        switchers = [
            s.layers
            for s in self._sessions.values()
            if isinstance(s, ViewerSession)
            and s.layers is not None
            and (s.room, s.user, s.publisher_user) == (room, viewer_user, publisher_user)
        ]
        if not switchers:
            raise NotFound(f"{viewer_user} plays no layered video of {publisher_user} in {room}")
        return [switcher.pin(choice) for switcher in switchers][-1]

    def _resolve_publisher(self, room: str, user: str | None) -> PublisherSession:
        local = self._publishers.get(room, {})
        relays = [r for (r_room, _), r in self._relays.items() if r_room == room and not r.closed]
        if user is None:
            hosts = [s for s in local.values() if s.role == "host"]
            hosts += [r for r in relays if r.role == "host"]
            if not hosts:
                raise NotFound(f"nobody is publishing as host in room {room}")
            return hosts[0]
        if user in local:
            return local[user]
        relay = self._relays.get((room, user))
        if relay is not None and not relay.closed:
            return relay
        link = self._links.find(room, user)
        if link is not None:
            source = self._publishers.get(link.source_room, {}).get(user)
            if source is not None:
                return source
            relay = self._relays.get((link.source_room, user))
            if relay is not None and not relay.closed:
                return relay
        raise NotFound(f"{user} is not publishing in room {room}")

    # ------------------------------------------------------------------ relays (cascade)

    async def _relay(self, upstream: Upstream) -> PublisherSession:
        """The one relay of `upstream`'s publisher: concurrent first viewers share its opening."""
        key = (upstream.room, upstream.user)
        relay = self._relays.get(key)
        if relay is not None and not relay.closed:
            return relay
        opening = self._relaying.get(key)
        if opening is None:
            opening = self._relaying[key] = asyncio.ensure_future(self._open_relay(upstream))
            opening.add_done_callback(lambda _: self._relaying.pop(key, None))
        return await asyncio.shield(opening)

    async def _open_relay(self, upstream: Upstream) -> PublisherSession:
        pc = self._new_pc(max_bundle=True)  # two video m-lines (ice.py says why)
        session = PublisherSession(
            id=_new_id(),
            kind="publish",
            room=upstream.room,
            user=upstream.user,
            pc=pc,
            role=upstream.role,
            stream=_new_id(),
            upstream=upstream,
        )
        try:
            # Audio, and video twice: the origin sends a layered publisher's high and low
            # layers on the two (WHEP `?layers=high,low`; the second is inactive for one
            # without layers), so this node's viewers switch layers as they would there.
            kinds = [*MEDIA_KINDS, "video"]
            transceivers = [pc.addTransceiver(kind, direction="recvonly") for kind in kinds]
            await pc.setLocalDescription(await pc.createOffer())
            answer_sdp = await upstream.offer(pc.localDescription.sdp, layers=RELAY_LAYERS)
            try:
                answer = media_lines(parse_offer(answer_sdp))
            except BadRequest as exc:
                raise Unavailable(f"the media origin's answer is unusable: {exc.message}") from None
            by_transceiver: dict[RTCRtpTransceiver, TrackForwarder] = {}
            videos = 0
            for transceiver, media in zip(transceivers, answer, strict=False):
                videos += transceiver.kind == "video"
                if media.direction not in SENDING or transceiver.kind != media.kind:
                    continue
                forwarder = TrackForwarder(publisher_codec(media), **self._forwarder_options)
                by_transceiver[transceiver] = forwarder
                if videos == 2 and transceiver.kind == "video":
                    session.low = forwarder  # kept out of `forwarders`, as on the origin
                else:
                    session.forwarders.append(forwarder)
                if self.forwarding == "rtp":
                    session.fanouts[forwarder] = RtpFanout(forwarder, session.batcher)
            if session.low is not None and not any(f.kind == "video" for f in session.forwarders):
                session.forwarders.append(session.low)  # only a low layer came: it is the video
                session.low = None
            tapped = _tap_tracks(session, by_transceiver)
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))
            except _NEGOTIATION_ERRORS as exc:
                raise Unavailable(f"cannot apply the media origin's answer: {exc!r}") from None
            if not by_transceiver or tapped != set(by_transceiver):
                raise Unavailable("the media origin's answer sends no track this node can relay")
        except BaseException:
            await self._discard_pc(pc)
            self._spawn(upstream.close())
            raise
        if self._closing:
            await self._discard_pc(pc)
            self._spawn(upstream.close())
            raise Unavailable("media is shutting down")
        self._register(session)
        self._relays[(session.room, session.user)] = session
        logger.info("relaying %s of %s from %s", session.user, session.room, upstream.url)
        self._spawn(self._close_if_idle(session))  # in case its first viewer never arrives
        self._spawn(self._close_if_silent(session))
        return session

    async def _close_if_silent(self, relay: PublisherSession) -> None:
        """From its first frame on (connecting can take longer on a loaded box; a relay that
        never connects fails as any peer connection does)."""
        frames, quiet_since = 0, time.monotonic()
        while not relay.closed:
            await asyncio.sleep(min(1.0, self.relay_silent_s / 2))
            now = time.monotonic()
            total = sum(f.frames_in for f in (*relay.forwarders, *([relay.low] if relay.low else [])))
            if total != frames:
                frames, quiet_since = total, now
            elif frames and now - quiet_since >= self.relay_silent_s and not relay.closed:
                await self._close_session(relay, f"no media from the origin for {self.relay_silent_s} s")

    async def _close_if_idle(self, relay: PublisherSession) -> None:
        await asyncio.sleep(self.relay_idle_s)
        if not relay.closed and not relay.viewer_ids and not relay.joining:
            await self._close_session(relay, f"no viewer here for {self.relay_idle_s} s")

    # ------------------------------------------------------------------ stop

    async def stop(
        self, session_id: str, user: str, *, room: str | None = None, kind: str | None = None
    ) -> None:
        """Stop a session on behalf of `user`; only the user who created it may."""
        session = session_at(self._sessions, session_id, room, kind)
        if session.user != user:
            raise Forbidden("only the user who created a media session may stop it")
        await self._close_session(session, "stopped by its owner")

    async def trickle(
        self,
        session_id: str,
        user: str,
        fragment_text: str,
        *,
        room: str | None = None,
        kind: str | None = None,
    ) -> None:
        """RFC 9725 §4.3.2: add the client's trickled candidates (and end-of-candidates) to
        its session. New ICE credentials mean an ICE restart, which aiortc cannot do (422)."""
        session = session_at(self._sessions, session_id, room, kind)
        if session.user != user:
            raise Forbidden("only the user who created a media session may update it")
        fragment = parse_fragment(fragment_text)
        remote = session.pc.remoteDescription
        offer = parse_offer(remote.sdp) if remote is not None else None
        if offer is None or not offer.media:
            raise NotFound("the media session has no remote description")
        first = offer.media[0].ice
        if first is None or (fragment.ufrag, fragment.pwd) != (first.usernameFragment, first.password):
            raise Unprocessable("ICE restarts are not supported; trickle candidates of the same ICE session")
        candidates = []
        for item in fragment.candidates:
            try:
                candidate = candidate_from_sdp(item.sdp)
            except (ValueError, IndexError):
                raise BadRequest(f"malformed candidate: {item.sdp[:80]!r}") from None
            candidate.sdpMid, candidate.sdpMLineIndex = item.mid, item.mline_index
            candidates.append(candidate)
        ended = _remote_candidates_ended(session.pc)
        if ended and candidates:  # aiortc would drop them silently (RFC 8838 §11: an error)
            raise BadRequest("candidates after end-of-candidates")
        for candidate in candidates:
            await session.pc.addIceCandidate(candidate)
        if fragment.end_of_candidates and not ended:
            await session.pc.addIceCandidate(None)

    async def unpublish(self, room: str, user: str) -> bool:
        """Server-side stop of `user`'s publishing in `room` (co-host ended, kicked)."""
        session = self._publishers.get(room, {}).get(user)
        if session is None:
            return False
        await self._close_session(session, "unpublished by the server")
        return True

    async def close_room(self, room: str) -> None:
        """End all media of `room` (room ended): its recordings, HLS, publishers, viewers, links."""
        self.stop_recording(room)
        self.stop_hls(room)
        for session in [s for s in self._sessions.values() if s.room == room]:
            await self._close_session(session, "room closed")
        self._links.remove(room)

    async def close(self) -> None:
        """Close every session and peer connection; the router is unusable afterwards."""
        self._closing = True
        for session_id in list(self._recordings):
            self._finish_recording(session_id)
        self._record_targets.clear()
        for room in list(self._hls_dirs):
            self.stop_hls(room)
        await asyncio.gather(
            *(self._close_session(s, "shutdown", notify=False) for s in list(self._sessions.values())),
            return_exceptions=True,
        )
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # Peer connections still negotiating, or whose close a cancelled task was awaiting.
        await asyncio.gather(*(self._discard_pc(pc) for pc in list(self._live_pcs)), return_exceptions=True)

    # ------------------------------------------------------------------ internals

    def _new_pc(self, *, max_bundle: bool = False) -> RTCPeerConnection:
        if self._closing:
            raise Unavailable("media is shutting down")
        if self.max_peer_connections is not None and len(self._live_pcs) >= self.max_peer_connections:
            raise Unavailable("media capacity reached, retry later or elsewhere")
        pc = RTCPeerConnection(rtc_configuration(max_bundle=max_bundle))
        self._live_pcs.add(pc)
        return pc

    async def _discard_pc(self, pc: RTCPeerConnection) -> None:
        """Close `pc`, shielded: cancelling a task that awaits `RTCPeerConnection.close()` cancels
        aiortc's internal "is closed" future and breaks the close in progress (its own close
        task after a remote close included). The pc leaves `_live_pcs` once really closed."""
        closing = self._closing_pcs.get(pc)
        if closing is None:
            closing = asyncio.ensure_future(pc.close())
            self._closing_pcs[pc] = closing

            def closed(task: asyncio.Future[None]) -> None:
                self._closing_pcs.pop(pc, None)
                self._live_pcs.discard(pc)
                if not task.cancelled() and task.exception() is not None:
                    # A half-negotiated pc may fail to stop cleanly; it is unusable either way.
                    logger.error("closing a peer connection failed", exc_info=task.exception())

            closing.add_done_callback(closed)
        with contextlib.suppress(Exception):  # logged above
            await asyncio.shield(closing)

    async def _answer(self, pc: RTCPeerConnection, offer_sdp: str) -> str:
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except _NEGOTIATION_ERRORS as exc:
            raise BadRequest(f"cannot apply the SDP offer: {exc or type(exc).__name__}") from None
        await pc.setLocalDescription(await pc.createAnswer())  # gathers all candidates: no trickle
        answer = pc.localDescription.sdp
        if self.public_ip is not None:
            answer = advertise_public_ip(answer, self.public_ip)
        return answer

    def _register(self, session: Session) -> None:
        self._sessions[session.id] = session
        pc = session.pc
        connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def close_if_down(reason: str) -> None:
            if not session.closed:
                self._spawn(self._close_session(session, reason))

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState == "connected" and not connected.done():
                connected.set_result(None)
            elif pc.connectionState in ("failed", "closed"):
                if not connected.done():
                    connected.cancel()
                close_if_down(f"connection {pc.connectionState}")

        # A remote close ends DTLS without moving aiortc's connectionState (it has no
        # "disconnected"), so watch the DTLS transports as well.
        transports = {id(t.sender.transport): t.sender.transport for t in pc.getTransceivers()}
        for dtls in transports.values():

            @dtls.on("statechange")
            def on_dtls_state(dtls=dtls) -> None:
                if dtls.state in ("closed", "failed"):
                    close_if_down(f"DTLS {dtls.state}")

        self._spawn(self._watch_connect(session, connected))

    async def _watch_connect(self, session: Session, connected: asyncio.Future[None]) -> None:
        try:
            await asyncio.wait_for(connected, self.connect_timeout)
        except asyncio.CancelledError:
            return
        except TimeoutError:
            await self._close_session(session, f"did not connect within {self.connect_timeout} s")

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close_session(self, session: Session, reason: str, *, notify: bool = True) -> None:
        if session.closed:
            return
        session.closed = True
        logger.info(
            "closing %s session %s of %s in %s: %s",
            session.kind,
            session.id,
            session.user,
            session.room,
            reason,
        )
        self._sessions.pop(session.id, None)
        viewers: list[Session] = []
        if isinstance(session, PublisherSession):
            if session.fanouts:
                logger.info(
                    "forwarded %s of %s in %s: %s",
                    session.id,
                    session.user,
                    session.room,
                    session.batcher.totals,
                )
            room_publishers = self._publishers.get(session.room, {})
            if room_publishers.get(session.user) is session:
                del room_publishers[session.user]
                if not room_publishers:
                    del self._publishers[session.room]
            if session.upstream is not None:
                if self._relays.get((session.room, session.user)) is session:
                    del self._relays[(session.room, session.user)]
                self._spawn(session.upstream.close())
            self._finish_recording(session.id)
            rendition = self._hls.pop(session.id, None)
            if rendition is not None:
                rendition.close()
            for forwarder in (*session.forwarders, *([session.low] if session.low else [])):
                forwarder.end()
            for fanout in session.fanouts.values():
                fanout.end()
            viewers = [self._sessions[v] for v in session.viewer_ids if v in self._sessions]
        elif isinstance(session, ViewerSession):
            for track in session.tracks:
                track.stop()
            publisher = self._sessions.get(session.publisher_id)
            if isinstance(publisher, PublisherSession):
                publisher.viewer_ids.discard(session.id)
                if publisher.upstream is not None and not publisher.viewer_ids:
                    self._spawn(self._close_if_idle(publisher))
        await self._discard_pc(session.pc)
        for viewer in viewers:
            await self._close_session(viewer, "publisher left", notify=False)
        if self.on_session_closed is not None:
            self._call_hook(self.on_session_closed, session.id)
        if notify and isinstance(session, PublisherSession) and session.upstream is None:
            self._notify_publishers_of(session.room)

    def _notify_publishers_of(self, room: str) -> None:
        self._notify(room)
        for linked in self._links.rooms_showing(room):
            self._notify(linked)

    def _notify(self, room: str) -> None:
        if self._list_changes.changed(room) and self.on_publishers_changed is not None and not self._closing:
            self._call_hook(self.on_publishers_changed, room)

    @staticmethod
    def _call_hook(hook: Callable[[str], None], arg: str) -> None:
        try:
            hook(arg)
        except Exception:  # a failing observer must not break media cleanup
            logger.exception("media hook %r failed for %s", hook, arg)


def _play_offer(offer_sdp: str, layers: tuple[str, ...] | None) -> SessionDescription:
    """A WHEP offer, parsed once and checked against the layers it names (BadRequest)."""
    offer = parse_offer(offer_sdp)
    videos = sum(m.kind == "video" for m in media_lines(offer))
    if layers is not None and videos != len(layers):
        raise BadRequest(f"layers names {len(layers)} video m-lines, the offer has {videos}")
    return offer


def _tap_tracks(
    session: PublisherSession, by_transceiver: dict[RTCRtpTransceiver, TrackForwarder]
) -> set[RTCRtpTransceiver]:
    """Divert each receiving transceiver's media to its forwarder (and RTP fan-out) when its
    track appears (inside setRemoteDescription); the returned set fills as they bind."""
    tapped: set[RTCRtpTransceiver] = set()

    @session.pc.on("track")
    def on_track(track: object) -> None:
        for transceiver, forwarder in by_transceiver.items():
            if transceiver.receiver.track is track and transceiver not in tapped:
                tap_receiver(transceiver.receiver, forwarder)
                fanout = session.fanouts.get(forwarder)
                if fanout is not None:
                    tap_rtp(transceiver.receiver, fanout)
                tapped.add(transceiver)

    return tapped


def _remote_candidates_ended(pc: RTCPeerConnection) -> bool:
    """Whether end-of-candidates was already signalled (a repeated one is not an error)."""
    remote = pc.remoteDescription
    return remote is not None and all(m.ice_candidates_complete for m in parse_offer(remote.sdp).media)


def _new_id() -> str:
    return secrets.token_urlsafe(12)


__all__ = ["PUBLISH_ROLES", "MediaRouter", "PublisherSession", "Session", "ViewerSession"]
