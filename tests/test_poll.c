/*
 * test_poll.c - one thread, many pipes: msgpipe_poll and native handles.
 *
 * The same tests run on every backend.  "Ready" always means what the
 * header promises: a pipe reported readable delivers with a receive of
 * timeout 0, a server reported readable accepts with timeout 0.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef _WIN32
#include <fcntl.h>
#include <sys/resource.h>
#endif

/* ---- Helpers ------------------------------------------------------------ */

static void item_pipe(msgpipe_pollitem *it, msgpipe *p, unsigned events)
{
    memset(it, 0, sizeof(*it));
    it->pipe = p;
    it->events = events;
}

static void item_server(msgpipe_pollitem *it, msgpipe_server *s)
{
    memset(it, 0, sizeof(*it));
    it->server = s;
    it->events = MSGPIPE_POLLIN;
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

/* ---- Arguments ---------------------------------------------------------- */

static void test_poll_rejects_invalid_items(void **state)
{
    sup_pair pr;
    msgpipe_pollitem it[2];
    (void)state;

    sup_pair_open(&pr, "poll", NULL, NULL);
    assert_rc(msgpipe_poll(NULL, 1, 0), MSGPIPE_EINVAL);
    assert_rc(msgpipe_poll(NULL, 0, -1), MSGPIPE_EINVAL);
    item_pipe(&it[0], pr.c, MSGPIPE_POLLIN);
    it[0].server = pr.srv;
    assert_rc(msgpipe_poll(it, 1, 0), MSGPIPE_EINVAL);
    item_pipe(&it[0], pr.c, MSGPIPE_POLLIN | 0x80u);
    assert_rc(msgpipe_poll(it, 1, 0), MSGPIPE_EINVAL);
    item_server(&it[0], pr.srv);
    it[0].events |= MSGPIPE_POLLOUT;
    assert_rc(msgpipe_poll(it, 1, 0), MSGPIPE_EINVAL);
    assert_rc(msgpipe_poll(it, 1, -2), MSGPIPE_EINVAL);
    sup_pair_close(&pr);
}

static void test_poll_skips_holes_and_empty_arrays_just_wait(void **state)
{
    sup_pair pr;
    msgpipe_pollitem it[3];
    (void)state;

    sup_pair_open(&pr, "poll", NULL, NULL);
    assert_rc(msgpipe_poll(NULL, 0, 20), MSGPIPE_ETIMEDOUT);
    memset(it, 0, sizeof(it));
    it[0].revents = 0x55u; /* cleared by the call */
    item_pipe(&it[1], pr.s, MSGPIPE_POLLIN);
    assert_rc(msgpipe_send(pr.c, "x", 1, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_poll(it, 3, SUP_T), 1);
    assert_int_equal(it[0].revents, 0);
    assert_int_equal(it[1].revents, MSGPIPE_POLLIN);
    assert_int_equal(it[2].revents, 0);
    sup_pair_close(&pr);
}

/* ---- Timeouts ------------------------------------------------------------ */

static void test_poll_with_nothing_ready_times_out(void **state)
{
    sup_pair pr;
    msgpipe_pollitem it[2];
    int64_t t0;
    (void)state;

    sup_pair_open(&pr, "poll", NULL, NULL);
    item_pipe(&it[0], pr.c, MSGPIPE_POLLIN);
    item_server(&it[1], pr.srv);
    t0 = sup_now_ms();
    assert_rc(msgpipe_poll(it, 2, 150), MSGPIPE_ETIMEDOUT);
    /* It waited rather than returning early. */
    assert_true(sup_now_ms() - t0 >= 100);
    assert_int_equal(it[0].revents, 0);
    assert_int_equal(it[1].revents, 0);
    sup_pair_close(&pr);
}

static void test_poll_zero_timeout_does_not_wait(void **state)
{
    sup_pair pr;
    msgpipe_pollitem it;
    (void)state;

    sup_pair_open(&pr, "poll", NULL, NULL);
    item_pipe(&it, pr.c, MSGPIPE_POLLIN);
    assert_rc(msgpipe_poll(&it, 1, 0), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_send(pr.s, "hi", 2, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_poll(&it, 1, SUP_T), 1);
    assert_rc(msgpipe_poll(&it, 1, 0), 1); /* not drained: still ready */
    assert_int_equal(it.revents, MSGPIPE_POLLIN);
    sup_pair_close(&pr);
}

static void test_poll_infinite_is_woken_by_a_message(void **state)
{
    sup_pair pr;
    msgpipe_pollitem it;
    delayed_send d;
    sup_thread *t;
    unsigned char buf[64];
    size_t len = 0;
    (void)state;

    sup_pair_open(&pr, "poll", NULL, NULL);
    d.p = pr.s;
    d.delay_ms = 200;
    d.len = 33;
    d.seed = 7;
    t = sup_thread_start(delayed_send_main, &d);
    item_pipe(&it, pr.c, MSGPIPE_POLLIN);
    assert_rc(msgpipe_poll(&it, 1, MSGPIPE_INFINITE), 1);
    assert_int_equal(it.revents, MSGPIPE_POLLIN);
    assert_rc(msgpipe_recv(pr.c, buf, sizeof(buf), &len, 0), MSGPIPE_OK);
    assert_int_equal(len, 33);
    assert_pattern(buf, 33, 7);
    sup_thread_join(t);
    assert_rc(d.rc, MSGPIPE_OK);
    sup_pair_close(&pr);
}

/* ---- Readability ------------------------------------------------------- */

static void test_poll_reports_end_of_pipe_as_readable(void **state)
{
    sup_pair pr;
    msgpipe_pollitem it;
    char buf[8];
    size_t len = 0;
    (void)state;

    sup_pair_open(&pr, "poll", NULL, NULL);
    msgpipe_close(pr.s);
    pr.s = NULL;
    item_pipe(&it, pr.c, MSGPIPE_POLLIN);
    assert_rc(msgpipe_poll(&it, 1, SUP_T), 1);
    assert_int_equal(it.revents, MSGPIPE_POLLIN);
    assert_rc(msgpipe_recv(pr.c, buf, sizeof(buf), &len, 0), MSGPIPE_ECLOSED);
    /* The end stays reported: a receive keeps returning it at once. */
    assert_rc(msgpipe_poll(&it, 1, 0), 1);
    sup_pair_close(&pr);
}

static void test_poll_reports_messages_before_the_end(void **state)
{
    sup_pair pr;
    msgpipe_pollitem it;
    char buf[8];
    size_t len = 0;
    int i;
    (void)state;

    sup_pair_open(&pr, "poll", NULL, NULL);
    for (i = 0; i < 3; i++)
        assert_rc(msgpipe_send(pr.s, "abc", 3, SUP_T), MSGPIPE_OK);
    msgpipe_close(pr.s);
    pr.s = NULL;
    item_pipe(&it, pr.c, MSGPIPE_POLLIN);
    for (i = 0; i < 3; i++) {
        assert_rc(msgpipe_poll(&it, 1, SUP_T), 1);
        assert_rc(msgpipe_recv(pr.c, buf, sizeof(buf), &len, 0), MSGPIPE_OK);
        assert_int_equal(len, 3);
    }
    assert_rc(msgpipe_poll(&it, 1, SUP_T), 1);
    assert_rc(msgpipe_recv(pr.c, buf, sizeof(buf), &len, 0), MSGPIPE_ECLOSED);
    sup_pair_close(&pr);
}

/* Several messages arrive together; msgpipe may take them all from the
 * system at the first receive.  Each must still be reported, until the
 * last one is received. */
static void test_poll_reports_buffered_messages_until_drained(void **state)
{
    sup_pair pr;
    msgpipe_pollitem it;
    unsigned char buf[128];
    size_t len = 0;
    uint32_t i;
    (void)state;

    sup_pair_open(&pr, "poll", NULL, NULL);
    for (i = 0; i < 5; i++) {
        sup_fill(buf, 100, i);
        assert_rc(msgpipe_send(pr.s, buf, 100, SUP_T), MSGPIPE_OK);
    }
    item_pipe(&it, pr.c, MSGPIPE_POLLIN);
    for (i = 0; i < 5; i++) {
        assert_rc(msgpipe_poll(&it, 1, i == 0 ? SUP_T : 0), 1);
        assert_int_equal(it.revents, MSGPIPE_POLLIN);
        assert_rc(msgpipe_recv(pr.c, buf, sizeof(buf), &len, 0), MSGPIPE_OK);
        assert_int_equal(len, 100);
        assert_pattern(buf, 100, i);
    }
    assert_rc(msgpipe_poll(&it, 1, 0), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_recv(pr.c, buf, sizeof(buf), &len, 0), MSGPIPE_ETIMEDOUT);
    sup_pair_close(&pr);
}

/* A large message arrives in pieces; the pipe is reported readable only
 * when a receive with timeout 0 gets it whole. */
static void test_poll_reports_large_message_only_when_whole(void **state)
{
    enum { BIG = 4 << 20 };
    sup_pair pr;
    msgpipe_pollitem it;
    delayed_send d;
    sup_thread *t;
    unsigned char *buf = (unsigned char *)malloc(BIG);
    size_t len = 0;
    (void)state;

    assert_non_null(buf);
    sup_pair_open(&pr, "poll", NULL, NULL);
    d.p = pr.s;
    d.delay_ms = 0;
    d.len = BIG;
    d.seed = 99;
    t = sup_thread_start(delayed_send_main, &d);
    item_pipe(&it, pr.c, MSGPIPE_POLLIN);
    assert_rc(msgpipe_poll(&it, 1, SUP_T_LONG), 1);
    assert_rc(msgpipe_recv(pr.c, buf, BIG, &len, 0), MSGPIPE_OK);
    assert_int_equal(len, BIG);
    assert_pattern(buf, BIG, 99);
    sup_thread_join(t);
    assert_rc(d.rc, MSGPIPE_OK);
    sup_pair_close(&pr);
    free(buf);
}

static void test_poll_reports_oversized_message_then_the_next(void **state)
{
    sup_pair pr;
    msgpipe_options copt;
    msgpipe_pollitem it;
    unsigned char big[1000], buf[100];
    size_t len = 0;
    (void)state;

    msgpipe_options_init(&copt);
    copt.max_message = 100;
    sup_pair_open(&pr, "poll", NULL, &copt);
    memset(big, 'z', sizeof(big));
    assert_rc(msgpipe_send(pr.s, big, sizeof(big), SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_send(pr.s, "after", 5, SUP_T), MSGPIPE_OK);
    item_pipe(&it, pr.c, MSGPIPE_POLLIN);
    assert_rc(msgpipe_poll(&it, 1, SUP_T), 1);
    assert_rc(msgpipe_recv(pr.c, buf, sizeof(buf), &len, 0), MSGPIPE_EMSGSIZE);
    assert_int_equal(len, sizeof(big));
    assert_rc(msgpipe_poll(&it, 1, SUP_T), 1);
    assert_rc(msgpipe_recv(pr.c, buf, sizeof(buf), &len, 0), MSGPIPE_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "after", 5);
    sup_pair_close(&pr);
}

/* ---- Servers ------------------------------------------------------------ */

static void test_poll_server_reports_waiting_client(void **state)
{
    msgpipe_server *srv = NULL;
    msgpipe *c = NULL, *a = NULL, *b = NULL;
    msgpipe_pollitem it;
    char name[96];
    (void)state;

    sup_name(name, sizeof(name), "poll");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    item_server(&it, srv);
    assert_rc(msgpipe_poll(&it, 1, 0), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_connect(name, NULL, SUP_T, &c), MSGPIPE_OK);
    assert_rc(msgpipe_poll(&it, 1, SUP_T), 1);
    assert_int_equal(it.revents, MSGPIPE_POLLIN);
    assert_rc(msgpipe_accept(srv, 0, &a), MSGPIPE_OK);
    assert_rc(msgpipe_poll(&it, 1, 0), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_accept(srv, 0, &b), MSGPIPE_ETIMEDOUT);
    assert_null(b);
    msgpipe_close(a);
    msgpipe_close(c);
    msgpipe_server_close(srv);
}

static void test_poll_server_reports_shutdown(void **state)
{
    msgpipe_server *srv = NULL;
    msgpipe *a = NULL;
    msgpipe_pollitem it;
    char name[96];
    (void)state;

    sup_name(name, sizeof(name), "poll");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    item_server(&it, srv);
    msgpipe_server_shutdown(srv);
    assert_rc(msgpipe_poll(&it, 1, SUP_T), 1);
    assert_int_equal(it.revents, MSGPIPE_POLLIN);
    assert_rc(msgpipe_accept(srv, 0, &a), MSGPIPE_ESHUTDOWN);
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

static void test_poll_out_follows_room_in_the_pipe(void **state)
{
    enum { MSG = 16384, MAX_SENDS = 100000 };
    sup_pair pr;
    msgpipe_pollitem it;
    unsigned char *m = (unsigned char *)calloc(1, MSG);
    drainer d;
    sup_thread *t;
    long sent = 0;
    int rc = MSGPIPE_OK;
    (void)state;

    assert_non_null(m);
    sup_pair_open(&pr, "poll", NULL, NULL);
    item_pipe(&it, pr.c, MSGPIPE_POLLOUT);
    assert_rc(msgpipe_poll(&it, 1, SUP_T), 1);
    assert_int_equal(it.revents, MSGPIPE_POLLOUT);
    /* Fill the pipe: the peer does not read. */
    while (sent < MAX_SENDS) {
        rc = msgpipe_send(pr.c, m, MSG, 0);
        if (rc != MSGPIPE_OK)
            break;
        sent++;
    }
    assert_rc(rc, MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_poll(&it, 1, 0), MSGPIPE_ETIMEDOUT);
    /* A reader makes room: writable again. */
    d.p = pr.s;
    d.count = 0;
    d.rc = MSGPIPE_OK;
    t = sup_thread_start(drain_main, &d);
    assert_rc(msgpipe_poll(&it, 1, SUP_T), 1);
    assert_int_equal(it.revents, MSGPIPE_POLLOUT);
    assert_rc(msgpipe_send(pr.c, m, 16, 0), MSGPIPE_OK);
    msgpipe_close(pr.c);
    pr.c = NULL;
    sup_thread_join(t);
    assert_rc(d.rc, MSGPIPE_ECLOSED);
    assert_int_equal(d.count, sent + 1);
    sup_pair_close(&pr);
    free(m);
}

static void test_poll_out_reports_dead_peer(void **state)
{
    sup_pair pr;
    msgpipe_pollitem it;
    (void)state;

    sup_pair_open(&pr, "poll", NULL, NULL);
    msgpipe_close(pr.s);
    pr.s = NULL;
    item_pipe(&it, pr.c, MSGPIPE_POLLOUT);
    assert_rc(msgpipe_poll(&it, 1, SUP_T), 1);
    assert_int_equal(it.revents, MSGPIPE_POLLOUT);
    assert_rc(msgpipe_send(pr.c, "x", 1, 0), MSGPIPE_ECLOSED);
    sup_pair_close(&pr);
}

/* ---- No busy waiting ---------------------------------------------------- */

static void test_idle_poll_uses_no_cpu(void **state)
{
    sup_pair pr;
    msgpipe_pollitem it[2];
    int64_t cpu0, cpu1, t0, t1;
    (void)state;

    sup_pair_open(&pr, "poll", NULL, NULL);
    item_pipe(&it[0], pr.c, MSGPIPE_POLLIN);
    item_server(&it[1], pr.srv);
    cpu0 = sup_cpu_ms();
    t0 = sup_now_ms();
    assert_rc(msgpipe_poll(it, 2, 600), MSGPIPE_ETIMEDOUT);
    t1 = sup_now_ms();
    cpu1 = sup_cpu_ms();
    assert_true(cpu0 >= 0 && cpu1 >= 0);
    print_message("idle poll: %ld ms of CPU over %ld ms\n", (long)(cpu1 - cpu0),
                  (long)(t1 - t0));
    /* A busy loop would burn about all of the 600 ms. */
    assert_true(cpu1 - cpu0 < 150);
    sup_pair_close(&pr);
}

/* ---- Scale -------------------------------------------------------------- */

/* More pipes than select() (FD_SETSIZE, 1,024) or one
 * WaitForMultipleObjects (64) can watch. */
static void test_poll_watches_more_pipes_than_select_or_wait(void **state)
{
#ifdef _WIN32
    enum { N = 160 };
#else
    enum { N = 1100 };
#endif
    msgpipe_server *srv = NULL;
    msgpipe **cl = (msgpipe **)calloc(N, sizeof(*cl));
    msgpipe **sv = (msgpipe **)calloc(N, sizeof(*sv));
    msgpipe_pollitem *it = (msgpipe_pollitem *)calloc(N, sizeof(*it));
    char name[96], buf[16];
    size_t len = 0;
    int i;
    (void)state;

    assert_non_null(cl);
    assert_non_null(sv);
    assert_non_null(it);
    if (!sup_raise_fd_limit(2 * N + 64)) {
        SUP_SKIP("cannot raise the open-file limit to hold 2,200 descriptors");
        return;
    }
    sup_name(name, sizeof(name), "poll");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    for (i = 0; i < N; i++) {
        assert_rc(msgpipe_connect(name, NULL, SUP_T, &cl[i]), MSGPIPE_OK);
        assert_rc(msgpipe_accept(srv, SUP_T, &sv[i]), MSGPIPE_OK);
        item_pipe(&it[i], sv[i], MSGPIPE_POLLIN);
        it[i].user = &sv[i];
    }
    assert_rc(msgpipe_poll(it, N, 0), MSGPIPE_ETIMEDOUT);
    /* The last one speaks: exactly it is reported. */
    assert_rc(msgpipe_send(cl[N - 1], "last", 4, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_poll(it, N, SUP_T), 1);
    for (i = 0; i < N - 1; i++)
        assert_int_equal(it[i].revents, 0);
    assert_int_equal(it[N - 1].revents, MSGPIPE_POLLIN);
    assert_ptr_equal(it[N - 1].user, &sv[N - 1]);
    /* Then the first and one in the middle too. */
    assert_rc(msgpipe_send(cl[0], "first", 5, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_send(cl[N / 2], "mid", 3, SUP_T), MSGPIPE_OK);
    {
        int64_t until = sup_now_ms() + SUP_T;
        int rc;
        do {
            rc = msgpipe_poll(it, N, SUP_T);
        } while (rc > 0 && rc < 3 && sup_now_ms() < until);
        assert_rc(rc, 3);
    }
    assert_int_equal(it[0].revents, MSGPIPE_POLLIN);
    assert_int_equal(it[N / 2].revents, MSGPIPE_POLLIN);
    assert_rc(msgpipe_recv(sv[N / 2], buf, sizeof(buf), &len, 0), MSGPIPE_OK);
    assert_int_equal(len, 3);
    assert_memory_equal(buf, "mid", 3);
    for (i = 0; i < N; i++) {
        msgpipe_close(cl[i]);
        msgpipe_close(sv[i]);
    }
    msgpipe_server_close(srv);
    free(cl);
    free(sv);
    free(it);
}

/* ---- One thread serves 200 clients ------------------------------------- */

enum { CLIENTS = 200, PER_CLIENT = 10 };

typedef struct {
    char name[96];
    msgpipe_server *srv;
    long echoed;
    int closed;
    int rc; /* first unexpected result, or OK */
} poll_server;

/* One thread: accepts every client and echoes every message, using only
 * msgpipe_poll to wait, until all clients have closed. */
static void *poll_server_main(void *arg)
{
    poll_server *ps = (poll_server *)arg;
    msgpipe_pollitem *it = (msgpipe_pollitem *)calloc(CLIENTS + 1, sizeof(*it));
    size_t n = 1, i;
    int accepted = 0;

    item_server(&it[0], ps->srv);
    ps->rc = MSGPIPE_OK;
    while (ps->closed < CLIENTS && ps->rc == MSGPIPE_OK) {
        int rc = msgpipe_poll(it, n, SUP_T_LONG);
        if (rc < 0) {
            ps->rc = rc;
            break;
        }
        if (it[0].revents & MSGPIPE_POLLIN) {
            msgpipe *p;
            while ((rc = msgpipe_accept(ps->srv, 0, &p)) == MSGPIPE_OK) {
                if (accepted >= CLIENTS) {
                    ps->rc = MSGPIPE_EINVAL; /* more clients than expected */
                    msgpipe_close(p);
                    break;
                }
                item_pipe(&it[n++], p, MSGPIPE_POLLIN);
                accepted++;
            }
            if (rc != MSGPIPE_ETIMEDOUT && ps->rc == MSGPIPE_OK)
                ps->rc = rc;
        }
        for (i = 1; i < n; i++) {
            void *m;
            size_t len;
            if (it[i].pipe == NULL || !(it[i].revents & MSGPIPE_POLLIN))
                continue;
            while ((rc = msgpipe_recv_alloc(it[i].pipe, &m, &len, 0)) ==
                   MSGPIPE_OK) {
                rc = msgpipe_send(it[i].pipe, m, len, SUP_T);
                msgpipe_free(m);
                if (rc != MSGPIPE_OK)
                    break;
                ps->echoed++;
            }
            if (rc == MSGPIPE_ECLOSED) {
                msgpipe_close(it[i].pipe);
                it[i].pipe = NULL; /* a hole: skipped from now on */
                ps->closed++;
            } else if (rc != MSGPIPE_ETIMEDOUT && ps->rc == MSGPIPE_OK) {
                ps->rc = rc;
            }
        }
    }
    for (i = 1; i < n; i++)
        msgpipe_close(it[i].pipe);
    free(it);
    return NULL;
}

static void test_one_thread_serves_200_clients(void **state)
{
    poll_server ps;
    sup_thread *t;
    msgpipe **cl = (msgpipe **)calloc(CLIENTS, sizeof(*cl));
    msgpipe_pollitem *it = (msgpipe_pollitem *)calloc(CLIENTS, sizeof(*it));
    int *got = (int *)calloc(CLIENTS, sizeof(int));
    unsigned char msg[300];
    int i, k, done = 0;
    (void)state;

    assert_non_null(cl);
    assert_non_null(it);
    assert_non_null(got);
    if (!sup_raise_fd_limit(4 * CLIENTS + 64)) {
        SUP_SKIP("cannot raise the open-file limit for 200 clients");
        return;
    }
    memset(&ps, 0, sizeof(ps));
    sup_name(ps.name, sizeof(ps.name), "poll");
    assert_rc(msgpipe_listen(ps.name, NULL, &ps.srv), MSGPIPE_OK);
    t = sup_thread_start(poll_server_main, &ps);

    /* The clients, all driven from this thread: each sends its messages
     * (id, sequence number, a pattern of a length that varies). */
    for (i = 0; i < CLIENTS; i++) {
        assert_rc(msgpipe_connect(ps.name, NULL, SUP_T, &cl[i]), MSGPIPE_OK);
        for (k = 0; k < PER_CLIENT; k++) {
            size_t len = 8 + (size_t)((i * 7 + k * 13) % 290);
            sup_put32(msg, (uint32_t)i);
            sup_put32(msg + 4, (uint32_t)k);
            sup_fill(msg + 8, len - 8, (uint32_t)(i * 1000 + k));
            assert_rc(msgpipe_send(cl[i], msg, len, SUP_T), MSGPIPE_OK);
        }
        item_pipe(&it[i], cl[i], MSGPIPE_POLLIN);
    }
    /* Every echo comes back to its own client, whole and in order. */
    while (done < CLIENTS) {
        int rc = msgpipe_poll(it, CLIENTS, SUP_T_LONG);
        assert_true(rc > 0);
        for (i = 0; i < CLIENTS; i++) {
            size_t len = 0;
            if (!(it[i].revents & MSGPIPE_POLLIN))
                continue;
            while ((rc = msgpipe_recv(cl[i], msg, sizeof(msg), &len, 0)) ==
                   MSGPIPE_OK) {
                k = got[i];
                assert_true(k < PER_CLIENT);
                assert_int_equal(len, 8 + (size_t)((i * 7 + k * 13) % 290));
                assert_int_equal(sup_get32(msg), (uint32_t)i);
                assert_int_equal(sup_get32(msg + 4), (uint32_t)k);
                assert_pattern(msg + 8, len - 8, (uint32_t)(i * 1000 + k));
                if (++got[i] == PER_CLIENT) {
                    done++;
                    it[i].pipe = NULL;
                }
            }
            assert_rc(rc, MSGPIPE_ETIMEDOUT);
        }
    }
    for (i = 0; i < CLIENTS; i++)
        msgpipe_close(cl[i]);
    sup_thread_join(t);
    assert_rc(ps.rc, MSGPIPE_OK);
    assert_int_equal(ps.echoed, (long)CLIENTS * PER_CLIENT);
    assert_int_equal(ps.closed, CLIENTS);
    msgpipe_server_close(ps.srv);
    free(cl);
    free(it);
    free(got);
}

/* ---- Native handles ----------------------------------------------------- */

static void test_native_handle_follows_the_drain_rule(void **state)
{
    sup_pair pr;
    msgpipe_native h;
    char buf[16];
    size_t len = 0;
    int i;
    (void)state;

    sup_pair_open(&pr, "poll", NULL, NULL);
    assert_rc(msgpipe_native_handle(pr.c, MSGPIPE_POLLIN, &h), MSGPIPE_OK);
    /* Before the first wait: drain (nothing yet). */
    assert_rc(msgpipe_recv(pr.c, buf, sizeof(buf), &len, 0), MSGPIPE_ETIMEDOUT);
    assert_int_equal(sup_wait_native(h, MSGPIPE_POLLIN, 0), 0);
    for (i = 0; i < 3; i++)
        assert_rc(msgpipe_send(pr.s, "msg", 3, SUP_T), MSGPIPE_OK);
    assert_int_equal(sup_wait_native(h, MSGPIPE_POLLIN, SUP_T), 1);
    /* Ready: receive with timeout 0 until ETIMEDOUT - all three are there
     * although the handle may no longer be ready after the first. */
    for (i = 0; i < 3; i++) {
        int64_t until = sup_now_ms() + SUP_T;
        int rc;
        while ((rc = msgpipe_recv(pr.c, buf, sizeof(buf), &len, 0)) ==
                   MSGPIPE_ETIMEDOUT &&
               sup_now_ms() < until)
            assert_int_equal(sup_wait_native(h, MSGPIPE_POLLIN, SUP_T), 1);
        assert_rc(rc, MSGPIPE_OK);
        assert_int_equal(len, 3);
    }
    assert_rc(msgpipe_recv(pr.c, buf, sizeof(buf), &len, 0), MSGPIPE_ETIMEDOUT);
    assert_int_equal(sup_wait_native(h, MSGPIPE_POLLIN, 0), 0);
    /* The end of the pipe makes it ready too. */
    msgpipe_close(pr.s);
    pr.s = NULL;
    assert_int_equal(sup_wait_native(h, MSGPIPE_POLLIN, SUP_T), 1);
    assert_rc(msgpipe_recv(pr.c, buf, sizeof(buf), &len, 0), MSGPIPE_ECLOSED);
    sup_pair_close(&pr);
}

static void test_server_native_handle_is_ready_with_a_client(void **state)
{
    msgpipe_server *srv = NULL;
    msgpipe *c = NULL, *a = NULL;
    msgpipe_native h;
    char name[96];
    (void)state;

    sup_name(name, sizeof(name), "poll");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_server_native_handle(srv, &h), MSGPIPE_OK);
    assert_int_equal(sup_wait_native(h, MSGPIPE_POLLIN, 0), 0);
    assert_rc(msgpipe_connect(name, NULL, SUP_T, &c), MSGPIPE_OK);
    assert_int_equal(sup_wait_native(h, MSGPIPE_POLLIN, SUP_T), 1);
    assert_rc(msgpipe_accept(srv, 0, &a), MSGPIPE_OK);
    assert_rc(msgpipe_send(c, "hi", 2, SUP_T), MSGPIPE_OK);
    msgpipe_close(a);
    msgpipe_close(c);
    msgpipe_server_close(srv);
}

static void test_native_handle_for_output(void **state)
{
    sup_pair pr;
    msgpipe_native h;
    (void)state;

    sup_pair_open(&pr, "poll", NULL, NULL);
    assert_rc(msgpipe_native_handle(pr.c, 0, &h), MSGPIPE_EINVAL);
    assert_rc(msgpipe_native_handle(pr.c, MSGPIPE_POLLIN | MSGPIPE_POLLOUT, &h),
              MSGPIPE_EINVAL);
    assert_rc(msgpipe_native_handle(NULL, MSGPIPE_POLLIN, &h), MSGPIPE_EINVAL);
    assert_rc(msgpipe_server_native_handle(NULL, &h), MSGPIPE_EINVAL);
#ifdef _WIN32
    /* Windows has no waitable object for room in a pipe. */
    assert_rc(msgpipe_native_handle(pr.c, MSGPIPE_POLLOUT, &h),
              MSGPIPE_ENOTSUP);
#else
    assert_rc(msgpipe_native_handle(pr.c, MSGPIPE_POLLOUT, &h), MSGPIPE_OK);
    assert_int_equal(sup_wait_native(h, MSGPIPE_POLLOUT, SUP_T), 1);
#endif
    sup_pair_close(&pr);
}

/* ---- No more poll() slots than descriptors ------------------------------
 *
 * poll(2) refuses more slots than RLIMIT_NOFILE (EINVAL).  Each item may
 * need two slots (input and output), but a pipe watched for input only
 * uses one: msgpipe_poll must pass only the slots it uses.  Here both ends
 * of many pairs are watched for input, under a soft limit just above the
 * number of descriptors open - fewer than two slots per item. */
#ifndef _WIN32
static long count_open_fds(void)
{
    struct rlimit rl;
    long fd, n = 0, top = 65536;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (long)rl.rlim_cur < top)
        top = (long)rl.rlim_cur;
    for (fd = 0; fd < top; fd++)
        if (fcntl((int)fd, F_GETFD) != -1)
            n++;
    return n;
}

static void test_poll_never_asks_for_more_slots_than_descriptors(void **state)
{
    enum { PAIRS = 150, N = 2 * PAIRS };
    msgpipe *p[N];
    msgpipe_pollitem it[N];
    struct rlimit old, low;
    char buf[16];
    size_t len = 0;
    int i, rc, lowered;
    (void)state;

    for (i = 0; i < PAIRS; i++)
        assert_rc(msgpipe_pair(NULL, &p[2 * i], &p[2 * i + 1]), MSGPIPE_OK);
    for (i = 0; i < N; i++)
        item_pipe(&it[i], p[i], MSGPIPE_POLLIN);
    assert_rc(msgpipe_send(p[N - 2], "last", 4, SUP_T), MSGPIPE_OK);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = (rlim_t)(count_open_fds() + 16);
    /* The point of the test: fewer descriptors than two slots per item.
     * (A FIFO pipe has two descriptors: there the test only checks that
     * a tight limit does no harm.) */
    if (!sup_is_fifo())
        assert_true(low.rlim_cur < (rlim_t)(2 * N));
    lowered = setrlimit(RLIMIT_NOFILE, &low) == 0;
    rc = msgpipe_poll(it, N, SUP_T);
    if (lowered)
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    assert_true(lowered);
    assert_rc(rc, 1);
    for (i = 0; i < N - 1; i++)
        assert_int_equal(it[i].revents, 0);
    assert_int_equal(it[N - 1].revents, MSGPIPE_POLLIN);
    assert_rc(msgpipe_recv(p[N - 1], buf, sizeof(buf), &len, 0), MSGPIPE_OK);
    assert_int_equal(len, 4);
    for (i = 0; i < N; i++)
        msgpipe_close(p[i]);
}
#endif

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_poll_rejects_invalid_items),
        cmocka_unit_test(test_poll_skips_holes_and_empty_arrays_just_wait),
        cmocka_unit_test(test_poll_with_nothing_ready_times_out),
        cmocka_unit_test(test_poll_zero_timeout_does_not_wait),
        cmocka_unit_test(test_poll_infinite_is_woken_by_a_message),
        cmocka_unit_test(test_poll_reports_end_of_pipe_as_readable),
        cmocka_unit_test(test_poll_reports_messages_before_the_end),
        cmocka_unit_test(test_poll_reports_buffered_messages_until_drained),
        cmocka_unit_test(test_poll_reports_large_message_only_when_whole),
        cmocka_unit_test(test_poll_reports_oversized_message_then_the_next),
        cmocka_unit_test(test_poll_server_reports_waiting_client),
        cmocka_unit_test(test_poll_server_reports_shutdown),
        cmocka_unit_test(test_poll_out_follows_room_in_the_pipe),
        cmocka_unit_test(test_poll_out_reports_dead_peer),
        cmocka_unit_test(test_idle_poll_uses_no_cpu),
        cmocka_unit_test(test_poll_watches_more_pipes_than_select_or_wait),
        cmocka_unit_test(test_one_thread_serves_200_clients),
        cmocka_unit_test(test_native_handle_follows_the_drain_rule),
        cmocka_unit_test(test_server_native_handle_is_ready_with_a_client),
        cmocka_unit_test(test_native_handle_for_output),
#ifndef _WIN32
        cmocka_unit_test(test_poll_never_asks_for_more_slots_than_descriptors),
#endif
    };

    sup_init(argc, argv);
    return sup_finish(cmocka_run_group_tests_name("poll", tests, NULL, NULL));
}
