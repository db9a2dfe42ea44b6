/*
 * posix_poll.c - msgpipe_poll for the POSIX backend: one poll() over every
 * item's descriptors.  poll(), never select(): no FD_SETSIZE limit, so any
 * number of pipes (beyond 1,024) works.
 *
 * Readiness is exact.  A pipe may hold whole messages that it has already
 * read from its descriptor (the receive buffer takes many small messages
 * per read), and then the descriptor is not readable although a message is
 * waiting: those pipes are reported at once, from their buffers.  The
 * other way round, a readable descriptor may carry only part of a message:
 * its bytes are taken into the pipe (msgpipe__rx_pump) and the pipe is
 * reported only when a receive would return at once.  So every pipe
 * reported readable delivers with msgpipe_recv(..., 0).  A server is
 * reported only once an accept with timeout 0 has found a client it admits
 * (kept for the next accept: msgpipe__server_probe), or it is shut down.
 *
 * Polling counts as receiving: as a blocked receive does, it pushes out the
 * rest of a message that a timed-out send kept back, and waits for room to
 * push more, so that a program waiting for the answer to a request never
 * waits for ever on the request itself.
 */
#include "posix_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>

/* Items up to this many need no allocation (two slots each). */
#define MSGPIPE__POLL_STACK 32

/* For item i, its descriptors are pf[2 * i] and pf[2 * i + 1]:
 * a pipe: input (or -1, ignored by poll), output (or -1: watched for
 * POLLOUT, or for pushing out a kept-back tail);
 * a server: the shutdown pipe, the listening socket. */
static void msgpipe__poll_fill(msgpipe_pollitem *items, size_t n,
                               struct pollfd *pf, int *ready)
{
    size_t i;

    *ready = 0;
    for (i = 0; i < n; i++) {
        msgpipe_pollitem *it = &items[i];
        struct pollfd *a = &pf[2 * i], *b = &pf[2 * i + 1];

        a->fd = b->fd = -1; /* poll() skips negative descriptors */
        a->events = b->events = 0;
        a->revents = b->revents = 0;
        it->revents = 0;
        if (it->server != NULL) {
            if ((it->events & MSGPIPE_POLLIN) == 0)
                continue; /* nothing to watch for: skipped */
            /* A request already read (FIFO), or a client kept from an
             * earlier poll. */
            /* (With an authkey: advance its handshakes - api/auth.c.) */
            if ((it->server->ready != NULL ||
                 msgpipe__t_server_ready(it->server) ||
                 it->server->opts.auth != NULL) &&
                msgpipe__server_probe(it->server))
                it->revents |= MSGPIPE_POLLIN;
            a->fd = it->server->wake[0];
            a->events = POLLIN;
            b->fd = msgpipe__server_wait_fd(it->server);
            b->events = POLLIN;
        } else if (it->pipe != NULL) {
            msgpipe *p = it->pipe;
            int tail = 0;
            /* Push what fits of a half-sent message first: a send would
             * wait for it, and the peer may wait for it before it
             * answers. */
            if (it->events != 0)
                tail = msgpipe__tx_push(p);
            if (it->events & MSGPIPE_POLLIN) {
                if (msgpipe__rx_ready(p))
                    it->revents |= MSGPIPE_POLLIN;
                else {
                    a->fd = p->fd;
                    a->events = POLLIN;
                }
            }
            if ((it->events & MSGPIPE_POLLOUT) || tail) {
                b->fd = p->wfd;
                b->events = POLLOUT;
            }
        }
        if (it->revents != 0)
            (*ready)++;
    }
}

/* Turn what poll() saw into revents; returns how many items are ready. */
static int msgpipe__poll_read(msgpipe_pollitem *items, size_t n,
                              const struct pollfd *pf)
{
    const short any = POLLIN | POLLOUT | POLLHUP | POLLERR | POLLNVAL;
    size_t i;
    int ready = 0;

    for (i = 0; i < n; i++) {
        msgpipe_pollitem *it = &items[i];
        const struct pollfd *a = &pf[2 * i], *b = &pf[2 * i + 1];

        if (it->server != NULL) {
            if ((a->revents & any) ||
                ((b->revents & any) && msgpipe__server_probe(it->server)))
                it->revents |= MSGPIPE_POLLIN;
        } else if (it->pipe != NULL) {
            msgpipe *p = it->pipe;
            if ((a->revents & any) && msgpipe__rx_pump(p))
                it->revents |= MSGPIPE_POLLIN;
            /* Room to write, or a dead peer (a send returns ECLOSED at
             * once); ready once no half-sent message is left.  Without
             * POLLOUT asked for, only the tail is pushed. */
            if ((b->revents & any) && !msgpipe__tx_push(p) &&
                (it->events & MSGPIPE_POLLOUT))
                it->revents |= MSGPIPE_POLLOUT;
        }
        if (it->revents != 0)
            ready++;
    }
    return ready;
}

/* poll(2) refuses more slots than RLIMIT_NOFILE, even slots of -1, and
 * two per item would be twice the descriptors of pipes watched one way.
 * So poll() gets only the slots in use, packed: cf[k] is pf[map[k]], and
 * an item's two slots on one descriptor (a socket watched both ways) share
 * one entry, whose first slot map[k] names.  Returns the count. */
static size_t msgpipe__poll_pack(const struct pollfd *pf, size_t nslots,
                                 struct pollfd *cf, size_t *map)
{
    size_t i, k = 0;

    for (i = 0; i < nslots; i++) {
        if (pf[i].fd < 0)
            continue;
        if ((i & 1) != 0 && pf[i - 1].fd == pf[i].fd) {
            cf[k - 1].events |= pf[i].events; /* pf[i - 1] is cf[k - 1] */
            continue;
        }
        cf[k] = pf[i];
        map[k] = i;
        k++;
    }
    return k;
}

/* Hand what poll() saw in cf back to the slots of pf, each slot only the
 * events it asked for (and the end or an error). */
static void msgpipe__poll_unpack(struct pollfd *pf, const struct pollfd *cf,
                                 const size_t *map, size_t k)
{
    const short always = POLLHUP | POLLERR | POLLNVAL;
    size_t i;

    for (i = 0; i < k; i++) {
        size_t j = map[i];
        pf[j].revents = (short)(cf[i].revents & (pf[j].events | always));
        if ((j & 1) == 0 && pf[j + 1].fd == pf[j].fd)
            pf[j + 1].revents =
                (short)(cf[i].revents & (pf[j + 1].events | always));
    }
}

int msgpipe__b_poll(msgpipe_pollitem *items, size_t n, int timeout_ms)
{
    int64_t deadline = msgpipe__deadline(timeout_ms);
    struct pollfd stack[2 * MSGPIPE__POLL_STACK], *pf = stack;
    struct pollfd cstack[2 * MSGPIPE__POLL_STACK], *cf = cstack;
    size_t mstack[2 * MSGPIPE__POLL_STACK], *map = mstack, k;
    int ready, rc, wait;

    if (n > MSGPIPE__POLL_STACK) {
        const size_t per = 2 * (2 * sizeof(*pf) + sizeof(*map));
        unsigned char *block;
        if (n > (size_t)-1 / per)
            return MSGPIPE_EINVAL;
        block = (unsigned char *)msgpipe__malloc(n * per);
        if (block == NULL)
            return MSGPIPE_ENOMEM;
        /* One block: pf, cf (2n pollfds each), then map (2n). */
        pf = (struct pollfd *)(void *)block;
        cf = pf + 2 * n;
        map = (size_t *)(void *)(cf + 2 * n);
    }
    for (;;) {
        msgpipe__poll_fill(items, n, pf, &ready);
        k = msgpipe__poll_pack(pf, 2 * n, cf, map);
        /* Something is ready already: only look at the rest, no wait. */
        wait = ready > 0 ? 0 : msgpipe__remaining(deadline);
        rc = msgpipe__sys.poll(cf, (nfds_t)k, wait);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            rc = msgpipe__from_errno(errno);
            break;
        }
        if (rc > 0) {
            msgpipe__poll_unpack(pf, cf, map, k);
            ready = msgpipe__poll_read(items, n, pf);
        }
        if (ready > 0) {
            rc = ready;
            break;
        }
        if (msgpipe__remaining(deadline) == 0) {
            rc = MSGPIPE_ETIMEDOUT;
            break;
        }
        /* A descriptor had only part of a message, or a half-sent message
         * is still going out: wait again for the time left. */
    }
    if (pf != stack)
        msgpipe__free(pf);
    return rc;
}
