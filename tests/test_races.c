/*
 * test_races.c - the header's promises under unfriendly timing: threads
 * that use one pipe at once, servers racing for one name, waits that must
 * finish what a timed-out send left, readiness that must be exact, and
 * clients left waiting when descriptors run out or the server closes.
 *
 * Tests that mean nothing on a backend (allow_uids and XDG_RUNTIME_DIR on
 * Windows) are not registered there; the rest run everywhere.
 */
#include "support.h"

#include "backend.h" /* msgpipe__mem: allocations made to fail */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef _WIN32
#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

/* Rounds of the listen races: enough to catch a window of microseconds,
 * few enough for valgrind and TSan.  MSGPIPE_TEST_RACE_ROUNDS overrides. */
#define RACE_ROUNDS 600
#define RACE_PROC_ROUNDS 100
#define RACE_PROC_SLOT_MS 8
#define RACE_PROC_HOLD_MS 2000 /* past the last round, for a late process */

static void item_server(msgpipe_pollitem *it, msgpipe_server *s,
                        unsigned events)
{
    memset(it, 0, sizeof(*it));
    it->server = s;
    it->events = events;
}

/* ---- One sender and one receiver on a client not yet accepted ---------- */

typedef struct {
    msgpipe *p;
    volatile long *go, *stop;
    long sent;
    int rc;
    char answer[16];
} early_peer;

/* Sends small messages with timeout 0 as fast as it can (each send looks
 * for the acceptance first) until told to stop, then "end". */
static void *early_sender(void *arg)
{
    early_peer *e = (early_peer *)arg;
    char msg[100];
    int rc;

    memset(msg, 'm', sizeof(msg));
    while (sup_atomic_get(e->go) == 0)
        ;
    while (sup_atomic_get(e->stop) == 0) {
        rc = msgpipe_send(e->p, msg, sizeof(msg), 0);
        if (rc == MSGPIPE_OK)
            e->sent++;
        else if (rc != MSGPIPE_ETIMEDOUT) {
            e->rc = rc;
            return NULL;
        }
    }
    e->rc = msgpipe_send(e->p, "end", 3, SUP_T);
    return NULL;
}

static void *early_receiver(void *arg)
{
    early_peer *e = (early_peer *)arg;
    size_t len = 0;

    while (sup_atomic_get(e->go) == 0)
        ;
    e->rc = msgpipe_recv(e->p, e->answer, sizeof(e->answer) - 1, &len, SUP_T);
    e->answer[len] = '\0';
    return NULL;
}

static void
test_send_and_recv_at_once_on_a_client_not_yet_accepted(void **state)
{
    int round;
    (void)state;

    for (round = 0; round < 20; round++) {
        char name[96], buf[128];
        msgpipe_server *srv;
        msgpipe *c, *s;
        early_peer tx, rx;
        sup_thread *t1, *t2;
        volatile long go = 0, stop = 0;
        long got = 0;
        size_t len;

        sup_name(name, sizeof(name), "races");
        assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
        assert_rc(msgpipe_connect(name, NULL, SUP_T, &c), MSGPIPE_OK);
        memset(&tx, 0, sizeof(tx));
        memset(&rx, 0, sizeof(rx));
        tx.p = rx.p = c;
        tx.go = rx.go = &go;
        tx.stop = rx.stop = &stop;
        t1 = sup_thread_start(early_sender, &tx);
        t2 = sup_thread_start(early_receiver, &rx);
        sup_atomic_set(&go, 1);
        sup_sleep_ms(round % 4);
        /* Accept while one thread sends and the other waits to receive. */
        assert_rc(msgpipe_accept(srv, SUP_T, &s), MSGPIPE_OK);
        sup_sleep_ms(1);
        sup_atomic_set(&stop, 1);
        for (;;) {
            assert_rc(msgpipe_recv(s, buf, sizeof(buf), &len, SUP_T),
                      MSGPIPE_OK);
            if (len == 3)
                break;
            assert_int_equal(len, 100);
            got++;
        }
        assert_rc(msgpipe_send(s, "answer", 6, SUP_T), MSGPIPE_OK);
        sup_thread_join(t1);
        sup_thread_join(t2);
        assert_rc(tx.rc, MSGPIPE_OK);
        assert_int_equal(got, tx.sent);
        assert_rc(rx.rc, MSGPIPE_OK);
        assert_string_equal(rx.answer, "answer");
        msgpipe_close(c);
        msgpipe_close(s);
        msgpipe_server_close(srv);
    }
}

/* ---- Two servers, one name --------------------------------------------- */

typedef struct {
    const char *name;
    volatile long *go;
    msgpipe_server *srv;
    int rc;
} listener;

static void *listen_main(void *arg)
{
    listener *l = (listener *)arg;

    while (sup_atomic_get(l->go) == 0)
        ;
    l->rc = msgpipe_listen(l->name, NULL, &l->srv);
    return NULL;
}

static void test_two_threads_listening_at_once_one_wins(void **state)
{
    long rounds = sup_env_long("MSGPIPE_TEST_RACE_ROUNDS", RACE_ROUNDS);
    long round, both = 0, neither = 0;
    (void)state;

    for (round = 0; round < rounds; round++) {
        char name[96];
        listener a, b;
        sup_thread *ta, *tb;
        volatile long go = 0;

        sup_name(name, sizeof(name), "races");
        memset(&a, 0, sizeof(a));
        memset(&b, 0, sizeof(b));
        a.name = b.name = name;
        a.go = b.go = &go;
        ta = sup_thread_start(listen_main, &a);
        tb = sup_thread_start(listen_main, &b);
        sup_atomic_set(&go, 1);
        sup_thread_join(ta);
        sup_thread_join(tb);
        if (a.rc == MSGPIPE_OK && b.rc == MSGPIPE_OK)
            both++;
        else if (a.rc != MSGPIPE_OK && b.rc != MSGPIPE_OK) {
            if (neither++ == 0)
                print_error("round %ld: neither listen succeeded: %s, %s\n",
                            round, msgpipe_errname(a.rc),
                            msgpipe_errname(b.rc));
        } else
            assert_rc(a.rc == MSGPIPE_OK ? b.rc : a.rc, MSGPIPE_EADDRINUSE);
        msgpipe_server_close(a.srv);
        msgpipe_server_close(b.srv);
    }
    if (both != 0 || neither != 0)
        print_error("%ld of %ld rounds: both listens succeeded; %ld: "
                    "neither\n",
                    both, rounds, neither);
    assert_int_equal(both, 0);
    assert_int_equal(neither, 0);
}

/* Child "listen BASE T0 ROUNDS": at T0 + k * slot, listen on BASE-k; on
 * success, check that the name reaches this server (a client connecting
 * to it is accepted here), and keep the server until both processes are
 * surely past every round, so that each name is won exactly once.  Exits
 * with the number of rounds won, or 200 if a listen succeeded on a name
 * that leads elsewhere. */
static int child_listen(const char *base, int64_t t0, long rounds)
{
    msgpipe_server *won[RACE_PROC_ROUNDS];
    int64_t end = t0 + rounds * RACE_PROC_SLOT_MS + RACE_PROC_HOLD_MS;
    long k, n = 0, i;
    int bad = 0;

    for (k = 0; k < rounds && k < RACE_PROC_ROUNDS && !bad; k++) {
        char name[128];
        msgpipe_server *srv;
        msgpipe *c, *s;
        int64_t at = t0 + k * RACE_PROC_SLOT_MS, now = sup_now_ms();
        int rc;

        if (at > now)
            sup_sleep_ms((int)(at - now));
        snprintf(name, sizeof(name), "%s-%ld", base, k);
        if (msgpipe_listen(name, NULL, &srv) != MSGPIPE_OK)
            continue;
        won[n++] = srv;
        rc = msgpipe_connect(name, NULL, SUP_T, &c);
        if (rc == MSGPIPE_OK) {
            rc = msgpipe_accept(srv, SUP_T, &s);
            if (rc == MSGPIPE_OK)
                msgpipe_close(s);
            msgpipe_close(c);
        }
        if (rc != MSGPIPE_OK) {
            fprintf(stderr, "round %ld: listen succeeded, but %s\n", k,
                    msgpipe_errname(rc));
            bad = 1;
        }
    }
    if (sup_now_ms() < end)
        sup_sleep_ms((int)(end - sup_now_ms()));
    for (i = 0; i < n; i++)
        msgpipe_server_close(won[i]);
    return bad ? 200 : (int)n;
}

static void test_two_processes_listening_at_once_one_wins(void **state)
{
    char base[96], t0s[32], ns[16];
    const char *args[5];
    sup_proc *a, *b;
    int ra, rb;
    (void)state;

    sup_name(base, sizeof(base), "races");
    /* Time enough for both children to start, even under valgrind. */
    snprintf(t0s, sizeof(t0s), "%lld", (long long)(sup_now_ms() + 1500));
    snprintf(ns, sizeof(ns), "%d", RACE_PROC_ROUNDS);
    args[0] = "listen";
    args[1] = base;
    args[2] = t0s;
    args[3] = ns;
    args[4] = NULL;
    a = sup_spawn_self(args);
    b = sup_spawn_self(args);
    ra = sup_proc_wait(a);
    rb = sup_proc_wait(b);
    assert_int_not_equal(ra, 200);
    assert_int_not_equal(rb, 200);
    /* Every round was won by exactly one of them. */
    assert_int_equal(ra + rb, RACE_PROC_ROUNDS);
}

/* ---- Polling finishes a half-sent request ------------------------------ */

#define BIG (8u << 20)

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
    if (a->rc == MSGPIPE_OK && len != BIG)
        a->rc = MSGPIPE_EIO;
    if (a->rc == MSGPIPE_OK && sup_check(m, len, 8) != (size_t)-1)
        a->rc = MSGPIPE_EPROTO;
    msgpipe_free(m);
    if (a->rc == MSGPIPE_OK)
        a->rc = msgpipe_send(a->p, "answer", 6, SUP_T);
    return NULL;
}

static void test_poll_for_input_finishes_a_half_sent_request(void **state)
{
    sup_pair pr;
    answerer an;
    sup_thread *t;
    msgpipe_pollitem it;
    unsigned char *big = (unsigned char *)malloc(BIG);
    char buf[16];
    size_t len;
    int rc;
    (void)state;

    assert_non_null(big);
    sup_fill(big, BIG, 8);
    sup_pair_open(&pr, "races", NULL, NULL);
    an.p = pr.s;
    an.rc = -1;
    t = sup_thread_start(answer_main, &an);
    /* The server is not reading yet: part goes out, the rest is kept. */
    assert_rc(msgpipe_send(pr.c, big, BIG, 20), MSGPIPE_OK);
    memset(&it, 0, sizeof(it));
    it.pipe = pr.c;
    it.events = MSGPIPE_POLLIN;
    rc = msgpipe_poll(&it, 1, SUP_T);
    assert_rc(rc, 1);
    assert_int_equal(it.revents, MSGPIPE_POLLIN);
    assert_rc(msgpipe_recv(pr.c, buf, sizeof(buf), &len, 0), MSGPIPE_OK);
    assert_memory_equal(buf, "answer", 6);
    sup_thread_join(t);
    assert_rc(an.rc, MSGPIPE_OK);
    free(big);
    sup_pair_close(&pr);
}

/* ---- A batch cut short by a closing peer -------------------------------- */

static void *recv_one_then_close(void *arg)
{
    answerer *a = (answerer *)arg;
    char buf[256];
    size_t len = 0;

    a->rc = msgpipe_recv(a->p, buf, sizeof(buf), &len, SUP_T);
    if (a->rc == MSGPIPE_OK && len != 100)
        a->rc = MSGPIPE_EIO;
    msgpipe_close(a->p);
    return NULL;
}

/* The first message of a batch went out whole (the peer even received
 * it) before the peer closed in the middle of the second: *sent counts
 * it, as the header promises for every committed message. */
static void test_batch_cut_by_a_closing_peer_counts_what_went_out(void **state)
{
    sup_pair pr;
    answerer an;
    sup_thread *t;
    msgpipe_msg m[2];
    unsigned char small[100];
    unsigned char *big = (unsigned char *)malloc(BIG);
    size_t sent = 99;
    (void)state;

    assert_non_null(big);
    memset(small, 's', sizeof(small));
    memset(big, 'b', BIG);
    sup_pair_open(&pr, "races", NULL, NULL);
    an.p = pr.s;
    an.rc = -1;
    pr.s = NULL; /* the thread closes it */
    t = sup_thread_start(recv_one_then_close, &an);
    m[0].data = small;
    m[0].len = sizeof(small);
    m[1].data = big;
    m[1].len = BIG;
    assert_rc(msgpipe_send_batch(pr.c, m, 2, &sent, SUP_T), MSGPIPE_ECLOSED);
    sup_thread_join(t);
    assert_rc(an.rc, MSGPIPE_OK);
    assert_int_equal(sent, 1);
    free(big);
    sup_pair_close(&pr);
}

/* ---- Server readiness -------------------------------------------------- */

static void test_poll_server_item_without_events_is_not_ready(void **state)
{
    char name[96];
    msgpipe_server *srv;
    msgpipe *c, *s;
    msgpipe_pollitem it;
    (void)state;

    sup_name(name, sizeof(name), "races");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_connect(name, NULL, SUP_T, &c), MSGPIPE_OK);
    item_server(&it, srv, 0);
    assert_rc(msgpipe_poll(&it, 1, 200), MSGPIPE_ETIMEDOUT);
    assert_int_equal(it.revents, 0);
    /* With events, the same item is ready. */
    item_server(&it, srv, MSGPIPE_POLLIN);
    assert_rc(msgpipe_poll(&it, 1, SUP_T), 1);
    assert_rc(msgpipe_accept(srv, 0, &s), MSGPIPE_OK);
    msgpipe_close(s);
    msgpipe_close(c);
    msgpipe_server_close(srv);
}

#ifndef _WIN32
static void listen_for_uid(const char *name, int64_t uid, msgpipe_server **srv)
{
    msgpipe_options o;

    msgpipe_options_init(&o);
    o.allow_uids = &uid;
    o.n_allow_uids = 1;
    assert_rc(msgpipe_listen(name, &o, srv), MSGPIPE_OK);
}

static void test_poll_server_not_ready_for_a_client_not_admitted(void **state)
{
    char name[96];
    msgpipe_server *srv;
    msgpipe *c, *s = NULL;
    msgpipe_pollitem it;
    size_t len;
    char buf[8];
    (void)state;

    sup_name(name, sizeof(name), "races");
    listen_for_uid(name, sup_getuid() + 1000, &srv);
    assert_rc(msgpipe_connect(name, NULL, SUP_T, &c), MSGPIPE_OK);
    item_server(&it, srv, MSGPIPE_POLLIN);
    assert_rc(msgpipe_poll(&it, 1, 300), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_accept(srv, 0, &s), MSGPIPE_ETIMEDOUT);
    /* The client was turned away, as by an accept. */
    assert_rc(msgpipe_recv(c, buf, sizeof(buf), &len, SUP_T), MSGPIPE_ECLOSED);
    msgpipe_close(c);
    msgpipe_server_close(srv);
}

static void test_poll_server_ready_for_an_admitted_client(void **state)
{
    char name[96];
    msgpipe_server *srv;
    msgpipe *c, *s;
    msgpipe_pollitem it;
    size_t len;
    char buf[8];
    (void)state;

    sup_name(name, sizeof(name), "races");
    listen_for_uid(name, sup_getuid(), &srv);
    assert_rc(msgpipe_connect(name, NULL, SUP_T, &c), MSGPIPE_OK);
    assert_rc(msgpipe_send(c, "hi", 2, SUP_T), MSGPIPE_OK);
    item_server(&it, srv, MSGPIPE_POLLIN);
    assert_rc(msgpipe_poll(&it, 1, SUP_T), 1);
    assert_rc(msgpipe_accept(srv, 0, &s), MSGPIPE_OK);
    assert_rc(msgpipe_recv(s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 2);
    msgpipe_close(s);
    msgpipe_close(c);
    msgpipe_server_close(srv);
}

/* A server polled ready and then closed without an accept releases the
 * client it took. */
static void test_server_closed_after_poll_releases_the_client(void **state)
{
    char name[96];
    msgpipe_server *srv;
    msgpipe *c;
    msgpipe_pollitem it;
    size_t len;
    char buf[8];
    (void)state;

    sup_name(name, sizeof(name), "races");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_connect(name, NULL, SUP_T, &c), MSGPIPE_OK);
    item_server(&it, srv, MSGPIPE_POLLIN);
    assert_rc(msgpipe_poll(&it, 1, SUP_T), 1);
    msgpipe_server_close(srv);
    assert_rc(msgpipe_recv(c, buf, sizeof(buf), &len, SUP_T), MSGPIPE_ECLOSED);
    msgpipe_close(c);
}

/* ---- Out of descriptors at accept -------------------------------------- */

/* valgrind keeps its own descriptor limit: a socket accept(2) beyond it is
 * made by the kernel, then closed by valgrind, which reports EMFILE - the
 * connection is gone before msgpipe sees it. */
static int under_valgrind(void)
{
    const char *p = getenv("LD_PRELOAD");
    return p != NULL && strstr(p, "vgpreload") != NULL;
}

static void test_accept_after_emfile_gets_the_waiting_client(void **state)
{
    char name[96], buf[8];
    msgpipe_server *srv;
    msgpipe *c, *s = NULL;
    struct rlimit old, low;
    int fds[4096], n = 0, fd;
    size_t len;
    (void)state;

    if (!sup_is_fifo() && under_valgrind())
        SUP_SKIP("valgrind closes a socket accepted beyond its own limit");
    sup_name(name, sizeof(name), "races");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_connect(name, NULL, SUP_T, &c), MSGPIPE_OK);
    assert_rc(msgpipe_send(c, "hi", 2, SUP_T), MSGPIPE_OK);
    /* Use up every descriptor below a lowered limit. */
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    fd = dup(0);
    assert_true(fd >= 0);
    close(fd);
    low.rlim_cur =
        (rlim_t)fd + 64 < old.rlim_cur ? (rlim_t)fd + 64 : old.rlim_cur;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    while (n < (int)(sizeof(fds) / sizeof(fds[0])) && (fd = dup(0)) >= 0)
        fds[n++] = fd;
    assert_int_equal(errno, EMFILE);
    assert_rc(msgpipe_accept(srv, 0, &s), MSGPIPE_EMFILE);
    while (n > 0)
        close(fds[--n]);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    /* "Close some and call again": the client is still there. */
    assert_rc(msgpipe_accept(srv, SUP_T, &s), MSGPIPE_OK);
    assert_rc(msgpipe_recv(s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 2);
    msgpipe_close(s);
    msgpipe_close(c);
    msgpipe_server_close(srv);
}

/* ---- Out of memory at accept ------------------------------------------- */

static void *no_malloc(size_t n)
{
    (void)n;
    return NULL;
}

static void *no_calloc(size_t n, size_t size)
{
    (void)n;
    (void)size;
    return NULL;
}

static void test_accept_after_enomem_gets_the_waiting_client(void **state)
{
    char name[96], buf[8];
    msgpipe_server *srv;
    msgpipe *c, *s = NULL;
    msgpipe__allocator saved = msgpipe__mem;
    size_t len;
    int rc;
    (void)state;

    sup_name(name, sizeof(name), "races");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_connect(name, NULL, SUP_T, &c), MSGPIPE_OK);
    assert_rc(msgpipe_send(c, "hi", 2, SUP_T), MSGPIPE_OK);
    msgpipe__mem.malloc = no_malloc;
    msgpipe__mem.calloc = no_calloc;
    rc = msgpipe_accept(srv, SUP_T, &s);
    msgpipe__mem = saved;
    assert_rc(rc, MSGPIPE_ENOMEM);
    assert_null(s);
    /* The connection was not dropped: the next accept gets it. */
    assert_rc(msgpipe_accept(srv, SUP_T, &s), MSGPIPE_OK);
    assert_rc(msgpipe_recv(s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 2);
    msgpipe_close(s);
    msgpipe_close(c);
    msgpipe_server_close(srv);
}
#endif

/* ---- Clients still queued when the server closes ----------------------- */

static void test_queued_client_sees_eclosed_when_the_server_closes(void **state)
{
    char name[96], buf[8];
    msgpipe_server *srv;
    msgpipe *c;
    size_t len;
    (void)state;

    sup_name(name, sizeof(name), "races");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_connect(name, NULL, SUP_T, &c), MSGPIPE_OK);
    msgpipe_server_close(srv);
    assert_rc(msgpipe_recv(c, buf, sizeof(buf), &len, SUP_T), MSGPIPE_ECLOSED);
    assert_rc(msgpipe_send(c, "x", 1, SUP_T), MSGPIPE_ECLOSED);
    msgpipe_close(c);
}

static void *close_main(void *arg)
{
    msgpipe_close((msgpipe *)arg);
    return NULL;
}

static void
test_closing_a_client_its_server_never_took_does_not_linger(void **state)
{
    char name[96];
    msgpipe_server *srv;
    msgpipe_options o;
    msgpipe *c;
    sup_thread *t;
    (void)state;

    msgpipe_options_init(&o);
    o.linger_ms = SUP_T_LONG;
    sup_name(name, sizeof(name), "races");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_connect(name, &o, SUP_T, &c), MSGPIPE_OK);
    assert_rc(msgpipe_send(c, "sent before the close", 21, SUP_T), MSGPIPE_OK);
    msgpipe_server_close(srv);
    /* Nobody will ever take the message: close must not wait for it. */
    t = sup_thread_start(close_main, c);
    assert_int_equal(sup_thread_join_timeout(t, SUP_T, NULL), 0);
}

/* ---- Names and XDG_RUNTIME_DIR ----------------------------------------- */

#ifndef _WIN32
/* Listen on an absolute path and make a round trip with XDG_RUNTIME_DIR
 * set to `xdg`. */
static void round_trip_with_runtime_dir(const char *xdg)
{
    char name[96], path[128], buf[8];
    const char *saved = getenv("XDG_RUNTIME_DIR");
    char *keep = saved != NULL ? strdup(saved) : NULL;
    msgpipe_server *srv;
    msgpipe *c, *s;
    size_t len;

    sup_name(name, sizeof(name), "races");
    snprintf(path, sizeof(path), "/tmp/%s", name);
    assert_int_equal(setenv("XDG_RUNTIME_DIR", xdg, 1), 0);
    assert_rc(msgpipe_listen(path, NULL, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_connect(path, NULL, SUP_T, &c), MSGPIPE_OK);
    assert_rc(msgpipe_accept(srv, SUP_T, &s), MSGPIPE_OK);
    assert_rc(msgpipe_send(c, "hi", 2, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_send(s, "ho", 2, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(c, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    msgpipe_close(c);
    msgpipe_close(s);
    msgpipe_server_close(srv);
    if (keep != NULL)
        setenv("XDG_RUNTIME_DIR", keep, 1);
    else
        unsetenv("XDG_RUNTIME_DIR");
    free(keep);
}

static void test_absolute_path_works_with_a_missing_runtime_dir(void **state)
{
    (void)state;
    round_trip_with_runtime_dir("/nonexistent-msgpipe-runtime-dir");
}

static void test_absolute_path_works_when_runtime_dir_is_a_file(void **state)
{
    char path[96];
    int fd;
    (void)state;

    sup_name(path + 5, sizeof(path) - 5, "races-file");
    memcpy(path, "/tmp/", 5);
    fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    assert_true(fd >= 0);
    close(fd);
    round_trip_with_runtime_dir(path);
    unlink(path);
}
#endif

/* POSIX rules: "@" alone is EBADNAME whether or not the build has abstract
 * names (Windows: every "@..." name is ENOTSUP). */
static void test_at_sign_alone_is_a_bad_name(void **state)
{
    msgpipe_server *srv;
    msgpipe *c;
    (void)state;

    assert_rc(msgpipe_listen("@", NULL, &srv), MSGPIPE_EBADNAME);
    assert_rc(msgpipe_connect("@", NULL, 0, &c), MSGPIPE_EBADNAME);
}

/* ---- main -------------------------------------------------------------- */

static int child_main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[0], "listen") == 0)
        return child_listen(argv[1], (int64_t)strtoll(argv[2], NULL, 10),
                            strtol(argv[3], NULL, 10));
    fprintf(stderr, "unknown child mode\n");
    return 100;
}

int main(int argc, char **argv)
{
    const sup_test tests[] = {
        SUP_TEST(1, test_send_and_recv_at_once_on_a_client_not_yet_accepted),
        SUP_TEST(1, test_two_threads_listening_at_once_one_wins),
        SUP_TEST(1, test_two_processes_listening_at_once_one_wins),
        SUP_TEST(SUP_POSIX, test_poll_for_input_finishes_a_half_sent_request),
        SUP_TEST(1, test_batch_cut_by_a_closing_peer_counts_what_went_out),
        SUP_TEST(1, test_poll_server_item_without_events_is_not_ready),
#ifndef _WIN32
        SUP_TEST(1, test_poll_server_not_ready_for_a_client_not_admitted),
        SUP_TEST(1, test_poll_server_ready_for_an_admitted_client),
        SUP_TEST(1, test_server_closed_after_poll_releases_the_client),
        SUP_TEST(1, test_accept_after_emfile_gets_the_waiting_client),
        SUP_TEST(1, test_accept_after_enomem_gets_the_waiting_client),
#endif
        SUP_TEST(1, test_queued_client_sees_eclosed_when_the_server_closes),
        SUP_TEST(1,
                 test_closing_a_client_its_server_never_took_does_not_linger),
#ifndef _WIN32
        SUP_TEST(1, test_absolute_path_works_with_a_missing_runtime_dir),
        SUP_TEST(1, test_absolute_path_works_when_runtime_dir_is_a_file),
#endif
        SUP_TEST(SUP_POSIX, test_at_sign_alone_is_a_bad_name),
    };

    sup_init(argc, argv);
    if (sup_child_mode(argc, argv))
        return child_main(argc - 2, argv + 2);
    return sup_finish(SUP_RUN("races", tests));
}
