"""A handle bound to one room of a ``RoomClient``: ``client.room("r1")``.

    r1 = client.room("r1")
    r1.on("barrage", lambda ev: print(ev["data"]["text"]))  # only r1's barrage
    await r1.join()
    await r1.send_barrage("hi")

Listeners added through the handle get only events whose ``room`` is the handle's (server
events and the client's local ones: ``resync``, ``error``), so an app with several rooms on
one connection no longer filters by room in every callback. The op methods are the client's
with the room filled in; getting a handle does not join the room.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from roomserver.client import Event, EventCallback, EventStream, RoomClient, RoomState

P = ParamSpec("P")
R = TypeVar("R")


class _Bound(Generic[P, R]):
    """A RoomClient method ``(room, *args)`` seen on a Room as ``(*args)``.

    A descriptor rather than forty hand-written wrappers: the signature is the client
    method's (mypy checks calls through it), and a new op needs one line here."""

    def __init__(self, method: Callable[Concatenate[RoomClient, str, P], R]) -> None:
        self._name = method.__name__

    @overload
    def __get__(self, obj: None, owner: type[Room]) -> _Bound[P, R]: ...
    @overload
    def __get__(self, obj: Room, owner: type[Room]) -> Callable[P, R]: ...
    def __get__(self, obj: Room | None, owner: type[Room]) -> _Bound[P, R] | Callable[P, R]:
        if obj is None:
            return self
        # Looked up on the client instance, so a subclass's override is the one bound.
        method: Callable[Concatenate[str, P], R] = getattr(obj.client, self._name)
        return functools.partial(method, obj.id)


class Room:
    """One room seen through a RoomClient; see the module docstring."""

    def __init__(self, client: RoomClient, room_id: str) -> None:
        self.client = client
        self.id = room_id

    def __repr__(self) -> str:
        return f"Room({self.id!r})"

    @property
    def state(self) -> RoomState | None:
        """The client's tracking state of this room (None while not joined)."""
        return self.client.rooms.get(self.id)

    def on(self, ev: str, fn: EventCallback) -> Callable[[], None]:
        """Call ``fn(event)`` for each of this room's events named ``ev`` (``"*"``: all of
        them). ``fn`` may be a coroutine function. Returns an unsubscriber."""

        def only_this_room(event: Event) -> Any:
            if event.get("room") == self.id:
                return fn(event)
            return None

        return self.client.on(ev, only_this_room)

    def events(self, *names: str, maxsize: int = 10_000) -> EventStream:
        """An async iterator over this room's events (all, or only those named)."""
        return self.client.events(*names, maxsize=maxsize, room=self.id)

    async def request(self, op: str, *, timeout: float | None = None, **params: Any) -> dict[str, Any]:
        return await self.client.request(op, self.id, timeout=timeout, **params)

    async def send(self, op: str, **params: Any) -> None:
        """Fire and forget (no reply), like ``client.send(op, room, ...)``."""
        await self.client.send(op, self.id, **params)

    join = _Bound(RoomClient.join)
    leave = _Bound(RoomClient.leave)
    resume = _Bound(RoomClient.resume)
    start = _Bound(RoomClient.start)
    end = _Bound(RoomClient.end)
    send_barrage = _Bound(RoomClient.send_barrage)
    send_like = _Bound(RoomClient.send_like)
    send_gift = _Bound(RoomClient.send_gift)
    pin_product = _Bound(RoomClient.pin_product)
    unpin_product = _Bound(RoomClient.unpin_product)
    track = _Bound(RoomClient.track)
    mute = _Bound(RoomClient.mute)
    unmute = _Bound(RoomClient.unmute)
    kick = _Bound(RoomClient.kick)
    slow = _Bound(RoomClient.slow)
    words = _Bound(RoomClient.words)
    announce = _Bound(RoomClient.announce)
    lottery_create = _Bound(RoomClient.lottery_create)
    lottery_enter = _Bound(RoomClient.lottery_enter)
    lottery_draw = _Bound(RoomClient.lottery_draw)
    sale_create = _Bound(RoomClient.sale_create)
    sale_buy = _Bound(RoomClient.sale_buy)
    coupon_issue = _Bound(RoomClient.coupon_issue)
    coupon_claim = _Bound(RoomClient.coupon_claim)
    redpacket_send = _Bound(RoomClient.redpacket_send)
    redpacket_grab = _Bound(RoomClient.redpacket_grab)
    poll_create = _Bound(RoomClient.poll_create)
    poll_vote = _Bound(RoomClient.poll_vote)
    cohost_request = _Bound(RoomClient.cohost_request)
    cohost_invite = _Bound(RoomClient.cohost_invite)
    cohost_accept = _Bound(RoomClient.cohost_accept)
    cohost_reject = _Bound(RoomClient.cohost_reject)
    cohost_end = _Bound(RoomClient.cohost_end)
    pk_invite = _Bound(RoomClient.pk_invite)
    pk_accept = _Bound(RoomClient.pk_accept)
    pk_reject = _Bound(RoomClient.pk_reject)
    pk_end = _Bound(RoomClient.pk_end)
