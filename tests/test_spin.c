/*
 * test_spin.c - msgpipe_options.spin_us: a wait that spins before it
 * blocks.
 *
 * No clock decides a result.  The backend's system-call table
 * (msgpipe__sys on POSIX, msgpipe__w32 on Windows) is wrapped so that the
 * tests see each look that found nothing (a non-blocking read or write
 * that said EAGAIN; on Windows a zero-timeout wait on the pipe's read
 * event) and each call that may block (poll() or a blocking read or write;
 * a wait with a timeout).  The wrapper itself makes the event the spin
 * waits for - a message sent, the peer closed, room made - at the third
 * look, or at the first call that may block if that comes first; so
 * "delivered by the spin" is "delivered with no call that may block before
 * it", which the code before spin_us never did.
 */
#include "support.h"

#include "backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include "win32_internal.h"
#else
#include "posix_internal.h"
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#endif

/* The longest spin there is: with it, only the event ends a spin. */
#define SPIN_LONG 1000000

/* ---- The wrapped system calls ----------------------------------------- */

enum { ACT_NONE, ACT_SEND, ACT_CLOSE, ACT_DRAIN };

/* Used by the one thread of each test while h_on is set. */
static int h_on;
static int h_act;        /* what to do when the event is due */
static int h_at;         /* ... at this look (or at the first blocking call) */
static msgpipe *h_peer;  /* the other end, which the event acts on */
static long h_looks;     /* looks that found nothing */
static long h_waits;     /* calls that may block, before the event */
static int h_done;       /* the event happened */
static long h_drained;   /* messages the drain took */
static size_t h_msg_len; /* ACT_SEND's message: h_msg_len bytes of 's' */

static void act(void)
{
    static unsigned char buf[65536];
    unsigned char *m;
    size_t len;
    int e = errno;

    if (h_done)
        return;
    h_done = 1;
    switch (h_act) {
    case ACT_SEND:
        m = (unsigned char *)malloc(h_msg_len + 1);
        if (m == NULL)
            break;
        memset(m, 's', h_msg_len + 1);
        if (msgpipe_send(h_peer, m, h_msg_len, SUP_T) != MSGPIPE_OK)
            h_done = 2; /* reported by the test */
        free(m);
        break;
    case ACT_CLOSE:
        msgpipe_close(h_peer);
        h_peer = NULL;
        break;
    case ACT_DRAIN:
        while (msgpipe_recv(h_peer, buf, sizeof(buf), &len, 0) == MSGPIPE_OK)
            h_drained++;
        break;
    default:
        break;
    }
    errno = e;
}

/* A look found nothing. */
static void h_look(void)
{
    h_looks++;
    if (h_looks == h_at)
        act();
}

/* A call that may block is about to be made. */
static void h_wait(void)
{
    if (h_done)
        return;
    h_waits++;
    act(); /* so that a call that blocks before the event returns */
}

static void h_arm(int what, int at, msgpipe *peer)
{
    h_act = what;
    h_at = at;
    h_peer = peer;
    h_looks = h_waits = h_drained = 0;
    h_done = 0;
    h_msg_len = 4;
    h_on = 1;
}

#ifndef _WIN32

static msgpipe__syscalls real_sys;
static int h_fd = -1; /* the descriptor watched */

static int is_again(ssize_t rc)
{
    return rc < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static ssize_t w_readv(int fd, const struct iovec *iov, int cnt)
{
    ssize_t rc = real_sys.readv(fd, iov, cnt); /* FIFO: never blocks */

    if (h_on && fd == h_fd && is_again(rc))
        h_look();
    return rc;
}

static ssize_t w_recvmsg(int fd, struct msghdr *msg, int flags)
{
    ssize_t rc;

    if (h_on && fd == h_fd && !(flags & MSG_DONTWAIT))
        h_wait(); /* a socket's blocking read */
    rc = real_sys.recvmsg(fd, msg, flags);
    if (h_on && fd == h_fd && is_again(rc))
        h_look();
    return rc;
}

static ssize_t w_writev(int fd, const struct iovec *iov, int cnt)
{
    ssize_t rc = real_sys.writev(fd, iov, cnt); /* FIFO: never blocks */

    if (h_on && fd == h_fd && is_again(rc))
        h_look();
    return rc;
}

static ssize_t w_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    ssize_t rc;

    if (h_on && fd == h_fd && !(flags & MSG_DONTWAIT))
        h_wait();
    rc = real_sys.sendmsg(fd, msg, flags);
    if (h_on && fd == h_fd && is_again(rc))
        h_look();
    return rc;
}

static ssize_t w_send(int fd, const void *buf, size_t n, int flags)
{
    ssize_t rc;

    if (h_on && fd == h_fd && !(flags & MSG_DONTWAIT))
        h_wait();
    rc = real_sys.send(fd, buf, n, flags);
    if (h_on && fd == h_fd && is_again(rc))
        h_look();
    return rc;
}

static int w_poll(struct pollfd *fds, nfds_t n, int timeout)
{
    nfds_t i;

    for (i = 0; h_on && timeout != 0 && i < n; i++)
        if (fds[i].fd == h_fd) {
            h_wait();
            break;
        }
    return real_sys.poll(fds, n, timeout);
}

static int setup(void **state)
{
    (void)state;
    real_sys = msgpipe__sys;
    msgpipe__sys.readv = w_readv;
    msgpipe__sys.recvmsg = w_recvmsg;
    msgpipe__sys.writev = w_writev;
    msgpipe__sys.sendmsg = w_sendmsg;
    msgpipe__sys.send = w_send;
    msgpipe__sys.poll = w_poll;
    h_on = 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    h_on = 0;
    msgpipe__sys = real_sys;
    return 0;
}

/* Watch the receiving (events POLLIN) or sending (POLLOUT) side of p. */
static void h_watch(msgpipe *p, unsigned events)
{
    msgpipe_native h;

    assert_rc(msgpipe_native_handle(p, events, &h), MSGPIPE_OK);
    h_fd = (int)h;
}

#else /* _WIN32 */

static msgpipe__w32_calls real_w32;

static DWORD WINAPI w_wait1(HANDLE h, DWORD ms)
{
    DWORD w;

    if (h_on && ms != 0)
        h_wait();
    w = real_w32.WaitForSingleObject(h, ms);
    if (h_on && ms == 0 && w == WAIT_TIMEOUT)
        h_look();
    return w;
}

static int setup(void **state)
{
    (void)state;
    real_w32 = msgpipe__w32;
    msgpipe__w32.WaitForSingleObject = w_wait1;
    h_on = 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    h_on = 0;
    msgpipe__w32 = real_w32;
    return 0;
}

/* Only the receiving side is watched on Windows (its zero-byte read's
 * event); a send's spin looks at memory the system writes. */
static void h_watch(msgpipe *p, unsigned events)
{
    (void)p;
    (void)events;
}

#endif

/* ---- Helpers ------------------------------------------------------------ */

static void spin_opts(msgpipe_options *o, int64_t spin_us)
{
    msgpipe_options_init(o);
    o->spin_us = spin_us;
}

static void spin_pair(int64_t spin_us, msgpipe **a, msgpipe **b)
{
    msgpipe_options o;

    spin_opts(&o, spin_us);
    assert_rc(msgpipe_pair(&o, a, b), MSGPIPE_OK);
}

/* A receive on a with the spin waiting: the message that b sends at the
 * third look is delivered with no call that may block before it. */
static void check_delivered_by_spin(msgpipe *a, msgpipe *b, int timeout_ms)
{
    char buf[16];
    size_t len = 0;

    h_watch(a, MSGPIPE_POLLIN);
    h_arm(ACT_SEND, 3, b);
    assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, timeout_ms), MSGPIPE_OK);
    h_on = 0;
    assert_int_equal(h_done, 1);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "ssss", 4);
    assert_int_equal(h_waits, 0);
    assert_true(h_looks >= 3);
}

/* ---- Options ------------------------------------------------------------ */

/* msgpipe_options_init gives 0 (no spin); 0 to one second is taken,
 * anything else is EINVAL. */
static void test_spin_us_default_zero_and_range(void **state)
{
    msgpipe_options o;
    msgpipe *a = NULL, *b = NULL;
    (void)state;

    memset(&o, 0xAB, sizeof(o));
    msgpipe_options_init(&o);
    assert_true(o.spin_us == 0);
    o.spin_us = -1;
    assert_rc(msgpipe_pair(&o, &a, &b), MSGPIPE_EINVAL);
    assert_null(a);
    o.spin_us = SPIN_LONG + 1;
    assert_rc(msgpipe_pair(&o, &a, &b), MSGPIPE_EINVAL);
    o.spin_us = SPIN_LONG;
    assert_rc(msgpipe_pair(&o, &a, &b), MSGPIPE_OK);
    msgpipe_close(a);
    msgpipe_close(b);
}

/* A program built before spin_us: its struct ends where spin_us begins.
 * msgpipe_options_init_size writes nothing there, and what lies there is
 * never read - not as an invalid value (EINVAL), not as a spin. */
static void test_options_without_spin_us_field_accepted_and_no_spin(void **s)
{
    const size_t n = offsetof(msgpipe_options, spin_us);
    msgpipe_options o;
    const unsigned char *bytes = (const unsigned char *)&o;
    msgpipe *a = NULL, *b = NULL;
    char buf[16];
    size_t len = 0, i;
    (void)s;

    memset(&o, 0xAB, sizeof(o));
    msgpipe_options_init_size(&o, n);
    assert_int_equal(o.struct_size, n);
    for (i = n; i < sizeof(o); i++)
        assert_int_equal(bytes[i], 0xAB);
    o.spin_us = -5; /* beyond struct_size: must not be read */
    assert_rc(msgpipe_pair(&o, &a, &b), MSGPIPE_OK);
    msgpipe_close(a);
    msgpipe_close(b);

    o.spin_us = SPIN_LONG; /* beyond struct_size: no spin */
    assert_rc(msgpipe_pair(&o, &a, &b), MSGPIPE_OK);
    h_watch(a, MSGPIPE_POLLIN);
    h_arm(ACT_SEND, 1000, b);
    assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    h_on = 0;
    assert_int_equal(len, 4);
    assert_int_equal(h_waits, 1); /* it waited at once */
    assert_true(h_looks <= 1);
    msgpipe_close(a);
    msgpipe_close(b);
}

/* ---- Receiving ---------------------------------------------------------- */

/* A message that arrives while the receive spins is taken by the spin:
 * nothing blocked before it came.  (Fails without spin_us: the receive
 * waits at the first look.) */
static void test_message_during_spin_delivered_without_blocking(void **s)
{
    msgpipe *a = NULL, *b = NULL;
    (void)s;

    spin_pair(SPIN_LONG, &a, &b);
    check_delivered_by_spin(a, b, SUP_T);
    check_delivered_by_spin(b, a, SUP_T);
    msgpipe_close(a);
    msgpipe_close(b);
}

/* The same with no timeout (a socket's receive then ends the spin with
 * one blocking read, not poll()). */
static void test_message_during_spin_no_timeout_delivered(void **s)
{
    msgpipe *a = NULL, *b = NULL;
    (void)s;

    spin_pair(SPIN_LONG, &a, &b);
    check_delivered_by_spin(a, b, MSGPIPE_INFINITE);
    msgpipe_close(a);
    msgpipe_close(b);
}

/* Pipes made by listen/accept and connect spin with their options. */
static void test_connected_and_accepted_pipes_spin(void **s)
{
    msgpipe_options o;
    sup_pair pr;
    (void)s;

    spin_opts(&o, SPIN_LONG);
    sup_pair_open(&pr, "spin", &o, &o);
    check_delivered_by_spin(pr.s, pr.c, SUP_T);
    check_delivered_by_spin(pr.c, pr.s, SUP_T);
    sup_pair_close(&pr);
}

/* A message that comes only after the spin is over is delivered by the
 * wait that follows, with and without a timeout; the spin looked more
 * than once first.  (Fails without spin_us: one look.) */
static void test_message_after_spin_delivered_by_wait(void **s)
{
    static const int timeouts[] = {SUP_T, MSGPIPE_INFINITE};
    msgpipe *a = NULL, *b = NULL;
    char buf[16];
    size_t len = 0, k;
    (void)s;

    spin_pair(50000, &a, &b); /* 50 ms */
    for (k = 0; k < 2; k++) {
        h_watch(a, MSGPIPE_POLLIN);
        h_arm(ACT_SEND, 0, b); /* only at the wait */
        assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, timeouts[k]),
                  MSGPIPE_OK);
        h_on = 0;
        assert_int_equal(h_done, 1);
        assert_int_equal(len, 4);
        assert_int_equal(h_waits, 1);
        assert_true(h_looks >= 2);
    }
    msgpipe_close(a);
    msgpipe_close(b);
}

/* A timeout shorter than the spin is kept: no spin, ETIMEDOUT.  (The
 * bound on the time is loose: the point is the count of looks.) */
static void test_timeout_shorter_than_spin_times_out_without_spin(void **s)
{
    msgpipe *a = NULL, *b = NULL;
    char buf[16];
    size_t len = 0;
    int64_t t0, dt;
    (void)s;

    spin_pair(SPIN_LONG, &a, &b);
    h_watch(a, MSGPIPE_POLLIN);
    h_arm(ACT_NONE, 0, b);
    t0 = sup_now_ms();
    assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, 20), MSGPIPE_ETIMEDOUT);
    dt = sup_now_ms() - t0;
    h_on = 0;
    assert_true(h_looks <= 1);
    assert_true(dt < 950); /* a spin would have taken 1000 ms */
    msgpipe_close(a);
    msgpipe_close(b);
}

/* Timeout 0 never spins: one look (POSIX: one read that says EAGAIN;
 * Windows: the one zero-timeout wait a receive makes), nothing that may
 * block. */
static void test_timeout_zero_does_not_spin(void **s)
{
    msgpipe *a = NULL, *b = NULL;
    char buf[16];
    size_t len = 0;
    (void)s;

    spin_pair(SPIN_LONG, &a, &b);
    h_watch(a, MSGPIPE_POLLIN);
    h_arm(ACT_NONE, 0, b);
    assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, 0), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, 0), MSGPIPE_ETIMEDOUT);
    h_on = 0;
    assert_int_equal(h_looks, 2);
    assert_int_equal(h_waits, 0);
    msgpipe_close(a);
    msgpipe_close(b);
}

/* The peer closes while the receive spins: ECLOSED, from the spin (no
 * call that may block came first).  (Fails without spin_us.) */
static void test_peer_closes_during_spin_eclosed(void **s)
{
    msgpipe *a = NULL, *b = NULL;
    char buf[16];
    size_t len = 0;
    (void)s;

    spin_pair(SPIN_LONG, &a, &b);
    h_watch(a, MSGPIPE_POLLIN);
    h_arm(ACT_CLOSE, 3, b);
    assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, SUP_T), MSGPIPE_ECLOSED);
    h_on = 0;
    assert_int_equal(h_done, 1);
    assert_int_equal(h_waits, 0);
    assert_null(h_peer);
    msgpipe_close(a);
}

/* A pipe in a poller whose last read came up short may answer a receive
 * with timeout 0 without a read (docs/decisions.md, "A drain in a poller
 * ends without a read").  A receive that spins always reads: a message
 * already there is taken by its first look, with no wait.  (Fails without
 * spin_us on POSIX, where the receive waits first after a short read;
 * Windows looks first anyway.) */
static void test_spin_in_poller_after_drain_reads_at_once(void **s)
{
    msgpipe_poller *pl = NULL;
    msgpipe_event ev[4];
    msgpipe *a = NULL, *b = NULL;
    char buf[16];
    size_t len = 0;
    (void)s;

    spin_pair(SPIN_LONG, &a, &b);
    assert_rc(msgpipe_poller_new(&pl), MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, a, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    assert_rc(msgpipe_send(b, "one", 3, SUP_T), MSGPIPE_OK);
    assert_true(msgpipe_poller_wait(pl, ev, 4, SUP_T) >= 1);
    assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, 0), MSGPIPE_OK);
    assert_int_equal(len, 3);
    assert_rc(msgpipe_send(b, "two", 3, SUP_T), MSGPIPE_OK);
    h_watch(a, MSGPIPE_POLLIN);
    h_arm(ACT_NONE, 0, b);
    assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    h_on = 0;
    assert_int_equal(len, 3);
    assert_memory_equal(buf, "two", 3);
    assert_int_equal(h_waits, 0);
    msgpipe_poller_close(pl);
    msgpipe_close(a);
    msgpipe_close(b);
}

/* ---- Sending ------------------------------------------------------------ */

/* Fill a's direction to b with messages of n bytes sent with timeout 0;
 * returns how many went. */
static long fill(msgpipe *a, const unsigned char *m, size_t n)
{
    long k = 0;

    while (msgpipe_send(a, m, n, 0) == MSGPIPE_OK)
        k++;
    return k;
}

#ifndef _WIN32
/* A send that waits for room spins: the room made at its third look is
 * taken with no call that may block before it, and the message arrives
 * after the ones that filled the pipe.  (Fails without spin_us.) */
static void test_send_waiting_for_room_spins(void **s)
{
    static unsigned char m[4096], in[4096];
    msgpipe *a = NULL, *b = NULL;
    size_t len = 0;
    long filled;
    (void)s;

    spin_pair(SPIN_LONG, &a, &b);
    memset(m, 'f', sizeof(m));
    filled = fill(a, m, sizeof(m));
    assert_true(filled > 0);
    h_watch(a, MSGPIPE_POLLOUT);
    h_arm(ACT_DRAIN, 3, b);
    m[0] = 'L';
    assert_rc(msgpipe_send(a, m, sizeof(m), SUP_T), MSGPIPE_OK);
    h_on = 0;
    assert_int_equal(h_done, 1);
    assert_int_equal(h_waits, 0);
    assert_true(h_drained > 0 && h_drained <= filled);
    /* What the drain left, then the last one. */
    for (; h_drained < filled; h_drained++) {
        assert_rc(msgpipe_recv(b, in, sizeof(in), &len, SUP_T), MSGPIPE_OK);
        assert_int_equal(in[0], 'f');
    }
    assert_rc(msgpipe_recv(b, in, sizeof(in), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, sizeof(in));
    assert_int_equal(in[0], 'L');
    msgpipe_close(a);
    msgpipe_close(b);
}
#endif

/* A send with timeout 0 on a full pipe does not spin: ETIMEDOUT after one
 * look (POSIX; on Windows the second send finds the first still in
 * flight). */
static void test_send_timeout_zero_on_full_pipe_does_not_spin(void **s)
{
    static unsigned char m[4096];
    msgpipe *a = NULL, *b = NULL;
    (void)s;

    spin_pair(SPIN_LONG, &a, &b);
    memset(m, 'f', sizeof(m));
    assert_true(fill(a, m, sizeof(m)) > 0);
    h_watch(a, MSGPIPE_POLLOUT);
    h_arm(ACT_NONE, 0, b);
    assert_rc(msgpipe_send(a, m, sizeof(m), 0), MSGPIPE_ETIMEDOUT);
    h_on = 0;
    assert_int_equal(h_waits, 0);
    assert_true(h_looks <= 1);
    msgpipe_close(a);
    msgpipe_close(b);
}

/* The peer that empties a full pipe in another thread, a little later. */
typedef struct drainer {
    msgpipe *p;
    long want; /* messages to take */
    long got;
    int rc;
} drainer;

static void *drain_main(void *arg)
{
    static unsigned char in[4096];
    drainer *d = (drainer *)arg;
    size_t len = 0;

    sup_sleep_ms(20);
    for (d->got = 0; d->got < d->want; d->got++) {
        d->rc = msgpipe_recv(d->p, in, sizeof(in), &len, SUP_T);
        if (d->rc != MSGPIPE_OK)
            break;
        if (d->got == d->want - 1 && in[0] != 'L')
            d->rc = MSGPIPE_EPROTO;
    }
    return NULL;
}

/* Fill a's direction to b, then send one more message (its first byte
 * 'L') without a timeout while b is emptied in another thread: the send
 * returns OK and every message arrives, the last one last. */
static void check_send_waiting_for_room_delivers(msgpipe *a, msgpipe *b)
{
    static unsigned char m[4096];
    sup_thread *t;
    drainer d;

    memset(m, 'f', sizeof(m));
    d.p = b;
    d.want = fill(a, m, sizeof(m)) + 1;
    d.rc = MSGPIPE_OK;
    t = sup_thread_start(drain_main, &d);
    m[0] = 'L';
    assert_rc(msgpipe_send(a, m, sizeof(m), MSGPIPE_INFINITE), MSGPIPE_OK);
    sup_thread_join(t);
    assert_rc(d.rc, MSGPIPE_OK);
    assert_int_equal(d.got, d.want);
}

/* A send that waits for room with a spin, in both backends: whether the
 * room comes during the spin (a long one) or after it (a short one), the
 * send returns OK and every message arrives, the last one last. */
static void test_send_waiting_for_room_with_spin_delivers(void **s)
{
    static const int64_t spins[] = {200, SPIN_LONG};
    msgpipe *a = NULL, *b = NULL;
    size_t k;
    (void)s;

    for (k = 0; k < 2; k++) {
        spin_pair(spins[k], &a, &b);
        check_send_waiting_for_room_delivers(a, b);
        msgpipe_close(a);
        msgpipe_close(b);
    }
}

/* ---- tcp:// ------------------------------------------------------------- */

/* A tcp:// pair on the loopback, both ends with spin_us: c connected, s
 * accepted; skips where this backend has no TCP. */
static msgpipe_server *spin_tcp_pair(int64_t spin_us, msgpipe **c, msgpipe **s)
{
    msgpipe_server *srv = NULL;
    msgpipe_options o;
    char name[96];
    size_t len;
    int rc;

    spin_opts(&o, spin_us);
    rc = msgpipe_listen("tcp://127.0.0.1:0", &o, &srv);
    if (rc == MSGPIPE_ENOTSUP)
        SUP_SKIP("no tcp:// on this backend");
    assert_rc(rc, MSGPIPE_OK);
    assert_rc(msgpipe_server_address(srv, name, sizeof(name), &len),
              MSGPIPE_OK);
    assert_rc(msgpipe_connect(name, &o, SUP_T_LONG, c), MSGPIPE_OK);
    assert_rc(msgpipe_accept(srv, SUP_T_LONG, s), MSGPIPE_OK);
    return srv;
}

/* tcp:// pipes spin too, both ends, with and without a timeout: the
 * message the third look sends is delivered.  (Windows: fails without the
 * spin of win32_tcp.c - a receive that does not spin makes no look, so
 * nothing is sent and it times out.) */
static void test_tcp_pipes_spin(void **s)
{
    msgpipe *c = NULL, *a = NULL;
    msgpipe_server *srv = spin_tcp_pair(SPIN_LONG, &c, &a);
    (void)s;

    check_delivered_by_spin(a, c, SUP_T);
    check_delivered_by_spin(c, a, SUP_T);
    check_delivered_by_spin(a, c, MSGPIPE_INFINITE);
    msgpipe_close(c);
    msgpipe_close(a);
    msgpipe_server_close(srv);
}

/* A tcp:// send that waits for room with a spin, short or long: it returns
 * OK and every message arrives, the last one last. */
static void test_tcp_send_waiting_for_room_with_spin_delivers(void **s)
{
    static const int64_t spins[] = {200, SPIN_LONG};
    msgpipe *c = NULL, *a = NULL;
    msgpipe_server *srv;
    size_t k;
    (void)s;

    for (k = 0; k < 2; k++) {
        srv = spin_tcp_pair(spins[k], &c, &a);
        check_send_waiting_for_room_delivers(c, a);
        msgpipe_close(c);
        msgpipe_close(a);
        msgpipe_server_close(srv);
    }
}

/* ---- A child process: msgpipe_spawn and msgpipe_from_parent ------------ */

/* The child (--child spin-peer): its end from msgpipe_from_parent with a
 * spin; a receive whose third look sends a message to the parent; what it
 * received then, the parent's answer, is answered with its own count of
 * looks ("looks N"). */
static int child_spin_peer(void)
{
    msgpipe_options o;
    msgpipe *c = NULL;
    char buf[64];
    size_t len = 0;
    int rc;

    spin_opts(&o, SPIN_LONG);
    if (msgpipe_from_parent(&o, &c) != MSGPIPE_OK)
        return 10;
    setup(NULL);
    h_watch(c, MSGPIPE_POLLIN);
    h_arm(ACT_SEND, 3, c);
    rc = msgpipe_recv(c, buf, sizeof(buf), &len, SUP_T);
    h_on = 0;
    if (rc != MSGPIPE_OK || h_done != 1)
        return 11;
    snprintf(buf, sizeof(buf), "looks %ld", h_looks);
    if (msgpipe_send(c, buf, strlen(buf), SUP_T) != MSGPIPE_OK)
        return 12;
    while (msgpipe_recv(c, buf, sizeof(buf), &len, SUP_T) == MSGPIPE_OK)
        ;
    msgpipe_close(c);
    return 0;
}

/* The pipes of msgpipe_spawn (pipe_options) and msgpipe_from_parent spin
 * with their options: each side's receive reaches a third look - which a
 * receive that does not spin never makes (it waits after its first) - and
 * there sends what the other side waits for, so nothing depends on how
 * fast the other process answers.  (Fails without spin_us.) */
static void test_spawned_pipes_spin(void **state)
{
    const char *argv[] = {NULL, "--child", "spin-peer", NULL};
    msgpipe_spawn_options so;
    msgpipe_options o;
    msgpipe_process *proc = NULL;
    msgpipe *p = NULL;
    char buf[64];
    size_t len = 0;
    long child_looks = 0;
    int code = -1;
    (void)state;

    argv[0] = sup_self_path();
    spin_opts(&o, SPIN_LONG);
    msgpipe_spawn_options_init(&so);
    so.pipe_options = &o;
    assert_rc(msgpipe_spawn(argv, &so, &p, &proc), MSGPIPE_OK);
    /* The child's third look sent this. */
    assert_rc(msgpipe_recv(p, buf, sizeof(buf), &len, SUP_T_LONG), MSGPIPE_OK);
    assert_int_equal(len, 4);
    h_watch(p, MSGPIPE_POLLIN);
    h_arm(ACT_SEND, 3, p); /* our third look answers the child */
    assert_rc(msgpipe_recv(p, buf, sizeof(buf) - 1, &len, SUP_T_LONG),
              MSGPIPE_OK);
    h_on = 0;
    assert_int_equal(h_done, 1);
    assert_true(h_looks >= 3);
    buf[len] = 0;
    assert_int_equal(sscanf(buf, "looks %ld", &child_looks), 1);
    assert_true(child_looks >= 3);
    msgpipe_close(p);
    assert_rc(msgpipe_process_wait(proc, SUP_T_LONG, &code), MSGPIPE_OK);
    assert_int_equal(code, 0);
    msgpipe_process_close(proc);
}

/* Every test runs with the wrapped system calls. */
#define T(applies, fn)                                                         \
    {                                                                          \
        (applies), cmocka_unit_test_setup_teardown(fn, setup, teardown)        \
    }

int main(int argc, char **argv)
{
    const sup_test tests[] = {
        T(1, test_spin_us_default_zero_and_range),
        T(1, test_options_without_spin_us_field_accepted_and_no_spin),
        T(1, test_message_during_spin_delivered_without_blocking),
        T(1, test_message_during_spin_no_timeout_delivered),
        T(1, test_connected_and_accepted_pipes_spin),
        T(1, test_message_after_spin_delivered_by_wait),
        T(1, test_timeout_shorter_than_spin_times_out_without_spin),
        T(1, test_timeout_zero_does_not_spin),
        T(1, test_peer_closes_during_spin_eclosed),
        T(1, test_spin_in_poller_after_drain_reads_at_once),
#ifndef _WIN32
        T(1, test_send_waiting_for_room_spins),
#endif
        T(SUP_POSIX, test_send_timeout_zero_on_full_pipe_does_not_spin),
        T(1, test_send_waiting_for_room_with_spin_delivers),
        T(1, test_tcp_pipes_spin),
        T(1, test_tcp_send_waiting_for_room_with_spin_delivers),
        T(1, test_spawned_pipes_spin),
    };

    sup_init(argc, argv);
    if (sup_child_mode(argc, argv)) {
        if (argc == 3 && strcmp(argv[2], "spin-peer") == 0)
            return child_spin_peer();
        return 100;
    }
    return sup_finish(SUP_RUN("spin", tests));
}
