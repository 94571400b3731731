"""Log lines that a client cannot forge.

Anything a client controls (a percent-decoded path, a header, a room id, an
exception message quoting its input) could otherwise carry CR/LF and write whole
fake lines, or bidi overrides that make a line read differently than it parses.
``clean`` escapes such characters as ``\\xNN`` / ``\\uNNNN``; ``SafeFormatter``
applies it to every record's message and exception text; ``AccessLogger`` is
the aiohttp access log (without query strings: ``?token=`` never reaches a log).
"""

from __future__ import annotations

import logging
import re
import traceback

from aiohttp.abc import AbstractAccessLogger

# C0 and DEL, C1, line/paragraph separators, bidi embeddings/overrides/isolates,
# and the other zero-width format characters that can hide or reorder text.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def clean(text: object) -> str:
    """``str(text)`` with every control, separator and bidi character escaped."""
    s = text if isinstance(text, str) else str(text)
    return _UNSAFE.sub(_escape, s)


def format_exception(exc: BaseException) -> str:
    """A traceback whose exception messages (client data) are escaped; the frames
    (our code) are kept as they are."""
    # (exception, the sentence that leads from it to the one raised after it)
    chain: list[tuple[traceback.TracebackException, str]] = []
    te: traceback.TracebackException | None = traceback.TracebackException.from_exception(exc)
    note = ""
    while te is not None:
        chain.append((te, note))
        if te.__cause__ is not None:
            te, note = te.__cause__, traceback._cause_message  # type: ignore[attr-defined]
        elif te.__context__ is not None and not te.__suppress_context__:
            te, note = te.__context__, traceback._context_message  # type: ignore[attr-defined]
        else:
            te = None
    out: list[str] = []
    for te, note in reversed(chain):
        if te.stack:
            out.append("Traceback (most recent call last):\n")
            out.extend(te.stack.format())
        name = te.exc_type.__qualname__ if te.exc_type is not None else "Exception"
        message = clean(te._str)  # type: ignore[attr-defined]
        out.append(f"{name}: {message}\n" if message else f"{name}\n")
        out.append(note)
    return "".join(out).rstrip("\n")


class SafeFormatter(logging.Formatter):
    """Formats like ``inner`` with the message and exception text escaped."""

    def __init__(self, inner: logging.Formatter | None = None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        safe = logging.makeLogRecord(record.__dict__)
        safe.msg, safe.args = clean(record.getMessage()), None
        if record.exc_info and record.exc_info[1] is not None:
            safe.exc_text, safe.exc_info = format_exception(record.exc_info[1]), None
        elif record.exc_text:
            safe.exc_text = clean(record.exc_text)
        return self.inner.format(safe)


def install(logger: logging.Logger | None = None) -> None:
    """Wrap the formatter of every handler of ``logger`` (the root) in ``SafeFormatter``."""
    for handler in (logger or logging.getLogger()).handlers:
        if not isinstance(handler.formatter, SafeFormatter):
            handler.setFormatter(SafeFormatter(handler.formatter))


class AccessLogger(AbstractAccessLogger):
    """One line per request; the path and User-Agent escaped, no query string."""

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request, response, time: float) -> None:  # type: ignore[override]
        self.logger.info(
            '%s "%s %s" %s %s %.3fs "%s"',
            request.remote,
            clean(request.method),
            clean(request.path),
            response.status,
            response.body_length,
            time,
            clean(request.headers.get("User-Agent", "-")),
        )
