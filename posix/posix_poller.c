/*
 * posix_poller.c - msgpipe_poller for the POSIX backend: a persistent set
 * of pipes and servers whose wait costs time in proportion to what is
 * ready.
 *
 * The system's own set does the waiting: epoll on Linux, kqueue on the
 * BSDs and macOS, and poll() over an array kept between waits elsewhere
 * (MSGPIPE_POLLER chooses; see "The system's set" below).  Each
 * registration names a descriptor and a "slot" of an entry: slot 0 is a
 * pipe's read descriptor or a server's listening descriptor, slot 1 a
 * FIFO pipe's write descriptor or a server's shutdown pipe (a socket
 * pipe reads and writes one descriptor, registered once, in slot 0).
 *
 * Readiness is that of msgpipe_poll, exactly, and level-triggered.  The
 * system reports descriptors; what msgpipe holds itself - whole messages
 * read ahead into a pipe's buffer, a client a server has accepted to know
 * it is there, requests a FIFO server has read - the system cannot see.
 * So every entry that may hold such a thing is on the "check" list, and
 * each wait looks at the entries on it first, without a system call:
 *
 *   - every entry the last wait reported (it may not have been drained);
 *   - a pipe a receive left with a message ready (msgpipe__pl_touch);
 *   - a pipe a timed-out send left with a half-written message, which the
 *     wait pushes out as msgpipe_poll does (and watches for room);
 *   - an entry just added or modified.
 *
 * An entry on the list that is not ready leaves it.  So the list holds
 * what was ready a moment ago, never the idle: a wait looks at O(ready)
 * entries plus what the system returns.
 *
 * Threads: one mutex guards the poller's lists and every entry.  The
 * system wait runs without it; everything else (the check list, what the
 * system returned, add, modify, remove, a pipe's close) with it.  An entry
 * removed while a wait is in the system call may still be named by what
 * that call returns: it is marked dead and freed by the wait once it has
 * looked at its results (the "graveyard").
 */
#include "posix_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(MSGPIPE_POLLER_EPOLL)
#include <sys/epoll.h>
#elif defined(MSGPIPE_POLLER_KQUEUE)
#include <sys/event.h>
#include <sys/time.h>
#elif !defined(MSGPIPE_POLLER_POLL)
#define MSGPIPE_POLLER_POLL 1
#endif

/* Events taken from the system per wait call. */
#define MSGPIPE__PL_BATCH 256

struct msgpipe__pl_entry;

typedef struct msgpipe__pl_slot {
    struct msgpipe__pl_entry *e;
    int which;     /* 0 or 1 */
    int fd;        /* -1: not registered */
    unsigned want; /* MSGPIPE_POLLIN/POLLOUT asked of the system */
#if defined(MSGPIPE_POLLER_POLL)
    size_t idx; /* in the poll array */
#endif
} msgpipe__pl_slot;

struct msgpipe__pl_entry {
    msgpipe_poller *pl;
    msgpipe *pipe;
    msgpipe_server *srv;
    unsigned events;
    void *user;
    msgpipe__pl_slot slot[2];
    int dead;
    int on_check; /* on pl->check */
    struct msgpipe__pl_entry *next_check;
    int touched; /* pushed again while a wait held it (check_push) */
    struct msgpipe__pl_entry *prev, *next; /* all entries; graveyard */
    uint64_t seen;                         /* the wait that last reported it */
    uint64_t cand;  /* the wait that made it a candidate */
    uint64_t order; /* when it was found (ties in msgpipe__cand_cmp) */
    unsigned r;     /* what it is ready for, in that wait */
};

typedef struct msgpipe__pl_entry msgpipe__pl_entry;

struct msgpipe_poller {
    pthread_mutex_t lock;
    int os; /* epoll or kqueue descriptor; -1 for poll() */
    int wake[2];
    msgpipe__pl_slot wake_slot;
    msgpipe__pl_entry *all;   /* every live entry */
    msgpipe__pl_entry *check; /* the check list, oldest first */
    msgpipe__pl_entry *check_tail;
    msgpipe__pl_entry *graveyard; /* removed during a wait */
    int waiting;                  /* a wait is in the system call */
    int user_woken;               /* msgpipe_poller_wake was called */
    uint64_t seq;                 /* waits so far */
    uint64_t order;               /* candidates found so far */
    msgpipe__pl_entry **cand;     /* one wait's candidates */
    size_t ncand, cand_cap;
#if defined(MSGPIPE_POLLER_POLL)
    struct pollfd *pf; /* [0] is the wake pipe */
    msgpipe__pl_slot **pslot;
    size_t npf, pfcap;
    struct pollfd *snap; /* what the waiting thread passes to poll() */
    size_t snapcap;
#endif
};

/* ---- The system's set ---------------------------------------------------
 *
 * Three functions: msgpipe__os_open (a new set), msgpipe__os_set (make
 * slot s ask for `want` on its descriptor, 0 to leave the set) and
 * msgpipe__os_wait (wait, and hand back slots with what fired). */

typedef struct msgpipe__os_ev {
    msgpipe__pl_slot *s;
    unsigned fired; /* POLLIN: readable, end or error; POLLOUT: writable */
} msgpipe__os_ev;

#if defined(MSGPIPE_POLLER_EPOLL)

static int msgpipe__os_open(msgpipe_poller *pl)
{
    pl->os = epoll_create1(EPOLL_CLOEXEC);
    return pl->os < 0 ? msgpipe__from_errno(errno) : MSGPIPE_OK;
}

static int msgpipe__os_set(msgpipe_poller *pl, msgpipe__pl_slot *s,
                           unsigned want)
{
    struct epoll_event ev;
    int op;

    if (want == s->want)
        return MSGPIPE_OK;
    memset(&ev, 0, sizeof(ev));
    ev.events = ((want & MSGPIPE_POLLIN) ? EPOLLIN : 0) |
                ((want & MSGPIPE_POLLOUT) ? EPOLLOUT : 0);
    ev.data.ptr = s;
    op = s->want == 0 ? EPOLL_CTL_ADD
                      : (want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD);
    if (epoll_ctl(pl->os, op, s->fd, &ev) != 0)
        return msgpipe__from_errno(errno);
    s->want = want;
    return MSGPIPE_OK;
}

static int msgpipe__os_wait(msgpipe_poller *pl, msgpipe__os_ev *out, size_t max,
                            int timeout_ms)
{
    struct epoll_event ev[MSGPIPE__PL_BATCH];
    int n, i;

    if (max > MSGPIPE__PL_BATCH)
        max = MSGPIPE__PL_BATCH;
    n = epoll_wait(pl->os, ev, (int)max, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : msgpipe__from_errno(errno);
    for (i = 0; i < n; i++) {
        out[i].s = (msgpipe__pl_slot *)ev[i].data.ptr;
        out[i].fired =
            ((ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) ? MSGPIPE_POLLIN
                                                              : 0) |
            ((ev[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) ? MSGPIPE_POLLOUT
                                                               : 0);
    }
    return n;
}

#elif defined(MSGPIPE_POLLER_KQUEUE)

static int msgpipe__os_open(msgpipe_poller *pl)
{
    pl->os = kqueue();
    if (pl->os < 0)
        return msgpipe__from_errno(errno);
    if (fcntl(pl->os, F_SETFD, FD_CLOEXEC) != 0) {
        int e = errno;
        close(pl->os);
        pl->os = -1;
        return msgpipe__from_errno(e);
    }
    return MSGPIPE_OK;
}

static int msgpipe__os_set(msgpipe_poller *pl, msgpipe__pl_slot *s,
                           unsigned want)
{
    struct kevent kev[2];
    int n = 0;

    if (want == s->want)
        return MSGPIPE_OK;
    if ((want ^ s->want) & MSGPIPE_POLLIN) {
        EV_SET(&kev[n], (uintptr_t)s->fd, EVFILT_READ,
               (want & MSGPIPE_POLLIN) ? EV_ADD : EV_DELETE, 0, 0, s);
        n++;
    }
    if ((want ^ s->want) & MSGPIPE_POLLOUT) {
        EV_SET(&kev[n], (uintptr_t)s->fd, EVFILT_WRITE,
               (want & MSGPIPE_POLLOUT) ? EV_ADD : EV_DELETE, 0, 0, s);
        n++;
    }
    if (kevent(pl->os, kev, n, NULL, 0, NULL) != 0)
        return msgpipe__from_errno(errno);
    s->want = want;
    return MSGPIPE_OK;
}

static int msgpipe__os_wait(msgpipe_poller *pl, msgpipe__os_ev *out, size_t max,
                            int timeout_ms)
{
    struct kevent ev[MSGPIPE__PL_BATCH];
    struct timespec ts, *tp = NULL;
    int n, i;

    if (max > MSGPIPE__PL_BATCH)
        max = MSGPIPE__PL_BATCH;
    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tp = &ts;
    }
    n = kevent(pl->os, NULL, 0, ev, (int)max, tp);
    if (n < 0)
        return errno == EINTR ? 0 : msgpipe__from_errno(errno);
    for (i = 0; i < n; i++) {
        out[i].s = (msgpipe__pl_slot *)ev[i].udata;
        out[i].fired =
            ev[i].filter == EVFILT_WRITE ? MSGPIPE_POLLOUT : MSGPIPE_POLLIN;
        if (ev[i].flags & (EV_EOF | EV_ERROR))
            out[i].fired |= MSGPIPE_POLLIN;
    }
    return n;
}

#else /* poll() */

static int msgpipe__os_open(msgpipe_poller *pl)
{
    pl->os = -1;
    return MSGPIPE_OK;
}

static int msgpipe__os_set(msgpipe_poller *pl, msgpipe__pl_slot *s,
                           unsigned want)
{
    if (want == s->want)
        return MSGPIPE_OK;
    if (s->want == 0) {
        if (pl->npf == pl->pfcap) {
            size_t cap = pl->pfcap < 16 ? 16 : 2 * pl->pfcap;
            struct pollfd *pf =
                (struct pollfd *)msgpipe__realloc(pl->pf, cap * sizeof(*pf));
            msgpipe__pl_slot **ps;
            if (pf == NULL)
                return MSGPIPE_ENOMEM;
            pl->pf = pf;
            ps = (msgpipe__pl_slot **)msgpipe__realloc(pl->pslot,
                                                       cap * sizeof(*ps));
            if (ps == NULL)
                return MSGPIPE_ENOMEM;
            pl->pslot = ps;
            pl->pfcap = cap;
        }
        s->idx = pl->npf++;
        pl->pf[s->idx].fd = s->fd;
        pl->pslot[s->idx] = s;
    }
    if (want == 0) {
        /* Swap the last one into its place. */
        size_t last = --pl->npf;
        if (s->idx != last) {
            pl->pf[s->idx] = pl->pf[last];
            pl->pslot[s->idx] = pl->pslot[last];
            pl->pslot[s->idx]->idx = s->idx;
        }
    } else {
        pl->pf[s->idx].events =
            (short)(((want & MSGPIPE_POLLIN) ? POLLIN : 0) |
                    ((want & MSGPIPE_POLLOUT) ? POLLOUT : 0));
    }
    s->want = want;
    return MSGPIPE_OK;
}

/* poll() needs the array while the lock is not held: the waiting thread
 * polls a snapshot taken with the lock; a slot named by an index of the
 * snapshot is looked up again afterwards (msgpipe__os_wait is called with
 * the lock held and drops it for the poll). */
static int msgpipe__os_wait_poll(msgpipe_poller *pl, msgpipe__os_ev *out,
                                 size_t max, int timeout_ms)
{
    size_t n = pl->npf, i, k = 0;
    int rc;

    if (pl->snapcap < n) {
        struct pollfd *sn =
            (struct pollfd *)msgpipe__realloc(pl->snap, n * sizeof(*sn));
        if (sn == NULL)
            return MSGPIPE_ENOMEM;
        pl->snap = sn;
        pl->snapcap = n;
    }
    memcpy(pl->snap, pl->pf, n * sizeof(*pl->snap));
    for (i = 0; i < n; i++)
        pl->snap[i].revents = 0;
    pl->waiting = 1;
    pthread_mutex_unlock(&pl->lock);
    rc = msgpipe__sys.poll(pl->snap, (nfds_t)n, timeout_ms);
    pthread_mutex_lock(&pl->lock);
    pl->waiting = 0;
    if (rc < 0)
        return errno == EINTR ? 0 : msgpipe__from_errno(errno);
    for (i = 0; i < n && k < max; i++) {
        short r = pl->snap[i].revents;
        msgpipe__pl_slot *s = NULL;
        size_t j;
        if (r == 0)
            continue;
        /* The slot that had this descriptor when the snapshot was taken
         * may have moved or gone: find it by descriptor. */
        if (i < pl->npf && pl->pf[i].fd == pl->snap[i].fd)
            s = pl->pslot[i];
        for (j = 0; s == NULL && j < pl->npf; j++)
            if (pl->pf[j].fd == pl->snap[i].fd)
                s = pl->pslot[j];
        if (s == NULL)
            continue;
        out[k].s = s;
        out[k].fired =
            ((r & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) ? MSGPIPE_POLLIN
                                                           : 0) |
            ((r & (POLLOUT | POLLHUP | POLLERR)) ? MSGPIPE_POLLOUT : 0);
        k++;
    }
    return (int)k;
}

#endif

/* ---- Waking ------------------------------------------------------------- */

/* Make a running (or the next) system wait return: one byte into the wake
 * pipe.  It is non-blocking: when it is full, a wake is pending anyway.
 * The wait drains it and goes on waiting, unless msgpipe_poller_wake()
 * also set user_woken. */
static void msgpipe__pl_kick(msgpipe_poller *pl)
{
    char b = 1;
    ssize_t rc;

    do
        rc = write(pl->wake[1], &b, 1);
    while (rc < 0 && errno == EINTR);
}

void msgpipe__b_poller_wake(msgpipe_poller *pl)
{
    MSGPIPE__STORE(pl->user_woken, 1);
    msgpipe__pl_kick(pl);
}

/* ---- Entries ------------------------------------------------------------- */

/* Put e at the end of the check list (if it is not on it). */
static void msgpipe__check_push(msgpipe_poller *pl, msgpipe__pl_entry *e)
{
    if (e->dead)
        return;
    if (e->on_check) {
        e->touched = 1; /* a running wait keeps it on the list */
        return;
    }
    e->on_check = 1;
    e->next_check = NULL;
    if (pl->check_tail != NULL)
        pl->check_tail->next_check = e;
    else
        pl->check = e;
    pl->check_tail = e;
}

/* Ask the system for what entry e needs now: its events, and room on a
 * pipe that has the tail of a message to push out. */
static int msgpipe__entry_sync(msgpipe__pl_entry *e)
{
    msgpipe_poller *pl = e->pl;
    unsigned in = e->events & MSGPIPE_POLLIN, out = 0;
    int rc;

    if (e->srv != NULL) {
        rc = msgpipe__os_set(pl, &e->slot[0], in);
        if (rc == MSGPIPE_OK)
            rc = msgpipe__os_set(pl, &e->slot[1], in);
        return rc;
    }
    out = e->events & MSGPIPE_POLLOUT;
    if (e->events != 0 && msgpipe__tx_pending(e->pipe))
        out = MSGPIPE_POLLOUT;
    if (e->slot[1].fd < 0) /* a socket: one descriptor both ways */
        return msgpipe__os_set(pl, &e->slot[0], in | out);
    rc = msgpipe__os_set(pl, &e->slot[0], in);
    if (rc == MSGPIPE_OK)
        rc = msgpipe__os_set(pl, &e->slot[1], out);
    return rc;
}

static void msgpipe__entry_unsync(msgpipe__pl_entry *e)
{
    (void)msgpipe__os_set(e->pl, &e->slot[0], 0);
    (void)msgpipe__os_set(e->pl, &e->slot[1], 0);
}

/* What entry e is ready for; fired: what the system reported for it
 * (0 when looking from the check list).  Lock held. */
static unsigned msgpipe__entry_ready(msgpipe__pl_entry *e, unsigned fired_in,
                                     unsigned fired_out)
{
    unsigned r = 0;

    if (e->events == 0)
        return 0;
    if (e->srv != NULL) {
        msgpipe_server *s = e->srv;
        if (msgpipe__server_is_shut(s))
            return MSGPIPE_POLLIN;
        if ((fired_in || s->ready != NULL || msgpipe__t_server_ready(s) ||
             s->opts.auth != NULL) &&
            msgpipe__server_probe(s))
            r |= MSGPIPE_POLLIN;
        return r;
    }
    {
        msgpipe *p = e->pipe;
        /* Push what fits of a half-sent message first, as msgpipe_poll
         * does; until it is out, a send would wait for it. */
        int tail = msgpipe__tx_push(p);
        if (e->events & MSGPIPE_POLLIN) {
            if (fired_in ? msgpipe__rx_pump(p) : msgpipe__rx_ready(p))
                r |= MSGPIPE_POLLIN;
        }
        if ((e->events & MSGPIPE_POLLOUT) && fired_out && !tail)
            r |= MSGPIPE_POLLOUT;
    }
    return r;
}

/* Take e out of its poller, lock held: out of the system's set and the
 * lists; freed now, or by the running wait. */
static void msgpipe__entry_remove(msgpipe__pl_entry *e)
{
    msgpipe_poller *pl = e->pl;
    msgpipe__pl_entry **pp;

    msgpipe__entry_unsync(e);
    if (e->on_check) {
        msgpipe__pl_entry *prev = NULL;
        for (pp = &pl->check; *pp != NULL; pp = &(*pp)->next_check) {
            if (*pp == e) {
                *pp = e->next_check;
                if (pl->check_tail == e)
                    pl->check_tail = prev;
                break;
            }
            prev = *pp;
        }
        e->on_check = 0;
    }
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        pl->all = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    if (e->pipe != NULL) {
        MSGPIPE__STORE(e->pipe->pl_entry, (msgpipe__pl_entry *)NULL);
        MSGPIPE__STORE(e->pipe->pl_owner, (msgpipe_poller *)NULL);
    } else {
        MSGPIPE__STORE(e->srv->pl_entry, (msgpipe__pl_entry *)NULL);
        MSGPIPE__STORE(e->srv->pl_owner, (msgpipe_poller *)NULL);
    }
    e->pipe = NULL;
    e->srv = NULL;
    e->dead = 1;
    if (pl->waiting) {
        e->prev = NULL;
        e->next = pl->graveyard;
        pl->graveyard = e;
    } else {
        msgpipe__free(e);
    }
}

/* ---- Calls --------------------------------------------------------------- */

int msgpipe__b_poller_new(msgpipe_poller **out)
{
    msgpipe_poller *pl = (msgpipe_poller *)msgpipe__calloc(1, sizeof(*pl));
    int rc;

    if (pl == NULL)
        return MSGPIPE_ENOMEM;
    pl->os = -1;
    pl->wake[0] = pl->wake[1] = -1;
    pl->seq = 1; /* an entry's seen starts at 0: never "the last wait" */
    if (pthread_mutex_init(&pl->lock, NULL) != 0) {
        msgpipe__free(pl);
        return MSGPIPE_ENOMEM;
    }
    rc = msgpipe__os_open(pl);
    if (rc == MSGPIPE_OK) {
        if (pipe(pl->wake) != 0) {
            pl->wake[0] = pl->wake[1] = -1;
            rc = msgpipe__from_errno(errno);
        } else if (msgpipe__fd_setup(pl->wake[0]) != 0 ||
                   msgpipe__fd_setup(pl->wake[1]) != 0) {
            rc = msgpipe__from_errno(errno);
        }
    }
    if (rc == MSGPIPE_OK) {
        pl->wake_slot.e = NULL;
        pl->wake_slot.fd = pl->wake[0];
        rc = msgpipe__os_set(pl, &pl->wake_slot, MSGPIPE_POLLIN);
    }
    if (rc != MSGPIPE_OK) {
        msgpipe__b_poller_close(pl);
        return rc;
    }
    *out = pl;
    return MSGPIPE_OK;
}

int msgpipe__b_poller_add(msgpipe_poller *pl, msgpipe *p, msgpipe_server *srv,
                          unsigned events, void *user)
{
    msgpipe__pl_entry *e;
    int rc, kick;

    e = (msgpipe__pl_entry *)msgpipe__calloc(1, sizeof(*e));
    if (e == NULL)
        return MSGPIPE_ENOMEM;
    e->pl = pl;
    e->pipe = p;
    e->srv = srv;
    e->events = events;
    e->user = user;
    e->slot[0].e = e->slot[1].e = e;
    e->slot[1].which = 1;
    if (p != NULL) {
        e->slot[0].fd = p->fd;
        e->slot[1].fd = p->wfd != p->fd ? p->wfd : -1;
    } else {
        e->slot[0].fd = msgpipe__server_wait_fd(srv);
        e->slot[1].fd = srv->wake[0];
    }
    pthread_mutex_lock(&pl->lock);
    if ((p != NULL ? MSGPIPE__LOAD(p->pl_entry)
                   : MSGPIPE__LOAD(srv->pl_entry)) != NULL) {
        pthread_mutex_unlock(&pl->lock);
        msgpipe__free(e);
        return MSGPIPE_EBUSY;
    }
    rc = msgpipe__entry_sync(e);
    if (rc != MSGPIPE_OK) {
        msgpipe__entry_unsync(e);
        pthread_mutex_unlock(&pl->lock);
        msgpipe__free(e);
        return rc;
    }
    e->next = pl->all;
    if (pl->all != NULL)
        pl->all->prev = e;
    pl->all = e;
    if (p != NULL) {
        MSGPIPE__STORE(p->pl_owner, pl);
        MSGPIPE__STORE(p->pl_entry, e);
    } else {
        MSGPIPE__STORE(srv->pl_owner, pl);
        MSGPIPE__STORE(srv->pl_entry, e);
    }
    /* It may hold messages already: a running wait looks at it at once. */
    msgpipe__check_push(pl, e);
    kick = pl->waiting;
    pthread_mutex_unlock(&pl->lock);
    if (kick)
        msgpipe__pl_kick(pl);
    return MSGPIPE_OK;
}

/* The entry of p or srv in pl, lock held; NULL if it is not in pl. */
static msgpipe__pl_entry *msgpipe__entry_of(msgpipe_poller *pl, msgpipe *p,
                                            msgpipe_server *srv)
{
    msgpipe__pl_entry *e =
        p != NULL ? MSGPIPE__LOAD(p->pl_entry) : MSGPIPE__LOAD(srv->pl_entry);

    return e != NULL && e->pl == pl ? e : NULL;
}

int msgpipe__b_poller_modify(msgpipe_poller *pl, msgpipe *p,
                             msgpipe_server *srv, unsigned events, void *user)
{
    msgpipe__pl_entry *e;
    unsigned old;
    int rc, kick = 0;

    pthread_mutex_lock(&pl->lock);
    e = msgpipe__entry_of(pl, p, srv);
    if (e == NULL) {
        pthread_mutex_unlock(&pl->lock);
        return MSGPIPE_ENOENT;
    }
    old = e->events;
    e->events = events;
    e->user = user;
    rc = msgpipe__entry_sync(e);
    if (rc != MSGPIPE_OK) {
        e->events = old;
        (void)msgpipe__entry_sync(e);
    } else {
        msgpipe__check_push(pl, e);
        kick = pl->waiting;
    }
    pthread_mutex_unlock(&pl->lock);
    if (kick)
        msgpipe__pl_kick(pl);
    return rc;
}

int msgpipe__b_poller_remove(msgpipe_poller *pl, msgpipe *p,
                             msgpipe_server *srv)
{
    msgpipe__pl_entry *e;

    pthread_mutex_lock(&pl->lock);
    e = msgpipe__entry_of(pl, p, srv);
    if (e == NULL) {
        pthread_mutex_unlock(&pl->lock);
        return MSGPIPE_ENOENT;
    }
    msgpipe__entry_remove(e);
    pthread_mutex_unlock(&pl->lock);
    return MSGPIPE_OK;
}

/* The pipe's or server's poller is read before its lock is taken; the
 * entry only with the lock held: another thread may remove (and free) the
 * entry meanwhile, but not close the poller (msgpipe_poller_close). */
static void msgpipe__pl_forget(msgpipe_poller *const *owner,
                               msgpipe__pl_entry *const *entry)
{
    msgpipe_poller *pl = MSGPIPE__LOAD(*owner);

    if (pl == NULL)
        return;
    pthread_mutex_lock(&pl->lock);
    if (*entry != NULL && (*entry)->pl == pl)
        msgpipe__entry_remove(*entry);
    pthread_mutex_unlock(&pl->lock);
}

void msgpipe__pl_forget_pipe(msgpipe *p)
{
    msgpipe__pl_forget(&p->pl_owner, &p->pl_entry);
}

void msgpipe__pl_forget_server(msgpipe_server *s)
{
    msgpipe__pl_forget(&s->pl_owner, &s->pl_entry);
}

void msgpipe__pl_touch(msgpipe *p, int tail)
{
    msgpipe_poller *pl = MSGPIPE__LOAD(p->pl_owner);
    int wake = 0;

    if (pl == NULL)
        return;
    pthread_mutex_lock(&pl->lock);
    if (p->pl_entry != NULL && p->pl_entry->pl == pl) {
        msgpipe__check_push(pl, p->pl_entry);
        wake = tail && pl->waiting;
    }
    pthread_mutex_unlock(&pl->lock);
    if (wake)
        msgpipe__pl_kick(pl);
}

static void msgpipe__wake_drain(msgpipe_poller *pl)
{
    char b[64];

    while (read(pl->wake[0], b, sizeof(b)) > 0) {
    }
}

/* Add e, ready for r, to this wait's candidates (merging bits if it is
 * one already).  ENOMEM if the array cannot grow. */
static int msgpipe__cand_add(msgpipe_poller *pl, msgpipe__pl_entry *e,
                             unsigned r)
{
    if (e->cand == pl->seq) {
        e->r |= r;
        return MSGPIPE_OK;
    }
    if (pl->ncand == pl->cand_cap) {
        size_t cap = pl->cand_cap < 64 ? 64 : 2 * pl->cand_cap;
        msgpipe__pl_entry **c =
            (msgpipe__pl_entry **)msgpipe__realloc(pl->cand, cap * sizeof(*c));
        if (c == NULL)
            return MSGPIPE_ENOMEM;
        pl->cand = c;
        pl->cand_cap = cap;
    }
    e->cand = pl->seq;
    e->r = r;
    pl->cand[pl->ncand++] = e;
    return MSGPIPE_OK;
}

/* Least recently reported first; then in the order found. */
static int msgpipe__cand_cmp(const void *x, const void *y)
{
    const msgpipe__pl_entry *a = *(msgpipe__pl_entry *const *)x;
    const msgpipe__pl_entry *b = *(msgpipe__pl_entry *const *)y;

    if (a->seen != b->seen)
        return a->seen < b->seen ? -1 : 1;
    return a->order < b->order ? -1 : a->order > b->order;
}

/* What the system returned for slot s: a candidate, if it is ready. */
static int msgpipe__take_event(msgpipe_poller *pl, const msgpipe__os_ev *g,
                               int *woken)
{
    msgpipe__pl_slot *s = g->s;
    msgpipe__pl_entry *e = s->e;
    unsigned r, fin = 0, fout = 0;

    if (e == NULL) { /* the wake pipe */
        msgpipe__wake_drain(pl);
#if defined(__GNUC__) || defined(__clang__)
        *woken |= __atomic_exchange_n(&pl->user_woken, 0, __ATOMIC_ACQ_REL);
#else
        *woken |= pl->user_woken;
        pl->user_woken = 0;
#endif
        return MSGPIPE_OK;
    }
    if (e->dead)
        return MSGPIPE_OK;
    if (e->srv != NULL) {
        fin = g->fired & MSGPIPE_POLLIN; /* either slot */
    } else if (s->which == 0) {
        fin = g->fired & MSGPIPE_POLLIN;
        if (e->slot[1].fd < 0)
            fout = g->fired & MSGPIPE_POLLOUT;
    } else {
        fout = g->fired & (MSGPIPE_POLLIN | MSGPIPE_POLLOUT);
    }
    r = msgpipe__entry_ready(e, fin, fout);
    (void)msgpipe__entry_sync(e);
    if (r == 0)
        return MSGPIPE_OK;
    e->order = pl->order++;
    return msgpipe__cand_add(pl, e, r);
}

/*
 * One wait: the candidates are the entries of the check list that are
 * ready and what the system returns (always asked, without waiting when
 * a candidate is there already), each looked at once.  They are reported
 * least recently reported first, so that with a cap smaller than what is
 * ready every item gets its turn; all of them go back on the check list
 * (level-triggered), the reported ones last.
 */
int msgpipe__b_poller_wait(msgpipe_poller *pl, msgpipe_event *ev, size_t cap,
                           int timeout_ms)
{
    int64_t deadline = msgpipe__deadline(timeout_ms);
    msgpipe__os_ev got[MSGPIPE__PL_BATCH];
    msgpipe__pl_entry *list, *e, *next;
    size_t n = 0, i;
    int k, woken = 0, rc = MSGPIPE_OK, r2;

    pthread_mutex_lock(&pl->lock);
    for (;;) {
        pl->seq++;
        pl->ncand = 0;
        /* The check list: its ready entries are candidates; it stays
         * marked (on_check) so that pushes meanwhile only flag it. */
        list = pl->check;
        pl->check = pl->check_tail = NULL;
        for (e = list; e != NULL && rc == MSGPIPE_OK; e = e->next_check) {
            unsigned r;
            e->touched = 0;
            if (e->dead)
                continue;
            r = msgpipe__entry_ready(e, 0, 0);
            (void)msgpipe__entry_sync(e); /* a tail may need room, or not */
            if (r != 0) {
                e->order = pl->order++;
                rc = msgpipe__cand_add(pl, e, r);
            }
        }
        if (rc == MSGPIPE_OK) {
            int wait = pl->ncand > 0 ? 0 : msgpipe__remaining(deadline);
#if defined(MSGPIPE_POLLER_POLL)
            k = msgpipe__os_wait_poll(pl, got, MSGPIPE__PL_BATCH, wait);
#else
            pl->waiting = 1;
            pthread_mutex_unlock(&pl->lock);
            k = msgpipe__os_wait(pl, got, MSGPIPE__PL_BATCH, wait);
            pthread_mutex_lock(&pl->lock);
            pl->waiting = 0;
#endif
            if (k < 0)
                rc = k;
            for (i = 0; k > 0 && i < (size_t)k; i++) {
                r2 = msgpipe__take_event(pl, &got[i], &woken);
                if (r2 != MSGPIPE_OK)
                    rc = r2;
            }
        }
        /* Report the least recently reported first. */
        if (pl->ncand > 1)
            qsort(pl->cand, pl->ncand, sizeof(*pl->cand), msgpipe__cand_cmp);
        for (i = 0; i < pl->ncand; i++) {
            e = pl->cand[i];
            if (e->dead || n >= cap)
                continue;
            e->seen = pl->seq;
            ev[n].pipe = e->pipe;
            ev[n].server = e->srv;
            ev[n].events = e->r;
            ev[n].user = e->user;
            n++;
        }
        /* The list again: what was touched meanwhile (already on it),
         * the entries of the old list still of interest, the candidates
         * not reported, then the reported ones. */
        for (e = list; e != NULL; e = next) {
            next = e->next_check;
            e->on_check = 0;
            if (e->dead || e->cand == pl->seq)
                continue;
            if (e->touched || (e->pipe != NULL && msgpipe__tx_pending(e->pipe)))
                msgpipe__check_push(pl, e);
        }
        for (i = 0; i < pl->ncand; i++)
            if (pl->cand[i]->seen != pl->seq)
                msgpipe__check_push(pl, pl->cand[i]);
        for (i = 0; i < pl->ncand; i++)
            if (pl->cand[i]->seen == pl->seq)
                msgpipe__check_push(pl, pl->cand[i]);
        pl->ncand = 0;
        /* Entries removed while the system call ran are no longer named
         * by anything. */
        while (pl->graveyard != NULL) {
            msgpipe__pl_entry *g = pl->graveyard;
            pl->graveyard = g->next;
            msgpipe__free(g);
        }
        if (rc < 0 || n > 0 || woken)
            break;
        if (msgpipe__remaining(deadline) == 0) {
            rc = MSGPIPE_ETIMEDOUT;
            break;
        }
        /* Only part of a message came, or a tail was pushed: wait on. */
    }
    pthread_mutex_unlock(&pl->lock);
    if (rc < 0 && n == 0)
        return rc;
    return (int)n;
}

void msgpipe__b_poller_close(msgpipe_poller *pl)
{
    pthread_mutex_lock(&pl->lock);
    while (pl->all != NULL)
        msgpipe__entry_remove(pl->all);
    while (pl->graveyard != NULL) {
        msgpipe__pl_entry *e = pl->graveyard;
        pl->graveyard = e->next;
        msgpipe__free(e);
    }
    pthread_mutex_unlock(&pl->lock);
    if (pl->os >= 0)
        close(pl->os);
    if (pl->wake[0] >= 0)
        close(pl->wake[0]);
    if (pl->wake[1] >= 0)
        close(pl->wake[1]);
    msgpipe__free(pl->cand);
#if defined(MSGPIPE_POLLER_POLL)
    msgpipe__free(pl->pf);
    msgpipe__free(pl->pslot);
    msgpipe__free(pl->snap);
#endif
    pthread_mutex_destroy(&pl->lock);
    msgpipe__free(pl);
}
