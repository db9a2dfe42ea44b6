/*
 * test_win32_spawn.c - what only the Win32 backend does for pairs, child
 * processes and handles with messages: the inheritance list of
 * CreateProcessW, the command line as CommandLineToArgvW reads it,
 * environment names without regard to case, the check of MSGPIPE_PARENT
 * against pipes of the wrong kind, and the wire form of a message that
 * carries handles (a header in front of the payload, docs/spawn.md)
 * against a raw Win32 peer.  The portable behaviour is tests/test_spawn.c.
 *
 * Child modes (argv after "--child"):
 *   probe VALUE     take the pipe, SetEvent(VALUE), send "set" or "unset"
 *   cmdline ARGS... send each argument as CommandLineToArgvW(GetCommandLineW())
 *                   gives it, then "end"
 *   wenv NAME       send the variable NAME as GetEnvironmentVariableW
 *                   gives it (UTF-8), or "(unset)"
 *   nsend NAME      connect to the server NAME, send "gone" with an event,
 *                   exit
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <windows.h>
#include <shellapi.h>

static const unsigned char magic[16] = {0x00, 'm', 's',  'g', 'p', 'i',
                                        'p',  'e', 0x00, 'h', 'a', 'n',
                                        'd',  'l', 'e',  0x01};

/* ---- Helpers ------------------------------------------------------------- */

static void spawn(const char *const *args, const msgpipe_spawn_options *so,
                  msgpipe **p, msgpipe_process **proc)
{
    const char *argv[40];
    size_t n = 0, i;

    argv[n++] = sup_self_path();
    argv[n++] = "--child";
    for (i = 0; args[i] != NULL && n < 39; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    assert_rc(msgpipe_spawn(argv, so, p, proc), MSGPIPE_OK);
}

static void expect_text(msgpipe *p, const char *text)
{
    char buf[512];
    size_t len = 0;

    assert_rc(msgpipe_recv(p, buf, sizeof(buf) - 1, &len, SUP_T_LONG),
              MSGPIPE_OK);
    buf[len] = '\0';
    assert_string_equal(buf, text);
}

static int finish(msgpipe *p, msgpipe_process *proc)
{
    int code = -1;

    msgpipe_close(p);
    assert_rc(msgpipe_process_wait(proc, SUP_T_LONG, &code), MSGPIPE_OK);
    msgpipe_process_close(proc);
    return code;
}

/* Open handles of this process.  (GetProcessHandleCount is not
 * implemented by Wine: every value that could be a handle is asked.) */
static long handle_count(void)
{
    uintptr_t v;
    DWORD f;
    long n = 0;

    for (v = 4; v < 0x20000; v += 4)
        if (GetHandleInformation((HANDLE)v, &f))
            n++;
    return n;
}

static HANDLE event(void)
{
    HANDLE h = CreateEventA(NULL, TRUE, FALSE, NULL);
    assert_non_null(h);
    return h;
}

/* A named server and a raw Win32 client of it in message mode, for
 * writing bytes msgpipe would never send. */
typedef struct raw_peer {
    char name[96];
    msgpipe_server *srv;
    msgpipe *s;
    HANDLE c;
} raw_peer;

static void raw_open(raw_peer *r)
{
    char sys[300];
    DWORD mode = PIPE_READMODE_MESSAGE;

    sup_name(r->name, sizeof(r->name), "w32spawn");
    sup_sys_name(r->name, sys, sizeof(sys));
    assert_rc(msgpipe_listen(r->name, NULL, &r->srv), MSGPIPE_OK);
    r->c = CreateFileA(sys, GENERIC_READ | GENERIC_WRITE, 0, NULL,
                       OPEN_EXISTING, 0, NULL);
    assert_true(r->c != INVALID_HANDLE_VALUE);
    assert_true(SetNamedPipeHandleState(r->c, &mode, NULL, NULL));
    assert_rc(msgpipe_accept(r->srv, SUP_T, &r->s), MSGPIPE_OK);
}

static void raw_write(raw_peer *r, const void *m, DWORD len)
{
    DWORD n = 0;

    assert_true(WriteFile(r->c, m, len, &n, NULL));
    assert_int_equal(n, len);
}

static void raw_close(raw_peer *r)
{
    if (r->c != INVALID_HANDLE_VALUE)
        CloseHandle(r->c);
    msgpipe_close(r->s);
    msgpipe_server_close(r->srv);
}

/* ---- Children ------------------------------------------------------------ */

static int child_probe(const char *value)
{
    msgpipe *p;
    HANDLE h = (HANDLE)(uintptr_t)_strtoui64(value, NULL, 10);
    int set;

    if (msgpipe_from_parent(NULL, &p) != MSGPIPE_OK)
        return 90;
    set = SetEvent(h) != 0;
    msgpipe_send(p, set ? "set" : "unset", set ? 3 : 5, SUP_T);
    msgpipe_close(p);
    return 0;
}

static int child_send_wide(msgpipe *p, const WCHAR *w)
{
    char buf[1024];
    int n =
        WideCharToMultiByte(CP_UTF8, 0, w, -1, buf, sizeof(buf), NULL, NULL);
    if (n <= 0)
        return 91;
    return msgpipe_send(p, buf, (size_t)n - 1, SUP_T) == MSGPIPE_OK ? 0 : 92;
}

static int child_cmdline(void)
{
    msgpipe *p;
    int argc = 0, i, rc = 0;
    WCHAR **wv = CommandLineToArgvW(GetCommandLineW(), &argc);

    if (wv == NULL || msgpipe_from_parent(NULL, &p) != MSGPIPE_OK)
        return 90;
    /* wv[0] the program, wv[1] "--child", wv[2] "cmdline". */
    for (i = 3; i < argc && rc == 0; i++)
        rc = child_send_wide(p, wv[i]);
    msgpipe_send(p, "end", 3, SUP_T);
    msgpipe_close(p);
    LocalFree(wv);
    return rc;
}

static int child_wenv(const char *name)
{
    msgpipe *p;
    WCHAR wname[128], val[1024];
    DWORD n;
    int rc;

    if (msgpipe_from_parent(NULL, &p) != MSGPIPE_OK)
        return 90;
    MultiByteToWideChar(CP_UTF8, 0, name, -1, wname, 128);
    n = GetEnvironmentVariableW(wname, val, 1024);
    if (n == 0 || n >= 1024)
        rc = msgpipe_send(p, "(unset)", 7, SUP_T) == MSGPIPE_OK ? 0 : 92;
    else
        rc = child_send_wide(p, val);
    msgpipe_close(p);
    return rc;
}

static int child_nsend(const char *name)
{
    msgpipe *p;
    HANDLE ev = CreateEventA(NULL, TRUE, FALSE, NULL);
    msgpipe_native h[1];
    int rc;

    if (ev == NULL || msgpipe_connect(name, NULL, SUP_T, &p) != MSGPIPE_OK)
        return 90;
    h[0] = ev;
    rc = msgpipe_send_handles(p, "gone", 4, h, 1, SUP_T);
    msgpipe_close(p);
    return rc == MSGPIPE_OK ? 0 : 91;
}

static int child_main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[0], "nsend") == 0)
        return child_nsend(argv[1]);
    if (argc >= 2 && strcmp(argv[0], "probe") == 0)
        return child_probe(argv[1]);
    if (argc >= 1 && strcmp(argv[0], "cmdline") == 0)
        return child_cmdline();
    if (argc >= 2 && strcmp(argv[0], "wenv") == 0)
        return child_wenv(argv[1]);
    return 99;
}

/* ---- Child processes ----------------------------------------------------- */

/* An inheritable event of the parent that is not in the handle list: the
 * child cannot signal it through the same value. */
static void test_unlisted_inheritable_handle_stays_out(void **state)
{
    SECURITY_ATTRIBUTES sa;
    const char *args[] = {"probe", NULL, NULL};
    char v[32];
    HANDLE ev;
    msgpipe *p;
    msgpipe_process *proc;
    (void)state;

    memset(&sa, 0, sizeof(sa));
    sa.nLength = sizeof(sa);
    sa.bInheritHandle = TRUE;
    ev = CreateEventA(&sa, TRUE, FALSE, NULL);
    assert_non_null(ev);
    snprintf(v, sizeof(v), "%llu", (unsigned long long)(uintptr_t)ev);
    args[1] = v;
    spawn(args, NULL, &p, &proc);
    expect_text(p, "unset");
    assert_int_equal(finish(p, proc), 0);
    assert_int_equal(WaitForSingleObject(ev, 0), WAIT_TIMEOUT);
    CloseHandle(ev);
}

/* The command line is the one CommandLineToArgvW splits back into argv
 * (the C runtime's rules: tests/test_spawn.c checks argv itself). */
static void test_command_line_splits_back_into_argv(void **state)
{
    static const char *const odd[] = {"a b",
                                      "",
                                      "q\"uote",
                                      "\"",
                                      "back\\slash",
                                      "trail\\",
                                      "trail2\\\\",
                                      "\\\\\"",
                                      "x\\\\\\\"y z",
                                      "tab\tin",
                                      "\\\\server\\share dir\\",
                                      "plain",
                                      NULL};
    const char *args[20];
    msgpipe *p;
    msgpipe_process *proc;
    size_t i, n = 0;
    (void)state;

    args[n++] = "cmdline";
    for (i = 0; odd[i] != NULL; i++)
        args[n++] = odd[i];
    args[n] = NULL;
    spawn(args, NULL, &p, &proc);
    for (i = 0; odd[i] != NULL; i++)
        expect_text(p, odd[i]);
    expect_text(p, "end");
    assert_int_equal(finish(p, proc), 0);
}

/* Environment names compare without regard to case: an addition replaces
 * the inherited variable however it is spelt, and the value is UTF-8. */
static void test_env_addition_replaces_any_case(void **state)
{
    const char *env[] = {"mpt_w32_Case=caf\xc3\xa9", NULL};
    const char *args[] = {"wenv", "MPT_W32_CASE", NULL};
    msgpipe_spawn_options so;
    msgpipe *p;
    msgpipe_process *proc;
    (void)state;

    assert_true(SetEnvironmentVariableA("MPT_W32_CASE", "old"));
    msgpipe_spawn_options_init(&so);
    so.env = env;
    spawn(args, &so, &p, &proc);
    expect_text(p, "caf\xc3\xa9");
    assert_int_equal(finish(p, proc), 0);
    SetEnvironmentVariableA("MPT_W32_CASE", NULL);
}

/* MSGPIPE_PARENT is msgpipe's in any spelling. */
static void test_env_cannot_set_msgpipe_parent_in_any_case(void **state)
{
    const char *env[] = {"msgpipe_Parent=5", NULL};
    const char *argv[] = {sup_self_path(), "--child", "probe", "0", NULL};
    msgpipe_spawn_options so;
    msgpipe *p = NULL;
    msgpipe_process *proc = NULL;
    long before = handle_count();
    (void)state;

    msgpipe_spawn_options_init(&so);
    so.env = env;
    assert_rc(msgpipe_spawn(argv, &so, &p, &proc), MSGPIPE_EINVAL);
    assert_null(p);
    assert_null(proc);
    assert_int_equal(handle_count(), before);
}

/* A failed spawn leaves no handle open: program missing, directory
 * missing. */
static void test_failed_spawn_leaves_nothing_open(void **state)
{
    const char *missing[] = {"C:\\mpt-no-such\\prog.exe", NULL};
    const char *self[] = {sup_self_path(), "--child", "probe", "0", NULL};
    msgpipe_spawn_options so;
    msgpipe *p = NULL;
    msgpipe_process *proc = NULL;
    long before;
    (void)state;

    /* Warm up whatever the first spawn loads. */
    assert_rc(msgpipe_spawn(missing, NULL, &p, &proc), MSGPIPE_ENOENT);
    before = handle_count();
    assert_rc(msgpipe_spawn(missing, NULL, &p, &proc), MSGPIPE_ENOENT);
    msgpipe_spawn_options_init(&so);
    so.cwd = "C:\\mpt-no-such-dir\\at-all";
    assert_rc(msgpipe_spawn(self, &so, &p, &proc), MSGPIPE_ENOENT);
    assert_null(p);
    assert_null(proc);
    assert_int_equal(handle_count(), before);
}

/* ---- msgpipe_from_parent ------------------------------------------------- */

static void expect_bad_parent_handle(HANDLE h)
{
    char v[32], back[32];
    msgpipe *p = NULL;

    snprintf(v, sizeof(v), "%llu", (unsigned long long)(uintptr_t)h);
    assert_true(SetEnvironmentVariableA("MSGPIPE_PARENT", v));
    assert_rc(msgpipe_from_parent(NULL, &p), MSGPIPE_EBADNAME);
    assert_null(p);
    /* Left as it was. */
    assert_true(GetEnvironmentVariableA("MSGPIPE_PARENT", back, 32) > 0);
    assert_string_equal(back, v);
    SetEnvironmentVariableA("MSGPIPE_PARENT", NULL);
}

/* The server end of a message pipe, a client end opened for synchronous
 * I/O, and a byte pipe are not the child's end of a pair. */
static void test_from_parent_refuses_pipes_of_the_wrong_kind(void **state)
{
    char sys[300], name[96];
    DWORD mode = PIPE_READMODE_MESSAGE;
    HANDLE srv, cli, bsrv, bcli;
    (void)state;

    sup_name(name, sizeof(name), "w32parent");
    sup_sys_name(name, sys, sizeof(sys));
    srv = CreateNamedPipeA(sys, PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED,
                           PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE, 2, 4096,
                           4096, 0, NULL);
    assert_true(srv != INVALID_HANDLE_VALUE);
    cli = CreateFileA(sys, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING,
                      0 /* synchronous */, NULL);
    assert_true(cli != INVALID_HANDLE_VALUE);
    assert_true(SetNamedPipeHandleState(cli, &mode, NULL, NULL));
    expect_bad_parent_handle(srv);
    expect_bad_parent_handle(cli);
    CloseHandle(cli);
    CloseHandle(srv);

    sup_name(name, sizeof(name), "w32parent");
    sup_sys_name(name, sys, sizeof(sys));
    bsrv = CreateNamedPipeA(sys, PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED,
                            PIPE_TYPE_BYTE, 1, 4096, 4096, 0, NULL);
    assert_true(bsrv != INVALID_HANDLE_VALUE);
    bcli = CreateFileA(sys, GENERIC_READ | GENERIC_WRITE, 0, NULL,
                       OPEN_EXISTING, FILE_FLAG_OVERLAPPED, NULL);
    assert_true(bcli != INVALID_HANDLE_VALUE);
    expect_bad_parent_handle(bcli);
    CloseHandle(bcli);
    CloseHandle(bsrv);
}

/* ---- Handles with messages ----------------------------------------------- */

/* A send that is not delivered closes the copies it made: here the copies
 * are in this process (a pair), so they can be counted. */
static void test_undelivered_handles_are_closed_again(void **state)
{
    msgpipe *a, *b;
    HANDLE ev = event(), bad = (HANDLE)(uintptr_t)0x7ffffff0;
    msgpipe_native h[2];
    long before;
    (void)state;

    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    before = handle_count();
    assert_true(before > 0);
    /* The second handle is not open: EINVAL, and the first copy goes. */
    h[0] = ev;
    h[1] = bad;
    assert_rc(msgpipe_send_handles(a, "x", 1, h, 2, SUP_T), MSGPIPE_EINVAL);
    assert_int_equal(handle_count(), before);
    /* The peer is gone: ECLOSED, and the copy goes. */
    msgpipe_close(b);
    before = handle_count();
    assert_rc(msgpipe_send_handles(a, "x", 1, h, 1, SUP_T), MSGPIPE_ECLOSED);
    assert_int_equal(handle_count(), before);
    msgpipe_close(a);
    CloseHandle(ev);
}

/* Plain messages that begin like a header - the magic alone, the magic and
 * a count, the magic and more - come back byte for byte, with no handles,
 * and ENOBUFS tells their own size. */
static void test_plain_messages_with_the_magic_round_trip(void **state)
{
    unsigned char m[64], buf[64];
    size_t sizes[] = {16, 20, 24, 32, 64};
    msgpipe *a, *b;
    msgpipe_native h[2];
    size_t i, len, nh;
    (void)state;

    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    memset(m, 0, sizeof(m));
    memcpy(m, magic, 16);
    m[16] = 1; /* "one handle" */
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        assert_rc(msgpipe_send(a, m, sizes[i], SUP_T), MSGPIPE_OK);
        assert_rc(msgpipe_recv(b, buf, sizes[i] - 1, &len, SUP_T),
                  MSGPIPE_ENOBUFS);
        assert_int_equal(len, sizes[i]);
        nh = 9;
        assert_rc(
            msgpipe_recv_handles(b, buf, sizes[i], &len, h, 2, &nh, SUP_T),
            MSGPIPE_OK);
        assert_int_equal(len, sizes[i]);
        assert_int_equal(nh, 0);
        assert_memory_equal(buf, m, sizes[i]);
    }
    msgpipe_close(a);
    msgpipe_close(b);
}

/* The payload of a handle message fits a buffer its header would not:
 * ENOBUFS reports the payload's size, and the payload is received into
 * exactly that much. */
static void test_enobufs_counts_the_payload_only(void **state)
{
    msgpipe *a, *b;
    HANDLE ev = event();
    msgpipe_native h[1];
    char buf[8];
    size_t len = 0, nh = 0;
    (void)state;

    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    h[0] = ev;
    assert_rc(msgpipe_send_handles(a, "payload", 7, h, 1, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv_handles(b, buf, 6, &len, h, 1, &nh, SUP_T),
              MSGPIPE_ENOBUFS);
    assert_int_equal(len, 7);
    assert_rc(msgpipe_recv_handles(b, buf, 7, &len, h, 1, &nh, SUP_T),
              MSGPIPE_OK);
    assert_int_equal(len, 7);
    assert_memory_equal(buf, "payload", 7);
    assert_int_equal(nh, 1);
    /* The copy is another handle of the same event. */
    assert_true(h[0] != ev);
    assert_true(SetEvent(h[0]));
    assert_int_equal(WaitForSingleObject(ev, 0), WAIT_OBJECT_0);
    CloseHandle(h[0]);
    CloseHandle(ev);
    msgpipe_close(a);
    msgpipe_close(b);
}

static void put32(unsigned char *b, uint32_t v)
{
    b[0] = (unsigned char)v;
    b[1] = (unsigned char)(v >> 8);
    b[2] = (unsigned char)(v >> 16);
    b[3] = (unsigned char)(v >> 24);
}

/* Malformed headers from a raw peer: EPROTO, the message consumed, the
 * next one received as usual. */
static void test_malformed_header_is_eproto_not_sticky(void **state)
{
    unsigned char m[24 + 8 * 17 + 4];
    char buf[256];
    raw_peer r;
    msgpipe_native h[4];
    size_t len, nh;
    (void)state;

    raw_open(&r);
    memset(m, 0, sizeof(m));
    memcpy(m, magic, 16);
    /* Too short for a header. */
    raw_write(&r, m, 20);
    /* A count above MSGPIPE_MAX_HANDLES. */
    put32(m + 16, 17);
    raw_write(&r, m, sizeof(m));
    /* Fewer values than the count says. */
    put32(m + 16, 3);
    raw_write(&r, m, 24 + 8 * 2);
    /* Reserved bytes not zero. */
    put32(m + 16, 0);
    put32(m + 20, 1);
    raw_write(&r, m, 28);
    raw_write(&r, "next", 4);
    assert_rc(msgpipe_recv(r.s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_EPROTO);
    assert_rc(
        msgpipe_recv_handles(r.s, buf, sizeof(buf), &len, h, 4, &nh, SUP_T),
        MSGPIPE_EPROTO);
    assert_rc(msgpipe_recv(r.s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_EPROTO);
    /* A malformed header is no payload: its whole size is needed. */
    assert_rc(msgpipe_recv(r.s, buf, 2, &len, SUP_T), MSGPIPE_ENOBUFS);
    assert_int_equal(len, 28);
    assert_rc(msgpipe_recv(r.s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_EPROTO);
    assert_rc(msgpipe_recv(r.s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "next", 4);
    raw_close(&r);
}

/* A raw peer's header with n = 0 is unwrapped: the payload alone. */
static void test_raw_header_without_handles_is_unwrapped(void **state)
{
    unsigned char m[24 + 5];
    char buf[64];
    raw_peer r;
    size_t len;
    (void)state;

    raw_open(&r);
    memset(m, 0, sizeof(m));
    memcpy(m, magic, 16);
    memcpy(m + 24, "hello", 5);
    raw_write(&r, m, sizeof(m));
    assert_rc(msgpipe_recv(r.s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "hello", 5);
    raw_close(&r);
}

/* A plain Win32 reader sees the wire form: the header and the values, the
 * payload after them, all one message. */
static void test_wire_form_seen_by_a_raw_reader(void **state)
{
    unsigned char buf[128];
    raw_peer r;
    HANDLE ev = event(), got;
    msgpipe_native h[1];
    DWORD n = 0;
    uint64_t v;
    int i;
    (void)state;

    raw_open(&r);
    h[0] = ev;
    assert_rc(msgpipe_send_handles(r.s, "data", 4, h, 1, SUP_T), MSGPIPE_OK);
    assert_true(ReadFile(r.c, buf, sizeof(buf), &n, NULL));
    assert_int_equal(n, 24 + 8 + 4);
    assert_memory_equal(buf, magic, 16);
    assert_int_equal(buf[16], 1);
    assert_int_equal(buf[17] | buf[18] | buf[19], 0);
    assert_int_equal(buf[20] | buf[21] | buf[22] | buf[23], 0);
    assert_memory_equal(buf + 32, "data", 4);
    for (v = 0, i = 7; i >= 0; i--)
        v = v << 8 | buf[24 + i];
    /* The value is a handle of this process (the raw reader's). */
    got = (HANDLE)(uintptr_t)v;
    assert_true(got != ev);
    assert_true(SetEvent(got));
    assert_int_equal(WaitForSingleObject(ev, 0), WAIT_OBJECT_0);
    CloseHandle(got);
    CloseHandle(ev);
    raw_close(&r);
}

/* Handles from a client of a named server that has exited - its process
 * gone, so it cannot be asked who it ran as - are taken all the same: the
 * pipe tells its user. */
static void test_handles_from_an_exited_client_are_taken(void **state)
{
    char name[96];
    const char *args[] = {"nsend", name, NULL};
    msgpipe_server *srv;
    msgpipe *s;
    sup_proc *child;
    msgpipe_native h[1];
    char buf[16];
    size_t len = 0, nh = 0;
    DWORD f, pid;
    HANDLE q;
    (void)state;

    sup_name(name, sizeof(name), "w32gone");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    child = sup_spawn_self(args);
    pid = (DWORD)sup_proc_pid(child);
    assert_rc(msgpipe_accept(srv, SUP_T_LONG, &s), MSGPIPE_OK);
    /* Waited for and released: no handle keeps its process object. */
    assert_int_equal(sup_proc_wait(child), 0);
    q = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid);
    assert_rc(msgpipe_recv_handles(s, buf, sizeof(buf), &len, h, 1, &nh, SUP_T),
              MSGPIPE_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "gone", 4);
    assert_int_equal(nh, 1);
    assert_true(GetHandleInformation((HANDLE)h[0], &f));
    assert_true(SetEvent((HANDLE)h[0]));
    CloseHandle((HANDLE)h[0]);
    msgpipe_close(s);
    msgpipe_server_close(srv);
    if (q != NULL) {
        CloseHandle(q);
        SUP_SKIP("the exited client's process could still be opened, so "
                 "the pipe was not asked");
    }
}

/* ---- Split messages: a large message with handles ---------------------- */

/* A duplicate of h in this process (a value a raw peer may send). */
static uint64_t dup_value(HANDLE h)
{
    HANDLE d = NULL;

    assert_true(DuplicateHandle(GetCurrentProcess(), h, GetCurrentProcess(), &d,
                                0, FALSE, DUPLICATE_SAME_ACCESS));
    return (uint64_t)(uintptr_t)d;
}

static int value_is_open(uint64_t v)
{
    DWORD f;

    return GetHandleInformation((HANDLE)(uintptr_t)v, &f) != 0;
}

static void put64(unsigned char *b, uint64_t v)
{
    put32(b, (uint32_t)v);
    put32(b + 4, (uint32_t)(v >> 32));
}

/* The header of a split message with values v[0..n) and a payload of
 * len bytes to follow; returns its size. */
static DWORD split_header(unsigned char *m, const uint64_t *v, uint32_t n,
                          uint64_t len)
{
    uint32_t i;

    memcpy(m, magic, 16);
    put32(m + 16, n);
    put32(m + 20, 1);
    for (i = 0; i < n; i++)
        put64(m + 24 + 8 * i, v[i]);
    put64(m + 24 + 8 * n, len);
    return 24 + 8 * n + 8;
}

/* A message with handles larger than the pipe's buffer goes as a header
 * and then the payload; it is received as one, with its handles; and a raw
 * reader sees the two messages. */
static void test_large_handle_message_arrives_whole(void **state)
{
    const size_t big = 300 * 1024;
    unsigned char *m = (unsigned char *)malloc(big), *buf;
    unsigned char hdr[64];
    HANDLE ev = event();
    msgpipe_native h[2];
    msgpipe *a, *b;
    raw_peer r;
    size_t len = 0, nh = 0;
    DWORD n = 0;
    (void)state;

    assert_non_null(m);
    buf = (unsigned char *)malloc(big);
    assert_non_null(buf);
    sup_fill(m, big, 7);
    assert_rc(msgpipe_pair(NULL, &a, &b), MSGPIPE_OK);
    h[0] = ev;
    h[1] = ev;
    /* Timeout 0: committed at once, in flight while it is read. */
    assert_rc(msgpipe_send_handles(a, m, big, h, 2, 0), MSGPIPE_OK);
    assert_rc(msgpipe_recv_handles(b, buf, big - 1, &len, h, 2, &nh, SUP_T),
              MSGPIPE_ENOBUFS);
    assert_int_equal(len, big);
    assert_rc(msgpipe_recv_handles(b, buf, big, &len, h, 2, &nh, SUP_T),
              MSGPIPE_OK);
    assert_int_equal(len, big);
    assert_pattern(buf, big, 7);
    assert_int_equal(nh, 2);
    assert_true(SetEvent(h[1]));
    assert_int_equal(WaitForSingleObject(ev, 0), WAIT_OBJECT_0);
    CloseHandle(h[0]);
    CloseHandle(h[1]);
    msgpipe_close(a);
    msgpipe_close(b);

    raw_open(&r);
    h[0] = ev;
    assert_rc(msgpipe_send_handles(r.s, m, big, h, 1, 0), MSGPIPE_OK);
    assert_true(ReadFile(r.c, hdr, sizeof(hdr), &n, NULL));
    assert_int_equal(n, 24 + 8 + 8);
    assert_memory_equal(hdr, magic, 16);
    assert_int_equal(hdr[16], 1);
    assert_int_equal(hdr[20], 1);
    CloseHandle((HANDLE)(uintptr_t)(hdr[24] | (uint64_t)hdr[25] << 8 |
                                    (uint64_t)hdr[26] << 16 |
                                    (uint64_t)hdr[27] << 24));
    assert_true(ReadFile(r.c, buf, (DWORD)big, &n, NULL));
    assert_int_equal(n, big);
    assert_pattern(buf, big, 7);
    raw_close(&r);
    CloseHandle(ev);
    free(m);
    free(buf);
}

/* A split header whose payload never comes: ECLOSED, and the handles it
 * named are closed. */
static void test_split_header_then_end_closes_the_handles(void **state)
{
    unsigned char m[64];
    HANDLE ev = event();
    uint64_t v[2];
    char buf[16];
    raw_peer r;
    msgpipe_native h[2];
    size_t len, nh;
    (void)state;

    raw_open(&r);
    v[0] = dup_value(ev);
    v[1] = dup_value(ev);
    raw_write(&r, m, split_header(m, v, 2, 100000));
    CloseHandle(r.c);
    r.c = INVALID_HANDLE_VALUE;
    assert_rc(
        msgpipe_recv_handles(r.s, buf, sizeof(buf), &len, h, 2, &nh, SUP_T),
        MSGPIPE_ECLOSED);
    assert_int_equal(nh, 0);
    assert_false(value_is_open(v[0]));
    assert_false(value_is_open(v[1]));
    raw_close(&r);
    CloseHandle(ev);
}

/* A split header followed by a message of another length: EPROTO, the
 * handles closed, and that message then received as itself. */
static void test_split_header_then_wrong_length_is_eproto(void **state)
{
    unsigned char m[64];
    HANDLE ev = event();
    uint64_t v[1];
    char buf[16];
    raw_peer r;
    size_t len;
    (void)state;

    raw_open(&r);
    v[0] = dup_value(ev);
    raw_write(&r, m, split_header(m, v, 1, 5));
    raw_write(&r, "other", 5 - 1);
    assert_rc(msgpipe_recv(r.s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_EPROTO);
    assert_false(value_is_open(v[0]));
    assert_rc(msgpipe_recv(r.s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "othe", 4);
    raw_close(&r);
    CloseHandle(ev);
}

/* A split message whose payload is over max_message: EMSGSIZE, the
 * handles closed, the next message received. */
static void test_split_over_max_message_closes_the_handles(void **state)
{
    unsigned char m[64], *payload = (unsigned char *)calloc(1, 5000);
    HANDLE ev = event();
    msgpipe_options so;
    uint64_t v[1];
    char buf[16];
    raw_peer r;
    size_t len;
    char sys[300];
    DWORD mode = PIPE_READMODE_MESSAGE;
    (void)state;

    assert_non_null(payload);
    msgpipe_options_init(&so);
    so.max_message = 1000;
    sup_name(r.name, sizeof(r.name), "w32spawn");
    sup_sys_name(r.name, sys, sizeof(sys));
    assert_rc(msgpipe_listen(r.name, &so, &r.srv), MSGPIPE_OK);
    r.c = CreateFileA(sys, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING,
                      0, NULL);
    assert_true(r.c != INVALID_HANDLE_VALUE);
    assert_true(SetNamedPipeHandleState(r.c, &mode, NULL, NULL));
    assert_rc(msgpipe_accept(r.srv, SUP_T, &r.s), MSGPIPE_OK);
    v[0] = dup_value(ev);
    raw_write(&r, m, split_header(m, v, 1, 5000));
    raw_write(&r, payload, 5000);
    raw_write(&r, "next", 4);
    assert_rc(msgpipe_recv(r.s, buf, sizeof(buf), &len, SUP_T),
              MSGPIPE_EMSGSIZE);
    assert_int_equal(len, 5000);
    assert_false(value_is_open(v[0]));
    assert_rc(msgpipe_recv(r.s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 4);
    raw_close(&r);
    CloseHandle(ev);
    free(payload);
}

/* Closing a pipe whose split header was taken (the payload left unread
 * by an ENOBUFS receive) closes its handles. */
static void test_close_with_a_held_split_header_closes_them(void **state)
{
    unsigned char m[64], *payload = (unsigned char *)calloc(1, 3000);
    HANDLE ev = event();
    uint64_t v[1];
    char buf[16];
    raw_peer r;
    size_t len;
    (void)state;

    assert_non_null(payload);
    raw_open(&r);
    v[0] = dup_value(ev);
    raw_write(&r, m, split_header(m, v, 1, 3000));
    raw_write(&r, payload, 3000);
    assert_rc(msgpipe_recv(r.s, buf, sizeof(buf), &len, SUP_T),
              MSGPIPE_ENOBUFS);
    assert_int_equal(len, 3000);
    assert_true(value_is_open(v[0]));
    msgpipe_close(r.s);
    r.s = NULL;
    assert_false(value_is_open(v[0]));
    CloseHandle(r.c);
    msgpipe_server_close(r.srv);
    CloseHandle(ev);
    free(payload);
}

int main(int argc, char **argv)
{
    const sup_test tests[] = {
        SUP_TEST(1, test_unlisted_inheritable_handle_stays_out),
        SUP_TEST(1, test_command_line_splits_back_into_argv),
        SUP_TEST(1, test_env_addition_replaces_any_case),
        SUP_TEST(1, test_env_cannot_set_msgpipe_parent_in_any_case),
        SUP_TEST(1, test_failed_spawn_leaves_nothing_open),
        SUP_TEST(1, test_from_parent_refuses_pipes_of_the_wrong_kind),
        SUP_TEST(1, test_undelivered_handles_are_closed_again),
        SUP_TEST(1, test_plain_messages_with_the_magic_round_trip),
        SUP_TEST(1, test_enobufs_counts_the_payload_only),
        SUP_TEST(1, test_malformed_header_is_eproto_not_sticky),
        SUP_TEST(1, test_raw_header_without_handles_is_unwrapped),
        SUP_TEST(1, test_wire_form_seen_by_a_raw_reader),
        /* Wine lets an exited process be opened by its id: the path this
         * tests is not reached there. */
        SUP_TEST(!sup_is_wine(), test_handles_from_an_exited_client_are_taken),
        SUP_TEST(1, test_large_handle_message_arrives_whole),
        SUP_TEST(1, test_split_header_then_end_closes_the_handles),
        SUP_TEST(1, test_split_header_then_wrong_length_is_eproto),
        SUP_TEST(1, test_split_over_max_message_closes_the_handles),
        SUP_TEST(1, test_close_with_a_held_split_header_closes_them),
    };

    sup_init(argc, argv);
    if (sup_child_mode(argc, argv))
        return child_main(argc - 2, argv + 2);
    return sup_finish(SUP_RUN("win32_spawn", tests));
}
