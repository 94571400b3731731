#!/bin/bash
# Issue 12: PostgreSQL ingest from 2 processes, base (staging every batch) vs main (direct COPY), alternating.
set -u
PY=/work/main/.venv/bin/python
for round in 1 2 3; do
  for side in base main; do
    if [ $side = base ]; then SRC=/work/base12; else SRC=/work/main; fi
    echo "$(date -u +%T) round $round $side load $(cut -d' ' -f1-3 /proc/loadavg)" >> log.txt
    (cd $SRC && $PY -m loadtest.behaviour_bench ingest --engine pg --procs 2 --events 500000 --tx-events 100000) > pg-$side-$round.json 2>> err.txt
    echo "$(date -u +%T) done load $(cut -d' ' -f1-3 /proc/loadavg)" >> log.txt
  done
done
echo chain-done >> log.txt
