#!/bin/bash
# A B A B ...: the barrage scenario on two trees (base, new: `git archive` of each commit into
# $BENCH_TREES-base and $BENCH_TREES-new), each run starting its own server from its tree.
# Here: main's fan-out (base) vs the sans-I/O one (new); ../session-2026-12-03-whole/run.sh
# runs it on the session's first and last commits.
# Before each run, wait (at most 4 min) for the 1-minute load average to fall below $2.
trees=${BENCH_TREES:-/tmp/fanoutpure}
out=${BENCH_OUT:-/tmp/fanoutpure-bench}/$1
gate=${2:-8}
mkdir -p $out
for i in 1 2; do
  for t in base new; do
    for w in $(seq 720); do
      awk -v g=$gate '{exit !($1 < g)}' /proc/loadavg && break
      sleep 5
    done
    tree=$trees-$t
    echo "== $t $i $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
    (cd $tree && PYTHONPATH=$tree /work/main/.venv/bin/python -m loadtest.cli barrage --viewers 5000 --senders 200 --rate 200 --barrage-cap 250 --flush-ms 50 \
        --duration 20 --procs 2 --connect-rate 1000 --connect-timeout 300 --verify-timeout 120 --label $t --out $out/b-$t-$i > $out/b-$t-$i.log 2>&1)
    python3 -c "
import json,sys;d=json.load(open('$out/b-$t-$i/barrage.json'))
print('$t $i', d['passed'], d['deliveries_per_s'], d['server_cpu_s'], d['deliveries_per_server_cpu_s'], d['latency_ms'].get('p50'), d['latency_ms'].get('p99'), 'other', d['other_tenants_cores'])" 2>&1 | tail -1
  done
done
echo "== end $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
