#!/usr/bin/python3
"""The Linux kernel's side of scripts/bench: tunstackd's TCP services on
kernel sockets, run inside the bench's server namespace.

  bench-server.py ADDRESS [CC]

Serves, on ADDRESS, until killed, with TCP congestion control CC on every
connection (default: the namespace's; as root any the kernel has, where a
namespace's default can only be one of tcp_allowed_congestion_control):
  7   echo: everything read is written back; FIN after the client's FIN
  9   discard: everything read is dropped; FIN after the client's FIN
  1919  sized source: the client sends one line with a byte count N, gets N
      bytes of chargen lines (RFC 864), then FIN; no number, or EOF before
      the line ends, gets an endless stream

One thread per connection, blocking sockets and large buffers, so that the
kernel rather than Python sets the pace. Prints "bench-server: ready" on
stderr once all three ports listen.
"""

import socket
import sys
import threading

CHUNK = 256 * 1024


def chargen_block(size):
    """size bytes of chargen lines (72 printable characters and CRLF, rotating)."""
    period = b"".join(
        bytes(32 + (first + i) % 95 for i in range(72)) + b"\r\n" for first in range(95)
    )
    return (period * (size // len(period) + 2)), len(period)


def echo(conn):
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while True:
        n = conn.recv_into(buf)
        if n == 0:
            break
        conn.sendall(view[:n])


def discard(conn):
    buf = bytearray(CHUNK)
    while conn.recv_into(buf):
        pass


def source(conn, block, period):
    line = b""
    while len(line) < 32 and not line.endswith(b"\n"):
        b = conn.recv(1)
        if not b:
            break
        line += b
    try:
        remaining = int(line.strip())
    except ValueError:
        remaining = None  # endless
    sent = 0
    view = memoryview(block)
    while remaining is None or remaining > 0:
        off = sent % period
        n = CHUNK if remaining is None else min(CHUNK, remaining)
        conn.sendall(view[off : off + n])
        sent += n
        if remaining is not None:
            remaining -= n


def handle(conn, port, block, period):
    try:
        with conn:
            if port == 7:
                echo(conn)
            elif port == 9:
                discard(conn)
            else:
                source(conn, block, period)
            conn.shutdown(socket.SHUT_WR)
            # Wait for the client's FIN (source) so the close is clean.
            while conn.recv(CHUNK):
                pass
    except OSError:
        pass  # the client went away: nothing to serve


def serve(listener, port, block, period):
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=handle, args=(conn, port, block, period), daemon=True).start()


def main(argv):
    if len(argv) not in (2, 3):
        print("usage: bench-server.py ADDRESS [CC]", file=sys.stderr)
        sys.exit(2)
    block, period = chargen_block(CHUNK)
    threads = []
    for port in (7, 9, 1919):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if len(argv) == 3:
            # Accepted connections inherit it.
            ls.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, argv[2].encode())
        ls.bind((argv[1], port))
        ls.listen(4096)
        t = threading.Thread(target=serve, args=(ls, port, block, period), daemon=True)
        threads.append(t)
    for t in threads:
        t.start()
    print("bench-server: ready", file=sys.stderr, flush=True)
    for t in threads:
        t.join()


if __name__ == "__main__":
    main(sys.argv)
