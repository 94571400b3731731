#!/bin/bash
# usage: pipe.sh TAG TREE N
tag=$1; tree=$2; n=${3:-1000000}
cd $tree && echo "$(date -u +%H:%M:%S) $(cat /proc/loadavg)" > /tmp/ib/runs/$tag.load
PYTHONPATH=$tree /work/main/.venv/bin/python -m loadtest.behaviour_bench pipeline --events $n > /tmp/ib/runs/$tag.json 2>/tmp/ib/runs/$tag.err
echo "$(date -u +%H:%M:%S) $(cat /proc/loadavg)" >> /tmp/ib/runs/$tag.load
