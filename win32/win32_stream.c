/*
 * win32_stream.c - the Win32 backend's message engine: sending,
 * receiving, discarding and closing over a connected named pipe in message
 * mode, however it was made (win32_server.c accepts, win32_pipe.c
 * connects).  The twin of posix/posix_stream.c; see win32_internal.h for
 * the other files.
 *
 * Wire format: none of our own.  One WriteFile is one message and one
 * message is read back whole, so any Win32 program that opens the pipe in
 * message mode (the seed's pywin32 client, Python's multiprocessing on
 * Windows) is a msgpipe peer.  Only a message that carries handles has a
 * header of ours in front (see "Handles with messages: the wire form").
 *
 * All handles are overlapped, so that every blocking call can have a
 * timeout and so that one thread may send while another receives on the
 * same pipe: each direction has its own event and OVERLAPPED.  A read
 * within a call uses an OVERLAPPED on the stack of the call, which never
 * returns before the kernel is done with it.  Two kinds of I/O outlive the
 * call that issued them - a write committed by a send whose time ran out
 * (see msgpipe__b_send) and the zero-byte read that makes a pipe waitable
 * (see "Readiness") - and so do the servers' ConnectNamedPipe calls.
 *
 * I/O and the life of threads: Windows (and Wine) cancel the pending I/O
 * of a thread when it exits, unless the handle is bound to an I/O
 * completion port and the I/O reports to it (Vista and later; Wine cancels
 * it unless it also has no event).  A committed write must never be
 * cancelled - part of it may already have been read - so every pipe
 * handle is bound to the process's completion port (win32_poller.c), and
 * writes are issued with no event; the port's dispatcher sets the pipe's
 * tx_ev when one that went pending ends.  FILE_SKIP_COMPLETION_PORT_ON_
 * SUCCESS keeps a write that completes at once off the port.  Reads within
 * a call tag their event with the low bit, so they post nothing to the
 * port.  The zero-byte read that waits for the next message (see
 * "Readiness") reports to the port too while its pipe is in a poller for
 * MSGPIPE_POLLIN, and then has an event as well.  Reads and connects may
 * be cancelled by a thread's exit, which loses nothing: a read cancelled
 * that way is issued again (see msgpipe__w_rx_harvest), and so is a
 * connect (see msgpipe__w_srv_scan), whose client meanwhile connects to
 * the listening instance all the same and is handed out even if it has
 * already left again (ERROR_NO_DATA).
 */
#include "win32_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- System calls (msgpipe__w32, see win32_internal.h) ------------------- */

static BOOL WINAPI msgpipe__w_read_file(HANDLE h, LPVOID buf, DWORD n,
                                        LPDWORD got, LPOVERLAPPED ov)
{
    return ReadFile(h, buf, n, got, ov);
}

static BOOL WINAPI msgpipe__w_write_file(HANDLE h, LPCVOID buf, DWORD n,
                                         LPDWORD put, LPOVERLAPPED ov)
{
    return WriteFile(h, buf, n, put, ov);
}

static BOOL WINAPI msgpipe__w_connect(HANDLE h, LPOVERLAPPED ov)
{
    return ConnectNamedPipe(h, ov);
}

static BOOL WINAPI msgpipe__w_result(HANDLE h, LPOVERLAPPED ov, LPDWORD n,
                                     BOOL wait)
{
    return GetOverlappedResult(h, ov, n, wait);
}

static DWORD WINAPI msgpipe__w_wait1(HANDLE h, DWORD ms)
{
    return WaitForSingleObject(h, ms);
}

static DWORD WINAPI msgpipe__w_waitn(DWORD n, const HANDLE *hs, BOOL all,
                                     DWORD ms)
{
    return WaitForMultipleObjects(n, hs, all, ms);
}

static BOOL WINAPI msgpipe__w_cancel(HANDLE h, LPOVERLAPPED ov)
{
    return CancelIoEx(h, ov);
}

static BOOL WINAPI msgpipe__w_peek(HANDLE h, LPVOID buf, DWORD n, LPDWORD got,
                                   LPDWORD avail, LPDWORD left)
{
    return PeekNamedPipe(h, buf, n, got, avail, left);
}

msgpipe__w32_calls msgpipe__w32 = {msgpipe__w_read_file, msgpipe__w_write_file,
                                   msgpipe__w_connect,   msgpipe__w_result,
                                   msgpipe__w_wait1,     msgpipe__w_waitn,
                                   msgpipe__w_cancel,    msgpipe__w_peek};

/* An event for the hEvent of an OVERLAPPED whose completion must not be
 * posted to the handle's completion port (the low bit says so). */
#define MSGPIPE__W_NOPORT(ev) ((HANDLE)((ULONG_PTR)(ev) | 1))

/* Chunk size used to drain and discard a message over max_message. */
#define MSGPIPE__W_DRAIN_CHUNK 65536

/* A pipe keeps its copy buffer for writes (see msgpipe__b_send) from one
 * send to the next, so that a stream of messages allocates nothing; one
 * larger than this is replaced by a smaller one when a message needs less
 * than a quarter of it. */
#define MSGPIPE__W_TX_KEEP 65536

/* ---- Errors and time ----------------------------------------------------- */

int msgpipe__w_error(DWORD e)
{
    msgpipe__set_os_error((int)e);
    switch (e) {
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
        return MSGPIPE_ENOENT;
    /* Every way Windows says "the other end is gone".  ERROR_NO_DATA is
     * "the pipe is being closed"; ERROR_PIPE_NOT_CONNECTED is what a
     * client sees after the server called DisconnectNamedPipe. */
    case ERROR_BROKEN_PIPE:
    case ERROR_PIPE_NOT_CONNECTED:
    case ERROR_NO_DATA:
    case ERROR_PIPE_LISTENING:
    case ERROR_NETNAME_DELETED:
        return MSGPIPE_ECLOSED;
    case ERROR_ACCESS_DENIED:
        return MSGPIPE_EACCES;
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY:
    case ERROR_NO_SYSTEM_RESOURCES:
        return MSGPIPE_ENOMEM;
    case ERROR_TOO_MANY_OPEN_FILES:
        return MSGPIPE_EMFILE;
    case ERROR_PIPE_BUSY:
        return MSGPIPE_EBUSY;
    case ERROR_SEM_TIMEOUT:
        return MSGPIPE_ETIMEDOUT;
    case ERROR_INVALID_NAME:
    case ERROR_BAD_PATHNAME:
        return MSGPIPE_EBADNAME;
    case ERROR_FILENAME_EXCED_RANGE:
        return MSGPIPE_ENAMETOOLONG;
    case ERROR_NOT_SUPPORTED:
    case ERROR_CALL_NOT_IMPLEMENTED:
        return MSGPIPE_ENOTSUP;
    default:
        return MSGPIPE_EIO;
    }
}

int64_t msgpipe__now_ms(void)
{
    return (int64_t)GetTickCount64();
}

DWORD msgpipe__w_left(int64_t deadline)
{
    int left = msgpipe__remaining(deadline);

    return left < 0 ? INFINITE : (DWORD)left;
}

/* Wait for ev until the deadline: OK (signalled), ETIMEDOUT, or the error
 * (each recorded as the last OS error). */
static int msgpipe__w_wait_until(HANDLE ev, int64_t deadline)
{
    DWORD w = msgpipe__w32.WaitForSingleObject(ev, msgpipe__w_left(deadline));

    if (w == WAIT_OBJECT_0)
        return MSGPIPE_OK;
    if (w == WAIT_TIMEOUT) {
        msgpipe__set_os_error(WAIT_TIMEOUT);
        return MSGPIPE_ETIMEDOUT;
    }
    return msgpipe__w_error(GetLastError());
}

int msgpipe__w_utf16(const char *s, WCHAR **out)
{
    int n;
    WCHAR *w;

    *out = NULL;
    n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, NULL, 0);
    if (n <= 0) {
        msgpipe__set_os_error((int)GetLastError());
        return MSGPIPE_EINVAL;
    }
    w = (WCHAR *)msgpipe__malloc((size_t)n * sizeof(WCHAR));
    if (w == NULL)
        return MSGPIPE_ENOMEM;
    if (MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, w, n) != n) {
        msgpipe__set_os_error((int)GetLastError());
        msgpipe__free(w);
        return MSGPIPE_EINVAL;
    }
    *out = w;
    return MSGPIPE_OK;
}

int msgpipe__w_wide(const msgpipe__name *name, WCHAR **out)
{
    int rc = msgpipe__w_utf16(name->sys, out);

    return rc == MSGPIPE_EINVAL ? MSGPIPE_EBADNAME : rc;
}

/* ---- Overlapped I/O with a deadline -------------------------------------- */

enum {
    MSGPIPE__W_IO_OK,      /* completed; the whole message was read */
    MSGPIPE__W_IO_MORE,    /* ERROR_MORE_DATA, or a read cut short: the
                              message goes on */
    MSGPIPE__W_IO_TIMEOUT, /* cancelled at the deadline; nothing moved */
    MSGPIPE__W_IO_ERR      /* failed; *err is the Windows error */
};

/*
 * One ReadFile of len bytes at buf, waiting until the deadline.  *n
 * receives the bytes moved.  (Writes are msgpipe__b_send's own.)
 *
 * On timeout the read is cancelled with CancelIoEx on its own OVERLAPPED
 * only (another thread may be sending), and then waited for, because the
 * kernel owns ov and buf until it completes.  If it completed anyway in
 * the meantime - the race between the deadline and the data - its real
 * result is returned: it happened, so it counts.  A read that was
 * cancelled after it had taken part of a message is MSGPIPE__W_IO_MORE
 * with those bytes: they were consumed, and the caller keeps them.
 */
static int msgpipe__w_io(HANDLE h, HANDLE ev, void *buf, DWORD len,
                         int64_t deadline, DWORD *n, DWORD *err)
{
    OVERLAPPED ov;
    BOOL ok;
    DWORD e, w;
    int timed_out = 0;

    memset(&ov, 0, sizeof(ov));
    ov.hEvent = MSGPIPE__W_NOPORT(ev);
    *n = 0;
    *err = 0;
    ok = msgpipe__w32.ReadFile(h, buf, len, NULL, &ov);
    if (ok) {
        msgpipe__w32.GetOverlappedResult(h, &ov, n, FALSE);
        return MSGPIPE__W_IO_OK;
    }
    e = GetLastError();
    if (e == ERROR_MORE_DATA) {
        /* Completed at once with a partial message: ov holds the count. */
        msgpipe__w32.GetOverlappedResult(h, &ov, n, FALSE);
        return MSGPIPE__W_IO_MORE;
    }
    if (e != ERROR_IO_PENDING) {
        *err = e;
        return MSGPIPE__W_IO_ERR;
    }
    w = msgpipe__w32.WaitForSingleObject(ev, msgpipe__w_left(deadline));
    if (w != WAIT_OBJECT_0) {
        if (w == WAIT_TIMEOUT)
            timed_out = 1;
        else
            *err = GetLastError();
        msgpipe__w32.CancelIoEx(h, &ov); /* ERROR_NOT_FOUND: it completed */
    }
    if (msgpipe__w32.GetOverlappedResult(h, &ov, n, TRUE))
        return MSGPIPE__W_IO_OK;
    e = GetLastError();
    if (e == ERROR_MORE_DATA || (e == ERROR_OPERATION_ABORTED && *n > 0))
        return MSGPIPE__W_IO_MORE;
    *n = 0;
    if (e == ERROR_OPERATION_ABORTED && timed_out)
        return MSGPIPE__W_IO_TIMEOUT;
    if (*err == 0)
        *err = e;
    return MSGPIPE__W_IO_ERR;
}

static int msgpipe__w_io_rc(int r, DWORD err)
{
    if (r == MSGPIPE__W_IO_TIMEOUT) {
        msgpipe__set_os_error(WAIT_TIMEOUT);
        return MSGPIPE_ETIMEDOUT;
    }
    return msgpipe__w_error(err);
}

/* ---- Spinning (msgpipe_options.spin_us) ---------------------------------
 *
 * Before a receive blocks on its pending zero-byte read, or a send on the
 * write in flight, it looks again and again whether that I/O has finished
 * for up to spin_us, calling SwitchToThread() between two looks: with
 * nothing else ready to run on its CPU that returns at once; with a peer
 * on the same CPU, the peer runs (as posix/posix_stream.c's "Spinning"
 * explains).  The wait that follows then returns at once, or blocks for
 * the rest of the time.  Never with timeout 0, nor with less than spin_us
 * left.  A receive looks with WaitForSingleObject(ready_ev, 0), which the
 * read's completion signals (and which, under Wine, also lets the
 * completion be delivered to this thread); a send looks whether the
 * port's dispatcher has taken its write's completion (tx_seen), as
 * msgpipe__w_tx_wait does before it blocks. */

int64_t msgpipe__w_now_us(void)
{
    LARGE_INTEGER c, f;

    QueryPerformanceCounter(&c);
    QueryPerformanceFrequency(&f);
    return (int64_t)(c.QuadPart / f.QuadPart * 1000000 +
                     c.QuadPart % f.QuadPart * 1000000 / f.QuadPart);
}

/* When a spin before a wait until deadline ends (msgpipe__w_now_us), or -1
 * if there is none. */
int64_t msgpipe__w_spin_end(const msgpipe *p, int64_t deadline)
{
    if (p->spin_us <= 0 || deadline == 0)
        return -1;
    if (deadline > 0 &&
        (int64_t)msgpipe__remaining(deadline) * 1000 < p->spin_us)
        return -1;
    return msgpipe__w_now_us() + p->spin_us;
}

/* Spin until the armed zero-byte read has finished or the spin is over. */
static void msgpipe__w_spin_rx(msgpipe *p, int64_t deadline)
{
    int64_t end = msgpipe__w_spin_end(p, deadline);

    if (end < 0)
        return;
    do {
        if (msgpipe__w_ov_done(&p->arm_ov) ||
            msgpipe__w32.WaitForSingleObject(p->ready_ev, 0) != WAIT_TIMEOUT)
            return;
        SwitchToThread();
    } while (msgpipe__w_now_us() < end);
}

/* Spin until the writes in flight have finished (their completion packets
 * taken by the port's dispatcher: see msgpipe__w_tx_wait) or the spin is
 * over. */
static int msgpipe__w_tx_idle(msgpipe *p)
{
    return (!p->tx_busy || InterlockedOr(&p->tx_seen, 0)) &&
           (!p->tx_hbusy || InterlockedOr(&p->tx_hseen, 0));
}

static void msgpipe__w_spin_tx(msgpipe *p, int64_t deadline)
{
    int64_t end;

    if (p->spin_us <= 0 || msgpipe__w_tx_idle(p))
        return; /* no spin, or nothing to wait for: no clock read */
    end = msgpipe__w_spin_end(p, deadline);
    if (end < 0)
        return;
    do {
        SwitchToThread();
        if (msgpipe__w_tx_idle(p))
            return;
    } while (msgpipe__w_now_us() < end);
}

/* ---- Pipes --------------------------------------------------------------- */

int msgpipe__w_ov_done(const OVERLAPPED *ov)
{
    return *(const volatile ULONG_PTR *)&ov->Internal !=
           (ULONG_PTR)STATUS_PENDING;
}

void msgpipe__w_pipe_opts(msgpipe *p, int server_end, const msgpipe__opts *o)
{
    p->server_end = server_end;
    p->max_message = o->max_message;
    p->linger_ms = o->linger_ms;
    p->spin_us = o->spin_us;
}

int msgpipe__w_pipe_new(HANDLE h, int server_end, ULONG_PTR key,
                        const msgpipe__opts *o, msgpipe **out)
{
    msgpipe *p = (msgpipe *)msgpipe__calloc(1, sizeof(*p));
    int rc = MSGPIPE_OK;

    if (p == NULL)
        return MSGPIPE_ENOMEM;
    p->h = h;
    msgpipe__w_pipe_opts(p, server_end, o);
    p->rx_state = MSGPIPE__W_RX_IDLE;
    p->rd_ev = CreateEventW(NULL, TRUE, FALSE, NULL);
    p->ready_ev = CreateEventW(NULL, TRUE, FALSE, NULL);
    p->tx_ev = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (p->rd_ev == NULL || p->ready_ev == NULL || p->tx_ev == NULL)
        rc = msgpipe__w_error(GetLastError());
    /* Last, as it cannot be undone: a handle is bound to a port for good
     * (and a failed accept leaves the handle in its slot for the next). */
    else if (key != 0)
        msgpipe__w_port_retarget(key, MSGPIPE__W_KEY_PIPE, p);
    else
        rc = msgpipe__w_port_bind(h, MSGPIPE__W_KEY_PIPE, p, &key);
    if (rc != MSGPIPE_OK) {
        if (p->rd_ev != NULL)
            CloseHandle(p->rd_ev);
        if (p->ready_ev != NULL)
            CloseHandle(p->ready_ev);
        if (p->tx_ev != NULL)
            CloseHandle(p->tx_ev);
        msgpipe__free(p);
        return rc;
    }
    p->key = key;
    /* No write in flight; and whether one that completes at once posts a
     * packet too (where the mode is refused, it does). */
    p->tx_seen = 1;
    p->tx_hseen = 1;
    p->tx_skip = SetFileCompletionNotificationModes(
                     h, FILE_SKIP_COMPLETION_PORT_ON_SUCCESS) != 0;
    *out = p;
    return MSGPIPE_OK;
}

/*
 * Wait until the write of ov has ended (or the deadline).  The port's
 * dispatcher sets tx_ev after a write that went pending has ended; it may
 * also set it for an earlier write, so it is only a reason to look again,
 * and is reset only before a look that comes before the wait.
 */
static int msgpipe__w_tx_wait(msgpipe *p, LONG volatile *seen, int64_t deadline)
{
    int rc;

    for (;;) {
        if (InterlockedOr(seen, 0))
            return MSGPIPE_OK;
        ResetEvent(p->tx_ev);
        if (InterlockedOr(seen, 0))
            return MSGPIPE_OK;
        rc = msgpipe__w_wait_until(p->tx_ev, deadline);
        if (rc != MSGPIPE_OK)
            return rc;
    }
}

/*
 * Take the result of the write in flight, waiting until the deadline:
 * MSGPIPE_OK (none in flight, or it was written whole), ETIMEDOUT (still in
 * flight), or the error it ended with (ECLOSED: the peer went away before
 * reading it).  The header of a split message is issued first and so ends
 * first.
 */
static int msgpipe__w_tx_finish(msgpipe *p, int64_t deadline)
{
    LPOVERLAPPED ov;
    DWORD n, e;
    BOOL ok;
    int rc = MSGPIPE_OK, wrc, mine;

    while (p->tx_busy || p->tx_hbusy) {
        ov = p->tx_hbusy ? &p->tx_hov : &p->tx_ov;
        wrc = msgpipe__w_tx_wait(p, p->tx_hbusy ? &p->tx_hseen : &p->tx_seen,
                                 deadline);
        if (wrc != MSGPIPE_OK)
            return rc != MSGPIPE_OK ? rc /* the split header failed */ : wrc;
        n = 0;
        ok = msgpipe__w32.GetOverlappedResult(p->h, ov, &n, FALSE);
        e = ok ? 0 : GetLastError();
        if (ov == &p->tx_hov) {
            /* The header of a split message: the handle copies are the
             * peer's once it is delivered. */
            InterlockedExchange(&p->tx_hbusy, 0);
            mine = 1;
            if (ok && n != p->tx_hlen) {
                ok = FALSE;
                e = ERROR_WRITE_FAULT;
            }
        } else {
            InterlockedExchange(&p->tx_busy, 0);
            mine = !p->tx_split;
            if (ok && n != p->tx_len) {
                ok = FALSE; /* message-mode writes are all or nothing */
                e = ERROR_WRITE_FAULT;
            }
        }
        if (mine) {
            /* Not delivered: the handle copies it carried go again. */
            if (!ok)
                msgpipe__w_close_remote(p->peer_proc, p->tx_dup, p->tx_ndup);
            p->tx_ndup = 0; /* else delivered: they are the peer's now */
        }
        if (!ok && rc == MSGPIPE_OK)
            rc = msgpipe__w_error(e);
    }
    return rc;
}

static void msgpipe__w_rx_close_queued(msgpipe *p);
static void msgpipe__w_held_close(msgpipe *p);

/*
 * Close is graceful: a message whose send returned MSGPIPE_OK is in the
 * pipe's buffer, already read, or in flight (see msgpipe__b_send), and
 * CloseHandle keeps buffered data readable by the peer, which then gets
 * ERROR_BROKEN_PIPE.  A write in flight is waited for first, for at most
 * linger_ms; then it is cancelled (a msgpipe reader, which reads a message
 * whole, then sees none of it; a reader that had read part of it sees the
 * rest missing).  DisconnectNamedPipe would discard buffered data, so it is
 * never called on an accepted pipe; nor is FlushFileBuffers, which would
 * block until the peer has read everything.
 */
void msgpipe__b_close(msgpipe *p)
{
    DWORD n;

    if (p->tcp != NULL) {
        msgpipe__w_tcp_close(p);
        return;
    }
    msgpipe__w_pl_forget(p, NULL);
    if (p->tx_busy || p->tx_hbusy)
        msgpipe__w_tx_finish(p, msgpipe__deadline(p->linger_ms));
    if (p->tx_busy || p->tx_hbusy) { /* still in flight after linger_ms (or
                                        a wait failed): cut it off */
        if (p->tx_hbusy)
            msgpipe__w32.CancelIoEx(p->h, &p->tx_hov);
        if (p->tx_busy)
            msgpipe__w32.CancelIoEx(p->h, &p->tx_ov);
        msgpipe__w_tx_finish(p, -1);
        /* Should a wait fail, the kernel may still own tx_ov: wait for it
         * directly before p is freed. */
        while (!InterlockedOr(&p->tx_seen, 0) ||
               !InterlockedOr(&p->tx_hseen, 0))
            Sleep(1);
    }
    /* The armed zero-byte read writes into p->arm_ov when it ends: cancel
     * it and wait for that before p is freed.  (ready_ev belongs to this
     * read alone, so GetOverlappedResult can wait on it.) */
    if (p->rx_state == MSGPIPE__W_RX_ARMED) {
        msgpipe__w32.CancelIoEx(p->h, &p->arm_ov);
        msgpipe__w32.GetOverlappedResult(p->h, &p->arm_ov, &n, TRUE);
    }
    /* Handles of a split message whose payload never came. */
    if (p->held_on)
        msgpipe__w_held_close(p);
    msgpipe__w_rx_close_queued(p);
    /* Nothing of p is the system's any more; once the key is released the
     * port's dispatcher no longer uses p either. */
    msgpipe__w_port_release(p->key);
    CloseHandle(p->h);
    CloseHandle(p->rd_ev);
    CloseHandle(p->ready_ev);
    CloseHandle(p->tx_ev);
    if (p->peer_proc != NULL && p->peer_proc != GetCurrentProcess())
        CloseHandle(p->peer_proc);
    msgpipe__free(p->tx_buf);
    msgpipe__free(p->stash);
    msgpipe__free(p);
}

/* ---- Sending ------------------------------------------------------------- */

/*
 * One WriteFile is one message, and a message is never withdrawn once its
 * write has been issued: a reader may already have taken part of it (a
 * plain Win32 reader with a small buffer does: ERROR_MORE_DATA), and
 * Windows documents nothing about what a cancelled, partly read write
 * leaves.  So, as on POSIX, a send whose time runs out while its message
 * is going out returns MSGPIPE_OK: the message is committed, and the write
 * goes on by itself, from a copy the pipe owns, while the peer reads (the
 * kernel does it; nothing on this side has to run).  The next send first
 * waits for it, within its own timeout: if the time runs out before that
 * write is done, that next message is not sent at all and the call returns
 * MSGPIPE_ETIMEDOUT.  Close waits for it for at most linger_ms.
 *
 * A message that fits in the free part of the pipe's buffer completes its
 * write at once; a larger one stays in flight until the reader has taken
 * it.  A send with a finite timeout therefore copies the message first
 * (into a buffer the pipe keeps for the next one: see MSGPIPE__W_TX_KEEP),
 * because its write may outlive the call; a send with no timeout writes
 * from the caller's buffer and returns only when done.
 * The write reports to the process's completion port, so the exit of the
 * thread that issued it does not cancel it (see the top of this file).
 */
int msgpipe__w_send_ex(msgpipe *p, const unsigned char *hdr, size_t hlen,
                       const void *msg, size_t len, int timeout_ms,
                       const uint64_t *dup, size_t ndup, int split)
{
    static const unsigned char empty = 0;
    int64_t deadline = msgpipe__deadline(timeout_ms);
    const void *src = len > 0 ? msg : (const void *)&empty;
    size_t pre = split ? 0 : hlen; /* what goes in front of msg */
    size_t total = pre + len;
    DWORD e;
    int rc;

    /* max_message is the payload's limit; WriteFile takes a 32-bit count
     * and a message cannot be split. */
    if ((uint64_t)len > p->max_message ||
        (uint64_t)len > (uint64_t)MAXDWORD - pre) {
        rc = MSGPIPE_EMSGSIZE;
        goto not_sent;
    }
    /* The message committed before this one goes first. */
    msgpipe__w_spin_tx(p, deadline);
    rc = msgpipe__w_tx_finish(p, deadline);
    if (rc != MSGPIPE_OK)
        goto not_sent;
    if ((timeout_ms != MSGPIPE_INFINITE || pre > 0) && total > 0) {
        if (total > p->tx_cap ||
            (p->tx_cap > MSGPIPE__W_TX_KEEP && total < p->tx_cap / 4)) {
            size_t cap =
                total > MSGPIPE__W_TX_KEEP ? total : MSGPIPE__W_TX_KEEP;
            unsigned char *b = (unsigned char *)msgpipe__malloc(cap);
            if (b == NULL) {
                rc = MSGPIPE_ENOMEM;
                goto not_sent;
            }
            msgpipe__free(p->tx_buf);
            p->tx_buf = b;
            p->tx_cap = cap;
        }
        if (pre > 0)
            memcpy(p->tx_buf, hdr, pre);
        if (len > 0)
            memcpy(p->tx_buf + pre, msg, len);
        src = p->tx_buf;
    }
    p->tx_split = split;
    if (split) {
        /*
         * The header alone first, then the payload as the next message,
         * both issued before either is waited for: a write the pipe's
         * buffer can hold completes at once, so the header - and with it
         * the handle values - is the receiver's even if this process dies
         * while the payload is still going out (the receiver then closes
         * them at ECLOSED).  In one message, a killed writer's message
         * vanishes, and the copies already in the receiver with it.  The
         * receiver takes the next message as the payload (sends on a pipe
         * are one at a time) and checks its length.
         */
        memcpy(p->tx_hbuf, hdr, hlen);
        memset(&p->tx_hov, 0, sizeof(p->tx_hov));
        p->tx_hlen = (DWORD)hlen;
        InterlockedExchange(&p->tx_hseen, 0);
        if (!msgpipe__w32.WriteFile(p->h, p->tx_hbuf, (DWORD)hlen, NULL,
                                    &p->tx_hov)) {
            e = GetLastError();
            if (e != ERROR_IO_PENDING) {
                InterlockedExchange(&p->tx_hseen, 1); /* no packet comes */
                rc = msgpipe__w_error(e);
                goto not_sent;
            }
        } else if (p->tx_skip) {
            InterlockedExchange(&p->tx_hseen, 1); /* no packet comes */
        }
        /* Issued: the copies go with it (msgpipe__w_tx_finish). */
        if (ndup > 0)
            memcpy(p->tx_dup, dup, ndup * sizeof(dup[0]));
        p->tx_ndup = ndup;
        InterlockedExchange(&p->tx_hbusy, 1);
    }
    memset(&p->tx_ov, 0, sizeof(p->tx_ov)); /* no event: see above */
    p->tx_len = (DWORD)total;
    InterlockedExchange(&p->tx_seen, 0);
    if (!msgpipe__w32.WriteFile(p->h, src, (DWORD)total, NULL, &p->tx_ov)) {
        e = GetLastError();
        if (e != ERROR_IO_PENDING) {
            InterlockedExchange(&p->tx_seen, 1); /* no packet comes */
            rc = msgpipe__w_error(e);            /* nothing of it was written */
            if (!split)
                goto not_sent;
            /* Withdraw the header if it is still there to withdraw (its
             * copies go with it); one that got through finds a payload of
             * the wrong length, or the end, at the receiver, which then
             * closes its handles. */
            msgpipe__w32.CancelIoEx(p->h, &p->tx_hov);
            msgpipe__w_tx_finish(p, -1);
            return rc;
        }
    } else if (p->tx_skip) {
        InterlockedExchange(&p->tx_seen, 1); /* at once: no packet comes */
    }
    /* Issued: from here on the message is committed.  Its result decides
     * the fate of the handle copies it carries (msgpipe__w_tx_finish). */
    if (!split) {
        if (ndup > 0)
            memcpy(p->tx_dup, dup, ndup * sizeof(dup[0]));
        p->tx_ndup = ndup;
    }
    InterlockedExchange(&p->tx_busy, 1);
    msgpipe__w_spin_tx(p, deadline);
    rc = msgpipe__w_tx_finish(p, deadline);
    if (rc == MSGPIPE_ETIMEDOUT)
        return MSGPIPE_OK; /* in flight, from p->tx_buf */
    return rc;

not_sent:
    msgpipe__w_close_remote(p->peer_proc, dup, ndup);
    return rc;
}

void msgpipe__w_close_remote(HANDLE proc, const uint64_t *v, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        DuplicateHandle(proc, (HANDLE)(uintptr_t)v[i], NULL, NULL, 0, FALSE,
                        DUPLICATE_CLOSE_SOURCE);
}

/*
 * A plain message that happens to begin with the magic of a handle message
 * goes out behind a header that carries no handles, so that the receiver
 * gives back exactly the payload (docs/decisions.md).
 */
int msgpipe__b_send(msgpipe *p, const void *msg, size_t len, int timeout_ms)
{
    unsigned char hdr[MSGPIPE__W_HDR];

    if (p->tcp != NULL)
        return msgpipe__w_tcp_send(p, msg, len, timeout_ms);
    if (len >= MSGPIPE__W_MAGIC_LEN &&
        memcmp(msg, msgpipe__w_magic, MSGPIPE__W_MAGIC_LEN) == 0) {
        memset(hdr, 0, sizeof(hdr));
        memcpy(hdr, msgpipe__w_magic, MSGPIPE__W_MAGIC_LEN);
        return msgpipe__w_send_ex(p, hdr, MSGPIPE__W_HDR, msg, len, timeout_ms,
                                  NULL, 0, 0);
    }
    return msgpipe__w_send_ex(p, NULL, 0, msg, len, timeout_ms, NULL, 0, 0);
}

/* ---- Receiving ----------------------------------------------------------- */

/*
 * How a message is received without ever splitting it:
 *
 * 1. PeekNamedPipe tells the bytes left in the message at the front of the
 *    pipe without consuming anything.  It cannot tell an empty message from
 *    an empty pipe, so when it reports 0,
 * 2. a zero-byte overlapped ReadFile waits for the next message.  If that
 *    message is non-empty, the read completes with ERROR_MORE_DATA and
 *    consumes nothing (Python's multiprocessing relies on the same); if it
 *    is empty, the read consumes it and succeeds.  (That is Windows 8 and
 *    later, and Wine; Windows 7 left the empty message queued.)
 * 3. Knowing the size, the call can answer ENOBUFS or EMSGSIZE without
 *    touching the message, or read it whole with one ReadFile of exactly
 *    that size.
 *
 * Reading a message whole matters beyond ENOBUFS: if a reader consumed part
 * of a message and its writer then cancelled the write (a send timeout),
 * Windows would drop the rest and the reader would see a truncated message.
 *
 * The only partial reads are the draining of an oversized message (which is
 * discarded anyway, chunk by chunk, checking with PeekNamedPipe where it
 * ends) and the rare case where the message at the front changed between
 * the peek and the read (a writer withdrew it): then the bytes already read
 * are kept in p->stash and handed out, followed by the rest, by the next
 * receive.
 */

/*
 * Readiness.
 *
 * The zero-byte read of step 2 is also what makes a pipe waitable
 * (msgpipe_poll, msgpipe_native_handle).  It is issued with the pipe's own
 * OVERLAPPED (arm_ov) and event (ready_ev), and it may stay outstanding
 * between calls: a receive that times out leaves it "armed" instead of
 * cancelling it, and a poll arms it on an idle pipe.  When a message or the
 * end of the pipe arrives, the read completes and the system sets
 * ready_ev; nothing polls.  The states (p->rx_state):
 *
 *   IDLE   nothing outstanding, nothing known (after a receive took a
 *          message, or found one it could not deliver and left it queued);
 *   ARMED  the read is outstanding: nothing was waiting when it was issued,
 *          and ready_ev is set exactly when that changes;
 *   DONE   it completed (harvested): a non-empty message waits untouched
 *          (ERROR_MORE_DATA), or the end or an error, or an empty message
 *          that the read consumed - remembered in p->rx_empty and returned
 *          by the next receive.
 *
 * There is only ever one read waiting for the next message: a receive that
 * finds the pipe ARMED waits on that read rather than issuing another, and
 * data reads (rx_take, rx_drain) are only issued once the size of a
 * message at the front is known, i.e. never while ARMED.  So no two reads
 * race for one message.  Sends do not touch any of this.
 *
 * A zero-byte read can also end with ERROR_OPERATION_ABORTED without
 * anybody cancelling it: Windows (and Wine) cancel the pending I/O of a
 * thread when it exits, and the thread that armed the read (a poll, a
 * receive that timed out) may have.  That is no news about the pipe; the
 * read is simply issued again.
 */

enum {
    MSGPIPE__W_ARM_PENDING, /* armed: nothing waiting yet */
    MSGPIPE__W_ARM_EMPTY,   /* an empty message was consumed (rx_empty) */
    MSGPIPE__W_ARM_MORE,    /* a non-empty message waits */
    MSGPIPE__W_ARM_ERR      /* failed at once (*err); usually the end */
};

/* Issue the zero-byte read on an IDLE pipe. */
static int msgpipe__w_rx_arm(msgpipe *p, DWORD *err)
{
    DWORD e;

    memset(&p->arm_ov, 0, sizeof(p->arm_ov));
    /* In a poller, the completion goes to the port as well, for the
     * poller; otherwise to the event alone. */
    p->arm_port = InterlockedCompareExchange(&p->pl_in, 0, 0) != 0;
    p->arm_ov.hEvent =
        p->arm_port ? p->ready_ev : MSGPIPE__W_NOPORT(p->ready_ev);
    /* ReadFile resets the event itself; resetting it first as well costs
     * little and does not depend on that.  It is never reset after the
     * read is issued, so a completion cannot be lost. */
    ResetEvent(p->ready_ev);
    if (msgpipe__w32.ReadFile(p->h, &p->arm_buf, 0, NULL, &p->arm_ov)) {
        p->rx_state = MSGPIPE__W_RX_DONE;
        p->rx_empty = 1;
        SetEvent(p->ready_ev);
        return MSGPIPE__W_ARM_EMPTY;
    }
    e = GetLastError();
    if (e == ERROR_IO_PENDING) {
        p->rx_state = MSGPIPE__W_RX_ARMED;
        return MSGPIPE__W_ARM_PENDING;
    }
    /* Completed at once: make sure the event says so (a read that fails at
     * once signals nothing). */
    p->rx_state = MSGPIPE__W_RX_DONE;
    SetEvent(p->ready_ev);
    if (e == ERROR_MORE_DATA)
        return MSGPIPE__W_ARM_MORE;
    *err = e;
    return MSGPIPE__W_ARM_ERR;
}

/* The ARMED read has completed: take its result.  Leaves DONE (ready_ev
 * set by the completion) or, for a read cancelled by its thread's exit,
 * IDLE.  Returns 1 if it said "a non-empty message waits". */
static int msgpipe__w_rx_harvest(msgpipe *p)
{
    DWORD n;

    p->rx_state = MSGPIPE__W_RX_DONE;
    if (msgpipe__w32.GetOverlappedResult(p->h, &p->arm_ov, &n, FALSE)) {
        p->rx_empty = 1;
        return 0;
    }
    switch (GetLastError()) {
    case ERROR_MORE_DATA:
        return 1;
    case ERROR_OPERATION_ABORTED:
        p->rx_state = MSGPIPE__W_RX_IDLE;
        return 0;
    default:
        /* The end of the pipe (or an error): the next peek meets it. */
        return 0;
    }
}

/*
 * msgpipe__w_rx_ready - would a receive with timeout 0 return something
 * other than ETIMEDOUT?  Never blocks.  If not, the pipe is left ARMED,
 * so that ready_ev becomes signalled when the answer changes.  If so,
 * ready_ev is signalled.  Counts as receiving (see msgpipe_poll).
 */
static int msgpipe__w_rx_ready(msgpipe *p)
{
    DWORD err;
    int tries;

    /* A message (or its head) msgpipe already holds. */
    if (p->stash != NULL) {
        SetEvent(p->ready_ev);
        return 1;
    }
    for (tries = 0; tries < 4; tries++) {
        switch (p->rx_state) {
        case MSGPIPE__W_RX_DONE:
            return 1;
        case MSGPIPE__W_RX_ARMED:
            if (!msgpipe__w_ov_done(&p->arm_ov))
                return 0;
            msgpipe__w_rx_harvest(p);
            break; /* DONE, or IDLE after an abort: look again */
        default:
            if (msgpipe__w_rx_arm(p, &err) == MSGPIPE__W_ARM_PENDING)
                return 0;
            return 1;
        }
    }
    /* Reads that keep being aborted: let a receive sort it out. */
    SetEvent(p->ready_ev);
    return 1;
}

static void msgpipe__w_stash_drop(msgpipe *p);
static int msgpipe__w_rx_drain(msgpipe *p, uint64_t size, int64_t deadline);

/* The size of the next message, without consuming it; or *empty = 1 if it
 * was an empty message, which has then been consumed. */
static int msgpipe__w_rx_next(msgpipe *p, int64_t deadline, uint64_t *size,
                              int *empty)
{
    DWORD avail, left, err;
    int odd = 0, more = 0;

    *empty = 0;
    if (p->rx_draining) {
        /* The rest of a discarded message comes first. */
        int rc = msgpipe__w_rx_drain(p, 0, deadline);
        if (rc != MSGPIPE_OK)
            return rc;
    }
    for (;;) {
        if (p->rx_state == MSGPIPE__W_RX_ARMED) {
            if (!msgpipe__w_ov_done(&p->arm_ov)) {
                msgpipe__w_spin_rx(p, deadline);
                /* On ETIMEDOUT nothing came.  The read stays armed:
                 * ready_ev will say when something does (the rule of
                 * msgpipe_native_handle: receive until ETIMEDOUT, then
                 * wait). */
                int rc = msgpipe__w_wait_until(p->ready_ev, deadline);
                if (rc != MSGPIPE_OK)
                    return rc;
                if (!msgpipe__w_ov_done(&p->arm_ov)) {
                    /* Not possible while armed (only the completion sets
                     * ready_ev); should it happen, reset and look again
                     * rather than spin. */
                    ResetEvent(p->ready_ev);
                    continue;
                }
            }
            if (msgpipe__w_rx_harvest(p))
                more = 1;
            continue;
        }
        if (p->rx_empty) {
            p->rx_empty = 0;
            p->rx_state = MSGPIPE__W_RX_IDLE;
            *empty = 1;
            *size = 0;
            return MSGPIPE_OK;
        }
        /* IDLE or DONE: whatever the read saw is examined again now, and
         * after this receive nothing is known. */
        p->rx_state = MSGPIPE__W_RX_IDLE;
        avail = left = 0;
        if (!msgpipe__w32.PeekNamedPipe(p->h, NULL, 0, NULL, &avail, &left)) {
            /* The peer closed and nothing is left.  A stash is the head of
             * a message whose rest never came (its writer was cut off):
             * not a message, never handed out as one. */
            msgpipe__w_stash_drop(p);
            return msgpipe__w_error(GetLastError());
        }
        if (p->stash != NULL) {
            /* The rest of the stashed message is at the front.  If nothing
             * of it is left, its writer withdrew it (a foreign writer that
             * cancelled its write after part of it was read): the head is
             * not a message either; drop it and look at what follows. */
            if (left > 0 && (p->stash_rest == 0 || left == p->stash_rest)) {
                *size = (uint64_t)p->stash_len + left;
                return MSGPIPE_OK;
            }
            /* Or the front is not the rest that must follow (its count
             * differs): the rest was withdrawn and this is the next
             * message, never to be merged with the head. */
            msgpipe__w_stash_drop(p);
        }
        if (left > 0) {
            *size = left;
            return MSGPIPE_OK;
        }
        /* The zero-byte read said "a non-empty message is there" and yet
         * the peek reports bytes in the pipe but none in the first message:
         * once may be an empty message that arrived in between; twice means
         * a system whose PeekNamedPipe does not report message sizes.
         * Windows and Wine do; failing beats spinning.  (An empty pipe
         * after ERROR_MORE_DATA is fine: the writer withdrew its message.) */
        odd = (more && avail > 0) ? odd + 1 : 0;
        if (odd >= 2)
            return msgpipe__w_error(ERROR_NOT_SUPPORTED);
        more = 0;
        switch (msgpipe__w_rx_arm(p, &err)) {
        case MSGPIPE__W_ARM_PENDING:
        case MSGPIPE__W_ARM_EMPTY:
            break; /* wait for it / return the empty message, above */
        case MSGPIPE__W_ARM_MORE:
            more = 1; /* a non-empty message is there: peek for its size */
            break;
        default:
            p->rx_state = MSGPIPE__W_RX_IDLE;
            return msgpipe__w_error(err);
        }
    }
}

/* Keep the first len bytes of the current message, which were read into
 * buf, for the next receive.  buf may be p->stash's new block (owned). */
static int msgpipe__w_stash_keep(msgpipe *p, unsigned char *buf, size_t len,
                                 int own)
{
    unsigned char *s = buf;

    if (!own) {
        s = (unsigned char *)msgpipe__malloc(len ? len : 1);
        if (s == NULL)
            return MSGPIPE_ENOMEM;
        memcpy(s, buf, len);
    }
    msgpipe__free(p->stash);
    p->stash = s;
    p->stash_len = len;
    return MSGPIPE_OK;
}

static void msgpipe__w_stash_drop(msgpipe *p)
{
    msgpipe__free(p->stash);
    p->stash = NULL;
    p->stash_len = 0;
    p->stash_rest = 0;
}

/*
 * Read the current message, of `size` bytes by msgpipe__w_rx_next, into
 * dst (which has room for size bytes): the stash first, then the rest from
 * the pipe in one ReadFile.  *got is its real length.  MSGPIPE__W_IO_MORE
 * means the message turned out longer than size (it changed since the
 * peek); dst then holds its first size bytes.
 */
static int msgpipe__w_rx_take(msgpipe *p, unsigned char *dst, uint64_t size,
                              int64_t deadline, size_t *got, DWORD *err)
{
    size_t have = 0;
    DWORD n;
    int r;

    *got = 0;
    *err = 0;
    if (p->stash != NULL) {
        have = p->stash_len;
        memcpy(dst, p->stash, have);
    }
    /* size - have came from one DWORD of PeekNamedPipe. */
    r = msgpipe__w_io(p->h, p->rd_ev, dst + have, (DWORD)(size - have),
                      deadline, &n, err);
    if (r == MSGPIPE__W_IO_OK && have > 0 && n < size - have) {
        /* A message-mode read ends early only at the end of another
         * message: the stashed one's rest was withdrawn after the peek,
         * and this read took the next message whole.  It alone is the
         * message. */
        memmove(dst, dst + have, n);
        *got = n;
        return r;
    }
    *got = have + n;
    return r;
}

/*
 * Discard the current message, which is larger than max_message, without
 * storing it: read it in chunks into a scratch buffer until the read that
 * ends it.  Before each chunk PeekNamedPipe says how much of it is left, so
 * that every read finds its bytes already there, and a message cut short by
 * its writer ends the drain instead of eating the next message.
 *
 * p->rx_draining says a discard is under way, and p->rx_drain_left how
 * much of the message is still in the pipe.  If a read fails or times
 * out, the rest stays there, and the next receive drains it before
 * anything else - the rest of a message is never handed out as one.  And
 * if PeekNamedPipe reports another count than rx_drain_left, the message
 * is gone - a foreign writer withdrew the rest (cancelled its write) - and
 * what is at the front is the next message: the drain stops there.
 * size is the whole message's (from msgpipe__w_rx_next), or 0 to go on
 * with a drain under way.  Returns MSGPIPE_OK once the message is gone, or
 * the failure.
 */
static int msgpipe__w_rx_drain(msgpipe *p, uint64_t size, int64_t deadline)
{
    unsigned char small[512];
    unsigned char *buf;
    DWORD cap, avail, left, n, err;
    int r, rc = MSGPIPE_OK;

    if (!p->rx_draining) {
        p->rx_draining = 1;
        p->rx_drain_left = size - p->stash_len;
    }
    msgpipe__w_stash_drop(p);
    buf = (unsigned char *)msgpipe__malloc(MSGPIPE__W_DRAIN_CHUNK);
    cap = MSGPIPE__W_DRAIN_CHUNK;
    if (buf == NULL) {
        buf = small;
        cap = (DWORD)sizeof(small);
    }
    for (;;) {
        avail = left = 0;
        if (!msgpipe__w32.PeekNamedPipe(p->h, NULL, 0, NULL, &avail, &left) ||
            left == 0 || (uint64_t)left != p->rx_drain_left) {
            /* The pipe ended, or so did the message (or it was withdrawn
             * and this is the next one). */
            p->rx_draining = 0;
            break;
        }
        r = msgpipe__w_io(p->h, p->rd_ev, buf, left < cap ? left : cap,
                          deadline, &n, &err);
        p->rx_drain_left -= n;
        if (r == MSGPIPE__W_IO_MORE)
            continue;
        if (r == MSGPIPE__W_IO_OK)
            p->rx_draining = 0; /* the read that ended it */
        else
            rc = msgpipe__w_io_rc(r, err); /* the rest waits for later */
        break;
    }
    if (buf != small)
        msgpipe__free(buf);
    return rc;
}

/*
 * Handles with messages: the wire form.
 *
 * A message that carries handles is one message-mode message: 16 bytes of
 * magic (msgpipe__w_magic), the count n (uint32, little-endian, at most
 * MSGPIPE_MAX_HANDLES), a uint32 of flags (0), n handle values as uint64
 * little-endian - each already duplicated into the receiver's process by
 * the sender (msgpipe__b_send_handles) - and then the payload.  A plain
 * message that begins with the magic is sent behind a header with n = 0
 * (msgpipe__b_send), so every message is read back exactly as it was
 * sent.  A foreign peer that never sends the magic sees and sends plain
 * messages only.
 *
 * A large one (more than MSGPIPE__W_SPLIT_MIN bytes in all) is split: the
 * header alone, with flags 1, n >= 1 and after the values the payload's
 * length as a uint64, is one message, and the payload the next one (see
 * msgpipe__w_send_ex for why).  The receiver holds the handles of such a
 * header (p->held_*) until the payload comes, and closes them if the
 * end comes instead or a message of another length.
 */
const unsigned char msgpipe__w_magic[MSGPIPE__W_MAGIC_LEN] = {
    0x00, 'm', 's', 'g', 'p', 'i', 'p', 'e',
    0x00, 'h', 'a', 'n', 'd', 'l', 'e', 0x01};

/* How long a receive that has taken the header of a split message waits
 * for its payload at least, whatever its timeout: the sender issues both
 * writes at once, so the payload is there already or about to be. */
#define MSGPIPE__W_SPLIT_GRACE_MS 1000

enum {
    MSGPIPE__W_MSG_PLAIN,   /* no header: all of it is the payload */
    MSGPIPE__W_MSG_HANDLES, /* a header with *n handles, then the payload */
    MSGPIPE__W_MSG_SPLIT,   /* a header with *n handles alone */
    MSGPIPE__W_MSG_BAD      /* the magic, but a malformed header */
};

/* What msgpipe__w_rx_unwrap says of a split header it took. */
#define MSGPIPE__W_HELD 1

static uint32_t msgpipe__w_get_le32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
           (uint32_t)b[3] << 24;
}

static uint64_t msgpipe__w_get_le64(const unsigned char *b)
{
    return (uint64_t)msgpipe__w_get_le32(b) |
           (uint64_t)msgpipe__w_get_le32(b + 4) << 32;
}

/* What a message of total bytes is, from its first have bytes (have is at
 * least min(total, MSGPIPE__W_HDR_MAX)).  For a split header, *follow is
 * the length of the payload that follows. */
static int msgpipe__w_hdr_parse(const unsigned char *b, size_t have,
                                uint64_t total, uint32_t *n, uint64_t *follow)
{
    uint32_t flags;
    size_t vals;

    *n = 0;
    *follow = 0;
    if (total < MSGPIPE__W_MAGIC_LEN || have < MSGPIPE__W_MAGIC_LEN ||
        memcmp(b, msgpipe__w_magic, MSGPIPE__W_MAGIC_LEN) != 0)
        return MSGPIPE__W_MSG_PLAIN;
    if (total < MSGPIPE__W_HDR || have < MSGPIPE__W_HDR)
        return MSGPIPE__W_MSG_BAD;
    *n = msgpipe__w_get_le32(b + 16);
    flags = msgpipe__w_get_le32(b + 20);
    vals = MSGPIPE__W_HDR + 8 * (size_t)(*n <= MSGPIPE_MAX_HANDLES ? *n : 0);
    if (*n <= MSGPIPE_MAX_HANDLES && flags == 0 && total >= vals &&
        have >= vals)
        return MSGPIPE__W_MSG_HANDLES;
    if (*n >= 1 && *n <= MSGPIPE_MAX_HANDLES && flags == 1 &&
        total == vals + 8 && have >= vals + 8) {
        *follow = msgpipe__w_get_le64(b + vals);
        return MSGPIPE__W_MSG_SPLIT;
    }
    *n = 0;
    return MSGPIPE__W_MSG_BAD;
}

/* The first bytes (up to MSGPIPE__W_HDR_MAX) of the message at the front,
 * of size bytes, without consuming any: the stash, then a peek. */
static size_t msgpipe__w_rx_head(msgpipe *p, uint64_t size,
                                 unsigned char head[MSGPIPE__W_HDR_MAX])
{
    size_t want = size < MSGPIPE__W_HDR_MAX ? (size_t)size : MSGPIPE__W_HDR_MAX;
    size_t have = 0;
    DWORD got = 0;

    if (p->stash != NULL) {
        have = p->stash_len < want ? p->stash_len : want;
        memcpy(head, p->stash, have);
    }
    if (have < want &&
        msgpipe__w32.PeekNamedPipe(p->h, head + have, (DWORD)(want - have),
                                   &got, NULL, NULL))
        have += got;
    return have;
}

/* Close the handle values of a header in this process. */
static void msgpipe__w_close_values(const unsigned char *vals, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        CloseHandle((HANDLE)(uintptr_t)msgpipe__w_get_le64(vals + 8 * i));
}

/* Hand out the values v[0..n): the first hcap into h, the rest closed. */
static int msgpipe__w_give(const uint64_t *v, uint32_t n, msgpipe_native *h,
                           size_t hcap, size_t *nh)
{
    uint32_t i;

    for (i = 0; i < n; i++) {
        if (i < hcap)
            h[i] = (msgpipe_native)(uintptr_t)v[i];
        else
            CloseHandle((HANDLE)(uintptr_t)v[i]);
    }
    *nh = n < hcap ? n : hcap;
    return n > hcap ? MSGPIPE_EHANDLES : MSGPIPE_OK;
}

/* The held handles of a split message whose payload is not coming. */
static void msgpipe__w_held_close(msgpipe *p)
{
    uint32_t i;

    for (i = 0; i < p->held_n; i++)
        CloseHandle((HANDLE)(uintptr_t)p->held[i]);
    p->held_on = 0;
    p->held_n = 0;
}

/*
 * The message m of got bytes was received: find its payload (*off, *plen)
 * and hand out its handles.  MSGPIPE_OK; EHANDLES when it carried more
 * than hcap (the rest closed); MSGPIPE__W_HELD for the header of a split
 * message (its handles are now held for the payload); EPROTO for a
 * malformed header, or for handle values from a peer that does not run as
 * this user (then they are left alone: they may name anything of ours).
 */
static int msgpipe__w_rx_unwrap(msgpipe *p, const unsigned char *m, size_t got,
                                msgpipe_native *h, size_t hcap, size_t *nh,
                                size_t *off, size_t *plen)
{
    uint64_t v[MSGPIPE_MAX_HANDLES], follow;
    uint32_t n, i;
    int kind;

    *off = 0;
    *plen = got;
    kind = msgpipe__w_hdr_parse(m, got, got, &n, &follow);
    if (kind == MSGPIPE__W_MSG_PLAIN)
        return MSGPIPE_OK;
    if (kind == MSGPIPE__W_MSG_BAD || (n > 0 && !msgpipe__w_peer_trusted(p))) {
        msgpipe__set_os_error(ERROR_INVALID_DATA);
        return MSGPIPE_EPROTO;
    }
    for (i = 0; i < n; i++)
        v[i] = msgpipe__w_get_le64(m + MSGPIPE__W_HDR + 8 * i);
    if (kind == MSGPIPE__W_MSG_SPLIT) {
        memcpy(p->held, v, n * sizeof(v[0]));
        p->held_n = n;
        p->held_len = follow;
        p->held_on = 1;
        return MSGPIPE__W_HELD;
    }
    *off = MSGPIPE__W_HDR + 8 * (size_t)n;
    *plen = got - *off;
    return msgpipe__w_give(v, n, h, hcap, nh);
}

/* What msgpipe__w_rx_close_queued reads at most: messages, and bytes (a
 * large message ends it). */
#define MSGPIPE__W_CLOSE_MSGS 4096
#define MSGPIPE__W_CLOSE_PLAIN 65536
#define MSGPIPE__W_CLOSE_BYTES (4u << 20)

/*
 * At close: the handles of messages that are still queued would stay open
 * in this process - the sender duplicated them into it - so the messages
 * already there are read, without waiting, and the handles of each are
 * closed.  Bounded: it stops after a large message, after
 * MSGPIPE__W_CLOSE_BYTES, or at anything unexpected (a peer that keeps a
 * large message queued before handle messages can still leave some
 * open).
 */
static void msgpipe__w_rx_close_queued(msgpipe *p)
{
    unsigned char head[MSGPIPE__W_HDR_MAX], none;
    int64_t now = msgpipe__deadline(0);
    uint64_t size, plain = 0, follow;
    DWORD avail, left, n, err;
    uint32_t k;
    size_t hn;
    int i, kind;

    if (p->rx_draining && msgpipe__w_rx_drain(p, 0, now) != MSGPIPE_OK)
        return;
    for (i = 0; i < MSGPIPE__W_CLOSE_MSGS; i++) {
        avail = left = 0;
        if (!msgpipe__w32.PeekNamedPipe(p->h, NULL, 0, NULL, &avail, &left))
            return;
        if (p->stash == NULL && left == 0) {
            /* Nothing, or an empty message: a zero-byte read takes it. */
            if (avail == 0 || msgpipe__w_io(p->h, p->rd_ev, &none, 0, now, &n,
                                            &err) != MSGPIPE__W_IO_OK)
                return;
            continue;
        }
        size = (uint64_t)p->stash_len + left;
        hn = msgpipe__w_rx_head(p, size, head);
        kind = msgpipe__w_hdr_parse(head, hn, size, &k, &follow);
        if ((kind == MSGPIPE__W_MSG_HANDLES || kind == MSGPIPE__W_MSG_SPLIT) &&
            k > 0 && msgpipe__w_peer_trusted(p))
            msgpipe__w_close_values(head + MSGPIPE__W_HDR, k);
        /* The next one is looked at only if this one is cheap to skip. */
        plain += size;
        if (size > MSGPIPE__W_CLOSE_PLAIN || plain > MSGPIPE__W_CLOSE_BYTES)
            return;
        if (msgpipe__w_rx_drain(p, size, now) != MSGPIPE_OK || p->rx_draining)
            return;
    }
}

/*
 * The one receive path of msgpipe__b_recv (msg NULL: into buf, of cap
 * bytes), msgpipe__b_recv_alloc (into a new block, given in *msg) and
 * msgpipe__b_recv_handles (either, with handles into h[0..hcap)).
 *
 * recv_alloc allocates exactly the size PeekNamedPipe reports.  That is not
 * a length the peer announced: it is the count of bytes the peer has really
 * written (they sit in the pipe's buffer or in the writer's pending
 * WriteFile), measured by the system, and bounded by max_message first.
 *
 * A message with a header (see msgpipe__w_hdr_parse) is read whole like
 * any other and then unwrapped.  Only when its size decides ENOBUFS or
 * EMSGSIZE is its header peeked at first: the limits are the payload's.
 * The header of a split message is taken by itself, and then its payload,
 * the next message, is received as this one (raw: a payload is never
 * unwrapped).
 */
static int msgpipe__w_recv_in(msgpipe *p, unsigned char *buf, size_t cap,
                              void **msg, size_t *len, msgpipe_native *h,
                              size_t hcap, size_t *nh, int timeout_ms)
{
    int64_t deadline = msgpipe__deadline(timeout_ms), now;
    unsigned char head[MSGPIPE__W_HDR_MAX], hbuf[MSGPIPE__W_HDR_MAX];
    uint64_t size = 0, psize, follow;
    unsigned char *dst;
    size_t got, off, plen, hn;
    uint32_t n;
    DWORD err;
    int rc, r, empty, kind, own, raw;

    for (;;) {
        rc = msgpipe__w_rx_next(p, deadline, &size, &empty);
        if (rc != MSGPIPE_OK) {
            if (rc == MSGPIPE_ECLOSED && p->held_on)
                msgpipe__w_held_close(p); /* the payload never came */
            return rc;
        }
        raw = p->held_on;
        psize = size;
        kind = MSGPIPE__W_MSG_PLAIN;
        n = 0;
        hn = 0;
        if (raw) {
            if (empty || size != p->held_len) {
                /* Not the payload its header announced: the handles go,
                 * and this message is received next as itself. */
                msgpipe__w_held_close(p);
                if (empty) {
                    p->rx_empty = 1;
                    p->rx_state = MSGPIPE__W_RX_DONE;
                    SetEvent(p->ready_ev);
                }
                msgpipe__set_os_error(ERROR_INVALID_DATA);
                return MSGPIPE_EPROTO;
            }
        } else if (!empty && size >= MSGPIPE__W_MAGIC_LEN &&
                   (size > p->max_message || (msg == NULL && size > cap))) {
            hn = msgpipe__w_rx_head(p, size, head);
            kind = msgpipe__w_hdr_parse(head, hn, size, &n, &follow);
            if (kind == MSGPIPE__W_MSG_HANDLES)
                psize = size - (MSGPIPE__W_HDR + 8 * (uint64_t)n);
        }
        own = 0;
        if (kind == MSGPIPE__W_MSG_SPLIT) {
            /* A split header: taken by itself; the limits apply to the
             * payload that follows. */
            dst = hbuf;
        } else {
            if (!empty && psize > p->max_message) {
                /* Discarded: so are the handles it carries. */
                if (raw)
                    msgpipe__w_held_close(p);
                else if (kind == MSGPIPE__W_MSG_HANDLES && n > 0 &&
                         msgpipe__w_peer_trusted(p))
                    msgpipe__w_close_values(head + MSGPIPE__W_HDR, n);
                msgpipe__w_rx_drain(p, size, deadline);
                *len = (size_t)psize;
                return MSGPIPE_EMSGSIZE;
            }
            if (msg == NULL) {
                if (empty) {
                    *len = 0;
                    return MSGPIPE_OK;
                }
                if (psize > cap) {
                    *len = (size_t)psize; /* nothing consumed: queued */
                    return MSGPIPE_ENOBUFS;
                }
                if (size <= cap) {
                    dst = buf;
                } else {
                    /* The payload fits, its header does not: read it
                     * whole elsewhere (such messages are small). */
                    dst = (unsigned char *)msgpipe__malloc((size_t)size);
                    if (dst == NULL)
                        return MSGPIPE_ENOMEM; /* nothing consumed */
                    own = 1;
                }
            } else {
                if (size >= (uint64_t)SIZE_MAX)
                    return MSGPIPE_ENOMEM;
                dst = (unsigned char *)msgpipe__malloc((size_t)size + 1);
                if (dst == NULL) {
                    /* Nothing consumed: it stays queued.  An empty message
                     * was consumed by the zero-byte read; put it back. */
                    if (empty) {
                        p->rx_empty = 1;
                        p->rx_state = MSGPIPE__W_RX_DONE;
                        SetEvent(p->ready_ev);
                    }
                    return MSGPIPE_ENOMEM;
                }
                own = 1;
                if (empty) {
                    dst[0] = 0;
                    *msg = dst;
                    *len = 0;
                    return MSGPIPE_OK;
                }
            }
        }
        r = msgpipe__w_rx_take(p, dst, size, deadline, &got, &err);
        if (r == MSGPIPE__W_IO_OK) {
            msgpipe__w_stash_drop(p);
            if (raw) {
                off = 0;
                plen = got;
                rc = msgpipe__w_give(p->held, p->held_n, h, hcap, nh);
                p->held_on = 0;
                p->held_n = 0;
            } else {
                rc =
                    msgpipe__w_rx_unwrap(p, dst, got, h, hcap, nh, &off, &plen);
            }
            if (rc == MSGPIPE__W_HELD) {
                /* The payload is the next message: wait for it a little
                 * even with a short timeout. */
                if (own)
                    msgpipe__free(dst);
                now = msgpipe__now_ms();
                if (deadline >= 0 && deadline < now + MSGPIPE__W_SPLIT_GRACE_MS)
                    deadline = now + MSGPIPE__W_SPLIT_GRACE_MS;
                continue;
            }
            if (rc != MSGPIPE_EPROTO && msg == NULL && plen > cap) {
                /* Only if the message changed between the peek and the read
                 * (a writer withdrew the one peeked at): consumed, and too
                 * large for buf. */
                size_t i;
                for (i = 0; i < *nh; i++)
                    CloseHandle((HANDLE)h[i]);
                *nh = 0;
                msgpipe__set_os_error(ERROR_INVALID_DATA);
                rc = MSGPIPE_EPROTO;
            }
            if (rc == MSGPIPE_EPROTO) {
                if (own)
                    msgpipe__free(dst);
                return rc;
            }
            if (msg != NULL) {
                if (off > 0)
                    memmove(dst, dst + off, plen);
                dst[plen] = 0;
                *msg = dst;
            } else if (own) {
                memcpy(buf, dst + off, plen);
                msgpipe__free(dst);
            } else if (off > 0) {
                memmove(buf, buf + off, plen);
            }
            *len = plen;
            return rc;
        }
        if (r != MSGPIPE__W_IO_MORE) {
            if (own)
                msgpipe__free(dst);
            return msgpipe__w_io_rc(r, err);
        }
        /* The message grew under us: keep what was read (an allocated
         * block becomes the stash itself, which cannot fail). */
        rc = msgpipe__w_stash_keep(p, dst, got, own);
        if (rc != MSGPIPE_OK)
            return rc;
        /* A read that came back short: the rest of this size must follow.
         * (A full read that did not end the message means the message at
         * the front changed since the peek: its size is not known.) */
        p->stash_rest = got < size ? size - got : 0;
    }
}

/*
 * A pipe in a poller for MSGPIPE_POLLIN is left out of the poller's waits
 * only while its zero-byte read is armed and reports to the port (its
 * completion brings it back).  A receive that leaves it otherwise - it
 * took a message and the next one may be there already, or it found one
 * it could not deliver - has the poller look at it again.
 */
static int msgpipe__w_recv(msgpipe *p, unsigned char *buf, size_t cap,
                           void **msg, size_t *len, msgpipe_native *h,
                           size_t hcap, size_t *nh, int timeout_ms)
{
    int rc;

    if (p->tcp != NULL) {
        /* No handles travel over TCP: h is left alone, *nh stays 0. */
        (void)h;
        (void)hcap;
        (void)nh;
        return msgpipe__w_tcp_recv(p, buf, cap, msg, len, timeout_ms);
    }
    rc = msgpipe__w_recv_in(p, buf, cap, msg, len, h, hcap, nh, timeout_ms);
    if (InterlockedCompareExchange(&p->pl_in, 0, 0) != 0 &&
        (p->rx_state != MSGPIPE__W_RX_ARMED || !p->arm_port))
        msgpipe__w_pl_touch(p, NULL);
    return rc;
}

int msgpipe__b_recv(msgpipe *p, void *buf, size_t cap, size_t *len,
                    int timeout_ms)
{
    size_t nh = 0;

    return msgpipe__w_recv(p, (unsigned char *)buf, cap, NULL, len, NULL, 0,
                           &nh, timeout_ms);
}

int msgpipe__b_recv_alloc(msgpipe *p, void **msg, size_t *len, int timeout_ms)
{
    size_t nh = 0;

    return msgpipe__w_recv(p, NULL, 0, msg, len, NULL, 0, &nh, timeout_ms);
}

int msgpipe__b_recv_handles(msgpipe *p, void *buf, size_t cap, size_t *len,
                            msgpipe_native *h, size_t hcap, size_t *nh,
                            int timeout_ms)
{
    return msgpipe__w_recv(p, (unsigned char *)buf, cap, NULL, len, h, hcap, nh,
                           timeout_ms);
}

/* ---- Readiness for msgpipe_poll and outside event loops ------------------ */

int msgpipe__w_pipe_in_ready(msgpipe *p, HANDLE *wait)
{
    if (p->tcp != NULL)
        return msgpipe__w_tcp_in_ready(p, wait);
    *wait = p->ready_ev;
    return msgpipe__w_rx_ready(p);
}

int msgpipe__w_pipe_in_ready_port(msgpipe *p)
{
    DWORD n;

    if (p->tcp != NULL)
        return msgpipe__w_tcp_in_ready_port(p);
    /* A read armed before the pipe joined its poller reports to the event
     * alone: take it back (a zero-byte read consumes nothing unless it
     * completes, and then it is harvested) and arm one for the port. */
    if (p->rx_state == MSGPIPE__W_RX_ARMED && !p->arm_port &&
        InterlockedCompareExchange(&p->pl_in, 0, 0) != 0) {
        if (!msgpipe__w_ov_done(&p->arm_ov)) {
            msgpipe__w32.CancelIoEx(p->h, &p->arm_ov);
            msgpipe__w32.GetOverlappedResult(p->h, &p->arm_ov, &n, TRUE);
        }
        msgpipe__w_rx_harvest(p);
    }
    return msgpipe__w_rx_ready(p);
}

/* FILE_PIPE_LOCAL_INFORMATION and NtQueryInformationFile (winternl.h does
 * not declare them for user mode; they are documented in the WDK). */
typedef struct msgpipe__w_pipe_local_info {
    ULONG NamedPipeType;
    ULONG NamedPipeConfiguration;
    ULONG MaximumInstances;
    ULONG CurrentInstances;
    ULONG InboundQuota;
    ULONG ReadDataAvailable;
    ULONG OutboundQuota;
    ULONG WriteQuotaAvailable;
    ULONG NamedPipeState;
    ULONG NamedPipeEnd;
} msgpipe__w_pipe_local_info;

typedef struct msgpipe__w_iosb {
    union {
        LONG Status;
        PVOID Pointer;
    } u;
    ULONG_PTR Information;
} msgpipe__w_iosb;

typedef LONG(WINAPI *msgpipe__w_nqif_fn)(HANDLE, msgpipe__w_iosb *, PVOID,
                                         ULONG, int);

#define MSGPIPE__W_FILE_PIPE_LOCAL_INFORMATION 24
#define MSGPIPE__W_FILE_PIPE_CONNECTED_STATE 3

static int msgpipe__w_pipe_info(HANDLE h, msgpipe__w_pipe_local_info *info)
{
    /* Looked up once; racing threads store the same value. */
    static volatile LONG looked_up = 0;
    static msgpipe__w_nqif_fn volatile fn = NULL;
    msgpipe__w_iosb io;
    HMODULE ntdll;

    if (!looked_up) {
        ntdll = GetModuleHandleW(L"ntdll.dll");
        if (ntdll != NULL)
            fn = (msgpipe__w_nqif_fn)(void (*)(void))GetProcAddress(
                ntdll, "NtQueryInformationFile");
        looked_up = 1;
    }
    if (fn == NULL)
        return 0;
    memset(info, 0, sizeof(*info));
    memset(&io, 0, sizeof(io));
    return fn(h, &io, info, (ULONG)sizeof(*info),
              MSGPIPE__W_FILE_PIPE_LOCAL_INFORMATION) >= 0;
}

/*
 * msgpipe__w_pipe_out_ready - MSGPIPE_POLLOUT: would a send of a small
 * message with timeout 0 succeed (or fail at once)?  Such a send commits
 * its message whenever no earlier write is still in flight (see
 * msgpipe__b_send), so the pipe is ready exactly when
 *
 * 1. no write is in flight, or the one in flight has completed; or
 * 2. the peer is gone (the send then fails at once): NamedPipeState is not
 *    CONNECTED (Wine reports this correctly).
 *
 * Windows has no event for the completion of a write that reports to a
 * completion port, so msgpipe__b_poll re-checks every
 * MSGPIPE__W_OUT_TICK_MS while such an item is not ready; nothing else in
 * a poll ticks.
 */
int msgpipe__w_pipe_out_ready(msgpipe *p, int64_t now)
{
    msgpipe__w_pipe_local_info info;

    (void)now;
    if (p->tcp != NULL)
        return msgpipe__w_tcp_out_ready(p);
    if ((InterlockedCompareExchange(&p->tx_busy, 0, 0) == 0 ||
         InterlockedCompareExchange(&p->tx_seen, 0, 0) != 0) &&
        (InterlockedCompareExchange(&p->tx_hbusy, 0, 0) == 0 ||
         InterlockedCompareExchange(&p->tx_hseen, 0, 0) != 0))
        return 1;
    if (!msgpipe__w_pipe_info(p->h, &info))
        return 1;
    return info.NamedPipeState != MSGPIPE__W_FILE_PIPE_CONNECTED_STATE;
}

int msgpipe__b_native_handle(msgpipe *p, unsigned events, msgpipe_native *out)
{
    if (p->tcp != NULL)
        return msgpipe__w_tcp_native_handle(p, events, out);
    /* No waitable object exists for "room in a pipe" (see
     * msgpipe__w_pipe_out_ready). */
    if (events != MSGPIPE_POLLIN)
        return MSGPIPE_ENOTSUP;
    /* Arm the pipe, so that the event is exact from now on: signalled now
     * if something is waiting already, later when it arrives. */
    msgpipe__w_rx_ready(p);
    *out = (msgpipe_native)p->ready_ev;
    return MSGPIPE_OK;
}

/* A message-mode write is one message: a batch is one WriteFile each. */
int msgpipe__b_send_batch(msgpipe *p, const msgpipe_msg *msgs, size_t n,
                          size_t *sent, int timeout_ms)
{
    size_t i;

    for (i = 0; i < n; i++)
        if ((uint64_t)msgs[i].len > p->max_message)
            return MSGPIPE_EMSGSIZE;
    return msgpipe__send_batch_each(p, msgs, n, sent, timeout_ms);
}
