/*
 * test_faults.c - fault injection: what the system calls and the allocator
 * may do, done on purpose.
 *
 * The POSIX backend reaches read/writev/sendmsg/accept/poll through the
 * table msgpipe__sys, the Win32 backend ReadFile/WriteFile/
 * ConnectNamedPipe/GetOverlappedResult/the waits/CancelIoEx/PeekNamedPipe
 * through msgpipe__w32, and every backend allocates through msgpipe__mem
 * (as SQLite's VFS does): these tests replace entries to make calls return
 * EINTR or EAGAIN, move one byte at a time, fail, or run out of memory.
 * Each checks that no message is lost, duplicated, reordered or
 * corrupted; the sanitizer and valgrind runs check that nothing leaks.
 *
 * The hooks count with thread-local variables: only the thread that armed
 * a fault sees it, so a peer thread in the same process is not disturbed.
 */
#include "support.h"

#include "backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef _WIN32
#include "posix_internal.h"
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#else
#include "win32_internal.h"
#endif

#if defined(__GNUC__) || defined(__clang__)
#define TLS __thread
#else
#define TLS
#endif

/* ---- The allocator ------------------------------------------------------- */

static msgpipe__allocator real_mem;
static TLS long fail_alloc_at; /* fail the Nth allocation from now (1 = next) */
static TLS long allocs;        /* allocations seen in this thread */

static int alloc_should_fail(void)
{
    allocs++;
    if (fail_alloc_at > 0 && --fail_alloc_at == 0)
        return 1;
    return 0;
}

static void *t_malloc(size_t n)
{
    return alloc_should_fail() ? NULL : real_mem.malloc(n);
}

static void *t_calloc(size_t n, size_t size)
{
    return alloc_should_fail() ? NULL : real_mem.calloc(n, size);
}

static void *t_realloc(void *p, size_t n)
{
    return alloc_should_fail() ? NULL : real_mem.realloc(p, n);
}

static int setup_mem(void **state)
{
    (void)state;
    real_mem = msgpipe__mem;
    msgpipe__mem.malloc = t_malloc;
    msgpipe__mem.calloc = t_calloc;
    msgpipe__mem.realloc = t_realloc;
    fail_alloc_at = 0;
    return 0;
}

static int teardown_mem(void **state)
{
    (void)state;
    msgpipe__mem = real_mem;
    fail_alloc_at = 0;
    return 0;
}

/* A message larger than the receive buffer, so that msgpipe_recv_alloc
 * grows its buffer while it arrives; small enough to fit in any pipe's
 * system buffer (64 KiB for a FIFO), so that one thread can send it
 * whole before receiving it. */
enum { BIGMSG = 60000 };

static void test_recv_alloc_out_of_memory_keeps_the_message(void **state)
{
    sup_pair pr;
    unsigned char *m = (unsigned char *)malloc(BIGMSG);
    void *got = NULL;
    size_t len = 0;
    int k, rc;
    (void)state;

    assert_non_null(m);
    sup_fill(m, BIGMSG, 5);
    sup_pair_open(&pr, "flt", NULL, NULL);
    assert_rc(msgpipe_send(pr.c, "first", 5, SUP_T), MSGPIPE_OK);
    /* Fail each allocation the receive makes in turn: every time the
     * message stays queued, and a plain retry gets it. */
    for (k = 1; k < 50; k++) {
        assert_rc(msgpipe_send(pr.c, m, BIGMSG, SUP_T), MSGPIPE_OK);
        if (k == 1) {
            fail_alloc_at = 1;
            rc = msgpipe_recv_alloc(pr.s, &got, &len, SUP_T);
            fail_alloc_at = 0;
            if (rc == MSGPIPE_ENOMEM) {
                assert_null(got);
                assert_rc(msgpipe_recv_alloc(pr.s, &got, &len, SUP_T),
                          MSGPIPE_OK);
            } else {
                assert_rc(rc, MSGPIPE_OK);
            }
            assert_int_equal(len, 5);
            assert_memory_equal(got, "first", 5);
            msgpipe_free(got);
        }
        fail_alloc_at = k;
        rc = msgpipe_recv_alloc(pr.s, &got, &len, SUP_T);
        fail_alloc_at = 0;
        if (rc == MSGPIPE_OK) {
            /* Fewer than k allocations were needed: all paths tried. */
            assert_int_equal(len, BIGMSG);
            assert_pattern(got, BIGMSG, 5);
            msgpipe_free(got);
            break;
        }
        assert_rc(rc, MSGPIPE_ENOMEM);
        assert_null(got);
        assert_rc(msgpipe_recv_alloc(pr.s, &got, &len, SUP_T), MSGPIPE_OK);
        assert_int_equal(len, BIGMSG);
        assert_pattern(got, BIGMSG, 5);
        msgpipe_free(got);
    }
    assert_true(k > 1 && k < 50);
    sup_pair_close(&pr);
    free(m);
}

/* Every allocation that listen, connect, accept, send and receive make
 * fails in turn; each call reports MSGPIPE_ENOMEM (or succeeds, if it did
 * not need that allocation) and nothing leaks (the sanitizer runs check). */
static void test_out_of_memory_anywhere_is_enomem_and_leaks_nothing(void **st)
{
    int k, done = 0;
    (void)st;

    for (k = 1; k < 200 && !done; k++) {
        msgpipe_server *srv = NULL;
        msgpipe *c = NULL, *a = NULL;
        char name[96], buf[16];
        size_t len = 0;
        int rc;

        sup_name(name, sizeof(name), "flt");
        allocs = 0;
        fail_alloc_at = k;
        rc = msgpipe_listen(name, NULL, &srv);
        if (rc == MSGPIPE_OK)
            rc = msgpipe_connect(name, NULL, SUP_T, &c);
        if (rc == MSGPIPE_OK)
            rc = msgpipe_accept(srv, SUP_T, &a);
        if (rc == MSGPIPE_OK)
            rc = msgpipe_send(c, "abc", 3, SUP_T);
        if (rc == MSGPIPE_OK)
            rc = msgpipe_recv(a, buf, sizeof(buf), &len, SUP_T);
        done = fail_alloc_at > 0; /* the fault was never reached */
        fail_alloc_at = 0;
        if (!done && rc != MSGPIPE_ENOMEM) {
            /* The failed allocation was one a call could do without (a
             * buffer it retries later); the sequence must then work. */
            assert_rc(rc, MSGPIPE_OK);
        }
        if (rc == MSGPIPE_OK) {
            assert_int_equal(len, 3);
            assert_memory_equal(buf, "abc", 3);
        }
        msgpipe_close(a);
        msgpipe_close(c);
        msgpipe_server_close(srv);
    }
    print_message("%d allocation points tried\n", k - 2);
    assert_true(done);
}

#ifndef _WIN32

/* ---- System calls (POSIX) -------------------------------------------- */

static msgpipe__syscalls real_sys;

/* What the hooks do, per thread: a pattern applied to successive calls. */
enum mode { PASS, EINTR_EVERY_OTHER, EAGAIN_EVERY_OTHER, ONE_BYTE, FAIL };
static TLS enum mode read_mode, write_mode;
static TLS long read_calls, write_calls;
static TLS int fail_errno;

/* What the next call does under `mode` (its count in *calls): -1 with
 * errno set to fail it, 1 to move one byte at most, 0 to pass it on. */
static long plan(enum mode mode, long *calls)
{
    ++*calls;
    switch (mode) {
    case EINTR_EVERY_OTHER:
    case EAGAIN_EVERY_OTHER:
        if (*calls % 2) {
            errno = mode == EINTR_EVERY_OTHER ? EINTR : EAGAIN;
            return -1;
        }
        return 0;
    case ONE_BYTE:
        return 1;
    case FAIL:
        errno = fail_errno;
        return -1;
    case PASS:
        break;
    }
    return 0;
}

static long read_plan(void)
{
    return plan(read_mode, &read_calls);
}

static long write_plan(void)
{
    return plan(write_mode, &write_calls);
}

static ssize_t t_read(int fd, void *buf, size_t n)
{
    long p = read_plan();
    if (p < 0)
        return -1;
    return real_sys.read(fd, buf, p == 1 && n > 1 ? 1 : n);
}

static int first_byte(const struct iovec *iov, int cnt, struct iovec *one);

static ssize_t t_readv(int fd, const struct iovec *iov, int cnt)
{
    struct iovec one;
    long plan = read_plan();
    if (plan < 0)
        return -1;
    if (plan == 1 && first_byte(iov, cnt, &one))
        return real_sys.readv(fd, &one, 1);
    return real_sys.readv(fd, iov, cnt);
}

static ssize_t t_recvmsg(int fd, struct msghdr *msg, int flags)
{
    struct iovec one;
    struct msghdr m;
    long plan = read_plan();
    if (plan < 0)
        return -1;
    if (plan == 1 && first_byte(msg->msg_iov, (int)msg->msg_iovlen, &one)) {
        ssize_t rc;
        m = *msg;
        m.msg_iov = &one;
        m.msg_iovlen = 1;
        rc = real_sys.recvmsg(fd, &m, flags);
        /* What the system says of ancillary data, as recvmsg() would. */
        msg->msg_controllen = m.msg_controllen;
        msg->msg_flags = m.msg_flags;
        return rc;
    }
    return real_sys.recvmsg(fd, msg, flags);
}

/* The first byte of iov, as a one-element vector. */
static int first_byte(const struct iovec *iov, int cnt, struct iovec *one)
{
    int i;
    for (i = 0; i < cnt; i++) {
        if (iov[i].iov_len > 0) {
            one->iov_base = iov[i].iov_base;
            one->iov_len = 1;
            return 1;
        }
    }
    return 0;
}

static ssize_t t_writev(int fd, const struct iovec *iov, int cnt)
{
    struct iovec one;
    long plan = write_plan();
    if (plan < 0)
        return -1;
    if (plan == 1 && first_byte(iov, cnt, &one))
        return real_sys.writev(fd, &one, 1);
    return real_sys.writev(fd, iov, cnt);
}

static ssize_t t_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    struct iovec one;
    struct msghdr m;
    long plan = write_plan();
    if (plan < 0)
        return -1;
    if (plan == 1 && first_byte(msg->msg_iov, (int)msg->msg_iovlen, &one)) {
        m = *msg;
        m.msg_iov = &one;
        m.msg_iovlen = 1;
        return real_sys.sendmsg(fd, &m, flags);
    }
    return real_sys.sendmsg(fd, msg, flags);
}

static ssize_t t_send(int fd, const void *buf, size_t n, int flags)
{
    long plan = write_plan();
    if (plan < 0)
        return -1;
    if (plan == 1 && n > 0)
        return real_sys.send(fd, buf, 1, flags);
    return real_sys.send(fd, buf, n, flags);
}

static TLS int accept_failures; /* fail this many accepts with EMFILE */

static int t_accept(int lfd)
{
    if (accept_failures > 0) {
        accept_failures--;
        errno = EMFILE;
        return -1;
    }
    return real_sys.accept(lfd);
}

static TLS int poll_eintr; /* make every other poll return EINTR */
static TLS long poll_calls;

static int t_poll(struct pollfd *fds, nfds_t n, int timeout)
{
    if (poll_eintr && (++poll_calls % 2)) {
        errno = EINTR;
        return -1;
    }
    return real_sys.poll(fds, n, timeout);
}

static int setup_sys(void **state)
{
    (void)state;
    real_sys = msgpipe__sys;
    msgpipe__sys.read = t_read;
    msgpipe__sys.readv = t_readv;
    msgpipe__sys.recvmsg = t_recvmsg;
    msgpipe__sys.writev = t_writev;
    msgpipe__sys.sendmsg = t_sendmsg;
    msgpipe__sys.send = t_send;
    msgpipe__sys.accept = t_accept;
    msgpipe__sys.poll = t_poll;
    read_mode = write_mode = PASS;
    return 0;
}

static int teardown_sys(void **state)
{
    (void)state;
    msgpipe__sys = real_sys;
    return 0;
}

/* A sender thread with its own fault mode: N messages of varied sizes,
 * each a pattern seeded by its index. */
enum { NMSG = 120 };

/* Set by exchange() before its sender starts: with one-byte transfers the
 * large sizes are cut to 20,000 (still past the 16 KiB receive buffer), as
 * a byte at a time through megabytes would only make the run slow
 * (minutes under valgrind) without testing another path. */
static size_t size_cap = (size_t)-1;

static size_t msg_size(int i)
{
    static const size_t sizes[] = {0,    1,     3,     4,     5,     100,
                                   4095, 16383, 16384, 16385, 70000, 250000};
    size_t s = sizes[i % (int)(sizeof(sizes) / sizeof(sizes[0]))];
    return s < size_cap ? s : size_cap;
}

typedef struct {
    msgpipe *p;
    enum mode mode;
    int rc;
} sender;

static void *sender_main(void *arg)
{
    sender *sd = (sender *)arg;
    unsigned char *m = (unsigned char *)malloc(250000);
    int i;

    write_mode = sd->mode;
    sd->rc = MSGPIPE_OK;
    for (i = 0; i < NMSG && sd->rc == MSGPIPE_OK; i++) {
        sup_fill(m, msg_size(i), (uint32_t)i);
        sd->rc = msgpipe_send(sd->p, m, msg_size(i), SUP_T_LONG);
    }
    write_mode = PASS;
    free(m);
    return NULL;
}

/* Send NMSG messages with the sender's fault mode while this thread
 * receives them with the receiver's; every one must arrive whole, once,
 * in order. */
static void exchange(enum mode smode, enum mode rmode, int use_alloc)
{
    sup_pair pr;
    sender sd;
    sup_thread *t;
    unsigned char *buf = (unsigned char *)malloc(250000);
    int i;

    size_cap = smode == ONE_BYTE || rmode == ONE_BYTE ? 20000 : (size_t)-1;
    sup_pair_open(&pr, "flt", NULL, NULL);
    sd.p = pr.c;
    sd.mode = smode;
    t = sup_thread_start(sender_main, &sd);
    read_mode = rmode;
    read_calls = 0;
    for (i = 0; i < NMSG; i++) {
        size_t len = 0;
        if (use_alloc) {
            void *m = NULL;
            assert_rc(msgpipe_recv_alloc(pr.s, &m, &len, SUP_T_LONG),
                      MSGPIPE_OK);
            assert_int_equal(len, msg_size(i));
            assert_pattern(m, len, (uint32_t)i);
            msgpipe_free(m);
        } else {
            assert_rc(msgpipe_recv(pr.s, buf, 250000, &len, SUP_T_LONG),
                      MSGPIPE_OK);
            assert_int_equal(len, msg_size(i));
            assert_pattern(buf, len, (uint32_t)i);
        }
    }
    read_mode = PASS;
    sup_thread_join(t);
    assert_rc(sd.rc, MSGPIPE_OK);
    /* Nothing more: no duplicate, no stray bytes. */
    {
        size_t len = 0;
        assert_rc(msgpipe_recv(pr.s, buf, 250000, &len, 0), MSGPIPE_ETIMEDOUT);
    }
    sup_pair_close(&pr);
    free(buf);
}

static void test_reads_interrupted_by_eintr_lose_nothing(void **state)
{
    (void)state;
    exchange(PASS, EINTR_EVERY_OTHER, 0);
    assert_true(read_calls >= 2); /* at least one EINTR was injected */
}

static void test_spurious_eagain_on_read_loses_nothing(void **state)
{
    (void)state;
    exchange(PASS, EAGAIN_EVERY_OTHER, 1);
}

static void test_reads_of_one_byte_lose_nothing(void **state)
{
    (void)state;
    exchange(PASS, ONE_BYTE, 0);
    exchange(PASS, ONE_BYTE, 1);
}

static void test_writes_interrupted_by_eintr_lose_nothing(void **state)
{
    (void)state;
    exchange(EINTR_EVERY_OTHER, PASS, 0);
}

static void test_spurious_eagain_on_write_loses_nothing(void **state)
{
    (void)state;
    exchange(EAGAIN_EVERY_OTHER, PASS, 1);
}

static void test_writes_of_one_byte_lose_nothing(void **state)
{
    (void)state;
    exchange(ONE_BYTE, ONE_BYTE, 0);
}

static void test_poll_interrupted_by_eintr_loses_nothing(void **state)
{
    sup_pair pr;
    msgpipe_pollitem it;
    char buf[8];
    size_t len = 0;
    (void)state;

    sup_pair_open(&pr, "flt", NULL, NULL);
    poll_eintr = 1;
    /* A wait with nothing ready still waits its time, then times out. */
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, 50),
              MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_send(pr.c, "poll", 4, SUP_T), MSGPIPE_OK);
    memset(&it, 0, sizeof(it));
    it.pipe = pr.s;
    it.events = MSGPIPE_POLLIN;
    assert_rc(msgpipe_poll(&it, 1, SUP_T), 1);
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    poll_eintr = 0;
    assert_true(poll_calls > 1);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "poll", 4);
    sup_pair_close(&pr);
}

static void test_failing_read_is_eio_and_loses_nothing(void **state)
{
    sup_pair pr;
    char buf[16];
    size_t len = 0;
    (void)state;

    sup_pair_open(&pr, "flt", NULL, NULL);
    assert_rc(msgpipe_send(pr.c, "kept", 4, SUP_T), MSGPIPE_OK);
    read_mode = FAIL;
    fail_errno = EIO;
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_EIO);
    assert_int_equal(msgpipe_last_os_error(), EIO);
    read_mode = PASS;
    /* The failure consumed nothing. */
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "kept", 4);
    sup_pair_close(&pr);
}

static void test_failing_write_sends_nothing_and_retry_sends_once(void **st)
{
    sup_pair pr;
    char buf[16];
    size_t len = 0;
    (void)st;

    sup_pair_open(&pr, "flt", NULL, NULL);
    write_mode = FAIL;
    fail_errno = ENOBUFS;
    assert_rc(msgpipe_send(pr.c, "once", 4, SUP_T), MSGPIPE_ENOMEM);
    assert_int_equal(msgpipe_last_os_error(), ENOBUFS);
    fail_errno = EIO;
    assert_rc(msgpipe_send(pr.c, "once", 4, SUP_T), MSGPIPE_EIO);
    write_mode = PASS;
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, 0), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_send(pr.c, "once", 4, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "once", 4);
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, 0), MSGPIPE_ETIMEDOUT);
    sup_pair_close(&pr);
}

static void test_accept_out_of_descriptors_is_emfile_then_works(void **st)
{
    msgpipe_server *srv = NULL;
    msgpipe *c = NULL, *a = NULL;
    char name[96], buf[8];
    size_t len = 0;
    (void)st;

    sup_name(name, sizeof(name), "flt");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_connect(name, NULL, SUP_T, &c), MSGPIPE_OK);
    assert_rc(msgpipe_send(c, "wait", 4, SUP_T), MSGPIPE_OK);
    accept_failures = 1;
    assert_rc(msgpipe_accept(srv, SUP_T, &a), MSGPIPE_EMFILE);
    assert_null(a);
    assert_int_equal(msgpipe_last_os_error(), EMFILE);
    /* The client waited in the queue: nothing lost. */
    assert_rc(msgpipe_accept(srv, SUP_T, &a), MSGPIPE_OK);
    assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "wait", 4);
    msgpipe_close(a);
    msgpipe_close(c);
    msgpipe_server_close(srv);
}
#endif /* !_WIN32 */

#ifdef _WIN32

/* ---- System calls (Windows) ------------------------------------------- */

static msgpipe__w32_calls real_w32;

/* What the hooks do, per thread. */
static TLS int w_short_reads; /* 1: data reads get half of what they ask,
                                 2: at most 64 KiB */
static TLS int w_cancel_part; /* the next data read: one byte, then
                                 "cancelled" */
static TLS int w_fail_writes; /* fail every write with w_fail_error */
static TLS DWORD w_fail_error;
static TLS int w_fail_waits;   /* the next waits fail (WAIT_FAILED) */
static TLS long w_reads;       /* data reads seen */
static TLS int w_fail_read_at; /* fail the Nth data read from now */
static TLS int w_cancel_at;    /* after the Nth data read, cancel ... */
static HANDLE w_cancel_h;      /* ... this foreign writer's write */
static OVERLAPPED *w_cancel_ov;
static char w_ghost_sys[300]; /* ConnectNamedPipe: a client that came,
                                 wrote "ghost" and left, first */

#define W_STATUS_CANCELLED ((ULONG_PTR)0xC0000120L)

/* The untagged event of an OVERLAPPED (the low bit keeps a completion off
 * the handle's completion port). */
static HANDLE w_event(const OVERLAPPED *ov)
{
    return (HANDLE)((ULONG_PTR)ov->hEvent & ~(ULONG_PTR)1);
}

static BOOL WINAPI t_ReadFile(HANDLE h, LPVOID buf, DWORD n, LPDWORD got,
                              LPOVERLAPPED ov)
{
    if (n > 1 && ov != NULL) {
        w_reads++;
        if (w_short_reads == 1)
            n = n / 2;
        else if (w_short_reads == 2 && n > 65536)
            n = 65536;
        if (w_cancel_at > 0 && --w_cancel_at == 0) {
            BOOL ok = real_w32.ReadFile(h, buf, n, got, ov);
            DWORD e = GetLastError(), k;
            CancelIoEx(w_cancel_h, w_cancel_ov);
            GetOverlappedResult(w_cancel_h, w_cancel_ov, &k, TRUE);
            SetLastError(e);
            return ok;
        }
        if (w_fail_read_at > 0 && --w_fail_read_at == 0) {
            SetLastError(ERROR_INVALID_USER_BUFFER);
            return FALSE;
        }
        if (w_cancel_part) {
            /* Take one byte for real, then report what a read cancelled
             * after part of a message arrived reports. */
            OVERLAPPED one;
            DWORD k = 0;
            w_cancel_part = 0;
            memset(&one, 0, sizeof(one));
            one.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
            one.hEvent = (HANDLE)((ULONG_PTR)one.hEvent | 1);
            if (!real_w32.ReadFile(h, buf, 1, NULL, &one) &&
                GetLastError() != ERROR_MORE_DATA &&
                GetLastError() != ERROR_IO_PENDING) {
                CloseHandle(w_event(&one));
                return FALSE;
            }
            real_w32.GetOverlappedResult(h, &one, &k, TRUE);
            CloseHandle(w_event(&one));
            ov->InternalHigh = k;
            ov->Internal = W_STATUS_CANCELLED;
            SetEvent(w_event(ov));
            SetLastError(ERROR_IO_PENDING);
            return FALSE;
        }
    }
    return real_w32.ReadFile(h, buf, n, got, ov);
}

static BOOL WINAPI t_WriteFile(HANDLE h, LPCVOID buf, DWORD n, LPDWORD put,
                               LPOVERLAPPED ov)
{
    if (w_fail_writes) {
        SetLastError(w_fail_error);
        return FALSE;
    }
    return real_w32.WriteFile(h, buf, n, put, ov);
}

static BOOL WINAPI t_ConnectNamedPipe(HANDLE h, LPOVERLAPPED ov)
{
    if (w_ghost_sys[0] != '\0') {
        /* A client connects to this listening instance, writes and
         * closes, all before the connect is issued: the connect then
         * reports ERROR_NO_DATA, as for a fast client under load. */
        DWORD mode = PIPE_READMODE_MESSAGE, k;
        HANDLE c = CreateFileA(w_ghost_sys, GENERIC_READ | GENERIC_WRITE, 0,
                               NULL, OPEN_EXISTING, 0, NULL);
        w_ghost_sys[0] = '\0';
        if (c != INVALID_HANDLE_VALUE) {
            SetNamedPipeHandleState(c, &mode, NULL, NULL);
            WriteFile(c, "ghost", 5, &k, NULL);
            CloseHandle(c);
        }
    }
    return real_w32.ConnectNamedPipe(h, ov);
}

static DWORD WINAPI t_WaitForSingleObject(HANDLE h, DWORD ms)
{
    if (w_fail_waits > 0) {
        w_fail_waits--;
        SetLastError(ERROR_INVALID_HANDLE);
        return WAIT_FAILED;
    }
    return real_w32.WaitForSingleObject(h, ms);
}

static int setup_w32(void **state)
{
    (void)state;
    real_w32 = msgpipe__w32;
    msgpipe__w32.ReadFile = t_ReadFile;
    msgpipe__w32.WriteFile = t_WriteFile;
    msgpipe__w32.ConnectNamedPipe = t_ConnectNamedPipe;
    msgpipe__w32.WaitForSingleObject = t_WaitForSingleObject;
    w_short_reads = w_cancel_part = w_fail_writes = w_fail_waits = 0;
    w_fail_read_at = 0;
    w_cancel_at = 0;
    w_reads = 0;
    w_ghost_sys[0] = '\0';
    return 0;
}

static int teardown_w32(void **state)
{
    (void)state;
    msgpipe__w32 = real_w32;
    return 0;
}

enum { W_NMSG = 40 };

static size_t w_size(int i)
{
    static const size_t sizes[] = {0,     1,     3,     100,    4095,
                                   16384, 65535, 65536, 100000, 250000};
    return sizes[i % (int)(sizeof(sizes) / sizeof(sizes[0]))];
}

typedef struct w_sender {
    msgpipe *p;
    int rc;
} w_sender;

static void *w_sender_main(void *arg)
{
    w_sender *sd = (w_sender *)arg;
    unsigned char *m = (unsigned char *)malloc(250000);
    int i;

    sd->rc = m == NULL ? MSGPIPE_ENOMEM : MSGPIPE_OK;
    for (i = 0; i < W_NMSG && sd->rc == MSGPIPE_OK; i++) {
        sup_fill(m, w_size(i), (uint32_t)i);
        sd->rc = msgpipe_send(sd->p, m, w_size(i), SUP_T_LONG);
    }
    free(m);
    return NULL;
}

/* Every data read comes back with half of what it asked for (ERROR_MORE
 * _DATA early): each message still arrives whole, once, in order. */
static void test_w32_short_reads_lose_nothing(void **state)
{
    sup_pair pr;
    w_sender sd;
    sup_thread *t;
    unsigned char *buf = (unsigned char *)malloc(250000);
    int i, use_alloc;
    (void)state;

    assert_non_null(buf);
    for (use_alloc = 0; use_alloc < 2; use_alloc++) {
        sup_pair_open(&pr, "flt", NULL, NULL);
        sd.p = pr.c;
        t = sup_thread_start(w_sender_main, &sd);
        w_short_reads = 1;
        for (i = 0; i < W_NMSG; i++) {
            size_t len = 0;
            if (use_alloc) {
                void *m = NULL;
                assert_rc(msgpipe_recv_alloc(pr.s, &m, &len, SUP_T_LONG),
                          MSGPIPE_OK);
                assert_int_equal(len, w_size(i));
                assert_pattern(m, len, (uint32_t)i);
                msgpipe_free(m);
            } else {
                assert_rc(msgpipe_recv(pr.s, buf, 250000, &len, SUP_T_LONG),
                          MSGPIPE_OK);
                assert_int_equal(len, w_size(i));
                assert_pattern(buf, len, (uint32_t)i);
            }
        }
        w_short_reads = 0;
        sup_thread_join(t);
        assert_rc(sd.rc, MSGPIPE_OK);
        assert_true(w_reads > W_NMSG); /* reads were cut */
        {
            size_t len = 0;
            assert_rc(msgpipe_recv(pr.s, buf, 250000, &len, 0),
                      MSGPIPE_ETIMEDOUT);
        }
        sup_pair_close(&pr);
    }
    free(buf);
}

/* A data read that is cancelled after it took part of a message: the part
 * is kept, and the message arrives whole; the next one too. */
static void test_w32_cancel_after_part_read_loses_nothing(void **state)
{
    sup_pair pr;
    unsigned char *m = (unsigned char *)malloc(3000);
    unsigned char buf[3000];
    size_t len = 0;
    int rc;
    (void)state;

    assert_non_null(m);
    sup_pair_open(&pr, "flt", NULL, NULL);
    sup_fill(m, 3000, 31);
    assert_rc(msgpipe_send(pr.c, m, 3000, SUP_T), MSGPIPE_OK);
    sup_fill(m, 3000, 32);
    assert_rc(msgpipe_send(pr.c, m, 3000, SUP_T), MSGPIPE_OK);
    w_cancel_part = 1;
    rc = msgpipe_recv(pr.s, buf, sizeof(buf), &len, SUP_T);
    assert_int_equal(w_cancel_part, 0); /* the fault happened */
    if (rc == MSGPIPE_ETIMEDOUT)        /* allowed: nothing is lost */
        rc = msgpipe_recv(pr.s, buf, sizeof(buf), &len, SUP_T);
    assert_rc(rc, MSGPIPE_OK);
    assert_int_equal(len, 3000);
    assert_pattern(buf, len, 31);
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 3000);
    assert_pattern(buf, len, 32);
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, 0), MSGPIPE_ETIMEDOUT);
    sup_pair_close(&pr);
    free(m);
}

/* ConnectNamedPipe reports ERROR_NO_DATA (a client connected, wrote and
 * left before it): accept hands that client out, with its message, then
 * MSGPIPE_ECLOSED. */
static void test_w32_connect_no_data_hands_out_the_client(void **state)
{
    msgpipe_options o;
    msgpipe_server *srv = NULL;
    msgpipe *a = NULL, *c = NULL;
    char name[96], buf[16];
    size_t len = 0;
    (void)state;

    sup_name(name, sizeof(name), "flt");
    sup_sys_name(name, w_ghost_sys, sizeof(w_ghost_sys));
    msgpipe_options_init(&o);
    o.pending = 1;
    assert_rc(msgpipe_listen(name, &o, &srv), MSGPIPE_OK);
    assert_int_equal(w_ghost_sys[0], '\0'); /* the ghost came */
    assert_rc(msgpipe_accept(srv, SUP_T, &a), MSGPIPE_OK);
    assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "ghost", 5);
    assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, SUP_T), MSGPIPE_ECLOSED);
    msgpipe_close(a);
    /* The server goes on serving. */
    assert_rc(msgpipe_connect(name, NULL, SUP_T, &c), MSGPIPE_OK);
    assert_rc(msgpipe_send(c, "real", 4, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_accept(srv, SUP_T, &a), MSGPIPE_OK);
    assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 4);
    msgpipe_close(a);
    msgpipe_close(c);
    msgpipe_server_close(srv);
}

static void *w_send_big_then_next(void *arg)
{
    w_sender *sd = (w_sender *)arg;
    unsigned char *m = (unsigned char *)malloc(66036);

    sd->rc = MSGPIPE_ENOMEM;
    if (m != NULL) {
        sup_fill(m, 66036, 3);
        sd->rc = msgpipe_send(sd->p, m, 66036, SUP_T);
        if (sd->rc == MSGPIPE_OK)
            sd->rc = msgpipe_send(sd->p, "NEXT", 4, SUP_T);
    }
    free(m);
    return NULL;
}

/* The discard of an oversized message (66,036 bytes, max_message 1,000)
 * fails after its first 64 KiB: the receive still reports EMSGSIZE, and
 * the next receive discards the rest instead of returning those 500 bytes
 * as a message. */
static void test_w32_failed_discard_never_hands_out_the_rest(void **state)
{
    msgpipe_options so;
    sup_pair pr;
    w_sender sd;
    sup_thread *t;
    char buf[1000];
    size_t len = 0;
    (void)state;

    msgpipe_options_init(&so);
    so.max_message = 1000;
    sup_pair_open(&pr, "flt", &so, NULL);
    sd.p = pr.c;
    t = sup_thread_start(w_send_big_then_next, &sd);
    /* Wait until the whole message is visible, so that the discard reads
     * a full chunk first. */
    sup_sleep_ms(100);
    w_fail_read_at = 2;
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, SUP_T),
              MSGPIPE_EMSGSIZE);
    assert_int_equal(len, 66036);
    assert_int_equal(w_fail_read_at, 0); /* the fault happened */
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "NEXT", 4);
    sup_thread_join(t);
    assert_rc(sd.rc, MSGPIPE_OK);
    sup_pair_close(&pr);
}

enum { W_FOREIGN_BIG = 8 * 1024 * 1024 };

/* A plain Win32 writer queues an 8 MiB message and "NEXT" behind it, and
 * cancels the big write while msgpipe discards it (max_message 1,000;
 * the cancel comes right after the discard's first read): the receive reports
 * EMSGSIZE, and the next one returns "NEXT" - the discard never eats the
 * message behind a withdrawn one. */
static void test_w32_foreign_writer_withdrawing_during_discard(void **state)
{
    msgpipe_options so;
    msgpipe_server *srv = NULL;
    msgpipe *a = NULL;
    OVERLAPPED big_ov, next_ov;
    unsigned char *big = (unsigned char *)malloc(W_FOREIGN_BIG);
    DWORD mode = PIPE_READMODE_MESSAGE, k;
    char name[96], sys[300], buf[1000];
    size_t len = 0;
    HANDLE h;
    int rc;
    (void)state;

    assert_non_null(big);
    memset(big, 0x33, W_FOREIGN_BIG);
    sup_name(name, sizeof(name), "flt");
    sup_sys_name(name, sys, sizeof(sys));
    msgpipe_options_init(&so);
    so.max_message = 1000;
    assert_rc(msgpipe_listen(name, &so, &srv), MSGPIPE_OK);
    h = CreateFileA(sys, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING,
                    FILE_FLAG_OVERLAPPED, NULL);
    assert_true(h != INVALID_HANDLE_VALUE);
    assert_true(SetNamedPipeHandleState(h, &mode, NULL, NULL));
    assert_rc(msgpipe_accept(srv, SUP_T, &a), MSGPIPE_OK);
    memset(&big_ov, 0, sizeof(big_ov));
    memset(&next_ov, 0, sizeof(next_ov));
    big_ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
    next_ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!WriteFile(h, big, W_FOREIGN_BIG, NULL, &big_ov))
        assert_int_equal(GetLastError(), ERROR_IO_PENDING);
    if (!WriteFile(h, "NEXT", 4, NULL, &next_ov))
        assert_int_equal(GetLastError(), ERROR_IO_PENDING);
    w_cancel_h = h;
    w_cancel_ov = &big_ov;
    w_cancel_at = 1;
    rc = msgpipe_recv(a, buf, sizeof(buf), &len, SUP_T);
    assert_int_equal(w_cancel_at, 0); /* the cancel came mid-discard */
    assert_rc(rc, MSGPIPE_EMSGSIZE);
    assert_int_equal(len, W_FOREIGN_BIG);
    rc = msgpipe_recv(a, buf, sizeof(buf), &len, 2000);
    assert_rc(rc, MSGPIPE_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "NEXT", 4);
    assert_true(GetOverlappedResult(h, &next_ov, &k, TRUE));
    CloseHandle(h);
    CloseHandle(big_ov.hEvent);
    CloseHandle(next_ov.hEvent);
    msgpipe_close(a);
    msgpipe_server_close(srv);
    free(big);
}

/* Reads come back short (64 KiB at most), and a plain Win32 writer
 * cancels its 8 MiB write right after the first read, with "NEXT" queued
 * behind.  If the cancel withdrew the rest, the receive returns "NEXT"
 * alone - the head of the withdrawn message is dropped, never merged with
 * the next one; if the write had completed, the message arrives whole,
 * then "NEXT". */
static void test_w32_withdrawn_message_after_short_read_is_not_merged(void **st)
{
    msgpipe_server *srv = NULL;
    msgpipe *a = NULL;
    OVERLAPPED big_ov, next_ov;
    unsigned char *big = (unsigned char *)malloc(W_FOREIGN_BIG);
    DWORD mode = PIPE_READMODE_MESSAGE, k;
    char name[96], sys[300];
    void *got = NULL;
    size_t len = 0;
    HANDLE h;
    int use_alloc, withdrawn;
    (void)st;

    assert_non_null(big);
    memset(big, 0x44, W_FOREIGN_BIG);
    for (use_alloc = 0; use_alloc < 2; use_alloc++) {
        sup_name(name, sizeof(name), "flt");
        sup_sys_name(name, sys, sizeof(sys));
        assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
        h = CreateFileA(sys, GENERIC_READ | GENERIC_WRITE, 0, NULL,
                        OPEN_EXISTING, FILE_FLAG_OVERLAPPED, NULL);
        assert_true(h != INVALID_HANDLE_VALUE);
        assert_true(SetNamedPipeHandleState(h, &mode, NULL, NULL));
        assert_rc(msgpipe_accept(srv, SUP_T, &a), MSGPIPE_OK);
        memset(&big_ov, 0, sizeof(big_ov));
        memset(&next_ov, 0, sizeof(next_ov));
        big_ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
        next_ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
        if (!WriteFile(h, big, W_FOREIGN_BIG, NULL, &big_ov))
            assert_int_equal(GetLastError(), ERROR_IO_PENDING);
        if (!WriteFile(h, "NEXT", 4, NULL, &next_ov))
            assert_int_equal(GetLastError(), ERROR_IO_PENDING);
        w_cancel_h = h;
        w_cancel_ov = &big_ov;
        w_cancel_at = 1;
        w_short_reads = 2;
        if (use_alloc) {
            assert_rc(msgpipe_recv_alloc(a, &got, &len, SUP_T), MSGPIPE_OK);
        } else {
            got = malloc(W_FOREIGN_BIG + 4);
            assert_non_null(got);
            assert_rc(msgpipe_recv(a, got, W_FOREIGN_BIG + 4, &len, SUP_T),
                      MSGPIPE_OK);
        }
        w_short_reads = 0;
        assert_int_equal(w_cancel_at, 0); /* the writer cancelled */
        withdrawn = !GetOverlappedResult(h, &big_ov, &k, TRUE);
        print_message("the cancel %s the rest\n",
                      withdrawn ? "withdrew" : "came too late for");
        if (!withdrawn) {
            assert_int_equal(len, W_FOREIGN_BIG);
            if (use_alloc)
                msgpipe_free(got);
            if (use_alloc)
                assert_rc(msgpipe_recv_alloc(a, &got, &len, SUP_T), MSGPIPE_OK);
            else
                assert_rc(msgpipe_recv(a, got, W_FOREIGN_BIG + 4, &len, SUP_T),
                          MSGPIPE_OK);
        }
        assert_int_equal(len, 4);
        assert_memory_equal(got, "NEXT", 4);
        if (use_alloc)
            msgpipe_free(got);
        else
            free(got);
        assert_true(GetOverlappedResult(h, &next_ov, &k, TRUE));
        CloseHandle(h);
        CloseHandle(big_ov.hEvent);
        CloseHandle(next_ov.hEvent);
        msgpipe_close(a);
        msgpipe_server_close(srv);
    }
    free(big);
}

/* A write the system refuses sends nothing; a retry sends once. */
static void test_w32_failing_write_sends_nothing_and_retry_sends_once(void **st)
{
    sup_pair pr;
    char buf[16];
    size_t len = 0;
    (void)st;

    sup_pair_open(&pr, "flt", NULL, NULL);
    w_fail_writes = 1;
    w_fail_error = ERROR_NO_SYSTEM_RESOURCES;
    assert_rc(msgpipe_send(pr.c, "once", 4, SUP_T), MSGPIPE_ENOMEM);
    assert_int_equal(msgpipe_last_os_error(), ERROR_NO_SYSTEM_RESOURCES);
    w_fail_error = ERROR_INVALID_USER_BUFFER;
    assert_rc(msgpipe_send(pr.c, "once", 4, 50), MSGPIPE_EIO);
    w_fail_writes = 0;
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, 0), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_send(pr.c, "once", 4, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "once", 4);
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, 0), MSGPIPE_ETIMEDOUT);
    sup_pair_close(&pr);
}

/* A wait that fails is MSGPIPE_EIO and consumes nothing. */
static void test_w32_failing_wait_is_eio_and_loses_nothing(void **state)
{
    sup_pair pr;
    char buf[16];
    size_t len = 0;
    (void)state;

    sup_pair_open(&pr, "flt", NULL, NULL);
    w_fail_waits = 1;
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_EIO);
    assert_int_equal(w_fail_waits, 0);
    assert_rc(msgpipe_send(pr.c, "kept", 4, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "kept", 4);
    sup_pair_close(&pr);
}
#endif /* _WIN32 */

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_recv_alloc_out_of_memory_keeps_the_message, setup_mem,
            teardown_mem),
        cmocka_unit_test_setup_teardown(
            test_out_of_memory_anywhere_is_enomem_and_leaks_nothing, setup_mem,
            teardown_mem),
#ifndef _WIN32
        cmocka_unit_test_setup_teardown(
            test_reads_interrupted_by_eintr_lose_nothing, setup_sys,
            teardown_sys),
        cmocka_unit_test_setup_teardown(
            test_spurious_eagain_on_read_loses_nothing, setup_sys,
            teardown_sys),
        cmocka_unit_test_setup_teardown(test_reads_of_one_byte_lose_nothing,
                                        setup_sys, teardown_sys),
        cmocka_unit_test_setup_teardown(
            test_writes_interrupted_by_eintr_lose_nothing, setup_sys,
            teardown_sys),
        cmocka_unit_test_setup_teardown(
            test_spurious_eagain_on_write_loses_nothing, setup_sys,
            teardown_sys),
        cmocka_unit_test_setup_teardown(test_writes_of_one_byte_lose_nothing,
                                        setup_sys, teardown_sys),
        cmocka_unit_test_setup_teardown(
            test_poll_interrupted_by_eintr_loses_nothing, setup_sys,
            teardown_sys),
        cmocka_unit_test_setup_teardown(
            test_failing_read_is_eio_and_loses_nothing, setup_sys,
            teardown_sys),
        cmocka_unit_test_setup_teardown(
            test_failing_write_sends_nothing_and_retry_sends_once, setup_sys,
            teardown_sys),
#else
        cmocka_unit_test_setup_teardown(test_w32_short_reads_lose_nothing,
                                        setup_w32, teardown_w32),
        cmocka_unit_test_setup_teardown(
            test_w32_cancel_after_part_read_loses_nothing, setup_w32,
            teardown_w32),
        cmocka_unit_test_setup_teardown(
            test_w32_connect_no_data_hands_out_the_client, setup_w32,
            teardown_w32),
        cmocka_unit_test_setup_teardown(
            test_w32_failed_discard_never_hands_out_the_rest, setup_w32,
            teardown_w32),
        cmocka_unit_test_setup_teardown(
            test_w32_foreign_writer_withdrawing_during_discard, setup_w32,
            teardown_w32),
        cmocka_unit_test_setup_teardown(
            test_w32_withdrawn_message_after_short_read_is_not_merged,
            setup_w32, teardown_w32),
        cmocka_unit_test_setup_teardown(
            test_w32_failing_write_sends_nothing_and_retry_sends_once,
            setup_w32, teardown_w32),
        cmocka_unit_test_setup_teardown(
            test_w32_failing_wait_is_eio_and_loses_nothing, setup_w32,
            teardown_w32),
#endif
    };
#ifndef _WIN32
    /* The FIFO transport opens FIFOs instead of accepting connections. */
    const struct CMUnitTest accept_tests[] = {
        cmocka_unit_test_setup_teardown(
            test_accept_out_of_descriptors_is_emfile_then_works, setup_sys,
            teardown_sys),
    };
#endif
    int failed;

    sup_init(argc, argv);
    failed = cmocka_run_group_tests_name("faults", tests, NULL, NULL);
#ifndef _WIN32
    if (!sup_is_fifo())
        failed +=
            cmocka_run_group_tests_name("accept", accept_tests, NULL, NULL);
#endif
    return sup_finish(failed);
}
