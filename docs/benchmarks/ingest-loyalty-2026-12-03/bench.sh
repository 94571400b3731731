#!/bin/bash
# alternating before/after runs; JSON per run
out=/tmp/ingest-prof/bench
round=$1
for spec in "sqlite 1 2000" "sqlite 1 10000" "sqlite 1 40000" "pg 2 2000" "pg 2 10000"; do
  set -- $spec
  for tree in $ORDER; do
    if [ $tree = base ]; then dir=/tmp/ingest-base; else dir=/work/wt/ingest; fi
    f=$out/r${round}-$1-p$2-tx$3-$tree.json
    echo "$(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg) $f" >> $out/log
    (cd $dir && PYTHONPATH=$dir timeout 900 /work/main/.venv/bin/python -m loadtest.behaviour_bench ingest --engine $1 --procs $2 --events 200000 --tx-events $3 > $f 2>$f.err)
    echo "$(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg) done $(grep -m1 events_per_s $f)" >> $out/log
  done
done
