/*
 * test_alloc.c - the steady-state cost of a message, counted.
 *
 * Issue 7's targets, proved with counters instead of clocks:
 *
 *   - no heap allocation per message in steady state, on send and on
 *     msgpipe_recv() into the caller's buffer: a counting allocator is put
 *     into msgpipe__mem (every allocation of the library goes through it),
 *     and after a warm-up exchange N sends and N receives of small and of
 *     large (100 KiB) messages must make no allocation and free nothing;
 *   - POSIX: exactly one write-type system call (writev/sendmsg/send) per
 *     message sent while the peer keeps up, and no other call of the
 *     backend's system-call table (msgpipe__sys: read, readv, recvmsg,
 *     writev, sendmsg, send, accept, poll) during the send; a small
 *     message is one buffer (send() on a socket);
 *   - POSIX: after a message of 4 KiB, the next one's payload is read by
 *     the system straight into the caller's buffer;
 *   - POSIX: for many small messages sent back to back before the receiver
 *     reads, fewer than one read() per received message on average
 *     (receive buffering), and about as few poll() calls.
 *
 * The system-call counts cover only the calls the backend makes through
 * msgpipe__sys (see posix/posix_internal.h); calls outside the table (the
 * FIFO transport's signal-mask calls around each write, for instance) are
 * measured with strace in docs/performance.md.
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
#endif

/* ---- The counting allocator ------------------------------------------- */

static msgpipe__allocator real_mem;
static volatile long n_alloc; /* malloc + calloc + realloc, every thread */
static volatile long n_free;

static void *c_malloc(size_t n)
{
    sup_atomic_add(&n_alloc, 1);
    return real_mem.malloc(n);
}

static void *c_calloc(size_t n, size_t size)
{
    sup_atomic_add(&n_alloc, 1);
    return real_mem.calloc(n, size);
}

static void *c_realloc(void *p, size_t n)
{
    sup_atomic_add(&n_alloc, 1);
    return real_mem.realloc(p, n);
}

static void c_free(void *p)
{
    if (p != NULL)
        sup_atomic_add(&n_free, 1);
    real_mem.free(p);
}

static int setup_mem(void **state)
{
    (void)state;
    real_mem = msgpipe__mem;
    msgpipe__mem.malloc = c_malloc;
    msgpipe__mem.calloc = c_calloc;
    msgpipe__mem.realloc = c_realloc;
    msgpipe__mem.free = c_free;
    sup_atomic_set(&n_alloc, 0);
    sup_atomic_set(&n_free, 0);
    return 0;
}

static int teardown_mem(void **state)
{
    (void)state;
    msgpipe__mem = real_mem;
    return 0;
}

/* ---- Steady state: no allocation per message ---------------------------- */

enum { SMALL = 100, LARGE = 100 * 1024, ROUNDS = 200 };

/* A sender thread: `count` messages of `size` bytes, sequence numbered. */
typedef struct sender {
    msgpipe *p;
    size_t size;
    int count;
    uint32_t first;
    int rc;
} sender;

static void *sender_main(void *arg)
{
    sender *sd = (sender *)arg;
    unsigned char *m = (unsigned char *)malloc(sd->size);
    int i;

    sd->rc = m == NULL ? MSGPIPE_ENOMEM : MSGPIPE_OK;
    for (i = 0; i < sd->count && sd->rc == MSGPIPE_OK; i++) {
        sup_fill(m, sd->size, sd->first + (uint32_t)i);
        sd->rc = msgpipe_send(sd->p, m, sd->size, SUP_T_LONG);
    }
    free(m);
    return NULL;
}

/* Send `count` messages of `size` bytes from `from` (in a thread, so that a
 * message larger than the system's buffer can be sent while this thread
 * receives it) and receive them on `to` into one caller buffer. */
static void exchange(msgpipe *from, msgpipe *to, size_t size, int count,
                     uint32_t first)
{
    unsigned char *buf = (unsigned char *)malloc(size);
    sender sd;
    sup_thread *t;
    size_t len;
    int i;

    assert_non_null(buf);
    sd.p = from;
    sd.size = size;
    sd.count = count;
    sd.first = first;
    sd.rc = MSGPIPE_OK;
    t = sup_thread_start(sender_main, &sd);
    for (i = 0; i < count; i++) {
        len = 0;
        assert_rc(msgpipe_recv(to, buf, size, &len, SUP_T_LONG), MSGPIPE_OK);
        assert_int_equal(len, size);
        assert_pattern(buf, len, first + (uint32_t)i);
    }
    sup_thread_join(t);
    assert_rc(sd.rc, MSGPIPE_OK);
    free(buf);
}

static void steady_state(size_t size)
{
    sup_pair pr;
    long a, f;

    sup_pair_open(&pr, "alc", NULL, NULL);
    /* Warm-up: each end's first use allocates its buffers once. */
    exchange(pr.c, pr.s, size, 4, 0);
    exchange(pr.s, pr.c, size, 4, 100);
    sup_atomic_set(&n_alloc, 0);
    sup_atomic_set(&n_free, 0);
    exchange(pr.c, pr.s, size, ROUNDS, 1000);
    exchange(pr.s, pr.c, size, ROUNDS, 5000);
    a = sup_atomic_get(&n_alloc);
    f = sup_atomic_get(&n_free);
    print_message("%d + %d messages of %lu bytes: %ld allocations, %ld frees\n",
                  ROUNDS, ROUNDS, (unsigned long)size, a, f);
    assert_int_equal(a, 0);
    assert_int_equal(f, 0);
    sup_pair_close(&pr);
}

static void test_small_messages_allocate_nothing(void **state)
{
    (void)state;
    steady_state(SMALL);
}

static void test_large_messages_allocate_nothing(void **state)
{
    (void)state;
    steady_state(LARGE);
}

/* Ping-pong, the way a request/reply program runs: one message in flight,
 * both directions, sizes mixed.  Still no allocation. */
static void test_ping_pong_allocates_nothing(void **state)
{
    static const size_t sizes[] = {0, 1, 16, 256, 4096, 16384, 65536};
    unsigned char *out = (unsigned char *)malloc(65536);
    unsigned char *in = (unsigned char *)malloc(65536);
    sup_pair pr;
    size_t len;
    int round, i;
    long a, f;
    (void)state;

    assert_non_null(out);
    assert_non_null(in);
    sup_pair_open(&pr, "alc", NULL, NULL);
    for (round = 0; round < 2; round++) {
        if (round == 1) { /* round 0 was the warm-up */
            sup_atomic_set(&n_alloc, 0);
            sup_atomic_set(&n_free, 0);
        }
        for (i = 0; i < 7 * 50; i++) {
            size_t n = sizes[i % 7];
            sup_fill(out, n, (uint32_t)i);
            /* 64 KiB + header does not fit in a FIFO at once: keep the
             * single-threaded ping-pong within what the system buffers. */
            if (sup_is_fifo() && n > 60000)
                n = 60000;
            assert_rc(msgpipe_send(pr.c, out, n, SUP_T), MSGPIPE_OK);
            assert_rc(msgpipe_recv(pr.s, in, 65536, &len, SUP_T), MSGPIPE_OK);
            assert_int_equal(len, n);
            assert_rc(msgpipe_send(pr.s, in, len, SUP_T), MSGPIPE_OK);
            assert_rc(msgpipe_recv(pr.c, in, 65536, &len, SUP_T), MSGPIPE_OK);
            assert_int_equal(len, n);
            assert_pattern(in, len, (uint32_t)i);
        }
    }
    a = sup_atomic_get(&n_alloc);
    f = sup_atomic_get(&n_free);
    print_message("350 round trips: %ld allocations, %ld frees\n", a, f);
    assert_int_equal(a, 0);
    assert_int_equal(f, 0);
    sup_pair_close(&pr);
    free(out);
    free(in);
}

#ifndef _WIN32

/* ---- System calls per message (POSIX) ----------------------------------- */

static msgpipe__syscalls real_sys;
/* Counted in the one thread these tests use. */
static long c_reads, c_writes, c_polls, c_accepts;
/* The last write call: its vectors and bytes, and whether it was send(). */
static long w_vecs, w_sends;
static size_t w_bytes;
/* Reads with a vector into [watch, watch + watch_len): the caller's
 * buffer, read into straight from the system. */
static const unsigned char *watch;
static size_t watch_len;
static long c_into_watch;

static void note_read(const struct iovec *iov, size_t cnt)
{
    size_t i;

    c_reads++;
    for (i = 0; i < cnt && watch != NULL; i++) {
        const unsigned char *b = (const unsigned char *)iov[i].iov_base;
        if (iov[i].iov_len > 0 && b >= watch && b < watch + watch_len) {
            c_into_watch++;
            return;
        }
    }
}

static void note_write(const struct iovec *iov, size_t cnt, int is_send)
{
    size_t i;

    c_writes++;
    w_vecs = (long)cnt;
    w_sends += is_send;
    w_bytes = 0;
    for (i = 0; i < cnt; i++)
        w_bytes += iov[i].iov_len;
}

static ssize_t s_read(int fd, void *buf, size_t n)
{
    struct iovec v;

    v.iov_base = buf;
    v.iov_len = n;
    note_read(&v, 1);
    return real_sys.read(fd, buf, n);
}

static ssize_t s_readv(int fd, const struct iovec *iov, int cnt)
{
    note_read(iov, (size_t)cnt);
    return real_sys.readv(fd, iov, cnt);
}

static ssize_t s_recvmsg(int fd, struct msghdr *msg, int flags)
{
    note_read(msg->msg_iov, (size_t)msg->msg_iovlen);
    return real_sys.recvmsg(fd, msg, flags);
}

static ssize_t s_writev(int fd, const struct iovec *iov, int cnt)
{
    note_write(iov, (size_t)cnt, 0);
    return real_sys.writev(fd, iov, cnt);
}

static ssize_t s_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    note_write(msg->msg_iov, (size_t)msg->msg_iovlen, 0);
    return real_sys.sendmsg(fd, msg, flags);
}

static ssize_t s_send(int fd, const void *buf, size_t n, int flags)
{
    struct iovec v;

    v.iov_base = (void *)buf;
    v.iov_len = n;
    note_write(&v, 1, 1);
    return real_sys.send(fd, buf, n, flags);
}

static int s_accept(int lfd)
{
    c_accepts++;
    return real_sys.accept(lfd);
}

static int s_poll(struct pollfd *fds, nfds_t n, int timeout)
{
    c_polls++;
    return real_sys.poll(fds, n, timeout);
}

static void zero_counts(void)
{
    c_reads = c_writes = c_polls = c_accepts = 0;
    w_vecs = w_sends = 0;
    w_bytes = 0;
    watch = NULL;
    watch_len = 0;
    c_into_watch = 0;
}

static long all_counts(void)
{
    return c_reads + c_writes + c_polls + c_accepts;
}

static int setup_sys(void **state)
{
    (void)state;
    real_sys = msgpipe__sys;
    msgpipe__sys.read = s_read;
    msgpipe__sys.readv = s_readv;
    msgpipe__sys.recvmsg = s_recvmsg;
    msgpipe__sys.writev = s_writev;
    msgpipe__sys.sendmsg = s_sendmsg;
    msgpipe__sys.send = s_send;
    msgpipe__sys.accept = s_accept;
    msgpipe__sys.poll = s_poll;
    zero_counts();
    return 0;
}

static int teardown_sys(void **state)
{
    (void)state;
    msgpipe__sys = real_sys;
    return 0;
}

/* Each send, with the peer keeping up (it takes every message before the
 * next is sent), is one write-type call and nothing else.  Sizes up to
 * 60,000 bytes: with the header, the largest message that fits in a FIFO's
 * 64 KiB buffer (a socket's is larger). */
static void test_one_system_call_per_send(void **state)
{
    static const size_t sizes[] = {0, 1, 16, 100, 256, 4096, 16384, 60000};
    const int per_size = 100;
    unsigned char *out = (unsigned char *)malloc(60000);
    unsigned char *in = (unsigned char *)malloc(60000);
    sup_pair pr;
    size_t len, k;
    long sends = 0, writes = 0, others = 0, worst = 0;
    int i, dir;
    (void)state;

    assert_non_null(out);
    assert_non_null(in);
    sup_pair_open(&pr, "alc", NULL, NULL);
    /* Warm-up: the first use of each end (a FIFO client finishes its
     * connection on it). */
    for (dir = 0; dir < 2; dir++) {
        msgpipe *a = dir ? pr.s : pr.c, *b = dir ? pr.c : pr.s;
        assert_rc(msgpipe_send(a, "w", 1, SUP_T), MSGPIPE_OK);
        assert_rc(msgpipe_recv(b, in, 60000, &len, SUP_T), MSGPIPE_OK);
    }
    for (k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        for (i = 0; i < per_size; i++) {
            for (dir = 0; dir < 2; dir++) {
                msgpipe *a = dir ? pr.s : pr.c, *b = dir ? pr.c : pr.s;
                long w, all;
                sup_fill(out, sizes[k], (uint32_t)i);
                zero_counts();
                assert_rc(msgpipe_send(a, out, sizes[k], SUP_T), MSGPIPE_OK);
                w = c_writes;
                all = all_counts();
                sends++;
                writes += w;
                others += all - w;
                if (all > worst)
                    worst = all;
                assert_rc(msgpipe_recv(b, in, 60000, &len, SUP_T), MSGPIPE_OK);
                assert_int_equal(len, sizes[k]);
                assert_pattern(in, len, (uint32_t)i);
            }
        }
    }
    print_message("%ld sends: %ld write calls, %ld other calls, at most %ld "
                  "in one send\n",
                  sends, writes, others, worst);
    assert_int_equal(writes, sends);
    assert_int_equal(others, 0);
    sup_pair_close(&pr);
    free(out);
    free(in);
}

/* Many small messages sent back to back before the receiver reads: the
 * receiver takes many per read(), and never waits (polls) for data that
 * is already there. */
static void back_to_back(size_t size, int count)
{
    unsigned char *out = (unsigned char *)malloc(size ? size : 1);
    unsigned char *in = (unsigned char *)malloc(size ? size : 1);
    sup_pair pr;
    size_t len;
    long reads, polls, bound;
    int i;

    assert_non_null(out);
    assert_non_null(in);
    sup_pair_open(&pr, "alc", NULL, NULL);
    /* Warm-up: the receive buffer exists after the first receive. */
    assert_rc(msgpipe_send(pr.c, "w", 1, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(pr.s, in, size ? size : 1, &len, SUP_T), MSGPIPE_OK);
    for (i = 0; i < count; i++) {
        sup_fill(out, size, (uint32_t)i);
        assert_rc(msgpipe_send(pr.c, out, size, SUP_T), MSGPIPE_OK);
    }
    zero_counts();
    for (i = 0; i < count; i++) {
        assert_rc(msgpipe_recv(pr.s, in, size, &len, SUP_T), MSGPIPE_OK);
        assert_int_equal(len, size);
        assert_pattern(in, len, (uint32_t)i);
    }
    reads = c_reads;
    polls = c_polls;
    print_message("%d messages of %lu bytes back to back: %ld read() calls "
                  "(%.3f per message), %ld poll() calls\n",
                  count, (unsigned long)size, reads,
                  (double)reads / (double)count, polls);
    assert_true(reads < count);
    /* The bytes were all there: about one read per receive buffer's worth
     * (4 bytes of header per message, MSGPIPE__RBUF_SIZE bytes a read, one
     * more for a split tail), and at most as many polls (a receiver that
     * waited last time may look before it reads). */
    bound = (long)(((size + 4) * (size_t)count) / (MSGPIPE__RBUF_SIZE / 2)) + 2;
    assert_true(reads <= bound);
    assert_true(polls <= bound);
    sup_pair_close(&pr);
    free(out);
    free(in);
}

static void test_back_to_back_small_messages_share_reads(void **state)
{
    (void)state;
    /* 100 messages at a time: they fit in any system buffer, so one
     * thread can send them all before receiving.  (A Unix socket charges
     * each small write about 1 KiB of its ~208 KiB send buffer, whatever
     * its size; a FIFO holds 64 KiB of data.) */
    back_to_back(16, 100);
    back_to_back(200, 100);
    back_to_back(0, 100);
}

/* Large messages one at a time, as a request/answer exchange sends them:
 * each arrives with one read, its header and payload together, straight
 * into the caller's buffer (not 16 KiB through the receive buffer and then
 * a second read for the rest).  60,000 bytes: with the header, what fits
 * in a FIFO's 64 KiB buffer, so that one thread can send and receive. */
static void test_large_messages_take_one_read_each(void **state)
{
    enum { N = 20, SZ = 60000 };
    unsigned char *out = (unsigned char *)malloc(SZ);
    unsigned char *in = (unsigned char *)malloc(SZ);
    sup_pair pr;
    size_t len;
    int i;
    (void)state;

    assert_non_null(out);
    assert_non_null(in);
    sup_pair_open(&pr, "alc", NULL, NULL);
    for (i = 0; i < N + 2; i++) {
        if (i == 2) /* after a warm-up of two */
            zero_counts();
        sup_fill(out, SZ, (uint32_t)i);
        assert_rc(msgpipe_send(pr.c, out, SZ, SUP_T), MSGPIPE_OK);
        len = 0;
        assert_rc(msgpipe_recv(pr.s, in, SZ, &len, SUP_T), MSGPIPE_OK);
        assert_int_equal(len, SZ);
        assert_pattern(in, len, (uint32_t)i);
    }
    print_message("%d messages of %d bytes one at a time: %ld read() calls, "
                  "%ld write calls\n",
                  N, SZ, c_reads, c_writes);
    assert_int_equal(c_reads, N);
    assert_int_equal(c_writes, N);
    sup_pair_close(&pr);
    free(out);
    free(in);
}

/* A receive with timeout 0 that finds nothing is one read and nothing
 * else: no poll() after the read's EAGAIN. */
static void test_empty_receive_with_timeout_0_is_one_read(void **state)
{
    unsigned char in[16];
    sup_pair pr;
    size_t len;
    int i;
    (void)state;

    sup_pair_open(&pr, "alc", NULL, NULL);
    assert_rc(msgpipe_send(pr.c, "w", 1, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(pr.s, in, sizeof(in), &len, SUP_T), MSGPIPE_OK);
    zero_counts();
    for (i = 0; i < 10; i++)
        assert_rc(msgpipe_recv(pr.s, in, sizeof(in), &len, 0),
                  MSGPIPE_ETIMEDOUT);
    print_message("10 empty receives with timeout 0: %ld reads, %ld polls\n",
                  c_reads, c_polls);
    assert_int_equal(c_reads, 10);
    assert_int_equal(c_polls, 0);
    sup_pair_close(&pr);
}

/* A poller's "drain, then wait again": the wait reads what came, the
 * receives take it from msgpipe's buffer, and the receive that ends the
 * drain (timeout 0) makes no system call - the read that emptied the pipe
 * was just made.  Once only: a message that arrives after it is received
 * by the next receive with timeout 0, and is reported by the next wait. */
static void test_poller_drain_ends_without_a_read(void **state)
{
    msgpipe_poller *pl = NULL;
    msgpipe_event ev[4];
    unsigned char in[16];
    sup_pair pr;
    size_t len;
    long reads;
    int round;
    (void)state;

    sup_pair_open(&pr, "alc", NULL, NULL);
    assert_rc(msgpipe_poller_new(&pl), MSGPIPE_OK);
    assert_rc(msgpipe_poller_add(pl, pr.s, NULL, MSGPIPE_POLLIN, NULL),
              MSGPIPE_OK);
    for (round = 0; round < 3; round++) {
        assert_rc(msgpipe_send(pr.c, "one", 3, SUP_T), MSGPIPE_OK);
        assert_rc(msgpipe_send(pr.c, "two", 3, SUP_T), MSGPIPE_OK);
        zero_counts();
        assert_int_equal(msgpipe_poller_wait(pl, ev, 4, SUP_T), 1);
        assert_true(ev[0].pipe == pr.s);
        assert_rc(msgpipe_recv(pr.s, in, sizeof(in), &len, 0), MSGPIPE_OK);
        assert_int_equal(len, 3);
        assert_memory_equal(in, "one", 3);
        assert_rc(msgpipe_recv(pr.s, in, sizeof(in), &len, 0), MSGPIPE_OK);
        assert_memory_equal(in, "two", 3);
        /* One read took both, in the wait (a look at a pipe just added)
         * or in the first receive; the wait's own poll() or epoll_wait
         * depends on how the poller is built, so only reads count here. */
        reads = c_reads;
        zero_counts();
        assert_rc(msgpipe_recv(pr.s, in, sizeof(in), &len, 0),
                  MSGPIPE_ETIMEDOUT);
        print_message("round %d: %ld read(s) for both messages; the receive "
                      "that ends the drain: %ld reads, %ld polls\n",
                      round, reads, c_reads, c_polls);
        assert_int_equal(reads, 1);
        assert_int_equal(c_reads, 0);
        assert_int_equal(c_polls, 0);
        /* Once only: what came after is there for the next look. */
        assert_rc(msgpipe_send(pr.c, "late", 4, SUP_T), MSGPIPE_OK);
        if (round == 0) {
            assert_rc(msgpipe_recv(pr.s, in, sizeof(in), &len, 0), MSGPIPE_OK);
            assert_memory_equal(in, "late", 4);
        } else {
            assert_int_equal(msgpipe_poller_wait(pl, ev, 4, SUP_T), 1);
            assert_rc(msgpipe_recv(pr.s, in, sizeof(in), &len, 0), MSGPIPE_OK);
            assert_memory_equal(in, "late", 4);
        }
        assert_rc(msgpipe_recv(pr.s, in, sizeof(in), &len, 0),
                  MSGPIPE_ETIMEDOUT);
    }
    msgpipe_poller_close(pl);
    sup_pair_close(&pr);
}

#endif /* !_WIN32 */

#ifndef _WIN32
/* A batch of 100 small messages is one write-type call, allocates
 * nothing, and arrives as 100 messages. */
static void test_batch_of_small_messages_is_one_system_call(void **state)
{
    enum { N = 100, SZ = 64 };
    static unsigned char data[N][SZ];
    msgpipe_msg m[N];
    unsigned char in[SZ];
    sup_pair pr;
    size_t len, sent = 0;
    long allocs_before;
    int i;
    (void)state;

    for (i = 0; i < N; i++) {
        sup_fill(data[i], SZ, (uint32_t)i);
        m[i].data = data[i];
        m[i].len = SZ;
    }
    sup_pair_open(&pr, "alc", NULL, NULL);
    /* Warm-up (a FIFO client finishes its connection on first use). */
    assert_rc(msgpipe_send(pr.c, "w", 1, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(pr.s, in, SZ, &len, SUP_T), MSGPIPE_OK);
    setup_mem(NULL); /* count allocations too */
    zero_counts();
    allocs_before = sup_atomic_get(&n_alloc);
    assert_rc(msgpipe_send_batch(pr.c, m, N, &sent, SUP_T), MSGPIPE_OK);
    assert_int_equal(sent, N);
    assert_int_equal(c_writes, 1);
    assert_int_equal(all_counts(), 1);
    for (i = 0; i < N; i++) {
        assert_rc(msgpipe_recv(pr.s, in, SZ, &len, SUP_T), MSGPIPE_OK);
        assert_int_equal(len, SZ);
        assert_pattern(in, SZ, (uint32_t)i);
    }
    assert_int_equal(sup_atomic_get(&n_alloc), allocs_before);
    teardown_mem(NULL);
    sup_pair_close(&pr);
}
#endif

#ifndef _WIN32
/* A message of up to 2,044 bytes (2,048 with its header) goes out as one
 * write of one buffer, header and payload copied together - send() on a
 * socket, which costs less than sendmsg() of two vectors; a larger one as
 * two vectors, without the copy.  Every one arrives exact. */
static void test_small_message_is_one_write_of_one_buffer(void **state)
{
    static const size_t sizes[] = {0, 1, 100, 2044, 2045, 4096, 60000};
    static unsigned char out[60000], in[60000];
    const int sock = !sup_is_fifo();
    sup_pair pr;
    size_t i, len;
    (void)state;

    sup_pair_open(&pr, "alc", NULL, NULL);
    assert_rc(msgpipe_send(pr.c, "w", 1, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(pr.s, in, sizeof(in), &len, SUP_T), MSGPIPE_OK);
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        const int small = sizes[i] + 4 <= 2048;
        sup_fill(out, sizes[i], (uint32_t)i);
        zero_counts();
        assert_rc(msgpipe_send(pr.c, out, sizes[i], SUP_T), MSGPIPE_OK);
        print_message("%lu bytes: %ld write(s), %ld vector(s), %lu bytes, "
                      "%ld send()\n",
                      (unsigned long)sizes[i], c_writes, w_vecs,
                      (unsigned long)w_bytes, w_sends);
        assert_int_equal(c_writes, 1);
        assert_int_equal(w_bytes, sizes[i] + 4);
        assert_int_equal(w_vecs, small || sizes[i] == 0 ? 1 : 2);
        assert_int_equal(w_sends, sock && small ? 1 : 0);
        len = 0;
        assert_rc(msgpipe_recv(pr.s, in, sizeof(in), &len, SUP_T), MSGPIPE_OK);
        assert_int_equal(len, sizes[i]);
        assert_pattern(in, len, (uint32_t)i);
    }
    sup_pair_close(&pr);
}

/* Messages of 4 KiB one at a time: after the first, each payload is read
 * by the system straight into the caller's buffer, one read a message. */
static void test_4k_messages_are_read_straight_into_the_buffer(void **state)
{
    enum { N = 20, SZ = 4096 };
    static unsigned char out[SZ], in[SZ + 100];
    sup_pair pr;
    size_t len;
    int i;
    (void)state;

    sup_pair_open(&pr, "alc", NULL, NULL);
    assert_rc(msgpipe_send(pr.c, "w", 1, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(pr.s, in, sizeof(in), &len, SUP_T), MSGPIPE_OK);
    zero_counts();
    watch = in;
    watch_len = sizeof(in);
    for (i = 0; i < N; i++) {
        sup_fill(out, SZ, (uint32_t)i);
        assert_rc(msgpipe_send(pr.c, out, SZ, SUP_T), MSGPIPE_OK);
        memset(in, 0, sizeof(in));
        len = 0;
        assert_rc(msgpipe_recv(pr.s, in, sizeof(in), &len, SUP_T), MSGPIPE_OK);
        assert_int_equal(len, SZ);
        assert_pattern(in, len, (uint32_t)i);
    }
    print_message("%d messages: %ld reads, %ld of them into the buffer\n", N,
                  c_reads, c_into_watch);
    assert_int_equal(c_into_watch, N - 1);
    assert_true(c_reads >= N && c_reads <= N + 2); /* + a poll's look */
    sup_pair_close(&pr);
}
#endif

int main(int argc, char **argv)
{
    const sup_test tests[] = {
        {1, cmocka_unit_test_setup_teardown(
                test_small_messages_allocate_nothing, setup_mem, teardown_mem)},
        {1, cmocka_unit_test_setup_teardown(
                test_large_messages_allocate_nothing, setup_mem, teardown_mem)},
        {1, cmocka_unit_test_setup_teardown(test_ping_pong_allocates_nothing,
                                            setup_mem, teardown_mem)},
#ifndef _WIN32
        {1, cmocka_unit_test_setup_teardown(test_one_system_call_per_send,
                                            setup_sys, teardown_sys)},
        {1, cmocka_unit_test_setup_teardown(
                test_back_to_back_small_messages_share_reads, setup_sys,
                teardown_sys)},
        {1,
         cmocka_unit_test_setup_teardown(test_large_messages_take_one_read_each,
                                         setup_sys, teardown_sys)},
        {1, cmocka_unit_test_setup_teardown(
                test_empty_receive_with_timeout_0_is_one_read, setup_sys,
                teardown_sys)},
        {1,
         cmocka_unit_test_setup_teardown(test_poller_drain_ends_without_a_read,
                                         setup_sys, teardown_sys)},
        {1, cmocka_unit_test_setup_teardown(
                test_batch_of_small_messages_is_one_system_call, setup_sys,
                teardown_sys)},
        {1, cmocka_unit_test_setup_teardown(
                test_small_message_is_one_write_of_one_buffer, setup_sys,
                teardown_sys)},
        {1, cmocka_unit_test_setup_teardown(
                test_4k_messages_are_read_straight_into_the_buffer, setup_sys,
                teardown_sys)},
#endif
    };

    sup_init(argc, argv);
    return sup_finish(SUP_RUN("alloc", tests));
}
