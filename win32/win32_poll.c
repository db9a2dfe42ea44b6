/*
 * win32_poll.c - msgpipe_poll for the Win32 backend: waiting on many pipes
 * and servers at once.
 *
 * Every pipe and server has a manual-reset event that is signalled while it
 * is ready for MSGPIPE_POLLIN (see "Readiness" in win32_stream.c and
 * msgpipe__w_srv_scan).  A poll therefore:
 *
 * 1. asks every item whether it is ready now, without blocking (this also
 *    arms idle pipes: issues the zero-byte read whose completion sets the
 *    event).  Whatever is ready is reported at once - with any timeout,
 *    including 0 - and the poll returns;
 * 2. otherwise waits until one of the events is signalled or the time is
 *    up, and goes back to 1.  Step 1 decides what is ready: an event is
 *    only a reason to look again, so a spurious wake-up costs one more
 *    look, never a wrong answer.
 *
 * MSGPIPE_POLLOUT has no event (see msgpipe__w_pipe_out_ready); while an
 * item waits for it, the wait in step 2 is cut to MSGPIPE__W_OUT_TICK_MS.
 * Without such an item a wait has no tick at all: an idle poll sleeps in
 * one WaitForMultipleObjects and uses no CPU.
 *
 * More than MAXIMUM_WAIT_OBJECTS (64) events: the calling thread waits on
 * the first 63 plus a "wake" event, and helper threads - one per further
 * 63 events - each wait on their share plus a "cancel" event and set
 * "wake" when one of theirs is signalled.  After the caller's wait ends
 * (for whatever reason) it sets "cancel" and joins the helpers, so no
 * thread outlives the call.  Helpers only wait: they issue no I/O (I/O
 * issued by a thread is cancelled when it exits), and they exist only
 * while a poll over more than 64 events actually blocks - a poll that
 * finds something ready starts none.  Thread creation per blocking wait
 * was preferred to RegisterWaitForSingleObject (one registration and one
 * UnregisterWaitEx per event per wait) and to a persistent pool (which
 * would need a lifetime the library does not have).
 */
#include "win32_internal.h"

#include <stdlib.h>
#include <string.h>

/* Events the caller itself waits on, beside "wake", and per helper,
 * beside "cancel". */
#define MSGPIPE__W_GROUP (MAXIMUM_WAIT_OBJECTS - 1)

/* Small helper stacks: a helper only calls WaitForMultipleObjects. */
#define MSGPIPE__W_HELPER_STACK (64 * 1024)

struct msgpipe__w_helper {
    HANDLE hs[MAXIMUM_WAIT_OBJECTS]; /* [0] is the cancel event */
    DWORD n;
    HANDLE wake;
    DWORD err; /* GetLastError() of a failed wait, else 0 */
};

static DWORD WINAPI msgpipe__w_helper_main(LPVOID arg)
{
    struct msgpipe__w_helper *h = (struct msgpipe__w_helper *)arg;
    DWORD w = msgpipe__w32.WaitForMultipleObjects(h->n, h->hs, FALSE, INFINITE);

    if (w == WAIT_FAILED)
        h->err = GetLastError();
    if (w != WAIT_OBJECT_0) /* anything but "cancel": tell the caller */
        SetEvent(h->wake);
    return 0;
}

/* Wait until one of hs[0..nh) is signalled or ms pass (INFINITE allowed),
 * with helper threads beyond MAXIMUM_WAIT_OBJECTS.  Which one is of no
 * interest: the caller looks at every item again.  Returns OK (signalled
 * or timed out) or an error. */
static int msgpipe__w_wait_many(const HANDLE *hs, size_t nh, DWORD ms)
{
    struct msgpipe__w_helper *helpers = NULL;
    HANDLE *threads = NULL;
    HANDLE mine[MAXIMUM_WAIT_OBJECTS];
    HANDLE wake = NULL, cancel = NULL;
    size_t ng = 0, started = 0, g, i, k;
    DWORD w, e = 0;
    int rc = MSGPIPE_OK;

    if (nh == 0) {
        Sleep(ms);
        return MSGPIPE_OK;
    }
    if (nh <= MAXIMUM_WAIT_OBJECTS) {
        w = msgpipe__w32.WaitForMultipleObjects((DWORD)nh, hs, FALSE, ms);
        if (w == WAIT_FAILED)
            return msgpipe__w_error(GetLastError());
        return MSGPIPE_OK;
    }

    ng = (nh - MSGPIPE__W_GROUP + MSGPIPE__W_GROUP - 1) / MSGPIPE__W_GROUP;
    helpers = (struct msgpipe__w_helper *)msgpipe__calloc(ng, sizeof(*helpers));
    threads = (HANDLE *)msgpipe__calloc(ng, sizeof(*threads));
    if (helpers == NULL || threads == NULL) {
        rc = MSGPIPE_ENOMEM;
        goto out;
    }
    wake = CreateEventW(NULL, TRUE, FALSE, NULL);
    cancel = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (wake == NULL || cancel == NULL) {
        rc = msgpipe__w_error(GetLastError());
        goto out;
    }
    k = MSGPIPE__W_GROUP; /* the caller keeps hs[0..63) */
    for (g = 0; g < ng; g++) {
        struct msgpipe__w_helper *h = &helpers[g];
        h->hs[0] = cancel;
        h->n = 1;
        while (h->n < MAXIMUM_WAIT_OBJECTS && k < nh)
            h->hs[h->n++] = hs[k++];
        h->wake = wake;
        threads[g] =
            CreateThread(NULL, MSGPIPE__W_HELPER_STACK, msgpipe__w_helper_main,
                         h, STACK_SIZE_PARAM_IS_A_RESERVATION, NULL);
        if (threads[g] == NULL) {
            rc = msgpipe__w_error(GetLastError());
            break;
        }
        started++;
    }
    if (rc == MSGPIPE_OK) {
        mine[0] = wake;
        for (i = 0; i < MSGPIPE__W_GROUP; i++)
            mine[i + 1] = hs[i];
        w = msgpipe__w32.WaitForMultipleObjects(MAXIMUM_WAIT_OBJECTS, mine,
                                                FALSE, ms);
        if (w == WAIT_FAILED)
            rc = msgpipe__w_error(GetLastError());
    }
out:
    if (cancel != NULL)
        SetEvent(cancel);
    for (g = 0; g < started; g += MAXIMUM_WAIT_OBJECTS) {
        k = started - g < MAXIMUM_WAIT_OBJECTS ? started - g
                                               : MAXIMUM_WAIT_OBJECTS;
        WaitForMultipleObjects((DWORD)k, threads + g, TRUE, INFINITE);
    }
    for (g = 0; g < started; g++) {
        CloseHandle(threads[g]);
        if (helpers[g].err != 0 && e == 0)
            e = helpers[g].err;
    }
    if (rc == MSGPIPE_OK && e != 0)
        rc = msgpipe__w_error(e);
    if (wake != NULL)
        CloseHandle(wake);
    if (cancel != NULL)
        CloseHandle(cancel);
    msgpipe__free(helpers);
    msgpipe__free(threads);
    return rc;
}

static int msgpipe__w_handle_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (const HANDLE *)a;
    uintptr_t y = (uintptr_t) * (const HANDLE *)b;
    return x < y ? -1 : x > y;
}

/* WaitForMultipleObjects does not allow the same handle twice (a pipe or
 * server listed in two items; every server's stop event). */
static size_t msgpipe__w_unique(HANDLE *hs, size_t nh)
{
    size_t i, k;

    if (nh < 2)
        return nh;
    qsort(hs, nh, sizeof(*hs), msgpipe__w_handle_cmp);
    for (i = 1, k = 1; i < nh; i++)
        if (hs[i] != hs[k - 1])
            hs[k++] = hs[i];
    return k;
}

/* Step 1: set every revents; collect the events to wait on into hs (room
 * for 2 per item); *tick if an item waits for POLLOUT. */
static int msgpipe__w_poll_scan(msgpipe_pollitem *items, size_t n, HANDLE *hs,
                                size_t *nh, int *tick)
{
    int64_t now = msgpipe__now_ms();
    size_t i, k = 0;
    int ready = 0;

    *tick = 0;
    for (i = 0; i < n; i++) {
        msgpipe_pollitem *it = &items[i];
        unsigned rev = 0;

        if (it->pipe != NULL) {
            if ((it->events & MSGPIPE_POLLIN) != 0) {
                if (msgpipe__w_pipe_in_ready(it->pipe, &hs[k]))
                    rev |= MSGPIPE_POLLIN;
                else
                    k++;
            }
            if ((it->events & MSGPIPE_POLLOUT) != 0) {
                if (msgpipe__w_pipe_out_ready(it->pipe, now))
                    rev |= MSGPIPE_POLLOUT;
                else
                    *tick = 1;
            }
        } else if (it->server != NULL && (it->events & MSGPIPE_POLLIN) != 0) {
            if (msgpipe__w_srv_ready(it->server, &hs[k]))
                rev |= MSGPIPE_POLLIN;
            else
                k += 2;
        }
        it->revents = rev;
        if (rev != 0)
            ready++;
    }
    *nh = k;
    return ready;
}

int msgpipe__b_poll(msgpipe_pollitem *items, size_t n, int timeout_ms)
{
    int64_t deadline;
    HANDLE small[MAXIMUM_WAIT_OBJECTS];
    HANDLE *hs = small;
    size_t nh;
    DWORD left;
    int ready, tick, rc = MSGPIPE_OK;

    if (n == 0) {
        /* Nothing to watch: just the timeout (-1 was refused by the core). */
        Sleep((DWORD)timeout_ms);
        msgpipe__set_os_error(WAIT_TIMEOUT);
        return MSGPIPE_ETIMEDOUT;
    }
    deadline = timeout_ms < 0 ? -1 : msgpipe__now_ms() + timeout_ms;
    if (n + 1 > MAXIMUM_WAIT_OBJECTS / 2) {
        if (n + 1 > ((size_t)-1) / (2 * sizeof(HANDLE)))
            return MSGPIPE_ENOMEM;
        hs = (HANDLE *)msgpipe__malloc(2 * (n + 1) * sizeof(HANDLE));
        if (hs == NULL)
            return MSGPIPE_ENOMEM;
    }
    for (;;) {
        ready = msgpipe__w_poll_scan(items, n, hs, &nh, &tick);
        if (ready > 0) {
            rc = ready;
            break;
        }
        if (deadline < 0) {
            left = INFINITE;
        } else {
            int64_t l = deadline - msgpipe__now_ms();
            if (l <= 0) {
                msgpipe__set_os_error(WAIT_TIMEOUT);
                rc = MSGPIPE_ETIMEDOUT;
                break;
            }
            left = l >= (int64_t)INFINITE ? INFINITE - 1 : (DWORD)l;
        }
        if (tick && left > MSGPIPE__W_OUT_TICK_MS)
            left = MSGPIPE__W_OUT_TICK_MS;
        nh = msgpipe__w_unique(hs, nh);
        rc = msgpipe__w_wait_many(hs, nh, left);
        if (rc != MSGPIPE_OK)
            break;
    }
    if (hs != small)
        msgpipe__free(hs);
    return rc;
}
