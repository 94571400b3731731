#!/bin/bash
# Quiet-box measurements, session 9 (nothing else running).
cd /work/main
O=docs/benchmarks/quiet-2026-12-03-1130
mkdir -p $O
P=.venv/bin/python
export PYTHONPATH=$PWD
log() { echo "$(date -u +%H:%M:%S) $(cat /proc/loadavg) $*" >> $O/log.txt; }
log start
log media; timeout 900 $P -m loadtest.media --viewers 150,300 --forwarding rtp,frame --relay-viewers '' --seconds 8 --probes 3 --out $O/media-rtp-frame.json > $O/media.stdout 2> $O/media.stderr
log pipeline1; timeout 300 $P -m loadtest.behaviour_bench pipeline --events 1000000 > $O/pipeline-1m-a.json 2> $O/pipeline.stderr
log pipeline2; timeout 300 $P -m loadtest.behaviour_bench pipeline --events 1000000 > $O/pipeline-1m-b.json 2>> $O/pipeline.stderr
log pg; timeout 400 $P -m loadtest.behaviour_bench ingest --engine pg --procs 2 --events 500000 --tx-events 100000 > $O/pg-2proc-100k.json 2> $O/pg.stderr
log assistant; timeout 900 $P -m loadtest.assistant_paired --viewers 200 500 1000 --rounds 6 --seconds 20 > $O/assistant-paired.jsonl 2> $O/assistant.stderr
log cascade; timeout 400 $P -m loadtest.media_cascade --viewers 10,20 --seconds 10 --settle 5 > $O/cascade.json 2> $O/cascade.stderr
log done
