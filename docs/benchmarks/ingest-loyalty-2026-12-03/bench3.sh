#!/bin/bash
out=/tmp/ingest-prof/bench
for tx in 2000 10000 40000; do
  for tree in after base after base; do
    if [ $tree = base ]; then dir=/tmp/ingest-base; else dir=/work/wt/ingest; fi
    n=$(ls $out/r3-sqlite-p1-tx$tx-$tree*.json 2>/dev/null | wc -l)
    f=$out/r3-sqlite-p1-tx$tx-$tree-$n.json
    (cd $dir && PYTHONPATH=$dir timeout 900 /work/main/.venv/bin/python -m loadtest.behaviour_bench ingest --engine sqlite --procs 1 --events 200000 --tx-events $tx > $f 2>$f.err)
    echo "$(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg) $f $(grep -m1 events_per_s $f)" >> $out/log
  done
done
