"""Trickle ICE over HTTP PATCH (RFC 9725 §4.3): the `application/trickle-ice-sdpfrag` body.

A fragment (RFC 8840 §9) carries the client's ICE credentials, candidates per m-line (`a=mid`)
and `a=end-of-candidates`. We support trickle (more candidates for the same ICE session) but
not ICE restarts: aiortc cannot restart ICE on a live peer connection, so a fragment with new
credentials, or a PATCH with `If-Match: "*"` (RFC 9725 §4.3.3), is answered 422 as §4.3.1 asks
of a session that supports only one of the two.

Parsing here is pure (no aiortc objects): the router turns `IceFragment` into candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import BadRequest, MediaError

TRICKLE_CONTENT_TYPE = "application/trickle-ice-sdpfrag"
MAX_FRAGMENT_BYTES = 16 * 1024
MAX_CANDIDATES = 64


class Unprocessable(MediaError):
    """422: a PATCH this session understands but does not support (an ICE restart)."""

    code = "bad_request"
    status = 422


class PreconditionFailed(MediaError):
    """412: `If-Match` names another entity-tag than the session's (RFC 9110 §13.1.1)."""

    code = "conflict"
    status = 412


@dataclass(frozen=True)
class FragmentCandidate:
    mid: str | None
    mline_index: int
    sdp: str  # the attribute value after "candidate:"


@dataclass
class IceFragment:
    ufrag: str | None = None
    pwd: str | None = None
    candidates: list[FragmentCandidate] = field(default_factory=list)
    end_of_candidates: bool = False


def parse_fragment(text: str) -> IceFragment:
    """The ICE content of a trickle-ice-sdpfrag body; BadRequest when it is not one."""
    fragment = IceFragment()
    mline = -1
    mid: str | None = None
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise BadRequest(f"not an SDP line in the fragment: {line[:60]!r}")
        key, value = line[0], line[2:]
        if key == "m":
            mline, mid = mline + 1, None
        elif key != "a":
            continue  # a=group and friends are allowed and say nothing about ICE
        elif value.startswith("mid:"):
            mid = value[4:]
        elif value.startswith("ice-ufrag:"):
            fragment.ufrag = _same(fragment.ufrag, value[10:], "ice-ufrag")
        elif value.startswith("ice-pwd:"):
            fragment.pwd = _same(fragment.pwd, value[8:], "ice-pwd")
        elif value.startswith("candidate:"):
            if len(value.split()) < 8:
                raise BadRequest(f"malformed candidate: {value[:80]!r}")
            fragment.candidates.append(FragmentCandidate(mid, max(mline, 0), value[10:]))
        elif value == "end-of-candidates":
            fragment.end_of_candidates = True
    if len(fragment.candidates) > MAX_CANDIDATES:
        raise BadRequest(f"at most {MAX_CANDIDATES} candidates per PATCH")
    if fragment.ufrag is None or fragment.pwd is None:
        raise BadRequest("the fragment must carry a=ice-ufrag and a=ice-pwd (RFC 8840 §9)")
    return fragment


def _same(seen: str | None, value: str, name: str) -> str:
    if seen is not None and seen != value:
        raise BadRequest(f"the fragment has two different {name} values (one ICE session per PATCH)")
    return value


def session_etag(session_id: str) -> str:
    """The entity-tag of a session's ICE state. Without restarts it never changes."""
    return f'"{session_id}"'
