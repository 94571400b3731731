"""``media.layer`` when the caller's WHEP sessions are on another node (issue 13).

A load balancer places a viewer's WebSocket and its WHEP sessions independently, so the
node that gets ``media.layer`` may hold none of the sessions it is about. That node then
asks the other announced nodes, all at once:

    POST {node address}/v1/rooms/{room}/media/layer    {"viewer", "publisher", "layer"}
    Authorization: Bearer <node-to-node token>         (user ``node:<id>``, room-scoped,
                                                        minted with the app's secret as
                                                        relays' tokens are)

A node answers 200 ``{"layer"}`` when it holds such sessions (it applied the choice) and
404 when it does not. The first 200 is the answer; only 404s → ``not_found``, as on one
node; no 200 and a node that failed or did not answer → ``unavailable`` (retry). Nodes are
few (one per machine or pod), so asking each costs less than a record per WHEP session on
the bus that every play and stop would have to write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Literal
from urllib.parse import quote

import aiohttp
import msgspec
from aiohttp import web

from roomserver.auth import AuthError, TokenVerifier, mint_token
from roomserver.bus.base import Broker, BrokerUnavailable
from roomserver.core import media_origin
from roomserver.core import nodes as node_rules
from roomserver.media.errors import BadRequest, Forbidden, MediaError, Unauthorized, Unavailable
from roomserver.media.whip import ROOM_ID, bearer_token, error_response, read_body
from roomserver.tenancy import app_of, public_room, room_key

log = logging.getLogger(__name__)

PATH = "/v1/rooms/{room}/media/layer"
PEER_TIMEOUT_S = 3.0
TOKEN_TTL_S = 60
MAX_BODY_BYTES = 4096

LayerChoice = Literal["high", "low", "auto"]
UserId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
# (room key, viewer, publisher, layer) → the layer now got; raises NotFound if this node
# holds no session of `viewer` playing `publisher` in the room.
SetLocalLayer = Callable[[str, str, str, str], Awaitable[str]]


class PeerLayerRequest(msgspec.Struct, forbid_unknown_fields=True):
    """What one node asks another to apply to its WHEP sessions (``media.layer``)."""

    viewer: UserId
    publisher: UserId
    layer: LayerChoice


class PeerLayerReply(msgspec.Struct):
    layer: str


class MediaPeers:
    """The asking side: this node's view of the other nodes, and how to reach them."""

    def __init__(
        self,
        broker: Broker,
        verifier: TokenVerifier,
        node_id: str,
        http: Callable[[], aiohttp.ClientSession | None],
    ) -> None:
        self.broker = broker
        self.verifier = verifier
        self.node_id = node_id
        self._http = http

    async def set_layer(self, room: str, viewer: str, publisher: str, layer: str) -> str | None:
        """The layer another node applied, or None when no node holds such sessions.
        Raises Unavailable when none applied it and some node did not answer."""
        http = self._http()
        secret = self.verifier.apps.get(app_of(room))
        if http is None or secret is None:
            return None
        try:
            entries = await self.broker.nodes()
        except BrokerUnavailable:
            raise Unavailable("the node list is unavailable, retry") from None
        addresses = []
        for node, (blob, ttl) in entries.items():
            entry = node_rules.decode(node, blob, ttl)
            if node != self.node_id and entry is not None and entry.get("address"):
                addresses.append(str(entry["address"]))
        if not addresses:
            return None
        public = public_room(room)
        token = mint_token(
            app_of(room), secret, media_origin.node_user(self.node_id), room=public, ttl_s=TOKEN_TTL_S
        )
        body = msgspec.json.encode(PeerLayerRequest(viewer, publisher, layer))  # type: ignore[arg-type]
        asks = [asyncio.ensure_future(self._ask(http, a, public, token, body)) for a in addresses]
        failed = False
        try:
            for done in asyncio.as_completed(asks):
                answer = await done
                if isinstance(answer, str):
                    return answer
                failed = failed or answer
        finally:
            for ask in asks:
                ask.cancel()
        if failed:
            raise Unavailable("a node that may hold your media did not answer, retry")
        return None

    @staticmethod
    async def _ask(
        http: aiohttp.ClientSession, address: str, room: str, token: str, body: bytes
    ) -> str | bool:
        """The layer the node applied; False if it holds no such session; True if it failed."""
        url = address.rstrip("/") + PATH.format(room=quote(room, safe=""))
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        try:
            async with http.post(
                url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=PEER_TIMEOUT_S)
            ) as resp:
                if resp.status == 404:
                    return False
                if resp.status == 200:
                    return msgspec.json.decode(await resp.read(), type=PeerLayerReply).layer
                log.warning("media.layer at %s: HTTP %s", address, resp.status)
        except (aiohttp.ClientError, TimeoutError, msgspec.DecodeError) as exc:
            log.warning("media.layer at %s failed: %r", address, exc)
        return True


def peer_layer_route(verifier: TokenVerifier, set_local_layer: SetLocalLayer) -> web.RouteDef:
    """The answering side: ``POST /v1/rooms/{room}/media/layer`` for other nodes only."""

    async def media_layer_for_peer(request: web.Request) -> web.StreamResponse:
        try:
            room = request.match_info["room"]
            if not ROOM_ID.match(room):
                raise BadRequest("bad room id")
            token = bearer_token(request)
            if token is None:
                raise Unauthorized("send the node-to-node token as Authorization: Bearer JWT")
            try:
                identity = verifier.verify(token)
            except AuthError as exc:
                raise Unauthorized(str(exc)) from None
            if not identity.user.startswith(media_origin.NODE_USER_PREFIX) or not identity.admits(room):
                raise Forbidden("only the nodes of this deployment may call this")
            raw = await read_body(request, MAX_BODY_BYTES, "media.layer bodies")
            try:
                ask = msgspec.json.decode(raw, type=PeerLayerRequest)
            except msgspec.DecodeError as exc:
                raise BadRequest(f"bad body: {exc}") from None
            layer = await set_local_layer(room_key(identity.app, room), ask.viewer, ask.publisher, ask.layer)
            return web.Response(
                body=msgspec.json.encode(PeerLayerReply(layer)), content_type="application/json"
            )
        except MediaError as error:
            return error_response(error)

    media_layer_for_peer.openapi = {  # type: ignore[attr-defined]
        "summary": "Nodes only: media.layer on this node's WHEP sessions of a viewer",
        "auth": "node",
        "body": PeerLayerRequest,
        "reply": PeerLayerReply,
        "errors": (403, 404),
        "bus": False,
    }
    return web.post(PATH, media_layer_for_peer)
