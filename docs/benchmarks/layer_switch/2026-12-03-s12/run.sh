#!/bin/bash
# Issue 14: layer switch times, base (receiver reports and REMB) vs main (+ NACK share), alternating.
set -u
PY=/work/main/.venv/bin/python
for round in 1 2 3; do
  for side in main base; do
    if [ $side = base ]; then SRC=/work/base12; else SRC=/work/main; fi
    echo "$(date -u +%T) round $round $side load $(cut -d' ' -f1-3 /proc/loadavg)" >> log.txt
    (cd $SRC && timeout 300 $PY -m loadtest.layer_switch --runs 2 --hold 12) > ls-$side-$round.json 2>> err-$side-$round.txt
  done
done
echo "$(date -u +%T) chain-done load $(cut -d' ' -f1-3 /proc/loadavg)" >> log.txt
