"""Recordings and replays (issue 14): where a room's recordings live, whether a room records,
and the listing built from the manifests the recorder writes (roomserver/media/recording.py).
Pure: paths and dicts in, dicts out; the caller reads the files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from roomserver.core.room import RoomDoc
from roomserver.tenancy import split_room_key

# What the recorder names its files (recording.file_stem): digits, then role-user parts.
REPLAY_FILE = re.compile(r"^[0-9]{1,9}(\.[A-Za-z0-9_.@-]{1,80})?\.(webm|mp4)$")
CONTENT_TYPES = {"webm": "video/webm", "mp4": "video/mp4"}


def recording_dir(data_dir: str, room: str) -> Path:
    """``<data_dir>/recordings/<app>/<room>`` for a room key; a name's leading dots are
    escaped (``%2E``, a character no id contains) so ``.`` and ``..`` stay inside."""
    app, public = split_room_key(room)

    def safe(name: str) -> str:
        stripped = name.lstrip(".")
        return "%2E" * (len(name) - len(stripped)) + stripped

    return Path(data_dir) / "recordings" / safe(app) / safe(public)


# The live HLS rendition's files (media/hls.py names them).
HLS_FILE = re.compile(r"^(index\.m3u8|init\.mp4|seg[0-9]{1,9}(\.[0-9]{1,4})?\.m4s)$")
HLS_CONTENT_TYPES = {"m3u8": "application/vnd.apple.mpegurl", "mp4": "video/mp4", "m4s": "video/iso.segment"}


def playlist_with_token(playlist: str, token: str) -> str:
    """The playlist with `?token=` on every URI it lists. A player without MSE (Safari's native
    HLS on iOS) can put the token only on the playlist's URL, and fetches what it lists as
    written; without this the segments answer 401."""
    query = "?token=" + quote(token, safe="")
    lines = []
    for line in playlist.splitlines():
        if line and not line.startswith("#"):
            line += query
        elif 'URI="' in line:  # EXT-X-MAP, EXT-X-PART
            line = _TAG_URI.sub(lambda m: f'URI="{m.group(1)}{query}"', line)
        lines.append(line)
    return "\n".join(lines) + "\n"


_TAG_URI = re.compile(r'URI="([^"?]*)"')


def hls_dir(data_dir: str, room: str) -> Path:
    """``<data_dir>/hls/<app>/<room>`` (escaped as ``recording_dir``)."""
    recordings = recording_dir(data_dir, room)
    return Path(data_dir) / "hls" / recordings.parent.name / recordings.name


def records(doc: RoomDoc, default: bool) -> bool:
    """Whether the room's shows are recorded: its own setting, else the server's."""
    own = doc.features.get("record")
    return default if own is None else bool(own)


_FIELDS = {
    "show": int,
    "file": str,
    "user": str,
    "role": str,
    "codecs": dict,
    "show_started_at": int,
    "started_at": int,
    "offset_s": (int, float),
}


def replay_entry(manifest: Any, url_base: str) -> dict[str, Any] | None:
    """The listing entry of one manifest (None: not a finished-or-running recording's)."""
    if not isinstance(manifest, dict):
        return None
    for name, kind in _FIELDS.items():
        if not isinstance(manifest.get(name), kind):  # type: ignore[arg-type]
            return None
    if not REPLAY_FILE.match(manifest["file"]):
        return None
    entry = {name: manifest[name] for name in _FIELDS}
    entry["ended_at"] = manifest.get("ended_at")
    entry["duration_s"] = manifest.get("duration_s")
    entry["url"] = f"{url_base}/{manifest['file']}"
    return entry


def replay_list(entries: list[dict[str, Any]], show: int | None = None) -> list[dict[str, Any]]:
    """Newest show first; within a show, the host's file first, then by start."""
    chosen = [e for e in entries if show is None or e["show"] == show]
    return sorted(chosen, key=lambda e: (-e["show"], e["role"] != "host", e["started_at"], e["file"]))


def timeline(records: list[Any], started_at: int) -> dict[str, list[dict[str, Any]]]:
    """A show's barrage and product pins on its clock (seconds since ``started_at``), from
    its behaviour records (``BehaviourEvent``s of kinds barrage and mark, in time order):
    each barrage with its text, a chapter at every pin (the product's title and price as
    pinned). Records from before the text/title were kept carry none and are left out."""
    barrage: list[dict[str, Any]] = []
    chapters: list[dict[str, Any]] = []
    for r in records:
        t = round(max(0, r.ts - started_at) / 1000, 3)
        if r.kind == "barrage" and isinstance(r.data.get("text"), str):
            barrage.append({"t": t, "user": r.user, "text": r.data["text"]})
        elif r.kind == "mark" and r.data.get("what") == "pin" and isinstance(r.data.get("title"), str):
            product = {
                "id": str(r.data.get("product", "")),
                "title": r.data["title"],
                "price_cents": r.data.get("price_cents"),
            }
            chapters.append({"t": t, "product": product})
    return {"barrage": barrage, "chapters": chapters}
