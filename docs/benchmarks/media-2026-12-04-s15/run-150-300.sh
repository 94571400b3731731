#!/bin/bash
# A/B: base (7088544, no batching) vs new (b9b7928+), alternating; same command
OUT=/work/s15/ab; PY=/work/main/.venv/bin/python
for r in 1 2 3; do
  for side in new base; do
    if [ $side = new ]; then D=/work/main; F=rtp,frame; else D=/work/base15; F=rtp; fi
    echo "$(date +%T) round $r $side start $(cat /proc/loadavg)" >> $OUT/loadavg.txt
    (cd $D && $PY -m loadtest.media --viewers 150,300 --forwarding $F --relay-viewers '' --seconds 8 --probes 3 --viewer-procs 2 --out $OUT/$side-r$r.json) > $OUT/$side-r$r.log 2>&1
  done
done
echo "$(date +%T) end $(cat /proc/loadavg)" >> $OUT/loadavg.txt
echo ab-done
