"""A WHEP viewer run inside a network namespace (tests/media/test_turn.py), signalled through
its stdin/stdout so that the namespace needs no route to the server at all:

    python -m tests.media.netns_viewer --turn-url URL --username U --credential C [--frames N]
    stdout: {"offer": sdp}        stdin: {"answer": sdp}
    stdout: {"frames": n, "pairs": [[local type, remote type], ...]}   (then exits)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from roomserver.core.turn import IceServer
from roomserver.media.client import Viewer


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turn-url", required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--credential", required=True)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--timeout", type=float, default=30)
    parser.add_argument("--relay-only", action="store_true")
    args = parser.parse_args()
    viewer = Viewer(
        ice_servers=[IceServer(args.turn_url, args.username, args.credential)], relay_only=args.relay_only
    )
    try:
        print(json.dumps({"offer": await viewer.offer()}), flush=True)
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await viewer.accept(json.loads(line)["answer"])
        await viewer.wait_for(lambda v: len(v.video) >= args.frames, timeout=args.timeout)
        print(
            json.dumps({"frames": len(viewer.video), "pairs": viewer.selected_candidate_types()}), flush=True
        )
    finally:
        await viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
