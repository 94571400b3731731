#!/bin/bash
# usage: pg.sh TAG TREE EVENTS_PER_PROC TX
tag=$1; tree=$2; n=$3; tx=$4
cd $tree && echo "$(date -u +%H:%M:%S) $(cat /proc/loadavg)" > /tmp/ib/runs/$tag.load
PYTHONPATH=$tree /work/main/.venv/bin/python -m loadtest.behaviour_bench ingest --engine pg --procs 2 --events $n --tx-events $tx > /tmp/ib/runs/$tag.json 2>/tmp/ib/runs/$tag.err
echo "$(date -u +%H:%M:%S) $(cat /proc/loadavg)" >> /tmp/ib/runs/$tag.load
