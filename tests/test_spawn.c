/*
 * test_spawn.c - pipes without a name (msgpipe_pair), child processes
 * (msgpipe_spawn, msgpipe_from_parent, msgpipe_process_*) and handles
 * carried with messages (msgpipe_send_handles, msgpipe_recv_handles).
 *
 * The executable starts itself with msgpipe_spawn ("SELF --child MODE
 * ..."); the child takes its end with msgpipe_from_parent.  On the POSIX
 * socket transport a Python child (tests/py_spawn_child.py) talks to the
 * parent with multiprocessing.connection alone.
 *
 * Child modes (argv after "--child"):
 *   echo CODE            echo every message until ECLOSED, exit CODE
 *   exit CODE            take the pipe, close it, exit CODE at once
 *   sendblock N MARKER   send N messages, create the file MARKER, block
 *   abort                send "before abort", then abort()
 *   argv ARGS...         send each argument back as one message, "end"
 *   getenv NAMES...      send each variable's value, or "(unset)"
 *   twice                check MSGPIPE_PARENT is gone and a second
 *                        msgpipe_from_parent is ENOENT; send "ok" or why
 *   cwd                  send the working directory
 *   fds VALUES...        before msgpipe_from_parent, look for open
 *                        descriptors (POSIX: any but 0, 1, 2 and the
 *                        pipe; Windows: the handle VALUES); send "ok" or
 *                        what leaked
 *   big2000              send a 2000-byte message, then "after"
 *   fileworker           receive a file with "write", write into it,
 *                        answer "done"; then send a file of its own
 *   handles-big          "ready", wait for "go", then 16 MiB with two
 *                        handles (the parent kills it meanwhile)
 *   handles-abort        send "with handles" and two files, abort()
 */
#if !defined(_WIN32) && !defined(_XOPEN_SOURCE)
#define _XOPEN_SOURCE 700 /* realpath */
#endif
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#include <shellapi.h>
#else
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#endif

#define KiB ((size_t)1024)
#define MiB ((size_t)1024 * 1024)

#ifndef MPT_PYTHON3
#define MPT_PYTHON3 ""
#endif
#ifndef MPT_PY_SPAWN_CHILD
#define MPT_PY_SPAWN_CHILD ""
#endif

/* ---- Platform helpers ---------------------------------------------------- */

typedef msgpipe_native nat;

#ifdef _WIN32
#define NAT_NONE NULL
#else
#define NAT_NONE (-1)
#endif

/* A new temporary file open for reading and writing, already removed from
 * its directory (it goes away with its last handle).  NAT_NONE on
 * failure. */
static nat tmp_file_try(void)
{
#ifdef _WIN32
    char dir[MAX_PATH], path[MAX_PATH];
    HANDLE h;
    if (GetTempPathA(sizeof(dir), dir) == 0 ||
        GetTempFileNameA(dir, "mpt", 0, path) == 0)
        return NAT_NONE;
    h = CreateFileA(path, GENERIC_READ | GENERIC_WRITE,
                    FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                    NULL, CREATE_ALWAYS, FILE_ATTRIBUTE_TEMPORARY, NULL);
    if (h == INVALID_HANDLE_VALUE)
        return NAT_NONE;
    DeleteFileA(path);
    return h;
#else
    char path[512];
    const char *d = getenv("TMPDIR");
    int fd;
    if (d == NULL || d[0] == '\0')
        d = "/tmp";
    snprintf(path, sizeof(path), "%s/mpt-spawn-XXXXXX", d);
    fd = mkstemp(path);
    if (fd < 0)
        return NAT_NONE;
    unlink(path);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
#endif
}

static nat tmp_file(void)
{
    nat h = tmp_file_try();
    if (h == NAT_NONE) {
        print_error("cannot create a temporary file\n");
        fail();
    }
    return h;
}

static void nat_close(nat h)
{
#ifdef _WIN32
    CloseHandle(h);
#else
    close(h);
#endif
}

/* Write s at the handle's current position; 0 on success. */
static int nat_write(nat h, const char *s)
{
    size_t n = strlen(s);
#ifdef _WIN32
    DWORD w = 0;
    if (!WriteFile(h, s, (DWORD)n, &w, NULL) || w != (DWORD)n)
        return -1;
#else
    if (write(h, s, n) != (ssize_t)n)
        return -1;
#endif
    return 0;
}

/* Read the file from offset 0 into buf (NUL-terminated); bytes read or
 * -1. */
static long nat_read_all(nat h, char *buf, size_t cap)
{
#ifdef _WIN32
    OVERLAPPED ov;
    DWORD got = 0;
    memset(&ov, 0, sizeof(ov));
    if (!ReadFile(h, buf, (DWORD)(cap - 1), &got, &ov) &&
        GetLastError() != ERROR_HANDLE_EOF)
        return -1;
    buf[got] = '\0';
    return (long)got;
#else
    ssize_t got = pread(h, buf, cap - 1, 0);
    if (got < 0)
        return -1;
    buf[got] = '\0';
    return (long)got;
#endif
}

/* 1 if h is an open handle of this process. */
static int nat_is_open(nat h)
{
#ifdef _WIN32
    DWORD f;
    return GetHandleInformation(h, &f) != 0;
#else
    return fcntl(h, F_GETFD) != -1;
#endif
}

/* 1 if a child would not inherit h (POSIX: close-on-exec; Windows: not
 * inheritable). */
static int nat_is_private(nat h)
{
#ifdef _WIN32
    DWORD f = 0;
    return GetHandleInformation(h, &f) && (f & HANDLE_FLAG_INHERIT) == 0;
#else
    int f = fcntl(h, F_GETFD);
    return f != -1 && (f & FD_CLOEXEC) != 0;
#endif
}

/* Descriptors (POSIX) or handles (Windows) open in this process. */
static long open_count(void)
{
    long n = 0;
#ifdef _WIN32
    uintptr_t v;
    DWORD f;
    for (v = 4; v < 0x20000; v += 4)
        if (GetHandleInformation((HANDLE)v, &f))
            n++;
#else
    struct rlimit rl;
    long lim = 1024, fd;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        lim = (long)rl.rlim_cur;
    if (lim > 4096)
        lim = 4096;
    for (fd = 0; fd < lim; fd++)
        if (fcntl((int)fd, F_GETFD) != -1)
            n++;
#endif
    return n;
}

/* Set (value non-NULL) or remove a variable of this process's
 * environment, as both the C runtime and a child see it. */
static void env_set(const char *name, const char *value)
{
#ifdef _WIN32
    _putenv_s(name, value != NULL ? value : "");
    SetEnvironmentVariableA(name, value);
#else
    if (value != NULL)
        setenv(name, value, 1);
    else
        unsetenv(name);
#endif
}

/* The variable as the system holds it (Windows: not the C runtime's copy,
 * which a library changing the process environment may not update); a
 * static buffer, or NULL when unset. */
static const char *env_get(const char *name)
{
#ifdef _WIN32
    static char buf[4096];
    DWORD n = GetEnvironmentVariableA(name, buf, sizeof(buf));
    if (n == 0 && GetLastError() == ERROR_ENVVAR_NOT_FOUND)
        return NULL;
    if (n >= sizeof(buf))
        return "(too long)";
    buf[n] = '\0';
    return buf;
#else
    return getenv(name);
#endif
}

/* A saved variable, restored by env_restore. */
typedef struct {
    const char *name;
    char value[4096];
    int was_set;
} env_saved;

static void env_save(env_saved *s, const char *name)
{
    const char *v = env_get(name);
    s->name = name;
    s->was_set = v != NULL;
    snprintf(s->value, sizeof(s->value), "%s", v != NULL ? v : "");
}

static void env_restore(const env_saved *s)
{
    env_set(s->name, s->was_set ? s->value : NULL);
}

/* A fresh temporary directory; its path in buf. */
static void tmp_dir(char *buf, size_t cap)
{
#ifdef _WIN32
    char dir[MAX_PATH];
    static long n;
    assert_true(GetTempPathA(sizeof(dir), dir) != 0);
    snprintf(buf, cap, "%smpt-spawn-%lu-%ld", dir,
             (unsigned long)GetCurrentProcessId(), ++n);
    assert_true(CreateDirectoryA(buf, NULL) != 0);
#else
    const char *d = getenv("TMPDIR");
    if (d == NULL || d[0] == '\0')
        d = "/tmp";
    snprintf(buf, cap, "%s/mpt-spawn-XXXXXX", d);
    assert_non_null(mkdtemp(buf));
#endif
}

static void rm_dir(const char *path)
{
#ifdef _WIN32
    RemoveDirectoryA(path);
#else
    rmdir(path);
#endif
}

static int file_exists(const char *path)
{
#ifdef _WIN32
    return GetFileAttributesA(path) != INVALID_FILE_ATTRIBUTES;
#else
    struct stat st;
    return stat(path, &st) == 0;
#endif
}

static void rm_file(const char *path)
{
#ifdef _WIN32
    DeleteFileA(path);
#else
    unlink(path);
#endif
}

/* A temporary path that does not exist yet. */
static void tmp_path(char *buf, size_t cap, const char *tag)
{
    char name[96];
#ifdef _WIN32
    char dir[MAX_PATH];
    assert_true(GetTempPathA(sizeof(dir), dir) != 0);
    sup_name(name, sizeof(name), tag);
    snprintf(buf, cap, "%s%s", dir, name);
#else
    const char *d = getenv("TMPDIR");
    if (d == NULL || d[0] == '\0')
        d = "/tmp";
    sup_name(name, sizeof(name), tag);
    snprintf(buf, cap, "%s/%s", d, name);
#endif
}

/* The exit code msgpipe_process_wait reports after msgpipe_process_kill. */
#ifdef _WIN32
#define KILLED_CODE 1
#else
#define KILLED_CODE (-9)
#endif

/* ---- Child side ------------------------------------------------------- */

static int child_fail(const char *what, int rc)
{
    fprintf(stderr, "child: %s: %s\n", what, msgpipe_errname(rc));
    return 90;
}

static msgpipe *child_pipe(void)
{
    msgpipe *p = NULL;
    int rc = msgpipe_from_parent(NULL, &p);
    if (rc != MSGPIPE_OK) {
        fprintf(stderr, "child: msgpipe_from_parent: %s\n",
                msgpipe_errname(rc));
        exit(91);
    }
    return p;
}

/* Crash with abort(), without a core file or an error dialog. */
static void quiet_abort(void)
{
#ifdef _WIN32
    SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX);
#else
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = 0;
    setrlimit(RLIMIT_CORE, &rl);
#endif
    abort();
}

static int csend(msgpipe *p, const char *s)
{
    return msgpipe_send(p, s, strlen(s), SUP_T_LONG);
}

/* Receive until the parent closes; return code. */
static int child_drain_and_exit(msgpipe *p, int code)
{
    char buf[64];
    size_t len;
    int rc;
    do {
        rc = msgpipe_recv(p, buf, sizeof(buf), &len, MSGPIPE_INFINITE);
    } while (rc == MSGPIPE_OK || rc == MSGPIPE_ENOBUFS);
    msgpipe_close(p);
    return rc == MSGPIPE_ECLOSED ? code : child_fail("drain", rc);
}

static int child_echo(int code)
{
    msgpipe *p = child_pipe();
    for (;;) {
        void *m = NULL;
        size_t n = 0;
        int rc = msgpipe_recv_alloc(p, &m, &n, MSGPIPE_INFINITE);
        if (rc == MSGPIPE_ECLOSED)
            break;
        if (rc != MSGPIPE_OK)
            return child_fail("echo recv", rc);
        rc = msgpipe_send(p, m, n, SUP_T_LONG);
        msgpipe_free(m);
        if (rc != MSGPIPE_OK)
            return child_fail("echo send", rc);
    }
    msgpipe_close(p);
    return code;
}

static int child_sendblock(long n, const char *marker)
{
    msgpipe *p = child_pipe();
    char buf[64];
    long i;
    int rc;
    FILE *f;
    for (i = 0; i < n; i++) {
        snprintf(buf, sizeof(buf), "message %ld", i);
        rc = csend(p, buf);
        if (rc != MSGPIPE_OK)
            return child_fail("sendblock send", rc);
    }
    f = fopen(marker, "w");
    if (f == NULL)
        return 92;
    fclose(f);
    /* Block until killed (the parent never sends). */
    return child_drain_and_exit(p, 0);
}

static int child_abort(void)
{
    msgpipe *p = child_pipe();
    int rc = csend(p, "before abort");
    if (rc != MSGPIPE_OK)
        return child_fail("abort send", rc);
    quiet_abort();
    return 0; /* not reached */
}

static int child_argv(int argc, char **argv)
{
    msgpipe *p = child_pipe();
    int i, rc;
#ifdef _WIN32
    /* main()'s argv is in the ANSI code page: take the UTF-16 command line
     * and convert it, to see exactly what the quoting gave. */
    int wargc = 0;
    LPWSTR *wargv = CommandLineToArgvW(GetCommandLineW(), &wargc);
    (void)argc;
    (void)argv;
    if (wargv == NULL)
        return 93;
    for (i = 3; i < wargc; i++) {
        char u[4096];
        int n = WideCharToMultiByte(CP_UTF8, 0, wargv[i], -1, u, sizeof(u),
                                    NULL, NULL);
        if (n <= 0)
            return 94;
        rc = csend(p, u);
        if (rc != MSGPIPE_OK)
            return child_fail("argv send", rc);
    }
    LocalFree(wargv);
#else
    for (i = 1; i < argc; i++) {
        rc = csend(p, argv[i]);
        if (rc != MSGPIPE_OK)
            return child_fail("argv send", rc);
    }
#endif
    rc = csend(p, "end");
    if (rc != MSGPIPE_OK)
        return child_fail("argv send", rc);
    return child_drain_and_exit(p, 0);
}

static int child_getenv(int argc, char **argv)
{
    msgpipe *p = child_pipe();
    int i, rc;
    for (i = 1; i < argc; i++) {
        const char *v = env_get(argv[i]);
        rc = csend(p, v != NULL ? v : "(unset)");
        if (rc != MSGPIPE_OK)
            return child_fail("getenv send", rc);
    }
    return child_drain_and_exit(p, 0);
}

static int child_twice(void)
{
    msgpipe *p = child_pipe(), *q = (msgpipe *)&p;
    char why[160];
    const char *v = env_get("MSGPIPE_PARENT");
    int rc = msgpipe_from_parent(NULL, &q);
#ifndef _WIN32
    const char *crt = v;
#else
    const char *crt = getenv("MSGPIPE_PARENT");
#endif
    if (v == NULL && rc == MSGPIPE_ENOENT && q == NULL)
        snprintf(why, sizeof(why), "ok");
    else
        snprintf(why, sizeof(why),
                 "after msgpipe_from_parent: MSGPIPE_PARENT=%s, a second "
                 "call gave %s, out %s",
                 v != NULL ? v : "(unset)", msgpipe_errname(rc),
                 q == NULL ? "NULL" : "not NULL");
    if (crt != NULL)
        fprintf(stderr, "child: note: the C runtime still has "
                        "MSGPIPE_PARENT\n");
    rc = csend(p, why);
    if (rc != MSGPIPE_OK)
        return child_fail("twice send", rc);
    return child_drain_and_exit(p, 0);
}

static int child_cwd(void)
{
    msgpipe *p = child_pipe();
    char buf[4096];
    int rc;
#ifdef _WIN32
    DWORD n = GetCurrentDirectoryA(sizeof(buf), buf);
    if (n == 0 || n >= sizeof(buf))
        return 95;
#else
    if (getcwd(buf, sizeof(buf)) == NULL)
        return 95;
#endif
    rc = csend(p, buf);
    if (rc != MSGPIPE_OK)
        return child_fail("cwd send", rc);
    return child_drain_and_exit(p, 0);
}

static int child_fds(int argc, char **argv)
{
    char report[2048], val[128];
    size_t o;
    const char *v = getenv("MSGPIPE_PARENT");
    msgpipe *p;
    int rc, leaked = 0;
#ifdef _WIN32
    int i;
    /* Before msgpipe_from_parent: which of the parent's inheritable
     * handles made it into this process? */
    snprintf(val, sizeof(val), "%s", v != NULL ? v : "(unset)");
    o = (size_t)snprintf(report, sizeof(report), "leaked:");
    for (i = 1; i < argc; i++) {
        DWORD f;
        HANDLE h = (HANDLE)(uintptr_t)strtoull(argv[i], NULL, 10);
        if (GetHandleInformation(h, &f)) {
            leaked = 1;
            o += (size_t)snprintf(report + o, sizeof(report) - o, " %s",
                                  argv[i]);
        }
    }
    {
        char *end = NULL;
        unsigned long long x = strtoull(val, &end, 10);
        if (end == val || *end != '\0' || x == 0) {
            leaked = 1;
            o += (size_t)snprintf(report + o, sizeof(report) - o,
                                  " MSGPIPE_PARENT=%s is not decimal", val);
        }
    }
#else
    long fd, lim = 4096, pfd[2] = {-1, -1};
    char *end = NULL;
    (void)argc;
    (void)argv;
    snprintf(val, sizeof(val), "%s", v != NULL ? v : "(unset)");
    o = (size_t)snprintf(report, sizeof(report), "leaked:");
    pfd[0] = strtol(val, &end, 10);
    if (end != val && *end == ',') {
        const char *s = end + 1;
        pfd[1] = strtol(s, &end, 10);
        if (end == s)
            pfd[1] = -2;
    }
    if (end == val || *end != '\0' || pfd[0] < 0 || pfd[1] == -2 ||
        (sup_is_fifo() != (pfd[1] >= 0))) {
        leaked = 1;
        o += (size_t)snprintf(report + o, sizeof(report) - o,
                              " MSGPIPE_PARENT=%s is not the form of %s", val,
                              msgpipe_backend());
    }
    for (fd = 0; fd < lim; fd++) {
        if (fd <= 2 || fd == pfd[0] || fd == pfd[1])
            continue;
        if (fcntl((int)fd, F_GETFD) != -1) {
            leaked = 1;
            if (o < sizeof(report) - 16)
                o += (size_t)snprintf(report + o, sizeof(report) - o, " %ld",
                                      fd);
        }
    }
    for (fd = 0; fd <= 2; fd++)
        if (fcntl((int)fd, F_GETFD) == -1)
            fprintf(stderr, "child: note: standard descriptor %ld closed\n",
                    fd);
#endif
    p = child_pipe();
    rc = csend(p, leaked ? report : "ok");
    if (rc != MSGPIPE_OK)
        return child_fail("fds send", rc);
    return child_drain_and_exit(p, 0);
}

static int child_big2000(void)
{
    msgpipe *p = child_pipe();
    char *m = (char *)malloc(2000);
    int rc;
    if (m == NULL)
        return 96;
    sup_fill(m, 2000, 2000);
    rc = msgpipe_send(p, m, 2000, SUP_T_LONG);
    free(m);
    if (rc != MSGPIPE_OK)
        return child_fail("big2000 send", rc);
    rc = csend(p, "after");
    if (rc != MSGPIPE_OK)
        return child_fail("big2000 send", rc);
    return child_drain_and_exit(p, 0);
}

static int child_fileworker(void)
{
    msgpipe *p = child_pipe();
    char buf[64];
    size_t len = 0, nh = 0;
    nat h[4], mine;
    int rc =
        msgpipe_recv_handles(p, buf, sizeof(buf), &len, h, 4, &nh, SUP_T_LONG);
    if (rc != MSGPIPE_OK)
        return child_fail("fileworker recv_handles", rc);
    if (nh != 1 || len != 5 || memcmp(buf, "write", 5) != 0) {
        fprintf(stderr,
                "child: expected \"write\" with one handle, got %lu "
                "bytes and %lu handles\n",
                (unsigned long)len, (unsigned long)nh);
        return 97;
    }
    if (nat_write(h[0], "written by the child") != 0)
        return 98;
    nat_close(h[0]);
    rc = csend(p, "done");
    if (rc != MSGPIPE_OK)
        return child_fail("fileworker send", rc);
    /* And the other way: a file of the child's own. */
    mine = tmp_file_try();
    if (mine == NAT_NONE || nat_write(mine, "from the child") != 0)
        return 99;
    rc = msgpipe_send_handles(p, "yours", 5, &mine, 1, SUP_T_LONG);
    nat_close(mine);
    if (rc != MSGPIPE_OK)
        return child_fail("fileworker send_handles", rc);
    return child_drain_and_exit(p, 0);
}

static int child_handles_big(void)
{
    msgpipe *p = child_pipe();
    size_t big = 16 * MiB, len;
    unsigned char *m = (unsigned char *)malloc(big);
    char buf[16];
    nat h[2];
    int rc;
    h[0] = tmp_file_try();
    h[1] = tmp_file_try();
    if (m == NULL || h[0] == NAT_NONE || h[1] == NAT_NONE)
        return 96;
    sup_fill(m, big, 16);
    rc = csend(p, "ready");
    if (rc != MSGPIPE_OK)
        return child_fail("handles-big send", rc);
    rc = msgpipe_recv(p, buf, sizeof(buf), &len, SUP_T_LONG);
    if (rc != MSGPIPE_OK)
        return child_fail("handles-big recv", rc);
    rc = msgpipe_send_handles(p, m, big, h, 2, SUP_T_LONG);
    fprintf(stderr,
            "child: the 16 MiB send returned %s; it should have been "
            "killed first\n",
            msgpipe_errname(rc));
    return 3;
}

static int child_handles_abort(void)
{
    msgpipe *p = child_pipe();
    nat h[2];
    int rc, i;
    for (i = 0; i < 2; i++) {
        char text[32];
        h[i] = tmp_file_try();
        snprintf(text, sizeof(text), "child file %d", i);
        if (h[i] == NAT_NONE || nat_write(h[i], text) != 0)
            return 96;
    }
    rc = msgpipe_send_handles(p, "with handles", 12, h, 2, SUP_T_LONG);
    if (rc != MSGPIPE_OK)
        return child_fail("handles-abort send_handles", rc);
    quiet_abort();
    return 0; /* not reached */
}

static int child_main(int argc, char **argv)
{
    if (argc < 1) {
        fprintf(stderr, "child: no mode\n");
        return 100;
    }
    if (argc == 2 && strcmp(argv[0], "echo") == 0)
        return child_echo(atoi(argv[1]));
    if (argc == 2 && strcmp(argv[0], "exit") == 0) {
        msgpipe *p = child_pipe();
        msgpipe_close(p);
        return atoi(argv[1]);
    }
    if (argc == 3 && strcmp(argv[0], "sendblock") == 0)
        return child_sendblock(atol(argv[1]), argv[2]);
    if (argc == 1 && strcmp(argv[0], "abort") == 0)
        return child_abort();
    if (strcmp(argv[0], "argv") == 0)
        return child_argv(argc, argv);
    if (strcmp(argv[0], "getenv") == 0)
        return child_getenv(argc, argv);
    if (argc == 1 && strcmp(argv[0], "twice") == 0)
        return child_twice();
    if (argc == 1 && strcmp(argv[0], "cwd") == 0)
        return child_cwd();
    if (strcmp(argv[0], "fds") == 0)
        return child_fds(argc, argv);
    if (argc == 1 && strcmp(argv[0], "big2000") == 0)
        return child_big2000();
    if (argc == 1 && strcmp(argv[0], "fileworker") == 0)
        return child_fileworker();
    if (argc == 1 && strcmp(argv[0], "handles-big") == 0)
        return child_handles_big();
    if (argc == 1 && strcmp(argv[0], "handles-abort") == 0)
        return child_handles_abort();
    fprintf(stderr, "child: unknown mode %s\n", argv[0]);
    return 100;
}

/* ---- Parent helpers ---------------------------------------------------- */

/* Start "SELF --child ARGS..." with msgpipe_spawn; asserts success. */
static void spawn_self(const char *const *args, const msgpipe_spawn_options *so,
                       msgpipe **p, msgpipe_process **proc)
{
    const char *argv[40];
    size_t n = 0, i;
    argv[n++] = sup_self_path();
    argv[n++] = "--child";
    for (i = 0; args[i] != NULL && n < 39; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    *p = NULL;
    *proc = NULL;
    assert_rc(msgpipe_spawn(argv, so, p, proc), MSGPIPE_OK);
    assert_non_null(*p);
    assert_non_null(*proc);
}

static int wait_exit(msgpipe_process *proc)
{
    int code = -1000;
    assert_rc(msgpipe_process_wait(proc, SUP_T_LONG, &code), MSGPIPE_OK);
    return code;
}

static void send_text(msgpipe *p, const char *s)
{
    assert_rc(msgpipe_send(p, s, strlen(s), SUP_T), MSGPIPE_OK);
}

static void expect_text(msgpipe *p, const char *want)
{
    void *m = NULL;
    size_t len = 0;
    assert_rc(msgpipe_recv_alloc(p, &m, &len, SUP_T_LONG), MSGPIPE_OK);
    if (len != strlen(want) || memcmp(m, want, len) != 0) {
        print_error("received \"%.*s\" (%lu bytes), expected \"%s\"\n",
                    (int)len, (const char *)m, (unsigned long)len, want);
        msgpipe_free(m);
        fail();
    }
    msgpipe_free(m);
}

/* Assert that the file behind h reads exactly `want` from offset 0. */
static void expect_file(nat h, const char *want)
{
    char buf[256];
    assert_true(nat_read_all(h, buf, sizeof(buf)) >= 0);
    assert_string_equal(buf, want);
}

/* Make and close one pair, so that whatever the library sets up once
 * (per process) is there before descriptors or handles are counted. */
static void warm_up(void)
{
    msgpipe *a = NULL, *b = NULL;
    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    msgpipe_close(a);
    msgpipe_close(b);
}

static void check_pipes_null_after_error(msgpipe *p, msgpipe_process *proc)
{
    assert_null(p);
    assert_null(proc);
}

/* ---- Pairs ------------------------------------------------------------- */

static void test_pair_round_trips_empty_to_1mib(void **state)
{
    static const size_t sizes[] = {0, 1, 64 * KiB, 1 * MiB};
    msgpipe *a = NULL, *b = NULL;
    unsigned char *buf = (unsigned char *)malloc(MiB);
    sup_echo *e;
    size_t k, len;
    int end_rc = 0;
    (void)state;

    assert_non_null(buf);
    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    assert_non_null(a);
    assert_non_null(b);
    e = sup_echo_start(b);
    for (k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        sup_fill(buf, sizes[k], (uint32_t)k);
        assert_rc(msgpipe_send(a, buf, sizes[k], SUP_T_LONG), MSGPIPE_OK);
        memset(buf, 0, sizes[k]);
        len = 12345;
        assert_rc(msgpipe_recv(a, buf, MiB, &len, SUP_T_LONG), MSGPIPE_OK);
        assert_int_equal(len, sizes[k]);
        assert_pattern(buf, len, (uint32_t)k);
    }
    msgpipe_close(a);
    assert_int_equal(sup_echo_join(e, &end_rc), 4);
    assert_rc(end_rc, MSGPIPE_ECLOSED);
    msgpipe_close(b);
    free(buf);
}

static void test_pair_keeps_order_both_ways(void **state)
{
    msgpipe *a = NULL, *b = NULL;
    unsigned char buf[64];
    uint32_t i;
    size_t len;
    (void)state;

    memset(buf, 'o', sizeof(buf));
    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    for (i = 0; i < 200; i++) {
        sup_put32(buf, i);
        assert_rc(msgpipe_send(a, buf, 4 + i % 40, SUP_T), MSGPIPE_OK);
        assert_rc(msgpipe_send(b, buf, 4 + i % 40, SUP_T), MSGPIPE_OK);
    }
    for (i = 0; i < 200; i++) {
        assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
        assert_int_equal(len, 4 + i % 40);
        assert_int_equal(sup_get32(buf), i);
        assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
        assert_int_equal(len, 4 + i % 40);
        assert_int_equal(sup_get32(buf), i);
    }
    assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, 0), MSGPIPE_ETIMEDOUT);
    msgpipe_close(a);
    msgpipe_close(b);
}

static void test_pair_enobufs_keeps_the_message(void **state)
{
    msgpipe *a = NULL, *b = NULL;
    unsigned char buf[100];
    size_t len = 0;
    (void)state;

    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    sup_fill(buf, 100, 77);
    assert_rc(msgpipe_send(a, buf, 100, SUP_T), MSGPIPE_OK);
    memset(buf, 0, sizeof(buf));
    assert_rc(msgpipe_recv(b, buf, 10, &len, SUP_T), MSGPIPE_ENOBUFS);
    assert_int_equal(len, 100);
    assert_rc(msgpipe_recv(b, NULL, 0, &len, SUP_T), MSGPIPE_ENOBUFS);
    assert_int_equal(len, 100);
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 100);
    assert_pattern(buf, 100, 77);
    msgpipe_close(a);
    msgpipe_close(b);
}

static void test_pair_max_message_refuses_larger_sends(void **state)
{
    msgpipe_options o;
    msgpipe *a = NULL, *b = NULL;
    unsigned char buf[1001];
    size_t len;
    (void)state;

    msgpipe_options_init(&o);
    o.max_message = 1000;
    assert_rc(msgpipe_pair(&o, &a, &b), MSGPIPE_OK);
    memset(buf, 'x', sizeof(buf));
    assert_rc(msgpipe_send(a, buf, 1001, SUP_T), MSGPIPE_EMSGSIZE);
    assert_rc(msgpipe_send(b, buf, 1001, SUP_T), MSGPIPE_EMSGSIZE);
    assert_rc(msgpipe_send(a, buf, 1000, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 1000);
    /* Nothing of the refused message arrived. */
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, 0), MSGPIPE_ETIMEDOUT);
    msgpipe_close(a);
    msgpipe_close(b);
}

/* The parent's end of a spawned pipe has max_message 1000 (pipe_options),
 * the child's the default: the child's 2000-byte message is EMSGSIZE in
 * the parent, with its size, and the next message arrives. */
static void test_spawned_pipe_max_message_discards_and_goes_on(void **state)
{
    const char *args[] = {"big2000", NULL};
    msgpipe_spawn_options so;
    msgpipe_options po;
    msgpipe *p;
    msgpipe_process *proc;
    char buf[3000];
    size_t len = 0;
    (void)state;

    msgpipe_options_init(&po);
    po.max_message = 1000;
    msgpipe_spawn_options_init(&so);
    so.pipe_options = &po;
    spawn_self(args, &so, &p, &proc);
    assert_rc(msgpipe_recv(p, buf, sizeof(buf), &len, SUP_T_LONG),
              MSGPIPE_EMSGSIZE);
    assert_int_equal(len, 2000);
    expect_text(p, "after");
    msgpipe_close(p);
    assert_int_equal(wait_exit(proc), 0);
    msgpipe_process_close(proc);
}

static void test_pair_timeout_zero_on_empty_is_etimedout(void **state)
{
    msgpipe *a = NULL, *b = NULL;
    char buf[8];
    size_t len;
    void *m = (void *)buf;
    (void)state;

    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, 0), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, 0), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, 50), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_recv_alloc(b, &m, &len, 0), MSGPIPE_ETIMEDOUT);
    assert_null(m);
    /* Nothing was lost: the pipe still works. */
    send_text(a, "x");
    expect_text(b, "x");
    msgpipe_close(a);
    msgpipe_close(b);
}

/* (16 KiB: everything fits in the smallest pipe buffer, a FIFO's 64 KiB,
 * with nobody reading yet.) */
static void test_pair_close_is_graceful_then_eclosed(void **state)
{
    msgpipe *a = NULL, *b = NULL;
    unsigned char *big = (unsigned char *)malloc(16 * KiB);
    unsigned char buf[16 * 1024];
    size_t len;
    (void)state;

    assert_non_null(big);
    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    sup_fill(big, 16 * KiB, 9);
    send_text(a, "one");
    assert_rc(msgpipe_send(a, big, 16 * KiB, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_send(a, NULL, 0, SUP_T), MSGPIPE_OK);
    msgpipe_close(a);
    expect_text(b, "one");
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 16 * KiB);
    assert_pattern(buf, len, 9);
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 0);
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, SUP_T), MSGPIPE_ECLOSED);
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, 0), MSGPIPE_ECLOSED);
    assert_rc(msgpipe_send(b, "late", 4, SUP_T), MSGPIPE_ECLOSED);
    msgpipe_close(b);
    free(big);
}

static void test_pair_poll_and_native_handle(void **state)
{
    msgpipe *a = NULL, *b = NULL;
    msgpipe_pollitem it[2];
    msgpipe_native h;
    char buf[8];
    size_t len;
    (void)state;

    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    memset(it, 0, sizeof(it));
    it[0].pipe = b;
    it[0].events = MSGPIPE_POLLIN;
    it[1].pipe = a;
    it[1].events = MSGPIPE_POLLOUT;
    assert_int_equal(msgpipe_poll(it, 1, 0), MSGPIPE_ETIMEDOUT);
    assert_int_equal(msgpipe_poll(&it[1], 1, SUP_T), 1);
    assert_int_equal(it[1].revents, MSGPIPE_POLLOUT);

    assert_rc(msgpipe_native_handle(b, MSGPIPE_POLLIN, &h), MSGPIPE_OK);
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, 0), MSGPIPE_ETIMEDOUT);
    assert_int_equal(sup_wait_native(h, MSGPIPE_POLLIN, 50), 0);
    send_text(a, "ping");
    assert_int_equal(sup_wait_native(h, MSGPIPE_POLLIN, SUP_T), 1);
    assert_int_equal(msgpipe_poll(it, 1, SUP_T), 1);
    assert_int_equal(it[0].revents, MSGPIPE_POLLIN);
    expect_text(b, "ping");
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, 0), MSGPIPE_ETIMEDOUT);
    assert_int_equal(msgpipe_poll(it, 1, 0), MSGPIPE_ETIMEDOUT);

    /* The end of the pipe is readable too. */
    msgpipe_close(a);
    assert_int_equal(msgpipe_poll(it, 1, SUP_T), 1);
    assert_int_equal(it[0].revents, MSGPIPE_POLLIN);
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, 0), MSGPIPE_ECLOSED);
    msgpipe_close(b);
}

static void test_pair_rejects_null_outputs(void **state)
{
    msgpipe *a = (msgpipe *)&state, *b = (msgpipe *)&state;
    (void)state;

    assert_rc(msgpipe_pair(NULL, NULL, &b), MSGPIPE_EINVAL);
    assert_null(b);
    assert_rc(msgpipe_pair(NULL, &a, NULL), MSGPIPE_EINVAL);
    assert_null(a);
    {
        msgpipe_options o;
        msgpipe_options_init(&o);
        o.struct_size = 0;
        a = b = (msgpipe *)&state;
        assert_rc(msgpipe_pair(&o, &a, &b), MSGPIPE_EINVAL);
        assert_null(a);
        assert_null(b);
        assert_rc(msgpipe_from_parent(&o, &a), MSGPIPE_EINVAL);
        assert_null(a);
    }
}

/* ---- Spawning ----------------------------------------------------------- */

static void test_spawn_child_echoes_and_exits_with_7(void **state)
{
    static const size_t sizes[] = {0, 1, 64 * KiB, 1 * MiB};
    const char *args[] = {"echo", "7", NULL};
    unsigned char *buf = (unsigned char *)malloc(MiB);
    msgpipe *p;
    msgpipe_process *proc;
    size_t k, len;
    int code = -1000;
    (void)state;

    assert_non_null(buf);
    spawn_self(args, NULL, &p, &proc);
    assert_true(msgpipe_process_pid(proc) > 0);
    assert_true(msgpipe_process_pid(proc) != sup_getpid());
    for (k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        sup_fill(buf, sizes[k], (uint32_t)k + 50);
        assert_rc(msgpipe_send(p, buf, sizes[k], SUP_T_LONG), MSGPIPE_OK);
        memset(buf, 0, sizes[k]);
        assert_rc(msgpipe_recv(p, buf, MiB, &len, SUP_T_LONG), MSGPIPE_OK);
        assert_int_equal(len, sizes[k]);
        assert_pattern(buf, len, (uint32_t)k + 50);
    }
    msgpipe_close(p); /* the child sees ECLOSED and exits 7 */
    assert_rc(msgpipe_process_wait(proc, SUP_T_LONG, &code), MSGPIPE_OK);
    assert_int_equal(code, 7);
    /* Once exited, the same answer at once. */
    code = -1000;
    assert_rc(msgpipe_process_wait(proc, 0, &code), MSGPIPE_OK);
    assert_int_equal(code, 7);
    assert_rc(msgpipe_process_wait(proc, 0, NULL), MSGPIPE_OK);
    msgpipe_process_close(proc);
    free(buf);
}

static void test_process_wait_times_out_while_child_runs(void **state)
{
    const char *args[] = {"echo", "0", NULL};
    msgpipe *p;
    msgpipe_process *proc;
    int code = -1000;
    (void)state;

    spawn_self(args, NULL, &p, &proc);
    assert_rc(msgpipe_process_wait(proc, 0, &code), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_process_wait(proc, 100, &code), MSGPIPE_ETIMEDOUT);
    send_text(p, "still there?");
    expect_text(p, "still there?");
    msgpipe_close(p);
    assert_int_equal(wait_exit(proc), 0);
    msgpipe_process_close(proc);
}

static void test_process_calls_reject_bad_arguments(void **state)
{
    const char *args[] = {"echo", "0", NULL};
    msgpipe *p;
    msgpipe_process *proc;
    int code;
    (void)state;

    assert_rc(msgpipe_process_wait(NULL, 0, &code), MSGPIPE_EINVAL);
    assert_rc(msgpipe_process_kill(NULL), MSGPIPE_EINVAL);
    assert_int_equal(msgpipe_process_pid(NULL), -1);
    msgpipe_process_close(NULL);
    spawn_self(args, NULL, &p, &proc);
    assert_rc(msgpipe_process_wait(proc, -2, &code), MSGPIPE_EINVAL);
    msgpipe_close(p);
    assert_int_equal(wait_exit(proc), 0);
    msgpipe_process_close(proc);
}

/* The child sends N messages, then blocks; it is killed before the parent
 * reads any: every message arrives, then ECLOSED; the exit code is -9
 * (POSIX) or 1 (Windows). */
static void test_kill_gives_every_message_then_eclosed(void **state)
{
    char marker[512], buf[64], want[64];
    const char *args[] = {"sendblock", "20", marker, NULL};
    msgpipe *p;
    msgpipe_process *proc;
    int64_t deadline;
    size_t len;
    int i, code = -1000;
    (void)state;

    tmp_path(marker, sizeof(marker), "kill");
    spawn_self(args, NULL, &p, &proc);
    deadline = sup_now_ms() + SUP_T_LONG;
    while (!file_exists(marker) && sup_now_ms() < deadline)
        sup_sleep_ms(5);
    assert_true(file_exists(marker));
    assert_rc(msgpipe_process_wait(proc, 0, &code), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_process_kill(proc), MSGPIPE_OK);
    assert_rc(msgpipe_process_wait(proc, SUP_T_LONG, &code), MSGPIPE_OK);
    assert_int_equal(code, KILLED_CODE);
    for (i = 0; i < 20; i++) {
        snprintf(want, sizeof(want), "message %d", i);
        expect_text(p, want);
    }
    assert_rc(msgpipe_recv(p, buf, sizeof(buf), &len, SUP_T_LONG),
              MSGPIPE_ECLOSED);
    /* Killing an exited (and reaped) child is not an error. */
    assert_rc(msgpipe_process_kill(proc), MSGPIPE_OK);
    assert_rc(msgpipe_process_wait(proc, 0, &code), MSGPIPE_OK);
    assert_int_equal(code, KILLED_CODE);
    msgpipe_close(p);
    msgpipe_process_close(proc);
    rm_file(marker);
}

typedef struct {
    msgpipe_process *proc;
    int rc;
    int code;
} waiter;

static void *waiter_main(void *arg)
{
    waiter *w = (waiter *)arg;
    w->rc = msgpipe_process_wait(w->proc, MSGPIPE_INFINITE, &w->code);
    return NULL;
}

/* One thread waits without a timeout, another kills: the wait returns with
 * the kill's exit code. */
static void test_kill_from_another_thread_ends_a_waiting_wait(void **state)
{
    const char *args[] = {"echo", "0", NULL};
    waiter *w = (waiter *)calloc(1, sizeof(*w));
    msgpipe *p;
    sup_thread *t;
    (void)state;

    assert_non_null(w);
    spawn_self(args, NULL, &p, &w->proc);
    w->code = -1000;
    t = sup_thread_start(waiter_main, w);
    sup_sleep_ms(100); /* the waiter is now inside the wait */
    assert_true(msgpipe_process_pid(w->proc) > 0);
    assert_rc(msgpipe_process_kill(w->proc), MSGPIPE_OK);
    assert_int_equal(sup_thread_join_timeout(t, SUP_T_LONG, NULL), 0);
    assert_rc(w->rc, MSGPIPE_OK);
    assert_int_equal(w->code, KILLED_CODE);
    msgpipe_close(p);
    msgpipe_process_close(w->proc);
    free(w);
}

static void test_kill_after_exit_is_not_an_error(void **state)
{
    const char *args[] = {"exit", "3", NULL};
    msgpipe *p;
    msgpipe_process *proc;
    char buf[8];
    size_t len;
    int code = -1000;
    (void)state;

    spawn_self(args, NULL, &p, &proc);
    assert_rc(msgpipe_recv(p, buf, sizeof(buf), &len, SUP_T_LONG),
              MSGPIPE_ECLOSED);
    /* Exited, not yet waited for. */
    sup_sleep_ms(100);
    assert_rc(msgpipe_process_kill(proc), MSGPIPE_OK);
    assert_rc(msgpipe_process_wait(proc, SUP_T_LONG, &code), MSGPIPE_OK);
    assert_int_equal(code, 3);
    msgpipe_close(p);
    msgpipe_process_close(proc);
}

static void test_crashing_child_gives_eclosed_never_a_hang(void **state)
{
    const char *args[] = {"abort", NULL};
    msgpipe *p;
    msgpipe_process *proc;
    char buf[32];
    size_t len;
    int code;
    (void)state;

    spawn_self(args, NULL, &p, &proc);
    expect_text(p, "before abort");
    assert_rc(msgpipe_recv(p, buf, sizeof(buf), &len, SUP_T_LONG),
              MSGPIPE_ECLOSED);
    code = wait_exit(proc);
#ifdef _WIN32
    assert_int_equal(code, 3); /* the C runtime's abort() */
#else
    assert_int_equal(code, -6); /* minus SIGABRT */
#endif
    msgpipe_close(p);
    msgpipe_process_close(proc);
}

static void test_spawn_argv_round_trip(void **state)
{
    static const char *const odd[] = {
        "plain",
        "with space",
        "  two  leading and trailing  ",
        "\"quoted\"",
        "in\"side",
        "back\\slash",
        "trailing backslash\\",
        "two trailing\\\\",
        "\\\"",
        "\\\\\"x\\\\",
        "",
        "tab\there",
        "caf\xc3\xa9 \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac",
        "*?<>|&^%",
        NULL};
    const char *args[24];
    msgpipe *p;
    msgpipe_process *proc;
    size_t i, n = 0;
    (void)state;

    args[n++] = "argv";
    for (i = 0; odd[i] != NULL; i++)
        args[n++] = odd[i];
    args[n] = NULL;
    spawn_self(args, NULL, &p, &proc);
    for (i = 0; odd[i] != NULL; i++)
        expect_text(p, odd[i]);
    expect_text(p, "end");
    msgpipe_close(p);
    assert_int_equal(wait_exit(proc), 0);
    msgpipe_process_close(proc);
}

static void test_spawn_env_adds_and_replaces(void **state)
{
    static const char *const env[] = {"MPT_SPAWN_ADDED=hello world=1",
                                      "MPT_SPAWN_REPLACED=new", NULL};
    const char *args[] = {
        "getenv",         "MPT_SPAWN_ADDED", "MPT_SPAWN_REPLACED",
        "MPT_SPAWN_KEPT", "MPT_SPAWN_NEVER", NULL};
    env_saved s1, s2, s3;
    msgpipe_spawn_options so;
    msgpipe *p;
    msgpipe_process *proc;
    (void)state;

    env_save(&s1, "MPT_SPAWN_REPLACED");
    env_save(&s2, "MPT_SPAWN_KEPT");
    env_save(&s3, "MPT_SPAWN_NEVER");
    env_set("MPT_SPAWN_REPLACED", "old");
    env_set("MPT_SPAWN_KEPT", "kept");
    env_set("MPT_SPAWN_NEVER", NULL);
    msgpipe_spawn_options_init(&so);
    so.env = env;
    spawn_self(args, &so, &p, &proc);
    env_restore(&s1);
    env_restore(&s2);
    env_restore(&s3);
    expect_text(p, "hello world=1");
    expect_text(p, "new");
    expect_text(p, "kept");
    expect_text(p, "(unset)");
    msgpipe_close(p);
    assert_int_equal(wait_exit(proc), 0);
    msgpipe_process_close(proc);
    /* This process's environment was not changed by the spawn. */
    assert_null(env_get("MPT_SPAWN_ADDED"));
}

/* A MSGPIPE_PARENT this process inherited itself is not what the child
 * sees: the child's names its own end. */
static void test_spawn_replaces_an_inherited_msgpipe_parent(void **state)
{
    const char *args[] = {"echo", "0", NULL};
    env_saved s;
    msgpipe *p;
    msgpipe_process *proc;
    (void)state;

    env_save(&s, "MSGPIPE_PARENT");
    env_set("MSGPIPE_PARENT", "12345");
    spawn_self(args, NULL, &p, &proc);
    env_restore(&s);
    send_text(p, "hi");
    expect_text(p, "hi");
    msgpipe_close(p);
    assert_int_equal(wait_exit(proc), 0);
    msgpipe_process_close(proc);
}

static void test_spawn_cwd(void **state)
{
    const char *args[] = {"cwd", NULL};
    char dir[1024], want[4096];
    msgpipe_spawn_options so;
    msgpipe *p;
    msgpipe_process *proc;
    void *m = NULL;
    size_t len;
    (void)state;

    tmp_dir(dir, sizeof(dir));
#ifdef _WIN32
    {
        DWORD n = GetFullPathNameA(dir, sizeof(want), want, NULL);
        assert_true(n > 0 && n < sizeof(want));
    }
#else
    assert_non_null(realpath(dir, want));
#endif
    msgpipe_spawn_options_init(&so);
    so.cwd = dir;
    spawn_self(args, &so, &p, &proc);
    assert_rc(msgpipe_recv_alloc(p, &m, &len, SUP_T_LONG), MSGPIPE_OK);
#ifdef _WIN32
    if (_stricmp((const char *)m, want) != 0) {
#else
    if (strcmp((const char *)m, want) != 0) {
#endif
        print_error("child's cwd \"%s\", expected \"%s\"\n", (char *)m, want);
        msgpipe_free(m);
        fail();
    }
    msgpipe_free(m);
    msgpipe_close(p);
    assert_int_equal(wait_exit(proc), 0);
    msgpipe_process_close(proc);
    rm_dir(dir);
}

/* msgpipe_spawn must fail with `expected`; a child started by mistake is
 * released before the test fails, so that it leaves nothing behind. */
static void expect_spawn_error(const char *const *argv,
                               const msgpipe_spawn_options *so, int expected)
{
    msgpipe *p = (msgpipe *)&p;
    msgpipe_process *proc = (msgpipe_process *)&p;
    int rc = msgpipe_spawn(argv, so, &p, &proc);
    if (rc == MSGPIPE_OK) {
        int code = -1000;
        msgpipe_close(p);
        msgpipe_process_wait(proc, SUP_T_LONG, &code);
        msgpipe_process_close(proc);
        print_error("msgpipe_spawn(\"%s\") returned OK (the child exited "
                    "%d), expected %s\n",
                    argv[0], code, msgpipe_errname(expected));
        fail();
    }
    assert_rc(rc, expected);
    check_pipes_null_after_error(p, proc);
}

static void test_spawn_missing_cwd_is_enoent(void **state)
{
    const char *argv[] = {NULL, "--child", "echo", "0", NULL};
    msgpipe_spawn_options so;
    char dir[1024];
    long before;
    (void)state;

    argv[0] = sup_self_path();
    tmp_path(dir, sizeof(dir), "nocwd");
    warm_up();
    before = open_count();
    msgpipe_spawn_options_init(&so);
    so.cwd = dir;
    expect_spawn_error(argv, &so, MSGPIPE_ENOENT);
    assert_int_equal(open_count(), before);
}

static void test_spawn_missing_program_is_enoent(void **state)
{
#ifdef _WIN32
    const char *path = "C:\\mpt-no-such-dir\\mpt-no-such-program.exe";
#else
    const char *path = "/nonexistent-mpt-dir/mpt-no-such-program";
#endif
    const char *argv1[] = {NULL, "x", NULL};
    const char *argv2[] = {"mpt-no-such-program-on-path", NULL};
    long before;
    (void)state;

    argv1[0] = path;
    warm_up();
    before = open_count();
    expect_spawn_error(argv1, NULL, MSGPIPE_ENOENT);
    expect_spawn_error(argv2, NULL, MSGPIPE_ENOENT);
    assert_int_equal(open_count(), before);
}

static void test_spawn_rejects_bad_arguments(void **state)
{
    const char *argv[] = {NULL, "--child", "echo", "0", NULL};
    const char *empty[] = {NULL};
    static const char *const no_eq[] = {"MPT_OK=1", "MPT_NO_EQUALS", NULL};
    static const char *const parent[] = {"MSGPIPE_PARENT=5", NULL};
    msgpipe_spawn_options so;
    msgpipe_options po;
    msgpipe *p = NULL;
    msgpipe_process *proc = NULL;
    (void)state;

    argv[0] = sup_self_path();
    assert_rc(msgpipe_spawn(NULL, NULL, &p, &proc), MSGPIPE_EINVAL);
    check_pipes_null_after_error(p, proc);
    assert_rc(msgpipe_spawn(empty, NULL, &p, &proc), MSGPIPE_EINVAL);
    check_pipes_null_after_error(p, proc);
    assert_rc(msgpipe_spawn(argv, NULL, NULL, &proc), MSGPIPE_EINVAL);
    assert_null(proc);
    assert_rc(msgpipe_spawn(argv, NULL, &p, NULL), MSGPIPE_EINVAL);
    assert_null(p);
    msgpipe_spawn_options_init(&so);
    so.env = no_eq;
    assert_rc(msgpipe_spawn(argv, &so, &p, &proc), MSGPIPE_EINVAL);
    check_pipes_null_after_error(p, proc);
    so.env = parent;
    assert_rc(msgpipe_spawn(argv, &so, &p, &proc), MSGPIPE_EINVAL);
    check_pipes_null_after_error(p, proc);
    /* Options that were not initialised (struct_size 0). */
    msgpipe_spawn_options_init(&so);
    so.struct_size = 0;
    assert_rc(msgpipe_spawn(argv, &so, &p, &proc), MSGPIPE_EINVAL);
    check_pipes_null_after_error(p, proc);
    msgpipe_spawn_options_init(&so);
    msgpipe_options_init(&po);
    po.struct_size = 0;
    so.pipe_options = &po;
    assert_rc(msgpipe_spawn(argv, &so, &p, &proc), MSGPIPE_EINVAL);
    check_pipes_null_after_error(p, proc);
}

/* ---- msgpipe_from_parent ------------------------------------------------ */

static void test_from_parent_removes_the_variable(void **state)
{
    const char *args[] = {"twice", NULL};
    msgpipe *p;
    msgpipe_process *proc;
    (void)state;

    spawn_self(args, NULL, &p, &proc);
    expect_text(p, "ok");
    msgpipe_close(p);
    assert_int_equal(wait_exit(proc), 0);
    msgpipe_process_close(proc);
}

static void test_from_parent_unset_is_enoent(void **state)
{
    env_saved s;
    msgpipe *p = (msgpipe *)&s;
    (void)state;

    env_save(&s, "MSGPIPE_PARENT");
    env_set("MSGPIPE_PARENT", NULL);
    assert_rc(msgpipe_from_parent(NULL, &p), MSGPIPE_ENOENT);
    assert_null(p);
    assert_rc(msgpipe_from_parent(NULL, NULL), MSGPIPE_EINVAL);
    env_restore(&s);
}

/* Set MSGPIPE_PARENT to value, expect EBADNAME and the variable left as
 * it was. */
static void expect_bad_parent(const char *value)
{
    msgpipe *p = (msgpipe *)&value;
    const char *after;
    int rc;

    env_set("MSGPIPE_PARENT", value);
    rc = msgpipe_from_parent(NULL, &p);
    after = env_get("MSGPIPE_PARENT");
    if (rc != MSGPIPE_EBADNAME) {
        print_error("MSGPIPE_PARENT=\"%s\": %s, expected EBADNAME\n", value,
                    msgpipe_errname(rc));
        if (rc == MSGPIPE_OK)
            msgpipe_close(p);
        fail();
    }
    assert_null(p);
    assert_non_null(after);
    assert_string_equal(after, value);
}

static void test_from_parent_bad_values_are_ebadname(void **state)
{
    env_saved s;
    (void)state;

    env_save(&s, "MSGPIPE_PARENT");
    expect_bad_parent("abc");
    expect_bad_parent("99999");
    expect_bad_parent("12abc");
    expect_bad_parent("-1");
    expect_bad_parent("4294967296");
    expect_bad_parent("99999999999999999999999");
    expect_bad_parent(" ");
    expect_bad_parent("3,");
    env_restore(&s);
}

/* The value of a handle of this process, as MSGPIPE_PARENT writes it. */
static void native_value(char *buf, size_t cap, nat h)
{
#ifdef _WIN32
    snprintf(buf, cap, "%llu", (unsigned long long)(uintptr_t)h);
#else
    snprintf(buf, cap, "%d", h);
#endif
}

static void test_from_parent_not_a_pipe_is_ebadname(void **state)
{
    env_saved s;
    char v[64];
    nat f = tmp_file();
    (void)state;

    env_save(&s, "MSGPIPE_PARENT");
#ifdef _WIN32
    {
        HANDLE ev = CreateEventA(NULL, TRUE, FALSE, NULL);
        HANDLE r = NULL, w = NULL;
        assert_non_null(ev);
        native_value(v, sizeof(v), f);
        expect_bad_parent(v);
        native_value(v, sizeof(v), ev);
        expect_bad_parent(v);
        /* An anonymous pipe: a byte pipe, not overlapped. */
        assert_true(CreatePipe(&r, &w, NULL, 0));
        native_value(v, sizeof(v), r);
        expect_bad_parent(v);
        assert_true(nat_is_open(ev));
        CloseHandle(ev);
        CloseHandle(r);
        CloseHandle(w);
    }
#else
    if (sup_is_fifo()) {
        int pp[2];
        assert_int_equal(pipe(pp), 0);
        snprintf(v, sizeof(v), "%d,%d", f, f);
        expect_bad_parent(v);
        /* The ends the wrong way round. */
        snprintf(v, sizeof(v), "%d,%d", pp[1], pp[0]);
        expect_bad_parent(v);
        snprintf(v, sizeof(v), "%d", pp[0]);
        expect_bad_parent(v);
        assert_true(nat_is_open(pp[0]));
        assert_true(nat_is_open(pp[1]));
        close(pp[0]);
        close(pp[1]);
    } else {
        int pp[2], dg[2];
        assert_int_equal(pipe(pp), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, dg), 0);
        native_value(v, sizeof(v), f);
        expect_bad_parent(v);
        native_value(v, sizeof(v), pp[0]);
        expect_bad_parent(v);
        native_value(v, sizeof(v), dg[0]);
        expect_bad_parent(v);
        assert_true(nat_is_open(pp[0]));
        assert_true(nat_is_open(dg[0]));
        close(pp[0]);
        close(pp[1]);
        close(dg[0]);
        close(dg[1]);
    }
#endif
    /* Nothing was taken. */
    assert_true(nat_is_open(f));
    nat_close(f);
    env_restore(&s);
}

/* ---- Nothing leaks into a child ------------------------------------------ */

typedef struct {
    volatile long stop;
    volatile long rounds;
} opener;

/* Opens and closes inheritable descriptors (handles) until told to stop. */
static void *opener_main(void *arg)
{
    opener *o = (opener *)arg;
    while (!sup_atomic_get(&o->stop)) {
#ifdef _WIN32
        SECURITY_ATTRIBUTES sa;
        HANDLE h;
        memset(&sa, 0, sizeof(sa));
        sa.nLength = sizeof(sa);
        sa.bInheritHandle = TRUE;
        h = CreateEventA(&sa, TRUE, FALSE, NULL);
        if (h != NULL)
            CloseHandle(h);
#else
        int fd = open("/dev/null", O_RDONLY);
        int pp[2];
        if (fd >= 0)
            close(fd);
        if (pipe(pp) == 0) {
            close(pp[0]);
            close(pp[1]);
        }
#endif
        sup_atomic_add(&o->rounds, 1);
    }
    return NULL;
}

static void test_spawned_child_inherits_only_its_end(void **state)
{
    const char *args[] = {"fds", NULL, NULL};
    char v[64];
    opener *o = (opener *)calloc(1, sizeof(*o));
    sup_thread *t;
    nat keep;
    msgpipe *p;
    msgpipe_process *proc;
    int i;
    (void)state;

    assert_non_null(o);
#ifdef _WIN32
    {
        SECURITY_ATTRIBUTES sa;
        memset(&sa, 0, sizeof(sa));
        sa.nLength = sizeof(sa);
        sa.bInheritHandle = TRUE;
        keep = CreateEventA(&sa, TRUE, TRUE, NULL);
        assert_non_null(keep);
    }
#else
    keep = open("/dev/null", O_RDONLY); /* no O_CLOEXEC: inheritable */
    assert_true(keep >= 0);
#endif
    assert_false(nat_is_private(keep));
    native_value(v, sizeof(v), keep);
    args[1] = v;
    t = sup_thread_start(opener_main, o);
    for (i = 0; i < 10; i++) {
        spawn_self(args, NULL, &p, &proc);
        expect_text(p, "ok");
        msgpipe_close(p);
        assert_int_equal(wait_exit(proc), 0);
        msgpipe_process_close(proc);
    }
    sup_atomic_set(&o->stop, 1);
    sup_thread_join(t);
    assert_true(sup_atomic_get(&o->rounds) > 0);
    nat_close(keep);
    free(o);
}

static void test_hundred_children_at_once(void **state)
{
    enum { N = 100 };
    msgpipe *p[N];
    msgpipe_process *proc[N];
    char code[N][8], msg[32];
    int i;
    (void)state;

    assert_true(sup_raise_fd_limit(4 * N + 64));
    for (i = 0; i < N; i++) {
        const char *args[3];
        snprintf(code[i], sizeof(code[i]), "%d", i % 64);
        args[0] = "echo";
        args[1] = code[i];
        args[2] = NULL;
        spawn_self(args, NULL, &p[i], &proc[i]);
    }
    for (i = 0; i < N; i++) {
        snprintf(msg, sizeof(msg), "child %d", i);
        send_text(p[i], msg);
    }
    for (i = 0; i < N; i++) {
        snprintf(msg, sizeof(msg), "child %d", i);
        expect_text(p[i], msg);
        msgpipe_close(p[i]);
    }
    for (i = 0; i < N; i++) {
        assert_int_equal(wait_exit(proc[i]), i % 64);
        msgpipe_process_close(proc[i]);
    }
}

/* ---- Python's multiprocessing.connection as the child -------------------- */

static void test_python_child_with_the_standard_library(void **state)
{
    static const size_t sizes[] = {0, 5, 64 * KiB, 1 * MiB};
    const char *argv[] = {MPT_PYTHON3, MPT_PY_SPAWN_CHILD, "5", NULL};
    unsigned char *out = (unsigned char *)malloc(MiB);
    msgpipe *p;
    msgpipe_process *proc;
    size_t k;
    int code = -1000;
    (void)state;

    if (MPT_PYTHON3[0] == '\0' || strstr(MPT_PYTHON3, "NOTFOUND") != NULL) {
        free(out);
        SUP_SKIP("python3 was not found when the tests were built");
    }
    assert_non_null(out);
    p = NULL;
    proc = NULL;
    assert_rc(msgpipe_spawn(argv, NULL, &p, &proc), MSGPIPE_OK);
    expect_text(p, "hello from python");
    for (k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        void *m = NULL;
        size_t len = 0;
        sup_fill(out, sizes[k], (uint32_t)k + 200);
        assert_rc(msgpipe_send(p, out, sizes[k], SUP_T_LONG), MSGPIPE_OK);
        assert_rc(msgpipe_recv_alloc(p, &m, &len, SUP_T_LONG), MSGPIPE_OK);
        assert_int_equal(len, sizes[k] + 3);
        assert_memory_equal(m, "py:", 3);
        assert_pattern((unsigned char *)m + 3, sizes[k], (uint32_t)k + 200);
        msgpipe_free(m);
    }
    msgpipe_close(p); /* Python sees EOFError and exits 5 */
    assert_rc(msgpipe_process_wait(proc, SUP_T_LONG, &code), MSGPIPE_OK);
    assert_int_equal(code, 5);
    msgpipe_process_close(proc);
    free(out);
}

/* ---- Handles with messages ---------------------------------------------- */

static void test_file_handle_over_a_pair_is_usable(void **state)
{
    msgpipe *a = NULL, *b = NULL;
    nat f = tmp_file(), h[4];
    char buf[32];
    size_t len = 0, nh = 99;
    (void)state;

    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    assert_rc(msgpipe_send_handles(a, "write here", 10, &f, 1, SUP_T),
              MSGPIPE_OK);
    /* The sender's handle is still its own. */
    assert_true(nat_is_open(f));
    assert_rc(msgpipe_recv_handles(b, buf, sizeof(buf), &len, h, 4, &nh, SUP_T),
              MSGPIPE_OK);
    assert_int_equal(len, 10);
    assert_memory_equal(buf, "write here", 10);
    assert_int_equal(nh, 1);
    assert_true(h[0] != f);
    assert_true(nat_is_open(h[0]));
    assert_true(nat_is_private(h[0]));
    assert_int_equal(nat_write(h[0], "hello from the receiver"), 0);
    nat_close(h[0]);
    expect_file(f, "hello from the receiver");
    nat_close(f);
    msgpipe_close(a);
    msgpipe_close(b);
}

/* A pipe end (POSIX) or an event (Windows): the receiver signals through
 * it, and once both copies are closed the read end sees the end. */
static void test_pipe_end_or_event_handle_works_across(void **state)
{
    msgpipe *a = NULL, *b = NULL;
    nat h[2];
    char buf[8];
    size_t len, nh = 0;
    (void)state;

    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
#ifdef _WIN32
    {
        HANDLE ev = CreateEventA(NULL, TRUE, FALSE, NULL);
        assert_non_null(ev);
        assert_rc(msgpipe_send_handles(a, "ev", 2, &ev, 1, SUP_T), MSGPIPE_OK);
        assert_rc(
            msgpipe_recv_handles(b, buf, sizeof(buf), &len, h, 2, &nh, SUP_T),
            MSGPIPE_OK);
        assert_int_equal(nh, 1);
        assert_int_equal(WaitForSingleObject(ev, 0), WAIT_TIMEOUT);
        assert_true(SetEvent(h[0]));
        assert_int_equal(WaitForSingleObject(ev, 0), WAIT_OBJECT_0);
        CloseHandle(h[0]);
        CloseHandle(ev);
    }
#else
    {
        int pp[2];
        char c = 0;
        assert_int_equal(pipe(pp), 0);
        assert_rc(msgpipe_send_handles(a, "wr", 2, &pp[1], 1, SUP_T),
                  MSGPIPE_OK);
        close(pp[1]);
        assert_rc(
            msgpipe_recv_handles(b, buf, sizeof(buf), &len, h, 2, &nh, SUP_T),
            MSGPIPE_OK);
        assert_int_equal(nh, 1);
        assert_int_equal(write(h[0], "!", 1), 1);
        assert_int_equal(read(pp[0], &c, 1), 1);
        assert_int_equal(c, '!');
        close(h[0]);
        /* No other copy of the write end is left open anywhere. */
        assert_int_equal(read(pp[0], &c, 1), 0);
        close(pp[0]);
    }
#endif
    msgpipe_close(a);
    msgpipe_close(b);
}

/* MSGPIPE_MAX_HANDLES files in one message, each known by its contents:
 * all arrive, in order. */
static void test_max_handles_in_one_message(void **state)
{
    nat f[MSGPIPE_MAX_HANDLES], h[MSGPIPE_MAX_HANDLES + 1];
    msgpipe *a = NULL, *b = NULL;
    char buf[32], want[32];
    size_t len, nh = 0;
    int i;
    (void)state;

    for (i = 0; i < MSGPIPE_MAX_HANDLES; i++) {
        f[i] = tmp_file();
        snprintf(want, sizeof(want), "file %d", i);
        assert_int_equal(nat_write(f[i], want), 0);
    }
    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    assert_rc(
        msgpipe_send_handles(a, "sixteen", 7, f, MSGPIPE_MAX_HANDLES, SUP_T),
        MSGPIPE_OK);
    assert_rc(msgpipe_recv_handles(b, buf, sizeof(buf), &len, h,
                                   MSGPIPE_MAX_HANDLES + 1, &nh, SUP_T),
              MSGPIPE_OK);
    assert_int_equal(len, 7);
    assert_int_equal(nh, MSGPIPE_MAX_HANDLES);
    for (i = 0; i < MSGPIPE_MAX_HANDLES; i++) {
        snprintf(want, sizeof(want), "file %d", i);
        expect_file(h[i], want);
        nat_close(h[i]);
        nat_close(f[i]);
    }
    msgpipe_close(a);
    msgpipe_close(b);
}

static void test_zero_handles_is_a_plain_message(void **state)
{
    msgpipe *a = NULL, *b = NULL;
    nat h[2] = {NAT_NONE, NAT_NONE};
    char buf[16];
    size_t len, nh = 99;
    (void)state;

    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    assert_rc(msgpipe_send_handles(a, "none", 4, NULL, 0, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_send_handles(a, "none2", 5, h, 0, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_send(a, "plain", 5, SUP_T), MSGPIPE_OK);
    /* A plain receive of a message sent without handles is OK. */
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 4);
    assert_rc(msgpipe_recv_handles(b, buf, sizeof(buf), &len, h, 2, &nh, SUP_T),
              MSGPIPE_OK);
    assert_int_equal(len, 5);
    assert_int_equal(nh, 0);
    nh = 99;
    assert_rc(
        msgpipe_recv_handles(b, buf, sizeof(buf), &len, NULL, 0, &nh, SUP_T),
        MSGPIPE_OK);
    assert_int_equal(len, 5);
    assert_int_equal(nh, 0);
    msgpipe_close(a);
    msgpipe_close(b);
}

static void test_handle_calls_reject_bad_arguments(void **state)
{
    nat f[MSGPIPE_MAX_HANDLES + 1], gone, h[2];
    msgpipe *a = NULL, *b = NULL;
    char buf[8];
    size_t len, nh;
    int i;
    (void)state;

    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    for (i = 0; i <= MSGPIPE_MAX_HANDLES; i++)
        f[i] = tmp_file();
    gone = tmp_file(); /* a value that names nothing open */
    nat_close(gone);
    assert_rc(
        msgpipe_send_handles(a, "x", 1, f, MSGPIPE_MAX_HANDLES + 1, SUP_T),
        MSGPIPE_EINVAL);
    assert_rc(msgpipe_send_handles(a, "x", 1, NULL, 1, SUP_T), MSGPIPE_EINVAL);
    assert_rc(msgpipe_send_handles(a, NULL, 1, f, 1, SUP_T), MSGPIPE_EINVAL);
    assert_rc(msgpipe_send_handles(NULL, "x", 1, f, 1, SUP_T), MSGPIPE_EINVAL);
    assert_rc(msgpipe_send_handles(a, "x", 1, &gone, 1, SUP_T), MSGPIPE_EINVAL);
    /* None of them sent anything. */
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, 0), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_recv_handles(b, buf, sizeof(buf), &len, NULL, 1, &nh, 0),
              MSGPIPE_EINVAL);
    assert_rc(msgpipe_recv_handles(b, buf, sizeof(buf), &len, h, 2, NULL, 0),
              MSGPIPE_EINVAL);
    assert_rc(msgpipe_recv_handles(b, buf, sizeof(buf), NULL, h, 2, &nh, 0),
              MSGPIPE_EINVAL);
    assert_rc(msgpipe_recv_handles(b, NULL, 1, &len, h, 2, &nh, 0),
              MSGPIPE_EINVAL);
    assert_rc(msgpipe_recv_handles(NULL, buf, sizeof(buf), &len, h, 2, &nh, 0),
              MSGPIPE_EINVAL);
    for (i = 0; i <= MSGPIPE_MAX_HANDLES; i++)
        nat_close(f[i]);
    msgpipe_close(a);
    msgpipe_close(b);
}

/* Four handles, room for two: EHANDLES, the first two given, the other
 * two closed - none left open. */
static void test_fewer_slots_than_handles_is_ehandles(void **state)
{
    nat f[4], h[4];
    msgpipe *a = NULL, *b = NULL;
    char buf[16], want[16];
    size_t len = 0, nh = 99;
    long before;
    int i;
    (void)state;

    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    send_text(a, "warm up");
    expect_text(b, "warm up");
    for (i = 0; i < 4; i++) {
        f[i] = tmp_file();
        snprintf(want, sizeof(want), "f%d", i);
        assert_int_equal(nat_write(f[i], want), 0);
    }
    before = open_count();
    assert_rc(msgpipe_send_handles(a, "four", 4, f, 4, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_send_handles(a, "four", 4, f, 4, SUP_T), MSGPIPE_OK);
    h[2] = h[3] = NAT_NONE;
    assert_rc(msgpipe_recv_handles(b, buf, sizeof(buf), &len, h, 2, &nh, SUP_T),
              MSGPIPE_EHANDLES);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "four", 4);
    assert_int_equal(nh, 2);
    assert_true(h[2] == NAT_NONE && h[3] == NAT_NONE);
    expect_file(h[0], "f0");
    expect_file(h[1], "f1");
    nat_close(h[0]);
    nat_close(h[1]);
    /* hcap 0 with h NULL: all closed, still EHANDLES with the message. */
    nh = 99;
    assert_rc(
        msgpipe_recv_handles(b, buf, sizeof(buf), &len, NULL, 0, &nh, SUP_T),
        MSGPIPE_EHANDLES);
    assert_int_equal(len, 4);
    assert_int_equal(nh, 0);
    assert_int_equal(open_count(), before);
    for (i = 0; i < 4; i++)
        nat_close(f[i]);
    msgpipe_close(a);
    msgpipe_close(b);
}

/* A plain receive of a message with handles: the message, EHANDLES, and
 * the handles closed. */
static void test_plain_recv_of_a_handle_message_is_ehandles(void **state)
{
    nat f[3];
    msgpipe *a = NULL, *b = NULL;
    char buf[32];
    void *m = NULL;
    size_t len = 0;
    long before;
    int i;
    (void)state;

    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    send_text(a, "warm up");
    expect_text(b, "warm up");
    for (i = 0; i < 3; i++)
        f[i] = tmp_file();
    before = open_count();
    assert_rc(msgpipe_send_handles(a, "payload", 7, f, 3, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_send_handles(a, "payload2", 8, f, 2, SUP_T), MSGPIPE_OK);
    send_text(a, "next");
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, SUP_T), MSGPIPE_EHANDLES);
    assert_int_equal(len, 7);
    assert_memory_equal(buf, "payload", 7);
    assert_rc(msgpipe_recv_alloc(b, &m, &len, SUP_T), MSGPIPE_EHANDLES);
    assert_non_null(m);
    assert_int_equal(len, 8);
    assert_memory_equal(m, "payload2", 8);
    msgpipe_free(m);
    expect_text(b, "next");
    assert_int_equal(open_count(), before);
    for (i = 0; i < 3; i++)
        nat_close(f[i]);
    msgpipe_close(a);
    msgpipe_close(b);
}

/* ENOBUFS on a message with handles keeps both: a retry with room gets
 * the message and every handle - also after a plain receive said
 * ENOBUFS. */
static void test_enobufs_keeps_message_and_handles(void **state)
{
    nat f[2], h[4];
    msgpipe *a = NULL, *b = NULL;
    unsigned char msg[100], buf[100];
    size_t len = 0, nh = 99;
    (void)state;

    f[0] = tmp_file();
    f[1] = tmp_file();
    assert_int_equal(nat_write(f[0], "zero"), 0);
    assert_int_equal(nat_write(f[1], "one"), 0);
    sup_fill(msg, sizeof(msg), 100);
    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    assert_rc(msgpipe_send_handles(a, msg, sizeof(msg), f, 2, SUP_T),
              MSGPIPE_OK);
    assert_rc(msgpipe_recv_handles(b, buf, 10, &len, h, 4, &nh, SUP_T),
              MSGPIPE_ENOBUFS);
    assert_int_equal(len, 100);
    assert_int_equal(nh, 0);
    assert_rc(msgpipe_recv(b, buf, 10, &len, SUP_T), MSGPIPE_ENOBUFS);
    assert_int_equal(len, 100);
    assert_rc(msgpipe_recv_handles(b, buf, sizeof(buf), &len, h, 4, &nh, SUP_T),
              MSGPIPE_OK);
    assert_int_equal(len, 100);
    assert_pattern(buf, 100, 100);
    assert_int_equal(nh, 2);
    expect_file(h[0], "zero");
    expect_file(h[1], "one");
    nat_close(h[0]);
    nat_close(h[1]);
    nat_close(f[0]);
    nat_close(f[1]);
    msgpipe_close(a);
    msgpipe_close(b);
}

typedef struct {
    msgpipe *p;
    const unsigned char *msg;
    size_t len;
    const nat *h;
    size_t nh;
    int rc;
} delayed_big;

/* Send one message with handles, from another thread (it may not fit in
 * the pipe until the receiver reads). */
static void *delayed_big_main(void *arg)
{
    delayed_big *d = (delayed_big *)arg;
    d->rc = msgpipe_send_handles(d->p, d->msg, d->len, d->h, d->nh, SUP_T_LONG);
    return NULL;
}

/* The same with a message of 200 KiB, larger than any pipe buffer
 * (Windows: sent as a split message), and with a receiver that takes
 * fewer handles than came. */
static void test_enobufs_keeps_a_large_message_and_handles(void **state)
{
    enum { BIG = 200 * 1024 };
    nat f[3], h[4];
    msgpipe *a = NULL, *b = NULL;
    unsigned char *msg = (unsigned char *)malloc(BIG);
    unsigned char *buf = (unsigned char *)malloc(BIG);
    sup_thread *t;
    size_t len = 0, nh = 99;
    long before;
    int i;
    delayed_big *d = (delayed_big *)calloc(1, sizeof(*d));
    (void)state;

    assert_non_null(msg);
    assert_non_null(buf);
    assert_non_null(d);
    for (i = 0; i < 3; i++) {
        char text[16];
        f[i] = tmp_file();
        snprintf(text, sizeof(text), "big %d", i);
        assert_int_equal(nat_write(f[i], text), 0);
    }
    sup_fill(msg, BIG, 200);
    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    send_text(a, "warm up");
    expect_text(b, "warm up");
    before = open_count();
    d->p = a;
    d->msg = msg;
    d->len = BIG;
    d->h = f;
    d->nh = 3;
    t = sup_thread_start(delayed_big_main, d);
    assert_rc(msgpipe_recv_handles(b, buf, 10, &len, h, 4, &nh, SUP_T_LONG),
              MSGPIPE_ENOBUFS);
    assert_int_equal(len, BIG);
    assert_int_equal(nh, 0);
    assert_rc(msgpipe_recv(b, buf, 10, &len, SUP_T), MSGPIPE_ENOBUFS);
    assert_int_equal(len, BIG);
    assert_rc(msgpipe_recv_handles(b, buf, BIG, &len, h, 2, &nh, SUP_T_LONG),
              MSGPIPE_EHANDLES);
    assert_int_equal(len, BIG);
    assert_pattern(buf, BIG, 200);
    assert_int_equal(nh, 2);
    expect_file(h[0], "big 0");
    expect_file(h[1], "big 1");
    nat_close(h[0]);
    nat_close(h[1]);
    sup_thread_join(t);
    assert_rc(d->rc, MSGPIPE_OK);
    assert_int_equal(open_count(), before);
    for (i = 0; i < 3; i++)
        nat_close(f[i]);
    msgpipe_close(a);
    msgpipe_close(b);
    free(msg);
    free(buf);
    free(d);
}

/* A message too large for the receiver's max_message is discarded with
 * its handles closed; the next arrives with its own. */
static void test_emsgsize_closes_the_handles(void **state)
{
    msgpipe_options so;
    sup_pair pr;
    nat f[2], h[2];
    unsigned char *big = (unsigned char *)calloc(1, 2000);
    char buf[64];
    size_t len = 0, nh = 99;
    long before;
    (void)state;

    assert_non_null(big);
    msgpipe_options_init(&so);
    so.max_message = 1000;
    sup_pair_open(&pr, "spawn-emsg", &so, NULL);
    send_text(pr.c, "warm up");
    expect_text(pr.s, "warm up");
    f[0] = tmp_file();
    f[1] = tmp_file();
    assert_int_equal(nat_write(f[1], "second"), 0);
    before = open_count();
    assert_rc(msgpipe_send_handles(pr.c, big, 2000, f, 2, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_send_handles(pr.c, "small", 5, &f[1], 1, SUP_T),
              MSGPIPE_OK);
    assert_rc(
        msgpipe_recv_handles(pr.s, buf, sizeof(buf), &len, h, 2, &nh, SUP_T),
        MSGPIPE_EMSGSIZE);
    assert_int_equal(len, 2000);
    assert_int_equal(nh, 0);
    assert_rc(
        msgpipe_recv_handles(pr.s, buf, sizeof(buf), &len, h, 2, &nh, SUP_T),
        MSGPIPE_OK);
    assert_int_equal(len, 5);
    assert_int_equal(nh, 1);
    expect_file(h[0], "second");
    nat_close(h[0]);
    assert_int_equal(open_count(), before);
    nat_close(f[0]);
    nat_close(f[1]);
    sup_pair_close(&pr);
    free(big);
}

/* Handles sent before a graceful close arrive with their message. */
static void test_handles_sent_before_close_arrive(void **state)
{
    msgpipe *a = NULL, *b = NULL;
    nat f = tmp_file(), h[2];
    char buf[16];
    size_t len = 0, nh = 0;
    (void)state;

    assert_int_equal(nat_write(f, "kept"), 0);
    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    assert_rc(msgpipe_send_handles(a, "last", 4, &f, 1, SUP_T), MSGPIPE_OK);
    msgpipe_close(a);
    nat_close(f);
    assert_rc(msgpipe_recv_handles(b, buf, sizeof(buf), &len, h, 2, &nh, SUP_T),
              MSGPIPE_OK);
    assert_int_equal(nh, 1);
    expect_file(h[0], "kept");
    nat_close(h[0]);
    assert_rc(msgpipe_recv_handles(b, buf, sizeof(buf), &len, h, 2, &nh, SUP_T),
              MSGPIPE_ECLOSED);
    msgpipe_close(b);
}

enum { STREAM_N = 300, STREAM_EVERY = 23, STREAM_FILES = 14 };

typedef struct {
    msgpipe *p;
    nat files[STREAM_FILES];
    int rc;
    int at;
} stream_sender;

/* Some plain messages and every other message with a handle are 70,000
 * bytes: more than a pipe's buffer (Windows: a split handle message). */
static int stream_large; /* every message 16 KiB or more, sizes mixed */

static size_t stream_len(int i)
{
    static const size_t large[] = {70000, 70000, 60000, 16384, 69999, 20000};
    if (stream_large)
        return large[i % 6];
    if (i % 50 == 3 || (i % STREAM_EVERY == 5 && (i / STREAM_EVERY) % 2))
        return 70000;
    return 8 + (size_t)(i % 90);
}

/* Message i: its index and a pattern; every STREAM_EVERY-th (from 5) with
 * the file whose contents name i. */
static void *stream_send_main(void *arg)
{
    stream_sender *s = (stream_sender *)arg;
    unsigned char *m = (unsigned char *)malloc(70000);
    int i, k = 0;
    s->rc = MSGPIPE_OK;
    if (m == NULL) {
        s->rc = MSGPIPE_ENOMEM;
        return NULL;
    }
    for (i = 0; i < STREAM_N && s->rc == MSGPIPE_OK; i++) {
        size_t n = stream_len(i);
        sup_put32(m, (uint32_t)i);
        sup_fill(m + 4, n - 4, (uint32_t)i);
        if (i % STREAM_EVERY == 5 && k < STREAM_FILES)
            s->rc =
                msgpipe_send_handles(s->p, m, n, &s->files[k++], 1, SUP_T_LONG);
        else
            s->rc = msgpipe_send(s->p, m, n, SUP_T_LONG);
        s->at = i;
    }
    free(m);
    return NULL;
}

/* Many plain messages with some carrying a handle, sent from another
 * thread while this one receives: each handle arrives with exactly its
 * message. */
static void handles_in_a_stream(void)
{
    stream_sender *s = (stream_sender *)calloc(1, sizeof(*s));
    msgpipe *a = NULL, *b = NULL;
    unsigned char *buf = (unsigned char *)malloc(70000);
    sup_thread *t;
    nat h[4];
    char want[32];
    long before;
    int i, k = 0;

    assert_non_null(s);
    assert_non_null(buf);
    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    send_text(a, "warm up");
    expect_text(b, "warm up");
    for (i = 0; i < STREAM_N; i++) {
        if (i % STREAM_EVERY == 5 && k < STREAM_FILES) {
            s->files[k] = tmp_file();
            snprintf(want, sizeof(want), "for message %d", i);
            assert_int_equal(nat_write(s->files[k], want), 0);
            k++;
        }
    }
    before = open_count();
    s->p = a;
    t = sup_thread_start(stream_send_main, s);
    k = 0;
    for (i = 0; i < STREAM_N; i++) {
        size_t len = 0, nh = 99;
        int rc =
            msgpipe_recv_handles(b, buf, 70000, &len, h, 4, &nh, SUP_T_LONG);
        if (rc != MSGPIPE_OK) {
            print_error("message %d: %s\n", i, msgpipe_errname(rc));
            fail();
        }
        assert_int_equal(len, stream_len(i));
        assert_int_equal(sup_get32(buf), (uint32_t)i);
        assert_pattern(buf + 4, len - 4, (uint32_t)i);
        if (i % STREAM_EVERY == 5 && k < STREAM_FILES) {
            assert_int_equal(nh, 1);
            snprintf(want, sizeof(want), "for message %d", i);
            expect_file(h[0], want);
            nat_close(h[0]);
            k++;
        } else if (nh != 0) {
            print_error("message %d came with %lu handles, none were sent\n", i,
                        (unsigned long)nh);
            fail();
        }
    }
    sup_thread_join(t);
    assert_rc(s->rc, MSGPIPE_OK);
    assert_int_equal(open_count(), before);
    for (i = 0; i < STREAM_FILES; i++)
        nat_close(s->files[i]);
    msgpipe_close(a);
    msgpipe_close(b);
    free(buf);
    free(s);
}

static void test_handles_arrive_with_their_message_in_a_stream(void **state)
{
    (void)state;
    stream_large = 0;
    handles_in_a_stream();
}

/* The same with large messages only, of mixed sizes: each is read straight
 * into the receiver's buffer after a large one (or put back when the guess
 * of its size was wrong), and the handles still go with their own. */
static void test_handles_stay_with_their_large_messages_in_a_stream(void **st)
{
    (void)st;
    stream_large = 1;
    handles_in_a_stream();
    stream_large = 0;
}

typedef struct {
    msgpipe *p;
    int n;
    int rc;
    int bad;
} handle_receiver;

static void *handle_recv_main(void *arg)
{
    handle_receiver *r = (handle_receiver *)arg;
    int i;
    for (i = 0; i < r->n; i++) {
        char buf[32], text[32];
        nat h[2];
        size_t len = 0, nh = 0;
        r->rc = msgpipe_recv_handles(r->p, buf, sizeof(buf), &len, h, 2, &nh,
                                     SUP_T_LONG);
        if (r->rc != MSGPIPE_OK)
            return NULL;
        if (nh != 1 || len != 4 || sup_get32(buf) != (uint32_t)i) {
            r->bad++;
            while (nh > 0)
                nat_close(h[--nh]);
            continue;
        }
        if (nat_read_all(h[0], text, sizeof(text)) < 0 ||
            strcmp(text, "raced") != 0)
            r->bad++;
        nat_close(h[0]);
    }
    return NULL;
}

/* A receiver blocked in another thread while the handles are sent. */
static void test_send_handles_races_a_receiving_thread(void **state)
{
    handle_receiver *r = (handle_receiver *)calloc(1, sizeof(*r));
    msgpipe *a = NULL, *b = NULL;
    unsigned char m[4];
    sup_thread *t;
    nat f = tmp_file();
    long before;
    int i;
    (void)state;

    assert_non_null(r);
    assert_int_equal(nat_write(f, "raced"), 0);
    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    send_text(a, "warm up");
    expect_text(b, "warm up");
    before = open_count();
    r->p = b;
    r->n = 200;
    t = sup_thread_start(handle_recv_main, r);
    for (i = 0; i < 200; i++) {
        sup_put32(m, (uint32_t)i);
        if (i % 10 == 0)
            sup_sleep_ms(1); /* let the receiver block in between */
        assert_rc(msgpipe_send_handles(a, m, 4, &f, 1, SUP_T_LONG), MSGPIPE_OK);
    }
    sup_thread_join(t);
    assert_rc(r->rc, MSGPIPE_OK);
    assert_int_equal(r->bad, 0);
    assert_int_equal(open_count(), before);
    nat_close(f);
    msgpipe_close(a);
    msgpipe_close(b);
    free(r);
}

/* Parent -> child and child -> parent over a spawned pipe. */
static void test_handles_over_a_spawned_pipe(void **state)
{
    const char *args[] = {"fileworker", NULL};
    msgpipe *p;
    msgpipe_process *proc;
    nat f = tmp_file(), h[2];
    char buf[16];
    size_t len = 0, nh = 0;
    (void)state;

    spawn_self(args, NULL, &p, &proc);
    assert_rc(msgpipe_send_handles(p, "write", 5, &f, 1, SUP_T), MSGPIPE_OK);
    expect_text(p, "done");
    expect_file(f, "written by the child");
    assert_rc(
        msgpipe_recv_handles(p, buf, sizeof(buf), &len, h, 2, &nh, SUP_T_LONG),
        MSGPIPE_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "yours", 5);
    assert_int_equal(nh, 1);
    assert_true(nat_is_private(h[0]));
    expect_file(h[0], "from the child");
    nat_close(h[0]);
    nat_close(f);
    msgpipe_close(p);
    assert_int_equal(wait_exit(proc), 0);
    msgpipe_process_close(proc);
}

static void test_handles_over_a_named_server_and_client(void **state)
{
    sup_pair pr;
    nat f = tmp_file(), g = tmp_file(), h[2];
    char buf[16];
    size_t len = 0, nh = 0;
    (void)state;

    sup_pair_open(&pr, "spawn-h", NULL, NULL);
    assert_rc(msgpipe_send_handles(pr.c, "to server", 9, &f, 1, SUP_T),
              MSGPIPE_OK);
    assert_rc(
        msgpipe_recv_handles(pr.s, buf, sizeof(buf), &len, h, 2, &nh, SUP_T),
        MSGPIPE_OK);
    assert_int_equal(nh, 1);
    assert_int_equal(nat_write(h[0], "server was here"), 0);
    nat_close(h[0]);
    expect_file(f, "server was here");

    assert_rc(msgpipe_send_handles(pr.s, "to client", 9, &g, 1, SUP_T),
              MSGPIPE_OK);
    assert_rc(
        msgpipe_recv_handles(pr.c, buf, sizeof(buf), &len, h, 2, &nh, SUP_T),
        MSGPIPE_OK);
    assert_int_equal(nh, 1);
    assert_int_equal(nat_write(h[0], "client was here"), 0);
    nat_close(h[0]);
    expect_file(g, "client was here");
    nat_close(f);
    nat_close(g);
    sup_pair_close(&pr);
}

/* The child sends a message with two files, then crashes: the message and
 * its handles arrive, then ECLOSED. */
static void test_handles_sent_before_a_crash_arrive(void **state)
{
    const char *args[] = {"handles-abort", NULL};
    msgpipe *p;
    msgpipe_process *proc;
    nat h[4];
    char buf[32];
    size_t len = 0, nh = 0;
    (void)state;

    spawn_self(args, NULL, &p, &proc);
    assert_rc(
        msgpipe_recv_handles(p, buf, sizeof(buf), &len, h, 4, &nh, SUP_T_LONG),
        MSGPIPE_OK);
    assert_int_equal(len, 12);
    assert_memory_equal(buf, "with handles", 12);
    assert_int_equal(nh, 2);
    expect_file(h[0], "child file 0");
    expect_file(h[1], "child file 1");
    nat_close(h[0]);
    nat_close(h[1]);
    assert_rc(
        msgpipe_recv_handles(p, buf, sizeof(buf), &len, h, 4, &nh, SUP_T_LONG),
        MSGPIPE_ECLOSED);
    assert_int_not_equal(wait_exit(proc), 0);
    msgpipe_close(p);
    msgpipe_process_close(proc);
}

#ifndef _WIN32
/* A message with a descriptor is cut off by its sender's close (linger 0)
 * after the receiver has read its first part, descriptor included: the
 * receive gives ECLOSED and the descriptor is closed then, not only when
 * the receiving pipe is closed. */
static void test_cut_handle_message_closes_its_handles_at_eclosed(void **s)
{
    msgpipe_options opt;
    msgpipe *a = NULL, *b = NULL;
    unsigned char *buf = (unsigned char *)malloc(4 * MiB);
    nat f, h[2];
    size_t len = 0, nh = 0;
    long before;
    (void)s;

    assert_non_null(buf);
    memset(buf, 7, 4 * MiB);
    warm_up();
    msgpipe_options_init(&opt);
    opt.linger_ms = 0;
    assert_rc(msgpipe_pair(&opt, &a, &b), MSGPIPE_OK);
    before = open_count();
    f = tmp_file();
    /* Far more than the socket holds: committed, the rest kept in a. */
    assert_rc(msgpipe_send_handles(a, buf, 4 * MiB, &f, 1, 50), MSGPIPE_OK);
    nat_close(f);
    /* The first part arrives with the descriptor; the rest never comes. */
    assert_rc(msgpipe_recv_handles(b, buf, 4 * MiB, &len, h, 2, &nh, 100),
              MSGPIPE_ETIMEDOUT);
    msgpipe_close(a); /* linger 0: the message is cut off */
    assert_rc(msgpipe_recv_handles(b, buf, 4 * MiB, &len, h, 2, &nh, SUP_T),
              MSGPIPE_ECLOSED);
    assert_int_equal(nh, 0);
    /* a's descriptor is gone, and so is the one that came to b. */
    assert_int_equal(open_count(), before - 1);
    msgpipe_close(b);
    free(buf);
}
#endif

/* The child dies in the middle of a 16 MiB message that carries two
 * handles: ECLOSED, no half message, and the handles that came with its
 * first bytes are closed (by the time the pipe is closed: counted from
 * before the child was started to after both are released). */
static void test_peer_dies_mid_handle_message_no_leak(void **state)
{
    const char *args[] = {"handles-big", NULL};
    msgpipe *p;
    msgpipe_process *proc;
    unsigned char *buf = (unsigned char *)malloc(16 * MiB);
    nat h[4];
    size_t len = 0, nh = 0;
    long before;
    (void)state;

    assert_non_null(buf);
    warm_up();
    before = open_count();
    spawn_self(args, NULL, &p, &proc);
    expect_text(p, "ready");
    send_text(p, "go");
    sup_sleep_ms(300); /* the child is now inside its big send */
    assert_rc(msgpipe_process_kill(proc), MSGPIPE_OK);
    assert_int_equal(wait_exit(proc), KILLED_CODE);
    assert_rc(
        msgpipe_recv_handles(p, buf, 16 * MiB, &len, h, 4, &nh, SUP_T_LONG),
        MSGPIPE_ECLOSED);
    assert_int_equal(nh, 0);
    assert_rc(msgpipe_recv_handles(p, buf, 16 * MiB, &len, h, 4, &nh, SUP_T),
              MSGPIPE_ECLOSED);
    msgpipe_close(p);
    msgpipe_process_close(proc);
    assert_int_equal(open_count(), before);
    free(buf);
}

/* The receiver closes with handle messages unread - some already read
 * from the system by an ENOBUFS receive and a poll: nothing stays open
 * (and nothing leaks under ASan or valgrind). */
static void test_close_with_unread_handle_messages_leaks_nothing(void **s)
{
    msgpipe *a = NULL, *b = NULL;
    msgpipe_pollitem it;
    nat f[2];
    size_t len;
    long before;
    int i;
    (void)s;

    warm_up();
    before = open_count();
    f[0] = tmp_file();
    f[1] = tmp_file();
    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    for (i = 0; i < 10; i++)
        assert_rc(msgpipe_send_handles(a, "unread", 6, f, 2, SUP_T),
                  MSGPIPE_OK);
    nat_close(f[0]);
    nat_close(f[1]);
    assert_rc(msgpipe_recv(b, NULL, 0, &len, SUP_T), MSGPIPE_ENOBUFS);
    memset(&it, 0, sizeof(it));
    it.pipe = b;
    it.events = MSGPIPE_POLLIN;
    assert_int_equal(msgpipe_poll(&it, 1, SUP_T), 1);
    msgpipe_close(b);
    msgpipe_close(a);
    assert_int_equal(open_count(), before);
}

#ifndef _WIN32
/* A peer that is not msgpipe sends one framed message with more
 * descriptors than MSGPIPE_MAX_HANDLES: the system drops the rest
 * (MSG_CTRUNC), the call returns EHANDLES with MSGPIPE_MAX_HANDLES given,
 * and nothing is left open.  The socket is handed to msgpipe through
 * MSGPIPE_PARENT, as a child's would be. */
static void test_more_than_max_handles_from_a_raw_peer_is_ehandles(void **s)
{
    enum { N = MSGPIPE_MAX_HANDLES + 4 };
    int sv[2], fds[N], i;
    char v[32], buf[16];
    union {
        struct cmsghdr align;
        char b[CMSG_SPACE(sizeof(int) * N)];
    } ctl;
    struct msghdr mh;
    struct iovec iov;
    struct cmsghdr *c;
    unsigned char frame[4 + 5] = {0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'};
    env_saved saved;
    msgpipe *p = NULL;
    nat h[N];
    size_t len = 0, nh = 0;
    long before;
    (void)s;

    warm_up();
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    env_save(&saved, "MSGPIPE_PARENT");
    native_value(v, sizeof(v), sv[0]);
    env_set("MSGPIPE_PARENT", v);
    assert_rc(msgpipe_from_parent(NULL, &p), MSGPIPE_OK);
    assert_null(env_get("MSGPIPE_PARENT"));
    env_restore(&saved);
    for (i = 0; i < N; i++)
        fds[i] = tmp_file();
    memset(&mh, 0, sizeof(mh));
    memset(&ctl, 0, sizeof(ctl));
    iov.iov_base = frame;
    iov.iov_len = sizeof(frame);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctl.b;
    mh.msg_controllen = sizeof(ctl.b);
    c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * N);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * N);
    assert_int_equal(sendmsg(sv[1], &mh, 0), (long)sizeof(frame));
    for (i = 0; i < N; i++)
        close(fds[i]);
    before = open_count();
    assert_rc(msgpipe_recv_handles(p, buf, sizeof(buf), &len, h, N, &nh, SUP_T),
              MSGPIPE_EHANDLES);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(nh, MSGPIPE_MAX_HANDLES);
    for (i = 0; i < (int)nh; i++) {
        assert_true(nat_is_private(h[i]));
        close(h[i]);
    }
    assert_int_equal(open_count(), before);
    /* The pipe goes on. */
    assert_rc(msgpipe_send(p, "x", 1, SUP_T), MSGPIPE_OK);
    assert_int_equal(read(sv[1], buf, 5), 5);
    assert_int_equal(buf[3], 1);
    assert_int_equal(buf[4], 'x');
    msgpipe_close(p);
    close(sv[1]);
}
#endif

/* A send with handles to a peer that has closed: ECLOSED, and no copy of
 * the handles is left anywhere (Windows: the copies made for the peer are
 * closed again); the sender's own stay open. */
static void test_send_handles_to_a_closed_peer_leaks_nothing(void **state)
{
    msgpipe *a = NULL, *b = NULL;
    nat f[2];
    long before;
    int rc, i;
    (void)state;

    warm_up();
    f[0] = tmp_file();
    f[1] = tmp_file();
    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    send_text(a, "warm up");
    expect_text(b, "warm up");
    msgpipe_close(b);
    before = open_count();
    for (i = 0; i < 5; i++) {
        rc = msgpipe_send_handles(a, "late", 4, f, 2, SUP_T);
        assert_rc(rc, MSGPIPE_ECLOSED);
    }
    assert_int_equal(open_count(), before);
    assert_true(nat_is_open(f[0]));
    assert_true(nat_is_open(f[1]));
    msgpipe_close(a);
    nat_close(f[0]);
    nat_close(f[1]);
}

/* A send with handles that times out on a full pipe sends nothing and
 * leaves no copy behind; what was sent before arrives without handles. */
static void test_timed_out_send_handles_sends_and_leaks_nothing(void **state)
{
    msgpipe *a = NULL, *b = NULL;
    unsigned char *m = (unsigned char *)malloc(64 * KiB);
    nat f = tmp_file(), h[2];
    long before, sent = 0, got = 0;
    size_t len, nh;
    int rc;
    (void)state;

    assert_non_null(m);
    memset(m, 'f', 64 * KiB);
    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    send_text(a, "warm up");
    expect_text(b, "warm up");
    before = open_count();
    /* Fill the pipe (Windows: one message still going out is enough). */
    while (sent < 2000 && (rc = msgpipe_send(a, m, 64 * KiB, 0)) == MSGPIPE_OK)
        sent++;
    assert_true(sent < 2000);
    assert_rc(msgpipe_send(a, m, 64 * KiB, 0), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_send_handles(a, "h", 1, &f, 1, 0), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_send_handles(a, "h", 1, &f, 1, 20), MSGPIPE_ETIMEDOUT);
    assert_int_equal(open_count(), before);
    for (;;) {
        /* With room made, close pushes out the rest of a message that
         * went out only in part (the last one, on POSIX). */
        if (got == sent - 1 && a != NULL) {
            msgpipe_close(a);
            a = NULL;
        }
        rc = msgpipe_recv_handles(b, m, 64 * KiB, &len, h, 2, &nh, SUP_T);
        if (rc != MSGPIPE_OK)
            break;
        assert_int_equal(len, 64 * KiB);
        assert_int_equal(nh, 0);
        got++;
    }
    assert_rc(rc, MSGPIPE_ECLOSED);
    assert_int_equal(got, sent);
    msgpipe_close(b);
    assert_true(nat_is_open(f));
    nat_close(f);
    free(m);
}

/* A plain message whose bytes look like the Windows wire form of a message
 * with handles (docs/spawn.md) - even naming a handle that is open in the
 * receiver - arrives exactly as sent, with no handles, and closes
 * nothing. */
static void test_plain_message_that_looks_like_handles_is_data(void **state)
{
    static const unsigned char magic[16] = {0x00, 'm', 's',  'g', 'p', 'i',
                                            'p',  'e', 0x00, 'h', 'a', 'n',
                                            'd',  'l', 'e',  0x01};
    msgpipe *a = NULL, *b = NULL;
    unsigned char m[16 + 8 + 8 + 5], buf[64];
    nat mine = tmp_file(), h[2];
    uint64_t v;
    size_t len = 0, nh = 99;
    int i, round;
    (void)state;

    memcpy(m, magic, 16);
    sup_put32(m + 16, 1);
    sup_put32(m + 20, 0);
#ifdef _WIN32
    v = (uint64_t)(uintptr_t)mine;
#else
    v = (uint64_t)mine;
#endif
    for (i = 0; i < 8; i++)
        m[24 + i] = (unsigned char)(v >> (8 * i));
    memcpy(m + 32, "hello", 5);
    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    for (round = 0; round < 3; round++) {
        /* The whole forged frame, the magic alone, and the magic cut. */
        size_t n = round == 0 ? sizeof(m) : round == 1 ? 16 : 20;
        assert_rc(msgpipe_send(a, m, n, SUP_T), MSGPIPE_OK);
        if (round == 0) {
            assert_rc(msgpipe_recv_handles(b, buf, sizeof(buf), &len, h, 2, &nh,
                                           SUP_T),
                      MSGPIPE_OK);
            assert_int_equal(nh, 0);
        } else {
            assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, SUP_T),
                      MSGPIPE_OK);
        }
        assert_int_equal(len, n);
        assert_memory_equal(buf, m, n);
        assert_true(nat_is_open(mine));
    }
    /* And with a small buffer first: ENOBUFS counts the whole of it. */
    assert_rc(msgpipe_send(a, m, sizeof(m), SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(b, buf, 8, &len, SUP_T), MSGPIPE_ENOBUFS);
    assert_int_equal(len, sizeof(m));
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, sizeof(m));
    assert_memory_equal(buf, m, sizeof(m));
    assert_true(nat_is_open(mine));
    nat_close(mine);
    msgpipe_close(a);
    msgpipe_close(b);
}

static void test_fifo_transport_refuses_handles(void **state)
{
    msgpipe *a = NULL, *b = NULL;
    nat f = tmp_file(), h[2];
    char buf[16];
    size_t len = 0, nh = 99;
    (void)state;

    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    assert_rc(msgpipe_send_handles(a, "h", 1, &f, 1, SUP_T), MSGPIPE_ENOTSUP);
    assert_rc(msgpipe_recv(b, buf, sizeof(buf), &len, 0), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_send_handles(a, "none", 4, NULL, 0, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv_handles(b, buf, sizeof(buf), &len, h, 2, &nh, SUP_T),
              MSGPIPE_OK);
    assert_int_equal(len, 4);
    assert_int_equal(nh, 0);
    nat_close(f);
    msgpipe_close(a);
    msgpipe_close(b);
}

int main(int argc, char **argv)
{
    int handles;
    int failed;

    sup_init(argc, argv);
    if (sup_child_mode(argc, argv))
        return child_main(argc - 2, argv + 2);
    handles = !sup_is_fifo();
    {
        const sup_test tests[] = {
            SUP_TEST(1, test_pair_round_trips_empty_to_1mib),
            SUP_TEST(1, test_pair_keeps_order_both_ways),
            SUP_TEST(1, test_pair_enobufs_keeps_the_message),
            SUP_TEST(1, test_pair_max_message_refuses_larger_sends),
            SUP_TEST(1, test_spawned_pipe_max_message_discards_and_goes_on),
            SUP_TEST(1, test_pair_timeout_zero_on_empty_is_etimedout),
            SUP_TEST(1, test_pair_close_is_graceful_then_eclosed),
            SUP_TEST(1, test_pair_poll_and_native_handle),
            SUP_TEST(1, test_pair_rejects_null_outputs),
            SUP_TEST(1, test_spawn_child_echoes_and_exits_with_7),
            SUP_TEST(1, test_process_wait_times_out_while_child_runs),
            SUP_TEST(1, test_process_calls_reject_bad_arguments),
            SUP_TEST(1, test_kill_gives_every_message_then_eclosed),
            SUP_TEST(1, test_kill_from_another_thread_ends_a_waiting_wait),
            SUP_TEST(1, test_kill_after_exit_is_not_an_error),
            SUP_TEST(1, test_crashing_child_gives_eclosed_never_a_hang),
            SUP_TEST(1, test_spawn_argv_round_trip),
            SUP_TEST(1, test_spawn_env_adds_and_replaces),
            SUP_TEST(1, test_spawn_replaces_an_inherited_msgpipe_parent),
            SUP_TEST(1, test_spawn_cwd),
            SUP_TEST(1, test_spawn_missing_cwd_is_enoent),
            SUP_TEST(1, test_spawn_missing_program_is_enoent),
            SUP_TEST(1, test_spawn_rejects_bad_arguments),
            SUP_TEST(1, test_from_parent_removes_the_variable),
            SUP_TEST(1, test_from_parent_unset_is_enoent),
            SUP_TEST(1, test_from_parent_bad_values_are_ebadname),
            SUP_TEST(1, test_from_parent_not_a_pipe_is_ebadname),
            SUP_TEST(1, test_spawned_child_inherits_only_its_end),
            SUP_TEST(1, test_hundred_children_at_once),
            /* multiprocessing.connection speaks msgpipe's framing over
             * Unix sockets; on Windows it would need a Windows Python
             * (none under Wine), and FIFOs are not sockets. */
            SUP_TEST(SUP_POSIX && !sup_is_fifo(),
                     test_python_child_with_the_standard_library),
            SUP_TEST(handles, test_file_handle_over_a_pair_is_usable),
            SUP_TEST(handles, test_pipe_end_or_event_handle_works_across),
            SUP_TEST(handles, test_max_handles_in_one_message),
            SUP_TEST(1, test_zero_handles_is_a_plain_message),
            SUP_TEST(handles, test_handle_calls_reject_bad_arguments),
            SUP_TEST(handles, test_fewer_slots_than_handles_is_ehandles),
            SUP_TEST(handles, test_plain_recv_of_a_handle_message_is_ehandles),
            SUP_TEST(handles, test_enobufs_keeps_message_and_handles),
            SUP_TEST(handles, test_enobufs_keeps_a_large_message_and_handles),
            SUP_TEST(handles, test_emsgsize_closes_the_handles),
            SUP_TEST(handles, test_handles_sent_before_close_arrive),
            SUP_TEST(handles,
                     test_handles_arrive_with_their_message_in_a_stream),
            SUP_TEST(handles,
                     test_handles_stay_with_their_large_messages_in_a_stream),
            SUP_TEST(handles, test_send_handles_races_a_receiving_thread),
            SUP_TEST(handles, test_handles_over_a_spawned_pipe),
            SUP_TEST(handles, test_handles_over_a_named_server_and_client),
            SUP_TEST(handles, test_handles_sent_before_a_crash_arrive),
            SUP_TEST(handles, test_peer_dies_mid_handle_message_no_leak),
            SUP_TEST(handles,
                     test_close_with_unread_handle_messages_leaks_nothing),
#ifndef _WIN32
            SUP_TEST(handles,
                     test_cut_handle_message_closes_its_handles_at_eclosed),
            SUP_TEST(handles,
                     test_more_than_max_handles_from_a_raw_peer_is_ehandles),
#endif
            SUP_TEST(handles, test_send_handles_to_a_closed_peer_leaks_nothing),
            SUP_TEST(handles,
                     test_timed_out_send_handles_sends_and_leaks_nothing),
            SUP_TEST(1, test_plain_message_that_looks_like_handles_is_data),
            SUP_TEST(!handles, test_fifo_transport_refuses_handles),
        };
        failed = SUP_RUN("spawn", tests);
    }
    return sup_finish(failed);
}
