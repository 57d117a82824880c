#!/usr/bin/python3
"""Host-side clients for scripts/bench (run inside its namespace).

  bench-client.py echo HOST PORT BYTES DEADLINE [CC]
      One connection, with TCP congestion control CC (e.g. cubic, bbr;
      default: the namespace's): writes BYTES seeded pseudo-random bytes
      while reading the echo back at once, and checks every byte. Prints
      "BYTES SECONDS LONGEST-READ-PAUSE-SECONDS"; the longest pause counts
      from the start to the first byte too. Socket operations wait up to
      DEADLINE here, not 5 s: a stalled connection is what it measures.
  bench-client.py idle HOST PORT COUNT DEADLINE RELEASE-FILE
      Opens COUNT connections one after another and holds them: raises
      RLIMIT_NOFILE to fit, echoes one byte on every 100th connection and
      on the last (the services accept in order, so the last one answering
      means every one was accepted), checks with TCP_INFO that all are
      ESTABLISHED, prints "COUNT SECONDS" (the time to open them) and
      waits until RELEASE-FILE exists (at most DEADLINE s in all). Every
      socket has SO_LINGER 0: closing, or dying, resets the connections
      rather than leaving COUNT TIME-WAITs on the host.
  bench-client.py upload HOST PORT BYTES DEADLINE
      One connection to the discard service: writes BYTES zero bytes in
      1 MiB writes (one copy each into the kernel), half-closes, and waits
      for the service's FIN, which comes once it has read everything.
      Prints "BYTES SECONDS". A fast host application: `head -c | nc`
      moves 16 KiB at a time through a pipe, three copies per byte, and
      capped uploads near 850 MB/s on the 2-core bench machine whatever
      the receiver.
  bench-client.py udpflood HOST PORT SIZE SECONDS
      Sends SIZE-byte UDP datagrams to HOST:PORT as fast as it can for
      SECONDS, with UDP segmentation offload (UDP_SEGMENT: up to 64
      datagrams per send, cut by the kernel) where the kernel allows it;
      drops on a full queue are not errors. Prints "DATAGRAMS-SENT".

The connection-rate and round-trip clients are native:
tests/examples/bench_client.rs. On any error or when DEADLINE seconds have
passed, every mode prints why on stderr and exits 1. Every socket
operation has a 5 s timeout.
"""

import os
import random
import resource
import socket
import struct
import sys
import threading
import time

OP_TIMEOUT = 5.0


def fail(msg):
    print(f"bench-client: {msg}", file=sys.stderr)
    sys.exit(1)


def connect(addr):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(OP_TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.connect(addr)
    return s


def ping_pong(s):
    s.sendall(b"x")
    if s.recv(1) != b"x":
        raise OSError("echo answered something other than the byte sent")


def echo(addr, size, deadline, cc):
    data = random.Random(size).randbytes(size)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(deadline)
    if cc:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
    errors = []

    def writer():
        try:
            view = memoryview(data)
            for off in range(0, size, 65536):
                s.sendall(view[off : off + 65536])
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            errors.append(e)

    try:
        s.connect(addr)
        start = time.perf_counter()
        t = threading.Thread(target=writer, daemon=True)
        t.start()
        got, last, pause = 0, start, 0.0
        buf = bytearray(262144)
        while got < size:
            n = s.recv_into(buf)
            now = time.perf_counter()
            if n == 0:
                fail(f"echo: EOF after {got} of {size} bytes")
            pause = max(pause, now - last)
            last = now
            if buf[:n] != data[got : got + n]:
                fail(f"echo: the bytes at {got}..{got + n} differ from those sent")
            got += n
            if now - start > deadline:
                fail(f"echo: deadline of {deadline} s passed after {got} of {size} bytes")
        elapsed = time.perf_counter() - start
        t.join(deadline)
        if errors:
            fail(f"echo: writing: {errors[0]}")
        if s.recv(1):
            fail("echo: more bytes came back than were sent")
    except OSError as e:
        fail(f"echo: {e}")
    finally:
        s.close()
    return elapsed, pause


TCP_ESTABLISHED = 1


def idle(addr, count, deadline, release):
    """Opens and holds count connections until release exists; see the module doc."""
    start = time.perf_counter()
    end = start + deadline
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + 64
    if hard != resource.RLIM_INFINITY and hard < want:
        hard = want  # root may raise the hard limit too
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    linger = struct.pack("ii", 1, 0)
    socks = []
    try:
        for i in range(count):
            if time.perf_counter() > end:
                fail(f"idle: deadline of {deadline} s passed after {i} connections")
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            socks.append(s)
            s.settimeout(OP_TIMEOUT)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.connect(addr)
        opened = time.perf_counter() - start
        for i in list(range(99, count, 100)) + [count - 1]:
            ping_pong(socks[i])
        for i, s in enumerate(socks):
            state = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
            if state != TCP_ESTABLISHED:
                fail(f"idle: connection {i} is in TCP state {state}, not ESTABLISHED")
    except OSError as e:
        fail(f"idle: connection {len(socks) - 1}: {e}")
    print(f"{count} {opened:.6f}", flush=True)
    while not os.path.exists(release):
        if time.perf_counter() > end:
            fail(f"idle: {release} did not appear within {deadline} s")
        time.sleep(0.05)
    for s in socks:
        s.close()


def upload(addr, size, deadline):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(deadline)
    s.connect(addr)
    chunk = memoryview(bytes(1 << 20))
    start = time.perf_counter()
    left = size
    while left > 0:
        n = s.send(chunk[: min(left, len(chunk))])
        left -= n
    s.shutdown(socket.SHUT_WR)
    if s.recv(1) != b"":
        raise OSError("the discard service answered with data")
    return time.perf_counter() - start


def udpflood(addr, size, seconds):
    """Sends size-byte datagrams to addr for seconds; returns how many."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(addr)
    per_send = max(1, min(64, 65507 // size))
    if per_send > 1:
        try:
            s.setsockopt(socket.SOL_UDP, 103, size)  # UDP_SEGMENT
            s.send(bytes(size * per_send))
        except OSError:
            per_send = 1  # no UDP GSO here: one datagram per send
            s.setsockopt(socket.SOL_UDP, 103, 0)
    data = bytes(size * per_send)
    sent = 0
    end = time.perf_counter() + seconds
    while True:
        for _ in range(64):
            try:
                s.send(data)
            except (BlockingIOError, ConnectionRefusedError):
                pass  # a full queue: the datagrams are lost, as on a link
            sent += per_send
        if time.perf_counter() > end:
            return sent


def main(argv):
    if len(argv) in (6, 7) and argv[1] == "echo":
        cc = argv[6] if len(argv) == 7 else ""
        size = int(argv[4])
        elapsed, pause = echo((argv[2], int(argv[3])), size, float(argv[5]), cc)
        print(f"{size} {elapsed:.6f} {pause:.6f}")
        return
    if len(argv) == 7 and argv[1] == "idle":
        idle((argv[2], int(argv[3])), int(argv[4]), float(argv[5]), argv[6])
        return
    if len(argv) == 6 and argv[1] == "upload":
        size = int(argv[4])
        print(f"{size} {upload((argv[2], int(argv[3])), size, float(argv[5])):.6f}")
        return
    if len(argv) == 6 and argv[1] == "udpflood":
        print(udpflood((argv[2], int(argv[3])), int(argv[4]), float(argv[5])))
        return
    fail(
        "usage: bench-client.py echo HOST PORT BYTES DEADLINE [CC], idle HOST PORT COUNT DEADLINE RELEASE-FILE,"
        " upload HOST PORT BYTES DEADLINE, or udpflood HOST PORT SIZE SECONDS"
    )

if __name__ == "__main__":
    main(sys.argv)
