#!/bin/bash
OUT=/work/s15/ab2; PY=/work/main/.venv/bin/python
for r in 1 2; do
  for side in new base; do
    if [ $side = new ]; then D=/work/main; else D=/work/base15; fi
    echo "$(date +%T) round $r $side start $(cat /proc/loadavg)" >> $OUT/loadavg.txt
    (cd $D && $PY -m loadtest.media --viewers 300,450,600 --forwarding rtp --relay-viewers '' --seconds 8 --probes 3 --viewer-procs 2 --out $OUT/$side-r$r.json) > $OUT/$side-r$r.log 2>&1
  done
done
echo "$(date +%T) end $(cat /proc/loadavg)" >> $OUT/loadavg.txt
echo ab-done
