"""core/replay.py: recording paths stay inside the data directory, the room's setting beats
the server's, manifests become listing entries (bad ones are skipped), and a show's records
become its replay timeline."""

from __future__ import annotations

from pathlib import Path

from roomserver.core import replay
from roomserver.core.behaviour import BehaviourEvent
from roomserver.core.replay import recording_dir, records, replay_entry, replay_list, timeline
from roomserver.core.room import RoomDoc


def test_recording_dirs_stay_inside_the_data_dir() -> None:
    assert recording_dir("/d", "app/r1") == Path("/d/recordings/app/r1")
    for room in ("app/..", "app/.", "app/..x", "app/.hidden"):
        path = recording_dir("/d", room)
        assert path.parent == Path("/d/recordings/app") and not path.name.startswith(".")
    assert recording_dir("/d", "app/..") != recording_dir("/d", "app/.")


def test_the_rooms_own_setting_beats_the_default() -> None:
    assert records(RoomDoc(id="r"), True) and not records(RoomDoc(id="r"), False)
    assert not records(RoomDoc(id="r", features={"record": False}), True)
    assert records(RoomDoc(id="r", features={"record": True}), False)
    assert records(RoomDoc(id="r", features={"record": None}), True)


MANIFEST = {
    "show": 2,
    "file": "2.webm",
    "user": "h1",
    "role": "host",
    "codecs": {"video": "VP8"},
    "show_started_at": 1000,
    "started_at": 1500,
    "offset_s": 0.5,
    "ended_at": None,
    "duration_s": None,
}


def test_manifests_become_entries_and_bad_ones_are_skipped() -> None:
    entry = replay_entry(MANIFEST, "/v1/rooms/r1/replays")
    assert entry is not None and entry["url"] == "/v1/rooms/r1/replays/2.webm"
    assert replay_entry({**MANIFEST, "file": "../x.webm"}, "/b") is None
    assert replay_entry({**MANIFEST, "show": "2"}, "/b") is None
    assert replay_entry([MANIFEST], "/b") is None
    cohost = {**MANIFEST, "file": "2.cohost-g1.webm", "role": "cohost", "started_at": 1400}
    old = {**MANIFEST, "show": 1, "file": "1.webm"}
    entries = [replay_entry(m, "/b") for m in (cohost, old, MANIFEST)]
    listed = replay_list([e for e in entries if e is not None])
    assert [e["file"] for e in listed] == ["2.webm", "2.cohost-g1.webm", "1.webm"]
    assert [e["file"] for e in replay_list(listed, show=1)] == ["1.webm"]


def _event(n: int, kind: str, ts: int, data: dict) -> BehaviourEvent:
    return BehaviourEvent(str(n), "a", "r1", 1, f"u{n}", kind, ts, ts - 10_000, data)  # type: ignore[arg-type]


def test_a_shows_records_become_its_timeline() -> None:
    events = [
        _event(1, "barrage", 11_500, {"seq": 3, "text": "hi"}),
        _event(2, "barrage", 12_000, {"seq": 4}),  # logged before texts were kept
        _event(3, "mark", 13_250, {"what": "pin", "product": "p1", "title": "Mug", "price_cents": 900}),
        _event(4, "mark", 14_000, {"what": "pin", "product": "p2"}),
        _event(5, "mark", 14_500, {"what": "sale", "id": "s1"}),
        _event(6, "barrage", 9_000, {"text": "before the start"}),
    ]
    got = timeline(events, 10_000)
    assert got["barrage"] == [
        {"t": 1.5, "user": "u1", "text": "hi"},
        {"t": 0, "user": "u6", "text": "before the start"},
    ]
    assert got["chapters"] == [{"t": 3.25, "product": {"id": "p1", "title": "Mug", "price_cents": 900}}]


def test_a_playlist_for_a_native_player_carries_the_token_on_every_uri() -> None:
    playlist = (
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:1\n"
        '#EXT-X-MAP:URI="init.mp4"\n#EXTINF:1.0,\nseg3.m4s\n#EXTINF:1.0,\nseg4.m4s\n'
    )
    got = replay.playlist_with_token(playlist, "a.b+c/d=")
    assert got.splitlines() == [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        "#EXT-X-TARGETDURATION:1",
        '#EXT-X-MAP:URI="init.mp4?token=a.b%2Bc%2Fd%3D"',
        "#EXTINF:1.0,",
        "seg3.m4s?token=a.b%2Bc%2Fd%3D",
        "#EXTINF:1.0,",
        "seg4.m4s?token=a.b%2Bc%2Fd%3D",
    ]
