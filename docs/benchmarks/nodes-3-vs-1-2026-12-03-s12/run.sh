#!/bin/bash
# Issue 13: one room's barrage viewers over 3 nodes vs 1 node, same Redis Cluster mode, quiet box.
set -u
LT=/work/main/.venv/bin/roomserver-loadtest
i=0
for rate in 60 150; do
  for n in 1 3 3 1; do
    i=$((i+1))
    tag=$([ $rate = 150 ] && echo hi-)n$n-r$i
    echo "$(date -u +%T) $tag load $(cut -d' ' -f1-3 /proc/loadavg)" >> log.txt
    (cd /work/main && timeout 600 $LT barrage --viewers 3000 --senders $rate --rate $rate --duration 20 --procs 2 \
        --connect-rate 500 --servers $n --redis-cluster auto) > $tag.json 2>> err.txt
  done
done
echo "$(date -u +%T) chain-done load $(cut -d' ' -f1-3 /proc/loadavg)" >> log.txt
