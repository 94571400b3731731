import collections
import sys

# raw: "frame;frame;... count"
tot = collections.Counter()
selfc = collections.Counter()
total = 0
threads = collections.Counter()
for line in open(sys.argv[1]):  # noqa: SIM115
    stack, n = line.rsplit(" ", 1)
    n = int(n)
    total += n
    frames = stack.split(";")
    threads[frames[0]] += n
    seen = set()
    for f in frames:
        if f not in seen:
            tot[f] += n
            seen.add(f)
    selfc[frames[-1]] += n
print("total", total)
for k, v in threads.most_common():
    print(f"{v:6d} {k}")
print("--- inclusive")
for k, v in tot.most_common(int(sys.argv[2]) if len(sys.argv) > 2 else 45):
    print(f"{v:6d} {100 * v / total:5.1f}% {k[:150]}")
print("--- self")
for k, v in selfc.most_common(25):
    print(f"{v:6d} {100 * v / total:5.1f}% {k[:150]}")
