#!/bin/bash
# Session 10: paired, alternating A/B of RTP forwarding cost, 1a14c87 (old) vs the branch (new).
# Same command for both; each run's server is the code of PYTHONPATH's worktree.
# Usage: ab.sh ROUNDS VIEWERS TAG  (run from anywhere; OLD/NEW worktrees below)
OLD=${OLD:-/work/wt/media-old}  # ab2: OLD=/work/wt/media-base (bd2a5d6, this branch before its fix)
NEW=/work/wt/mediacost
O=$NEW/docs/benchmarks/session10-mediacost
P=/work/main/.venv/bin/python
ROUNDS=${1:-3}; VIEWERS=${2:-150}; TAG=${3:-ab}
log() { echo "$(date -u +%H:%M:%S) $(cat /proc/loadavg) | $(uptime) | $*" >> $O/log.txt; }
for r in $(seq 1 $ROUNDS); do
  for side in old new; do
    [ $side = old ] && W=$OLD || W=$NEW
    log "$TAG round $r $side start ($(git -C $W rev-parse --short HEAD))"
    (cd $W && PYTHONPATH=$W timeout 600 $P -m loadtest.media --viewers $VIEWERS --forwarding rtp \
       --relay-viewers '' --seconds 8 --probes 3 --out $O/$TAG-r$r-$side.json) \
       > $O/$TAG-r$r-$side.stdout 2> $O/$TAG-r$r-$side.stderr
    log "$TAG round $r $side done rc=$?"
  done
done
