/*
 * test_foreign.c - msgpipe and named pipes it did not make, or opened in a
 * way it does not open them (Windows only).
 *
 * libuv, Node.js and .NET's byte mode make byte-type pipes
 * (PIPE_TYPE_BYTE): they carry no message boundaries, so a msgpipe client
 * cannot speak to them, and says so with MSGPIPE_EPROTO rather than a
 * system error.  The other way round, a plain client that opens a msgpipe
 * server's pipe in byte read mode (.NET's PipeDirection.In, a C program
 * that never calls SetNamedPipeHandleState) still gets every byte.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <windows.h>

/* ---- A msgpipe client against a byte-type pipe --------------------------- */

/* The client gives up on a byte-type pipe with MSGPIPE_EPROTO (at once,
 * although it was given time to retry), and closes its handle: the raw
 * server's read ends on the broken pipe instead of waiting forever.  A
 * connect to a msgpipe server afterwards works as ever. */
static void test_connect_to_byte_pipe_is_eproto_and_leaks_nothing(void **st)
{
    char name[96], name2[96], sys[300], buf[16];
    OVERLAPPED ov;
    msgpipe_server *srv;
    msgpipe *c, *s;
    HANDLE pipe;
    DWORD n = 0, e, w;
    size_t len = 0;

    (void)st;
    sup_name(name, sizeof(name), "foreignbyte");
    sup_sys_name(name, sys, sizeof(sys));
    pipe = CreateNamedPipeA(sys, PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED,
                            PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT, 1,
                            4096, 4096, 0, NULL);
    assert_true(pipe != INVALID_HANDLE_VALUE);

    assert_rc(msgpipe_connect(name, NULL, SUP_T, &c), MSGPIPE_EPROTO);

    /* The client came and went: ConnectNamedPipe reports it connected
     * (or already gone), and a read then sees the end of the pipe. */
    memset(&ov, 0, sizeof(ov));
    ov.hEvent = CreateEventA(NULL, TRUE, FALSE, NULL);
    assert_non_null(ov.hEvent);
    if (!ConnectNamedPipe(pipe, &ov)) {
        e = GetLastError();
        if (e == ERROR_IO_PENDING) {
            /* No client recorded: it never got in, which is wrong too. */
            CancelIo(pipe);
            fail_msg("the msgpipe client never reached the byte pipe");
        }
        assert_true(e == ERROR_PIPE_CONNECTED || e == ERROR_NO_DATA);
    }
    ResetEvent(ov.hEvent);
    if (ReadFile(pipe, buf, sizeof(buf), &n, &ov))
        fail_msg("read %lu bytes from a client that sent none",
                 (unsigned long)n);
    e = GetLastError();
    if (e == ERROR_IO_PENDING) {
        w = WaitForSingleObject(ov.hEvent, SUP_T);
        if (w != WAIT_OBJECT_0) {
            CancelIo(pipe);
            GetOverlappedResult(pipe, &ov, &n, TRUE);
            fail_msg("the client's handle is still open");
        }
        assert_false(GetOverlappedResult(pipe, &ov, &n, FALSE));
        e = GetLastError();
    }
    if (e != ERROR_BROKEN_PIPE && e != ERROR_PIPE_NOT_CONNECTED &&
        e != ERROR_NO_DATA)
        fail_msg("the raw server's read ended with error %lu, not the end "
                 "of the pipe",
                 (unsigned long)e);
    CloseHandle(ov.hEvent);
    CloseHandle(pipe);

    /* msgpipe itself is unharmed. */
    sup_name(name2, sizeof(name2), "foreignafter");
    assert_rc(msgpipe_listen(name2, NULL, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_connect(name2, NULL, SUP_T, &c), MSGPIPE_OK);
    assert_rc(msgpipe_accept(srv, SUP_T, &s), MSGPIPE_OK);
    assert_rc(msgpipe_send(c, "ok", 2, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 2);
    assert_memory_equal(buf, "ok", 2);
    msgpipe_close(c);
    msgpipe_close(s);
    msgpipe_server_close(srv);
}

/* ---- A plain byte-mode reader of a msgpipe server ------------------------ */

#define N_MSGS 8
static const size_t msg_sizes[N_MSGS] = {1,     19,    4096, 65535,
                                         65536, 70000, 777,  3};

typedef struct byte_server_arg {
    msgpipe_server *srv;
    int rc;
} byte_server_arg;

/* Accept one client, send the messages, close at once. */
static void *byte_server_main(void *argp)
{
    byte_server_arg *a = (byte_server_arg *)argp;
    msgpipe *p;
    int i, rc;

    rc = msgpipe_accept(a->srv, SUP_T, &p);
    if (rc != MSGPIPE_OK) {
        a->rc = rc;
        return NULL;
    }
    for (i = 0; i < N_MSGS && rc == MSGPIPE_OK; i++) {
        unsigned char *m = (unsigned char *)malloc(msg_sizes[i]);
        if (m == NULL) {
            rc = MSGPIPE_ENOMEM;
            break;
        }
        sup_fill(m, msg_sizes[i], (uint32_t)(i + 1));
        rc = msgpipe_send(p, m, msg_sizes[i], SUP_T);
        free(m);
    }
    msgpipe_close(p);
    a->rc = rc;
    return NULL;
}

/* A plain Win32 client opening a msgpipe server's pipe in byte read mode
 * (GENERIC_READ | FILE_WRITE_ATTRIBUTES, no SetNamedPipeHandleState)
 * receives every message's bytes in order, in reads of any size, and then
 * the end of the pipe (ERROR_BROKEN_PIPE). */
static void test_byte_mode_reader_gets_every_byte_then_the_end(void **st)
{
    static unsigned char want[300000], got[300000];
    byte_server_arg a;
    char name[96], sys[300];
    size_t total = 0, off = 0;
    sup_thread *t;
    HANDLE h;
    DWORD n, e = 0;
    int i;

    (void)st;
    for (i = 0; i < N_MSGS; i++) {
        assert_true(total + msg_sizes[i] <= sizeof(want));
        sup_fill(want + total, msg_sizes[i], (uint32_t)(i + 1));
        total += msg_sizes[i];
    }
    sup_name(name, sizeof(name), "foreignread");
    sup_sys_name(name, sys, sizeof(sys));
    memset(&a, 0, sizeof(a));
    assert_rc(msgpipe_listen(name, NULL, &a.srv), MSGPIPE_OK);
    t = sup_thread_start(byte_server_main, &a);

    h = CreateFileA(sys, GENERIC_READ | FILE_WRITE_ATTRIBUTES, 0, NULL,
                    OPEN_EXISTING, 0, NULL);
    if (h == INVALID_HANDLE_VALUE)
        fail_msg("CreateFile: error %lu", (unsigned long)GetLastError());
    for (;;) {
        /* 1000 bytes: never a message boundary's multiple, so reads
         * straddle messages. */
        DWORD want_n = 1000;
        if (off + want_n > sizeof(got))
            want_n = (DWORD)(sizeof(got) - off);
        if (!ReadFile(h, got + off, want_n, &n, NULL)) {
            e = GetLastError();
            break;
        }
        off += n;
        assert_true(off < sizeof(got));
    }
    CloseHandle(h);
    assert_int_equal(e, ERROR_BROKEN_PIPE);
    assert_int_equal(off, total);
    assert_memory_equal(got, want, total);

    assert_int_equal(sup_thread_join_timeout(t, SUP_T, NULL), 0);
    assert_rc(a.rc, MSGPIPE_OK);
    msgpipe_server_close(a.srv);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_to_byte_pipe_is_eproto_and_leaks_nothing),
        cmocka_unit_test(test_byte_mode_reader_gets_every_byte_then_the_end),
    };

    sup_init(argc, argv);
    return sup_finish(
        cmocka_run_group_tests_name("foreign", tests, NULL, NULL));
}
