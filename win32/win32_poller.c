/*
 * win32_poller.c - the process's completion port, and msgpipe_poller for
 * the Win32 backend.  The twin of posix/posix_poller.c; see
 * win32_internal.h for the other files.
 *
 * The port.  Every pipe handle and every server instance is bound, when it
 * is made, to one I/O completion port of the process, under a key from
 * the registry (a table: key -> pipe or server).  What reports there:
 *
 *   - a write that went pending (writes have no event, so that the exit of
 *     the thread that issued them does not cancel them: see the top of
 *     win32_stream.c);
 *   - the zero-byte read that waits for the next message, while its pipe
 *     is in a poller for MSGPIPE_POLLIN (see "Readiness" in
 *     win32_stream.c);
 *   - every server instance's ConnectNamedPipe.
 *
 * FILE_SKIP_COMPLETION_PORT_ON_SUCCESS keeps what completes at once off
 * the port (where the system honours it; where not, a completion at once
 * brings one hint more).  One thread of the library, the dispatcher, takes
 * the completions, in batches, and turns each into a hint: a write's sets
 * its pipe's tx_ev (the sender waiting for it, if any, looks again); any
 * completion of a pipe or server in a poller puts it on that poller's
 * list of what to look at, and wakes the poller's wait.  Nobody acts on a
 * hint without looking first, so a stale or extra one costs a look, never
 * a wrong answer.  A key is released before its pipe or server is freed,
 * under the registry lock the dispatcher holds while it works; a
 * completion that arrives later finds its key stale (each reuse of a slot
 * changes the key) and is dropped.
 *
 * The thread and the port are made at the first pipe or server and live
 * as long as the process (the module is pinned, so that a DLL build is
 * never unloaded under the thread).  docs/decisions.md says why a thread
 * rather than handing the port from one waiting thread to the next.
 *
 * The poller.  A set of entries, each with its list links, and a queue of
 * the entries to look at in the next wait: those just added or modified,
 * those hinted at by the dispatcher, those a receive or accept left with
 * something msgpipe itself holds (msgpipe__w_pl_touch), and those the last
 * wait reported (level-triggered: they are looked at again).  A wait
 * looks at the queue from its head, reports what is ready and puts it at
 * the tail, and drops what is not, which is then armed: its read or
 * connect, or the write it waits for, reports to the port, and the
 * dispatcher queues it again.  So a wait costs the ready items and the
 * hints, never the idle; when nothing is ready it blocks in one
 * WaitForSingleObject on the poller's event, which the dispatcher, every
 * change and msgpipe_poller_wake set.  A report beyond `cap` stays at the
 * head for the next wait, so everything gets its turn.
 *
 * Locks: the registry lock (an SRW lock) before a poller's lock, never
 * the other way.  The dispatcher holds the registry lock shared while it
 * queues; add, modify, remove, close and forget change an entry's
 * pl_entry under it exclusively, and only then take the poller's lock to
 * change its lists.  A wait holds the poller's lock while it looks, so a
 * pipe being closed (forget) waits for the look to end.
 */
#include "win32_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- The registry --------------------------------------------------------
 * A key is (generation << MSGPIPE__W_KEY_BITS) | (index + 1): never 0. */

#define MSGPIPE__W_KEY_BITS 24
#define MSGPIPE__W_KEY_MASK (((ULONG_PTR)1 << MSGPIPE__W_KEY_BITS) - 1)

/* Completions the dispatcher takes in one call. */
#define MSGPIPE__W_BATCH 64

typedef struct msgpipe__w_slot {
    void *obj; /* NULL: free */
    int kind;  /* MSGPIPE__W_KEY_* */
    ULONG_PTR gen;
    size_t next_free; /* index + 1 of the next free slot, or 0 */
} msgpipe__w_slot;

static SRWLOCK msgpipe__w_reg = SRWLOCK_INIT;
static msgpipe__w_slot *msgpipe__w_slots;
static size_t msgpipe__w_nslots, msgpipe__w_free; /* free: index + 1 */
static HANDLE msgpipe__w_port;
static INIT_ONCE msgpipe__w_port_once = INIT_ONCE_STATIC_INIT;
static DWORD msgpipe__w_port_err;

static void msgpipe__w_dispatch(const OVERLAPPED_ENTRY *ent);

static DWORD WINAPI msgpipe__w_port_main(LPVOID arg)
{
    OVERLAPPED_ENTRY ents[MSGPIPE__W_BATCH];
    ULONG n, i;

    (void)arg;
    for (;;) { /* until the process ends */
        if (!GetQueuedCompletionStatusEx(
                msgpipe__w_port, ents, MSGPIPE__W_BATCH, &n, INFINITE, FALSE)) {
            Sleep(1); /* cannot happen with INFINITE; never spin */
            continue;
        }
        AcquireSRWLockShared(&msgpipe__w_reg);
        for (i = 0; i < n; i++)
            msgpipe__w_dispatch(&ents[i]);
        ReleaseSRWLockShared(&msgpipe__w_reg);
    }
    return 0;
}

static BOOL CALLBACK msgpipe__w_port_start(PINIT_ONCE once, PVOID arg,
                                           PVOID *ctx)
{
    HMODULE self;
    HANDLE t;

    (void)once;
    (void)arg;
    (void)ctx;
    msgpipe__w_port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 1);
    if (msgpipe__w_port == NULL) {
        msgpipe__w_port_err = GetLastError();
        return TRUE;
    }
    /* The thread runs this module's code until the process ends (any
     * address in the module names it). */
    GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS |
                           GET_MODULE_HANDLE_EX_FLAG_PIN,
                       (LPCWSTR)(const void *)&msgpipe__w_port, &self);
    t = CreateThread(NULL, 64 * 1024, msgpipe__w_port_main, NULL,
                     STACK_SIZE_PARAM_IS_A_RESERVATION, NULL);
    if (t == NULL) {
        msgpipe__w_port_err = GetLastError();
        CloseHandle(msgpipe__w_port);
        msgpipe__w_port = NULL;
        return TRUE;
    }
    CloseHandle(t);
    return TRUE;
}

int msgpipe__w_port_bind(HANDLE h, int kind, void *obj, ULONG_PTR *key)
{
    msgpipe__w_slot *s;
    size_t i;
    ULONG_PTR k;

    InitOnceExecuteOnce(&msgpipe__w_port_once, msgpipe__w_port_start, NULL,
                        NULL);
    if (msgpipe__w_port == NULL)
        return msgpipe__w_error(msgpipe__w_port_err);
    if (*key != 0) { /* a key the caller keeps for another handle */
        if (CreateIoCompletionPort(h, msgpipe__w_port, *key, 0) == NULL)
            return msgpipe__w_error(GetLastError());
        SetFileCompletionNotificationModes(
            h, FILE_SKIP_COMPLETION_PORT_ON_SUCCESS);
        return MSGPIPE_OK;
    }
    AcquireSRWLockExclusive(&msgpipe__w_reg);
    if (msgpipe__w_free == 0) {
        size_t cap = msgpipe__w_nslots < 64 ? 64 : 2 * msgpipe__w_nslots;
        if (cap > MSGPIPE__W_KEY_MASK) {
            ReleaseSRWLockExclusive(&msgpipe__w_reg);
            return MSGPIPE_ENOMEM;
        }
        s = (msgpipe__w_slot *)msgpipe__realloc(msgpipe__w_slots,
                                                cap * sizeof(*s));
        if (s == NULL) {
            ReleaseSRWLockExclusive(&msgpipe__w_reg);
            return MSGPIPE_ENOMEM;
        }
        for (i = msgpipe__w_nslots; i < cap; i++) {
            s[i].obj = NULL;
            s[i].kind = 0;
            s[i].gen = 0;
            s[i].next_free = i + 1 < cap ? i + 2 : 0;
        }
        msgpipe__w_slots = s;
        msgpipe__w_free = msgpipe__w_nslots + 1;
        msgpipe__w_nslots = cap;
    }
    i = msgpipe__w_free - 1;
    s = &msgpipe__w_slots[i];
    msgpipe__w_free = s->next_free;
    s->obj = obj;
    s->kind = kind;
    k = (s->gen << MSGPIPE__W_KEY_BITS) | (ULONG_PTR)(i + 1);
    ReleaseSRWLockExclusive(&msgpipe__w_reg);

    if (h == NULL) {
        *key = k;
        return MSGPIPE_OK;
    }
    if (CreateIoCompletionPort(h, msgpipe__w_port, k, 0) == NULL) {
        int rc = msgpipe__w_error(GetLastError());
        msgpipe__w_port_release(k);
        return rc;
    }
    /* Optional: without it, completions at once are hints as well. */
    SetFileCompletionNotificationModes(h, FILE_SKIP_COMPLETION_PORT_ON_SUCCESS);
    *key = k;
    return MSGPIPE_OK;
}

void msgpipe__w_port_post(ULONG_PTR key)
{
    /* The port exists: key was made by msgpipe__w_port_bind. */
    PostQueuedCompletionStatus(msgpipe__w_port, 0, key, NULL);
}

/* The slot of key k if k is current, else NULL.  Registry lock held. */
static msgpipe__w_slot *msgpipe__w_slot_of(ULONG_PTR k)
{
    size_t i = (size_t)(k & MSGPIPE__W_KEY_MASK);
    msgpipe__w_slot *s;

    if (i == 0 || i > msgpipe__w_nslots)
        return NULL;
    s = &msgpipe__w_slots[i - 1];
    if (s->obj == NULL || s->gen != k >> MSGPIPE__W_KEY_BITS)
        return NULL;
    return s;
}

void msgpipe__w_port_retarget(ULONG_PTR key, int kind, void *obj)
{
    msgpipe__w_slot *s;

    AcquireSRWLockExclusive(&msgpipe__w_reg);
    s = msgpipe__w_slot_of(key);
    if (s != NULL) {
        s->obj = obj;
        s->kind = kind;
    }
    ReleaseSRWLockExclusive(&msgpipe__w_reg);
}

void msgpipe__w_port_release(ULONG_PTR key)
{
    msgpipe__w_slot *s;

    AcquireSRWLockExclusive(&msgpipe__w_reg);
    s = msgpipe__w_slot_of(key);
    if (s != NULL) {
        s->obj = NULL;
        s->kind = 0;
        s->gen = (s->gen + 1) & (((ULONG_PTR)-1) >> MSGPIPE__W_KEY_BITS);
        s->next_free = msgpipe__w_free;
        msgpipe__w_free = (size_t)(key & MSGPIPE__W_KEY_MASK);
    }
    ReleaseSRWLockExclusive(&msgpipe__w_reg);
}

/* ---- The poller's structures --------------------------------------------- */

typedef struct msgpipe__wpl_entry {
    msgpipe_poller *pl;
    msgpipe *pipe;
    msgpipe_server *srv;
    unsigned events;
    void *user;
    struct msgpipe__wpl_entry *prev, *next;   /* all entries */
    struct msgpipe__wpl_entry *qprev, *qnext; /* the queue */
    int queued;
} msgpipe__wpl_entry;

struct msgpipe_poller {
    CRITICAL_SECTION lock;
    HANDLE kick; /* manual-reset: look at the queue (and user_woken) */
    LONG volatile user_woken;
    msgpipe__wpl_entry *all;
    msgpipe__wpl_entry *qhead, *qtail;
};

/* Where p or srv keeps its entry (a void *). */
static void **msgpipe__wpl_slot(msgpipe *p, msgpipe_server *srv)
{
    return p != NULL ? &p->pl_entry : msgpipe__w_srv_pl_slot(srv);
}

/* Queue e at the tail, if it is not queued.  Poller's lock held. */
static void msgpipe__wpl_queue(msgpipe__wpl_entry *e)
{
    msgpipe_poller *pl = e->pl;

    if (e->queued)
        return;
    e->queued = 1;
    e->qnext = NULL;
    e->qprev = pl->qtail;
    if (pl->qtail != NULL)
        pl->qtail->qnext = e;
    else
        pl->qhead = e;
    pl->qtail = e;
}

static void msgpipe__wpl_dequeue(msgpipe__wpl_entry *e)
{
    msgpipe_poller *pl = e->pl;

    if (!e->queued)
        return;
    if (e->qprev != NULL)
        e->qprev->qnext = e->qnext;
    else
        pl->qhead = e->qnext;
    if (e->qnext != NULL)
        e->qnext->qprev = e->qprev;
    else
        pl->qtail = e->qprev;
    e->queued = 0;
    e->qprev = e->qnext = NULL;
}

/* Queue e and wake its poller's wait.  Registry lock held (any mode), so
 * that e stays. */
static void msgpipe__wpl_hint(msgpipe__wpl_entry *e)
{
    msgpipe_poller *pl = e->pl;

    EnterCriticalSection(&pl->lock);
    msgpipe__wpl_queue(e);
    SetEvent(pl->kick);
    LeaveCriticalSection(&pl->lock);
}

/*
 * The completion packet of the write of ov (len bytes) has been taken:
 * mark its result final (seen).  The packet is what says so, not the
 * OVERLAPPED: Wine posts the packet but never writes the OVERLAPPED of an
 * I/O that ends while the thread that issued it is exiting (its result
 * goes to that thread, which dies first), and then reports 0 bytes.  So
 * when the OVERLAPPED still says STATUS_PENDING, the packet's status is
 * written into it, with the whole length for a success (a message-mode
 * write is all or nothing).  Nothing reuses ov before seen is set, so this
 * never touches a later I/O; on Windows the OVERLAPPED is final already
 * and is left alone.
 */
static void msgpipe__w_tx_seen(OVERLAPPED *ov, LONG volatile *seen, DWORD len,
                               const OVERLAPPED_ENTRY *ent)
{
    if (!msgpipe__w_ov_done(ov)) {
        LONG st = (LONG)ent->Internal; /* the packet's NTSTATUS */
        ov->InternalHigh = st >= 0 ? len : ent->dwNumberOfBytesTransferred;
        *(ULONG_PTR volatile *)&ov->Internal = ent->Internal;
    }
    InterlockedExchange(seen, 1);
}

static void msgpipe__w_dispatch(const OVERLAPPED_ENTRY *ent)
{
    msgpipe__w_slot *s = msgpipe__w_slot_of(ent->lpCompletionKey);
    OVERLAPPED *ov = ent->lpOverlapped;
    msgpipe *p;
    void *e;

    if (s == NULL)
        return; /* its pipe or server is gone */
    if (s->kind == MSGPIPE__W_KEY_PIPE) {
        p = (msgpipe *)s->obj;
        if (ov == &p->tx_ov || ov == &p->tx_hov) {
            if (ov == &p->tx_ov)
                msgpipe__w_tx_seen(ov, &p->tx_seen, p->tx_len, ent);
            else
                msgpipe__w_tx_seen(ov, &p->tx_hseen, p->tx_hlen, ent);
            SetEvent(p->tx_ev);
        }
        e = p->pl_entry;
    } else {
        e = *msgpipe__w_srv_pl_slot((msgpipe_server *)s->obj);
    }
    if (e != NULL)
        msgpipe__wpl_hint((msgpipe__wpl_entry *)e);
}

void msgpipe__w_pl_touch(msgpipe *p, msgpipe_server *srv)
{
    void *e;

    AcquireSRWLockShared(&msgpipe__w_reg);
    e = *msgpipe__wpl_slot(p, srv);
    if (e != NULL)
        msgpipe__wpl_hint((msgpipe__wpl_entry *)e);
    ReleaseSRWLockShared(&msgpipe__w_reg);
}

/* ---- Changes from any thread --------------------------------------------- */

int msgpipe__b_poller_new(msgpipe_poller **out)
{
    msgpipe_poller *pl = (msgpipe_poller *)msgpipe__calloc(1, sizeof(*pl));

    if (pl == NULL)
        return MSGPIPE_ENOMEM;
    pl->kick = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (pl->kick == NULL) {
        int rc = msgpipe__w_error(GetLastError());
        msgpipe__free(pl);
        return rc;
    }
    InitializeCriticalSection(&pl->lock);
    *out = pl;
    return MSGPIPE_OK;
}

/* Take e out of its poller's lists and free it; its pl_entry was cleared
 * under the registry lock already. */
static void msgpipe__wpl_drop(msgpipe__wpl_entry *e)
{
    msgpipe_poller *pl = e->pl;

    EnterCriticalSection(&pl->lock);
    msgpipe__wpl_dequeue(e);
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        pl->all = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    LeaveCriticalSection(&pl->lock);
    msgpipe__free(e);
}

int msgpipe__b_poller_add(msgpipe_poller *pl, msgpipe *p, msgpipe_server *srv,
                          unsigned events, void *user)
{
    msgpipe__wpl_entry *e;
    void **slot = msgpipe__wpl_slot(p, srv);

    e = (msgpipe__wpl_entry *)msgpipe__calloc(1, sizeof(*e));
    if (e == NULL)
        return MSGPIPE_ENOMEM;
    e->pl = pl;
    e->pipe = p;
    e->srv = srv;
    e->events = events;
    e->user = user;
    AcquireSRWLockExclusive(&msgpipe__w_reg);
    if (*slot != NULL) {
        ReleaseSRWLockExclusive(&msgpipe__w_reg);
        msgpipe__free(e);
        return MSGPIPE_EBUSY;
    }
    *slot = e;
    if (p != NULL)
        InterlockedExchange(&p->pl_in, (events & MSGPIPE_POLLIN) != 0);
    /* Still under the registry lock, so that a forget cannot free e
     * before it is linked. */
    EnterCriticalSection(&pl->lock);
    e->next = pl->all;
    if (pl->all != NULL)
        pl->all->prev = e;
    pl->all = e;
    msgpipe__wpl_queue(e); /* looked at by the next wait, or this one */
    SetEvent(pl->kick);
    LeaveCriticalSection(&pl->lock);
    ReleaseSRWLockExclusive(&msgpipe__w_reg);
    return MSGPIPE_OK;
}

int msgpipe__b_poller_modify(msgpipe_poller *pl, msgpipe *p,
                             msgpipe_server *srv, unsigned events, void *user)
{
    msgpipe__wpl_entry *e;
    int rc = MSGPIPE_OK;

    AcquireSRWLockExclusive(&msgpipe__w_reg);
    e = (msgpipe__wpl_entry *)*msgpipe__wpl_slot(p, srv);
    if (e == NULL || e->pl != pl) {
        rc = MSGPIPE_ENOENT;
    } else {
        if (p != NULL)
            InterlockedExchange(&p->pl_in, (events & MSGPIPE_POLLIN) != 0);
        EnterCriticalSection(&pl->lock);
        e->events = events;
        e->user = user;
        msgpipe__wpl_queue(e);
        SetEvent(pl->kick);
        LeaveCriticalSection(&pl->lock);
    }
    ReleaseSRWLockExclusive(&msgpipe__w_reg);
    return rc;
}

/* Clear the registration of e's pipe or server if it is e (or any, with
 * pl NULL); registry lock held exclusively.  Returns the entry or NULL. */
static msgpipe__wpl_entry *msgpipe__wpl_clear(msgpipe_poller *pl, msgpipe *p,
                                              msgpipe_server *srv)
{
    void **slot = msgpipe__wpl_slot(p, srv);
    msgpipe__wpl_entry *e = (msgpipe__wpl_entry *)*slot;

    if (e == NULL || (pl != NULL && e->pl != pl))
        return NULL;
    *slot = NULL;
    if (p != NULL)
        InterlockedExchange(&p->pl_in, 0);
    return e;
}

int msgpipe__b_poller_remove(msgpipe_poller *pl, msgpipe *p,
                             msgpipe_server *srv)
{
    msgpipe__wpl_entry *e;

    AcquireSRWLockExclusive(&msgpipe__w_reg);
    e = msgpipe__wpl_clear(pl, p, srv);
    ReleaseSRWLockExclusive(&msgpipe__w_reg);
    if (e == NULL)
        return MSGPIPE_ENOENT;
    msgpipe__wpl_drop(e);
    return MSGPIPE_OK;
}

void msgpipe__w_pl_forget(msgpipe *p, msgpipe_server *srv)
{
    msgpipe__wpl_entry *e;

    if (*msgpipe__wpl_slot(p, srv) == NULL)
        return; /* never in a poller: no lock (closing is one thread's) */
    AcquireSRWLockExclusive(&msgpipe__w_reg);
    e = msgpipe__wpl_clear(NULL, p, srv);
    ReleaseSRWLockExclusive(&msgpipe__w_reg);
    if (e != NULL)
        msgpipe__wpl_drop(e);
}

void msgpipe__b_poller_wake(msgpipe_poller *pl)
{
    InterlockedExchange(&pl->user_woken, 1);
    SetEvent(pl->kick);
}

/* ---- Waiting ------------------------------------------------------------- */

/* What e is ready for now (never blocks; arms what is not). */
static unsigned msgpipe__wpl_look(msgpipe__wpl_entry *e, int64_t now)
{
    unsigned rev = 0;
    HANDLE hs[2];

    if (e->pipe != NULL) {
        if ((e->events & MSGPIPE_POLLIN) != 0 &&
            msgpipe__w_pipe_in_ready_port(e->pipe))
            rev |= MSGPIPE_POLLIN;
        if ((e->events & MSGPIPE_POLLOUT) != 0 &&
            msgpipe__w_pipe_out_ready(e->pipe, now))
            rev |= MSGPIPE_POLLOUT;
    } else if ((e->events & MSGPIPE_POLLIN) != 0 &&
               msgpipe__w_srv_ready(e->srv, hs)) {
        rev |= MSGPIPE_POLLIN;
    }
    return rev;
}

int msgpipe__b_poller_wait(msgpipe_poller *pl, msgpipe_event *ev, size_t cap,
                           int timeout_ms)
{
    int64_t deadline = msgpipe__deadline(timeout_ms), now;
    msgpipe__wpl_entry *e, *last;
    unsigned rev;
    size_t out;
    DWORD w;
    int rc;

    EnterCriticalSection(&pl->lock);
    for (;;) {
        /* Reset first, then look: a hint or change that comes after the
         * look sets the event again, and the wait below returns at once. */
        ResetEvent(pl->kick);
        if (InterlockedExchange(&pl->user_woken, 0) != 0) {
            rc = 0;
            break;
        }
        /* The queue as it is now, from its head: what is ready goes to the
         * tail (and is looked at again next time), the rest leaves it. */
        out = 0;
        last = pl->qtail;
        now = msgpipe__now_ms();
        while (out < cap && (e = pl->qhead) != NULL) {
            msgpipe__wpl_dequeue(e);
            rev = msgpipe__wpl_look(e, now);
            if (rev != 0) {
                ev[out].pipe = e->pipe;
                ev[out].server = e->srv;
                ev[out].events = rev;
                ev[out].user = e->user;
                out++;
                msgpipe__wpl_queue(e);
            }
            if (e == last)
                break;
        }
        if (out > 0) {
            rc = (int)out;
            break;
        }
        LeaveCriticalSection(&pl->lock);
        w = msgpipe__w32.WaitForSingleObject(pl->kick,
                                             msgpipe__w_left(deadline));
        EnterCriticalSection(&pl->lock);
        if (w == WAIT_TIMEOUT) {
            /* The last look, so that nothing that came with the time
             * running out is missed. */
            if (pl->qhead != NULL ||
                InterlockedCompareExchange(&pl->user_woken, 0, 0) != 0) {
                deadline = msgpipe__now_ms();
                continue;
            }
            msgpipe__set_os_error(WAIT_TIMEOUT);
            rc = MSGPIPE_ETIMEDOUT;
            break;
        }
        if (w != WAIT_OBJECT_0) {
            rc = msgpipe__w_error(GetLastError());
            break;
        }
    }
    LeaveCriticalSection(&pl->lock);
    return rc;
}

void msgpipe__b_poller_close(msgpipe_poller *pl)
{
    msgpipe__wpl_entry *e, *next;

    /* No thread waits on pl, nor changes it (the caller's promise). */
    AcquireSRWLockExclusive(&msgpipe__w_reg);
    for (e = pl->all; e != NULL; e = e->next)
        msgpipe__wpl_clear(pl, e->pipe, e->srv);
    ReleaseSRWLockExclusive(&msgpipe__w_reg);
    for (e = pl->all; e != NULL; e = next) {
        next = e->next;
        msgpipe__free(e);
    }
    DeleteCriticalSection(&pl->lock);
    CloseHandle(pl->kick);
    msgpipe__free(pl);
}
