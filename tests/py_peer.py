#!/usr/bin/env python3
"""py_peer.py - a msgpipe peer written with Python's standard library only.

Used by tests/test_process.c (POSIX socket backend): msgpipe's wire format is
that of multiprocessing.connection (authkey=None), so a Listener or Client on
an AF_UNIX path talks to msgpipe directly.

    py_peer.py server PATH   listen on PATH, accept one connection
    py_peer.py client PATH   connect to PATH

Either way, for each size in SIZES: receive a message that must equal
pattern(size, 1), answer with pattern(size, 2); then send b"bye" and close.
Exit status 0 if everything matched, 1 otherwise (the reason on stderr).
"""
import sys
from multiprocessing.connection import Client, Listener

# 0 bytes, more than Python's 16 KiB write split, and 1 MiB.
SIZES = [0, 20000, 1 << 20]


def pattern(n, seed):
    """The same bytes as py_pattern() in test_process.c."""
    return bytes((i * 131 + seed * 7 + (i >> 8)) & 0xFF for i in range(n))


def exchange(conn):
    for n in SIZES:
        got = conn.recv_bytes()
        want = pattern(n, 1)
        if got != want:
            at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b),
                      min(len(got), len(want)))
            sys.stderr.write("py_peer: message of %d bytes: got %d bytes, "
                             "first difference at %d\n" % (n, len(got), at))
            return 1
        conn.send_bytes(pattern(n, 2))
    conn.send_bytes(b"bye")
    return 0


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("server", "client"):
        sys.stderr.write("usage: py_peer.py server|client PATH\n")
        return 2
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "server":
        with Listener(path, family="AF_UNIX", authkey=None) as listener:
            with listener.accept() as conn:
                return exchange(conn)
    with Client(path, family="AF_UNIX", authkey=None) as conn:
        return exchange(conn)


if __name__ == "__main__":
    sys.exit(main())
