#!/bin/bash
# The session's first commit (de0959a, unpacked in /tmp/bench-base) vs its last (/tmp/bench-new),
# with the fan-out comparison's script: ./run.sh whole 8
BENCH_TREES=/tmp/bench BENCH_OUT=/tmp/bench-out exec bash "$(dirname "$0")/../fanout-sansio-2026-12-03/run.sh" "$@"
