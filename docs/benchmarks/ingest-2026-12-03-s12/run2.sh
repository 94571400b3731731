#!/bin/bash
# Issue 12: embedded SQLite, one process: the store alone and the whole pipeline, base vs main, alternating.
set -u
PY=/work/main/.venv/bin/python
for round in 1 2; do
  for side in main base; do
    if [ $side = base ]; then SRC=/work/base12; else SRC=/work/main; fi
    echo "$(date -u +%T) round $round $side sqlite-ingest load $(cut -d' ' -f1-3 /proc/loadavg)" >> log2.txt
    (cd $SRC && $PY -m loadtest.behaviour_bench ingest --engine sqlite --procs 1 --events 1000000 --tx-events 100000) > sq-$side-$round.json 2>> err2.txt
    echo "$(date -u +%T) round $round $side pipeline load $(cut -d' ' -f1-3 /proc/loadavg)" >> log2.txt
    (cd $SRC && $PY -m loadtest.behaviour_bench pipeline --events 1000000) > pipe-$side-$round.json 2>> err2.txt
  done
done
echo "$(date -u +%T) chain-done load $(cut -d' ' -f1-3 /proc/loadavg)" >> log2.txt
