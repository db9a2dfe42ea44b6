/*
 * test_poller.c - one loop, thousands of pipes: msgpipe_poller.
 *
 * The same tests run on every backend.  "Ready" means what the header
 * promises, exactly as for msgpipe_poll: a pipe reported readable delivers
 * with a receive of timeout 0, a server reported readable accepts with
 * timeout 0, and a report is level-triggered (what is not drained is
 * reported again).  Threads: changes made while another thread waits
 * apply to that wait at once; closing a registered pipe or server removes
 * it.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
/* After windows.h. */
#include <tlhelp32.h>
#else
#include <errno.h>
#include <unistd.h>
#endif

/* ---- Helpers ------------------------------------------------------------ */

static msgpipe_poller *pl_new(void)
{
    msgpipe_poller *pl = NULL;

    assert_rc(msgpipe_poller_new(&pl), MSGPIPE_OK);
    assert_non_null(pl);
    return pl;
}

static void pair_new(msgpipe **a, msgpipe **b)
{
    assert_rc(msgpipe_pair(NULL, a, b), MSGPIPE_OK);
}

/* The suite's valgrind run sets MSGPIPE_LOAD_MESSAGES: smaller counts. */
static int slow_run(void)
{
    return getenv("MSGPIPE_LOAD_MESSAGES") != NULL;
}

/* Wait once, and check that exactly one event came, for p. */
static void expect_one(msgpipe_poller *pl, msgpipe *p, unsigned events,
                       void *user, int timeout_ms)
{
    msgpipe_event ev[4];

    memset(ev, 0, sizeof(ev));
    assert_rc(msgpipe_poller_wait(pl, ev, 4, timeout_ms), 1);
    assert_ptr_equal(ev[0].pipe, p);
    assert_null(ev[0].server);
    assert_int_equal(ev[0].events, events);
    assert_ptr_equal(ev[0].user, user);
}

typedef struct {
    msgpipe *p;
    int delay_ms;
    size_t len;
    uint32_t seed;
    int rc;
} delayed_send;

static void *delayed_send_main(void *arg)
{
    delayed_send *d = (delayed_send *)arg;
    unsigned char *m = (unsigned char *)malloc(d->len ? d->len : 1);

    sup_fill(m, d->len, d->seed);
    sup_sleep_ms(d->delay_ms);
    d->rc = msgpipe_send(d->p, m, d->len, SUP_T_LONG);
    free(m);
    return NULL;
}

/* A thread doing one wait. */
typedef struct {
    msgpipe_poller *pl;
    msgpipe_event ev[16];
    int timeout_ms;
    int rc;
    int64_t ms; /* how long the wait took */
} waiter;

static void *waiter_main(void *arg)
{
    waiter *w = (waiter *)arg;
    int64_t t0 = sup_now_ms();

    w->rc = msgpipe_poller_wait(w->pl, w->ev, 16, w->timeout_ms);
    w->ms = sup_now_ms() - t0;
    return NULL;
}

static sup_thread *waiter_start(waiter *w, msgpipe_poller *pl, int timeout_ms)
{
    memset(w, 0, sizeof(*w));
    w->pl = pl;
    w->timeout_ms = timeout_ms;
    w->rc = -1000;
    return sup_thread_start(waiter_main, w);
}

/* Leave msgpipe a whole message in its own buffer and none in the system:
 * two small messages arrive, the first receive takes both from the system
 * and returns one. */
static void hold_one_message(msgpipe *from, msgpipe *to)
{
    char buf[16];
    size_t len = 0;

    assert_rc(msgpipe_send(from, "one", 3, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_send(from, "two", 3, SUP_T), MSGPIPE_OK);
    sup_sleep_ms(20); /* both in the system before the receive */
    assert_rc(msgpipe_recv(to, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 3);
    assert_memory_equal(buf, "one", 3);
}

/* ---- Arguments ---------------------------------------------------------- */

static void test_poller_new_rejects_null(void **state)
{
    (void)state;
    assert_rc(msgpipe_poller_new(NULL), MSGPIPE_EINVAL);
}

static void test_poller_add_rejects_invalid_arguments(void **state)
{
    sup_pair pr;
    msgpipe_poller *pl = pl_new();
    msgpipe_event ev[1];
    (void)state;

    sup_pair_open(&pr, "poller", NULL, NULL);
    assert_rc(msgpipe_poller_add(NULL, pr.c, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_EINVAL);
    assert_rc(msgpipe_poller_add(pl, NULL, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_EINVAL);
    assert_rc(msgpipe_poller_add(pl, pr.c, pr.srv, MSGPIPE_POLLIN, NULL),
              MSGPIPE_EINVAL);
    assert_rc(msgpipe_poller_add(pl, pr.c, NULL, 0x4u, NULL), MSGPIPE_EINVAL);
    assert_rc(msgpipe_poller_add(pl, pr.c, NULL, MSGPIPE_POLLIN | 0x100u, NULL),
              MSGPIPE_EINVAL);
    assert_rc(msgpipe_poller_add(pl, NULL, pr.srv, MSGPIPE_POLLOUT, NULL),
              MSGPIPE_EINVAL);
    assert_rc(msgpipe_poller_add(pl, NULL, pr.srv,
                                 MSGPIPE_POLLIN | MSGPIPE_POLLOUT, NULL),
              MSGPIPE_EINVAL);
    /* Nothing was added by the failed calls: the pipe is free to add. */
    assert_rc(msgpipe_poller_add(pl, pr.c, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, NULL, pr.srv, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    assert_rc(msgpipe_poller_wait(pl, ev, 1, 0), MSGPIPE_ETIMEDOUT);
    msgpipe_poller_close(pl);
    sup_pair_close(&pr);
}

static void test_poller_modify_and_remove_reject_invalid_arguments(void **state)
{
    sup_pair pr;
    msgpipe_poller *pl = pl_new();
    (void)state;

    sup_pair_open(&pr, "poller", NULL, NULL);
    assert_rc(msgpipe_poller_add(pl, pr.c, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, NULL, pr.srv, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    assert_rc(msgpipe_poller_modify(NULL, pr.c, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_EINVAL);
    assert_rc(msgpipe_poller_modify(pl, NULL, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_EINVAL);
    assert_rc(msgpipe_poller_modify(pl, pr.c, pr.srv, MSGPIPE_POLLIN, NULL),
              MSGPIPE_EINVAL);
    assert_rc(msgpipe_poller_modify(pl, pr.c, NULL, 0x8u, NULL),
              MSGPIPE_EINVAL);
    assert_rc(msgpipe_poller_modify(pl, NULL, pr.srv, MSGPIPE_POLLOUT, NULL),
              MSGPIPE_EINVAL);
    assert_rc(msgpipe_poller_remove(NULL, pr.c, NULL), MSGPIPE_EINVAL);
    assert_rc(msgpipe_poller_remove(pl, NULL, NULL), MSGPIPE_EINVAL);
    assert_rc(msgpipe_poller_remove(pl, pr.c, pr.srv), MSGPIPE_EINVAL);
    /* Still registered: */
    assert_rc(msgpipe_poller_remove(pl, pr.c, NULL), MSGPIPE_OK);
    assert_rc(msgpipe_poller_remove(pl, NULL, pr.srv), MSGPIPE_OK);
    msgpipe_poller_close(pl);
    sup_pair_close(&pr);
}

static void test_poller_add_twice_is_busy(void **state)
{
    sup_pair pr;
    msgpipe_poller *pl = pl_new(), *other = pl_new();
    (void)state;

    sup_pair_open(&pr, "poller", NULL, NULL);
    assert_rc(msgpipe_poller_add(pl, pr.c, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, pr.c, NULL, MSGPIPE_POLLOUT, NULL),
              MSGPIPE_EBUSY);
    assert_rc(msgpipe_poller_add(other, pr.c, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_EBUSY);
    assert_rc(msgpipe_poller_add(pl, NULL, pr.srv, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, NULL, pr.srv, MSGPIPE_POLLIN, NULL),
              MSGPIPE_EBUSY);
    assert_rc(msgpipe_poller_add(other, NULL, pr.srv, MSGPIPE_POLLIN, NULL),
              MSGPIPE_EBUSY);
    /* Once removed, the other poller may have them. */
    assert_rc(msgpipe_poller_remove(pl, pr.c, NULL), MSGPIPE_OK);
    assert_rc(msgpipe_poller_remove(pl, NULL, pr.srv), MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(other, pr.c, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(other, NULL, pr.srv, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    msgpipe_poller_close(pl);
    msgpipe_poller_close(other);
    sup_pair_close(&pr);
}

static void test_poller_modify_or_remove_of_unregistered_is_enoent(void **state)
{
    sup_pair pr;
    msgpipe_poller *pl = pl_new(), *other = pl_new();
    (void)state;

    sup_pair_open(&pr, "poller", NULL, NULL);
    assert_rc(msgpipe_poller_modify(pl, pr.c, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_ENOENT);
    assert_rc(msgpipe_poller_remove(pl, pr.c, NULL), MSGPIPE_ENOENT);
    assert_rc(msgpipe_poller_modify(pl, NULL, pr.srv, MSGPIPE_POLLIN, NULL),
              MSGPIPE_ENOENT);
    assert_rc(msgpipe_poller_remove(pl, NULL, pr.srv), MSGPIPE_ENOENT);
    /* In another poller: not in this one. */
    assert_rc(msgpipe_poller_add(other, pr.c, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(other, NULL, pr.srv, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    assert_rc(msgpipe_poller_modify(pl, pr.c, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_ENOENT);
    assert_rc(msgpipe_poller_remove(pl, pr.c, NULL), MSGPIPE_ENOENT);
    assert_rc(msgpipe_poller_remove(pl, NULL, pr.srv), MSGPIPE_ENOENT);
    /* Removed: gone. */
    assert_rc(msgpipe_poller_remove(other, pr.c, NULL), MSGPIPE_OK);
    assert_rc(msgpipe_poller_remove(other, pr.c, NULL), MSGPIPE_ENOENT);
    assert_rc(msgpipe_poller_modify(other, pr.c, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_ENOENT);
    msgpipe_poller_close(pl);
    msgpipe_poller_close(other);
    sup_pair_close(&pr);
}

static void test_poller_wait_rejects_invalid_arguments(void **state)
{
    msgpipe_poller *pl = pl_new();
    msgpipe_event ev[2];
    (void)state;

    assert_rc(msgpipe_poller_wait(NULL, ev, 2, 0), MSGPIPE_EINVAL);
    assert_rc(msgpipe_poller_wait(pl, NULL, 2, 0), MSGPIPE_EINVAL);
    assert_rc(msgpipe_poller_wait(pl, ev, 0, 0), MSGPIPE_EINVAL);
    assert_rc(msgpipe_poller_wait(pl, ev, 0, -1), MSGPIPE_EINVAL);
    assert_rc(msgpipe_poller_wait(pl, ev, 2, -2), MSGPIPE_EINVAL);
    assert_rc(msgpipe_poller_wait(pl, ev, 2, 0), MSGPIPE_ETIMEDOUT);
    msgpipe_poller_close(pl);
}

static void test_poller_wake_and_close_ignore_null(void **state)
{
    (void)state;
    msgpipe_poller_wake(NULL);
    msgpipe_poller_close(NULL);
}

static void test_empty_poller_wait_times_out(void **state)
{
    msgpipe_poller *pl = pl_new();
    msgpipe_event ev[2];
    int64_t t0, ms;
    (void)state;

    assert_rc(msgpipe_poller_wait(pl, ev, 2, 0), MSGPIPE_ETIMEDOUT);
    t0 = sup_now_ms();
    assert_rc(msgpipe_poller_wait(pl, ev, 2, 200), MSGPIPE_ETIMEDOUT);
    ms = sup_now_ms() - t0;
    assert_true(ms >= 180);
    msgpipe_poller_close(pl);
}

/* ---- Readiness, exactly as msgpipe_poll -------------------------------- */

static void
test_poller_reports_a_message_and_delivers_with_timeout_0(void **state)
{
    msgpipe *a, *b;
    msgpipe_poller *pl = pl_new();
    msgpipe_event ev[2];
    char buf[16];
    size_t len = 0;
    int x;
    (void)state;

    pair_new(&a, &b);
    assert_rc(msgpipe_poller_add(pl, b, NULL, MSGPIPE_POLLIN, &x), MSGPIPE_OK);
    assert_rc(msgpipe_poller_wait(pl, ev, 2, 0), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_send(a, "hello", 5, SUP_T), MSGPIPE_OK);
    expect_one(pl, b, MSGPIPE_POLLIN, &x, SUP_T);
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, 0), MSGPIPE_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "hello", 5);
    assert_rc(msgpipe_poller_wait(pl, ev, 2, 0), MSGPIPE_ETIMEDOUT);
    msgpipe_poller_close(pl);
    msgpipe_close(a);
    msgpipe_close(b);
}

/* Several messages arrive together; msgpipe may take them all from the
 * system at the first receive.  Each is still reported, until the last
 * one is received. */
static void test_poller_reports_buffered_messages_until_drained(void **state)
{
    msgpipe *a, *b;
    msgpipe_poller *pl = pl_new();
    msgpipe_event ev[2];
    unsigned char buf[128];
    size_t len = 0;
    uint32_t i;
    (void)state;

    pair_new(&a, &b);
    for (i = 0; i < 5; i++) {
        sup_fill(buf, 100, i);
        assert_rc(msgpipe_send(a, buf, 100, SUP_T), MSGPIPE_OK);
    }
    assert_rc(msgpipe_poller_add(pl, b, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    for (i = 0; i < 5; i++) {
        expect_one(pl, b, MSGPIPE_POLLIN, NULL, i == 0 ? SUP_T : 0);
        assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, 0), MSGPIPE_OK);
        assert_int_equal(len, 100);
        assert_pattern(buf, 100, i);
    }
    assert_rc(msgpipe_poller_wait(pl, ev, 2, 0), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, 0), MSGPIPE_ETIMEDOUT);
    msgpipe_poller_close(pl);
    msgpipe_close(a);
    msgpipe_close(b);
}

/* A message that msgpipe holds in its own buffer (none left in the
 * system) is reported at once, also when the pipe is added after the
 * receive that buffered it. */
static void test_poller_reports_a_message_msgpipe_already_holds(void **state)
{
    msgpipe *a, *b;
    msgpipe_poller *pl = pl_new();
    char buf[16];
    size_t len = 0;
    (void)state;

    pair_new(&a, &b);
    hold_one_message(a, b);
    assert_rc(msgpipe_poller_add(pl, b, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    expect_one(pl, b, MSGPIPE_POLLIN, NULL, 0);
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, 0), MSGPIPE_OK);
    assert_memory_equal(buf, "two", 3);
    /* And a receive between waits that leaves one held: reported. */
    hold_one_message(a, b);
    expect_one(pl, b, MSGPIPE_POLLIN, NULL, 0);
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, 0), MSGPIPE_OK);
    assert_memory_equal(buf, "two", 3);
    msgpipe_poller_close(pl);
    msgpipe_close(a);
    msgpipe_close(b);
}

/* A large message arrives in pieces; the pipe is reported readable only
 * when a receive with timeout 0 gets it whole. */
static void test_poller_reports_large_message_only_when_whole(void **state)
{
    enum { BIG = 4 << 20 };
    msgpipe *a, *b;
    msgpipe_poller *pl = pl_new();
    delayed_send d;
    sup_thread *t;
    unsigned char *buf = (unsigned char *)malloc(BIG);
    size_t len = 0;
    (void)state;

    assert_non_null(buf);
    pair_new(&a, &b);
    assert_rc(msgpipe_poller_add(pl, b, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    d.p = a;
    d.delay_ms = 0;
    d.len = BIG;
    d.seed = 99;
    t = sup_thread_start(delayed_send_main, &d);
    expect_one(pl, b, MSGPIPE_POLLIN, NULL, SUP_T_LONG);
    assert_rc(msgpipe_recv(b, buf, BIG, &len, 0), MSGPIPE_OK);
    assert_int_equal(len, BIG);
    assert_pattern(buf, BIG, 99);
    sup_thread_join(t);
    assert_rc(d.rc, MSGPIPE_OK);
    msgpipe_poller_close(pl);
    msgpipe_close(a);
    msgpipe_close(b);
    free(buf);
}

#ifndef _WIN32
static void raw_write(int fd, const void *buf, size_t n)
{
    const unsigned char *p = (const unsigned char *)buf;

    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        assert_true(w > 0);
        p += w;
        n -= (size_t)w;
    }
}
#endif

/* Half a frame in the system (its header and part of its body, written
 * straight into the pipe's descriptor): not reported until the rest
 * comes.  POSIX: the framing is a 4-byte big-endian length. */
static void test_poller_does_not_report_half_a_message(void **state)
{
#ifndef _WIN32
    msgpipe *a, *b;
    msgpipe_poller *pl = pl_new();
    msgpipe_event ev[2];
    msgpipe_native wfd;
    unsigned char frame[4 + 100], buf[128];
    size_t len = 0;
    (void)state;

    pair_new(&a, &b);
    assert_rc(msgpipe_native_handle(a, MSGPIPE_POLLOUT, &wfd), MSGPIPE_OK);
    frame[0] = frame[1] = frame[2] = 0;
    frame[3] = 100;
    sup_fill(frame + 4, 100, 7);
    assert_rc(msgpipe_poller_add(pl, b, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    raw_write(wfd, frame, 2); /* half a header */
    assert_rc(msgpipe_poller_wait(pl, ev, 2, 150), MSGPIPE_ETIMEDOUT);
    raw_write(wfd, frame + 2, 2 + 60); /* the header, part of the body */
    assert_rc(msgpipe_poller_wait(pl, ev, 2, 150), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, 0), MSGPIPE_ETIMEDOUT);
    raw_write(wfd, frame + 64, 40);
    expect_one(pl, b, MSGPIPE_POLLIN, NULL, SUP_T);
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, 0), MSGPIPE_OK);
    assert_int_equal(len, 100);
    assert_pattern(buf, 100, 7);
    assert_rc(msgpipe_poller_wait(pl, ev, 2, 0), MSGPIPE_ETIMEDOUT);
    msgpipe_poller_close(pl);
    msgpipe_close(a);
    msgpipe_close(b);
#else
    (void)state;
#endif
}

static void test_poller_reports_end_of_pipe_as_readable(void **state)
{
    msgpipe *a, *b;
    msgpipe_poller *pl = pl_new();
    char buf[16];
    size_t len = 0;
    (void)state;

    pair_new(&a, &b);
    assert_rc(msgpipe_poller_add(pl, b, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    assert_rc(msgpipe_send(a, "last", 4, SUP_T), MSGPIPE_OK);
    msgpipe_close(a);
    /* The message first, then the end, each reported. */
    expect_one(pl, b, MSGPIPE_POLLIN, NULL, SUP_T);
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, 0), MSGPIPE_OK);
    assert_memory_equal(buf, "last", 4);
    expect_one(pl, b, MSGPIPE_POLLIN, NULL, SUP_T);
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, 0), MSGPIPE_ECLOSED);
    /* Level-triggered: the end stays readable. */
    expect_one(pl, b, MSGPIPE_POLLIN, NULL, 0);
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, 0), MSGPIPE_ECLOSED);
    msgpipe_poller_close(pl);
    msgpipe_close(b);
}

static void test_poller_reports_oversized_message_then_the_next(void **state)
{
    sup_pair pr;
    msgpipe_options copt;
    msgpipe_poller *pl = pl_new();
    unsigned char big[1000], buf[100];
    size_t len = 0;
    (void)state;

    msgpipe_options_init(&copt);
    copt.max_message = 100;
    sup_pair_open(&pr, "poller", NULL, &copt);
    memset(big, 'z', sizeof(big));
    assert_rc(msgpipe_send(pr.s, big, sizeof(big), SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_send(pr.s, "after", 5, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, pr.c, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    expect_one(pl, pr.c, MSGPIPE_POLLIN, NULL, SUP_T);
    assert_rc(msgpipe_recv(pr.c, buf, sizeof(buf), &len, 0), MSGPIPE_EMSGSIZE);
    assert_int_equal(len, sizeof(big));
    expect_one(pl, pr.c, MSGPIPE_POLLIN, NULL, SUP_T);
    assert_rc(msgpipe_recv(pr.c, buf, sizeof(buf), &len, 0), MSGPIPE_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "after", 5);
    msgpipe_poller_close(pl);
    sup_pair_close(&pr);
}

/* ---- Servers ------------------------------------------------------------ */

static void test_poller_server_reports_waiting_client(void **state)
{
    msgpipe_server *srv = NULL;
    msgpipe *c = NULL, *a = NULL, *b = NULL;
    msgpipe_poller *pl = pl_new();
    msgpipe_event ev[2];
    char name[96];
    int x;
    (void)state;

    sup_name(name, sizeof(name), "poller");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, NULL, srv, MSGPIPE_POLLIN, &x),
              MSGPIPE_OK);
    assert_rc(msgpipe_poller_wait(pl, ev, 2, 0), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_connect(name, NULL, SUP_T, &c), MSGPIPE_OK);
    memset(ev, 0, sizeof(ev));
    assert_rc(msgpipe_poller_wait(pl, ev, 2, SUP_T), 1);
    assert_null(ev[0].pipe);
    assert_ptr_equal(ev[0].server, srv);
    assert_int_equal(ev[0].events, MSGPIPE_POLLIN);
    assert_ptr_equal(ev[0].user, &x);
    assert_rc(msgpipe_accept(srv, 0, &a), MSGPIPE_OK);
    assert_rc(msgpipe_poller_wait(pl, ev, 2, 0), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_accept(srv, 0, &b), MSGPIPE_ETIMEDOUT);
    assert_null(b);
    /* The accepted pipe works. */
    assert_rc(msgpipe_send(c, "hi", 2, SUP_T), MSGPIPE_OK);
    {
        char buf[8];
        size_t len = 0;
        assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
        assert_int_equal(len, 2);
    }
    msgpipe_poller_close(pl);
    msgpipe_close(a);
    msgpipe_close(c);
    msgpipe_server_close(srv);
}

static void test_poller_server_reports_shutdown(void **state)
{
    msgpipe_server *srv = NULL;
    msgpipe *a = NULL;
    msgpipe_poller *pl = pl_new();
    msgpipe_event ev[2];
    char name[96];
    waiter w;
    sup_thread *t;
    (void)state;

    sup_name(name, sizeof(name), "poller");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, NULL, srv, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    /* Shut down while a wait runs: that wait reports it. */
    t = waiter_start(&w, pl, SUP_T_LONG);
    sup_sleep_ms(100);
    msgpipe_server_shutdown(srv);
    sup_thread_join(t);
    assert_rc(w.rc, 1);
    assert_ptr_equal(w.ev[0].server, srv);
    assert_int_equal(w.ev[0].events, MSGPIPE_POLLIN);
    assert_true(w.ms < SUP_T);
    assert_rc(msgpipe_accept(srv, 0, &a), MSGPIPE_ESHUTDOWN);
    /* And every wait after. */
    assert_rc(msgpipe_poller_wait(pl, ev, 2, 0), 1);
    assert_ptr_equal(ev[0].server, srv);
    msgpipe_poller_close(pl);
    msgpipe_server_close(srv);
}

/* ---- Writability -------------------------------------------------------- */

typedef struct {
    msgpipe *p;
    long count;
    int rc;
} drainer;

static void *drain_main(void *arg)
{
    drainer *d = (drainer *)arg;
    void *m;
    size_t len;

    while ((d->rc = msgpipe_recv_alloc(d->p, &m, &len, SUP_T)) == MSGPIPE_OK) {
        msgpipe_free(m);
        d->count++;
    }
    return NULL;
}

static void test_poller_out_follows_room_in_the_pipe(void **state)
{
    enum { MSG = 16384, MAX_SENDS = 100000 };
    msgpipe *a, *b;
    msgpipe_poller *pl = pl_new();
    msgpipe_event ev[2];
    unsigned char *m = (unsigned char *)calloc(1, MSG);
    drainer d;
    sup_thread *t;
    long sent = 0;
    int rc = MSGPIPE_OK;
    (void)state;

    assert_non_null(m);
    pair_new(&a, &b);
    assert_rc(msgpipe_poller_add(pl, a, NULL, MSGPIPE_POLLOUT, NULL),
              MSGPIPE_OK);
    expect_one(pl, a, MSGPIPE_POLLOUT, NULL, SUP_T);
    /* Fill the pipe: the peer does not read. */
    while (sent < MAX_SENDS) {
        rc = msgpipe_send(a, m, MSG, 0);
        if (rc != MSGPIPE_OK)
            break;
        sent++;
    }
    assert_rc(rc, MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_poller_wait(pl, ev, 2, 0), MSGPIPE_ETIMEDOUT);
    /* A reader makes room: writable again. */
    d.p = b;
    d.count = 0;
    d.rc = MSGPIPE_OK;
    t = sup_thread_start(drain_main, &d);
    expect_one(pl, a, MSGPIPE_POLLOUT, NULL, SUP_T);
    assert_rc(msgpipe_send(a, m, 16, 0), MSGPIPE_OK);
    msgpipe_poller_close(pl);
    msgpipe_close(a);
    sup_thread_join(t);
    assert_rc(d.rc, MSGPIPE_ECLOSED);
    assert_int_equal(d.count, sent + 1);
    msgpipe_close(b);
    free(m);
}

static void test_poller_out_reports_dead_peer(void **state)
{
    msgpipe *a, *b;
    msgpipe_poller *pl = pl_new();
    (void)state;

    pair_new(&a, &b);
    msgpipe_close(b);
    assert_rc(msgpipe_poller_add(pl, a, NULL, MSGPIPE_POLLOUT, NULL),
              MSGPIPE_OK);
    expect_one(pl, a, MSGPIPE_POLLOUT, NULL, SUP_T);
    assert_rc(msgpipe_send(a, "x", 1, 0), MSGPIPE_ECLOSED);
    msgpipe_poller_close(pl);
    msgpipe_close(a);
}

/* ---- Events and user pointers ------------------------------------------- */

static void test_poller_events_zero_is_not_reported(void **state)
{
    msgpipe *a, *b;
    msgpipe_server *srv;
    msgpipe *c = NULL;
    msgpipe_poller *pl = pl_new();
    msgpipe_event ev[4];
    char name[96];
    (void)state;

    pair_new(&a, &b);
    sup_name(name, sizeof(name), "poller");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_connect(name, NULL, SUP_T, &c), MSGPIPE_OK);
    assert_rc(msgpipe_send(a, "m", 1, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, b, NULL, 0, NULL), MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, NULL, srv, 0, NULL), MSGPIPE_OK);
    /* Ready for everything, watched for nothing. */
    assert_rc(msgpipe_poller_wait(pl, ev, 4, 200), MSGPIPE_ETIMEDOUT);
    /* Still registered: */
    assert_rc(msgpipe_poller_add(pl, b, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_EBUSY);
    assert_rc(msgpipe_poller_modify(pl, b, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    expect_one(pl, b, MSGPIPE_POLLIN, NULL, SUP_T);
    /* Back to 0: not reported although still ready. */
    assert_rc(msgpipe_poller_modify(pl, b, NULL, 0, NULL), MSGPIPE_OK);
    assert_rc(msgpipe_poller_wait(pl, ev, 4, 100), MSGPIPE_ETIMEDOUT);
    msgpipe_poller_close(pl);
    msgpipe_close(c);
    msgpipe_server_close(srv);
    msgpipe_close(a);
    msgpipe_close(b);
}

static void test_poller_returns_user_pointers(void **state)
{
    enum { N = 8 };
    msgpipe *a[N], *b[N];
    int tag[N], seen[N];
    msgpipe_poller *pl = pl_new();
    msgpipe_event ev[N + 1];
    int i, k, rc;
    (void)state;

    for (i = 0; i < N; i++) {
        pair_new(&a[i], &b[i]);
        assert_rc(msgpipe_poller_add(pl, b[i], NULL, MSGPIPE_POLLIN, &tag[i]),
                  MSGPIPE_OK);
        assert_rc(msgpipe_send(a[i], "u", 1, SUP_T), MSGPIPE_OK);
        seen[i] = 0;
    }
    {
        int64_t until = sup_now_ms() + SUP_T;
        int got = 0;
        while (got < N && sup_now_ms() < until) {
            rc = msgpipe_poller_wait(pl, ev, N + 1, SUP_T);
            assert_true(rc > 0);
            for (k = 0; k < rc; k++) {
                char buf[4];
                size_t len;
                int idx = (int)((int *)ev[k].user - tag);
                assert_true(idx >= 0 && idx < N);
                assert_ptr_equal(ev[k].pipe, b[idx]);
                assert_int_equal(ev[k].events, MSGPIPE_POLLIN);
                assert_int_equal(seen[idx], 0);
                seen[idx] = 1;
                got++;
                assert_rc(msgpipe_recv(b[idx], buf, sizeof(buf), &len, 0),
                          MSGPIPE_OK);
            }
        }
        assert_int_equal(got, N);
    }
    msgpipe_poller_close(pl);
    for (i = 0; i < N; i++) {
        msgpipe_close(a[i]);
        msgpipe_close(b[i]);
    }
}

static void test_poller_modify_changes_events_and_user(void **state)
{
    msgpipe *a, *b;
    msgpipe_poller *pl = pl_new();
    int x, y, z;
    char buf[8];
    size_t len;
    (void)state;

    pair_new(&a, &b);
    assert_rc(msgpipe_poller_add(pl, b, NULL, MSGPIPE_POLLIN, &x), MSGPIPE_OK);
    assert_rc(msgpipe_send(a, "m", 1, SUP_T), MSGPIPE_OK);
    expect_one(pl, b, MSGPIPE_POLLIN, &x, SUP_T);
    /* Both ways: readable and writable, new pointer. */
    assert_rc(msgpipe_poller_modify(pl, b, NULL,
                                    MSGPIPE_POLLIN | MSGPIPE_POLLOUT, &y),
              MSGPIPE_OK);
    expect_one(pl, b, MSGPIPE_POLLIN | MSGPIPE_POLLOUT, &y, SUP_T);
    /* Only writable now, although a message waits. */
    assert_rc(msgpipe_poller_modify(pl, b, NULL, MSGPIPE_POLLOUT, &z),
              MSGPIPE_OK);
    expect_one(pl, b, MSGPIPE_POLLOUT, &z, SUP_T);
    /* Only readable again. */
    assert_rc(msgpipe_poller_modify(pl, b, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    expect_one(pl, b, MSGPIPE_POLLIN, NULL, SUP_T);
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, 0), MSGPIPE_OK);
    {
        msgpipe_event ev[2];
        assert_rc(msgpipe_poller_wait(pl, ev, 2, 0), MSGPIPE_ETIMEDOUT);
    }
    msgpipe_poller_close(pl);
    msgpipe_close(a);
    msgpipe_close(b);
}

/* ---- More ready than cap ------------------------------------------------ */

/* Ten pipes ready, room for three per wait, nothing received: the waits
 * that follow report the rest (nothing is starved by the ones reported
 * first). */
static void test_poller_reports_beyond_cap_in_the_next_waits(void **state)
{
    enum { N = 10, CAP = 3 };
    msgpipe *a[N], *b[N];
    int seen[N];
    msgpipe_poller *pl = pl_new();
    msgpipe_event ev[CAP];
    int i, k, w, rc, distinct = 0;
    (void)state;

    for (i = 0; i < N; i++) {
        pair_new(&a[i], &b[i]);
        assert_rc(msgpipe_send(a[i], "r", 1, SUP_T), MSGPIPE_OK);
        seen[i] = 0;
    }
    sup_sleep_ms(20);
    for (i = 0; i < N; i++)
        assert_rc(msgpipe_poller_add(pl, b[i], NULL, MSGPIPE_POLLIN, &seen[i]),
                  MSGPIPE_OK);
    for (w = 0; w < (N + CAP - 1) / CAP; w++) {
        rc = msgpipe_poller_wait(pl, ev, CAP, SUP_T);
        assert_int_equal(rc, CAP);
        for (k = 0; k < rc; k++) {
            int idx = (int)((int *)ev[k].user - seen);
            assert_true(idx >= 0 && idx < N);
            assert_ptr_equal(ev[k].pipe, b[idx]);
            if (seen[idx]++ == 0)
                distinct++;
        }
    }
    msgpipe_poller_close(pl);
    for (i = 0; i < N; i++) {
        msgpipe_close(a[i]);
        msgpipe_close(b[i]);
    }
    if (distinct != N) {
        print_error("%d waits of %d reported only %d of %d ready pipes\n",
                    (N + CAP - 1) / CAP, CAP, distinct, N);
        fail();
    }
}

/* The same, receiving what is reported: every message comes out. */
static void test_poller_cap_of_one_loses_nothing(void **state)
{
    enum { N = 10 };
    msgpipe *a[N], *b[N];
    int got[N];
    msgpipe_poller *pl = pl_new();
    msgpipe_event ev[1];
    int i, total = 0;
    (void)state;

    for (i = 0; i < N; i++) {
        pair_new(&a[i], &b[i]);
        assert_rc(msgpipe_poller_add(pl, b[i], NULL, MSGPIPE_POLLIN, &got[i]),
                  MSGPIPE_OK);
        assert_rc(msgpipe_send(a[i], "1", 1, SUP_T), MSGPIPE_OK);
        assert_rc(msgpipe_send(a[i], "2", 1, SUP_T), MSGPIPE_OK);
        got[i] = 0;
    }
    while (total < 2 * N) {
        char buf[4];
        size_t len;
        int idx;
        assert_rc(msgpipe_poller_wait(pl, ev, 1, SUP_T), 1);
        idx = (int)((int *)ev[0].user - got);
        assert_true(idx >= 0 && idx < N);
        /* One message per report: the rest is reported again. */
        assert_rc(msgpipe_recv(b[idx], buf, sizeof(buf), &len, 0), MSGPIPE_OK);
        assert_int_equal(buf[0], got[idx] == 0 ? '1' : '2');
        got[idx]++;
        total++;
    }
    {
        msgpipe_event e2[2];
        assert_rc(msgpipe_poller_wait(pl, e2, 2, 0), MSGPIPE_ETIMEDOUT);
    }
    msgpipe_poller_close(pl);
    for (i = 0; i < N; i++) {
        assert_int_equal(got[i], 2);
        msgpipe_close(a[i]);
        msgpipe_close(b[i]);
    }
}

/* ---- Wake --------------------------------------------------------------- */

static void test_poller_wake_from_another_thread_returns_0(void **state)
{
    msgpipe *a, *b;
    msgpipe_poller *pl = pl_new();
    msgpipe_event ev[2];
    waiter w;
    sup_thread *t;
    (void)state;

    pair_new(&a, &b);
    assert_rc(msgpipe_poller_add(pl, b, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    t = waiter_start(&w, pl, MSGPIPE_INFINITE);
    sup_sleep_ms(100);
    msgpipe_poller_wake(pl);
    assert_int_equal(sup_thread_join_timeout(t, SUP_T, NULL), 0);
    assert_rc(w.rc, 0);
    /* One wake, one return. */
    assert_rc(msgpipe_poller_wait(pl, ev, 2, 0), MSGPIPE_ETIMEDOUT);
    msgpipe_poller_close(pl);
    msgpipe_close(a);
    msgpipe_close(b);
}

static void test_poller_wake_before_wait_ends_the_next_wait(void **state)
{
    msgpipe_poller *pl = pl_new();
    msgpipe_event ev[2];
    int64_t t0;
    (void)state;

    msgpipe_poller_wake(pl);
    t0 = sup_now_ms();
    assert_rc(msgpipe_poller_wait(pl, ev, 2, SUP_T_LONG), 0);
    assert_true(sup_now_ms() - t0 < SUP_T);
    /* That wake is used up. */
    assert_rc(msgpipe_poller_wait(pl, ev, 2, 100), MSGPIPE_ETIMEDOUT);
    msgpipe_poller_close(pl);
}

/* ---- Changes while another thread waits --------------------------------- */

/* A pipe added while a wait runs, with a message msgpipe holds already
 * (nothing in the system to wake the wait): that wait reports it at once,
 * long before its timeout. */
static void test_poller_add_from_another_thread_reaches_the_wait(void **state)
{
    msgpipe *a, *b, *c, *d;
    msgpipe_poller *pl = pl_new();
    waiter w;
    sup_thread *t;
    int x;
    (void)state;

    pair_new(&a, &b);
    pair_new(&c, &d); /* idle, so that the set is not empty */
    assert_rc(msgpipe_poller_add(pl, d, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    hold_one_message(a, b);
    t = waiter_start(&w, pl, SUP_T_LONG);
    sup_sleep_ms(100);
    assert_rc(msgpipe_poller_add(pl, b, NULL, MSGPIPE_POLLIN, &x), MSGPIPE_OK);
    assert_int_equal(sup_thread_join_timeout(t, SUP_T_LONG + SUP_T, NULL), 0);
    assert_rc(w.rc, 1);
    assert_ptr_equal(w.ev[0].pipe, b);
    assert_ptr_equal(w.ev[0].user, &x);
    assert_int_equal(w.ev[0].events, MSGPIPE_POLLIN);
    assert_true(w.ms < SUP_T);
    msgpipe_poller_close(pl);
    msgpipe_close(a);
    msgpipe_close(b);
    msgpipe_close(c);
    msgpipe_close(d);
}

/* A new pipe that becomes readable after it was added while a wait runs. */
static void test_poller_added_pipe_wakes_the_running_wait_later(void **state)
{
    msgpipe *a, *b;
    msgpipe_poller *pl = pl_new();
    waiter w;
    sup_thread *t;
    (void)state;

    pair_new(&a, &b);
    t = waiter_start(&w, pl, SUP_T_LONG);
    sup_sleep_ms(100);
    assert_rc(msgpipe_poller_add(pl, b, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    sup_sleep_ms(100);
    assert_rc(msgpipe_send(a, "late", 4, SUP_T), MSGPIPE_OK);
    assert_int_equal(sup_thread_join_timeout(t, SUP_T_LONG + SUP_T, NULL), 0);
    assert_rc(w.rc, 1);
    assert_ptr_equal(w.ev[0].pipe, b);
    assert_true(w.ms < SUP_T);
    msgpipe_poller_close(pl);
    msgpipe_close(a);
    msgpipe_close(b);
}

static void
test_poller_modify_from_another_thread_reaches_the_wait(void **state)
{
    msgpipe *a, *b;
    msgpipe_poller *pl = pl_new();
    waiter w;
    sup_thread *t;
    int x;
    (void)state;

    pair_new(&a, &b);
    assert_rc(msgpipe_poller_add(pl, b, NULL, 0, NULL), MSGPIPE_OK);
    hold_one_message(a, b);
    t = waiter_start(&w, pl, SUP_T_LONG);
    sup_sleep_ms(100);
    assert_rc(msgpipe_poller_modify(pl, b, NULL, MSGPIPE_POLLIN, &x),
              MSGPIPE_OK);
    assert_int_equal(sup_thread_join_timeout(t, SUP_T_LONG + SUP_T, NULL), 0);
    assert_rc(w.rc, 1);
    assert_ptr_equal(w.ev[0].pipe, b);
    assert_ptr_equal(w.ev[0].user, &x);
    assert_true(w.ms < SUP_T);
    msgpipe_poller_close(pl);
    msgpipe_close(a);
    msgpipe_close(b);
}

/* Removed while a wait runs: that wait no longer reports it; the pipe
 * stays open and usable. */
static void
test_poller_remove_from_another_thread_applies_to_the_wait(void **state)
{
    msgpipe *a, *b, *c, *d;
    msgpipe_poller *pl = pl_new();
    waiter w;
    sup_thread *t;
    char buf[8];
    size_t len = 0;
    int i;
    (void)state;

    pair_new(&a, &b);
    pair_new(&c, &d);
    assert_rc(msgpipe_poller_add(pl, b, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, d, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    t = waiter_start(&w, pl, SUP_T_LONG);
    sup_sleep_ms(100);
    assert_rc(msgpipe_poller_remove(pl, b, NULL), MSGPIPE_OK);
    assert_rc(msgpipe_send(a, "gone", 4, SUP_T), MSGPIPE_OK);
    sup_sleep_ms(200);
    assert_rc(msgpipe_send(c, "here", 4, SUP_T), MSGPIPE_OK);
    assert_int_equal(sup_thread_join_timeout(t, SUP_T_LONG + SUP_T, NULL), 0);
    assert_true(w.rc >= 1);
    for (i = 0; i < w.rc; i++)
        assert_ptr_equal(w.ev[i].pipe, d);
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_memory_equal(buf, "gone", 4);
    msgpipe_poller_close(pl);
    msgpipe_close(a);
    msgpipe_close(b);
    msgpipe_close(c);
    msgpipe_close(d);
}

/* ---- Closing what is registered ---------------------------------------- */

static void test_poller_close_of_a_registered_pipe_removes_it(void **state)
{
    msgpipe *a, *b, *c, *d;
    msgpipe_poller *pl = pl_new();
    msgpipe_event ev[4];
    (void)state;

    pair_new(&a, &b);
    pair_new(&c, &d);
    assert_rc(msgpipe_poller_add(pl, b, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, a, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    assert_rc(msgpipe_send(a, "m", 1, SUP_T), MSGPIPE_OK);
    expect_one(pl, b, MSGPIPE_POLLIN, NULL, SUP_T);
    /* Ready, then closed: no longer reported.  Its peer (a) sees the end
     * of the pipe: that is reported. */
    msgpipe_close(b);
    expect_one(pl, a, MSGPIPE_POLLIN, NULL, SUP_T);
    msgpipe_close(a);
    assert_rc(msgpipe_poller_wait(pl, ev, 4, 100), MSGPIPE_ETIMEDOUT);
    /* The poller goes on working. */
    assert_rc(msgpipe_poller_add(pl, d, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    assert_rc(msgpipe_send(c, "n", 1, SUP_T), MSGPIPE_OK);
    expect_one(pl, d, MSGPIPE_POLLIN, NULL, SUP_T);
    msgpipe_poller_close(pl);
    msgpipe_close(c);
    msgpipe_close(d);
}

static void test_poller_server_close_removes_it(void **state)
{
    msgpipe_server *srv = NULL;
    msgpipe *c = NULL;
    msgpipe_poller *pl = pl_new();
    msgpipe_event ev[2];
    char name[96];
    (void)state;

    sup_name(name, sizeof(name), "poller");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, NULL, srv, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    assert_rc(msgpipe_connect(name, NULL, SUP_T, &c), MSGPIPE_OK);
    assert_rc(msgpipe_poller_wait(pl, ev, 2, SUP_T), 1);
    assert_ptr_equal(ev[0].server, srv);
    msgpipe_server_close(srv);
    assert_rc(msgpipe_poller_wait(pl, ev, 2, 100), MSGPIPE_ETIMEDOUT);
    msgpipe_poller_close(pl);
    msgpipe_close(c);
}

/* A thread waits again and again while a ready pipe (or server) of its
 * poller is closed by another thread: no report of it from a wait that
 * started after the close returned, and no crash (ASan, TSan). */
typedef struct {
    msgpipe_poller *pl;
    const void *victim;   /* compared with ev.pipe / ev.server only */
    msgpipe *other;       /* registered too: ends the thread */
    volatile long closed; /* set once the close returned */
    volatile long bad;    /* reports of the victim after it */
    volatile long before; /* reports of the victim before it */
    int rc;
} close_race;

static void *close_race_main(void *arg)
{
    close_race *cr = (close_race *)arg;
    int64_t until = sup_now_ms() + SUP_T_LONG;
    msgpipe_event ev[8];

    cr->rc = MSGPIPE_OK;
    while (sup_now_ms() < until) {
        long closed = sup_atomic_get(&cr->closed);
        int rc = msgpipe_poller_wait(cr->pl, ev, 8, 100);
        int k, done = 0;
        if (rc == MSGPIPE_ETIMEDOUT)
            continue;
        if (rc < 0) {
            cr->rc = rc;
            break;
        }
        for (k = 0; k < rc; k++) {
            const void *what = ev[k].pipe != NULL ? (const void *)ev[k].pipe
                                                  : (const void *)ev[k].server;
            if (what == cr->victim) {
                if (closed)
                    sup_atomic_add(&cr->bad, 1);
                else
                    sup_atomic_add(&cr->before, 1);
            } else if (ev[k].pipe == cr->other) {
                done = 1;
            }
        }
        if (done)
            break;
    }
    return NULL;
}

/* Until the waiting thread has reported the victim at least once (it goes
 * on waiting, and reporting it, while the close comes). */
static void close_race_started(close_race *cr)
{
    int64_t until = sup_now_ms() + SUP_T_LONG;
    while (sup_atomic_get(&cr->before) == 0 && sup_now_ms() < until)
        sup_sleep_ms(1);
    assert_true(sup_atomic_get(&cr->before) > 0);
}

static void close_race_finish(close_race *cr, sup_thread *t, msgpipe *peer)
{
    sup_atomic_set(&cr->closed, 1);
    sup_sleep_ms(50);
    assert_rc(msgpipe_send(peer, "end", 3, SUP_T), MSGPIPE_OK);
    assert_int_equal(sup_thread_join_timeout(t, SUP_T_LONG + SUP_T, NULL), 0);
    assert_rc(cr->rc, MSGPIPE_OK);
    assert_true(sup_atomic_get(&cr->before) > 0);
    assert_int_equal(sup_atomic_get(&cr->bad), 0);
}

static void test_poller_close_of_a_pipe_while_another_thread_waits(void **state)
{
    msgpipe *a, *b, *c, *d;
    msgpipe_poller *pl = pl_new();
    close_race cr;
    sup_thread *t;
    (void)state;

    pair_new(&a, &b);
    pair_new(&c, &d);
    assert_rc(msgpipe_poller_add(pl, b, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, d, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    assert_rc(msgpipe_send(a, "m", 1, SUP_T), MSGPIPE_OK); /* never read */
    memset(&cr, 0, sizeof(cr));
    cr.pl = pl;
    cr.victim = b;
    cr.other = d;
    t = sup_thread_start(close_race_main, &cr);
    close_race_started(&cr); /* b is reported again and again */
    msgpipe_close(b);
    close_race_finish(&cr, t, c);
    msgpipe_poller_close(pl);
    msgpipe_close(a);
    msgpipe_close(c);
    msgpipe_close(d);
}

static void test_poller_server_close_while_another_thread_waits(void **state)
{
    msgpipe_server *srv = NULL;
    msgpipe *cl = NULL, *c, *d;
    msgpipe_poller *pl = pl_new();
    close_race cr;
    sup_thread *t;
    char name[96];
    (void)state;

    pair_new(&c, &d);
    sup_name(name, sizeof(name), "poller");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, NULL, srv, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, d, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    assert_rc(msgpipe_connect(name, NULL, SUP_T, &cl), MSGPIPE_OK);
    memset(&cr, 0, sizeof(cr));
    cr.pl = pl;
    cr.victim = srv;
    cr.other = d;
    t = sup_thread_start(close_race_main, &cr);
    close_race_started(&cr); /* the server is reported again and again */
    msgpipe_server_close(srv);
    close_race_finish(&cr, t, c);
    msgpipe_poller_close(pl);
    msgpipe_close(cl);
    msgpipe_close(c);
    msgpipe_close(d);
}

/* ---- Receiving in another thread --------------------------------------- */

typedef struct {
    msgpipe *p;
    int rc;
    char buf[16];
    size_t len;
} receiver;

static void *receiver_main(void *arg)
{
    receiver *r = (receiver *)arg;

    r->rc = msgpipe_recv(r->p, r->buf, sizeof(r->buf), &r->len, SUP_T);
    return NULL;
}

/* A pipe registered without MSGPIPE_POLLIN may be received on by another
 * thread while a wait runs. */
static void test_poller_pipe_without_pollin_received_elsewhere(void **state)
{
    msgpipe *a, *b, *c, *d;
    msgpipe_poller *pl = pl_new();
    waiter w;
    receiver r;
    sup_thread *t, *tr;
    (void)state;

    pair_new(&a, &b);
    pair_new(&c, &d);
    assert_rc(msgpipe_poller_add(pl, b, NULL, 0, NULL), MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, d, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    t = waiter_start(&w, pl, SUP_T_LONG);
    memset(&r, 0, sizeof(r));
    r.p = b;
    tr = sup_thread_start(receiver_main, &r);
    sup_sleep_ms(50);
    assert_rc(msgpipe_send(a, "one", 3, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_send(a, "two", 3, SUP_T), MSGPIPE_OK);
    sup_thread_join(tr);
    assert_rc(r.rc, MSGPIPE_OK);
    assert_int_equal(r.len, 3);
    assert_memory_equal(r.buf, "one", 3);
    /* The wait is still on: b is not watched for input. */
    sup_sleep_ms(100);
    assert_rc(msgpipe_send(c, "d", 1, SUP_T), MSGPIPE_OK);
    assert_int_equal(sup_thread_join_timeout(t, SUP_T_LONG + SUP_T, NULL), 0);
    assert_rc(w.rc, 1);
    assert_ptr_equal(w.ev[0].pipe, d);
    /* The second message is still there for b's owner. */
    tr = sup_thread_start(receiver_main, &r);
    sup_thread_join(tr);
    assert_rc(r.rc, MSGPIPE_OK);
    assert_memory_equal(r.buf, "two", 3);
    msgpipe_poller_close(pl);
    msgpipe_close(a);
    msgpipe_close(b);
    msgpipe_close(c);
    msgpipe_close(d);
}

/* One thread removes and adds a pipe again and again (allowed from any
 * thread) while another receives on it (allowed: it is registered
 * without MSGPIPE_POLLIN, and no wait runs).  Each receive that leaves a
 * message in msgpipe's buffer tells the poller; that must not touch a
 * registration the other thread has just freed (ASan, valgrind and TSan
 * see it if it does). */
typedef struct {
    msgpipe_poller *pl;
    msgpipe *p;
    volatile long stop;
    long rounds;
    int rc;
} churner;

static void *churn_main(void *arg)
{
    churner *ch = (churner *)arg;

    ch->rc = MSGPIPE_OK;
    while (!sup_atomic_get(&ch->stop) && ch->rc == MSGPIPE_OK) {
        ch->rc = msgpipe_poller_remove(ch->pl, ch->p, NULL);
        if (ch->rc == MSGPIPE_OK)
            ch->rc = msgpipe_poller_add(ch->pl, ch->p, NULL, 0, NULL);
        ch->rounds++;
    }
    return NULL;
}

static void test_poller_remove_while_another_thread_receives(void **state)
{
    msgpipe *a, *b;
    msgpipe_poller *pl = pl_new();
    churner ch;
    sup_thread *t;
    int64_t until = sup_now_ms() + (slow_run() ? 3000 : 1500);
    long i, rounds = slow_run() ? 2000 : 20000;
    (void)state;

    pair_new(&a, &b);
    assert_rc(msgpipe_poller_add(pl, b, NULL, 0, NULL), MSGPIPE_OK);
    memset(&ch, 0, sizeof(ch));
    ch.pl = pl;
    ch.p = b;
    t = sup_thread_start(churn_main, &ch);
    for (i = 0; i < rounds && sup_now_ms() < until; i++) {
        char buf[8];
        size_t len = 0;
        /* Two in, then two receives: the first leaves one buffered. */
        assert_rc(msgpipe_send(a, "1", 1, SUP_T), MSGPIPE_OK);
        assert_rc(msgpipe_send(a, "2", 1, SUP_T), MSGPIPE_OK);
        assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
        assert_int_equal(buf[0], '1');
        assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
        assert_int_equal(buf[0], '2');
    }
    sup_atomic_set(&ch.stop, 1);
    sup_thread_join(t);
    assert_rc(ch.rc, MSGPIPE_OK);
    print_message("%ld receive rounds against %ld remove/add rounds\n", i,
                  ch.rounds);
    msgpipe_poller_close(pl);
    msgpipe_close(a);
    msgpipe_close(b);
}

/* ---- No busy waiting ---------------------------------------------------- */

static void test_idle_poller_wait_uses_no_cpu(void **state)
{
    sup_pair pr;
    msgpipe *a, *b;
    msgpipe_poller *pl = pl_new();
    msgpipe_event ev[4];
    int64_t cpu0, cpu1, t0, t1;
    (void)state;

    sup_pair_open(&pr, "poller", NULL, NULL);
    pair_new(&a, &b);
    assert_rc(msgpipe_poller_add(pl, pr.c, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, NULL, pr.srv, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, b, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    cpu0 = sup_cpu_ms();
    t0 = sup_now_ms();
    assert_rc(msgpipe_poller_wait(pl, ev, 4, 600), MSGPIPE_ETIMEDOUT);
    t1 = sup_now_ms();
    cpu1 = sup_cpu_ms();
    assert_true(cpu0 >= 0 && cpu1 >= 0);
    print_message("idle poller wait: %ld ms of CPU over %ld ms\n",
                  (long)(cpu1 - cpu0), (long)(t1 - t0));
    assert_true(t1 - t0 >= 550);
    /* A busy loop would burn about all of the 600 ms. */
    assert_true(cpu1 - cpu0 < 150);
    msgpipe_poller_close(pl);
    msgpipe_close(a);
    msgpipe_close(b);
    sup_pair_close(&pr);
}

/* The threads of this process, or -1 where that cannot be told. */
static long thread_count(void)
{
#ifdef _WIN32
    THREADENTRY32 te;
    HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0);
    DWORD me = GetCurrentProcessId();
    long n = 0;

    if (snap == INVALID_HANDLE_VALUE)
        return -1;
    memset(&te, 0, sizeof(te));
    te.dwSize = sizeof(te);
    if (Thread32First(snap, &te)) {
        do {
            if (te.th32OwnerProcessID == me)
                n++;
        } while (Thread32Next(snap, &te));
    }
    CloseHandle(snap);
    return n;
#else
    char line[128];
    long n = -1;
    FILE *f = fopen("/proc/self/status", "r");

    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "Threads:", 8) == 0)
            n = strtol(line + 8, NULL, 10);
    fclose(f);
    return n;
#endif
}

/* A wait over 1,000 idle pipes blocks in the waiting thread alone: no
 * helper threads (msgpipe_poll on Windows needs one per 63 events), and
 * a message to one of them ends it. */
static void test_poller_wait_over_1000_idle_pipes_starts_no_thread(void **state)
{
    enum { NPAIRS = 500 };
    msgpipe **p = (msgpipe **)calloc(2 * NPAIRS, sizeof(*p));
    msgpipe_poller *pl = pl_new();
    msgpipe_event ev[4];
    delayed_send d;
    sup_thread *t, *ts;
    waiter w;
    long before, during;
    int i, tries;
    char buf[64];
    size_t len = 0;
    (void)state;

    assert_non_null(p);
    if (!sup_raise_fd_limit(sup_is_fifo() ? 4 * NPAIRS + 200
                                          : 2 * NPAIRS + 200)) {
        SUP_SKIP("cannot raise the open-file limit for 1,000 pipes");
        msgpipe_poller_close(pl);
        free(p);
        return;
    }
    for (i = 0; i < NPAIRS; i++) {
        pair_new(&p[2 * i], &p[2 * i + 1]);
        assert_rc(
            msgpipe_poller_add(pl, p[2 * i], NULL, MSGPIPE_POLLIN, p[2 * i]),
            MSGPIPE_OK);
    }
    /* Arm them all, and let whatever the library starts once start. */
    assert_rc(msgpipe_poller_wait(pl, ev, 4, 0), MSGPIPE_ETIMEDOUT);
    before = thread_count();
    if (before < 0) {
        SUP_SKIP("this system does not tell a process's threads");
        goto out;
    }
    t = waiter_start(&w, pl, SUP_T);
    /* Count while the wait blocks (it is blocked once its thread has
     * been seen; a few looks cover a slow start). */
    during = 0;
    for (tries = 0; tries < 5; tries++) {
        sup_sleep_ms(50);
        during = thread_count();
        if (during > before + 1)
            break;
    }
    memset(&d, 0, sizeof(d));
    d.p = p[2 * 377 + 1];
    d.len = 20;
    d.seed = 377;
    ts = sup_thread_start(delayed_send_main, &d);
    sup_thread_join(ts);
    sup_thread_join(t);
    print_message("threads: %ld before, %ld while waiting (one is the "
                  "waiter)\n",
                  before, during);
    assert_int_equal(during, before + 1);
    assert_rc(w.rc, 1);
    assert_ptr_equal(w.ev[0].pipe, p[2 * 377]);
    assert_rc(msgpipe_recv(p[2 * 377], buf, sizeof(buf), &len, 0), MSGPIPE_OK);
    assert_int_equal(len, 20);
    assert_pattern(buf, 20, 377);
out:
    msgpipe_poller_close(pl);
    for (i = 0; i < 2 * NPAIRS; i++)
        msgpipe_close(p[i]);
    free(p);
}

/* A pipe whose receive timed out (and so waits for the next message on
 * its own, on Windows with a read armed before it joined) reports that
 * message once it is in a poller. */
static void test_poller_reports_a_pipe_armed_before_it_joined(void **state)
{
    msgpipe *a, *b;
    msgpipe_poller *pl = pl_new();
    delayed_send d;
    sup_thread *t;
    waiter w;
    char buf[64];
    size_t len = 0;
    (void)state;

    pair_new(&a, &b);
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, 20), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_poller_add(pl, b, NULL, MSGPIPE_POLLIN, b), MSGPIPE_OK);
    t = waiter_start(&w, pl, SUP_T);
    memset(&d, 0, sizeof(d));
    d.p = a;
    d.delay_ms = 100;
    d.len = 30;
    d.seed = 5;
    sup_thread_join(sup_thread_start(delayed_send_main, &d));
    sup_thread_join(t);
    assert_rc(d.rc, MSGPIPE_OK);
    assert_rc(w.rc, 1);
    assert_ptr_equal(w.ev[0].pipe, b);
    assert_int_equal(w.ev[0].events, MSGPIPE_POLLIN);
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, 0), MSGPIPE_OK);
    assert_int_equal(len, 30);
    assert_pattern(buf, 30, 5);
    msgpipe_poller_close(pl);
    msgpipe_close(a);
    msgpipe_close(b);
}

/* The thread that last waited (and so, on Windows, issued the reads that
 * wait for the pipes' next messages, which its exit cancels) is gone: the
 * next wait, in another thread, still reports what comes. */
static void test_poller_reports_after_the_waiting_thread_exits(void **state)
{
    msgpipe *a, *b, *c, *d2;
    msgpipe_poller *pl = pl_new();
    msgpipe_event ev[4];
    waiter w;
    char buf[16];
    size_t len = 0;
    (void)state;

    pair_new(&a, &b);
    pair_new(&c, &d2);
    assert_rc(msgpipe_poller_add(pl, b, NULL, MSGPIPE_POLLIN, b), MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, d2, NULL, MSGPIPE_POLLIN, d2), MSGPIPE_OK);
    sup_thread_join(waiter_start(&w, pl, 0));
    assert_rc(w.rc, MSGPIPE_ETIMEDOUT);
    sup_sleep_ms(20);
    assert_rc(msgpipe_send(a, "x", 1, SUP_T), MSGPIPE_OK);
    memset(ev, 0, sizeof(ev));
    assert_rc(msgpipe_poller_wait(pl, ev, 4, SUP_T), 1);
    assert_ptr_equal(ev[0].pipe, b);
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, 0), MSGPIPE_OK);
    assert_int_equal(len, 1);
    /* The other pipe was armed by the same thread, and no wait has
     * looked at it since. */
    assert_rc(msgpipe_send(c, "yz", 2, SUP_T), MSGPIPE_OK);
    memset(ev, 0, sizeof(ev));
    assert_rc(msgpipe_poller_wait(pl, ev, 4, SUP_T), 1);
    assert_ptr_equal(ev[0].pipe, d2);
    assert_rc(msgpipe_recv(d2, buf, sizeof(buf), &len, 0), MSGPIPE_OK);
    assert_int_equal(len, 2);
    assert_rc(msgpipe_poller_wait(pl, ev, 4, 0), MSGPIPE_ETIMEDOUT);
    msgpipe_poller_close(pl);
    msgpipe_close(a);
    msgpipe_close(b);
    msgpipe_close(c);
    msgpipe_close(d2);
}

/* Two clients wait; accepting one leaves the server reported for the
 * other, and accepting that one leaves nothing. */
static void
test_poller_server_reported_until_every_client_accepted(void **state)
{
    msgpipe_server *srv = NULL;
    msgpipe *c1 = NULL, *c2 = NULL, *a1 = NULL, *a2 = NULL, *x = NULL;
    msgpipe_poller *pl = pl_new();
    msgpipe_event ev[2];
    char name[96];
    (void)state;

    sup_name(name, sizeof(name), "poller");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, NULL, srv, MSGPIPE_POLLIN, srv),
              MSGPIPE_OK);
    assert_rc(msgpipe_poller_wait(pl, ev, 2, 0), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_connect(name, NULL, SUP_T, &c1), MSGPIPE_OK);
    assert_rc(msgpipe_connect(name, NULL, SUP_T, &c2), MSGPIPE_OK);
    assert_rc(msgpipe_poller_wait(pl, ev, 2, SUP_T), 1);
    assert_ptr_equal(ev[0].server, srv);
    assert_rc(msgpipe_accept(srv, 0, &a1), MSGPIPE_OK);
    memset(ev, 0, sizeof(ev));
    assert_rc(msgpipe_poller_wait(pl, ev, 2, SUP_T), 1);
    assert_ptr_equal(ev[0].server, srv);
    assert_rc(msgpipe_accept(srv, 0, &a2), MSGPIPE_OK);
    assert_rc(msgpipe_poller_wait(pl, ev, 2, 0), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_accept(srv, 0, &x), MSGPIPE_ETIMEDOUT);
    msgpipe_poller_close(pl);
    msgpipe_close(a1);
    msgpipe_close(a2);
    msgpipe_close(c1);
    msgpipe_close(c2);
    msgpipe_server_close(srv);
}

/* ---- Lifetimes ---------------------------------------------------------- */

/* Closing a poller with pipes and a server in it frees everything (the
 * leak checkers see to that) and leaves them open, usable, and free to
 * join another poller. */
static void test_poller_close_with_pipes_leaves_them_usable(void **state)
{
    sup_pair pr;
    msgpipe *a, *b;
    msgpipe_poller *pl = pl_new();
    msgpipe_event ev[4];
    char buf[8];
    size_t len = 0;
    (void)state;

    sup_pair_open(&pr, "poller", NULL, NULL);
    pair_new(&a, &b);
    assert_rc(msgpipe_poller_add(pl, pr.c, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, NULL, pr.srv, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    assert_rc(
        msgpipe_poller_add(pl, b, NULL, MSGPIPE_POLLIN | MSGPIPE_POLLOUT, NULL),
        MSGPIPE_OK);
    assert_rc(msgpipe_send(a, "x", 1, SUP_T), MSGPIPE_OK);
    assert_true(msgpipe_poller_wait(pl, ev, 4, SUP_T) >= 1);
    msgpipe_poller_close(pl);
    /* Still open and working. */
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_send(b, "y", 1, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_send(pr.s, "z", 1, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(pr.c, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    /* And free to join a new poller. */
    pl = pl_new();
    assert_rc(msgpipe_poller_add(pl, pr.c, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, NULL, pr.srv, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, b, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    assert_rc(msgpipe_send(a, "w", 1, SUP_T), MSGPIPE_OK);
    expect_one(pl, b, MSGPIPE_POLLIN, NULL, SUP_T);
    msgpipe_poller_close(pl);
    msgpipe_close(a);
    msgpipe_close(b);
    sup_pair_close(&pr);
}

/* Many pollers made and closed, each with pipes in it: nothing grows. */
static void test_poller_new_and_close_in_a_loop(void **state)
{
    msgpipe *a, *b;
    int i;
    (void)state;

    pair_new(&a, &b);
    for (i = 0; i < 200; i++) {
        msgpipe_poller *pl = pl_new();
        assert_rc(msgpipe_poller_add(pl, a, NULL, MSGPIPE_POLLIN, NULL),
                  MSGPIPE_OK);
        assert_rc(msgpipe_poller_add(pl, b, NULL, MSGPIPE_POLLOUT, NULL),
                  MSGPIPE_OK);
        msgpipe_poller_close(pl);
    }
    msgpipe_close(a);
    msgpipe_close(b);
}

/* ---- A half-sent message is pushed out by the wait ---------------------- */

#define TAIL_BIG (8u << 20)

typedef struct {
    msgpipe *p;
    int rc;
} answerer;

static void *answer_main(void *arg)
{
    answerer *a = (answerer *)arg;
    void *m = NULL;
    size_t len = 0;

    sup_sleep_ms(100); /* let the client's send time out first */
    a->rc = msgpipe_recv_alloc(a->p, &m, &len, SUP_T);
    if (a->rc == MSGPIPE_OK && len != TAIL_BIG)
        a->rc = MSGPIPE_EIO;
    if (a->rc == MSGPIPE_OK && sup_check(m, len, 8) != (size_t)-1)
        a->rc = MSGPIPE_EPROTO;
    msgpipe_free(m);
    if (a->rc == MSGPIPE_OK)
        a->rc = msgpipe_send(a->p, "answer", 6, SUP_T);
    return NULL;
}

/* A send that timed out with part of a large request kept back: waiting
 * for the answer pushes the rest out (as a waiting receive would), so the
 * answer comes. */
static void test_poller_wait_pushes_out_a_half_sent_request(void **state)
{
    msgpipe *a, *b;
    msgpipe_poller *pl = pl_new();
    answerer an;
    sup_thread *t;
    unsigned char *big = (unsigned char *)malloc(TAIL_BIG);
    char buf[16];
    size_t len;
    (void)state;

    assert_non_null(big);
    sup_fill(big, TAIL_BIG, 8);
    pair_new(&a, &b);
    assert_rc(msgpipe_poller_add(pl, a, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    an.p = b;
    an.rc = -1;
    t = sup_thread_start(answer_main, &an);
    /* The peer is not reading yet: part goes out, the rest is kept. */
    assert_rc(msgpipe_send(a, big, TAIL_BIG, 20), MSGPIPE_OK);
    expect_one(pl, a, MSGPIPE_POLLIN, NULL, SUP_T);
    assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, 0), MSGPIPE_OK);
    assert_int_equal(len, 6);
    assert_memory_equal(buf, "answer", 6);
    sup_thread_join(t);
    assert_rc(an.rc, MSGPIPE_OK);
    msgpipe_poller_close(pl);
    msgpipe_close(a);
    msgpipe_close(b);
    free(big);
}

/* ---- Scale: every message checked --------------------------------------- */

static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* npairs pairs, both ends registered (2 * npairs pipes); one distinct
 * message to a random subset; every report must deliver with timeout 0
 * exactly the message meant for that pipe, once. */
static void many_pipes(int npairs, int nmsg, uint32_t seed)
{
    int n = 2 * npairs, i, k, rc, got = 0;
    msgpipe **p = (msgpipe **)calloc((size_t)n, sizeof(*p));
    unsigned char *want = (unsigned char *)calloc((size_t)n, 1);
    unsigned char *have = (unsigned char *)calloc((size_t)n, 1);
    msgpipe_poller *pl = pl_new();
    msgpipe_event ev[64];
    int64_t until;
    uint32_t s = seed;
    int64_t t0 = sup_now_ms();

    assert_non_null(p);
    assert_non_null(want);
    assert_non_null(have);
    for (i = 0; i < npairs; i++) {
        pair_new(&p[2 * i], &p[2 * i + 1]);
        assert_rc(msgpipe_poller_add(pl, p[2 * i], NULL, MSGPIPE_POLLIN,
                                     &want[2 * i]),
                  MSGPIPE_OK);
        assert_rc(msgpipe_poller_add(pl, p[2 * i + 1], NULL, MSGPIPE_POLLIN,
                                     &want[2 * i + 1]),
                  MSGPIPE_OK);
    }
    assert_rc(msgpipe_poller_wait(pl, ev, 64, 0), MSGPIPE_ETIMEDOUT);
    /* Pick nmsg distinct pipes; the peer of pipe i is i ^ 1. */
    for (k = 0; k < nmsg;) {
        unsigned char m[16];
        i = (int)(lcg(&s) % (uint32_t)n);
        if (want[i])
            continue;
        want[i] = 1;
        sup_put32(m, (uint32_t)i);
        sup_fill(m + 4, sizeof(m) - 4, (uint32_t)i);
        assert_rc(msgpipe_send(p[i ^ 1], m, sizeof(m), SUP_T), MSGPIPE_OK);
        k++;
    }
    until = sup_now_ms() + SUP_T_LONG;
    while (got < nmsg && sup_now_ms() < until) {
        rc = msgpipe_poller_wait(pl, ev, 64, SUP_T);
        assert_true(rc > 0);
        for (k = 0; k < rc; k++) {
            unsigned char m[32];
            size_t len = 0;
            int idx = (int)((unsigned char *)ev[k].user - want);
            assert_true(idx >= 0 && idx < n);
            assert_ptr_equal(ev[k].pipe, p[idx]);
            assert_int_equal(ev[k].events, MSGPIPE_POLLIN);
            if (!want[idx] || have[idx]) {
                print_error("pipe %d reported without a message for it\n", idx);
                fail();
            }
            assert_rc(msgpipe_recv(p[idx], m, sizeof(m), &len, 0), MSGPIPE_OK);
            assert_int_equal(len, 16);
            assert_int_equal(sup_get32(m), (uint32_t)idx);
            assert_pattern(m + 4, 12, (uint32_t)idx);
            have[idx] = 1;
            got++;
        }
    }
    assert_int_equal(got, nmsg);
    assert_rc(msgpipe_poller_wait(pl, ev, 64, 0), MSGPIPE_ETIMEDOUT);
    print_message("%d registered pipes, %d messages: %ld ms\n", n, nmsg,
                  (long)(sup_now_ms() - t0));
    msgpipe_poller_close(pl);
    for (i = 0; i < n; i++)
        msgpipe_close(p[i]);
    free(p);
    free(want);
    free(have);
}

static void test_poller_1000_pipes_every_message_checked(void **state)
{
    (void)state;
    if (!sup_raise_fd_limit(sup_is_fifo() ? 2 * 1000 + 200 : 1000 + 200)) {
        SUP_SKIP("cannot raise the open-file limit for 1,000 pipes");
        return;
    }
    many_pipes(500, 300, 1);
}

/* 10,000 registered pipes on POSIX (a socket pair end is one descriptor,
 * a FIFO one two); under Wine 1,000 (the test above). */
static void test_poller_10000_pipes_every_message_checked(void **state)
{
    long need = (sup_is_fifo() ? 2L : 1L) * 10000 + 200;
    (void)state;

    if (!sup_raise_fd_limit(need)) {
        static char why[160];
        snprintf(why, sizeof(why),
                 "cannot raise the open-file limit to %ld descriptors for "
                 "10,000 pipes",
                 need);
        SUP_SKIP(why);
        return;
    }
    many_pipes(5000, slow_run() ? 500 : 2000, 2);
}

int main(int argc, char **argv)
{
    const sup_test tests[] = {
        SUP_TEST(1, test_poller_new_rejects_null),
        SUP_TEST(1, test_poller_add_rejects_invalid_arguments),
        SUP_TEST(1, test_poller_modify_and_remove_reject_invalid_arguments),
        SUP_TEST(1, test_poller_add_twice_is_busy),
        SUP_TEST(1, test_poller_modify_or_remove_of_unregistered_is_enoent),
        SUP_TEST(1, test_poller_wait_rejects_invalid_arguments),
        SUP_TEST(1, test_poller_wake_and_close_ignore_null),
        SUP_TEST(1, test_empty_poller_wait_times_out),
        SUP_TEST(1, test_poller_reports_a_message_and_delivers_with_timeout_0),
        SUP_TEST(1, test_poller_reports_buffered_messages_until_drained),
        SUP_TEST(1, test_poller_reports_a_message_msgpipe_already_holds),
        SUP_TEST(1, test_poller_reports_large_message_only_when_whole),
        SUP_TEST(SUP_POSIX, test_poller_does_not_report_half_a_message),
        SUP_TEST(1, test_poller_reports_end_of_pipe_as_readable),
        SUP_TEST(1, test_poller_reports_oversized_message_then_the_next),
        SUP_TEST(1, test_poller_server_reports_waiting_client),
        SUP_TEST(1, test_poller_server_reports_shutdown),
        SUP_TEST(1, test_poller_out_follows_room_in_the_pipe),
        SUP_TEST(1, test_poller_out_reports_dead_peer),
        SUP_TEST(1, test_poller_events_zero_is_not_reported),
        SUP_TEST(1, test_poller_returns_user_pointers),
        SUP_TEST(1, test_poller_modify_changes_events_and_user),
        SUP_TEST(1, test_poller_reports_beyond_cap_in_the_next_waits),
        SUP_TEST(1, test_poller_cap_of_one_loses_nothing),
        SUP_TEST(1, test_poller_wake_from_another_thread_returns_0),
        SUP_TEST(1, test_poller_wake_before_wait_ends_the_next_wait),
        SUP_TEST(1, test_poller_add_from_another_thread_reaches_the_wait),
        SUP_TEST(1, test_poller_added_pipe_wakes_the_running_wait_later),
        SUP_TEST(1, test_poller_modify_from_another_thread_reaches_the_wait),
        SUP_TEST(1, test_poller_remove_from_another_thread_applies_to_the_wait),
        SUP_TEST(1, test_poller_close_of_a_registered_pipe_removes_it),
        SUP_TEST(1, test_poller_server_close_removes_it),
        SUP_TEST(1, test_poller_close_of_a_pipe_while_another_thread_waits),
        SUP_TEST(1, test_poller_server_close_while_another_thread_waits),
        SUP_TEST(1, test_poller_pipe_without_pollin_received_elsewhere),
        SUP_TEST(1, test_poller_remove_while_another_thread_receives),
        SUP_TEST(1, test_idle_poller_wait_uses_no_cpu),
        SUP_TEST(1, test_poller_wait_over_1000_idle_pipes_starts_no_thread),
        SUP_TEST(1, test_poller_reports_a_pipe_armed_before_it_joined),
        SUP_TEST(1, test_poller_reports_after_the_waiting_thread_exits),
        SUP_TEST(1, test_poller_server_reported_until_every_client_accepted),
        SUP_TEST(1, test_poller_close_with_pipes_leaves_them_usable),
        SUP_TEST(1, test_poller_new_and_close_in_a_loop),
        SUP_TEST(SUP_POSIX, test_poller_wait_pushes_out_a_half_sent_request),
        SUP_TEST(1, test_poller_1000_pipes_every_message_checked),
        SUP_TEST(SUP_POSIX, test_poller_10000_pipes_every_message_checked),
    };

    sup_init(argc, argv);
    return sup_finish(SUP_RUN("poller", tests));
}
