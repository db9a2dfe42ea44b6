/*
 * test_server.c - the server side: many clients at once, a name already in
 * use, shutdown from another thread, and (POSIX) the socket file: its
 * mode, stale files, files in the way, removal on close, abstract names.
 *
 * Child modes: "--child listen NAME" listens on NAME, accepts one client,
 * sends it "ready" and waits to be killed (test of a stale socket file);
 * "--child connect-die NAME" connects and kills itself (FIFO transport).
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef _WIN32
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

/* ---- Many clients ------------------------------------------------------ */

#define NCLIENTS 64
#define NMSGS 100

typedef struct {
    const char *name;
    int id;
    int rc;       /* first failure, or OK */
    int bad_echo; /* 1 if an echo differed */
    int done;
} client_ctx;

static size_t client_msg_len(int id, int seq)
{
    return 8 + (size_t)((id * 7 + seq) % 300);
}

static void *client_main(void *arg)
{
    client_ctx *c = (client_ctx *)arg;
    msgpipe *p = NULL;
    unsigned char out[8 + 300], in[8 + 300 + 16];
    int seq;

    c->rc = msgpipe_connect(c->name, NULL, SUP_T_LONG, &p);
    if (c->rc != MSGPIPE_OK)
        return NULL;
    for (seq = 0; seq < NMSGS; seq++) {
        size_t len = client_msg_len(c->id, seq), got = 0;
        sup_put32(out, (uint32_t)c->id);
        sup_put32(out + 4, (uint32_t)seq);
        sup_fill(out + 8, len - 8, (uint32_t)(c->id * 1000 + seq));
        c->rc = msgpipe_send(p, out, len, SUP_T_LONG);
        if (c->rc != MSGPIPE_OK)
            break;
        c->rc = msgpipe_recv(p, in, sizeof(in), &got, SUP_T_LONG);
        if (c->rc != MSGPIPE_OK)
            break;
        if (got != len || memcmp(in, out, len) != 0) {
            c->bad_echo = 1;
            break;
        }
    }
    msgpipe_close(p);
    c->done = 1;
    return NULL;
}

typedef struct {
    msgpipe_server *srv;
    int accepted;
    int rc; /* first accept failure, or OK */
    sup_echo *echo[NCLIENTS];
    msgpipe *pipe[NCLIENTS];
} acceptor_ctx;

static void *acceptor_main(void *arg)
{
    acceptor_ctx *a = (acceptor_ctx *)arg;
    a->rc = MSGPIPE_OK;
    while (a->accepted < NCLIENTS) {
        msgpipe *p = NULL;
        int rc = msgpipe_accept(a->srv, SUP_T_LONG, &p);
        if (rc != MSGPIPE_OK) {
            a->rc = rc;
            break;
        }
        a->pipe[a->accepted] = p;
        a->echo[a->accepted++] = sup_echo_start(p);
    }
    return NULL;
}

static void test_64_clients_at_once_each_get_their_echoes(void **state)
{
    char name[96];
    acceptor_ctx *a = (acceptor_ctx *)calloc(1, sizeof(*a));
    client_ctx *c = (client_ctx *)calloc(NCLIENTS, sizeof(*c));
    sup_thread *ta, *tc[NCLIENTS];
    int i, failed = 0;
    (void)state;

    assert_non_null(a);
    assert_non_null(c);
    sup_name(name, sizeof(name), "srv");
    assert_rc(msgpipe_listen(name, NULL, &a->srv), MSGPIPE_OK);
    ta = sup_thread_start(acceptor_main, a);
    for (i = 0; i < NCLIENTS; i++) {
        c[i].name = name;
        c[i].id = i;
        c[i].rc = 1;
        tc[i] = sup_thread_start(client_main, &c[i]);
    }
    for (i = 0; i < NCLIENTS; i++)
        sup_thread_join(tc[i]);
    sup_thread_join(ta);
    for (i = 0; i < NCLIENTS; i++) {
        if (c[i].rc != MSGPIPE_OK || c[i].bad_echo || !c[i].done) {
            print_error("client %d: %s%s\n", i, msgpipe_errname(c[i].rc),
                        c[i].bad_echo ? ", wrong echo" : "");
            failed++;
        }
    }
    assert_rc(a->rc, MSGPIPE_OK);
    assert_int_equal(a->accepted, NCLIENTS);
    for (i = 0; i < a->accepted; i++) {
        int end_rc;
        long n = sup_echo_join(a->echo[i], &end_rc);
        if (n != NMSGS || end_rc != MSGPIPE_ECLOSED) {
            print_error("server pipe %d: echoed %ld, ended with %s\n", i, n,
                        msgpipe_errname(end_rc));
            failed++;
        }
        msgpipe_close(a->pipe[i]);
    }
    assert_int_equal(failed, 0);
    msgpipe_server_close(a->srv);
    free(a);
    free(c);
}

/* ---- A name in use ----------------------------------------------------- */

static void round_trip_on(msgpipe_server *srv, const char *name)
{
    msgpipe *c = NULL, *a = NULL;
    char buf[16];
    size_t len;

    assert_rc(msgpipe_connect(name, NULL, SUP_T, &c), MSGPIPE_OK);
    assert_rc(msgpipe_accept(srv, SUP_T, &a), MSGPIPE_OK);
    assert_rc(msgpipe_send(c, "ping", 4, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "ping", 4);
    assert_rc(msgpipe_send(a, "pong!", 5, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(c, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "pong!", 5);
    msgpipe_close(c);
    msgpipe_close(a);
}

static void test_second_listen_on_live_name_is_eaddrinuse(void **state)
{
    msgpipe_server *srv = NULL, *srv2 = NULL;
    char name[96];
    (void)state;

    /* Wine does not enforce FILE_FLAG_FIRST_PIPE_INSTANCE, but the Win32
     * backend also counts the pipe's instances after creating its first
     * one, so this runs (and must pass) under Wine too. */
    sup_name(name, sizeof(name), "srv");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_listen(name, NULL, &srv2), MSGPIPE_EADDRINUSE);
    assert_null(srv2);
    /* The first server was not disturbed.  (POSIX: the probe connect that
     * found the live server may be queued as a client that came and went;
     * a server sees such clients anyway, so one is tolerated.) */
    {
        msgpipe *c = NULL, *a = NULL;
        char buf[16];
        size_t len = 0;
        int rc;
        assert_rc(msgpipe_connect(name, NULL, SUP_T, &c), MSGPIPE_OK);
        assert_rc(msgpipe_send(c, "ping", 4, SUP_T), MSGPIPE_OK);
        assert_rc(msgpipe_accept(srv, SUP_T, &a), MSGPIPE_OK);
        rc = msgpipe_recv(a, buf, sizeof(buf), &len, SUP_T);
        if (rc == MSGPIPE_ECLOSED) {
            print_message("note: the first accept was the probe\n");
            msgpipe_close(a);
            assert_rc(msgpipe_accept(srv, SUP_T, &a), MSGPIPE_OK);
            rc = msgpipe_recv(a, buf, sizeof(buf), &len, SUP_T);
        }
        assert_rc(rc, MSGPIPE_OK);
        assert_int_equal(len, 4);
        assert_memory_equal(buf, "ping", 4);
        assert_rc(msgpipe_send(a, "pong", 4, SUP_T), MSGPIPE_OK);
        assert_rc(msgpipe_recv(c, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
        assert_int_equal(len, 4);
        assert_memory_equal(buf, "pong", 4);
        msgpipe_close(a);
        msgpipe_close(c);
    }
    msgpipe_server_close(srv);
}

/* ---- Shutdown ---------------------------------------------------------- */

typedef struct {
    msgpipe_server *srv;
    int timeout;
    int rc;
    msgpipe *p;
} accept_ctx;

static void *accept_main(void *arg)
{
    accept_ctx *a = (accept_ctx *)arg;
    a->rc = msgpipe_accept(a->srv, a->timeout, &a->p);
    return NULL;
}

/* Run msgpipe_accept(srv, timeout) in a thread; the result must come
 * within 5 s.  Returns its code. */
static int accept_bounded(msgpipe_server *srv, int timeout)
{
    accept_ctx *a = (accept_ctx *)calloc(1, sizeof(*a));
    sup_thread *t;
    int rc;

    assert_non_null(a);
    a->srv = srv;
    a->timeout = timeout;
    a->rc = 1;
    t = sup_thread_start(accept_main, a);
    if (sup_thread_join_timeout(t, 5000, NULL) != 0) {
        print_error("msgpipe_accept(%d) still blocked after 5 s\n", timeout);
        fail(); /* the thread and a leak */
    }
    msgpipe_close(a->p);
    rc = a->rc;
    free(a);
    return rc;
}

static void test_shutdown_releases_blocked_accept(void **state)
{
    msgpipe_server *srv = NULL;
    accept_ctx *a = (accept_ctx *)calloc(1, sizeof(*a));
    sup_thread *t;
    msgpipe *p = NULL;
    char name[96];
    (void)state;

    assert_non_null(a);
    sup_name(name, sizeof(name), "srv");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    a->srv = srv;
    a->timeout = MSGPIPE_INFINITE;
    a->rc = 1;
    t = sup_thread_start(accept_main, a);
    sup_sleep_ms(200); /* let it block (not required for the result) */
    msgpipe_server_shutdown(srv);
    if (sup_thread_join_timeout(t, 5000, NULL) != 0) {
        print_error("msgpipe_accept(-1) not released 5 s after shutdown\n");
        fail();
    }
    assert_rc(a->rc, MSGPIPE_ESHUTDOWN);
    assert_null(a->p);
    /* Later accepts fail the same way, whatever their timeout. */
    assert_rc(msgpipe_accept(srv, 0, &p), MSGPIPE_ESHUTDOWN);
    assert_rc(msgpipe_accept(srv, 1000, &p), MSGPIPE_ESHUTDOWN);
    assert_rc(accept_bounded(srv, MSGPIPE_INFINITE), MSGPIPE_ESHUTDOWN);
    msgpipe_server_shutdown(srv); /* again: nothing happens */
    msgpipe_server_close(srv);
    free(a);
}

static void
test_accept_after_shutdown_is_eshutdown_even_with_client_queued(void **state)
{
    msgpipe_server *srv = NULL;
    msgpipe *c = NULL, *p = NULL;
    char name[96];
    (void)state;

    sup_name(name, sizeof(name), "srv");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_connect(name, NULL, SUP_T, &c), MSGPIPE_OK);
    msgpipe_server_shutdown(srv);
    msgpipe_server_shutdown(srv);
    assert_rc(msgpipe_accept(srv, 0, &p), MSGPIPE_ESHUTDOWN);
    assert_rc(accept_bounded(srv, MSGPIPE_INFINITE), MSGPIPE_ESHUTDOWN);
    assert_null(p);
    msgpipe_server_close(srv);
    msgpipe_close(c);
}

static void test_shutdown_leaves_accepted_pipes_working(void **state)
{
    sup_pair pr;
    char buf[16];
    size_t len;
    (void)state;

    sup_pair_open(&pr, "srv", NULL, NULL);
    msgpipe_server_shutdown(pr.srv);
    assert_rc(msgpipe_send(pr.c, "up", 2, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 2);
    assert_rc(msgpipe_send(pr.s, "down", 4, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(pr.c, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "down", 4);
    /* Closing the server keeps accepted pipes open too. */
    msgpipe_server_close(pr.srv);
    pr.srv = NULL;
    assert_rc(msgpipe_send(pr.c, "still", 5, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "still", 5);
    sup_pair_close(&pr);
}

static void test_connect_after_server_close_is_enoent(void **state)
{
    msgpipe_server *srv = NULL;
    msgpipe *c = NULL;
    char name[96];
    (void)state;

    sup_name(name, sizeof(name), "srv");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    msgpipe_server_close(srv);
    assert_rc(msgpipe_connect(name, NULL, 0, &c), MSGPIPE_ENOENT);
    assert_null(c);
    /* The name is free again. */
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    round_trip_on(srv, name);
    msgpipe_server_close(srv);
}

/* ---- A server that died ------------------------------------------------ */

static int child_listen(const char *name)
{
    msgpipe_server *srv = NULL;
    msgpipe *p = NULL;
    int rc = msgpipe_listen(name, NULL, &srv);
    if (rc == MSGPIPE_OK)
        rc = msgpipe_accept(srv, SUP_T_LONG, &p);
    if (rc == MSGPIPE_OK)
        rc = msgpipe_send(p, "ready", 5, SUP_T);
    if (rc != MSGPIPE_OK) {
        fprintf(stderr, "child listen %s: %s\n", name, msgpipe_errname(rc));
        return 1;
    }
    msgpipe_close(p);
    sup_sleep_ms(60000); /* the parent kills us long before */
    return 2;
}

#ifndef _WIN32
/* A server's file is a socket, or a FIFO with the FIFO transport. */
static int server_file_type_ok(unsigned mode)
{
    return sup_is_fifo() ? S_ISFIFO(mode) : S_ISSOCK(mode);
}
#endif

/* A server process killed with SIGKILL (TerminateProcess) leaves its name
 * behind (POSIX: a socket file nobody listens on); a new server takes the
 * name and serves. */
static void test_listen_recovers_name_of_killed_server(void **state)
{
    char name[96], buf[16];
    const char *args[3];
    sup_proc *child;
    msgpipe *c = NULL;
    msgpipe_server *srv = NULL;
    size_t len;
    int code;
    (void)state;

    sup_name(name, sizeof(name), "srv");
    args[0] = "listen";
    args[1] = name;
    args[2] = NULL;
    child = sup_spawn_self(args);
    assert_rc(msgpipe_connect(name, NULL, SUP_T_LONG, &c), MSGPIPE_OK);
    assert_rc(msgpipe_recv(c, buf, sizeof(buf), &len, SUP_T_LONG), MSGPIPE_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "ready", 5);
    msgpipe_close(c);
    sup_proc_kill(child);
    code = sup_proc_wait(child);
    assert_int_not_equal(code, 0);
#ifndef _WIN32
    {
        char path[1100];
        struct stat st;
        sup_sys_name(name, path, sizeof(path));
        assert_int_equal(lstat(path, &st), 0); /* the stale file is there */
        assert_true(server_file_type_ok(st.st_mode));
    }
#endif
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    round_trip_on(srv, name);
    msgpipe_server_close(srv);
}

/* ---- POSIX: the socket file -------------------------------------------- */

#ifndef _WIN32
static void expect_mode(int access, int has_access, unsigned mode)
{
    msgpipe_options o;
    msgpipe_server *srv = NULL;
    char name[96], path[1100];
    struct stat st;

    sup_name(name, sizeof(name), "srv");
    msgpipe_options_init(&o);
    if (has_access)
        o.access = access;
    assert_rc(msgpipe_listen(name, has_access ? &o : NULL, &srv), MSGPIPE_OK);
    sup_sys_name(name, path, sizeof(path));
    assert_int_equal(lstat(path, &st), 0);
    assert_true(server_file_type_ok(st.st_mode));
    if (sup_is_fifo() && mode != 0600) {
        /* The FIFO transport lets others only write requests. */
        mode &= 0622;
    }
    if ((st.st_mode & 07777) != mode) {
        print_error("%s: mode %04o, expected %04o\n", path,
                    (unsigned)(st.st_mode & 07777), mode);
        fail();
    }
    msgpipe_server_close(srv);
}
#endif

static void test_socket_file_mode_is_0600_by_default(void **state)
{
    (void)state;
#ifdef _WIN32
    SUP_SKIP("POSIX only: socket file mode");
#else
    expect_mode(0, 0, 0600);
    expect_mode(MSGPIPE_ACCESS_OWNER, 1, 0600);
#endif
}

static void test_socket_file_mode_is_0660_with_access_group(void **state)
{
    (void)state;
#ifdef _WIN32
    SUP_SKIP("POSIX only: socket file mode");
#else
    expect_mode(MSGPIPE_ACCESS_GROUP, 1, 0660);
#endif
}

static void test_socket_file_mode_is_0666_with_access_world(void **state)
{
    (void)state;
#ifdef _WIN32
    SUP_SKIP("POSIX only: socket file mode");
#else
    expect_mode(MSGPIPE_ACCESS_WORLD, 1, 0666);
#endif
}

static void test_listen_never_removes_regular_file_in_the_way(void **state)
{
    (void)state;
#ifdef _WIN32
    SUP_SKIP("POSIX only: a regular file at the socket path");
#else
    {
        msgpipe_server *srv = NULL;
        char name[96], path[1100], buf[16];
        struct stat st;
        FILE *f;
        size_t n;

        sup_name(name, sizeof(name), "srv");
        sup_sys_name(name, path, sizeof(path));
        f = fopen(path, "w");
        assert_non_null(f);
        fputs("keep", f);
        fclose(f);
        assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_EADDRINUSE);
        assert_null(srv);
        assert_int_equal(lstat(path, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        f = fopen(path, "r");
        assert_non_null(f);
        n = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        assert_int_equal(n, 4);
        assert_memory_equal(buf, "keep", 4);
        assert_int_equal(unlink(path), 0);
    }
#endif
}

static void test_server_close_removes_socket_file(void **state)
{
    (void)state;
#ifdef _WIN32
    SUP_SKIP("POSIX only: socket file removal");
#else
    {
        msgpipe_server *srv = NULL;
        char name[96], path[1100];
        struct stat st;

        sup_name(name, sizeof(name), "srv");
        sup_sys_name(name, path, sizeof(path));
        assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
        assert_int_equal(lstat(path, &st), 0);
        assert_true(server_file_type_ok(st.st_mode));
        msgpipe_server_close(srv);
        errno = 0;
        assert_int_equal(lstat(path, &st), -1);
        assert_int_equal(errno, ENOENT);
    }
#endif
}

/* Linux: "@name" is an abstract socket, with no file anywhere.  Elsewhere
 * it is MSGPIPE_ENOTSUP. */
static void test_abstract_name_works_on_linux_only(void **state)
{
    msgpipe_server *srv = NULL;
    char base[96], name[100];
    (void)state;

    sup_name(base, sizeof(base), "srv");
    snprintf(name, sizeof(name), "@%s", base);
#ifdef __linux__
    if (sup_is_fifo()) {
        /* Abstract names belong to sockets; FIFOs live in files. */
        assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_ENOTSUP);
        return;
    }
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    round_trip_on(srv, name);
    {
        char path[1200];
        struct stat st;
        const char *xdg = getenv("XDG_RUNTIME_DIR");
        assert_int_equal(lstat(name, &st), -1);
        assert_int_equal(lstat(base, &st), -1);
        snprintf(path, sizeof(path), "/tmp/%s", name);
        assert_int_equal(lstat(path, &st), -1);
        snprintf(path, sizeof(path), "/tmp/%s", base);
        assert_int_equal(lstat(path, &st), -1);
        if (xdg != NULL && xdg[0] == '/') {
            snprintf(path, sizeof(path), "%s/%s", xdg, name);
            assert_int_equal(lstat(path, &st), -1);
        }
    }
    /* The name is taken while the server lives. */
    {
        msgpipe_server *srv2 = NULL;
        assert_rc(msgpipe_listen(name, NULL, &srv2), MSGPIPE_EADDRINUSE);
    }
    msgpipe_server_close(srv);
    {
        msgpipe *c = NULL;
        assert_rc(msgpipe_connect(name, NULL, 0, &c), MSGPIPE_ENOENT);
    }
#else
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_ENOTSUP);
    assert_null(srv);
#endif
}

/* ---- The FIFO transport: client directories and forged requests ---------- */

#ifndef _WIN32
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>

/* Child: connect, then die at once, before any accept, without closing. */
static int child_connect_die(const char *name)
{
    msgpipe *p = NULL;
    int rc = msgpipe_connect(name, NULL, SUP_T, &p);
    if (rc != MSGPIPE_OK) {
        fprintf(stderr, "child connect %s: %s\n", name, msgpipe_errname(rc));
        return 1;
    }
    kill(getpid(), SIGKILL);
    return 2;
}

/* The per-user directory in which FIFO clients make their directories. */
static void fifo_user_dir(char *buf, size_t cap)
{
    const char *base = getenv("XDG_RUNTIME_DIR");
    if (base == NULL || base[0] != '/')
        base = "/tmp";
    snprintf(buf, cap, "%s/msgpipe-fifo-%lu", base, (unsigned long)geteuid());
}

/* Entries in dir whose name starts with "PID-". */
static int entries_of_pid(const char *dir, long pid)
{
    char prefix[32];
    struct dirent *de;
    DIR *d = opendir(dir);
    int n = 0;

    if (d == NULL)
        return 0;
    snprintf(prefix, sizeof(prefix), "%ld-", pid);
    while ((de = readdir(d)) != NULL)
        if (strncmp(de->d_name, prefix, strlen(prefix)) == 0)
            n++;
    closedir(d);
    return n;
}
#endif

/* A FIFO client killed before the server took its request leaves nothing
 * behind once the server gets to the request. */
static void test_fifo_dead_client_leaves_nothing_behind(void **state)
{
    (void)state;
#ifdef _WIN32
    SUP_SKIP("POSIX FIFO transport only");
#else
    msgpipe_server *srv = NULL;
    msgpipe *p = NULL;
    const char *args[3];
    char name[96], udir[512];
    sup_proc *child;
    int64_t pid;

    if (!sup_is_fifo()) {
        SUP_SKIP("FIFO transport only: a socket client leaves no files");
        return;
    }
    sup_name(name, sizeof(name), "srv");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    args[0] = "connect-die";
    args[1] = name;
    args[2] = NULL;
    child = sup_spawn_self(args);
    pid = sup_proc_pid(child);
    assert_int_equal(sup_proc_wait(child), 128 + SIGKILL);
    fifo_user_dir(udir, sizeof(udir));
    assert_int_equal(entries_of_pid(udir, (long)pid), 1); /* left behind */
    /* The server takes the request, finds nobody, and cleans up. */
    assert_rc(msgpipe_accept(srv, 300, &p), MSGPIPE_ETIMEDOUT);
    assert_int_equal(entries_of_pid(udir, (long)pid), 0);
    /* And it still serves. */
    round_trip_on(srv, name);
    msgpipe_server_close(srv);
#endif
}

#ifndef _WIN32
/* Write a connection request by hand, as the FIFO transport's clients do
 * (docs/fifo.md): "MPF1", length, pid, c2s path, s2c path. */
static void forge_request(const char *server_path, const char *c2s,
                          const char *s2c)
{
    unsigned char rec[1024];
    size_t a = strlen(c2s) + 1, b = strlen(s2c) + 1, len = 14 + a + b;
    uint64_t pid = (uint64_t)getpid();
    int fd, i;

    assert_true(len <= 512);
    memcpy(rec, "MPF1", 4);
    rec[4] = (unsigned char)(len >> 8);
    rec[5] = (unsigned char)len;
    for (i = 0; i < 8; i++)
        rec[6 + i] = (unsigned char)(pid >> (8 * (7 - i)));
    memcpy(rec + 14, c2s, a);
    memcpy(rec + 14 + a, s2c, b);
    fd = open(server_path, O_WRONLY | O_NONBLOCK);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, rec, len), (ssize_t)len);
    close(fd);
}

/* A request naming FIFOs that are not private to one user is ignored:
 * the server never opens them. */
static void expect_forgery_ignored(msgpipe_server *srv, const char *name,
                                   const char *dir, unsigned dir_mode,
                                   int other_owner)
{
    char spath[1100], c2s[600], s2c[600];
    unsigned char buf[64];
    msgpipe *p = NULL;
    int rfd;

    sup_sys_name(name, spath, sizeof(spath));
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(c2s, sizeof(c2s), "%s/c2s-x", dir);
    snprintf(s2c, sizeof(s2c), "%s/s2c-x", dir);
    assert_int_equal(mkfifo(c2s, 0600), 0);
    assert_int_equal(mkfifo(s2c, 0600), 0);
    if (other_owner)
        assert_int_equal(chown(s2c, 65534, 65534), 0);
    assert_int_equal(chmod(dir, dir_mode), 0);
    /* We hold s2c for reading: an acceptance would arrive here. */
    rfd = open(s2c, O_RDONLY | O_NONBLOCK);
    assert_true(rfd >= 0);
    forge_request(spath, c2s, s2c);
    assert_rc(msgpipe_accept(srv, 300, &p), MSGPIPE_ETIMEDOUT);
    assert_null(p);
    assert_int_equal(read(rfd, buf, sizeof(buf)), 0); /* no writer came */
    close(rfd);
    unlink(c2s);
    unlink(s2c);
    rmdir(dir);
}
#endif

static void test_fifo_request_for_foreign_or_open_fifos_is_ignored(void **st)
{
    (void)st;
#ifdef _WIN32
    SUP_SKIP("POSIX FIFO transport only");
#else
    msgpipe_server *srv = NULL;
    char name[96], dir[300];

    if (!sup_is_fifo()) {
        SUP_SKIP("FIFO transport only: sockets have no connection requests");
        return;
    }
    sup_name(name, sizeof(name), "srv");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    snprintf(dir, sizeof(dir), "/tmp/%s-forged", name);
    /* A directory others may enter. */
    expect_forgery_ignored(srv, name, dir, 0755, 0);
    /* FIFOs of two different owners (needs root to give one away). */
    if (geteuid() == 0)
        expect_forgery_ignored(srv, name, dir, 0700, 1);
    else
        print_message("not root: the mixed-owner case is not tried\n");
    /* A genuine client is still served. */
    round_trip_on(srv, name);
    msgpipe_server_close(srv);
#endif
}

int main(int argc, char **argv)
{
    const int fifo = SUP_POSIX && sup_is_fifo();
    const sup_test tests[] = {
        SUP_TEST(1, test_64_clients_at_once_each_get_their_echoes),
        SUP_TEST(1, test_second_listen_on_live_name_is_eaddrinuse),
        SUP_TEST(1, test_shutdown_releases_blocked_accept),
        SUP_TEST(
            1, test_accept_after_shutdown_is_eshutdown_even_with_client_queued),
        SUP_TEST(1, test_shutdown_leaves_accepted_pipes_working),
        SUP_TEST(1, test_connect_after_server_close_is_enoent),
        SUP_TEST(1, test_listen_recovers_name_of_killed_server),
        /* A server's file exists only on POSIX. */
        SUP_TEST(SUP_POSIX, test_socket_file_mode_is_0600_by_default),
        SUP_TEST(SUP_POSIX, test_socket_file_mode_is_0660_with_access_group),
        SUP_TEST(SUP_POSIX, test_socket_file_mode_is_0666_with_access_world),
        SUP_TEST(SUP_POSIX, test_listen_never_removes_regular_file_in_the_way),
        SUP_TEST(SUP_POSIX, test_server_close_removes_socket_file),
        SUP_TEST(1, test_abstract_name_works_on_linux_only),
        /* Connection requests and client FIFOs exist only there. */
        SUP_TEST(fifo, test_fifo_dead_client_leaves_nothing_behind),
        SUP_TEST(fifo, test_fifo_request_for_foreign_or_open_fifos_is_ignored),
    };

    sup_init(argc, argv);
    if (sup_child_mode(argc, argv)) {
        if (argc == 4 && strcmp(argv[2], "listen") == 0)
            return child_listen(argv[3]);
#ifndef _WIN32
        if (argc == 4 && strcmp(argv[2], "connect-die") == 0)
            return child_connect_die(argv[3]);
#endif
        fprintf(stderr, "unknown child mode\n");
        return 100;
    }
    return sup_finish(SUP_RUN("server", tests));
}
