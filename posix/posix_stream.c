/*
 * posix_stream.c - messages over a connected POSIX stream descriptor.
 *
 * Wire format: api/frame.c (Python multiprocessing.connection framing).
 *
 * Receiving reads into a per-pipe buffer, so that many small messages are
 * taken with one read(); payloads of 4 KiB and more are read straight into
 * the caller's buffer.  Sending puts a message's header and payload in one
 * system call (copied into one buffer first when small).  Nothing a peer
 * announces is allocated ahead of the bytes: an oversized message is
 * skipped as it streams past, and msgpipe_recv_alloc() grows its buffer as
 * data arrives.
 *
 * A timeout loses nothing.  If the time runs out in the middle of a
 * message's payload, what has arrived is kept in p->hold and the next
 * receive carries on from there.  If a send's time runs out after part of
 * its message went out, the rest is kept in p->tx and written before
 * anything else, because a stream cannot take back half a message: by the
 * next send, by a receive while it waits for input, or by close.
 *
 * On Linux a message that fits in one socket buffer allocation (about half
 * of SO_SNDBUF) is written whole or not at all, so only large messages can
 * ever be cut by a timeout.
 */
#include "posix_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* Buffers kept between messages are released when larger than this. */
#define MSGPIPE__HOLD_KEEP 65536

/* ---- System calls ------------------------------------------------------- */

msgpipe__syscalls msgpipe__sys = {
    read, readv, recvmsg, writev, sendmsg, send, msgpipe__accept_cloexec, poll};

/* ---- Time and waiting -------------------------------------------------- */

int64_t msgpipe__now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int msgpipe__wait_fd(int fd, short events, int64_t deadline)
{
    struct pollfd pfd;
    int rc;

    for (;;) {
        pfd.fd = fd;
        pfd.events = events;
        pfd.revents = 0;
        rc = msgpipe__sys.poll(&pfd, 1, msgpipe__remaining(deadline));
        if (rc > 0)
            return 1; /* ready, or POLLHUP/POLLERR: the I/O call will tell */
        if (rc == 0)
            return 0;
        if (errno != EINTR)
            return msgpipe__from_errno(errno);
        /* A signal: go on waiting for the time that is left. */
    }
}

int msgpipe__from_errno(int err)
{
    msgpipe__set_os_error(err);
    switch (err) {
    case 0:
        return MSGPIPE_EIO; /* a failure with no reason given */
    case EPIPE:
    case ECONNRESET:
    case ENOTCONN:
        return MSGPIPE_ECLOSED;
    case ENOENT:
    case ECONNREFUSED:
        return MSGPIPE_ENOENT;
    case EACCES:
    case EPERM:
        return MSGPIPE_EACCES;
    case EADDRINUSE:
        return MSGPIPE_EADDRINUSE;
    case ENAMETOOLONG:
        return MSGPIPE_ENAMETOOLONG;
    case EMFILE:
    case ENFILE:
        return MSGPIPE_EMFILE;
    case ENOMEM:
    case ENOBUFS:
        return MSGPIPE_ENOMEM;
    case ETIMEDOUT:
        return MSGPIPE_ETIMEDOUT;
    default:
        return MSGPIPE_EIO;
    }
}

/* ---- Spinning (msgpipe_options.spin_us) ---------------------------------
 *
 * A wait that may spin looks again and again without blocking - the same
 * non-blocking read or write the call makes anyway - for up to spin_us,
 * and blocks only when that is over.  Each wait decides for itself: it
 * starts its spin at its first EAGAIN (msgpipe__spin_again), and spins
 * only with a deadline at least spin_us away (never with timeout 0).
 *
 * Between two looks it calls sched_yield().  With nothing else runnable on
 * its CPU that costs one cheap system call and returns at once, so on
 * separate CPUs the spin sees the peer's message within about a look.  When
 * the peer shares the CPU, the peer is what is runnable, and the yield
 * lets it run at once (instead of the spinner burning its time slice while
 * the peer cannot answer): a ping-pong of two spinning peers on one CPU
 * then hands the CPU back and forth much as two blocking peers do
 * (docs/performance.md, "Spinning", measures it).  No look
 * is ever skipped: the spin makes its own system calls, never the
 * "drain in a poller" shortcut of msgpipe__read_some (timeout 0 only). */

static int64_t msgpipe__now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* May a wait until deadline spin?  The msgpipe__now_us() at which its spin
 * ends, or -1: no spin_us, timeout 0, or less than spin_us left. */
static int64_t msgpipe__spin_start(const msgpipe *p, int64_t deadline)
{
    if (p->opts.spin_us <= 0 || deadline == 0)
        return -1;
    if (deadline > 0 &&
        (int64_t)msgpipe__remaining(deadline) * 1000 < p->opts.spin_us)
        return -1;
    return msgpipe__now_us() + p->opts.spin_us;
}

/* A look found nothing (EAGAIN).  1: look again now (spinning); 0: the
 * spin is over or there is none - wait.  *spin is 0 before the wait's
 * first EAGAIN, then its spin's end, then -1. */
static int msgpipe__spin_again(const msgpipe *p, int64_t *spin,
                               int64_t deadline)
{
    if (*spin == 0)
        *spin = msgpipe__spin_start(p, deadline);
    if (*spin > 0) {
        sched_yield();
        if (msgpipe__now_us() < *spin)
            return 1;
    }
    *spin = -1;
    return 0;
}

/* Does a wait until deadline look first (without blocking), to spin? */
static int msgpipe__spins(const msgpipe *p, int64_t deadline)
{
    return p->opts.spin_us > 0 && deadline != 0;
}

/* ---- Pipe objects ------------------------------------------------------ */

int msgpipe__pipe_alloc(const msgpipe__opts *o, msgpipe **out)
{
    msgpipe *p = (msgpipe *)msgpipe__calloc(1, sizeof(*p));

    if (p == NULL)
        return MSGPIPE_ENOMEM;
    if (pthread_mutex_init(&p->tx_lock, NULL) != 0) {
        msgpipe__free(p);
        return MSGPIPE_ENOMEM;
    }
    if (pthread_mutex_init(&p->conn_lock, NULL) != 0) {
        pthread_mutex_destroy(&p->tx_lock);
        msgpipe__free(p);
        return MSGPIPE_ENOMEM;
    }
    p->fd = p->wfd = -1;
    p->opts = *o;
    p->peer_pid = p->peer_uid = p->peer_gid = -1;
    *out = p;
    return MSGPIPE_OK;
}

int msgpipe__pipe_new(int fd, const msgpipe__opts *o, msgpipe **out)
{
    int rc = msgpipe__pipe_alloc(o, out);

    if (rc != MSGPIPE_OK) {
        close(fd);
        return rc;
    }
    (*out)->fd = (*out)->wfd = fd;
    return MSGPIPE_OK;
}

/* ---- Sending ----------------------------------------------------------- */

/* The most vectors one write takes: the header and payload of
 * MSGPIPE__BATCH messages. */
#define MSGPIPE__BATCH 128
#define MSGPIPE__IOV_MAX (2 * MSGPIPE__BATCH)

/* Up to this many bytes in all, the vectors of one write are copied into
 * one buffer first: a socket then takes them with send(), which costs less
 * than a sendmsg() of two vectors by more than the copy costs (see "Small
 * and 4 KiB messages" in docs/performance.md). */
#define MSGPIPE__GATHER_MAX 2048

/* Write from iov[0..cnt) (cnt <= MSGPIPE__IOV_MAX) starting `done` bytes
 * in, once.  Returns OK with *n bytes written (0 if the descriptor is
 * full), or an error. */
static int msgpipe__write_once(msgpipe *p, const struct iovec *iov, int cnt,
                               size_t done, size_t *n, int block)
{
    struct iovec v[MSGPIPE__IOV_MAX];
    uint8_t one[MSGPIPE__GATHER_MAX];
    size_t total = 0;
    ssize_t rc;
    int i, k = 0;

    for (i = 0; i < cnt; i++) {
        if (done >= iov[i].iov_len) {
            done -= iov[i].iov_len;
            continue;
        }
        v[k].iov_base = (char *)iov[i].iov_base + done;
        v[k].iov_len = iov[i].iov_len - done;
        total += v[k].iov_len;
        done = 0;
        k++;
    }
    if (k > 1 && total <= sizeof(one)) {
        total = 0;
        for (i = 0; i < k; i++) {
            memcpy(one + total, v[i].iov_base, v[i].iov_len);
            total += v[i].iov_len;
        }
        v[0].iov_base = one;
        v[0].iov_len = total;
        k = 1;
    }
    for (;;) {
        rc = msgpipe__t_writev(p, v, k, block);
        if (rc >= 0) {
            *n = (size_t)rc;
            return MSGPIPE_OK;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            *n = 0;
            return MSGPIPE_OK;
        }
        return msgpipe__from_errno(errno);
    }
}

/* Write iov fully or until the deadline; *done counts bytes written. */
static int msgpipe__write_all(msgpipe *p, const struct iovec *iov, int cnt,
                              size_t total, size_t *done, int64_t deadline)
{
    /* No deadline on a socket: one blocking call writes it all (after the
     * spin, if any: it needs calls that do not block). */
    int block = deadline < 0 && p->can_block && !msgpipe__spins(p, deadline);
    int64_t spin = 0;
    size_t n = 0;
    int rc;

    while (*done < total) {
        rc = msgpipe__write_once(p, iov, cnt, *done, &n, block);
        if (rc != MSGPIPE_OK)
            return rc;
        if (n > 0) {
            *done += n;
            spin = 0; /* the next wait for room spins anew */
            continue;
        }
        if (msgpipe__spin_again(p, &spin, deadline))
            continue;
        if (!block && deadline < 0 && p->can_block) {
            block = 1; /* the spin is over: one blocking call */
            continue;
        }
        rc = msgpipe__wait_fd(p->wfd, POLLOUT, deadline);
        if (rc < 0)
            return rc;
        if (rc == 0)
            return MSGPIPE_ETIMEDOUT;
    }
    return MSGPIPE_OK;
}

/* Finish the committed tail of an earlier message. */
static int msgpipe__flush_tx(msgpipe *p, int64_t deadline)
{
    struct iovec v;
    size_t done = p->tx_off;
    int rc;

    if (p->tx == NULL)
        return MSGPIPE_OK;
    v.iov_base = p->tx;
    v.iov_len = p->tx_len;
    rc = msgpipe__write_all(p, &v, 1, p->tx_len, &done, deadline);
    p->tx_off = done;
    if (rc == MSGPIPE_OK) {
        msgpipe__free(p->tx);
        p->tx = NULL;
        p->tx_len = p->tx_off = 0;
    }
    return rc;
}

static int msgpipe__send_locked(msgpipe *p, const msgpipe_msg *msgs, size_t n,
                                size_t *sent, int timeout_ms);

/* End a send: release tx_lock, then tell the pipe's poller if the send
 * left the tail of a message to push out. */
static void msgpipe__tx_unlock(msgpipe *p)
{
    int tail = p->tx_new_tail;

    p->tx_new_tail = 0;
    pthread_mutex_unlock(&p->tx_lock);
    if (tail && MSGPIPE__LOAD(p->pl_owner) != NULL)
        msgpipe__pl_touch(p, 1);
}

int msgpipe__b_send_batch(msgpipe *p, const msgpipe_msg *msgs, size_t n,
                          size_t *sent, int timeout_ms)
{
    size_t i;
    int rc;

    for (i = 0; i < n; i++)
        if ((uint64_t)msgs[i].len > p->opts.max_message)
            return MSGPIPE_EMSGSIZE;
    pthread_mutex_lock(&p->tx_lock);
    rc = msgpipe__send_locked(p, msgs, n, sent, timeout_ms);
    msgpipe__tx_unlock(p);
    return rc;
}

/* One message is a batch of one. */
int msgpipe__b_send(msgpipe *p, const void *msg, size_t len, int timeout_ms)
{
    msgpipe_msg one;
    size_t sent = 0;

    one.data = msg;
    one.len = len;
    return msgpipe__b_send_batch(p, &one, 1, &sent, timeout_ms);
}

/* Keep the unwritten part of message m (header h of hlen bytes), of which
 * `off` bytes went out, to be written before anything else. */
static int msgpipe__commit_tail(msgpipe *p, const uint8_t *h, size_t hlen,
                                const msgpipe_msg *m, size_t off)
{
    size_t rest = hlen + m->len - off;

    p->tx = (uint8_t *)msgpipe__malloc(rest);
    if (p->tx == NULL) {
        /* The stream now holds half a message that can never be
         * finished: the pipe cannot be used for sending any more. */
        p->tx_err = MSGPIPE_EIO;
        return MSGPIPE_ENOMEM;
    }
    if (off < hlen) {
        memcpy(p->tx, h + off, hlen - off);
        if (m->len > 0)
            memcpy(p->tx + (hlen - off), m->data, m->len);
    } else {
        memcpy(p->tx, (const uint8_t *)m->data + (off - hlen), rest);
    }
    p->tx_len = rest;
    p->tx_off = 0;
    p->tx_new_tail = 1; /* its poller, if any, pushes the rest out */
    return MSGPIPE_OK;
}

/* Send msgs[0..n) with tx_lock held: each header and payload, for up to
 * MSGPIPE__BATCH messages, in one system call. */
static int msgpipe__send_locked(msgpipe *p, const msgpipe_msg *msgs, size_t n,
                                size_t *sent, int timeout_ms)
{
    uint8_t hdr[MSGPIPE__BATCH][MSGPIPE__FRAME_HDR_MAX];
    size_t hl[MSGPIPE__BATCH];
    struct iovec iov[MSGPIPE__IOV_MAX];
    int64_t deadline;
    int rc;

    if (p->tx_err != MSGPIPE_OK)
        return p->tx_err;
    if (timeout_ms >= 0)
        p->tx_timed = 1;
    /* A FIFO client may send before the server has accepted it (as into
     * a socket's backlog); only a refusal stops it. */
    rc = msgpipe__t_finish(p, msgpipe__deadline(0));
    if (rc != MSGPIPE_OK && rc != MSGPIPE_ETIMEDOUT) {
        if (rc == MSGPIPE_ECLOSED || rc == MSGPIPE_EPROTO)
            p->tx_err = rc;
        return rc;
    }
    deadline = msgpipe__deadline(timeout_ms);
    rc = msgpipe__flush_tx(p, deadline);
    if (rc != MSGPIPE_OK)
        goto fail;

    while (*sent < n) {
        const msgpipe_msg *m = msgs + *sent;
        size_t k = 0, j, total = 0, done = 0, acc = 0;
        int cnt = 0;

        while (k < n - *sent && k < MSGPIPE__BATCH) {
            hl[k] = msgpipe__frame_encode(hdr[k], (uint64_t)m[k].len);
            iov[cnt].iov_base = hdr[k];
            iov[cnt++].iov_len = hl[k];
            if (m[k].len > 0) {
                iov[cnt].iov_base = (void *)m[k].data;
                iov[cnt++].iov_len = m[k].len;
            }
            total += hl[k] + m[k].len;
            k++;
        }
        rc = msgpipe__write_all(p, iov, cnt, total, &done, deadline);
        if (rc == MSGPIPE_OK) {
            *sent += k;
            continue;
        }
        /* Whatever stopped the write, the messages that went out whole
         * are sent: the peer may have received them. */
        for (j = 0; j < k && acc + hl[j] + m[j].len <= done; j++)
            acc += hl[j] + m[j].len;
        *sent += j;
        if (rc != MSGPIPE_ETIMEDOUT) {
            /* A failure (not the peer's end) in the middle of a message
             * leaves half of it in the stream: nothing may follow it. */
            if (acc < done && rc != MSGPIPE_ECLOSED)
                p->tx_err = MSGPIPE_EIO;
            goto fail;
        }
        if (done == 0)
            return MSGPIPE_ETIMEDOUT;
        /* Time ran out with part of the batch in the stream: one message
         * cut in the middle is committed (a stream cannot take back half a
         * message) and its rest kept. */
        if (acc < done) {
            rc = msgpipe__commit_tail(p, hdr[j], hl[j], &m[j], done - acc);
            if (rc != MSGPIPE_OK)
                return rc;
            (*sent)++;
        }
        return *sent == n ? MSGPIPE_OK : MSGPIPE_ETIMEDOUT;
    }
    return MSGPIPE_OK;
fail:
    if (rc == MSGPIPE_ECLOSED)
        p->tx_err = MSGPIPE_ECLOSED;
    return rc;
}

/* ---- Handles ------------------------------------------------------------
 *
 * Descriptors travel as SCM_RIGHTS on the sendmsg() that carries the first
 * byte of their message (its header), and that sendmsg() carries nothing
 * of any other message.  A Unix stream socket never returns bytes from
 * past the end of the write that carried descriptors in the same read as
 * those descriptors, and the read that returns them includes at least one
 * byte of that write.  So the descriptors belong to the message that holds
 * the last byte of the read that brought them: the receiver counts the
 * bytes it reads (rx_total), notes where each set of descriptors came
 * (its end offset), and hands a set to the message whose range
 * (msg_start, msg_end] holds that offset.  A set that ends before the
 * message being delivered belonged to a message that was discarded, and is
 * closed. */

struct msgpipe__fdset {
    uint64_t end; /* stream offset just past the read that brought them */
    int trunc;    /* the system dropped some (MSG_CTRUNC) */
    size_t n;
    int fd[MSGPIPE_MAX_HANDLES];
};

void msgpipe__rx_got_fds(msgpipe *p, size_t nread, const int *fds, size_t n,
                         int trunc)
{
    uint64_t end = p->rx_total + (uint64_t)nread;
    struct msgpipe__fdset *set;
    size_t i;

    if (p->rx_nfds == p->rx_fds_cap) {
        size_t cap = p->rx_fds_cap == 0 ? 4 : p->rx_fds_cap * 2;
        struct msgpipe__fdset *nb = (struct msgpipe__fdset *)msgpipe__realloc(
            p->rx_fds, cap * sizeof(*nb));
        if (nb == NULL) {
            /* Nowhere to keep them: close them, and let their message
             * say that its handles were closed. */
            for (i = 0; i < n; i++)
                close(fds[i]);
            p->rx_lost_end = end;
            return;
        }
        p->rx_fds = nb;
        p->rx_fds_cap = cap;
    }
    set = &p->rx_fds[p->rx_nfds++];
    set->end = end;
    set->trunc = trunc;
    set->n = n > MSGPIPE_MAX_HANDLES ? MSGPIPE_MAX_HANDLES : n;
    for (i = 0; i < n; i++) {
        if (i < set->n) {
            set->fd[i] = fds[i];
        } else {
            close(fds[i]);
            set->trunc = 1;
        }
    }
}

/* Close every set that ends at or before `upto` (their messages are
 * gone). */
static void msgpipe__rx_drop_fds(msgpipe *p, uint64_t upto)
{
    size_t k = 0, i;

    while (k < p->rx_nfds && p->rx_fds[k].end <= upto) {
        for (i = 0; i < p->rx_fds[k].n; i++)
            close(p->rx_fds[k].fd[i]);
        k++;
    }
    if (k > 0) {
        memmove(p->rx_fds, p->rx_fds + k,
                (p->rx_nfds - k) * sizeof(*p->rx_fds));
        p->rx_nfds -= k;
    }
}

/* The message (msg_start, msg_end] was just received: hand its
 * descriptors to h[0..hcap) (*nh of them), close the rest and those of
 * messages before it.  OK, or EHANDLES if any of its own were closed. */
static int msgpipe__rx_take_fds(msgpipe *p, msgpipe_native *h, size_t hcap,
                                size_t *nh)
{
    int lost = 0;
    size_t k = 0, i;

    *nh = 0;
    if (p->rx_lost_end > p->msg_start && p->rx_lost_end <= p->msg_end) {
        lost = 1;
        p->rx_lost_end = 0;
    }
    if (p->rx_nfds == 0)
        return lost ? MSGPIPE_EHANDLES : MSGPIPE_OK;
    msgpipe__rx_drop_fds(p, p->msg_start);
    while (k < p->rx_nfds && p->rx_fds[k].end <= p->msg_end) {
        struct msgpipe__fdset *set = &p->rx_fds[k];
        for (i = 0; i < set->n; i++) {
            if (*nh < hcap) {
                h[(*nh)++] = set->fd[i];
            } else {
                close(set->fd[i]);
                lost = 1;
            }
        }
        lost |= set->trunc;
        k++;
    }
    if (k > 0) {
        memmove(p->rx_fds, p->rx_fds + k,
                (p->rx_nfds - k) * sizeof(*p->rx_fds));
        p->rx_nfds -= k;
    }
    return lost ? MSGPIPE_EHANDLES : MSGPIPE_OK;
}

/* Send one message with descriptors, tx_lock held: the first write that
 * moves any byte carries them (see above); the rest of the message goes
 * as any message's does, committed once started. */
static int msgpipe__send_fds_locked(msgpipe *p, const msgpipe_msg *m,
                                    const int *fds, size_t nfds, int timeout_ms)
{
    uint8_t hdr[MSGPIPE__FRAME_HDR_MAX];
    struct iovec iov[2];
    size_t hl, total, done = 0;
    int64_t deadline, spin = 0;
    int rc, cnt = 1, block, w;
    ssize_t n;

    if (p->tx_err != MSGPIPE_OK)
        return p->tx_err;
    if (timeout_ms >= 0)
        p->tx_timed = 1;
    deadline = msgpipe__deadline(timeout_ms);
    /* An earlier message's tail must be out first: the descriptors go
     * with this message's first byte. */
    rc = msgpipe__flush_tx(p, deadline);
    if (rc != MSGPIPE_OK)
        goto fail;
    hl = msgpipe__frame_encode(hdr, (uint64_t)m->len);
    iov[0].iov_base = hdr;
    iov[0].iov_len = hl;
    if (m->len > 0) {
        iov[1].iov_base = (void *)m->data;
        iov[1].iov_len = m->len;
        cnt = 2;
    }
    total = hl + m->len;
    block = deadline < 0 && p->can_block && !msgpipe__spins(p, deadline);
    for (;;) {
        n = msgpipe__t_sendfds(p, iov, cnt, fds, nfds, block);
        if (n > 0)
            break;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            rc = errno == EBADF ? MSGPIPE_EINVAL : msgpipe__from_errno(errno);
            goto fail;
        }
        if (msgpipe__spin_again(p, &spin, deadline))
            continue;
        if (!block && deadline < 0 && p->can_block) {
            block = 1; /* the spin is over: one blocking call */
            continue;
        }
        w = msgpipe__wait_fd(p->wfd, POLLOUT, deadline);
        if (w < 0)
            return w;
        if (w == 0)
            return MSGPIPE_ETIMEDOUT; /* nothing went out */
    }
    done = (size_t)n;
    rc = msgpipe__write_all(p, iov, cnt, total, &done, deadline);
    if (rc == MSGPIPE_OK)
        return MSGPIPE_OK;
    if (rc == MSGPIPE_ETIMEDOUT) /* started: committed, the rest kept */
        return msgpipe__commit_tail(p, hdr, hl, m, done);
    if (rc != MSGPIPE_ECLOSED)
        p->tx_err = MSGPIPE_EIO; /* half a message is in the stream */
fail:
    if (rc == MSGPIPE_ECLOSED)
        p->tx_err = MSGPIPE_ECLOSED;
    return rc;
}

int msgpipe__b_send_handles(msgpipe *p, const void *msg, size_t len,
                            const msgpipe_native *h, size_t nh, int timeout_ms)
{
    msgpipe_msg m;
    size_t i;
    int rc;

    if (!msgpipe__t_handles || p->tcp)
        return MSGPIPE_ENOTSUP; /* FIFOs and TCP carry no descriptors */
    if ((uint64_t)len > p->opts.max_message)
        return MSGPIPE_EMSGSIZE;
    for (i = 0; i < nh; i++)
        if (h[i] < 0 || fcntl(h[i], F_GETFD) < 0)
            return MSGPIPE_EINVAL;
    m.data = msg;
    m.len = len;
    pthread_mutex_lock(&p->tx_lock);
    rc = msgpipe__send_fds_locked(p, &m, h, nh, timeout_ms);
    msgpipe__tx_unlock(p);
    return rc;
}

/* ---- Receiving --------------------------------------------------------- */

/* Push out what fits of a committed message's tail, without waiting.
 * Returns 1 if some of it is still unsent.  Called with tx_lock held. */
static int msgpipe__push_tail(msgpipe *p)
{
    int rc;

    if (p->tx == NULL || p->tx_err != MSGPIPE_OK)
        return 0;
    rc = msgpipe__flush_tx(p, msgpipe__deadline(0));
    if (rc == MSGPIPE_ETIMEDOUT)
        return 1;
    if (rc != MSGPIPE_OK) /* the next send reports it */
        p->tx_err = rc == MSGPIPE_ECLOSED ? MSGPIPE_ECLOSED : MSGPIPE_EIO;
    return 0;
}

int msgpipe__tx_push(msgpipe *p)
{
    int tail = 0;

    /* Only try the lock: a running send finishes the tail itself, and a
     * receiver must never wait behind a sender. */
    if (pthread_mutex_trylock(&p->tx_lock) == 0) {
        tail = msgpipe__push_tail(p);
        pthread_mutex_unlock(&p->tx_lock);
    }
    return tail;
}

int msgpipe__tx_pending(msgpipe *p)
{
    int pending = 0;

    /* A send running now finishes its message, or leaves a tail and then
     * says so (msgpipe__tx_unlock). */
    if (pthread_mutex_trylock(&p->tx_lock) == 0) {
        pending = p->tx != NULL && p->tx_err == MSGPIPE_OK;
        pthread_mutex_unlock(&p->tx_lock);
    }
    return pending;
}

/* Wait for input until the deadline: 1 ready, 0 timed out, or an error.
 *
 * While it waits, it also finishes the tail of a message that a timed-out
 * send committed (see msgpipe__b_send), if no send is running: a program
 * that sends a request and then waits for the answer must not wait for
 * ever on a request that is stuck half-way inside its own pipe. */
static int msgpipe__wait_rx(msgpipe *p, int64_t deadline)
{
    struct pollfd pf[2];
    int tail, rc, n;

    for (;;) {
        tail = msgpipe__tx_push(p);
        pf[0].fd = p->fd;
        pf[0].events = POLLIN;
        pf[0].revents = 0;
        n = 1;
        if (tail && p->wfd == p->fd) {
            pf[0].events |= POLLOUT;
        } else if (tail) {
            pf[1].fd = p->wfd;
            pf[1].events = POLLOUT;
            pf[1].revents = 0;
            n = 2;
        }
        rc = msgpipe__sys.poll(pf, (nfds_t)n, msgpipe__remaining(deadline));
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            return msgpipe__from_errno(errno);
        }
        if (rc == 0)
            return 0;
        if (pf[0].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))
            return 1;
        /* Only room to write: push more of the tail, then wait again. */
    }
}

/* May a receive without a deadline wait in one blocking call?  Only on a
 * socket, and only while it need not finish a half-sent message meanwhile:
 * no tail is pending, and no send on this pipe ever had a finite timeout
 * (only those leave tails).  A send running right now makes the answer no.
 * The rule costs one uncontended lock and saves a poll() per receive. */
static int msgpipe__rx_may_block(msgpipe *p)
{
    int ok = 0;

    if (pthread_mutex_trylock(&p->tx_lock) == 0) {
        ok = p->tx == NULL && !p->tx_timed;
        pthread_mutex_unlock(&p->tx_lock);
    }
    return ok;
}

/* Read once into iov[0..cnt) (want bytes in all), waiting until the
 * deadline.  Returns OK with *n > 0, ETIMEDOUT, ECLOSED at end of pipe, or
 * an error. */
static int msgpipe__read_some(msgpipe *p, const struct iovec *iov, int cnt,
                              size_t want, size_t *n, int64_t deadline)
{
    ssize_t rc;
    int w, block = 0, spins = msgpipe__spins(p, deadline);
    int64_t spin = 0;

    /* (A spin looks without blocking first: see "Spinning".) */
    if (deadline < 0 && p->can_block && !spins)
        block = msgpipe__rx_may_block(p);
    /* A poller's "drain, then wait again": the read that emptied the pipe
     * came up short just now, and the receive that follows it with timeout
     * 0 would only say EAGAIN.  Say it without the read, once: whatever
     * arrives meanwhile makes the descriptor readable, and the poller's
     * next wait (level-triggered) reports it at once.  (Only in a poller:
     * a program that looks with timeout 0 now and then would otherwise
     * see a message one look late.) */
    if (!block && p->rx_may_skip && msgpipe__remaining(deadline) == 0 &&
        MSGPIPE__LOAD(p->pl_owner) != NULL) {
        p->rx_may_skip = 0;
        (void)msgpipe__tx_push(p);
        return MSGPIPE_ETIMEDOUT;
    }
    /* When the last read found nothing, this one most likely will too
     * (a request/answer exchange): wait first, and save the read that
     * would only say EAGAIN.  (Not with timeout 0: that read is the
     * cheapest way to look; not when one blocking read does both; not
     * when a spin looks first.) */
    if (!block && !spins && p->rx_wait_first &&
        msgpipe__remaining(deadline) != 0) {
        w = msgpipe__wait_rx(p, deadline);
        if (w < 0)
            return w;
        if (w == 0)
            return MSGPIPE_ETIMEDOUT;
    }
    for (;;) {
        rc = msgpipe__t_readv(p, iov, cnt, block);
        if (rc > 0) {
            p->rx_total += (uint64_t)rc;
            /* Everything asked for means more is probably waiting: read
             * first next time; otherwise the sender is the slower side. */
            p->rx_wait_first = (size_t)rc < want;
            p->rx_may_skip = p->rx_wait_first;
            *n = (size_t)rc;
            return MSGPIPE_OK;
        }
        if (rc == 0) {
            p->rx_err = MSGPIPE_ECLOSED;
            return MSGPIPE_ECLOSED;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            rc = msgpipe__from_errno(errno);
            if (rc == MSGPIPE_ECLOSED)
                p->rx_err = MSGPIPE_ECLOSED;
            return (int)rc;
        }
        p->rx_may_skip = 0;
        if (msgpipe__remaining(deadline) == 0) {
            /* Timeout 0: the read was the look; a poll() with timeout 0
             * after it would only ask again. */
            (void)msgpipe__tx_push(p);
            return MSGPIPE_ETIMEDOUT;
        }
        if (spin == 0 && spins)
            (void)msgpipe__tx_push(p); /* as the wait would, at once */
        if (msgpipe__spin_again(p, &spin, deadline))
            continue;
        if (spins && deadline < 0 && p->can_block && msgpipe__rx_may_block(p)) {
            block = 1; /* the spin is over: one blocking read */
            continue;
        }
        w = msgpipe__wait_rx(p, deadline);
        if (w < 0)
            return w;
        if (w == 0)
            return MSGPIPE_ETIMEDOUT;
    }
}

/* Read into dst (up to cap bytes). */
static int msgpipe__read_into(msgpipe *p, void *dst, size_t cap, size_t *n,
                              int64_t deadline)
{
    struct iovec v;

    v.iov_base = dst;
    v.iov_len = cap;
    return msgpipe__read_some(p, &v, 1, cap, n, deadline);
}

/* Read the rest of a payload straight into dst (rest bytes), and the
 * header of a message that follows it, if there, into the (empty) receive
 * buffer, in one call.  Only a header: the payload behind it is large more
 * often than not (the same size as this one), and then goes straight into
 * the caller's buffer too instead of 16 KiB of it through the receive
 * buffer (see "Large messages" in docs/performance.md). */
static int msgpipe__read_rest(msgpipe *p, uint8_t *dst, size_t rest, size_t *n,
                              int64_t deadline)
{
    struct iovec v[2];
    size_t got = 0;
    int rc;

    p->rpos = p->rend = 0;
    v[0].iov_base = dst;
    v[0].iov_len = rest;
    v[1].iov_base = p->rbuf;
    v[1].iov_len = MSGPIPE__FRAME_HDR_MAX;
    rc = msgpipe__read_some(p, v, 2, rest + MSGPIPE__FRAME_HDR_MAX, &got,
                            deadline);
    if (rc != MSGPIPE_OK)
        return rc;
    if (got > rest) {
        p->rend = got - rest;
        got = rest;
    }
    *n = got;
    return MSGPIPE_OK;
}

/* Read more bytes into the receive buffer, after what is unread. */
static int msgpipe__fill(msgpipe *p, int64_t deadline)
{
    size_t n = 0;
    int rc;

    if (p->rpos == p->rend) {
        p->rpos = p->rend = 0;
        if (p->rcap > MSGPIPE__RBUF_SIZE) {
            /* Grown by msgpipe__read_direct, and empty again. */
            uint8_t *nb =
                (uint8_t *)msgpipe__realloc(p->rbuf, MSGPIPE__RBUF_SIZE);
            if (nb != NULL) {
                p->rbuf = nb;
                p->rcap = MSGPIPE__RBUF_SIZE;
            }
        }
    } else if (p->rpos > 0) {
        memmove(p->rbuf, p->rbuf + p->rpos, p->rend - p->rpos);
        p->rend -= p->rpos;
        p->rpos = 0;
    }
    rc = msgpipe__read_into(p, p->rbuf + p->rend, p->rcap - p->rend, &n,
                            deadline);
    if (rc == MSGPIPE_OK)
        p->rend += n;
    return rc;
}

/* The largest message this pipe will take: max_message, and never more
 * than fits in a size_t with the hidden zero byte of msgpipe_recv_alloc. */
static uint64_t msgpipe__rx_limit(const msgpipe *p)
{
    uint64_t lim = p->opts.max_message;

    if ((uint64_t)SIZE_MAX - 1 < lim)
        lim = (uint64_t)SIZE_MAX - 1;
    return lim;
}

static size_t msgpipe__clamp_size(uint64_t v)
{
    return v > (uint64_t)SIZE_MAX ? SIZE_MAX : (size_t)v;
}

/* Make sure the next message's header has been decoded (p->have_len),
 * discarding what is left of an oversized message first.  An oversized
 * message returns EMSGSIZE at once with *announced set; its bytes are
 * skipped by later calls as they arrive. */
static int msgpipe__next_header(msgpipe *p, int64_t deadline,
                                uint64_t *announced)
{
    uint64_t len;
    size_t hlen, avail;
    int rc;

    if (p->have_len)
        return MSGPIPE_OK;
    if (p->rbuf == NULL) {
        p->rbuf = (uint8_t *)msgpipe__malloc(MSGPIPE__RBUF_SIZE);
        if (p->rbuf == NULL)
            return MSGPIPE_ENOMEM;
        p->rcap = MSGPIPE__RBUF_SIZE;
    }
    for (;;) {
        avail = p->rend - p->rpos;
        if (p->skip > 0) {
            if (avail > 0) {
                size_t n = avail < p->skip ? avail : (size_t)p->skip;
                p->rpos += n;
                p->skip -= n;
                if (p->skip == 0) /* its handles go with it */
                    msgpipe__rx_drop_fds(p, p->msg_end);
                continue;
            }
            p->rpos = p->rend = 0;
            rc = msgpipe__fill(p, deadline);
            if (rc != MSGPIPE_OK)
                return rc;
            continue;
        }
        rc = msgpipe__frame_decode(p->rbuf + p->rpos, avail, &len, &hlen);
        if (rc < 0) {
            p->rx_err = rc; /* the stream can never be resynchronised */
            return rc;
        }
        if (rc == 0) {
            if (p->rx_err != MSGPIPE_OK)
                return p->rx_err;
            rc = msgpipe__fill(p, deadline);
            if (rc != MSGPIPE_OK)
                return rc;
            continue;
        }
        p->msg_start = p->rx_total - (uint64_t)avail;
        p->msg_end = p->msg_start + hlen + len;
        p->rpos += hlen;
        if (len > msgpipe__rx_limit(p)) {
            p->skip = len;
            *announced = len;
            return MSGPIPE_EMSGSIZE;
        }
        p->have_len = 1;
        p->msg_len = len;
        return MSGPIPE_OK;
    }
}

/* May the next message be read straight into the caller's buffer of cap
 * bytes?  When the last one was at least MSGPIPE__DIRECT_MIN bytes, fits,
 * and nothing of the next one has been read yet. */
static int msgpipe__direct_ok(const msgpipe *p, size_t cap)
{
    return p->rx_big > 0 && p->rx_big <= cap && p->rbuf != NULL &&
           !p->have_len && p->skip == 0 && p->rpos == p->rend &&
           p->hold_len == 0 && p->rx_err == MSGPIPE_OK;
}

/* The first read of a message that is probably as large as the last one
 * (p->rx_big bytes): its 4-byte header into the receive buffer, its
 * payload straight into dst, and the header of whatever follows into the
 * receive buffer after the first, all in one call - as a raw read of the
 * payload would be, instead of 16 KiB into the receive buffer, a copy, and
 * (from 16 KiB on) a second read for the rest.
 *
 * OK with the header decoded (p->have_len) and *got bytes of its payload
 * in dst, when the guess held: a 4-byte header of a message that fits dst
 * and the limit, and no byte past its end in dst.  Otherwise OK with
 * have_len 0 and every byte read put back in order into the receive
 * buffer (grown if need be, until it is empty again: see msgpipe__fill),
 * where the usual path finds them - a message that does not fit, an
 * oversized or smaller one with more behind it, a long header.  ENOMEM if
 * they cannot be kept (the pipe's receive side is then EIO: the bytes are
 * gone), or an error of the read. */
static int msgpipe__read_direct(msgpipe *p, uint8_t *dst, size_t cap,
                                size_t *got, int64_t deadline)
{
    size_t seg = p->rx_big, n = 0, h, a, b, t, hlen;
    struct iovec v[3];
    uint64_t len;
    int rc;

    *got = 0;
    p->rpos = p->rend = 0;
    v[0].iov_base = p->rbuf;
    v[0].iov_len = 4;
    v[1].iov_base = dst;
    v[1].iov_len = seg;
    v[2].iov_base = p->rbuf + 4;
    v[2].iov_len = MSGPIPE__FRAME_HDR_MAX;
    rc = msgpipe__read_some(p, v, 3, 4 + seg + MSGPIPE__FRAME_HDR_MAX, &n,
                            deadline);
    if (rc != MSGPIPE_OK)
        return rc;
    h = n < 4 ? n : 4;
    a = n - h < seg ? n - h : seg;
    b = n - h - a; /* > 0 only when the first two are full */
    if (h == 4 && msgpipe__frame_decode(p->rbuf, 4, &len, &hlen) == 1 &&
        len <= msgpipe__rx_limit(p) && len <= cap && len >= a) {
        t = (uint64_t)b < len - a ? b : (size_t)(len - a);
        memcpy(dst + a, p->rbuf + 4, t);
        p->rpos = 4 + t;
        p->rend = 4 + b;
        if (p->rpos == p->rend)
            p->rpos = p->rend = 0;
        p->msg_start = p->rx_total - (uint64_t)n;
        p->msg_end = p->msg_start + 4 + len;
        p->have_len = 1;
        p->msg_len = len;
        *got = a + t;
        return MSGPIPE_OK;
    }
    if (n > p->rcap) {
        uint8_t *nb = (uint8_t *)msgpipe__realloc(p->rbuf, n);
        if (nb == NULL) {
            p->rx_err = MSGPIPE_EIO; /* those bytes cannot be kept */
            return MSGPIPE_ENOMEM;
        }
        p->rbuf = nb;
        p->rcap = n;
    }
    memmove(p->rbuf + h + a, p->rbuf + h, b);
    memcpy(p->rbuf + h, dst, a);
    p->rend = n;
    return MSGPIPE_OK;
}

/* Grow p->hold to at least `need` bytes, doubling but never past `limit`. */
static int msgpipe__hold_reserve(msgpipe *p, size_t need, size_t limit)
{
    size_t cap;
    uint8_t *nb;

    if (p->hold_cap >= need)
        return MSGPIPE_OK;
    cap = p->hold_cap < 4096 ? 4096 : p->hold_cap;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
    if (cap > limit)
        cap = limit;
    if (cap < need)
        cap = need;
    nb = (uint8_t *)msgpipe__realloc(p->hold, cap);
    if (nb == NULL)
        return MSGPIPE_ENOMEM;
    p->hold = nb;
    p->hold_cap = cap;
    return MSGPIPE_OK;
}

static void msgpipe__hold_release(msgpipe *p)
{
    p->hold_len = 0;
    if (p->hold_cap > MSGPIPE__HOLD_KEEP) {
        msgpipe__free(p->hold);
        p->hold = NULL;
        p->hold_cap = 0;
    }
}

/* Receive the payload (p->msg_len bytes) into dst, of which the first
 * `got` bytes are there already (msgpipe__read_direct). */
static int msgpipe__payload_into(msgpipe *p, uint8_t *dst, size_t got,
                                 int64_t deadline)
{
    size_t need = (size_t)p->msg_len, avail, n = 0;
    int rc = MSGPIPE_OK;

    if (p->hold_len > 0) {
        memcpy(dst, p->hold, p->hold_len);
        got = p->hold_len;
        p->hold_len = 0;
    }
    while (got < need) {
        avail = p->rend - p->rpos;
        if (avail > 0) {
            n = avail < need - got ? avail : need - got;
            memcpy(dst + got, p->rbuf + p->rpos, n);
            p->rpos += n;
            got += n;
            continue;
        }
        if (need - got >= MSGPIPE__RBUF_SIZE) {
            rc = msgpipe__read_rest(p, dst + got, need - got, &n, deadline);
            if (rc == MSGPIPE_OK)
                got += n;
        } else {
            rc = msgpipe__fill(p, deadline);
        }
        if (rc != MSGPIPE_OK)
            break;
    }
    if (rc == MSGPIPE_OK) {
        p->have_len = 0;
        msgpipe__hold_release(p);
        p->rx_big = need >= MSGPIPE__DIRECT_MIN && need < 0x7fffffff ? need : 0;
        return MSGPIPE_OK;
    }
    if (rc == MSGPIPE_ECLOSED) {
        /* The peer ended in the middle of this message: drop the part,
         * and the handles that came with it (nothing follows). */
        p->have_len = 0;
        msgpipe__rx_drop_fds(p, UINT64_MAX);
        return rc;
    }
    if (rc == MSGPIPE_ETIMEDOUT && got > 0) {
        /* Keep what arrived, so that the retry loses nothing. */
        if (msgpipe__hold_reserve(p, got, need) != MSGPIPE_OK) {
            p->rx_err = MSGPIPE_EIO; /* those bytes cannot be kept */
            return MSGPIPE_ENOMEM;
        }
        memcpy(p->hold, dst, got);
        p->hold_len = got;
    }
    return rc;
}

/* Receive the payload into p->hold, growing it as bytes arrive. */
static int msgpipe__payload_hold(msgpipe *p, int64_t deadline)
{
    size_t need = (size_t)p->msg_len, avail, n = 0, room;
    int rc;

    while (p->hold_len < need) {
        avail = p->rend - p->rpos;
        if (avail > 0) {
            n = avail < need - p->hold_len ? avail : need - p->hold_len;
            rc = msgpipe__hold_reserve(p, p->hold_len + n, need + 1);
            if (rc != MSGPIPE_OK)
                return rc;
            memcpy(p->hold + p->hold_len, p->rbuf + p->rpos, n);
            p->rpos += n;
            p->hold_len += n;
            continue;
        }
        if (need - p->hold_len >= MSGPIPE__RBUF_SIZE) {
            rc = msgpipe__hold_reserve(p, p->hold_len + MSGPIPE__RBUF_SIZE,
                                       need + 1);
            if (rc != MSGPIPE_OK)
                return rc;
            room = p->hold_cap - p->hold_len;
            if (room > need - p->hold_len)
                room = need - p->hold_len;
            rc = msgpipe__read_into(p, p->hold + p->hold_len, room, &n,
                                    deadline);
            if (rc == MSGPIPE_OK)
                p->hold_len += n;
        } else {
            rc = msgpipe__fill(p, deadline);
        }
        if (rc == MSGPIPE_ECLOSED) {
            /* The peer ended in the middle of this message. */
            p->have_len = 0;
            p->hold_len = 0;
            msgpipe__rx_drop_fds(p, UINT64_MAX);
        }
        if (rc != MSGPIPE_OK)
            return rc;
    }
    return msgpipe__hold_reserve(p, need + 1, need + 1);
}

/* What both receives do first: report a sticky error, finish connecting,
 * report an oversized message (*len: its announced size), and decode the
 * next header (OK: p->msg_len bytes follow).  With dst (cap bytes), the
 * message may be read straight into it: *got bytes of the payload are
 * there then. */
static int msgpipe__recv_header(msgpipe *p, uint8_t *dst, size_t cap,
                                size_t *got, size_t *len, int64_t deadline)
{
    uint64_t announced = 0;
    int rc;

    if (p->rx_err == MSGPIPE_EPROTO || p->rx_err == MSGPIPE_EIO)
        return p->rx_err;
    rc = msgpipe__t_finish(p, deadline);
    if (rc != MSGPIPE_OK) {
        if (rc == MSGPIPE_ECLOSED || rc == MSGPIPE_EPROTO)
            p->rx_err = rc;
        return rc;
    }
    if (p->emsg_pending) {
        /* msgpipe_poll met this oversized message's header. */
        p->emsg_pending = 0;
        *len = msgpipe__clamp_size(p->emsg_len);
        return MSGPIPE_EMSGSIZE;
    }
    if (dst != NULL && msgpipe__direct_ok(p, cap)) {
        rc = msgpipe__read_direct(p, dst, cap, got, deadline);
        if (rc != MSGPIPE_OK)
            return rc;
    }
    rc = msgpipe__next_header(p, deadline, &announced);
    if (rc == MSGPIPE_EMSGSIZE)
        *len = msgpipe__clamp_size(announced);
    if (rc != MSGPIPE_OK)
        return rc;
    return MSGPIPE_OK;
}

/* After a receive on a pipe in a poller: if it left something ready that
 * the system no longer shows (messages in the buffer), the poller must
 * look at the pipe on its next wait. */
static int msgpipe__rx_after(msgpipe *p, int rc)
{
    if (MSGPIPE__LOAD(p->pl_owner) != NULL && msgpipe__rx_ready(p))
        msgpipe__pl_touch(p, 0);
    return rc;
}

static int msgpipe__recv_handles_in(msgpipe *p, void *buf, size_t cap,
                                    size_t *len, msgpipe_native *h, size_t hcap,
                                    size_t *nh, int timeout_ms)
{
    int64_t deadline = msgpipe__deadline(timeout_ms);
    size_t got = 0;
    int rc;

    rc = msgpipe__recv_header(p, (uint8_t *)buf, cap, &got, len, deadline);
    if (rc != MSGPIPE_OK)
        return rc;
    if (p->msg_len > cap) {
        *len = (size_t)p->msg_len;
        return MSGPIPE_ENOBUFS;
    }
    rc = msgpipe__payload_into(p, (uint8_t *)buf, got, deadline);
    if (rc != MSGPIPE_OK)
        return rc;
    *len = (size_t)p->msg_len;
    return msgpipe__rx_take_fds(p, h, hcap, nh);
}

int msgpipe__b_recv_handles(msgpipe *p, void *buf, size_t cap, size_t *len,
                            msgpipe_native *h, size_t hcap, size_t *nh,
                            int timeout_ms)
{
    return msgpipe__rx_after(
        p, msgpipe__recv_handles_in(p, buf, cap, len, h, hcap, nh, timeout_ms));
}

int msgpipe__b_recv(msgpipe *p, void *buf, size_t cap, size_t *len,
                    int timeout_ms)
{
    size_t nh = 0;

    return msgpipe__b_recv_handles(p, buf, cap, len, NULL, 0, &nh, timeout_ms);
}

static int msgpipe__recv_alloc_in(msgpipe *p, void **msg, size_t *len,
                                  int timeout_ms)
{
    int64_t deadline = msgpipe__deadline(timeout_ms);
    size_t n = 0, nh = 0;
    int rc;

    rc = msgpipe__recv_header(p, NULL, 0, &n, len, deadline);
    if (rc != MSGPIPE_OK)
        return rc;
    rc = msgpipe__payload_hold(p, deadline);
    if (rc != MSGPIPE_OK)
        return rc;
    /* Hand the assembled buffer over; it is exactly msg_len + 1 bytes or a
     * little more, and the byte after the message is zero. */
    n = (size_t)p->msg_len;
    p->hold[n] = 0;
    *msg = p->hold;
    *len = n;
    p->hold = NULL;
    p->hold_len = p->hold_cap = 0;
    p->have_len = 0;
    return msgpipe__rx_take_fds(p, NULL, 0, &nh);
}

int msgpipe__b_recv_alloc(msgpipe *p, void **msg, size_t *len, int timeout_ms)
{
    return msgpipe__rx_after(p,
                             msgpipe__recv_alloc_in(p, msg, len, timeout_ms));
}

/* ---- Readiness (msgpipe_poll) ----------------------------------------- */

int msgpipe__rx_ready(msgpipe *p)
{
    uint64_t len;
    size_t avail, hlen, off = 0;
    int rc;

    /* (A FIFO client not accepted yet holds nothing: 0 below, and
     * msgpipe__rx_pump finishes connecting once its descriptor is
     * readable.) */
    if (p->rx_err != MSGPIPE_OK || p->emsg_pending)
        return 1;
    avail = p->rbuf != NULL ? p->rend - p->rpos : 0;
    if (p->have_len)
        return (uint64_t)p->hold_len + avail >= p->msg_len;
    if (p->skip > 0) {
        if (p->skip >= avail)
            return 0;
        off = (size_t)p->skip;
    }
    if (avail - off == 0)
        return 0;
    rc = msgpipe__frame_decode(p->rbuf + p->rpos + off, avail - off, &len,
                               &hlen);
    if (rc != 1)
        return rc < 0; /* a broken header is reported at once */
    if (len > msgpipe__rx_limit(p))
        return 1; /* EMSGSIZE at once */
    return avail - off - hlen >= len;
}

int msgpipe__rx_pump(msgpipe *p)
{
    int64_t now = msgpipe__deadline(0); /* never wait */
    uint64_t announced = 0;
    int rc;

    rc = msgpipe__t_finish(p, now);
    if (rc == MSGPIPE_ETIMEDOUT)
        return 0;
    if (rc != MSGPIPE_OK) {
        if (rc == MSGPIPE_ECLOSED || rc == MSGPIPE_EPROTO)
            p->rx_err = rc;
        return 1; /* refused: a receive reports it at once */
    }
    if (msgpipe__rx_ready(p))
        return 1;
    /* The system says the descriptor is readable: read, never skip. */
    p->rx_may_skip = 0;
    /* Deadline "now": take what the descriptor has, never wait. */
    rc = msgpipe__next_header(p, now, &announced);
    if (rc == MSGPIPE_EMSGSIZE) {
        p->emsg_pending = 1;
        p->emsg_len = announced;
        return 1;
    }
    if (rc == MSGPIPE_ETIMEDOUT)
        return msgpipe__rx_ready(p);
    if (rc != MSGPIPE_OK)
        return 1; /* end of pipe or an error: a receive returns it */
    if (msgpipe__rx_ready(p))
        return 1;
    /* A payload that has not all arrived: gather what there is in hold,
     * where the next receive finds it. */
    rc = msgpipe__payload_hold(p, now);
    return rc != MSGPIPE_ETIMEDOUT;
}

int msgpipe__b_native_handle(msgpipe *p, unsigned events, msgpipe_native *out)
{
    *out = events == MSGPIPE_POLLOUT ? p->wfd : p->fd;
    return MSGPIPE_OK;
}

/* ---- Closing ----------------------------------------------------------- */

void msgpipe__b_close(msgpipe *p)
{
    int64_t linger = msgpipe__deadline(p->opts.linger_ms);

    if (MSGPIPE__LOAD(p->pl_owner) != NULL)
        msgpipe__pl_forget_pipe(p);

    /* A message that a timed-out send committed is finished first, for at
     * most linger_ms, so that the peer gets every message whose send
     * returned OK (so does a FIFO client not yet accepted: see
     * msgpipe__t_release).  Everything else is already in the kernel, which
     * delivers it after close(): a Unix stream socket has no send queue of
     * its own, the bytes sit in the peer's receive queue. */
    p->opts.spin_us = 0; /* close waits for the tail; it does not spin */
    if (p->tx != NULL && p->tx_err == MSGPIPE_OK)
        (void)msgpipe__flush_tx(p, linger);
    msgpipe__t_release(p, linger);
    pthread_mutex_destroy(&p->tx_lock);
    pthread_mutex_destroy(&p->conn_lock);
    if (p->wfd != p->fd && p->wfd >= 0)
        close(p->wfd);
    if (p->fd >= 0)
        close(p->fd);
    msgpipe__rx_drop_fds(p, UINT64_MAX);
    msgpipe__free(p->rx_fds);
    msgpipe__free(p->tx);
    msgpipe__free(p->hold);
    msgpipe__free(p->rbuf);
    msgpipe__free(p);
}
