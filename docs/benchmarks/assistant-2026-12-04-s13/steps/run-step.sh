SRC=${SRC:-/work/main}; TAG=${TAG:-x}
cd $SRC
/work/main/.venv/bin/python -m loadtest.assistant_paired --viewers 200 --rounds 2 --seconds 30 > /tmp/prof/paired-$TAG.jsonl 2>/tmp/prof/err-$TAG &
P=$!
until grep -q joined /tmp/prof/err-$TAG; do sleep 0.5; done
sleep 1.5
pids=$(pgrep -f "roomserver.cli serve" | sort -n)
A=$(echo $pids | cut -d' ' -f1); B=$(echo $pids | cut -d' ' -f2)
snap() { for p in $A $B; do for t in /proc/$p/task/*; do echo "$1 $p $(cat $t/comm | tr ' ' _) $(cut -d' ' -f14,15 $t/stat)"; done; done; }
snap s0 > /tmp/prof/threads-$TAG.txt
sleep 27
snap s1 >> /tmp/prof/threads-$TAG.txt
sleep 5.5
snap s2 >> /tmp/prof/threads-$TAG.txt
sleep 27
snap s3 >> /tmp/prof/threads-$TAG.txt
wait
echo "A=$A B=$B" >> /tmp/prof/threads-$TAG.txt
