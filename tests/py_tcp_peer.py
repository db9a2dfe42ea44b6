#!/usr/bin/env python3
"""py_tcp_peer.py - a msgpipe peer over TCP (or AF_UNIX) with authkey,
written with Python's standard library only.  Used by tests/test_tcp.c.

    py_tcp_peer.py server PORTFILE KEY PROTO EXPECT
        Listener(('127.0.0.1', 0), authkey=KEY); write the port to PORTFILE
        (written whole, then renamed into place); accept one connection.
    py_tcp_peer.py client PORT KEY PROTO EXPECT
        Client(('127.0.0.1', PORT), authkey=KEY).
    (PORTFILE/PORT "unix:PATH" uses family='AF_UNIX' on PATH instead.)

KEY is the authkey in hex, or "-" for authkey=None.
PROTO is "native" (this interpreter's multiprocessing.connection as it is)
or "py312": deliver_challenge/answer_challenge replaced by the functions
below, written after CPython 3.12's Lib/multiprocessing/connection.py with
the stdlib hmac and os modules - the {sha256} challenge form, so that it
is tested also where the installed Python is 3.11 (which speaks only the
20-byte HMAC-MD5 form).  A test of msgpipe's side, not a second
implementation of anything msgpipe ships.
EXPECT is "ok" (run the exchange of py_peer.py: for each size, receive
pattern(size, 1) and answer pattern(size, 2), then send b"bye"),
"autherror" (the handshake must raise AuthenticationError), "eof" (the
connection is made, and its first receive meets the end: EOFError), or
"challenged" (without a key here: the first message must be a challenge;
answer it with garbage and expect b"#FAILURE#").

Exit status 0 if everything was as expected, 1 otherwise, 3 if
AuthenticationError was expected and not raised.
"""
import hmac
import os
import sys
import multiprocessing.connection as mpc
from multiprocessing import AuthenticationError

SIZES = [0, 20000, 1 << 20]


def pattern(n, seed):
    return bytes((i * 131 + seed * 7 + (i >> 8)) & 0xFF for i in range(n))


# ---- Python 3.12's handshake (labelled: a test double of CPython 3.12) ----

_ALLOWED = {b'md5', b'sha256', b'sha384', b'sha3_256', b'sha3_384'}


def _digest_and_payload(message):
    if len(message) in (20, 16):
        return '', message
    if message.startswith(b'{'):
        curly = message.find(b'}', 1, 8 + 2)
        if curly > 0 and message[1:curly] in _ALLOWED:
            return message[1:curly].decode('ascii'), message[curly + 1:]
    raise AuthenticationError('unsupported message %r' % (message,))


def _create_response(authkey, message):
    name = _digest_and_payload(message)[0]
    if not name:
        return hmac.new(authkey, message, 'md5').digest()
    mac = hmac.new(authkey, message, name).digest()
    return b'{%s}%s' % (name.encode('ascii'), mac)


def _verify(authkey, message, response):
    name, mac = _digest_and_payload(response)
    want = hmac.new(authkey, message, name or 'md5').digest()
    if len(want) != len(mac) or not hmac.compare_digest(want, mac):
        raise AuthenticationError('digest received was wrong')


def deliver_challenge_312(connection, authkey, digest_name='sha256'):
    message = b'{%s}%s' % (digest_name.encode('ascii'), os.urandom(40))
    connection.send_bytes(b'#CHALLENGE#' + message)
    response = connection.recv_bytes(256)
    try:
        _verify(authkey, message, response)
    except AuthenticationError:
        connection.send_bytes(b'#FAILURE#')
        raise
    connection.send_bytes(b'#WELCOME#')


def answer_challenge_312(connection, authkey):
    message = connection.recv_bytes(256)
    if not message.startswith(b'#CHALLENGE#'):
        raise AuthenticationError('expected challenge')
    message = message[len(b'#CHALLENGE#'):]
    if len(message) < 20:
        raise AuthenticationError('challenge too short')
    connection.send_bytes(_create_response(authkey, message))
    if connection.recv_bytes(256) != b'#WELCOME#':
        raise AuthenticationError('digest sent was rejected')


# ---- The exchange ----------------------------------------------------------


def exchange(conn):
    for n in SIZES:
        got = conn.recv_bytes()
        if got != pattern(n, 1):
            sys.stderr.write("py_tcp_peer: message of %d bytes: got %d\n" %
                             (n, len(got)))
            return 1
        conn.send_bytes(pattern(n, 2))
    conn.send_bytes(b"bye")
    return 0


def after_connect(conn, expect):
    if expect == "autherror":
        return 3
    if expect == "eof":
        try:
            conn.recv_bytes()
        except EOFError:
            return 0
        return 1
    if expect == "challenged":
        if not conn.recv_bytes().startswith(b"#CHALLENGE#"):
            return 1
        conn.send_bytes(b"not an answer")
        return 0 if conn.recv_bytes() == b"#FAILURE#" else 1
    return exchange(conn)


def address(text):
    if text.startswith("unix:"):
        return text[5:], "AF_UNIX"
    return ("127.0.0.1", int(text)), "AF_INET"


def main():
    if len(sys.argv) != 6:
        sys.stderr.write(__doc__)
        return 2
    mode, where, key, proto, expect = sys.argv[1:]
    authkey = None if key == "-" else bytes.fromhex(key)
    if proto == "py312":
        mpc.deliver_challenge = deliver_challenge_312
        mpc.answer_challenge = answer_challenge_312
    try:
        if mode == "server":
            if where.startswith("unix:"):
                addr, family = where[5:], "AF_UNIX"
                portfile = None
            else:
                addr, family = ("127.0.0.1", 0), "AF_INET"
                portfile = where
            with mpc.Listener(addr, family=family, authkey=authkey) as lst:
                if portfile is not None:
                    with open(portfile + ".tmp", "w") as f:
                        f.write("%d\n" % lst.address[1])
                    os.rename(portfile + ".tmp", portfile)
                with lst.accept() as conn:
                    return after_connect(conn, expect)
        addr, family = address(where)
        with mpc.Client(addr, family=family, authkey=authkey) as conn:
            return after_connect(conn, expect)
    # Python 3.11's answer_challenge asserts that the first message is a
    # challenge (AssertionError); 3.12 raises AuthenticationError.
    except (AuthenticationError, AssertionError) as e:
        if expect == "autherror":
            return 0
        sys.stderr.write("py_tcp_peer: AuthenticationError: %s\n" % e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
