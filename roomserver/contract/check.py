"""Contract checks: every event and reply the server sends, against its schema.

Off in production (they cost a decode per message); on when the environment
sets ``ROOMSERVER_CONTRACT_CHECK=1``, as tests/conftest.py does for every test
and every server process the tests start. A violation raises
``ContractViolation``: the op that caused it answers ``internal`` and the test
that sent it fails, so code that emits an unregistered event type or a field the
contract does not name cannot pass the test suite.
"""

from __future__ import annotations

import os
from typing import Any

import msgspec

from roomserver.contract.events import event_spec
from roomserver.contract.ops import REPLIES

ENV = "ROOMSERVER_CONTRACT_CHECK"
ENABLED = os.environ.get(ENV) == "1"

_encode = msgspec.json.Encoder().encode


class ContractViolation(AssertionError):
    """The server was about to send something its contract does not describe."""


def check_event(ev: str, data: Any, *, durable: bool) -> None:
    spec = event_spec(ev)
    if spec is None:
        raise ContractViolation(f"event {ev!r} is not in roomserver/contract/events.py")
    if spec.durable != durable:
        raise ContractViolation(f"event {ev!r} is registered durable={spec.durable}, sent durable={durable}")
    _conforms(f"event {ev!r}", data, spec.data)


def check_reply(op: str, data: Any) -> None:
    reply = REPLIES.get(op)
    if reply is None:
        raise ContractViolation(f"op {op!r} has no reply schema in roomserver/contract/ops.py")
    _conforms(f"reply of {op!r}", data, reply)


def _conforms(what: str, data: Any, schema: type) -> None:
    # Through JSON: what the client will decode (msgspec.Raw members included).
    try:
        msgspec.json.decode(_encode(data), type=schema)
    except msgspec.ValidationError as exc:
        raise ContractViolation(f"{what} does not match {schema.__name__}: {exc}") from None
