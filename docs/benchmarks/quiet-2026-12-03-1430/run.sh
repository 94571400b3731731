#!/usr/bin/env bash
# Session 10, quiet box (no helpers running): the RTP fan-out before (bd2a5d6) and after
# (main) the in-place SRTP change, in-process bench and end to end. Run from /work/main.
set -u
O=docs/benchmarks/quiet-2026-12-03-1430
P=/work/main/.venv/bin/python
BASE=/work/wt/base   # git worktree add --detach /work/wt/base bd2a5d6
NEW=/work/main
log() { echo "$(date +%T) $(cut -d' ' -f1-3 /proc/loadavg) | $*" >> $O/log.txt; }
fanout() { (cd $1 && PYTHONPATH=$PWD timeout 300 $P -m loadtest.rtp_fanout_bench --viewers $2 --packets 3000); }
for r in 1 2 3; do
  for side in base new; do
    dir=$BASE; [ $side = new ] && dir=$NEW
    log "fanout 150 round $r $side"; fanout $dir 150 | tail -1 | sed "s/^/{\"side\":\"$side\",\"round\":$r,\"run\":/; s/\$/}/" >> $O/fanout.jsonl
  done
done
for r in 1 2; do
  for side in base new; do
    dir=$BASE; [ $side = new ] && dir=$NEW
    log "fanout 300 round $r $side"; fanout $dir 300 | tail -1 | sed "s/^/{\"side\":\"$side\",\"round\":$r,\"run\":/; s/\$/}/" >> $O/fanout.jsonl
  done
done
log "media new rtp,frame 150,300"
(cd $NEW && PYTHONPATH=$PWD timeout 900 $P -m loadtest.media --viewers 150,300 --forwarding rtp,frame --relay-viewers '' --seconds 8 --probes 3 --out $NEW/$O/media-new.json > $NEW/$O/media-new.stdout 2> $NEW/$O/media-new.stderr)
log "media base rtp 150,300"
(cd $BASE && PYTHONPATH=$PWD timeout 900 $P -m loadtest.media --viewers 150,300 --forwarding rtp --relay-viewers '' --seconds 8 --probes 3 --out $NEW/$O/media-base.json > $NEW/$O/media-base.stdout 2> $NEW/$O/media-base.stderr)
log done
