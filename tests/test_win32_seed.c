/*
 * test_win32_seed.c - the seed's own client and server, in raw Win32,
 * against msgpipe (Windows only).
 *
 * The seed is a pywin32 article: a server that writes 10 timestamp strings
 * to a client, in 3 sessions, over a message-mode named pipe.  Here its
 * client and its server are rewritten call for call in plain Win32 and
 * paired with msgpipe, which proves that msgpipe on Windows speaks plain
 * message-mode named pipes: no header, one WriteFile per message, one
 * ReadFile per message, and the end of the pipe as the seed expects it.
 *
 *   seed client:  CreateFile(GENERIC_READ | GENERIC_WRITE, 0, NULL,
 *                 OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL);
 *                 SetNamedPipeHandleState(PIPE_READMODE_MESSAGE);
 *                 ReadFile(65536) until it fails (109: "Named Pipe is broken").
 *   seed server:  CreateNamedPipe(PIPE_ACCESS_DUPLEX, PIPE_TYPE_MESSAGE |
 *                 PIPE_READMODE_MESSAGE | PIPE_WAIT, 1, 65536, 65536, 0,
 *                 NULL); ConnectNamedPipe; WriteFile x 10; FlushFileBuffers;
 *                 DisconnectNamedPipe; CloseHandle.
 *
 * The seed waits 0.2 s between messages; these tests use 5 ms, which keeps
 * the reader sometimes ahead of the writer and sometimes behind.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <windows.h>

#define SESSIONS 3
#define PER_SESSION 10
#define STAMP_LEN 19 /* "dd/mm/YYYY HH:MM:SS" */
#define SEED_BUF 65536

/* ---- The seed's messages ------------------------------------------------- */

typedef struct seed_msgs {
    char text[SESSIONS][PER_SESSION][STAMP_LEN + 1];
} seed_msgs;

/* The seed's timestamps: sessions 1 and 3 "%d/%m/%Y %H:%M:%S", session 2
 * "%d_%m_%Y_%H_%M_%S".  The time is taken once and advanced by 0.2 s per
 * message, as the seed's clock would move, so every message is known in
 * advance and can be compared exactly. */
static void seed_msgs_make(seed_msgs *m)
{
    time_t t0 = time(NULL);
    int s, i;

    for (s = 0; s < SESSIONS; s++)
        for (i = 0; i < PER_SESSION; i++) {
            time_t t = t0 + (s * PER_SESSION + i) / 5;
            struct tm *tm = localtime(&t);
            const char *fmt =
                s == 1 ? "%d_%m_%Y_%H_%M_%S" : "%d/%m/%Y %H:%M:%S";
            assert_non_null(tm);
            assert_int_equal(strftime(m->text[s][i], STAMP_LEN + 1, fmt, tm),
                             STAMP_LEN);
        }
}

/* ---- The seed's client (raw Win32) --------------------------------------- */

typedef struct raw_client_result {
    int opened;       /* CreateFile and SetNamedPipeHandleState worked */
    DWORD open_error; /* GetLastError() if not */
    int count;        /* messages read */
    DWORD lens[64];   /* bytes returned by each ReadFile */
    char text[64][STAMP_LEN + 1];
    DWORD end_error; /* the error that ended the ReadFile loop */
} raw_client_result;

/* One session of the seed's client. */
static void raw_client_session(const char *sys, raw_client_result *r)
{
    static char buf[SEED_BUF];
    DWORD mode = PIPE_READMODE_MESSAGE, n;
    HANDLE h;

    memset(r, 0, sizeof(*r));
    h = CreateFileA(sys, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING,
                    FILE_ATTRIBUTE_NORMAL, NULL);
    if (h == INVALID_HANDLE_VALUE) {
        r->open_error = GetLastError();
        return;
    }
    if (!SetNamedPipeHandleState(h, &mode, NULL, NULL)) {
        r->open_error = GetLastError();
        CloseHandle(h);
        return;
    }
    r->opened = 1;
    for (;;) {
        if (!ReadFile(h, buf, SEED_BUF, &n, NULL)) {
            r->end_error = GetLastError();
            break;
        }
        if (r->count < 64) {
            r->lens[r->count] = n;
            memcpy(r->text[r->count], buf, n < STAMP_LEN ? n : STAMP_LEN);
        }
        r->count++;
    }
    CloseHandle(h);
}

/* ---- The seed's server (raw Win32) --------------------------------------- */

typedef struct raw_server_arg {
    char sys[300];
    const seed_msgs *msgs;
    int sessions_done;
    DWORD error; /* first failure, 0 if none */
    const char *failed_call;
} raw_server_arg;

static void *raw_server_main(void *argp)
{
    raw_server_arg *a = (raw_server_arg *)argp;
    int s, i;

    for (s = 0; s < SESSIONS; s++) {
        DWORD n;
        HANDLE pipe = CreateNamedPipeA(a->sys, PIPE_ACCESS_DUPLEX,
                                       PIPE_TYPE_MESSAGE |
                                           PIPE_READMODE_MESSAGE | PIPE_WAIT,
                                       1, SEED_BUF, SEED_BUF, 0, NULL);
        if (pipe == INVALID_HANDLE_VALUE) {
            a->error = GetLastError();
            a->failed_call = "CreateNamedPipe";
            return NULL;
        }
        if (!ConnectNamedPipe(pipe, NULL) &&
            GetLastError() != ERROR_PIPE_CONNECTED) {
            a->error = GetLastError();
            a->failed_call = "ConnectNamedPipe";
            CloseHandle(pipe);
            return NULL;
        }
        for (i = 0; i < PER_SESSION; i++) {
            if (!WriteFile(pipe, a->msgs->text[s][i], STAMP_LEN, &n, NULL) ||
                n != STAMP_LEN) {
                a->error = GetLastError();
                a->failed_call = "WriteFile";
                CloseHandle(pipe);
                return NULL;
            }
            Sleep(5);
        }
        /* FlushFileBuffers waits until the client has read everything;
         * only then does DisconnectNamedPipe not lose data. */
        FlushFileBuffers(pipe);
        DisconnectNamedPipe(pipe);
        CloseHandle(pipe);
        a->sessions_done = s + 1;
    }
    return NULL;
}

/* ---- msgpipe's server for the seed client -------------------------------- */

typedef struct mp_server_arg {
    msgpipe_server *srv;
    const seed_msgs *msgs;
    int sessions;    /* how many clients to serve */
    size_t extra[4]; /* after the stamps, messages of these sizes (0: none) */
    int n_extra;
    int rc; /* first failure, MSGPIPE_OK if none */
} mp_server_arg;

static void *mp_server_main(void *argp)
{
    mp_server_arg *a = (mp_server_arg *)argp;
    int s, i;

    a->rc = MSGPIPE_OK;
    for (s = 0; s < a->sessions; s++) {
        msgpipe *p;
        int rc = msgpipe_accept(a->srv, SUP_T, &p);
        if (rc != MSGPIPE_OK) {
            a->rc = rc;
            return NULL;
        }
        for (i = 0; i < PER_SESSION && rc == MSGPIPE_OK; i++) {
            rc = msgpipe_send(p, a->msgs->text[s % SESSIONS][i], STAMP_LEN,
                              SUP_T);
            Sleep(5);
        }
        for (i = 0; i < a->n_extra && rc == MSGPIPE_OK; i++) {
            unsigned char *m = (unsigned char *)malloc(a->extra[i] + 1);
            if (m == NULL) {
                rc = MSGPIPE_ENOMEM;
                break;
            }
            sup_fill(m, a->extra[i], (uint32_t)a->extra[i]);
            rc = msgpipe_send(p, m, a->extra[i], SUP_T);
            free(m);
        }
        /* Close at once: the seed client must still read every message,
         * then see the pipe broken. */
        msgpipe_close(p);
        if (rc != MSGPIPE_OK) {
            a->rc = rc;
            return NULL;
        }
    }
    return NULL;
}

/* ---- Tests --------------------------------------------------------------- */

/* The seed's client, unchanged, reads a msgpipe server's three sessions:
 * each ReadFile returns exactly one message, all ten arrive although the
 * server closes right after sending, and the loop ends on
 * ERROR_BROKEN_PIPE (109), the seed's "Named Pipe is broken". */
static void test_seed_client_reads_every_message_of_msgpipe_server(void **st)
{
    static seed_msgs msgs;
    static raw_client_result r;
    mp_server_arg a;
    char name[96], sys[300];
    sup_thread *t;
    int s, i;

    (void)st;
    seed_msgs_make(&msgs);
    sup_name(name, sizeof(name), "seed");
    sup_sys_name(name, sys, sizeof(sys));
    memset(&a, 0, sizeof(a));
    a.msgs = &msgs;
    a.sessions = SESSIONS;
    /* The seed's client does not retry: the server listens before the
     * client starts, as in the article. */
    assert_rc(msgpipe_listen(name, NULL, &a.srv), MSGPIPE_OK);
    t = sup_thread_start(mp_server_main, &a);

    for (s = 0; s < SESSIONS; s++) {
        raw_client_session(sys, &r);
        if (!r.opened)
            print_error("session %d: open failed, error %lu\n", s + 1,
                        (unsigned long)r.open_error);
        assert_true(r.opened);
        assert_int_equal(r.count, PER_SESSION);
        for (i = 0; i < PER_SESSION; i++) {
            assert_int_equal(r.lens[i], STAMP_LEN);
            assert_memory_equal(r.text[i], msgs.text[s][i], STAMP_LEN);
        }
        assert_int_equal(r.end_error, ERROR_BROKEN_PIPE);
        Sleep(200); /* the seed's pause between sessions */
    }

    assert_int_equal(sup_thread_join_timeout(t, SUP_T, NULL), 0);
    assert_rc(a.rc, MSGPIPE_OK);
    msgpipe_server_close(a.srv);
}

/* The seed's server, unchanged, is read completely by a msgpipe client in
 * each of its three sessions; after FlushFileBuffers + DisconnectNamedPipe
 * the client sees MSGPIPE_ECLOSED.  The msgpipe client is started first and
 * waits for the server (connect with a timeout), which the seed's own
 * client could not do. */
static void test_msgpipe_client_reads_every_message_of_seed_server(void **st)
{
    static seed_msgs msgs;
    raw_server_arg a;
    char name[96], buf[SEED_BUF];
    sup_thread *t;
    msgpipe *c;
    size_t len;
    int s, i;

    (void)st;
    seed_msgs_make(&msgs);
    sup_name(name, sizeof(name), "seedsrv");
    memset(&a, 0, sizeof(a));
    sup_sys_name(name, a.sys, sizeof(a.sys));
    a.msgs = &msgs;
    t = sup_thread_start(raw_server_main, &a);

    for (s = 0; s < SESSIONS; s++) {
        /* Between sessions the seed server's single instance is gone or
         * disconnected: connect waits through ENOENT and busy. */
        assert_rc(msgpipe_connect(name, NULL, SUP_T, &c), MSGPIPE_OK);
        for (i = 0; i < PER_SESSION; i++) {
            len = 0;
            assert_rc(msgpipe_recv(c, buf, sizeof(buf), &len, SUP_T),
                      MSGPIPE_OK);
            assert_int_equal(len, STAMP_LEN);
            assert_memory_equal(buf, msgs.text[s][i], STAMP_LEN);
        }
        assert_rc(msgpipe_recv(c, buf, sizeof(buf), &len, SUP_T),
                  MSGPIPE_ECLOSED);
        msgpipe_close(c);
    }

    assert_int_equal(sup_thread_join_timeout(t, SUP_T, NULL), 0);
    if (a.error != 0)
        print_error("seed server: %s failed, error %lu\n", a.failed_call,
                    (unsigned long)a.error);
    assert_int_equal(a.error, 0);
    assert_int_equal(a.sessions_done, SESSIONS);
}

/* One ReadFile per message for sizes around the seed's 65536-byte buffer:
 * msgpipe adds no header and never splits or merges messages. */
static void
test_seed_client_gets_one_read_per_message_up_to_its_buffer(void **st)
{
    static seed_msgs msgs;
    static raw_client_result r;
    mp_server_arg a;
    char name[96], sys[300];
    sup_thread *t;

    (void)st;
    seed_msgs_make(&msgs);
    sup_name(name, sizeof(name), "seedbig");
    sup_sys_name(name, sys, sizeof(sys));
    memset(&a, 0, sizeof(a));
    a.msgs = &msgs;
    a.sessions = 1;
    a.extra[0] = 1;
    a.extra[1] = 4096;
    a.extra[2] = 65535;
    a.extra[3] = 65536;
    a.n_extra = 4;
    assert_rc(msgpipe_listen(name, NULL, &a.srv), MSGPIPE_OK);
    t = sup_thread_start(mp_server_main, &a);

    raw_client_session(sys, &r);
    assert_true(r.opened);
    assert_int_equal(r.count, PER_SESSION + 4);
    assert_int_equal(r.lens[PER_SESSION + 0], 1);
    assert_int_equal(r.lens[PER_SESSION + 1], 4096);
    assert_int_equal(r.lens[PER_SESSION + 2], 65535);
    assert_int_equal(r.lens[PER_SESSION + 3], 65536);
    assert_int_equal(r.end_error, ERROR_BROKEN_PIPE);

    assert_int_equal(sup_thread_join_timeout(t, SUP_T, NULL), 0);
    assert_rc(a.rc, MSGPIPE_OK);
    msgpipe_server_close(a.srv);
}

/* Empty messages cross in both directions between msgpipe and raw Win32:
 * a zero-byte WriteFile arrives as a message of length 0, and an empty
 * msgpipe_send() makes a raw ReadFile succeed with 0 bytes. */
static void test_empty_messages_cross_between_raw_and_msgpipe(void **st)
{
    msgpipe_server *srv;
    msgpipe *p;
    char name[96], sys[300], buf[16];
    DWORD mode = PIPE_READMODE_MESSAGE, n = 99;
    HANDLE h;
    size_t len = 99;

    (void)st;
    sup_name(name, sizeof(name), "seedempty");
    sup_sys_name(name, sys, sizeof(sys));
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    h = CreateFileA(sys, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING,
                    FILE_ATTRIBUTE_NORMAL, NULL);
    assert_true(h != INVALID_HANDLE_VALUE);
    assert_true(SetNamedPipeHandleState(h, &mode, NULL, NULL));
    assert_rc(msgpipe_accept(srv, SUP_T, &p), MSGPIPE_OK);

    assert_true(WriteFile(h, "", 0, &n, NULL));
    assert_true(WriteFile(h, "x", 1, &n, NULL));
    assert_rc(msgpipe_recv(p, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 0);
    assert_rc(msgpipe_recv(p, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 1);
    assert_int_equal(buf[0], 'x');

    assert_rc(msgpipe_send(p, NULL, 0, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_send(p, "y", 1, SUP_T), MSGPIPE_OK);
    n = 99;
    assert_true(ReadFile(h, buf, sizeof(buf), &n, NULL));
    assert_int_equal(n, 0);
    assert_true(ReadFile(h, buf, sizeof(buf), &n, NULL));
    assert_int_equal(n, 1);
    assert_int_equal(buf[0], 'y');

    CloseHandle(h);
    assert_rc(msgpipe_recv(p, buf, sizeof(buf), &len, SUP_T), MSGPIPE_ECLOSED);
    msgpipe_close(p);
    msgpipe_server_close(srv);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_seed_client_reads_every_message_of_msgpipe_server),
        cmocka_unit_test(
            test_msgpipe_client_reads_every_message_of_seed_server),
        cmocka_unit_test(
            test_seed_client_gets_one_read_per_message_up_to_its_buffer),
        cmocka_unit_test(test_empty_messages_cross_between_raw_and_msgpipe),
    };

    sup_init(argc, argv);
    return sup_finish(
        cmocka_run_group_tests_name("win32_seed", tests, NULL, NULL));
}
