"""Process logging: text lines or JSON objects (``--log-format``), both forge-proof.

The gateway binds the app and user of a socket and the room of an op to context
variables (``bind_user``, ``bind_room``); every record logged inside that context
carries them, with this node's id, as JSON fields (or as ``key=value`` at the end
of a text line). Both formats pass through ``logsafe.SafeFormatter`` first, so
client text in a message or an exception is escaped before it is encoded: a JSON
log line is one object on one line whatever a client sent.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar, Token

from roomserver.logsafe import SafeFormatter, clean

APP: ContextVar[str | None] = ContextVar("log_app", default=None)
USER: ContextVar[str | None] = ContextVar("log_user", default=None)
ROOM: ContextVar[str | None] = ContextVar("log_room", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def bind_user(app: str, user: str) -> None:
    """The socket's app and user for every record of the current task (and tasks it starts)."""
    APP.set(app)
    USER.set(user)


def bind_room(room: str | None) -> Token[str | None]:
    """The room of the op being handled; reset with ``ROOM.reset(token)`` after it."""
    return ROOM.set(room)


def context_fields() -> dict[str, str]:
    fields = {"app": APP.get(), "user": USER.get(), "room": ROOM.get()}
    return {k: clean(v) for k, v in fields.items() if v is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg, node, app/user/room when known,
    exc when there is one. Receives records already escaped by ``SafeFormatter``."""

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "node": self.node_id,
            **context_fields(),
        }
        if record.exc_text:
            doc["exc"] = record.exc_text
        return json.dumps(doc, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The text line, with ``room=… user=…`` appended when a socket or op is in context."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = context_fields()
        if not fields:
            return line
        head, sep, tail = line.partition("\n")  # after the message, before a traceback
        return head + " " + " ".join(f"{k}={v}" for k, v in fields.items()) + sep + tail


def formatter(log_format: str, node_id: str) -> logging.Formatter:
    inner = JsonFormatter(node_id) if log_format == "json" else TextFormatter(TEXT_FORMAT)
    return SafeFormatter(inner)


# What ``configure`` set, for child processes (media workers) to log alike.
current: dict[str, str] = {"level": "WARNING", "format": "text", "node": ""}


def child_args() -> list[str]:
    """``--log-format/--node-id`` for a worker process of this node (workers keep their own
    level, WARNING: aiortc's INFO lines are per ICE check)."""
    return ["--log-format", current["format"], "--node-id", current["node"]]


def configure(level: str, log_format: str, node_id: str) -> None:
    """The root logger writes to stderr in ``log_format`` (``text`` or ``json``)."""
    current.update(level=level, format=log_format, node=node_id)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format, node_id))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
