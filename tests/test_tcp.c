/*
 * test_tcp.c - tcp://HOST:PORT names and authkey: msgpipe with itself, and
 * with Python's multiprocessing.connection as the real peer
 * (tests/py_tcp_peer.py), and hostile peers during the handshake.
 */
#include "support.h"

#include "backend.h" /* msgpipe__name_parse, for the name rules */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
/* The raw clients below: Winsock's names for what POSIX has.  (Winsock is
 * started by the library's first TCP call, which every test makes before
 * a raw client connects.) */
typedef SOCKET raw_sock;
#define raw_close closesocket
#define RAW_BAD INVALID_SOCKET
#else
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>
typedef int raw_sock;
#define raw_close close
#define RAW_BAD (-1)
#endif

#ifdef __linux__
#define MPT_LINUX 1
#else
#define MPT_LINUX 0
#endif

static const char key_a[] = "secret key A";
static const char key_b[] = "another key";

/* Options with an authkey (NULL: none). */
static msgpipe_options *with_key(msgpipe_options *o, const char *key)
{
    msgpipe_options_init(o);
    if (key != NULL) {
        o->authkey = key;
        o->authkey_len = strlen(key);
    }
    return o;
}

/* A server on tcp://127.0.0.1:0 and the name clients use for it; skips
 * where this backend has no TCP. */
static msgpipe_server *tcp_server(const msgpipe_options *o, char *name,
                                  size_t cap)
{
    msgpipe_server *srv = NULL;
    size_t len;
    int rc = msgpipe_listen("tcp://127.0.0.1:0", o, &srv);

    if (rc == MSGPIPE_ENOTSUP)
        SUP_SKIP("no tcp:// on this backend");
    assert_rc(rc, MSGPIPE_OK);
    assert_rc(msgpipe_server_address(srv, name, cap, &len), MSGPIPE_OK);
    return srv;
}

static int port_of(const char *name)
{
    const char *c = strrchr(name, ':');
    assert_non_null(c);
    return atoi(c + 1);
}

static int have_auth(void)
{
    msgpipe_options o;
    msgpipe_server *srv = NULL;
    char name[96];
    int rc;

    sup_name(name, sizeof(name), "authprobe");
    rc = msgpipe_listen(name, with_key(&o, key_a), &srv);
    msgpipe_server_close(srv);
    return rc != MSGPIPE_ENOTSUP;
}

/* ---- Names -------------------------------------------------------------- */

static void test_tcp_names_parse_host_port_and_ipv6(void **state)
{
    static const msgpipe__backend_info bi = {
        "t", MSGPIPE__STYLE_POSIX, 107, 1, 16, 1, 1};
    msgpipe__name n;
    (void)state;
    assert_rc(msgpipe__name_parse("tcp://127.0.0.1:80", &bi, NULL, &n),
              MSGPIPE_OK);
    assert_int_equal(n.kind, MSGPIPE__NAME_TCP);
    assert_string_equal(n.sys, "127.0.0.1");
    assert_int_equal(n.port, 80);
    assert_int_equal(n.is_ipv6, 0);
    assert_rc(msgpipe__name_parse("tcp://[::1]:0", &bi, NULL, &n), MSGPIPE_OK);
    assert_string_equal(n.sys, "::1");
    assert_int_equal(n.port, 0);
    assert_int_equal(n.is_ipv6, 1);
    assert_rc(msgpipe__name_parse("tcp://my-host.example:65535", &bi, NULL, &n),
              MSGPIPE_OK);
    assert_string_equal(n.sys, "my-host.example");
    assert_int_equal(n.port, 65535);
}

static void test_tcp_names_malformed_are_ebadname(void **state)
{
    static const msgpipe__backend_info bi = {
        "t", MSGPIPE__STYLE_WIN32, 256, 0, 4, 0, 0};
    static const char *const bad[] = {
        "tcp://",        "tcp://host",  "tcp://:80",    "tcp://host:",
        "tcp://h:65536", "tcp://h:8x",  "tcp://::1:80", "tcp://[::1]80",
        "tcp://[::1",    "tcp://[]:80", "tcp://h/x:80", "tcp://h:123456",
        "tcp://a b:1",   "tcp://h:-1",
    };
    msgpipe__name n;
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = msgpipe__name_parse(bad[i], &bi, NULL, &n);
        if (rc != MSGPIPE_EBADNAME)
            fail_msg("%s: %s", bad[i], msgpipe_errname(rc));
    }
}

/* ---- TCP between two msgpipe ends ---------------------------------------- */

static void test_tcp_port_0_reports_bound_address_and_round_trips(void **state)
{
    msgpipe_server *srv;
    msgpipe *c = NULL, *s = NULL;
    char name[96], peer[96], buf[16];
    size_t len;
    (void)state;
    srv = tcp_server(NULL, name, sizeof(name));
    assert_true(strncmp(name, "tcp://127.0.0.1:", 16) == 0);
    assert_true(port_of(name) > 0);
    assert_rc(msgpipe_connect(name, NULL, SUP_T_LONG, &c), MSGPIPE_OK);
    assert_rc(msgpipe_accept(srv, SUP_T_LONG, &s), MSGPIPE_OK);
    assert_rc(msgpipe_send(c, "ping", 4, SUP_T_LONG), MSGPIPE_OK);
    assert_rc(msgpipe_recv(s, buf, sizeof(buf), &len, SUP_T_LONG), MSGPIPE_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "ping", 4);
    assert_rc(msgpipe_send(s, "", 0, SUP_T_LONG), MSGPIPE_OK);
    assert_rc(msgpipe_recv(c, buf, sizeof(buf), &len, SUP_T_LONG), MSGPIPE_OK);
    assert_int_equal(len, 0);
    /* The client's peer is the server's address; the server's peer is the
     * client's address on the loopback. */
    assert_rc(msgpipe_peer_address(c, peer, sizeof(peer), &len), MSGPIPE_OK);
    assert_string_equal(peer, name);
    assert_rc(msgpipe_peer_address(s, peer, sizeof(peer), &len), MSGPIPE_OK);
    assert_true(strncmp(peer, "tcp://127.0.0.1:", 16) == 0);
    msgpipe_close(c);
    msgpipe_close(s);
    msgpipe_server_close(srv);
}

static void test_tcp_peer_and_peer_user_are_enotsup(void **state)
{
    msgpipe_server *srv;
    msgpipe *c = NULL, *s = NULL;
    msgpipe_peer_info info;
    char name[96], buf[32];
    size_t len;
    (void)state;
    srv = tcp_server(NULL, name, sizeof(name));
    assert_rc(msgpipe_connect(name, NULL, SUP_T_LONG, &c), MSGPIPE_OK);
    assert_rc(msgpipe_accept(srv, SUP_T_LONG, &s), MSGPIPE_OK);
    assert_rc(msgpipe_peer(s, &info), MSGPIPE_ENOTSUP);
    assert_int_equal(info.pid, -1);
    assert_rc(msgpipe_peer_user(c, buf, sizeof(buf), &len), MSGPIPE_ENOTSUP);
    assert_rc(msgpipe_peer_address(c, NULL, 0, &len), MSGPIPE_ENOBUFS);
    assert_int_equal(len, strlen(name) + 1);
    msgpipe_close(c);
    msgpipe_close(s);
    /* Checks by user cannot be made across a network. */
    {
        msgpipe_options o;
        msgpipe_server *two = NULL;
        const int64_t uid = 0;
        msgpipe_options_init(&o);
        o.require_same_user = 1;
        c = NULL;
        assert_rc(msgpipe_connect(name, &o, SUP_T_LONG, &c), MSGPIPE_ENOTSUP);
        assert_null(c);
        msgpipe_options_init(&o);
        o.allow_uids = &uid;
        o.n_allow_uids = 1;
        assert_rc(msgpipe_listen("tcp://127.0.0.1:0", &o, &two),
                  MSGPIPE_ENOTSUP);
        assert_null(two);
    }
    msgpipe_server_close(srv);
}

static void test_tcp_address_of_local_names_is_enotsup(void **state)
{
    msgpipe_server *srv = NULL;
    msgpipe *a = NULL, *b = NULL;
    char name[96];
    size_t len;
    (void)state;
    sup_name(name, sizeof(name), "tcpaddr");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_server_address(srv, NULL, 0, &len), MSGPIPE_ENOTSUP);
    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    assert_rc(msgpipe_peer_address(a, NULL, 0, &len), MSGPIPE_ENOTSUP);
    msgpipe_close(a);
    msgpipe_close(b);
    msgpipe_server_close(srv);
}

static void test_tcp_ipv6_loopback_round_trip(void **state)
{
    msgpipe_server *srv = NULL;
    msgpipe *c = NULL, *s = NULL;
    char name[96], buf[8];
    size_t len;
    int rc;
    (void)state;
    rc = msgpipe_listen("tcp://[::1]:0", NULL, &srv);
    if (rc == MSGPIPE_ENOTSUP)
        SUP_SKIP("no tcp:// on this backend");
    if (rc == MSGPIPE_EBADNAME || rc == MSGPIPE_EIO)
        SUP_SKIP("no IPv6 loopback on this machine");
    assert_rc(rc, MSGPIPE_OK);
    assert_rc(msgpipe_server_address(srv, name, sizeof(name), &len),
              MSGPIPE_OK);
    assert_true(strncmp(name, "tcp://[::1]:", 12) == 0);
    assert_rc(msgpipe_connect(name, NULL, SUP_T_LONG, &c), MSGPIPE_OK);
    assert_rc(msgpipe_accept(srv, SUP_T_LONG, &s), MSGPIPE_OK);
    assert_rc(msgpipe_send(c, "v6", 2, SUP_T_LONG), MSGPIPE_OK);
    assert_rc(msgpipe_recv(s, buf, sizeof(buf), &len, SUP_T_LONG), MSGPIPE_OK);
    assert_int_equal(len, 2);
    msgpipe_close(c);
    msgpipe_close(s);
    msgpipe_server_close(srv);
}

/* Does "localhost" resolve to 127.0.0.1 on this machine?  (A minimal
 * root may have no /etc/hosts, and no resolver that knows the name.) */
static int localhost_is_loopback(void)
{
    struct addrinfo hints, *res = NULL, *a;
    int found = 0;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo("localhost", NULL, &hints, &res) != 0)
        return 0;
    for (a = res; a != NULL; a = a->ai_next) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)a->ai_addr;
        if (ntohl(sin->sin_addr.s_addr) == 0x7f000001u)
            found = 1;
    }
    freeaddrinfo(res);
    return found;
}

/* "localhost" may resolve to ::1 first, where nothing listens: the
 * connect goes on to 127.0.0.1. */
static void test_tcp_host_name_tries_every_address(void **state)
{
    msgpipe_server *srv;
    msgpipe *c = NULL, *s = NULL;
    char name[96], host[96];
    (void)state;
    srv = tcp_server(NULL, name, sizeof(name));
    if (!localhost_is_loopback()) { /* asked after the library started
                                       Winsock, on Windows */
        msgpipe_server_close(srv);
        SUP_SKIP("\"localhost\" does not resolve to 127.0.0.1 here (no "
                 "/etc/hosts entry?)");
    }
    snprintf(host, sizeof(host), "tcp://localhost:%d", port_of(name));
    assert_rc(msgpipe_connect(host, NULL, SUP_T_LONG, &c), MSGPIPE_OK);
    assert_rc(msgpipe_accept(srv, SUP_T_LONG, &s), MSGPIPE_OK);
    msgpipe_close(c);
    msgpipe_close(s);
    msgpipe_server_close(srv);
}

static void test_tcp_no_server_is_enoent_at_once_etimedout_later(void **state)
{
    msgpipe_server *srv;
    msgpipe *c = NULL;
    char name[96];
    int64_t t0;
    (void)state;
    /* A port that was just free. */
    srv = tcp_server(NULL, name, sizeof(name));
    msgpipe_server_close(srv);
    assert_rc(msgpipe_connect(name, NULL, 0, &c), MSGPIPE_ENOENT);
    t0 = sup_now_ms();
    assert_rc(msgpipe_connect(name, NULL, 200, &c), MSGPIPE_ETIMEDOUT);
    assert_true(sup_now_ms() - t0 >= 150);
    assert_null(c);
    assert_rc(msgpipe_connect("tcp://no-such-host.invalid:80", NULL, 0, &c),
              MSGPIPE_ENOENT);
}

static void test_tcp_server_beyond_loopback_needs_authkey(void **state)
{
    msgpipe_options o;
    msgpipe_server *srv = NULL;
    int rc;
    (void)state;
    rc = msgpipe_listen("tcp://0.0.0.0:0", NULL, &srv);
    if (rc == MSGPIPE_ENOTSUP)
        SUP_SKIP("no tcp:// on this backend");
    assert_rc(rc, MSGPIPE_EINVAL);
    assert_null(srv);
    msgpipe_options_init(&o);
    o.allow_unauthenticated = 1;
    assert_rc(msgpipe_listen("tcp://0.0.0.0:0", &o, &srv), MSGPIPE_OK);
    msgpipe_server_close(srv);
    srv = NULL;
    o.allow_unauthenticated = 2;
    assert_rc(msgpipe_listen("tcp://0.0.0.0:0", &o, &srv), MSGPIPE_EINVAL);
    if (have_auth()) {
        assert_rc(msgpipe_listen("tcp://0.0.0.0:0", with_key(&o, key_a), &srv),
                  MSGPIPE_OK);
        msgpipe_server_close(srv);
    }
}

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

/* An accept that runs out of memory loses no client: it returns
 * MSGPIPE_ENOMEM, and the next accept gets the client that was waiting,
 * with its message (as for local names: test_races). */
static void test_tcp_accept_after_enomem_gets_the_waiting_client(void **state)
{
    msgpipe_server *srv;
    msgpipe *c = NULL, *s = NULL;
    msgpipe__allocator saved = msgpipe__mem;
    char name[96], buf[8];
    size_t len = 0;
    int rc;
    (void)state;

    srv = tcp_server(NULL, name, sizeof(name));
    assert_rc(msgpipe_connect(name, NULL, SUP_T, &c), MSGPIPE_OK);
    assert_rc(msgpipe_send(c, "hi", 2, SUP_T), MSGPIPE_OK);
    msgpipe__mem.malloc = no_malloc;
    msgpipe__mem.calloc = no_calloc;
    rc = msgpipe_accept(srv, SUP_T, &s);
    msgpipe__mem = saved;
    assert_rc(rc, MSGPIPE_ENOMEM);
    assert_null(s);
    assert_rc(msgpipe_accept(srv, SUP_T, &s), MSGPIPE_OK);
    assert_rc(msgpipe_recv(s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 2);
    assert_memory_equal(buf, "hi", 2);
    msgpipe_close(s);
    msgpipe_close(c);
    msgpipe_server_close(srv);
}

static void test_tcp_port_in_use_is_eaddrinuse(void **state)
{
    msgpipe_server *srv, *two = NULL;
    char name[96];
    (void)state;
    srv = tcp_server(NULL, name, sizeof(name));
    assert_rc(msgpipe_listen(name, NULL, &two), MSGPIPE_EADDRINUSE);
    msgpipe_server_close(srv);
}

static void test_tcp_graceful_close_delivers_large_messages(void **state)
{
    msgpipe_server *srv;
    msgpipe *c = NULL, *s = NULL;
    const size_t big = 1024 * 1024;
    unsigned char *m = (unsigned char *)malloc(big);
    char name[96];
    void *got;
    size_t len;
    int i;
    (void)state;
    assert_non_null(m);
    srv = tcp_server(NULL, name, sizeof(name));
    assert_rc(msgpipe_connect(name, NULL, SUP_T_LONG, &c), MSGPIPE_OK);
    assert_rc(msgpipe_accept(srv, SUP_T_LONG, &s), MSGPIPE_OK);
    for (i = 0; i < 3; i++) {
        sup_fill(m, big, (uint32_t)i);
        assert_rc(msgpipe_send(c, m, big - (size_t)i, SUP_T_LONG), MSGPIPE_OK);
    }
    msgpipe_close(c);
    for (i = 0; i < 3; i++) {
        assert_rc(msgpipe_recv_alloc(s, &got, &len, SUP_T_LONG), MSGPIPE_OK);
        assert_int_equal(len, big - (size_t)i);
        assert_int_equal(sup_check(got, len, (uint32_t)i), (size_t)-1);
        msgpipe_free(got);
    }
    assert_rc(msgpipe_recv_alloc(s, &got, &len, SUP_T_LONG), MSGPIPE_ECLOSED);
    /* Sending to the closed peer is ECLOSED, never SIGPIPE. */
    for (i = 0; i < 100; i++) {
        int rc = msgpipe_send(s, m, 1000, SUP_T_LONG);
        if (rc == MSGPIPE_ECLOSED)
            break;
        assert_rc(rc, MSGPIPE_OK);
    }
    assert_true(i < 100);
    msgpipe_close(s);
    msgpipe_server_close(srv);
    free(m);
}

#ifndef _WIN32
static void test_tcp_sockets_have_nodelay_and_keepalive(void **state)
{
    msgpipe_server *srv;
    msgpipe *c = NULL, *s = NULL;
    msgpipe_native fd;
    char name[96];
    int v, k;
    socklen_t l;
    msgpipe *both[2];
    (void)state;
    srv = tcp_server(NULL, name, sizeof(name));
    assert_rc(msgpipe_connect(name, NULL, SUP_T_LONG, &c), MSGPIPE_OK);
    assert_rc(msgpipe_accept(srv, SUP_T_LONG, &s), MSGPIPE_OK);
    both[0] = c;
    both[1] = s;
    for (k = 0; k < 2; k++) {
        assert_rc(msgpipe_native_handle(both[k], MSGPIPE_POLLIN, &fd),
                  MSGPIPE_OK);
        v = 0;
        l = sizeof(v);
        assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &l), 0);
        assert_true(v != 0);
        v = 0;
        l = sizeof(v);
        assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &v, &l), 0);
        assert_true(v != 0);
    }
    {
        msgpipe_native h = fd;
        assert_rc(msgpipe_send_handles(c, "x", 1, &h, 1, SUP_T_LONG),
                  MSGPIPE_ENOTSUP);
    }
    msgpipe_close(c);
    msgpipe_close(s);
    msgpipe_server_close(srv);
}
#endif

typedef struct tcp_late {
    const char *name; /* connect to it, or */
    msgpipe *p;       /* send on it, after a pause */
    msgpipe *out;
    int rc;
} tcp_late;

static void *tcp_late_main(void *arg)
{
    tcp_late *l = (tcp_late *)arg;
    sup_sleep_ms(100);
    if (l->name != NULL)
        l->rc = msgpipe_connect(l->name, NULL, SUP_T_LONG, &l->out);
    else
        l->rc = msgpipe_send(l->p, "late", 4, SUP_T_LONG);
    return NULL;
}

/* A poller already waiting wakes for a TCP server's new client and for a
 * message arriving on a TCP pipe (nothing was there when the wait
 * began). */
static void
test_tcp_poller_wakes_for_client_and_message_while_waiting(void **state)
{
    msgpipe_server *srv;
    msgpipe *s = NULL;
    msgpipe_poller *pl = NULL;
    msgpipe_event ev[2];
    char name[96], buf[8];
    size_t len;
    tcp_late l;
    sup_thread *t;
    (void)state;
    srv = tcp_server(NULL, name, sizeof(name));
    assert_rc(msgpipe_poller_new(&pl), MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, NULL, srv, MSGPIPE_POLLIN, srv),
              MSGPIPE_OK);
    assert_rc(msgpipe_poller_wait(pl, ev, 2, 0), MSGPIPE_ETIMEDOUT);
    memset(&l, 0, sizeof(l));
    l.name = name;
    t = sup_thread_start(tcp_late_main, &l);
    assert_rc(msgpipe_poller_wait(pl, ev, 2, SUP_T_LONG), 1);
    assert_ptr_equal(ev[0].server, srv);
    sup_thread_join(t);
    assert_rc(l.rc, MSGPIPE_OK);
    assert_rc(msgpipe_accept(srv, 0, &s), MSGPIPE_OK);
    assert_rc(msgpipe_poller_remove(pl, NULL, srv), MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, s, NULL, MSGPIPE_POLLIN, s), MSGPIPE_OK);
    assert_rc(msgpipe_poller_wait(pl, ev, 2, 0), MSGPIPE_ETIMEDOUT);
    l.name = NULL;
    l.p = l.out;
    t = sup_thread_start(tcp_late_main, &l);
    assert_rc(msgpipe_poller_wait(pl, ev, 2, SUP_T_LONG), 1);
    assert_ptr_equal(ev[0].pipe, s);
    assert_int_equal(ev[0].events, MSGPIPE_POLLIN);
    sup_thread_join(t);
    assert_rc(l.rc, MSGPIPE_OK);
    assert_rc(msgpipe_recv(s, buf, sizeof(buf), &len, 0), MSGPIPE_OK);
    assert_int_equal(len, 4);
    msgpipe_poller_close(pl);
    msgpipe_close(l.out);
    msgpipe_close(s);
    msgpipe_server_close(srv);
}

/* ---- Break it: time running out, peers leaving, threads exiting --------- */

/* A TCP pair: c connected (with copt), s accepted. */
static msgpipe_server *tcp_pair(const msgpipe_options *copt, msgpipe **c,
                                msgpipe **s)
{
    char name[96];
    msgpipe_server *srv = tcp_server(NULL, name, sizeof(name));

    assert_rc(msgpipe_connect(name, copt, SUP_T_LONG, c), MSGPIPE_OK);
    assert_rc(msgpipe_accept(srv, SUP_T_LONG, s), MSGPIPE_OK);
    return srv;
}

typedef struct tcp_drain {
    msgpipe *p;
    int n;
} tcp_drain;

static void *tcp_drain_main(void *arg)
{
    tcp_drain *d = (tcp_drain *)arg;
    void *got;
    size_t len;
    sup_sleep_ms(100);
    while (msgpipe_recv_alloc(d->p, &got, &len, 500) == MSGPIPE_OK) {
        msgpipe_free(got);
        d->n++;
    }
    return NULL;
}

/* A poller waiting for MSGPIPE_POLLOUT on a TCP pipe whose buffers are
 * full wakes once the reader makes room (sends of 100 bytes with timeout 0
 * until one is ETIMEDOUT: the buffers are full, usually with no committed
 * tail to end). */
static void test_tcp_poller_pollout_wakes_when_room_appears(void **state)
{
    static unsigned char m[100];
    msgpipe *c = NULL, *s = NULL;
    msgpipe_server *srv;
    msgpipe_poller *pl = NULL;
    msgpipe_event ev[1];
    tcp_drain d;
    sup_thread *t;
    long sent = 0;
    int rc;
    (void)state;
    srv = tcp_pair(NULL, &c, &s);
    while ((rc = msgpipe_send(c, m, sizeof(m), 0)) == MSGPIPE_OK)
        sent++;
    assert_rc(rc, MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_poller_new(&pl), MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, c, NULL, MSGPIPE_POLLOUT, c), MSGPIPE_OK);
    assert_rc(msgpipe_poller_wait(pl, ev, 1, 0), MSGPIPE_ETIMEDOUT);
    memset(&d, 0, sizeof(d));
    d.p = s;
    t = sup_thread_start(tcp_drain_main, &d);
    assert_rc(msgpipe_poller_wait(pl, ev, 1, SUP_T_LONG), 1);
    assert_int_equal(ev[0].events, MSGPIPE_POLLOUT);
    msgpipe_poller_close(pl);
    msgpipe_close(c);
    sup_thread_join(t);
    print_message("%ld sends before the buffers were full, %d read\n", sent,
                  d.n);
    msgpipe_close(s);
    msgpipe_server_close(srv);
}

/* Larger than what loopback TCP buffers hold, so that a send with a short
 * timeout runs out while its message is going out. */
enum { TCP_BIG = 24 * 1024 * 1024 };

typedef struct tcp_send_job {
    msgpipe *p;
    const void *msg;
    size_t len;
    int timeout;
    int rc;
} tcp_send_job;

static void *tcp_send_main(void *arg)
{
    tcp_send_job *j = (tcp_send_job *)arg;
    j->rc = msgpipe_send(j->p, j->msg, j->len, j->timeout);
    return NULL; /* and the thread exits */
}

/* A send whose 1 ms runs out while its message is going out is committed
 * (MSGPIPE_OK), in a thread that then exits; the message arrives whole,
 * and the next send, from another thread, follows it. */
static void
test_tcp_send_timeout_mid_message_commits_after_thread_exits(void **state)
{
    msgpipe *c = NULL, *s = NULL;
    msgpipe_server *srv;
    unsigned char *m = (unsigned char *)malloc(TCP_BIG);
    tcp_send_job j, j2;
    sup_thread *t;
    void *got = NULL;
    size_t len = 0;
    (void)state;
    assert_non_null(m);
    sup_fill(m, TCP_BIG, 41);
    srv = tcp_pair(NULL, &c, &s);
    memset(&j, 0, sizeof(j));
    j.p = c;
    j.msg = m;
    j.len = TCP_BIG;
    j.timeout = 1;
    sup_thread_join(sup_thread_start(tcp_send_main, &j));
    assert_rc(j.rc, MSGPIPE_OK);
    sup_sleep_ms(50);
    j2 = j;
    j2.msg = "after";
    j2.len = 5;
    j2.timeout = SUP_T_LONG;
    t = sup_thread_start(tcp_send_main, &j2);
    assert_rc(msgpipe_recv_alloc(s, &got, &len, SUP_T_LONG), MSGPIPE_OK);
    assert_int_equal(len, TCP_BIG);
    assert_int_equal(sup_check(got, len, 41), (size_t)-1);
    msgpipe_free(got);
    assert_rc(msgpipe_recv_alloc(s, &got, &len, SUP_T_LONG), MSGPIPE_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(got, "after", 5);
    msgpipe_free(got);
    sup_thread_join(t);
    assert_rc(j2.rc, MSGPIPE_OK);
    msgpipe_close(c);
    msgpipe_close(s);
    msgpipe_server_close(srv);
    free(m);
}

/* Windows: the system finishes a committed tail by itself - the reader
 * gets the whole message with no further call on the sending pipe, whose
 * sending thread has exited.  (POSIX pushes the tail at the next use of
 * the pipe: docs/tcp.md.) */
static void test_tcp_committed_tail_finishes_alone_on_windows(void **state)
{
    msgpipe *c = NULL, *s = NULL;
    msgpipe_server *srv;
    unsigned char *m = (unsigned char *)malloc(TCP_BIG);
    tcp_send_job j;
    void *got = NULL;
    size_t len = 0;
    (void)state;
    assert_non_null(m);
    sup_fill(m, TCP_BIG, 59);
    srv = tcp_pair(NULL, &c, &s);
    memset(&j, 0, sizeof(j));
    j.p = c;
    j.msg = m;
    j.len = TCP_BIG;
    j.timeout = 1;
    sup_thread_join(sup_thread_start(tcp_send_main, &j));
    assert_rc(j.rc, MSGPIPE_OK);
    assert_rc(msgpipe_recv_alloc(s, &got, &len, SUP_T_LONG), MSGPIPE_OK);
    assert_int_equal(len, TCP_BIG);
    assert_int_equal(sup_check(got, len, 59), (size_t)-1);
    msgpipe_free(got);
    msgpipe_close(c);
    msgpipe_close(s);
    msgpipe_server_close(srv);
    free(m);
}

static void *tcp_close_main(void *arg)
{
    msgpipe_close((msgpipe *)arg);
    return NULL;
}

/* A committed send's tail goes out at close (within linger_ms), with no
 * other call on the pipe: the reader gets the message whole, then the end. */
static void test_tcp_close_finishes_committed_tail(void **state)
{
    msgpipe *c = NULL, *s = NULL;
    msgpipe_server *srv;
    unsigned char *m = (unsigned char *)malloc(TCP_BIG);
    sup_thread *t;
    void *got = NULL;
    size_t len = 0;
    (void)state;
    assert_non_null(m);
    sup_fill(m, TCP_BIG, 43);
    srv = tcp_pair(NULL, &c, &s);
    assert_rc(msgpipe_send(c, m, TCP_BIG, 1), MSGPIPE_OK);
    /* The close (in another thread) waits for the reader to take it. */
    t = sup_thread_start(tcp_close_main, c);
    assert_rc(msgpipe_recv_alloc(s, &got, &len, SUP_T_LONG), MSGPIPE_OK);
    assert_int_equal(len, TCP_BIG);
    assert_int_equal(sup_check(got, len, 43), (size_t)-1);
    msgpipe_free(got);
    sup_thread_join(t);
    assert_rc(msgpipe_recv_alloc(s, &got, &len, SUP_T_LONG), MSGPIPE_ECLOSED);
    msgpipe_close(s);
    msgpipe_server_close(srv);
    free(m);
}

/* A peer that closes in the middle of a message (its linger_ms of 0 cuts
 * off a committed tail): the receiver gets ECLOSED, never a part of it. */
static void test_tcp_peer_closing_mid_message_is_eclosed(void **state)
{
    msgpipe_options o;
    msgpipe *c = NULL, *s = NULL;
    msgpipe_server *srv;
    unsigned char *m = (unsigned char *)malloc(TCP_BIG);
    void *got = NULL;
    size_t len = 0;
    (void)state;
    assert_non_null(m);
    sup_fill(m, TCP_BIG, 47);
    msgpipe_options_init(&o);
    o.linger_ms = 0;
    srv = tcp_pair(&o, &c, &s);
    assert_rc(msgpipe_send(c, "first", 5, SUP_T_LONG), MSGPIPE_OK);
    assert_rc(msgpipe_send(c, m, TCP_BIG, 1), MSGPIPE_OK);
    msgpipe_close(c);
    assert_rc(msgpipe_recv_alloc(s, &got, &len, SUP_T_LONG), MSGPIPE_OK);
    assert_int_equal(len, 5);
    msgpipe_free(got);
    got = NULL;
    assert_rc(msgpipe_recv_alloc(s, &got, &len, SUP_T_LONG), MSGPIPE_ECLOSED);
    assert_null(got);
    msgpipe_close(s);
    msgpipe_server_close(srv);
    free(m);
}

/* ENOBUFS keeps the message, EMSGSIZE drops an oversized one, and the
 * next message is intact after both. */
static void test_tcp_enobufs_keeps_and_emsgsize_drops(void **state)
{
    msgpipe_options o;
    msgpipe *c = NULL, *s = NULL;
    msgpipe_server *srv;
    char name[96], buf[16];
    static unsigned char big[300000];
    size_t len = 0;
    (void)state;
    msgpipe_options_init(&o);
    o.max_message = 100000;
    srv = tcp_server(&o, name, sizeof(name));
    assert_rc(msgpipe_connect(name, NULL, SUP_T_LONG, &c), MSGPIPE_OK);
    assert_rc(msgpipe_accept(srv, SUP_T_LONG, &s), MSGPIPE_OK);
    assert_rc(msgpipe_send(c, "0123456789abcdefXYZ", 19, SUP_T_LONG),
              MSGPIPE_OK);
    assert_rc(msgpipe_send(c, big, sizeof(big), SUP_T_LONG), MSGPIPE_OK);
    assert_rc(msgpipe_send(c, "tail", 4, SUP_T_LONG), MSGPIPE_OK);
    assert_rc(msgpipe_recv(s, buf, sizeof(buf), &len, SUP_T_LONG),
              MSGPIPE_ENOBUFS);
    assert_int_equal(len, 19);
    assert_rc(msgpipe_recv(s, buf, sizeof(buf), &len, SUP_T_LONG),
              MSGPIPE_ENOBUFS);
    {
        char wide[32];
        assert_rc(msgpipe_recv(s, wide, sizeof(wide), &len, SUP_T_LONG),
                  MSGPIPE_OK);
        assert_int_equal(len, 19);
        assert_memory_equal(wide, "0123456789abcdefXYZ", 19);
    }
    assert_rc(msgpipe_recv(s, buf, sizeof(buf), &len, SUP_T_LONG),
              MSGPIPE_EMSGSIZE);
    assert_rc(msgpipe_recv(s, buf, sizeof(buf), &len, SUP_T_LONG), MSGPIPE_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "tail", 4);
    msgpipe_close(c);
    msgpipe_close(s);
    msgpipe_server_close(srv);
}

/* The native handles of a TCP pipe and server: unsignalled while nothing
 * waits, signalled once a message (a client) does. */
static void test_tcp_native_handles_wake_for_message_and_client(void **state)
{
    msgpipe *c = NULL, *s = NULL, *c2 = NULL;
    msgpipe_server *srv;
    msgpipe_native hp, hs;
    char name[96];
    void *got = NULL;
    size_t len;
    (void)state;
    srv = tcp_server(NULL, name, sizeof(name));
    assert_rc(msgpipe_connect(name, NULL, SUP_T_LONG, &c), MSGPIPE_OK);
    assert_rc(msgpipe_accept(srv, SUP_T_LONG, &s), MSGPIPE_OK);
    assert_rc(msgpipe_native_handle(s, MSGPIPE_POLLIN, &hp), MSGPIPE_OK);
    assert_rc(msgpipe_server_native_handle(srv, &hs), MSGPIPE_OK);
    assert_int_equal(sup_wait_native(hp, MSGPIPE_POLLIN, 0), 0);
    assert_int_equal(sup_wait_native(hs, MSGPIPE_POLLIN, 0), 0);
    assert_rc(msgpipe_send(c, "ping", 4, SUP_T_LONG), MSGPIPE_OK);
    assert_int_equal(sup_wait_native(hp, MSGPIPE_POLLIN, SUP_T_LONG), 1);
    assert_rc(msgpipe_recv_alloc(s, &got, &len, 0), MSGPIPE_OK);
    msgpipe_free(got);
    assert_rc(msgpipe_connect(name, NULL, SUP_T_LONG, &c2), MSGPIPE_OK);
    assert_int_equal(sup_wait_native(hs, MSGPIPE_POLLIN, SUP_T_LONG), 1);
    msgpipe_close(c2);
    msgpipe_close(c);
    msgpipe_close(s);
    msgpipe_server_close(srv);
}

static void test_tcp_poll_and_poller_report_server_and_pipe(void **state)
{
    msgpipe_server *srv;
    msgpipe *c = NULL, *s = NULL;
    msgpipe_pollitem it[2];
    msgpipe_poller *pl = NULL;
    msgpipe_event ev[2];
    char name[96], buf[8];
    size_t len;
    (void)state;
    srv = tcp_server(NULL, name, sizeof(name));
    memset(it, 0, sizeof(it));
    it[0].server = srv;
    it[0].events = MSGPIPE_POLLIN;
    assert_rc(msgpipe_poll(it, 1, 0), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_connect(name, NULL, SUP_T_LONG, &c), MSGPIPE_OK);
    assert_rc(msgpipe_poll(it, 1, SUP_T_LONG), 1);
    assert_int_equal(it[0].revents, MSGPIPE_POLLIN);
    assert_rc(msgpipe_accept(srv, 0, &s), MSGPIPE_OK);
    it[1].pipe = s;
    it[1].events = MSGPIPE_POLLIN | MSGPIPE_POLLOUT;
    it[0].events = 0;
    assert_rc(msgpipe_poll(it, 2, SUP_T_LONG), 1);
    assert_int_equal(it[1].revents, MSGPIPE_POLLOUT);
    it[1].events = MSGPIPE_POLLIN;
    assert_rc(msgpipe_send(c, "abc", 3, SUP_T_LONG), MSGPIPE_OK);
    assert_rc(msgpipe_poll(it, 2, SUP_T_LONG), 1);
    assert_int_equal(it[1].revents, MSGPIPE_POLLIN);
    assert_rc(msgpipe_recv(s, buf, sizeof(buf), &len, 0), MSGPIPE_OK);
    /* The same through a poller. */
    assert_rc(msgpipe_poller_new(&pl), MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, s, NULL, MSGPIPE_POLLIN, s), MSGPIPE_OK);
    assert_rc(msgpipe_poller_wait(pl, ev, 2, 0), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_send(c, "de", 2, SUP_T_LONG), MSGPIPE_OK);
    assert_rc(msgpipe_poller_wait(pl, ev, 2, SUP_T_LONG), 1);
    assert_ptr_equal(ev[0].pipe, s);
    assert_rc(msgpipe_recv(s, buf, sizeof(buf), &len, 0), MSGPIPE_OK);
    assert_int_equal(len, 2);
    msgpipe_poller_close(pl);
    msgpipe_close(c);
    msgpipe_close(s);
    msgpipe_server_close(srv);
}

/* ---- authkey between two msgpipe ends ------------------------------------ */

typedef struct accept_job {
    msgpipe_server *srv;
    int rc;
    msgpipe *p;
    int skip_refused; /* a server loop: accept again after EACCES */
} accept_job;

static void *accept_thread(void *arg)
{
    accept_job *j = (accept_job *)arg;
    do
        j->rc = msgpipe_accept(j->srv, SUP_T_LONG, &j->p);
    while (j->rc == MSGPIPE_EACCES && j->skip_refused);
    return NULL;
}

static int skip_refused; /* for the next auth_pair */

/* A client with ckey against a server with skey; returns the client's
 * result, *src the server's. */
static int auth_pair(msgpipe_server *srv, const char *name, const char *ckey,
                     int *src, msgpipe **cp, msgpipe **sp)
{
    msgpipe_options o;
    accept_job j;
    sup_thread *t;
    int rc;

    memset(&j, 0, sizeof(j));
    j.srv = srv;
    j.skip_refused = skip_refused;
    t = sup_thread_start(accept_thread, &j);
    rc = msgpipe_connect(name, with_key(&o, ckey), SUP_T_LONG, cp);
    if (rc != MSGPIPE_OK) {
        /* A refused client does not end the server's wait: end it. */
        sup_sleep_ms(200);
        msgpipe_server_shutdown(srv);
    }
    sup_thread_join(t);
    *src = j.rc;
    *sp = j.p;
    return rc;
}

static void auth_right_and_wrong_key(const char *name, msgpipe_server *srv,
                                     const char *real_name)
{
    msgpipe *c = NULL, *s = NULL;
    char buf[8];
    size_t len;
    int src;

    assert_rc(auth_pair(srv, real_name, key_a, &src, &c, &s), MSGPIPE_OK);
    assert_rc(src, MSGPIPE_OK);
    assert_rc(msgpipe_send(c, "hi", 2, SUP_T_LONG), MSGPIPE_OK);
    assert_rc(msgpipe_recv(s, buf, sizeof(buf), &len, SUP_T_LONG), MSGPIPE_OK);
    assert_int_equal(len, 2);
    assert_rc(msgpipe_send(s, "yo", 2, SUP_T_LONG), MSGPIPE_OK);
    assert_rc(msgpipe_recv(c, buf, sizeof(buf), &len, SUP_T_LONG), MSGPIPE_OK);
    msgpipe_close(c);
    msgpipe_close(s);
    (void)name;
    /* A wrong key: EACCES on both sides, and no pipe. */
    assert_rc(auth_pair(srv, real_name, key_b, &src, &c, &s), MSGPIPE_EACCES);
    assert_rc(src, MSGPIPE_EACCES);
    assert_null(c);
    assert_null(s);
}

static void test_auth_tcp_right_key_passes_wrong_key_eacces_both(void **state)
{
    msgpipe_options o;
    msgpipe_server *srv;
    char name[96];
    (void)state;
    if (!have_auth())
        SUP_SKIP("built without a cryptography library");
    srv = tcp_server(with_key(&o, key_a), name, sizeof(name));
    auth_right_and_wrong_key("tcp", srv, name);
    msgpipe_server_close(srv);
}

static void test_auth_local_name_right_key_passes_wrong_key_eacces(void **state)
{
    msgpipe_options o;
    msgpipe_server *srv = NULL;
    char name[96];
    (void)state;
    if (!have_auth())
        SUP_SKIP("built without a cryptography library");
    sup_name(name, sizeof(name), "authlocal");
    assert_rc(msgpipe_listen(name, with_key(&o, key_a), &srv), MSGPIPE_OK);
    auth_right_and_wrong_key("local", srv, name);
    msgpipe_server_close(srv);
}

/* On a local name (and so on Windows' named pipes too): a client that
 * stays silent and one that sends a message longer than any handshake
 * message do not keep the next client from being served. */
static void test_auth_local_hostile_clients_do_not_hold_server(void **state)
{
    msgpipe_options o;
    msgpipe_server *srv = NULL;
    msgpipe *silent = NULL, *big = NULL, *c = NULL, *s = NULL;
    static char junk[100000];
    char name[96];
    int64_t t0;
    int src, rc;
    (void)state;
    if (!have_auth())
        SUP_SKIP("built without a cryptography library");
    sup_name(name, sizeof(name), "authhostile");
    assert_rc(msgpipe_listen(name, with_key(&o, key_a), &srv), MSGPIPE_OK);
    assert_rc(msgpipe_connect(name, NULL, SUP_T_LONG, &silent), MSGPIPE_OK);
    assert_rc(msgpipe_connect(name, NULL, SUP_T_LONG, &big), MSGPIPE_OK);
    assert_rc(msgpipe_send(big, junk, sizeof(junk), 0), MSGPIPE_OK);
    t0 = sup_now_ms();
    skip_refused = 1;
    rc = auth_pair(srv, name, key_a, &src, &c, &s);
    skip_refused = 0;
    assert_rc(rc, MSGPIPE_OK);
    assert_rc(src, MSGPIPE_OK);
    assert_true(sup_now_ms() - t0 < MSGPIPE__AUTH_LIMIT_MS / 2);
    msgpipe_close(c);
    msgpipe_close(s);
    msgpipe_close(silent);
    msgpipe_close(big);
    msgpipe_server_close(srv);
}

static void test_auth_client_without_key_is_not_served(void **state)
{
    msgpipe_options o;
    msgpipe_server *srv;
    msgpipe *c = NULL, *s = NULL;
    char name[96], buf[64];
    size_t len;
    (void)state;
    if (!have_auth())
        SUP_SKIP("built without a cryptography library");
    srv = tcp_server(with_key(&o, key_a), name, sizeof(name));
    assert_rc(msgpipe_connect(name, NULL, SUP_T_LONG, &c), MSGPIPE_OK);
    /* What a client without a key sees: the challenge, as a message. */
    assert_rc(msgpipe_send(c, "hello", 5, SUP_T_LONG), MSGPIPE_OK);
    assert_rc(msgpipe_accept(srv, 300, &s), MSGPIPE_EACCES);
    assert_rc(msgpipe_recv(c, buf, sizeof(buf), &len, SUP_T_LONG), MSGPIPE_OK);
    assert_true(len > 11 && memcmp(buf, "#CHALLENGE#", 11) == 0);
    assert_rc(msgpipe_recv(c, buf, sizeof(buf), &len, SUP_T_LONG), MSGPIPE_OK);
    assert_int_equal(len, 9);
    assert_memory_equal(buf, "#FAILURE#", 9);
    assert_rc(msgpipe_recv(c, buf, sizeof(buf), &len, SUP_T_LONG),
              MSGPIPE_ECLOSED);
    msgpipe_close(c);
    msgpipe_server_close(srv);
}

typedef struct connect_job {
    const char *name;
    int rc;
    msgpipe *p;
} connect_job;

static void *connect_thread(void *arg)
{
    connect_job *j = (connect_job *)arg;
    msgpipe_options o;
    j->rc = msgpipe_connect(j->name, with_key(&o, key_a), SUP_T_LONG, &j->p);
    return NULL;
}

/* Polled with short timeouts, an authenticated server is reported once
 * a handshake has completed, and the accept then returns at once. */
static void test_auth_poll_reports_server_after_handshake(void **state)
{
    msgpipe_options o;
    msgpipe_server *srv;
    msgpipe *s = NULL;
    msgpipe_pollitem it;
    connect_job j;
    sup_thread *t;
    char name[96];
    int i, rc = MSGPIPE_ETIMEDOUT;
    (void)state;
    if (!have_auth())
        SUP_SKIP("built without a cryptography library");
    sup_name(name, sizeof(name), "authpoll");
    assert_rc(msgpipe_listen(name, with_key(&o, key_a), &srv), MSGPIPE_OK);
    memset(&it, 0, sizeof(it));
    it.server = srv;
    it.events = MSGPIPE_POLLIN;
    memset(&j, 0, sizeof(j));
    j.name = name;
    t = sup_thread_start(connect_thread, &j);
    for (i = 0; i < 3000 && rc != 1; i++) {
        rc = msgpipe_poll(&it, 1, 20);
        if (rc != 1)
            assert_rc(rc, MSGPIPE_ETIMEDOUT);
    }
    assert_rc(rc, 1);
    assert_rc(msgpipe_accept(srv, 0, &s), MSGPIPE_OK);
    sup_thread_join(t);
    assert_rc(j.rc, MSGPIPE_OK);
    assert_rc(msgpipe_send(j.p, "x", 1, SUP_T_LONG), MSGPIPE_OK);
    {
        char buf[4];
        size_t len;
        assert_rc(msgpipe_recv(s, buf, sizeof(buf), &len, SUP_T_LONG),
                  MSGPIPE_OK);
    }
    msgpipe_close(j.p);
    msgpipe_close(s);
    msgpipe_server_close(srv);
}

/* The system's HMAC gives the published answers (RFC 2104 and RFC 4231,
 * key "Jefe"): the handshake is only as right as these. */
static void test_auth_hmac_gives_known_answers(void **state)
{
    static const char data[] = "what do ya want for nothing?";
    static const uint8_t md5[16] = {0x75, 0x0c, 0x78, 0x3e, 0x6a, 0xb0,
                                    0xb5, 0x03, 0xea, 0xa8, 0x6e, 0x31,
                                    0x0a, 0x5d, 0xb7, 0x38};
    static const uint8_t sha256[32] = {
        0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24,
        0x26, 0x08, 0x95, 0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27,
        0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43};
    uint8_t out[MSGPIPE__HMAC_MAX], r1[40], r2[40];
    size_t len = 0;
    (void)state;
    if (!have_auth())
        SUP_SKIP("built without a cryptography library");
    assert_rc(msgpipe__b_hmac("md5", (const uint8_t *)"Jefe", 4,
                              (const uint8_t *)data, strlen(data), out, &len),
              MSGPIPE_OK);
    assert_int_equal(len, 16);
    assert_memory_equal(out, md5, 16);
    assert_rc(msgpipe__b_hmac("sha256", (const uint8_t *)"Jefe", 4,
                              (const uint8_t *)data, strlen(data), out, &len),
              MSGPIPE_OK);
    assert_int_equal(len, 32);
    assert_memory_equal(out, sha256, 32);
    assert_rc(msgpipe__b_hmac("sha1", (const uint8_t *)"Jefe", 4,
                              (const uint8_t *)data, strlen(data), out, &len),
              MSGPIPE_ENOTSUP);
    /* Two challenges' random bytes differ. */
    assert_rc(msgpipe__b_random(r1, sizeof(r1)), MSGPIPE_OK);
    assert_rc(msgpipe__b_random(r2, sizeof(r2)), MSGPIPE_OK);
    assert_true(memcmp(r1, r2, sizeof(r1)) != 0);
}

/* A wait without a short timeout - the poller's, msgpipe_poll's - wakes
 * up for the handshake's messages, not only for the new connection, and
 * reports the server once the client is authenticated (Linux: the
 * server's epoll set). */
static void auth_wait_case(int use_poller)
{
    msgpipe_options o;
    msgpipe_server *srv = NULL;
    msgpipe *s = NULL;
    msgpipe_poller *pl = NULL;
    msgpipe_pollitem it;
    msgpipe_event ev[4];
    connect_job j;
    sup_thread *t;
    char name[96];
    int rc;

    if (!have_auth())
        SUP_SKIP("built without a cryptography library");
    sup_name(name, sizeof(name), use_poller ? "authpl" : "authpw");
    assert_rc(msgpipe_listen(name, with_key(&o, key_a), &srv), MSGPIPE_OK);
    memset(&j, 0, sizeof(j));
    j.name = name;
    if (use_poller) {
        assert_rc(msgpipe_poller_new(&pl), MSGPIPE_OK);
        assert_rc(msgpipe_poller_add(pl, NULL, srv, MSGPIPE_POLLIN, srv),
                  MSGPIPE_OK);
    }
    t = sup_thread_start(connect_thread, &j);
    if (use_poller) {
        rc = msgpipe_poller_wait(pl, ev, 4, 10000);
        assert_rc(rc, 1);
        assert_ptr_equal(ev[0].server, srv);
    } else {
        memset(&it, 0, sizeof(it));
        it.server = srv;
        it.events = MSGPIPE_POLLIN;
        assert_rc(msgpipe_poll(&it, 1, 10000), 1);
    }
    assert_rc(msgpipe_accept(srv, 0, &s), MSGPIPE_OK);
    sup_thread_join(t);
    assert_rc(j.rc, MSGPIPE_OK);
    msgpipe_poller_close(pl);
    msgpipe_close(j.p);
    msgpipe_close(s);
    msgpipe_server_close(srv);
}

static void test_auth_poller_wakes_for_the_handshake(void **state)
{
    (void)state;
    auth_wait_case(1);
}

static void test_auth_poll_wakes_for_the_handshake(void **state)
{
    (void)state;
    auth_wait_case(0);
}

static void test_auth_options_are_checked(void **state)
{
    msgpipe_options o;
    msgpipe *c = NULL;
    (void)state;
    msgpipe_options_init(&o);
    assert_null(o.authkey);
    assert_int_equal(o.authkey_len, 0);
    assert_int_equal(o.authkey_no_md5, 0);
    assert_int_equal(o.allow_unauthenticated, 0);
    o.authkey_len = 3; /* without the bytes */
    assert_rc(msgpipe_connect("tcp://127.0.0.1:1", &o, 0, &c), MSGPIPE_EINVAL);
    with_key(&o, key_a);
    o.authkey_no_md5 = 2;
    assert_rc(msgpipe_connect("tcp://127.0.0.1:1", &o, 0, &c), MSGPIPE_EINVAL);
#ifndef MPT_HAVE_CRYPTO
    o.authkey_no_md5 = 0;
    assert_rc(msgpipe_connect("tcp://127.0.0.1:1", &o, 0, &c), MSGPIPE_ENOTSUP);
#endif
}

/* ---- Hostile peers during the handshake ------------------------------------
 */

static raw_sock raw_connect(int port)
{
    struct sockaddr_in sa;
    raw_sock fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd != RAW_BAD);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* Send what fits without waiting for room. */
static void raw_send_some(raw_sock fd, const void *b, size_t n)
{
#ifdef _WIN32
    u_long one = 1;
    (void)ioctlsocket(fd, FIONBIO, &one);
    (void)send(fd, (const char *)b, (int)n, 0);
#else
    (void)send(fd, b, n, MSG_DONTWAIT);
#endif
}

/* Send all of b (small: it fits in the socket's buffer). */
static void raw_send_all(raw_sock fd, const void *b, size_t n)
{
    assert_int_equal(send(fd, (const char *)b, (int)n, 0), (long)n);
}

/* A receive whose time runs out while a message is arriving returns
 * ETIMEDOUT, a poll does not report the pipe, and what came is kept: once
 * the rest arrives the message is received whole. */
static void test_tcp_recv_timeout_mid_message_keeps_it_whole(void **state)
{
    static const unsigned char head[8] = {0, 0, 0, 10, 'a', 'b', 'c', 'd'};
    msgpipe_server *srv;
    msgpipe *s = NULL;
    msgpipe_pollitem it;
    char name[96], buf[32];
    size_t len = 0;
    raw_sock fd;
    (void)state;
    srv = tcp_server(NULL, name, sizeof(name));
    fd = raw_connect(port_of(name));
    assert_rc(msgpipe_accept(srv, SUP_T_LONG, &s), MSGPIPE_OK);
    raw_send_all(fd, head, sizeof(head));
    assert_rc(msgpipe_recv(s, buf, sizeof(buf), &len, 200), MSGPIPE_ETIMEDOUT);
    memset(&it, 0, sizeof(it));
    it.pipe = s;
    it.events = MSGPIPE_POLLIN;
    assert_rc(msgpipe_poll(&it, 1, 50), MSGPIPE_ETIMEDOUT);
    raw_send_all(fd, "efghij", 6);
    assert_rc(msgpipe_poll(&it, 1, SUP_T_LONG), 1);
    assert_rc(msgpipe_recv(s, buf, sizeof(buf), &len, SUP_T_LONG), MSGPIPE_OK);
    assert_int_equal(len, 10);
    assert_memory_equal(buf, "abcdefghij", 10);
    raw_close(fd);
    assert_rc(msgpipe_recv(s, buf, sizeof(buf), &len, SUP_T_LONG),
              MSGPIPE_ECLOSED);
    msgpipe_close(s);
    msgpipe_server_close(srv);
}

/* A raw peer that closes after half a message: ECLOSED, never the part. */
static void test_tcp_raw_peer_closing_mid_message_is_eclosed(void **state)
{
    static const unsigned char head[8] = {0, 0, 0, 10, 'a', 'b', 'c', 'd'};
    msgpipe_server *srv;
    msgpipe *s = NULL;
    char name[96];
    void *got = NULL;
    size_t len = 0;
    raw_sock fd;
    (void)state;
    srv = tcp_server(NULL, name, sizeof(name));
    fd = raw_connect(port_of(name));
    assert_rc(msgpipe_accept(srv, SUP_T_LONG, &s), MSGPIPE_OK);
    raw_send_all(fd, head, sizeof(head));
    raw_close(fd);
    assert_rc(msgpipe_recv_alloc(s, &got, &len, SUP_T_LONG), MSGPIPE_ECLOSED);
    assert_null(got);
    msgpipe_close(s);
    msgpipe_server_close(srv);
}

/* bad(): what the hostile clients do; then a good client must be served
 * well within the handshake limit. */
static void hostile_then_good(int nbad, const unsigned char *junk,
                              size_t junk_len)
{
    msgpipe_options o;
    msgpipe_server *srv;
    msgpipe *c = NULL, *s = NULL;
    char name[96];
    raw_sock *fds = (raw_sock *)calloc((size_t)nbad, sizeof(raw_sock));
    int i, src, rc;
    int64_t t0;

    if (!have_auth())
        SUP_SKIP("built without a cryptography library");
    assert_non_null(fds);
    with_key(&o, key_a);
    o.pending = 128;
    srv = tcp_server(&o, name, sizeof(name));
    for (i = 0; i < nbad; i++) {
        fds[i] = raw_connect(port_of(name));
        if (junk_len > 0)
            assert_int_equal(send(fds[i], (const char *)junk, (int)junk_len, 0),
                             (long)junk_len);
    }
    t0 = sup_now_ms();
    /* A server loop goes on after a client it refused (EACCES). */
    skip_refused = 1;
    rc = auth_pair(srv, name, key_a, &src, &c, &s);
    skip_refused = 0;
    assert_rc(rc, MSGPIPE_OK);
    assert_rc(src, MSGPIPE_OK);
    assert_true(sup_now_ms() - t0 < MSGPIPE__AUTH_LIMIT_MS / 2);
    msgpipe_close(c);
    msgpipe_close(s);
    msgpipe_server_close(srv);
    for (i = 0; i < nbad; i++)
        raw_close(fds[i]);
    free(fds);
}

static void test_auth_silent_client_does_not_hold_server(void **state)
{
    (void)state;
    hostile_then_good(1, NULL, 0);
}

static void test_auth_garbage_client_does_not_hold_server(void **state)
{
    static const unsigned char junk[] = "\x00\x00\x00\x05garbage and more";
    (void)state;
    hostile_then_good(3, junk, sizeof(junk) - 1);
}

static void test_auth_2gib_length_does_not_hold_server(void **state)
{
    static const unsigned char junk[] = {0x7f, 0xff, 0xff, 0xff, 'x'};
    static const unsigned char longform[] = {0xff, 0xff, 0xff, 0xff, 0, 0,
                                             0,    0,    0x80, 0,    0, 0};
    (void)state;
    hostile_then_good(1, junk, sizeof(junk));
    hostile_then_good(1, longform, sizeof(longform));
}

/* A handshake that stalls does not stretch the accept's own timeout. */
static void
test_auth_accept_keeps_its_timeout_while_a_handshake_stalls(void **state)
{
    msgpipe_options o;
    msgpipe_server *srv;
    msgpipe *s = NULL;
    char name[96];
    int64_t t0, took;
    raw_sock fd;
    (void)state;
    if (!have_auth())
        SUP_SKIP("built without a cryptography library");
    srv = tcp_server(with_key(&o, key_a), name, sizeof(name));
    fd = raw_connect(port_of(name));
    t0 = sup_now_ms();
    assert_rc(msgpipe_accept(srv, 300, &s), MSGPIPE_ETIMEDOUT);
    took = sup_now_ms() - t0;
    assert_true(took >= 250);
    assert_true(took < MSGPIPE__AUTH_LIMIT_MS);
    assert_null(s);
    raw_close(fd);
    msgpipe_server_close(srv);
}

/* Clients that announce messages of 60 MiB (within max_message) and send
 * part of them cost the server no memory: each is dropped at its header. */
static void test_auth_announced_large_messages_cost_no_memory(void **state)
{
    static unsigned char junk[65536];
    msgpipe_options o;
    msgpipe_server *srv;
    msgpipe *c = NULL, *s = NULL;
    char name[96];
    raw_sock fds[8];
    int i, src, rc;
    long before, after;
    (void)state;
    if (!have_auth())
        SUP_SKIP("built without a cryptography library");
    before = sup_heap_kib();
    if (before < 0)
        SUP_SKIP("this allocator does not tell its heap size");
    srv = tcp_server(with_key(&o, key_a), name, sizeof(name));
    junk[0] = 0x03; /* 0x03c00000 bytes: 60 MiB */
    junk[1] = 0xc0;
    for (i = 0; i < 8; i++) {
        fds[i] = raw_connect(port_of(name));
        /* What fits in the socket buffers; the rest is not waited for. */
        raw_send_some(fds[i], junk, sizeof(junk));
    }
    skip_refused = 1;
    rc = auth_pair(srv, name, key_a, &src, &c, &s);
    skip_refused = 0;
    assert_rc(rc, MSGPIPE_OK);
    assert_rc(src, MSGPIPE_OK);
    after = sup_heap_kib();
    /* 8 x 60 MiB announced, 8 x 64 KiB sent: the two pipes and the
     * server hold a few KiB. */
    assert_true(after - before < 256);
    msgpipe_close(c);
    msgpipe_close(s);
    for (i = 0; i < 8; i++)
        raw_close(fds[i]);
    msgpipe_server_close(srv);
}

/* A flood takes the slots of handshakes still running, never that of a
 * client already authenticated and waiting for msgpipe_accept(). */
static void test_auth_flood_does_not_evict_an_authenticated_client(void **s_)
{
    msgpipe_options o;
    msgpipe_server *srv;
    msgpipe *s = NULL;
    msgpipe_pollitem it;
    connect_job j;
    sup_thread *t;
    char name[96], buf[8];
    size_t len;
    raw_sock fds[100];
    int i, rc = MSGPIPE_ETIMEDOUT;
    (void)s_;
    if (!have_auth())
        SUP_SKIP("built without a cryptography library");
    with_key(&o, key_a);
    o.pending = 128;
    srv = tcp_server(&o, name, sizeof(name));
    memset(&j, 0, sizeof(j));
    j.name = name;
    t = sup_thread_start(connect_thread, &j);
    /* Polling runs the handshake and keeps the client for the accept. */
    memset(&it, 0, sizeof(it));
    it.server = srv;
    it.events = MSGPIPE_POLLIN;
    for (i = 0; i < 3000 && rc != 1; i++)
        rc = msgpipe_poll(&it, 1, 20);
    assert_rc(rc, 1);
    sup_thread_join(t);
    assert_rc(j.rc, MSGPIPE_OK);
    for (i = 0; i < 100; i++)
        fds[i] = raw_connect(port_of(name));
    sup_sleep_ms(100); /* all of them queued at the server */
    assert_rc(msgpipe_accept(srv, SUP_T_LONG, &s), MSGPIPE_OK);
    assert_rc(msgpipe_send(j.p, "me", 2, SUP_T_LONG), MSGPIPE_OK);
    assert_rc(msgpipe_recv(s, buf, sizeof(buf), &len, SUP_T_LONG), MSGPIPE_OK);
    assert_int_equal(len, 2);
    msgpipe_close(j.p);
    msgpipe_close(s);
    for (i = 0; i < 100; i++)
        raw_close(fds[i]);
    msgpipe_server_close(srv);
}

static void test_auth_flood_of_connections_does_not_hold_server(void **state)
{
    (void)state;
    /* More than the server's handshake slots. */
    hostile_then_good(100, NULL, 0);
}

/* ---- Python's multiprocessing.connection ------------------------------------
 */

#ifndef _WIN32
static const size_t py_sizes[] = {0, 20000, 1024 * 1024};

static void py_pattern(unsigned char *b, size_t n, unsigned seed)
{
    size_t i;
    for (i = 0; i < n; i++)
        b[i] = (unsigned char)((i * 131 + seed * 7 + (i >> 8)) & 0xff);
}

static void py_find(const char **py, const char **script)
{
    *py = getenv("MSGPIPE_TEST_PYTHON");
    *script = getenv("MSGPIPE_TEST_PYTCP");
    if (*py == NULL || (*py)[0] == '\0' || strstr(*py, "NOTFOUND") != NULL)
        SUP_SKIP("python3 not found");
    if (*script == NULL || (*script)[0] == '\0')
        SUP_SKIP("MSGPIPE_TEST_PYTCP not set (run through ctest)");
}

static void py_exchange(msgpipe *p)
{
    unsigned char *out = (unsigned char *)malloc(1024 * 1024);
    unsigned char *want = (unsigned char *)malloc(1024 * 1024);
    char buf[8];
    size_t k, len;

    assert_non_null(out);
    assert_non_null(want);
    for (k = 0; k < sizeof(py_sizes) / sizeof(py_sizes[0]); k++) {
        size_t n = py_sizes[k];
        void *m = NULL;
        py_pattern(out, n, 1);
        py_pattern(want, n, 2);
        assert_rc(msgpipe_send(p, out, n, SUP_T_LONG), MSGPIPE_OK);
        assert_rc(msgpipe_recv_alloc(p, &m, &len, SUP_T_LONG), MSGPIPE_OK);
        assert_int_equal(len, n);
        assert_memory_equal(m, want, n);
        msgpipe_free(m);
    }
    assert_rc(msgpipe_recv(p, buf, sizeof(buf), &len, SUP_T_LONG), MSGPIPE_OK);
    assert_int_equal(len, 3);
    assert_rc(msgpipe_recv(p, buf, sizeof(buf), &len, SUP_T_LONG),
              MSGPIPE_ECLOSED);
    free(out);
    free(want);
}

static void hex_of(const char *key, char *out, size_t cap)
{
    size_t i;
    if (key == NULL) {
        snprintf(out, cap, "-");
        return;
    }
    for (i = 0; key[i] != '\0' && 2 * i + 2 < cap; i++)
        snprintf(out + 2 * i, 3, "%02x", (unsigned char)key[i]);
}

static sup_proc *py_start(const char *mode, const char *where, const char *key,
                          const char *proto, const char *expect)
{
    const char *py, *script, *argv[8];
    char hex[128];

    py_find(&py, &script);
    hex_of(key, hex, sizeof(hex));
    argv[0] = py;
    argv[1] = script;
    argv[2] = mode;
    argv[3] = where;
    argv[4] = hex;
    argv[5] = proto;
    argv[6] = expect;
    argv[7] = NULL;
    return sup_spawn(py, (const char *const *)argv);
}

/* A Python Listener on 127.0.0.1 port 0: its name, once it has written
 * the port. */
static sup_proc *py_server(const char *key, const char *proto,
                           const char *expect, char *name, size_t cap)
{
    char file[128], base[96];
    sup_proc *child;
    FILE *f = NULL;
    int port = 0, i;

    sup_name(base, sizeof(base), "pyport");
    snprintf(file, sizeof(file), "/tmp/%s", base);
    unlink(file);
    child = py_start("server", file, key, proto, expect);
    for (i = 0; i < 3000 && f == NULL; i++) {
        f = fopen(file, "r");
        if (f == NULL)
            sup_sleep_ms(10);
    }
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%d", &port), 1);
    fclose(f);
    unlink(file);
    snprintf(name, cap, "tcp://127.0.0.1:%d", port);
    return child;
}

static void py_listener_case(const char *pykey, const char *ckey,
                             const char *proto, int no_md5, int want)
{
    msgpipe_options o;
    msgpipe *p = NULL;
    char name[64];
    sup_proc *child;

    child = py_server(pykey, proto, want == MSGPIPE_OK ? "ok" : "autherror",
                      name, sizeof(name));
    with_key(&o, ckey);
    o.authkey_no_md5 = no_md5;
    assert_rc(msgpipe_connect(name, &o, SUP_T_LONG, &p), want);
    if (want == MSGPIPE_OK)
        py_exchange(p);
    msgpipe_close(p);
    assert_int_equal(sup_proc_wait(child), 0);
}

static void py_client_case(const char *pykey, const char *skey,
                           const char *proto, int no_md5, int want)
{
    msgpipe_options o;
    msgpipe_server *srv;
    msgpipe *p = NULL;
    char name[96], port[16];
    const char *py, *script;
    sup_proc *child;

    py_find(&py, &script); /* skips before there is a server to leak */
    with_key(&o, skey);
    o.authkey_no_md5 = no_md5;
    srv = tcp_server(&o, name, sizeof(name));
    snprintf(port, sizeof(port), "%d", port_of(name));
    child = py_start("client", port, pykey, proto,
                     want == MSGPIPE_OK ? "ok" : "autherror");
    assert_rc(msgpipe_accept(srv, SUP_T_LONG, &p), want);
    if (want == MSGPIPE_OK)
        py_exchange(p);
    msgpipe_close(p);
    assert_int_equal(sup_proc_wait(child), 0);
    msgpipe_server_close(srv);
}

static void test_py_tcp_listener_and_msgpipe_client_no_key(void **state)
{
    (void)state;
    py_listener_case(NULL, NULL, "native", 0, MSGPIPE_OK);
}

static void test_py_tcp_client_and_msgpipe_server_no_key(void **state)
{
    (void)state;
    py_client_case(NULL, NULL, "native", 0, MSGPIPE_OK);
}

static void test_py_auth_listener_right_key_both_protocols(void **state)
{
    (void)state;
    if (!have_auth())
        SUP_SKIP("built without a cryptography library");
    py_listener_case(key_a, key_a, "native", 0, MSGPIPE_OK);
    py_listener_case(key_a, key_a, "py312", 0, MSGPIPE_OK);
    py_listener_case(key_a, key_a, "py312", 1, MSGPIPE_OK);
}

static void test_py_auth_client_right_key_both_protocols(void **state)
{
    (void)state;
    if (!have_auth())
        SUP_SKIP("built without a cryptography library");
    py_client_case(key_a, key_a, "native", 0, MSGPIPE_OK);
    py_client_case(key_a, key_a, "py312", 0, MSGPIPE_OK);
    py_client_case(key_a, key_a, "py312", 1, MSGPIPE_OK);
}

static void test_py_auth_wrong_key_eacces_and_authentication_error(void **s)
{
    (void)s;
    if (!have_auth())
        SUP_SKIP("built without a cryptography library");
    py_listener_case(key_b, key_a, "native", 0, MSGPIPE_EACCES);
    py_listener_case(key_b, key_a, "py312", 0, MSGPIPE_EACCES);
    py_client_case(key_b, key_a, "native", 0, MSGPIPE_EACCES);
    py_client_case(key_b, key_a, "py312", 0, MSGPIPE_EACCES);
}

/* A key on one side only, each way round, against Python. */
static void test_py_auth_key_on_one_side_only_is_refused(void **state)
{
    msgpipe_options o;
    msgpipe_server *srv;
    msgpipe *p = NULL;
    sup_proc *child;
    char name[96], port[16], buf[64];
    size_t len;
    (void)state;
    if (!have_auth())
        SUP_SKIP("built without a cryptography library");
    /* Python's Listener without a key: no challenge ever comes. */
    child = py_server(NULL, "native", "eof", name, sizeof(name));
    assert_rc(msgpipe_connect(name, with_key(&o, key_a), 1000, &p),
              MSGPIPE_ETIMEDOUT);
    assert_null(p);
    assert_int_equal(sup_proc_wait(child), 0);
    /* Python's Listener with a key, msgpipe without: the challenge comes
     * as a message, and anything but the answer is refused. */
    child = py_server(key_a, "native", "autherror", name, sizeof(name));
    assert_rc(msgpipe_connect(name, NULL, SUP_T_LONG, &p), MSGPIPE_OK);
    assert_rc(msgpipe_recv(p, buf, sizeof(buf), &len, SUP_T_LONG), MSGPIPE_OK);
    assert_true(len > 11 && memcmp(buf, "#CHALLENGE#", 11) == 0);
    assert_rc(msgpipe_send(p, "x", 1, SUP_T_LONG), MSGPIPE_OK);
    assert_rc(msgpipe_recv(p, buf, sizeof(buf), &len, SUP_T_LONG), MSGPIPE_OK);
    assert_int_equal(len, 9);
    assert_memory_equal(buf, "#FAILURE#", 9);
    msgpipe_close(p);
    assert_int_equal(sup_proc_wait(child), 0);
    /* Python's Client with a key, a msgpipe server without: Python
     * refuses the first message, which is no challenge. */
    srv = tcp_server(NULL, name, sizeof(name));
    snprintf(port, sizeof(port), "%d", port_of(name));
    child = py_start("client", port, key_a, "native", "autherror");
    assert_rc(msgpipe_accept(srv, SUP_T_LONG, &p), MSGPIPE_OK);
    assert_rc(msgpipe_send(p, "", 0, SUP_T_LONG), MSGPIPE_OK);
    assert_rc(msgpipe_recv(p, buf, sizeof(buf), &len, SUP_T_LONG),
              MSGPIPE_ECLOSED);
    msgpipe_close(p);
    assert_int_equal(sup_proc_wait(child), 0);
    msgpipe_server_close(srv);
    /* Python's Client without a key, a msgpipe server with one: refused
     * (EACCES), Python sees #FAILURE#. */
    srv = tcp_server(with_key(&o, key_a), name, sizeof(name));
    snprintf(port, sizeof(port), "%d", port_of(name));
    child = py_start("client", port, NULL, "native", "challenged");
    assert_rc(msgpipe_accept(srv, SUP_T_LONG, &p), MSGPIPE_EACCES);
    assert_null(p);
    assert_int_equal(sup_proc_wait(child), 0);
    msgpipe_server_close(srv);
}

/* Python 3.11 and older speak only HMAC-MD5: refused with no_md5. */
static void test_py_auth_no_md5_refuses_legacy_python(void **state)
{
    const char *v = getenv("MSGPIPE_TEST_PY_LEGACY");
    (void)state;
    if (!have_auth())
        SUP_SKIP("built without a cryptography library");
    if (v == NULL || strcmp(v, "1") != 0)
        SUP_SKIP("this python3 is 3.12 or newer: no MD5-only peer");
    py_listener_case(key_a, key_a, "native", 1, MSGPIPE_EACCES);
    py_client_case(key_a, key_a, "native", 1, MSGPIPE_EACCES);
}

/* authkey over a Unix socket, against Python's AF_UNIX Listener. */
static void test_py_auth_unix_socket_listener(void **state)
{
    msgpipe_options o;
    msgpipe *p = NULL;
    char base[96], path[128], where[140];
    sup_proc *child;
    (void)state;
    if (!have_auth())
        SUP_SKIP("built without a cryptography library");
    if (strcmp(msgpipe_backend(), "posix-socket") != 0)
        SUP_SKIP("Python's AF_UNIX needs the posix-socket backend");
    sup_name(base, sizeof(base), "pyauth");
    snprintf(path, sizeof(path), "/tmp/%s", base);
    snprintf(where, sizeof(where), "unix:%s", path);
    child = py_start("server", where, key_a, "native", "ok");
    assert_rc(msgpipe_connect(path, with_key(&o, key_a), SUP_T_LONG, &p),
              MSGPIPE_OK);
    py_exchange(p);
    msgpipe_close(p);
    assert_int_equal(sup_proc_wait(child), 0);
}
#endif

int main(int argc, char **argv)
{
    const sup_test tests[] = {
        SUP_TEST(1, test_tcp_names_parse_host_port_and_ipv6),
        SUP_TEST(1, test_tcp_names_malformed_are_ebadname),
        SUP_TEST(1, test_tcp_port_0_reports_bound_address_and_round_trips),
        SUP_TEST(1, test_tcp_peer_and_peer_user_are_enotsup),
        SUP_TEST(1, test_tcp_address_of_local_names_is_enotsup),
        SUP_TEST(1, test_tcp_ipv6_loopback_round_trip),
        SUP_TEST(1, test_tcp_host_name_tries_every_address),
        SUP_TEST(1, test_tcp_no_server_is_enoent_at_once_etimedout_later),
        SUP_TEST(1, test_tcp_server_beyond_loopback_needs_authkey),
        SUP_TEST(1, test_tcp_port_in_use_is_eaddrinuse),
        SUP_TEST(1, test_tcp_accept_after_enomem_gets_the_waiting_client),
        SUP_TEST(1, test_tcp_graceful_close_delivers_large_messages),
#ifndef _WIN32
        SUP_TEST(1, test_tcp_sockets_have_nodelay_and_keepalive),
#endif
        SUP_TEST(1, test_tcp_poll_and_poller_report_server_and_pipe),
        SUP_TEST(1, test_tcp_poller_wakes_for_client_and_message_while_waiting),
        SUP_TEST(1, test_tcp_poller_pollout_wakes_when_room_appears),
        SUP_TEST(1,
                 test_tcp_send_timeout_mid_message_commits_after_thread_exits),
        SUP_TEST(SUP_WINDOWS,
                 test_tcp_committed_tail_finishes_alone_on_windows),
        SUP_TEST(1, test_tcp_close_finishes_committed_tail),
        SUP_TEST(1, test_tcp_peer_closing_mid_message_is_eclosed),
        SUP_TEST(1, test_tcp_enobufs_keeps_and_emsgsize_drops),
        SUP_TEST(1, test_tcp_native_handles_wake_for_message_and_client),
        SUP_TEST(1, test_auth_tcp_right_key_passes_wrong_key_eacces_both),
        SUP_TEST(1, test_auth_local_name_right_key_passes_wrong_key_eacces),
        SUP_TEST(1, test_auth_client_without_key_is_not_served),
        SUP_TEST(1, test_auth_local_hostile_clients_do_not_hold_server),
        SUP_TEST(1, test_auth_hmac_gives_known_answers),
        SUP_TEST(1, test_auth_options_are_checked),
        SUP_TEST(1, test_auth_poll_reports_server_after_handshake),
        SUP_TEST(MPT_LINUX, test_auth_poller_wakes_for_the_handshake),
        SUP_TEST(MPT_LINUX, test_auth_poll_wakes_for_the_handshake),
        SUP_TEST(1, test_tcp_recv_timeout_mid_message_keeps_it_whole),
        SUP_TEST(1, test_tcp_raw_peer_closing_mid_message_is_eclosed),
        SUP_TEST(1, test_auth_silent_client_does_not_hold_server),
        SUP_TEST(1, test_auth_garbage_client_does_not_hold_server),
        SUP_TEST(1, test_auth_2gib_length_does_not_hold_server),
        SUP_TEST(1, test_auth_flood_of_connections_does_not_hold_server),
        SUP_TEST(1, test_auth_flood_does_not_evict_an_authenticated_client),
        SUP_TEST(1,
                 test_auth_accept_keeps_its_timeout_while_a_handshake_stalls),
        SUP_TEST(1, test_auth_announced_large_messages_cost_no_memory),
/* Python's multiprocessing.connection as the peer: POSIX only, since the
 * Windows build's tests run under Wine, where there is no Windows Python. */
#ifndef _WIN32
        SUP_TEST(1, test_py_tcp_listener_and_msgpipe_client_no_key),
        SUP_TEST(1, test_py_tcp_client_and_msgpipe_server_no_key),
        SUP_TEST(1, test_py_auth_listener_right_key_both_protocols),
        SUP_TEST(1, test_py_auth_client_right_key_both_protocols),
        SUP_TEST(1, test_py_auth_wrong_key_eacces_and_authentication_error),
        SUP_TEST(1, test_py_auth_no_md5_refuses_legacy_python),
        SUP_TEST(1, test_py_auth_key_on_one_side_only_is_refused),
        SUP_TEST(1, test_py_auth_unix_socket_listener),
#endif
    };

    sup_init(argc, argv);
    return sup_finish(SUP_RUN("tcp", tests));
}
