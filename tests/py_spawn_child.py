"""py_spawn_child.py - a child that msgpipe_spawn starts, with nothing but
Python's standard library (tests/test_spawn.c).

    python3 py_spawn_child.py EXIT_CODE

It takes the pipe that msgpipe_spawn named in MSGPIPE_PARENT, says hello,
answers every message with b"py:" + the message until the parent closes
the pipe, and exits with EXIT_CODE.  POSIX socket transport only: the
descriptor is a connected AF_UNIX stream socket and the framing is that of
multiprocessing.connection.
"""
import os
import sys
from multiprocessing.connection import Connection


def main():
    code = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    c = Connection(int(os.environ["MSGPIPE_PARENT"]))
    c.send_bytes(b"hello from python")
    while True:
        try:
            m = c.recv_bytes()
        except EOFError:
            break
        c.send_bytes(b"py:" + m)
    c.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
