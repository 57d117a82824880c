#!/usr/bin/python3
"""Host-side TCP clients for scripts/bench (run inside its namespace).

  bench-client.py connrate HOST PORT COUNT DEADLINE
      COUNT times: connect, send one byte, read it back (an echo service),
      close (the host closes first, so TIME-WAIT stays on the host side).
  bench-client.py rr HOST PORT COUNT DEADLINE
      One connection; COUNT one-byte ping-pongs with TCP_NODELAY, after
      100 unmeasured ones.
  bench-client.py echo HOST PORT BYTES DEADLINE [CC]
      One connection, with TCP congestion control CC (e.g. cubic, bbr;
      default: the namespace's): writes BYTES seeded pseudo-random bytes
      while reading the echo back at once, and checks every byte. Prints
      "BYTES SECONDS LONGEST-READ-PAUSE-SECONDS"; the longest pause counts
      from the start to the first byte too. Socket operations wait up to
      DEADLINE here, not 5 s: a stalled connection is what it measures.

connrate and rr print "COUNT SECONDS" on success; on any error or when DEADLINE seconds
have passed, prints why on stderr and exits 1. Every socket operation has a
5 s timeout.
"""

import random
import socket
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


def connrate(addr, count, deadline):
    start = time.perf_counter()
    end = start + deadline
    for i in range(count):
        if time.perf_counter() > end:
            fail(f"connrate: deadline of {deadline} s passed after {i} connections")
        try:
            s = connect(addr)
            try:
                ping_pong(s)
            finally:
                s.close()
        except OSError as e:
            fail(f"connrate: connection {i}: {e}")
    return time.perf_counter() - start


def rr(addr, count, deadline):
    try:
        s = connect(addr)
    except OSError as e:
        fail(f"rr: connect: {e}")
    try:
        for _ in range(100):
            ping_pong(s)
        start = time.perf_counter()
        end = start + deadline
        for i in range(count):
            ping_pong(s)
            if i % 256 == 0 and time.perf_counter() > end:
                fail(f"rr: deadline of {deadline} s passed after {i} round trips")
        elapsed = time.perf_counter() - start
        # A clean close: half-close, then wait for the echo service's FIN.
        s.shutdown(socket.SHUT_WR)
        while s.recv(4096):
            pass
    except OSError as e:
        fail(f"rr: {e}")
    finally:
        s.close()
    return elapsed


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


def main(argv):
    if len(argv) in (6, 7) and argv[1] == "echo":
        cc = argv[6] if len(argv) == 7 else ""
        size = int(argv[4])
        elapsed, pause = echo((argv[2], int(argv[3])), size, float(argv[5]), cc)
        print(f"{size} {elapsed:.6f} {pause:.6f}")
        return
    if len(argv) != 6 or argv[1] not in ("connrate", "rr"):
        fail("usage: bench-client.py connrate|rr HOST PORT COUNT DEADLINE, or echo HOST PORT BYTES DEADLINE [CC]")
    mode, host, port, count, deadline = argv[1], argv[2], int(argv[3]), int(argv[4]), float(argv[5])
    fn = connrate if mode == "connrate" else rr
    elapsed = fn((host, port), count, deadline)
    print(f"{count} {elapsed:.6f}")


if __name__ == "__main__":
    main(sys.argv)
