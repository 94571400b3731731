#!/bin/bash
# The barrage benchmark with the behaviour log on (the default) and off (--no-analytics),
# alternating in one sitting: ./run.sh VIEWERS PAIRS [FIRST] (from the worktree root).
set -u
viewers=${1:-2000}; pairs=${2:-2}; first=${3:-1}
out=$(dirname "$0")
py=${PYTHON:-/work/main/.venv/bin/python}
for i in $(seq "$first" $((first + pairs - 1))); do
  for mode in on off; do
    flag=(); [ "$mode" = off ] && flag=(--server-flag=--no-analytics)
    PYTHONPATH=$PWD timeout 600 "$py" -m loadtest.cli barrage --viewers "$viewers" --senders 200 --rate 200 \
      --barrage-cap 250 --flush-ms 50 --duration 15 --procs 2 --connect-rate 1000 --connect-timeout 300 \
      --verify-timeout 120 --label "log-$mode-$i" "${flag[@]}" --out "$out/log-$mode-$i" \
      > "$out/log-$mode-$i.json" 2> "$out/log-$mode-$i.log"
    echo "$mode $i: exit $? load $(cut -d' ' -f1 /proc/loadavg)"
  done
done
