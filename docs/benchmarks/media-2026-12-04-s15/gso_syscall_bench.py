"""sendto per packet vs one UDP_SEGMENT sendmsg per destination per frame, loopback."""
import os, socket, struct, sys, time, multiprocessing as mp
UDP_SEGMENT = 103
N = int(sys.argv[1]); FRAMES = int(sys.argv[2]); PKTS = 6; SIZE = 1200

def drain(ports_q, n, stop):
    import selectors
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        socks.append(s)
    ports_q.put([s.getsockname()[1] for s in socks])
    sel = selectors.DefaultSelector()
    for s in socks: sel.register(s, selectors.EVENT_READ)
    got = 0
    while not stop.is_set():
        for key, _ in sel.select(0.2):
            while True:
                try: key.fileobj.recv(65536); got += 1
                except BlockingIOError: break
    ports_q.put(got)

def run(mode):
    q = mp.Queue(); stop = mp.Event()
    p = mp.Process(target=drain, args=(q, N, stop)); p.start()
    ports = q.get()
    # one sending socket per viewer, as aioice has
    senders = []
    for _ in range(N):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        senders.append(s)
    pkts = [os.urandom(SIZE) for _ in range(PKTS - 1)] + [os.urandom(700)]
    cm = [(socket.SOL_UDP, UDP_SEGMENT, struct.pack("H", SIZE))]
    blob = b"".join(pkts)
    c0 = time.process_time(); t0 = time.monotonic(); sent = 0
    for f in range(FRAMES):
        for s, port in zip(senders, ports):
            addr = ("127.0.0.1", port)
            if mode == "sendto":
                for pk in pkts: s.sendto(pk, addr); sent += 1
            else:
                s.sendmsg([blob], cm, 0, addr); sent += PKTS
        # pace at 30 fps
        nxt = t0 + (f + 1) / 30
        d = nxt - time.monotonic()
        if d > 0: time.sleep(d)
    cpu = time.process_time() - c0; wall = time.monotonic() - t0
    time.sleep(0.5); stop.set(); got = q.get(); p.join()
    print({"mode": mode, "viewers": N, "frames": FRAMES, "sent": sent, "received": got,
           "sender_cpu_us_per_packet": round(cpu / sent * 1e6, 2), "sender_cores": round(cpu / wall, 2)})

for r in range(2):
    run("sendto"); run("gso")
