"""In-process: the fan-out's own CPU per socket per room flush, two trees alternating.

5,000 members of one room, transports whose write does nothing, 400 flushes of 18 barrage events
each (the barrage scenario's batch size); ``time.process_time`` around ingest + flush, GC off.
It isolates the Python work the split could change (planning, the write loop, stats) from the
kernel's send, which dominates the real benchmark. Usage, with the two trees unpacked by
``git archive`` into /tmp/fanoutpure-base and /tmp/fanoutpure-new:

    python micro.py 5
"""
import sys, time, importlib, gc

def load(tree):
    for m in [k for k in sys.modules if k.startswith("roomserver")]:
        del sys.modules[m]
    sys.path.insert(0, tree)
    fan = importlib.import_module("roomserver.fanout")
    base = importlib.import_module("roomserver.bus.base")
    proto = importlib.import_module("roomserver.protocol")
    sys.path.pop(0)
    return fan, base, proto

class T:
    __slots__ = ()
    def write(self, d): pass
    def get_write_buffer_size(self): return 0
    def abort(self): pass
    def get_extra_info(self, n, d=None): return d

async def closer(c, r): pass

def run(tree, flushes=400, n=5000):
    fan, base, proto = load(tree)
    f = fan.Fanout(flush_ms=50)
    f.channel("r"); f.set_ready("r", "e1", 0)
    for i in range(n):
        c = fan.Connection(i, f"u{i}", False, T(), closer)
        f.add_connection(c); f.join(c, "r")
    seq = 0
    evs = []
    for k in range(flushes):
        batch = []
        for j in range(18):
            seq += 1
            batch.append(base.BusEvent(seq, proto.with_seq(proto.encode_event("barrage", "r", {"text": "hello"}, ts=1), seq)))
        evs.append(base.Delivery("r", "e1", 1, tuple(batch)))
    gc.collect(); gc.disable()
    t0 = time.process_time()
    for d in evs:
        f.ingest(d)
        f.flush()
    t = time.process_time() - t0
    gc.enable()
    assert f.stats.deliveries == flushes * 18 * n, f.stats.deliveries
    return t / flushes * 1e6 / n * 1000  # ns per socket per flush

for i in range(int(sys.argv[1]) if len(sys.argv) > 1 else 3):
    for name in ("base", "new"):
        print(name, i, f"{run('/tmp/fanoutpure-' + name):.1f} ns per socket-flush", flush=True)
