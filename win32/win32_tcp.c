/*
 * win32_tcp.c - tcp://HOST:PORT on Windows, with Winsock: connecting, the
 * listening socket of a TCP server (its accept lives in win32_server.c,
 * beside the pipe instances), and the message engine over a connected
 * socket.  The twin of posix/posix_tcp.c with the TCP part of
 * posix/posix_stream.c.
 *
 * A socket is a byte stream, so the engine is not the pipe engine of
 * win32_stream.c but the POSIX framing (api/frame.c: Python's
 * multiprocessing.connection over AF_INET) over a non-blocking socket:
 *
 * - Receiving reads what has arrived into a buffer the pipe owns and hands
 *   out one whole message from it: a receive never splits or merges
 *   messages, a timeout leaves the part that came in the buffer, ENOBUFS
 *   keeps the message, EMSGSIZE drops an oversized one as it arrives.
 * - Sending writes without blocking.  A send whose time runs out after part
 *   of its message went out is committed (MSGPIPE_OK): the rest is copied
 *   and written by one overlapped WSASend that reports to the process's
 *   completion port, so the system finishes it while the peer reads, even
 *   after the thread that sent it has exited; its end is known from its
 *   completion packet (msgpipe__w_tx_seen in win32_poller.c), exactly as
 *   for a pipe's write.  The next send waits for it within its own
 *   timeout, and close for at most linger_ms.
 * - Readiness: the socket's WSAEventSelect event (FD_READ, FD_CLOSE,
 *   FD_WRITE) is the pipe's waitable handle (msgpipe_poll,
 *   msgpipe_native_handle); it is a hint that is looked behind, never
 *   trusted alone.  For a poller a thread-pool wait on that event posts to
 *   the completion port under the pipe's key (msgpipe__w_tcp_watch).
 *
 * WSAStartup is called once, inside the library, by the first TCP call;
 * WSACleanup never: TCP pipes may live until the process ends.
 */
#include <winsock2.h>
#include <ws2tcpip.h>

#include "win32_internal.h"

#include <stdio.h>
#include <string.h>

/* The receive buffer starts with this room; it grows for a larger message
 * and shrinks back after one. */
#define MSGPIPE__T_RB_MIN 65536

struct msgpipe__w_tcp {
    SOCKET s;
    HANDLE ev;   /* WSAEventSelect(FD_READ | FD_CLOSE | FD_WRITE) */
    HANDLE wait; /* thread-pool wait on ev for a poller, or NULL */
    struct sockaddr_storage peer;
    int peer_len;
    /* Received bytes not yet handed out: rb[rb_off..rb_len). */
    unsigned char *rb;
    size_t rb_off, rb_len, rb_cap;
    int eof;            /* the peer's end came after rb's bytes */
    int rx_err;         /* a failure after rb's bytes (a msgpipe code) */
    uint64_t drain;     /* bytes of an oversized message still to drop */
    unsigned char *txb; /* the committed tail in flight (p->tx_ov) */
    int tx_err;         /* the tail's write failed: the next send says so */
};

/* ---- Winsock and errors -------------------------------------------------- */

static INIT_ONCE msgpipe__t_once = INIT_ONCE_STATIC_INIT;
static int msgpipe__t_start_err;

static BOOL CALLBACK msgpipe__t_start(PINIT_ONCE once, PVOID arg, PVOID *ctx)
{
    WSADATA wd;

    (void)once;
    (void)arg;
    (void)ctx;
    msgpipe__t_start_err = WSAStartup(MAKEWORD(2, 2), &wd);
    return TRUE;
}

static int msgpipe__t_init(void)
{
    InitOnceExecuteOnce(&msgpipe__t_once, msgpipe__t_start, NULL, NULL);
    if (msgpipe__t_start_err != 0) {
        msgpipe__set_os_error(msgpipe__t_start_err);
        return MSGPIPE_EIO;
    }
    return MSGPIPE_OK;
}

/* Record the Winsock error e and map it. */
static int msgpipe__t_err(int e)
{
    msgpipe__set_os_error(e);
    switch (e) {
    case WSAECONNRESET:
    case WSAECONNABORTED:
    case WSAENETRESET:
    case WSAESHUTDOWN:
    case WSAENOTCONN:
    case WSAEDISCON:
        return MSGPIPE_ECLOSED;
    case WSAEWOULDBLOCK:
    case WSAETIMEDOUT:
        return MSGPIPE_ETIMEDOUT;
    case WSAENOBUFS:
    case WSA_NOT_ENOUGH_MEMORY:
        return MSGPIPE_ENOMEM;
    case WSAEADDRINUSE:
        return MSGPIPE_EADDRINUSE;
    case WSAEADDRNOTAVAIL:
        return MSGPIPE_EBADNAME;
    case WSAEACCES:
        return MSGPIPE_EACCES;
    default:
        return MSGPIPE_EIO;
    }
}

/* Wait until s is readable (rd) or writable, or the deadline; 1 ready (or
 * failed: the next call tells), 0 time out. */
static int msgpipe__t_wait(SOCKET s, int rd, int64_t deadline)
{
    fd_set fs, xs;
    struct timeval tv;
    int left, r;

    for (;;) {
        left = msgpipe__remaining(deadline);
        FD_ZERO(&fs);
        FD_ZERO(&xs);
        FD_SET(s, &fs);
        FD_SET(s, &xs);
        tv.tv_sec = left / 1000;
        tv.tv_usec = (left % 1000) * 1000;
        r = select(0, rd ? &fs : NULL, rd ? NULL : &fs, &xs,
                   left < 0 ? NULL : &tv);
        if (r != 0)
            return 1;
        if (left == 0)
            return 0;
    }
}

static int msgpipe__t_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        const uint8_t *b = in6->sin6_addr.s6_addr;
        static const uint8_t lo[16] = {0, 0, 0, 0, 0, 0, 0, 0,
                                       0, 0, 0, 0, 0, 0, 0, 1};
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0,    0,
                                           0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(b, lo, 16) == 0)
            return 1;
        return memcmp(b, mapped, 12) == 0 && b[12] == 127;
    }
    return 0;
}

static int msgpipe__t_resolve(const msgpipe__name *n, int passive,
                              struct addrinfo **res)
{
    struct addrinfo hints;
    char port[8];
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = n->is_ipv6 ? AF_INET6 : AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0) |
                     (n->is_ipv6 ? AI_NUMERICHOST : 0);
    snprintf(port, sizeof(port), "%d", n->port);
    rc = getaddrinfo(n->sys, port, &hints, res);
    if (rc == 0)
        return MSGPIPE_OK;
    msgpipe__set_os_error(rc);
    if (rc == EAI_MEMORY)
        return MSGPIPE_ENOMEM;
    return n->is_ipv6 ? MSGPIPE_EBADNAME : MSGPIPE_ENOENT;
}

/* "tcp://ADDRESS:PORT" for an address. */
static int msgpipe__t_addr_text(const struct sockaddr *sa, int len, char *buf,
                                size_t cap, size_t *out_len)
{
    char host[NI_MAXHOST], serv[NI_MAXSERV], text[NI_MAXHOST + NI_MAXSERV + 16];
    int rc;

    rc = getnameinfo(sa, (socklen_t)len, host, sizeof(host), serv, sizeof(serv),
                     NI_NUMERICHOST | NI_NUMERICSERV);
    if (rc != 0) {
        msgpipe__set_os_error(rc);
        return MSGPIPE_EIO;
    }
    snprintf(text, sizeof(text),
             sa->sa_family == AF_INET6 ? "tcp://[%s]:%s" : "tcp://%s:%s", host,
             serv);
    return msgpipe__put_text(text, buf, cap, out_len);
}

static SOCKET msgpipe__t_socket(int family)
{
    SOCKET s = WSASocketW(family, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                          WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
    u_long one = 1;

    if (s == INVALID_SOCKET)
        s = WSASocketW(family, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                       WSA_FLAG_OVERLAPPED);
    if (s != INVALID_SOCKET && ioctlsocket(s, FIONBIO, &one) != 0) {
        closesocket(s);
        return INVALID_SOCKET;
    }
    return s;
}

/* ---- Pipes ----------------------------------------------------------------
 */

/* The memory of a TCP pipe, before there is a socket for it (so that an
 * accept out of memory leaves the connection queued for the next one). */
static msgpipe *msgpipe__t_alloc(void)
{
    msgpipe *p = (msgpipe *)msgpipe__calloc(1, sizeof(*p));
    struct msgpipe__w_tcp *t =
        (struct msgpipe__w_tcp *)msgpipe__calloc(1, sizeof(*t));

    if (p == NULL || t == NULL) {
        msgpipe__free(p);
        msgpipe__free(t);
        return NULL;
    }
    p->tcp = t;
    return p;
}

static void msgpipe__t_free(msgpipe *p)
{
    msgpipe__free(p->tcp);
    msgpipe__free(p);
}

/* A connected socket into the pipe p of msgpipe__t_alloc; takes s and p
 * (both are freed on failure). */
static int msgpipe__t_setup(SOCKET s, int server_end, const msgpipe__opts *o,
                            msgpipe *p, msgpipe **out)
{
    struct msgpipe__w_tcp *t = p->tcp;
    u_long one = 1;
    BOOL yes = TRUE;
    int rc;

    p->h = INVALID_HANDLE_VALUE;
    msgpipe__w_pipe_opts(p, server_end, o);
    p->tx_seen = 1;
    t->s = s;
    /* An accepted socket has its listening socket's selection: replaced
     * here by the pipe's own. */
    t->ev = CreateEventW(NULL, TRUE, FALSE, NULL);
    p->tx_ev = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (t->ev == NULL || p->tx_ev == NULL) {
        rc = msgpipe__w_error(GetLastError());
        goto fail;
    }
    if (WSAEventSelect(s, (WSAEVENT)t->ev, FD_READ | FD_CLOSE | FD_WRITE) !=
            0 ||
        ioctlsocket(s, FIONBIO, &one) != 0) {
        rc = msgpipe__t_err(WSAGetLastError());
        goto fail;
    }
    (void)setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (const char *)&yes,
                     sizeof(yes));
    (void)setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, (const char *)&yes,
                     sizeof(yes));
    t->peer_len = (int)sizeof(t->peer);
    if (getpeername(s, (struct sockaddr *)&t->peer, &t->peer_len) != 0)
        t->peer_len = 0;
    /* The tail's overlapped write reports to the port (never skipped, so
     * that its packet always comes). */
    rc = msgpipe__w_port_bind((HANDLE)s, MSGPIPE__W_KEY_PIPE, p, &p->key);
    if (rc != MSGPIPE_OK)
        goto fail;
    *out = p;
    return MSGPIPE_OK;
fail:
    closesocket(s);
    if (t->ev != NULL)
        CloseHandle(t->ev);
    if (p->tx_ev != NULL)
        CloseHandle(p->tx_ev);
    msgpipe__t_free(p);
    return rc;
}

/* A connected socket into a new pipe; takes s. */
static int msgpipe__t_pipe(SOCKET s, int server_end, const msgpipe__opts *o,
                           msgpipe **out)
{
    msgpipe *p = msgpipe__t_alloc();

    if (p == NULL) {
        closesocket(s);
        return MSGPIPE_ENOMEM;
    }
    return msgpipe__t_setup(s, server_end, o, p, out);
}

static int msgpipe__t_writable(SOCKET s);
static int msgpipe__t_fill(struct msgpipe__w_tcp *t, size_t want);

/* ---- Spinning (msgpipe_options.spin_us; see win32_stream.c) -------------
 *
 * Before a receive or a send waits for the socket, it looks again and
 * again without waiting until spin_us is over, SwitchToThread() between
 * two looks.  1: something may have changed, look at the socket again;
 * 0: the spin is over, wait.
 *
 * A receive looks at the socket's event, which Winsock sets for bytes
 * that come after a read that found none: it resets the event and reads
 * once first, so that nothing that comes later goes unseen (the receive
 * sets the event right again when it ends: msgpipe__t_settle).  A send
 * must leave the event alone - a receive may be running in another
 * thread, and the event says what it will find - so it looks with a
 * select() of timeout 0. */
static int msgpipe__t_spin(msgpipe *p, int rd, int64_t end)
{
    struct msgpipe__w_tcp *t = p->tcp;

    if (rd) {
        ResetEvent(t->ev);
        if (msgpipe__t_fill(t, 0) != 0)
            return 1;
    }
    do {
        if (rd ? msgpipe__w32.WaitForSingleObject(t->ev, 0) != WAIT_TIMEOUT
               : msgpipe__t_writable(t->s))
            return 1;
        SwitchToThread();
    } while (msgpipe__w_now_us() < end);
    return 0;
}

/* Has the tail's write ended?  Its packet says so (win32_poller.c). */
static int msgpipe__t_tx_idle(msgpipe *p)
{
    return !InterlockedCompareExchange(&p->tx_busy, 0, 0) ||
           InterlockedCompareExchange(&p->tx_seen, 0, 0);
}

/* Take the result of the tail's write once it has ended. */
static void msgpipe__t_tx_reap(msgpipe *p)
{
    struct msgpipe__w_tcp *t = p->tcp;
    DWORD n, fl;

    if (!p->tx_busy || !InterlockedCompareExchange(&p->tx_seen, 0, 0))
        return;
    if (!WSAGetOverlappedResult(t->s, &p->tx_ov, &n, FALSE, &fl) ||
        n != p->tx_len)
        t->tx_err = MSGPIPE_ECLOSED;
    InterlockedExchange(&p->tx_busy, 0);
    msgpipe__free(t->txb);
    t->txb = NULL;
}

/* Wait for the tail's write until the deadline: OK when it has ended. */
static int msgpipe__t_tx_wait(msgpipe *p, int64_t deadline)
{
    DWORD w;

    for (;;) {
        ResetEvent(p->tx_ev);
        if (msgpipe__t_tx_idle(p)) {
            msgpipe__t_tx_reap(p);
            return MSGPIPE_OK;
        }
        w = msgpipe__w32.WaitForSingleObject(p->tx_ev,
                                             msgpipe__w_left(deadline));
        if (w == WAIT_TIMEOUT && !msgpipe__t_tx_idle(p)) {
            msgpipe__set_os_error(WAIT_TIMEOUT);
            return MSGPIPE_ETIMEDOUT;
        }
        if (w == WAIT_FAILED)
            return msgpipe__w_error(GetLastError());
    }
}

/* Commit the rest of a message, n bytes of the buffers b[0..nb) from
 * their start (what has not been written): one overlapped write of a
 * copy, which the system finishes. */
static int msgpipe__t_commit(msgpipe *p, const WSABUF *b, int nb, size_t n)
{
    struct msgpipe__w_tcp *t = p->tcp;
    WSABUF one;
    size_t k = 0;
    DWORD sent;
    int i;

    t->txb = (unsigned char *)msgpipe__malloc(n);
    if (t->txb == NULL)
        return MSGPIPE_ENOMEM;
    for (i = 0; i < nb; i++) {
        memcpy(t->txb + k, b[i].buf, b[i].len);
        k += b[i].len;
    }
    memset(&p->tx_ov, 0, sizeof(p->tx_ov));
    p->tx_len = (DWORD)n;
    InterlockedExchange(&p->tx_seen, 0);
    InterlockedExchange(&p->tx_busy, 1);
    one.buf = (char *)t->txb;
    one.len = (ULONG)n;
    if (WSASend(t->s, &one, 1, &sent, 0, &p->tx_ov, NULL) != 0 &&
        WSAGetLastError() != WSA_IO_PENDING) {
        /* Failed at once: no packet comes. */
        t->tx_err = msgpipe__t_err(WSAGetLastError());
        InterlockedExchange(&p->tx_seen, 1);
        InterlockedExchange(&p->tx_busy, 0);
        msgpipe__free(t->txb);
        t->txb = NULL;
    }
    return MSGPIPE_OK;
}

static int msgpipe__t_send(msgpipe *p, const void *msg, size_t len,
                           int timeout_ms)
{
    struct msgpipe__w_tcp *t = p->tcp;
    int64_t deadline = msgpipe__deadline(timeout_ms);
    uint8_t hdr[MSGPIPE__FRAME_HDR_MAX];
    WSABUF b[2];
    DWORD n;
    size_t left, done = 0, step;
    int64_t spin = 0; /* 0: not yet; > 0: it ends then; -1: over or none */
    int rc, nb = 2;

    /* A WSABUF holds at most 4 GiB - 1: a larger message is refused on
     * Windows rather than sent in part (docs/tcp.md). */
    if ((uint64_t)len > p->max_message ||
        (uint64_t)len > 0xFFFFFFFFu - MSGPIPE__FRAME_HDR_MAX)
        return MSGPIPE_EMSGSIZE;
    /* An earlier message's tail must be out first. */
    if (p->tx_busy) {
        rc = msgpipe__t_tx_wait(p, deadline);
        if (rc != MSGPIPE_OK)
            return rc;
    }
    if (t->tx_err != 0)
        return t->tx_err;
    b[0].buf = (char *)hdr;
    b[0].len = (ULONG)msgpipe__frame_encode(hdr, len);
    b[1].buf = (char *)msg;
    b[1].len = (ULONG)len; /* within ULONG: max_message is checked */
    if (len == 0)
        nb = 1;
    left = b[0].len + len;
    for (;;) {
        /* At most 1 GiB a call, so that a length never overflows. */
        WSABUF c[2];
        int i, k = 0;
        size_t room = (size_t)1 << 30;
        for (i = 0; i < nb && room > 0; i++) {
            if (b[i].len == 0)
                continue;
            c[k] = b[i];
            if (c[k].len > room)
                c[k].len = (ULONG)room;
            room -= c[k].len;
            k++;
        }
        if (k == 0)
            return MSGPIPE_OK;
        if (WSASend(t->s, c, (DWORD)k, &n, 0, NULL, NULL) == 0) {
            step = n;
            done += step;
            left -= step;
            for (i = 0; i < nb && step > 0; i++) {
                size_t m = b[i].len < step ? b[i].len : step;
                b[i].buf += m;
                b[i].len -= (ULONG)m;
                step -= m;
            }
            if (left == 0)
                return MSGPIPE_OK;
            spin = 0; /* the next wait for room spins anew */
            continue;
        }
        rc = WSAGetLastError();
        if (rc != WSAEWOULDBLOCK) {
            rc = msgpipe__t_err(rc);
            /* Part of a message went out: nothing can follow it. */
            if (done > 0)
                t->tx_err = rc == MSGPIPE_ECLOSED ? rc : MSGPIPE_EIO;
            return rc;
        }
        if (spin == 0)
            spin = msgpipe__w_spin_end(p, deadline);
        if (spin > 0 && msgpipe__t_spin(p, 0, spin))
            continue;
        spin = -1;
        if (msgpipe__t_wait(t->s, 0, deadline))
            continue;
        if (done == 0) {
            msgpipe__set_os_error(WAIT_TIMEOUT);
            return MSGPIPE_ETIMEDOUT;
        }
        /* Part of it went out: committed, the rest goes on alone. */
        for (i = 0; i < nb; i++)
            if (b[i].len == 0) {
                memmove(&b[i], &b[i + 1], sizeof(b[0]) * (size_t)(nb - i - 1));
                nb--;
                i--;
            }
        if (left <= 0xFFFFFFFFu &&
            msgpipe__t_commit(p, b, nb, left) == MSGPIPE_OK)
            return MSGPIPE_OK;
        /* No memory for the copy (or over 4 GiB): finish it here. */
        deadline = -1;
    }
}

/* Read what has arrived into rb, without waiting: 1 if bytes came, 0 if
 * none (would block), -1 at the end or a failure (t->eof, t->rx_err).
 * want: rb should hold at least this many bytes from rb_off. */
static int msgpipe__t_fill(struct msgpipe__w_tcp *t, size_t want)
{
    unsigned char *nbuf;
    size_t ncap, have, target;
    int r;

    if (t->eof || t->rx_err != 0)
        return -1;
    if (t->rb_off > 0 && (t->rb_off == t->rb_len ||
                          t->rb_cap - t->rb_len < MSGPIPE__T_RB_MIN / 4)) {
        memmove(t->rb, t->rb + t->rb_off, t->rb_len - t->rb_off);
        t->rb_len -= t->rb_off;
        t->rb_off = 0;
    }
    if (want < MSGPIPE__T_RB_MIN)
        want = MSGPIPE__T_RB_MIN;
    have = t->rb_len - t->rb_off;
    if (t->rb_cap == t->rb_len ||
        (t->rb_cap - t->rb_off < want &&
         t->rb_cap - t->rb_len < MSGPIPE__T_RB_MIN / 4)) {
        /* Grow with what has come (doubling), never straight to what a
         * header announces: a peer that announces 2 GiB and sends little
         * costs little. */
        target = have < want / 2 ? 2 * have : want;
        if (target < MSGPIPE__T_RB_MIN)
            target = MSGPIPE__T_RB_MIN;
        if (target < have + MSGPIPE__T_RB_MIN / 4)
            target = have + MSGPIPE__T_RB_MIN / 4;
        ncap = t->rb_off + target;
        nbuf = (unsigned char *)msgpipe__realloc(t->rb, ncap);
        if (nbuf == NULL) {
            t->rx_err = MSGPIPE_ENOMEM;
            return -1;
        }
        t->rb = nbuf;
        t->rb_cap = ncap;
    }
    r = recv(t->s, (char *)t->rb + t->rb_len,
             (int)((t->rb_cap - t->rb_len) > 0x40000000
                       ? 0x40000000
                       : (t->rb_cap - t->rb_len)),
             0);
    if (r > 0) {
        t->rb_len += (size_t)r;
        return 1;
    }
    if (r == 0) {
        t->eof = 1;
        return -1;
    }
    r = WSAGetLastError();
    if (r == WSAEWOULDBLOCK || r == WSAEINTR)
        return 0;
    t->rx_err = msgpipe__t_err(r);
    return -1;
}

/* Drop what is buffered of an oversized message. */
static void msgpipe__t_drop(struct msgpipe__w_tcp *t)
{
    size_t have = t->rb_len - t->rb_off;
    size_t k = (uint64_t)have < t->drain ? have : (size_t)t->drain;

    t->rb_off += k;
    t->drain -= k;
}

/*
 * What a receive would do now with what is buffered: 1 a message of
 * *size bytes (header *hl) is complete, 2 one is too large (EMSGSIZE),
 * 3 the end or a failure, 4 the stream is corrupt, 0 nothing yet (a
 * header of a message that is not complete sets *size).  Drains first.
 */
static int msgpipe__t_look(msgpipe *p, uint64_t *size, size_t *hl)
{
    struct msgpipe__w_tcp *t = p->tcp;
    int r;

    *size = 0;
    *hl = 0;
    if (t->drain > 0) {
        msgpipe__t_drop(t);
        if (t->drain > 0)
            return t->eof || t->rx_err ? 3 : 0;
    }
    r = msgpipe__frame_decode(t->rb + t->rb_off, t->rb_len - t->rb_off, size,
                              hl);
    if (r < 0)
        return 4;
    if (r == 1) {
        if (*size > p->max_message)
            return 2;
        if ((uint64_t)(t->rb_len - t->rb_off) >= *hl + *size)
            return 1;
    }
    return t->eof || t->rx_err ? 3 : 0;
}

/* Read until nothing more is there (or a message is complete, or its
 * header says it is larger than cap: nothing more is read for it). */
static int msgpipe__t_pump(msgpipe *p, size_t cap, uint64_t *size, size_t *hl)
{
    int k;

    for (;;) {
        k = msgpipe__t_look(p, size, hl);
        if (k != 0 || (*hl != 0 && *size > cap))
            return k;
        if (msgpipe__t_fill(p->tcp, *hl != 0 ? (size_t)(*hl + *size) : 0) <= 0)
            return msgpipe__t_look(p, size, hl);
    }
}

/* The wait for POLLIN is exact: the event is set while a receive would
 * return at once, and reset otherwise (new bytes set it again). */
static int msgpipe__t_settle(msgpipe *p)
{
    struct msgpipe__w_tcp *t = p->tcp;
    uint64_t size;
    size_t hl;
    int k;

    ResetEvent(t->ev);
    k = msgpipe__t_pump(p, (size_t)-1, &size, &hl);
    if (k != 0)
        SetEvent(t->ev);
    return k != 0;
}

static int msgpipe__t_recv(msgpipe *p, unsigned char *buf, size_t cap,
                           void **msg, size_t *len, int timeout_ms)
{
    struct msgpipe__w_tcp *t = p->tcp;
    int64_t deadline = msgpipe__deadline(timeout_ms);
    unsigned char *m;
    uint64_t size;
    size_t hl;
    int64_t spin = 0; /* as in msgpipe__t_send */
    int k;

    for (;;) {
        k = msgpipe__t_pump(p, msg != NULL ? (size_t)-1 : cap, &size, &hl);
        switch (k) {
        case 1:
            if (msg == NULL && size > cap) {
                *len = (size_t)size;
                return MSGPIPE_ENOBUFS;
            }
            if (msg != NULL) {
                m = (unsigned char *)msgpipe__malloc((size_t)size + 1);
                if (m == NULL)
                    return MSGPIPE_ENOMEM;
                memcpy(m, t->rb + t->rb_off + hl, (size_t)size);
                m[size] = 0;
                *msg = m;
            } else if (size > 0) {
                memcpy(buf, t->rb + t->rb_off + hl, (size_t)size);
            }
            t->rb_off += hl + (size_t)size;
            *len = (size_t)size;
            if (t->rb_off == t->rb_len && t->rb_cap > 4 * MSGPIPE__T_RB_MIN) {
                msgpipe__free(t->rb);
                t->rb = NULL;
                t->rb_off = t->rb_len = t->rb_cap = 0;
            }
            return MSGPIPE_OK;
        case 2:
            *len = (size_t)size;
            t->rb_off += hl;
            t->drain = size;
            msgpipe__t_drop(t);
            return MSGPIPE_EMSGSIZE;
        case 3:
            return t->rx_err != 0 ? t->rx_err : MSGPIPE_ECLOSED;
        case 4:
            return MSGPIPE_EPROTO;
        default:
            /* Too large for buf: said as soon as the header is in, without
             * waiting for (or holding) the rest. */
            if (hl != 0 && msg == NULL && size > cap) {
                *len = (size_t)size;
                return MSGPIPE_ENOBUFS;
            }
            break;
        }
        if (spin == 0)
            spin = msgpipe__w_spin_end(p, deadline);
        if (spin > 0 && msgpipe__t_spin(p, 1, spin))
            continue;
        spin = -1;
        if (!msgpipe__t_wait(t->s, 1, deadline)) {
            msgpipe__set_os_error(WAIT_TIMEOUT);
            return MSGPIPE_ETIMEDOUT;
        }
    }
}

/* ---- The engine's entry points (win32_stream.c routes TCP pipes here) --- */

int msgpipe__w_tcp_send(msgpipe *p, const void *msg, size_t len, int timeout_ms)
{
    return msgpipe__t_send(p, msg, len, timeout_ms);
}

int msgpipe__w_tcp_recv(msgpipe *p, void *buf, size_t cap, void **msg,
                        size_t *len, int timeout_ms)
{
    int rc =
        msgpipe__t_recv(p, (unsigned char *)buf, cap, msg, len, timeout_ms);

    /* The event says what the next receive finds; a poller looks again. */
    msgpipe__t_settle(p);
    if (InterlockedCompareExchange(&p->pl_in, 0, 0) != 0)
        msgpipe__w_pl_touch(p, NULL);
    return rc;
}

int msgpipe__w_tcp_in_ready(msgpipe *p, HANDLE *wait)
{
    *wait = p->tcp->ev;
    return msgpipe__t_settle(p);
}

void msgpipe__w_tcp_watch(HANDLE ev, HANDLE *wait, ULONG_PTR key);

int msgpipe__w_tcp_in_ready_port(msgpipe *p)
{
    if (msgpipe__t_settle(p))
        return 1;
    msgpipe__w_tcp_watch(p->tcp->ev, &p->tcp->wait, p->key);
    return 0;
}

/* POLLOUT: would a small send with timeout 0 commit its message?  Yes when
 * no tail is in flight and the socket has room, or when it would fail. */
static int msgpipe__t_writable(SOCKET s)
{
    fd_set ws, xs;
    struct timeval tv = {0, 0};

    FD_ZERO(&ws);
    FD_ZERO(&xs);
    FD_SET(s, &ws);
    FD_SET(s, &xs);
    return select(0, NULL, &ws, &xs, &tv) != 0;
}

int msgpipe__w_tcp_out_ready(msgpipe *p)
{
    struct msgpipe__w_tcp *t = p->tcp;

    /* A tail in flight: its completion packet wakes a poller. */
    if (!msgpipe__t_tx_idle(p))
        return 0;
    if (t->tx_err != 0 || msgpipe__t_writable(t->s))
        return 1;
    /* Full buffers: FD_WRITE sets the event when room appears (a send
     * that found them full re-enabled it).  A poller (msgpipe_poll ticks
     * instead) hears of that through the event's wait, after a reset and
     * a look again, so that nothing set before counts and nothing set
     * after is missed. */
    if (p->pl_entry != NULL) {
        ResetEvent(t->ev);
        if (msgpipe__t_writable(t->s))
            return 1;
        msgpipe__w_tcp_watch(t->ev, &t->wait, p->key);
    }
    return 0;
}

int msgpipe__w_tcp_native_handle(msgpipe *p, unsigned events,
                                 msgpipe_native *out)
{
    if (events != MSGPIPE_POLLIN)
        return MSGPIPE_ENOTSUP;
    msgpipe__t_settle(p);
    *out = (msgpipe_native)p->tcp->ev;
    return MSGPIPE_OK;
}

int msgpipe__w_tcp_peer_address(msgpipe *p, char *buf, size_t cap, size_t *len)
{
    struct msgpipe__w_tcp *t = p->tcp;

    if (t->peer_len == 0) {
        msgpipe__set_os_error(WSAENOTCONN);
        return MSGPIPE_EIO;
    }
    return msgpipe__t_addr_text((const struct sockaddr *)&t->peer, t->peer_len,
                                buf, cap, len);
}

/*
 * Graceful close: the tail in flight is waited for, for at most
 * linger_ms (then cancelled: the peer sees that message cut off), then the
 * sending direction is shut down, so that the peer reads every byte and
 * then the end, and the socket is closed.  closesocket() itself would
 * also deliver what is buffered (no SO_LINGER with a zero time is set),
 * but a peer that is still sending could make the system answer with a
 * reset that discards it; the shutdown first avoids most of that.
 */
void msgpipe__w_tcp_close(msgpipe *p)
{
    struct msgpipe__w_tcp *t = p->tcp;

    msgpipe__w_pl_forget(p, NULL);
    if (p->tx_busy &&
        msgpipe__t_tx_wait(p, msgpipe__deadline(p->linger_ms)) != MSGPIPE_OK) {
        CancelIoEx((HANDLE)t->s, &p->tx_ov);
        while (!InterlockedOr(&p->tx_seen, 0))
            Sleep(1);
        msgpipe__t_tx_reap(p);
    }
    if (t->wait != NULL)
        UnregisterWaitEx(t->wait, INVALID_HANDLE_VALUE);
    shutdown(t->s, SD_SEND);
    msgpipe__w_port_release(p->key);
    closesocket(t->s);
    CloseHandle(t->ev);
    CloseHandle(p->tx_ev);
    msgpipe__free(t->txb);
    msgpipe__free(t->rb);
    msgpipe__free(t);
    msgpipe__free(p);
}

/* ---- Waking a poller ------------------------------------------------------
 */

static VOID CALLBACK msgpipe__t_fired(PVOID ctx, BOOLEAN timed_out)
{
    (void)timed_out;
    /* Only the key: a stale one is dropped by the dispatcher. */
    msgpipe__w_port_post((ULONG_PTR)ctx);
}

/* Have the next signal of ev post a completion for key (once), replacing
 * the wait in *wait.  A wait that cannot be made leaves the poller to its
 * other wake-ups; nothing is lost but promptness. */
void msgpipe__w_tcp_watch(HANDLE ev, HANDLE *wait, ULONG_PTR key)
{
    HANDLE w = NULL;

    if (*wait != NULL)
        UnregisterWait(*wait);
    *wait = NULL;
    if (RegisterWaitForSingleObject(
            &w, ev, msgpipe__t_fired, (PVOID)key, INFINITE,
            WT_EXECUTEONLYONCE | WT_EXECUTEINWAITTHREAD))
        *wait = w;
}

/* ---- Connecting -----------------------------------------------------------
 */

/* One connect to one address, waiting at most until `until`: 0 with *out
 * set, or a Winsock error (WSAETIMEDOUT when the time ran out). */
static int msgpipe__t_try(const struct addrinfo *ai, int64_t until, SOCKET *out)
{
    SOCKET s = msgpipe__t_socket(ai->ai_family);
    int err, el;

    if (s == INVALID_SOCKET)
        return WSAGetLastError();
    if (connect(s, ai->ai_addr, (int)ai->ai_addrlen) == 0) {
        *out = s;
        return 0;
    }
    err = WSAGetLastError();
    if (err == WSAEWOULDBLOCK || err == WSAEINPROGRESS) {
        fd_set ws, xs;
        struct timeval tv;
        int left, r;
        for (;;) {
            left = msgpipe__remaining(until);
            FD_ZERO(&ws);
            FD_ZERO(&xs);
            FD_SET(s, &ws);
            FD_SET(s, &xs);
            tv.tv_sec = left / 1000;
            tv.tv_usec = (left % 1000) * 1000;
            r = select(0, NULL, &ws, &xs, left < 0 ? NULL : &tv);
            if (r != 0 || left == 0)
                break;
        }
        if (r > 0 && FD_ISSET(s, &ws) && !FD_ISSET(s, &xs)) {
            *out = s;
            return 0;
        }
        if (r > 0) {
            el = (int)sizeof(err);
            if (getsockopt(s, SOL_SOCKET, SO_ERROR, (char *)&err, &el) != 0 ||
                err == 0)
                err = WSAECONNREFUSED;
        } else {
            err = r == 0 ? WSAETIMEDOUT : WSAGetLastError();
        }
    }
    closesocket(s);
    return err;
}

int msgpipe__w_tcp_connect(const msgpipe__name *name, const msgpipe__opts *o,
                           int timeout_ms, msgpipe **out)
{
    int64_t deadline = msgpipe__deadline(timeout_ms), until;
    struct addrinfo *res = NULL, *ai;
    SOCKET s = INVALID_SOCKET;
    int rc, err = WSAECONNREFUSED, left, n;
    DWORD pause = 1;

    rc = msgpipe__t_init();
    if (rc != MSGPIPE_OK)
        return rc;
    /* getaddrinfo() takes no timeout (docs/tcp.md). */
    rc = msgpipe__t_resolve(name, 0, &res);
    if (rc != MSGPIPE_OK)
        return rc;
    for (;;) {
        /* Every address in turn, each with an equal share of the time
         * that is left. */
        for (n = 0, ai = res; ai != NULL; ai = ai->ai_next)
            n++;
        for (ai = res; ai != NULL; ai = ai->ai_next, n--) {
            left = msgpipe__remaining(deadline);
            if (deadline < 0)
                until = -1;
            else
                until = left == 0 ? 0 : msgpipe__now_ms() + (left + n - 1) / n;
            err = msgpipe__t_try(ai, until, &s);
            if (err == 0) {
                freeaddrinfo(res);
                return msgpipe__t_pipe(s, 0, o, out);
            }
        }
        msgpipe__set_os_error(err);
        switch (err) {
        case WSAECONNREFUSED:
        case WSAENETUNREACH:
        case WSAEHOSTUNREACH:
        case WSAETIMEDOUT:
            if (timeout_ms == 0) {
                freeaddrinfo(res);
                return err == WSAETIMEDOUT ? MSGPIPE_ETIMEDOUT : MSGPIPE_ENOENT;
            }
            break;
        default:
            freeaddrinfo(res);
            return msgpipe__t_err(err);
        }
        /* No server there yet: wait for one, as for a local name. */
        left = msgpipe__remaining(deadline);
        if (left == 0) {
            freeaddrinfo(res);
            msgpipe__set_os_error(WAIT_TIMEOUT);
            return MSGPIPE_ETIMEDOUT;
        }
        Sleep(left < 0 || (DWORD)left > pause ? pause : (DWORD)left);
        if (pause < 64)
            pause *= 2;
    }
}

/* ---- Servers' sockets (win32_server.c) ----------------------------------- */

int msgpipe__w_tcp_bind(const msgpipe__name *name, const msgpipe__opts *o,
                        UINT_PTR *sock, HANDLE ev)
{
    struct addrinfo *res = NULL, *ai;
    SOCKET s = INVALID_SOCKET;
    BOOL one = TRUE;
    int rc, err = 0;

    rc = msgpipe__t_init();
    if (rc != MSGPIPE_OK)
        return rc;
    rc = msgpipe__t_resolve(name, 1, &res);
    if (rc != MSGPIPE_OK)
        return rc == MSGPIPE_ENOENT ? MSGPIPE_EBADNAME : rc;
    /* The safe default: a port open beyond this machine must be
     * authenticated, or explicitly not. */
    if (o->authkey == NULL && !o->allow_unauthenticated) {
        for (ai = res; ai != NULL; ai = ai->ai_next)
            if (!msgpipe__t_is_loopback(ai->ai_addr)) {
                freeaddrinfo(res);
                msgpipe__set_os_error(WSAEACCES);
                return MSGPIPE_EINVAL;
            }
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        s = msgpipe__t_socket(ai->ai_family);
        if (s == INVALID_SOCKET) {
            err = WSAGetLastError();
            continue;
        }
        /* Windows' SO_REUSEADDR would let a second server take a live
         * port; SO_EXCLUSIVEADDRUSE keeps it ours. */
        (void)setsockopt(s, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, (const char *)&one,
                         sizeof(one));
        if (bind(s, ai->ai_addr, (int)ai->ai_addrlen) == 0 &&
            listen(s, o->pending) == 0 &&
            WSAEventSelect(s, (WSAEVENT)ev, FD_ACCEPT) == 0)
            break;
        err = WSAGetLastError();
        closesocket(s);
        s = INVALID_SOCKET;
    }
    freeaddrinfo(res);
    if (s == INVALID_SOCKET)
        return msgpipe__t_err(err);
    *sock = (UINT_PTR)s;
    return MSGPIPE_OK;
}

/* Is a connection waiting on the listening socket? */
int msgpipe__w_tcp_pending(UINT_PTR sock)
{
    fd_set rs;
    struct timeval tv = {0, 0};

    FD_ZERO(&rs);
    FD_SET((SOCKET)sock, &rs);
    return select(0, &rs, NULL, NULL, &tv) > 0;
}

/* Accept one waiting connection without blocking: OK, ETIMEDOUT if none.
 * The pipe's memory comes first: out of it, the connection stays queued
 * for the next accept (ENOMEM), as on POSIX. */
int msgpipe__w_tcp_accept(UINT_PTR sock, const msgpipe__opts *o, msgpipe **out)
{
    msgpipe *p = msgpipe__t_alloc();
    SOCKET s;
    int e;

    if (p == NULL)
        return MSGPIPE_ENOMEM;
    s = accept((SOCKET)sock, NULL, NULL);
    if (s == INVALID_SOCKET) {
        e = WSAGetLastError();
        msgpipe__t_free(p);
        if (e == WSAEWOULDBLOCK || e == WSAECONNRESET || e == WSAEINTR) {
            msgpipe__set_os_error(e);
            return MSGPIPE_ETIMEDOUT;
        }
        return msgpipe__t_err(e);
    }
    return msgpipe__t_setup(s, 1, o, p, out);
}

void msgpipe__w_tcp_close_socket(UINT_PTR sock)
{
    closesocket((SOCKET)sock);
}

int msgpipe__w_tcp_sock_address(UINT_PTR sock, char *buf, size_t cap,
                                size_t *len)
{
    struct sockaddr_storage sa;
    int sl = (int)sizeof(sa);

    if (getsockname((SOCKET)sock, (struct sockaddr *)&sa, &sl) != 0)
        return msgpipe__t_err(WSAGetLastError());
    return msgpipe__t_addr_text((const struct sockaddr *)&sa, sl, buf, cap,
                                len);
}
