/*
 * test_process.c - peers in other processes: this executable run as a
 * child ("--child MODE ..."), and Python's multiprocessing.connection
 * (tests/py_peer.py) on the POSIX socket backend.
 *
 * Child modes:
 *   send NAME N          connect, send N sequence messages, close, exit 0
 *   peer NAME PARENTPID  connect, check msgpipe_peer() names the parent,
 *                        send "ok" (or "bad"), wait for "bye", exit 0
 *   big NAME             connect, send "ready", then one 16 MiB message
 *                        (blocks: the parent does not read; it kills us)
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MiB ((size_t)1024 * 1024)

/* ---- Children ---------------------------------------------------------- */

static size_t seq_len(uint32_t i)
{
    return 4 + i % 200;
}

static int child_fail(const char *what, int rc)
{
    fprintf(stderr, "child: %s: %s\n", what, msgpipe_errname(rc));
    return 1;
}

static int child_send(const char *name, long n)
{
    msgpipe *p = NULL;
    unsigned char buf[4 + 200];
    uint32_t i;
    int rc = msgpipe_connect(name, NULL, SUP_T_LONG, &p);
    if (rc != MSGPIPE_OK)
        return child_fail("connect", rc);
    for (i = 0; i < (uint32_t)n; i++) {
        sup_put32(buf, i);
        sup_fill(buf + 4, seq_len(i) - 4, i);
        rc = msgpipe_send(p, buf, seq_len(i), SUP_T_LONG);
        if (rc != MSGPIPE_OK)
            return child_fail("send", rc);
    }
    msgpipe_close(p);
    return 0;
}

static int child_peer(const char *name, const char *parent)
{
    msgpipe *p = NULL;
    msgpipe_peer_info info;
    char buf[16];
    size_t len;
    int rc = msgpipe_connect(name, NULL, SUP_T_LONG, &p);
    if (rc != MSGPIPE_OK)
        return child_fail("connect", rc);
    rc = msgpipe_peer(p, &info);
    if (rc != MSGPIPE_OK)
        return child_fail("peer", rc);
    if (info.pid == (int64_t)strtol(parent, NULL, 10) &&
        info.uid == sup_getuid() && info.gid == sup_getgid()) {
        rc = msgpipe_send(p, "ok", 2, SUP_T);
    } else {
        fprintf(stderr, "child: msgpipe_peer gave pid %ld, parent is %s\n",
                (long)info.pid, parent);
        rc = msgpipe_send(p, "bad", 3, SUP_T);
    }
    if (rc != MSGPIPE_OK)
        return child_fail("send", rc);
    rc = msgpipe_recv(p, buf, sizeof(buf), &len, SUP_T_LONG);
    if (rc != MSGPIPE_OK)
        return child_fail("recv", rc);
    msgpipe_close(p);
    return 0;
}

static int child_big(const char *name)
{
    msgpipe *p = NULL;
    unsigned char *big = (unsigned char *)malloc(16 * MiB);
    int rc = msgpipe_connect(name, NULL, SUP_T_LONG, &p);
    if (big == NULL)
        return 1;
    if (rc != MSGPIPE_OK)
        return child_fail("connect", rc);
    sup_fill(big, 16 * MiB, 16);
    rc = msgpipe_send(p, "ready", 5, SUP_T);
    if (rc != MSGPIPE_OK)
        return child_fail("send ready", rc);
    rc = msgpipe_send(p, big, 16 * MiB, SUP_T_LONG);
    fprintf(stderr,
            "child: the 16 MiB send returned %s; it should have "
            "been killed first\n",
            msgpipe_errname(rc));
    msgpipe_close(p);
    free(big);
    return 3;
}

static int child_main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[0], "send") == 0)
        return child_send(argv[1], strtol(argv[2], NULL, 10));
    if (argc == 3 && strcmp(argv[0], "peer") == 0)
        return child_peer(argv[1], argv[2]);
    if (argc == 2 && strcmp(argv[0], "big") == 0)
        return child_big(argv[1]);
    fprintf(stderr, "unknown child mode\n");
    return 100;
}

/* ---- Process peers ----------------------------------------------------- */

/* Listen on a fresh name, start "--child mode name extra", accept it. */
static sup_proc *start_child(const char *mode, const char *extra,
                             msgpipe_server **srv, msgpipe **p, char *name,
                             size_t cap)
{
    const char *args[4];
    sup_proc *child;

    sup_name(name, cap, "proc");
    assert_rc(msgpipe_listen(name, NULL, srv), MSGPIPE_OK);
    args[0] = mode;
    args[1] = name;
    args[2] = extra;
    args[3] = NULL;
    child = sup_spawn_self(args);
    assert_rc(msgpipe_accept(*srv, SUP_T_LONG, p), MSGPIPE_OK);
    return child;
}

static void
test_child_sends_1000_and_exits_all_arrive_then_eclosed(void **state)
{
    msgpipe_server *srv = NULL;
    msgpipe *p = NULL;
    sup_proc *child;
    char name[96];
    unsigned char buf[4 + 200];
    uint32_t i;
    size_t len;
    (void)state;

    child = start_child("send", "1000", &srv, &p, name, sizeof(name));
    for (i = 0; i < 1000; i++) {
        int rc = msgpipe_recv(p, buf, sizeof(buf), &len, SUP_T_LONG);
        if (rc != MSGPIPE_OK) {
            print_error("message %lu: %s\n", (unsigned long)i,
                        msgpipe_errname(rc));
            fail();
        }
        assert_int_equal(len, seq_len(i));
        assert_int_equal(sup_get32(buf), i);
        assert_pattern(buf + 4, len - 4, i);
    }
    assert_rc(msgpipe_recv(p, buf, sizeof(buf), &len, SUP_T_LONG),
              MSGPIPE_ECLOSED);
    assert_rc(msgpipe_recv(p, buf, sizeof(buf), &len, SUP_T), MSGPIPE_ECLOSED);
    assert_int_equal(sup_proc_wait(child), 0);
    msgpipe_close(p);
    msgpipe_server_close(srv);
}

static void test_peer_reports_child_pid_and_child_sees_parent_pid(void **s)
{
    msgpipe_server *srv = NULL;
    msgpipe *p = NULL;
    msgpipe_peer_info info;
    sup_proc *child;
    char name[96], me[32], buf[16];
    size_t len;
    (void)s;

    snprintf(me, sizeof(me), "%ld", (long)sup_getpid());
    child = start_child("peer", me, &srv, &p, name, sizeof(name));
    assert_rc(msgpipe_peer(p, &info), MSGPIPE_OK);
    assert_int_equal(info.pid, sup_proc_pid(child));
    assert_int_not_equal(info.pid, sup_getpid());
    assert_int_equal(info.uid, sup_getuid());
    assert_int_equal(info.gid, sup_getgid());
    assert_rc(msgpipe_recv(p, buf, sizeof(buf), &len, SUP_T_LONG), MSGPIPE_OK);
    assert_int_equal(len, 2);
    assert_memory_equal(buf, "ok", 2);
    assert_rc(msgpipe_send(p, "bye", 3, SUP_T), MSGPIPE_OK);
    assert_int_equal(sup_proc_wait(child), 0);
    msgpipe_close(p);
    msgpipe_server_close(srv);
}

/* The child dies in the middle of a 16 MiB message: the receiver gets
 * MSGPIPE_ECLOSED - no hang, no half message. */
static void test_peer_killed_mid_message_gives_eclosed(void **state)
{
    msgpipe_server *srv = NULL;
    msgpipe *p = NULL;
    sup_proc *child;
    char name[96], buf[16];
    size_t len;
    void *m = NULL;
    int code;
    (void)state;

    child = start_child("big", NULL, &srv, &p, name, sizeof(name));
    assert_rc(msgpipe_recv(p, buf, sizeof(buf), &len, SUP_T_LONG), MSGPIPE_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "ready", 5);
    sup_sleep_ms(300); /* the child is now blocked inside its big send */
    sup_proc_kill(child);
    code = sup_proc_wait(child);
    assert_int_not_equal(code, 0);
    len = 0;
    assert_rc(msgpipe_recv_alloc(p, &m, &len, 10000), MSGPIPE_ECLOSED);
    assert_null(m);
    assert_rc(msgpipe_recv(p, buf, sizeof(buf), &len, 10000), MSGPIPE_ECLOSED);
    msgpipe_close(p);
    msgpipe_server_close(srv);
}

/* ---- Python's multiprocessing.connection ------------------------------- */

#ifndef _WIN32
static const size_t py_sizes[] = {0, 20000, 1024 * 1024};

/* The bytes py_peer.py's pattern(n, seed) makes. */
static void py_pattern(unsigned char *b, size_t n, unsigned seed)
{
    size_t i;
    for (i = 0; i < n; i++)
        b[i] = (unsigned char)((i * 131 + seed * 7 + (i >> 8)) & 0xff);
}

/* The interpreter and script paths from ctest's environment, or a skip. */
static void py_find(const char **py, const char **script)
{
    *py = getenv("MSGPIPE_TEST_PYTHON");
    *script = getenv("MSGPIPE_TEST_PYPEER");
    if (strcmp(msgpipe_backend(), "posix-socket") != 0)
        SUP_SKIP("Python interop needs the posix-socket backend");
    if (*py == NULL || (*py)[0] == '\0' || strstr(*py, "NOTFOUND") != NULL)
        SUP_SKIP("python3 not found");
    if (*script == NULL || (*script)[0] == '\0')
        SUP_SKIP("MSGPIPE_TEST_PYPEER not set (run through ctest)");
}

/* Run the exchange of py_peer.py from the msgpipe side. */
static void py_exchange(msgpipe *p)
{
    size_t k;
    unsigned char *out = (unsigned char *)malloc(1024 * 1024);
    unsigned char *want = (unsigned char *)malloc(1024 * 1024);
    char buf[8];
    size_t len;

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
    assert_memory_equal(buf, "bye", 3);
    assert_rc(msgpipe_recv(p, buf, sizeof(buf), &len, SUP_T_LONG),
              MSGPIPE_ECLOSED);
    free(out);
    free(want);
}
#endif

static void test_python_listener_and_msgpipe_client(void **state)
{
    (void)state;
#ifdef _WIN32
    SUP_SKIP("multiprocessing.connection on Windows needs a Windows Python, "
             "none under Wine");
#else
    {
        const char *py, *script, *argv[5];
        char base[96], path[128];
        sup_proc *child;
        msgpipe *p = NULL;

        py_find(&py, &script);
        sup_name(base, sizeof(base), "py");
        snprintf(path, sizeof(path), "/tmp/%s", base);
        argv[0] = py;
        argv[1] = script;
        argv[2] = "server";
        argv[3] = path;
        argv[4] = NULL;
        child = sup_spawn(py, argv);
        /* connect waits until Python's Listener has made the socket. */
        assert_rc(msgpipe_connect(path, NULL, SUP_T_LONG, &p), MSGPIPE_OK);
        py_exchange(p);
        msgpipe_close(p);
        assert_int_equal(sup_proc_wait(child), 0);
    }
#endif
}

static void test_msgpipe_server_and_python_client(void **state)
{
    (void)state;
#ifdef _WIN32
    SUP_SKIP("multiprocessing.connection on Windows needs a Windows Python, "
             "none under Wine");
#else
    {
        const char *py, *script, *argv[5];
        char base[96], path[128];
        sup_proc *child;
        msgpipe_server *srv = NULL;
        msgpipe *p = NULL;

        py_find(&py, &script);
        sup_name(base, sizeof(base), "py");
        snprintf(path, sizeof(path), "/tmp/%s", base);
        assert_rc(msgpipe_listen(path, NULL, &srv), MSGPIPE_OK);
        argv[0] = py;
        argv[1] = script;
        argv[2] = "client";
        argv[3] = path;
        argv[4] = NULL;
        child = sup_spawn(py, argv);
        assert_rc(msgpipe_accept(srv, SUP_T_LONG, &p), MSGPIPE_OK);
        py_exchange(p);
        msgpipe_close(p);
        assert_int_equal(sup_proc_wait(child), 0);
        msgpipe_server_close(srv);
    }
#endif
}

int main(int argc, char **argv)
{
    const struct CMUnitTest process_tests[] = {
        cmocka_unit_test(
            test_child_sends_1000_and_exits_all_arrive_then_eclosed),
        cmocka_unit_test(test_peer_reports_child_pid_and_child_sees_parent_pid),
        cmocka_unit_test(test_peer_killed_mid_message_gives_eclosed),
    };
    /* Python's multiprocessing.connection speaks msgpipe's framing over
     * Unix sockets; on Windows it would need a Windows Python (none runs
     * under Wine here), and FIFOs are not sockets. */
    const int py = SUP_POSIX && !sup_is_fifo();
    const sup_test python_tests[] = {
        SUP_TEST(py, test_python_listener_and_msgpipe_client),
        SUP_TEST(py, test_msgpipe_server_and_python_client),
    };
    int failed;

    sup_init(argc, argv);
    if (sup_child_mode(argc, argv))
        return child_main(argc - 2, argv + 2);
    failed = cmocka_run_group_tests_name("process", process_tests, NULL, NULL);
    if (py)
        failed += SUP_RUN("python", python_tests);
    return sup_finish(failed);
}
