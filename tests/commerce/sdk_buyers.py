"""Buyers of the fault tests (a primary killed mid-sale, a node cut off): SDK clients
that buy as an app would, retrying each attempt's ``cid`` until the answer is definitive."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from roomserver.client import RoomClient, RoomError


@dataclass
class Buyer:
    user: str
    client: RoomClient
    # cid -> every answer: ("ok", order) or (code, message)
    answers: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)
    acked_at: dict[str, float] = field(default_factory=dict)  # cid -> first acknowledgement

    def acked(self) -> dict[str, dict]:
        """cid -> the order, for each cid whose last answer was ``ok``."""
        return {cid: a[-1][1] for cid, a in self.answers.items() if a and a[-1][0] == "ok"}

    def final(self, cid: str) -> tuple[str, Any]:
        return self.answers[cid][-1]


async def settle(
    buyer: Buyer, room: str, sale: str, cid: str, deadline: float, unsettled: Collection[str]
) -> tuple[str, Any]:
    """``sale_buy`` with this cid until the answer is not one of ``unsettled`` or the
    deadline has passed: the last answer (the caller checks it settled)."""
    log = buyer.answers.setdefault(cid, [])
    while True:
        try:
            log.append(("ok", (await buyer.client.sale_buy(room, sale, 1, cid=cid))["order"]))
            buyer.acked_at.setdefault(cid, time.monotonic())
            return log[-1]
        except RoomError as err:
            log.append((err.code, err.message))
            if err.code not in unsettled or time.monotonic() > deadline:
                return log[-1]
        await asyncio.sleep(0.2)


async def shop(
    buyer: Buyer,
    room: str,
    sale: str,
    wants: int,
    deadline: float,
    unsettled: Collection[str],
    rng: random.Random,
) -> None:
    """``wants`` attempts, one after the other at a shopper's pace, each settled."""
    await asyncio.sleep(rng.uniform(0, 1.0))
    for n in range(wants):
        await settle(buyer, room, sale, f"{buyer.user}-{n}", deadline, unsettled)
        await asyncio.sleep(rng.uniform(0.5, 1.5))


def unsettled_cids(buyers: list[Buyer], unsettled: Collection[str]) -> list[tuple[str, str, Any]]:
    """(user, cid, its last answers) of every attempt that never got a definitive answer."""
    return [
        (b.user, cid, answers[-3:])
        for b in buyers
        for cid, answers in b.answers.items()
        if answers[-1][0] in unsettled
    ]
