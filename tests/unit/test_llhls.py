"""core/llhls.py: parts make segments that start at key frames, the window slides and names
the files that left it, the playlist lists parts only near the live edge, and a blocking
reload knows when what it waits for is there (and refuses what the RFC refuses)."""

from __future__ import annotations

import pytest

from roomserver.core import llhls
from roomserver.core.llhls import LivePlaylist


def fill(playlist: LivePlaylist, pattern: str) -> list[llhls.Added]:
    """'K' a part starting with a key frame, '.' one that does not; each 0.25 s."""
    return [playlist.add_part(0.25, c == "K") for c in pattern]


def test_segments_start_at_key_frames_once_due() -> None:
    p = LivePlaylist(segment_s=1, window=6)
    added = fill(p, "K..K" + "...K" + "K")
    # The key frame at 0.75 s comes too early to end a 1 s segment (< 0.8 s); the one at 1.75 s
    # ends it; the next, 0.25 s later, does not.
    assert [s.msn for s in p.segments] == [0, 1]
    assert [len(s.parts) for s in p.segments] == [7, 2]
    assert added[7].closed is p.segments[0] and added[7].part.name == "seg1.0.m4s"
    assert p.segments[0].duration == pytest.approx(1.75)


def test_a_key_frame_a_little_early_still_starts_the_segment() -> None:
    p = LivePlaylist(segment_s=1, window=6)
    p.add_part(0.3, True)
    p.add_part(0.3, False)
    p.add_part(0.25, False)  # 0.85 s ≥ 0.8 × 1 s
    added = p.add_part(0.3, True)
    assert added.closed is not None and added.closed.duration == pytest.approx(0.85)


def test_the_first_part_must_be_independent() -> None:
    with pytest.raises(ValueError):
        LivePlaylist(segment_s=1, window=6).add_part(0.25, False)


def test_the_window_slides_and_names_what_left_it() -> None:
    p = LivePlaylist(segment_s=1, window=2)
    out = fill(p, "K..." * 4 + "K")
    expired = [name for a in out for name in a.expired]
    assert expired == [
        "seg0.m4s",
        "seg0.0.m4s",
        "seg0.1.m4s",
        "seg0.2.m4s",
        "seg0.3.m4s",
        "seg1.m4s",
        "seg1.0.m4s",
        "seg1.1.m4s",
        "seg1.2.m4s",
        "seg1.3.m4s",
    ]
    text = p.render()
    assert "#EXT-X-MEDIA-SEQUENCE:2" in text and "seg1" not in text


def test_the_playlist_lists_segments_and_the_parts_near_the_live_edge() -> None:
    p = LivePlaylist(segment_s=1, window=6)
    fill(p, "K..." * 6 + "K.")
    lines = p.render().splitlines()
    assert lines[:3] == ["#EXTM3U", "#EXT-X-VERSION:9", "#EXT-X-TARGETDURATION:1"]
    assert "#EXT-X-PART-INF:PART-TARGET=0.400" in lines
    assert "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.200" in lines
    assert '#EXT-X-MAP:URI="init.mp4"' in lines
    assert [line for line in lines if line.startswith("seg")] == [f"seg{i}.m4s" for i in range(6)]
    listed = [line for line in lines if line.startswith("#EXT-X-PART:")]
    # Parts of the last 3 whole segments and of the one being filled.
    assert listed[0] == '#EXT-X-PART:DURATION=0.250,URI="seg3.0.m4s",INDEPENDENT=YES'
    assert listed[-1] == '#EXT-X-PART:DURATION=0.250,URI="seg6.1.m4s"'
    assert len(listed) == 3 * 4 + 2


def test_an_ended_playlist_closes_its_last_segment_and_lists_no_parts() -> None:
    p = LivePlaylist(segment_s=1, window=6)
    fill(p, "K...K.")
    closed = p.end()
    assert closed is not None and closed.msn == 1 and closed.complete
    text = p.render()
    assert text.endswith("seg1.m4s\n#EXT-X-ENDLIST\n")
    assert "#EXT-X-PART" not in text and "CAN-BLOCK-RELOAD" not in text
    with pytest.raises(ValueError):
        p.add_part(0.25, True)


def test_a_long_segment_raises_the_target_duration() -> None:
    p = LivePlaylist(segment_s=1, window=6)
    fill(p, "K" + "." * 9 + "K")  # 2.5 s without a key frame
    assert "#EXT-X-TARGETDURATION:3" in p.render()
    assert llhls.target_duration(p.render()) == 3


def test_reload_ready() -> None:
    p = LivePlaylist(segment_s=1, window=6)
    fill(p, "K...K.")  # seg0 whole, seg1 has parts 0 and 1
    text = p.render()
    assert llhls.reload_ready(text, 1, 1) and llhls.reload_ready(text, 0, None)
    assert llhls.reload_ready(text, 0, 9)  # a part past a whole segment's end: the segment is there
    assert not llhls.reload_ready(text, 1, 2) and not llhls.reload_ready(text, 1, None)
    assert not llhls.reload_ready(text, 3, 0)
    with pytest.raises(llhls.BadReload):
        llhls.reload_ready(text, 4, 0)  # more than two ahead
    p.end()
    assert llhls.reload_ready(p.render(), 3, 0)  # nothing more will come


@pytest.mark.parametrize(
    ("msn", "part"),
    [(None, "1"), ("-1", None), ("1.5", None), ("１", None), ("1", "x"), ("9" * 10, None), ("", None)],
)
def test_bad_reload_parameters_are_refused(msn: str | None, part: str | None) -> None:
    with pytest.raises(llhls.BadReload):
        llhls.reload_request(msn, part)


def test_reload_parameters() -> None:
    assert llhls.reload_request(None, None) is None
    assert llhls.reload_request("12", None) == (12, None)
    assert llhls.reload_request("12", "3") == (12, 3)
