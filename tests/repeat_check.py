"""Rerun the timing-sensitive tests many times, with the other core kept busy.

    python -m tests.repeat_check            # the check `make test` runs (about a minute)
    python -m tests.repeat_check --count 30 # the same at 30 rounds (how docs/testing.md was made)
    python -m tests.repeat_check --idle     # without the busy core

A test that fails once in twenty runs is a bug, and one full run of the suite
rarely shows it. These are the tests whose outcome once depended on timing (a
race in the SDK's reconnect, a machine too loaded for a fixed bound); each runs
``count`` times (``ROUNDS`` scales it per test: the slow ones fewer times) in
one pytest session, while a spinning process keeps one core busy so that the
timing is not the idle machine's. Exit status: pytest's (0 when every round
passed). See docs/testing.md for what each one caught.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
from collections.abc import Iterator

import pytest

# node id -> rounds per unit of --count (the slow ones run fewer times).
ROUNDS: dict[str, float] = {
    # Redis killed and restarted empty: the send after recovery once raced the SDK's
    # re-join (not_joined, 3 of 30). About 5 s a round.
    "tests/cluster/test_redis_outage.py::test_redis_down_then_back": 0.5,
    # The same race, made deterministic: history_gone on the resume, a restore that fails.
    "tests/integration/test_sdk.py::test_request_queued_during_reconnect_waits_for_the_rejoin_after_history_gone": 1,
    "tests/integration/test_sdk.py::test_rooms_that_cannot_be_restored_are_retried_before_requests_go_out": 1,
    "tests/integration/test_sdk.py::test_requests_during_reconnect_wait_for_the_new_socket": 1,
    "tests/integration/test_sdk.py::test_reconnect_after_4008_resumes_without_gap_or_duplicate": 1,
    "tests/integration/test_sdk.py::test_history_gone_on_reconnect_rejoins_and_emits_resync": 1,
    # Five sends once assumed to fit in one wall-clock second of the barrage cap.
    "tests/integration/test_chat.py::test_barrage_cap_sheds_over_the_room_cap": 0.5,
    # 300 rooms' presence in one call once outlasted the 1 s op timeout on a loaded machine.
    "tests/contract/test_broker_batching.py::test_presence_and_rooms_across_many_rooms": 0.5,
    # A reply lost after the op ran on Redis: one event after the retry with its cid.
    "tests/cluster/test_redis_outage.py::test_unavailable_means_unknown_and_a_retry_with_the_same_cid_publishes_once": 0.1,
}
DEFAULT_COUNT = 6


class Repeat:
    """A pytest plugin: every collected test runs ``rounds(nodeid)`` times."""

    def __init__(self, count: int) -> None:
        self.count = count

    def rounds(self, nodeid: str) -> int:
        base = nodeid.split("[", 1)[0]
        return max(1, round(self.count * ROUNDS.get(base, 1)))

    @pytest.fixture
    def _repeat_round(self, request: pytest.FixtureRequest) -> int:
        return request.param

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        n = self.rounds(metafunc.definition.nodeid)
        if n > 1:
            metafunc.fixturenames.append("_repeat_round")
            metafunc.parametrize(
                "_repeat_round", range(n), indirect=True, ids=[f"round{i + 1}" for i in range(n)]
            )


@contextlib.contextmanager
def busy_core(enabled: bool) -> Iterator[None]:
    """One process spinning on a core for as long as the block runs."""
    if not enabled:
        yield
        return
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spin.kill()
        spin.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--count", type=int, default=DEFAULT_COUNT, help="rounds per test (default %(default)s)"
    )
    parser.add_argument("--idle", action="store_true", help="do not keep a core busy meanwhile")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments")
    args = parser.parse_args(argv)
    with busy_core(not args.idle):
        return int(
            pytest.main(
                ["-q", "-p", "no:cacheprovider", *ROUNDS, *args.pytest_args], plugins=[Repeat(args.count)]
            )
        )


if __name__ == "__main__":
    sys.exit(main())
