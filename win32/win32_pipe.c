/*
 * win32_pipe.c - the Win32 backend: named pipes in message mode.
 *
 * The twin of posix/posix_socket.c + posix/posix_stream.c; implements
 * api/backend.h.
 *
 * Wire format: none of our own.  One WriteFile is one message and one
 * message is read back whole, so any Win32 program that opens the pipe in
 * message mode (the seed's pywin32 client, Python's multiprocessing on
 * Windows) is a msgpipe peer.
 *
 * All handles are overlapped, so that every blocking call can have a
 * timeout (wait on the OVERLAPPED's event, then CancelIoEx) and so that one
 * thread may send while another receives on the same pipe: each direction
 * has its own event, and each operation its own OVERLAPPED on the stack of
 * the call, which never returns before the kernel is done with it.
 */
#include "win32_int.h"

#include <stdlib.h>
#include <string.h>

/* ---- Backend description ------------------------------------------------- */

/*
 * path_max is 256: "The entire pipe name string can be up to 256
 * characters long" (CreateNamedPipe).  The core counts UTF-8 bytes, so a
 * name with non-ASCII characters is limited a little more strictly than
 * Windows would (256 bytes rather than 256 UTF-16 units); it is never
 * truncated.
 */
const msgpipe__backend_info msgpipe__backend = {
    "win32-pipe",         /* name */
    MSGPIPE__STYLE_WIN32, /* style */
    256,                  /* path_max */
    0,                    /* abstract_names */
    4                     /* default_pending */
};

/* Size hint for each direction's buffer of a pipe instance.  A message
 * that fits in the free part of the buffer completes its WriteFile at once;
 * a larger one stays pending (in the writer's memory) until the reader has
 * taken it.  64 KiB is what the seed uses and Windows' own examples use. */
#define MSGPIPE__W_BUFSIZE 65536

/* At most this many pending instances: their events and the shutdown event
 * must fit in one WaitForMultipleObjects (MAXIMUM_WAIT_OBJECTS, 64).  A
 * larger `pending` option is silently capped. */
#define MSGPIPE__W_PENDING_MAX (MAXIMUM_WAIT_OBJECTS - 1)

/* Chunk size used to drain and discard a message over max_message. */
#define MSGPIPE__W_DRAIN_CHUNK 65536

/* ---- Handles ------------------------------------------------------------- */

struct msgpipe {
    HANDLE h;
    HANDLE rd_ev;   /* manual-reset event for reads */
    HANDLE wr_ev;   /* manual-reset event for writes */
    int server_end; /* 1: made by accept, 0: made by connect */
    uint64_t max_message;
    /*
     * The head of a message that had to be partly consumed (rare: see
     * msgpipe__w_rx_next).  stash_len bytes are held here; unless
     * stash_whole, the rest of the message is still in the pipe.
     */
    unsigned char *stash;
    size_t stash_len;
    int stash_whole;
};

struct msgpipe__w_inst {
    HANDLE h;      /* INVALID_HANDLE_VALUE when the slot is empty */
    OVERLAPPED ov; /* for ConnectNamedPipe; hEvent lives as long as the slot */
    int ready;     /* a client is connected and waits for accept */
};

struct msgpipe_server {
    WCHAR *wname;
    PSECURITY_DESCRIPTOR sd;
    msgpipe__opts opts;
    HANDLE stop_ev; /* manual-reset; set by msgpipe__b_server_shutdown */
    int n;
    int next; /* where the next accept starts looking (fairness) */
    struct msgpipe__w_inst *inst;
};

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

/* A deadline: -1 for none, else an absolute msgpipe__now_ms() value. */
static int64_t msgpipe__w_deadline(int timeout_ms)
{
    if (timeout_ms < 0)
        return -1;
    return msgpipe__now_ms() + timeout_ms;
}

/* Milliseconds left before the deadline, as a Win32 wait timeout. */
static DWORD msgpipe__w_left(int64_t deadline)
{
    int64_t left;

    if (deadline < 0)
        return INFINITE;
    left = deadline - msgpipe__now_ms();
    if (left <= 0)
        return 0;
    if (left >= (int64_t)INFINITE)
        return INFINITE - 1;
    return (DWORD)left;
}

/* The name as UTF-16 for the W calls; invalid UTF-8 is EBADNAME. */
static int msgpipe__w_wide(const msgpipe__name *name, WCHAR **out)
{
    int n;
    WCHAR *w;

    *out = NULL;
    n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, name->sys, -1, NULL,
                            0);
    if (n <= 0) {
        msgpipe__set_os_error((int)GetLastError());
        return MSGPIPE_EBADNAME;
    }
    w = (WCHAR *)malloc((size_t)n * sizeof(WCHAR));
    if (w == NULL)
        return MSGPIPE_ENOMEM;
    if (MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, name->sys, -1, w,
                            n) != n) {
        msgpipe__set_os_error((int)GetLastError());
        free(w);
        return MSGPIPE_EBADNAME;
    }
    *out = w;
    return MSGPIPE_OK;
}

/* ---- Overlapped I/O with a deadline -------------------------------------- */

enum {
    MSGPIPE__W_IO_OK,      /* completed; the whole message (read) or sent */
    MSGPIPE__W_IO_MORE,    /* read: ERROR_MORE_DATA, the message goes on */
    MSGPIPE__W_IO_TIMEOUT, /* cancelled at the deadline; nothing moved */
    MSGPIPE__W_IO_ERR      /* failed; *err is the Windows error */
};

/*
 * One ReadFile or WriteFile of len bytes at buf, waiting until the
 * deadline.  *n receives the bytes moved.
 *
 * On timeout the operation is cancelled with CancelIoEx on its own
 * OVERLAPPED only (another thread may be using the other direction), and
 * then waited for, because the kernel owns ov and buf until it completes.
 * If it completed anyway in the meantime - the race between the deadline
 * and the data - its real result is returned: it happened, so it counts.
 */
static int msgpipe__w_io(HANDLE h, HANDLE ev, int writing, void *buf, DWORD len,
                         int64_t deadline, DWORD *n, DWORD *err)
{
    OVERLAPPED ov;
    BOOL ok;
    DWORD e, w;
    int timed_out = 0;

    memset(&ov, 0, sizeof(ov));
    ov.hEvent = ev;
    *n = 0;
    *err = 0;
    if (writing)
        ok = WriteFile(h, buf, len, NULL, &ov);
    else
        ok = ReadFile(h, buf, len, NULL, &ov);
    if (ok) {
        GetOverlappedResult(h, &ov, n, FALSE);
        return MSGPIPE__W_IO_OK;
    }
    e = GetLastError();
    if (e == ERROR_MORE_DATA) {
        /* Completed at once with a partial message: ov holds the count. */
        GetOverlappedResult(h, &ov, n, FALSE);
        return MSGPIPE__W_IO_MORE;
    }
    if (e != ERROR_IO_PENDING) {
        *err = e;
        return MSGPIPE__W_IO_ERR;
    }
    w = WaitForSingleObject(ev, msgpipe__w_left(deadline));
    if (w != WAIT_OBJECT_0) {
        if (w == WAIT_TIMEOUT)
            timed_out = 1;
        else
            *err = GetLastError();
        CancelIoEx(h, &ov); /* ERROR_NOT_FOUND: it just completed */
    }
    if (GetOverlappedResult(h, &ov, n, TRUE))
        return MSGPIPE__W_IO_OK;
    e = GetLastError();
    if (e == ERROR_MORE_DATA)
        return MSGPIPE__W_IO_MORE;
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

/* ---- Pipes --------------------------------------------------------------- */

static int msgpipe__w_pipe_new(HANDLE h, int server_end, const msgpipe__opts *o,
                               msgpipe **out)
{
    msgpipe *p = (msgpipe *)calloc(1, sizeof(*p));

    if (p == NULL)
        return MSGPIPE_ENOMEM;
    p->h = h;
    p->server_end = server_end;
    p->max_message = o->max_message;
    p->rd_ev = CreateEventW(NULL, TRUE, FALSE, NULL);
    p->wr_ev = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (p->rd_ev == NULL || p->wr_ev == NULL) {
        int rc = msgpipe__w_error(GetLastError());
        if (p->rd_ev != NULL)
            CloseHandle(p->rd_ev);
        if (p->wr_ev != NULL)
            CloseHandle(p->wr_ev);
        free(p);
        return rc;
    }
    *out = p;
    return MSGPIPE_OK;
}

/*
 * Close is graceful by construction: a send returns MSGPIPE_OK only once
 * its WriteFile has completed, i.e. the whole message is in the pipe's
 * buffer (or was already read), and CloseHandle keeps that data readable by
 * the peer, which then gets ERROR_BROKEN_PIPE.  DisconnectNamedPipe would
 * discard it, so it is never called on an accepted pipe; nor is
 * FlushFileBuffers, which would block until the peer has read everything.
 * No write is ever left half done (a timed-out send is withdrawn whole), so
 * linger_ms has nothing to wait for on Windows.
 */
void msgpipe__b_close(msgpipe *p)
{
    CloseHandle(p->h);
    CloseHandle(p->rd_ev);
    CloseHandle(p->wr_ev);
    free(p->stash);
    free(p);
}

int msgpipe__b_peer(msgpipe *p, msgpipe_peer_info *info)
{
    ULONG pid = 0;
    BOOL ok;

    if (p->server_end)
        ok = GetNamedPipeClientProcessId(p->h, &pid);
    else
        ok = GetNamedPipeServerProcessId(p->h, &pid);
    if (!ok)
        return msgpipe__w_error(GetLastError());
    /* Process id 0 is the idle process, never a peer: it means the system
     * recorded nothing (seen under Wine). */
    if (pid == 0)
        return MSGPIPE_ENOTSUP;
    info->pid = (int64_t)pid;
    info->uid = -1;
    info->gid = -1;
    return MSGPIPE_OK;
}

/* ---- Sending ------------------------------------------------------------- */

/*
 * One WriteFile is one message.  A message that fits in the free part of
 * the pipe's buffer completes at once; a larger one stays pending until the
 * reader takes it.  If the deadline passes first, the write is cancelled,
 * and Windows (and Wine) withdraw a cancelled message whole: the call
 * returns MSGPIPE_ETIMEDOUT and the peer never sees any of it, so the call
 * can simply be retried.  Unlike POSIX, no half-sent message is ever kept
 * for later.  (Withdrawing is whole only while no reader has consumed part
 * of the message; msgpipe's receiver never does - see msgpipe__w_rx_next -
 * but a foreign reader that reads with a small buffer might, and would then
 * see the message cut short.)
 */
int msgpipe__b_send(msgpipe *p, const void *msg, size_t len, int timeout_ms)
{
    static const unsigned char empty = 0;
    DWORD n, err;
    int r;

    if ((uint64_t)len > p->max_message)
        return MSGPIPE_EMSGSIZE;
    /* WriteFile takes a 32-bit count and a message cannot be split. */
    if ((uint64_t)len > (uint64_t)MAXDWORD)
        return MSGPIPE_EMSGSIZE;
    r = msgpipe__w_io(p->h, p->wr_ev, 1,
                      (void *)(len > 0 ? msg : (const void *)&empty),
                      (DWORD)len, msgpipe__w_deadline(timeout_ms), &n, &err);
    if (r == MSGPIPE__W_IO_OK) {
        if (n != (DWORD)len) /* message-mode writes are all or nothing */
            return msgpipe__w_error(ERROR_WRITE_FAULT);
        return MSGPIPE_OK;
    }
    return msgpipe__w_io_rc(r, err);
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

/* The size of the next message, without consuming it; or *empty = 1 if it
 * was an empty message, which has then been consumed. */
static int msgpipe__w_rx_next(msgpipe *p, int64_t deadline, uint64_t *size,
                              int *empty)
{
    unsigned char dummy;
    DWORD avail, left, n, err;
    int r, odd = 0, more = 0;

    *empty = 0;
    if (p->stash != NULL && p->stash_whole) {
        *size = p->stash_len;
        return MSGPIPE_OK;
    }
    for (;;) {
        avail = left = 0;
        if (!PeekNamedPipe(p->h, NULL, 0, NULL, &avail, &left)) {
            /* The peer closed and nothing is left: with a stash, the
             * message ended where the stash ends. */
            if (p->stash != NULL) {
                p->stash_whole = 1;
                *size = p->stash_len;
                return MSGPIPE_OK;
            }
            return msgpipe__w_error(GetLastError());
        }
        if (p->stash != NULL) {
            /* The rest of the stashed message is at the front; if it is
             * gone (its writer withdrew it), the stash is all there is. */
            if (left == 0)
                p->stash_whole = 1;
            *size = (uint64_t)p->stash_len + left;
            return MSGPIPE_OK;
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
        r = msgpipe__w_io(p->h, p->rd_ev, 0, &dummy, 0, deadline, &n, &err);
        if (r == MSGPIPE__W_IO_OK) {
            *empty = 1;
            *size = 0;
            return MSGPIPE_OK;
        }
        if (r != MSGPIPE__W_IO_MORE)
            return msgpipe__w_io_rc(r, err);
        more = 1; /* a non-empty message is there: peek for its size */
    }
}

/* Keep the first len bytes of the current message, which were read into
 * buf, for the next receive.  buf may be p->stash's new block (owned). */
static int msgpipe__w_stash_keep(msgpipe *p, unsigned char *buf, size_t len,
                                 int own)
{
    unsigned char *s = buf;

    if (!own) {
        s = (unsigned char *)malloc(len ? len : 1);
        if (s == NULL)
            return MSGPIPE_ENOMEM;
        memcpy(s, buf, len);
    }
    free(p->stash);
    p->stash = s;
    p->stash_len = len;
    p->stash_whole = 0;
    return MSGPIPE_OK;
}

static void msgpipe__w_stash_drop(msgpipe *p)
{
    free(p->stash);
    p->stash = NULL;
    p->stash_len = 0;
    p->stash_whole = 0;
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
        if (p->stash_whole) {
            *got = have;
            return MSGPIPE__W_IO_OK;
        }
    }
    /* size - have came from one DWORD of PeekNamedPipe. */
    r = msgpipe__w_io(p->h, p->rd_ev, 0, dst + have, (DWORD)(size - have),
                      deadline, &n, err);
    *got = have + n;
    return r;
}

/*
 * Discard the current message, which is larger than max_message, without
 * storing it: read it in chunks into a scratch buffer until the read that
 * ends it.  Before each chunk PeekNamedPipe says how much of it is left, so
 * that every read finds its bytes already there, and a message cut short by
 * its writer ends the drain instead of eating the next message.
 */
static void msgpipe__w_rx_drain(msgpipe *p, int64_t deadline)
{
    unsigned char small[512];
    unsigned char *buf;
    DWORD cap, avail, left, n, err;
    int r, whole = p->stash != NULL && p->stash_whole;

    msgpipe__w_stash_drop(p);
    if (whole)
        return;
    buf = (unsigned char *)malloc(MSGPIPE__W_DRAIN_CHUNK);
    cap = MSGPIPE__W_DRAIN_CHUNK;
    if (buf == NULL) {
        buf = small;
        cap = (DWORD)sizeof(small);
    }
    for (;;) {
        avail = left = 0;
        if (!PeekNamedPipe(p->h, NULL, 0, NULL, &avail, &left) || left == 0)
            break;
        r = msgpipe__w_io(p->h, p->rd_ev, 0, buf, left < cap ? left : cap,
                          deadline, &n, &err);
        if (r != MSGPIPE__W_IO_MORE)
            break; /* the end of the message, or an error the next call
                      will meet again */
    }
    if (buf != small)
        free(buf);
}

int msgpipe__b_recv(msgpipe *p, void *buf, size_t cap, size_t *len,
                    int timeout_ms)
{
    int64_t deadline = msgpipe__w_deadline(timeout_ms);
    uint64_t size;
    size_t got;
    DWORD err;
    int rc, r, empty;

    for (;;) {
        rc = msgpipe__w_rx_next(p, deadline, &size, &empty);
        if (rc != MSGPIPE_OK)
            return rc;
        if (empty) {
            *len = 0;
            return MSGPIPE_OK;
        }
        if (size > p->max_message) {
            msgpipe__w_rx_drain(p, deadline);
            *len = (size_t)size;
            return MSGPIPE_EMSGSIZE;
        }
        if (size > cap) {
            *len = (size_t)size; /* nothing consumed: it stays queued */
            return MSGPIPE_ENOBUFS;
        }
        r = msgpipe__w_rx_take(p, (unsigned char *)buf, size, deadline, &got,
                               &err);
        if (r == MSGPIPE__W_IO_OK) {
            msgpipe__w_stash_drop(p);
            *len = got;
            return MSGPIPE_OK;
        }
        if (r != MSGPIPE__W_IO_MORE)
            return msgpipe__w_io_rc(r, err);
        rc = msgpipe__w_stash_keep(p, (unsigned char *)buf, got, 0);
        if (rc != MSGPIPE_OK)
            return rc;
    }
}

/*
 * recv_alloc allocates exactly the size PeekNamedPipe reports.  That is not
 * a length the peer announced: it is the count of bytes the peer has really
 * written (they sit in the pipe's buffer or in the writer's pending
 * WriteFile), measured by the system, and bounded by max_message first.
 */
int msgpipe__b_recv_alloc(msgpipe *p, void **msg, size_t *len, int timeout_ms)
{
    int64_t deadline = msgpipe__w_deadline(timeout_ms);
    uint64_t size;
    unsigned char *m;
    size_t got;
    DWORD err;
    int rc, r, empty;

    for (;;) {
        rc = msgpipe__w_rx_next(p, deadline, &size, &empty);
        if (rc != MSGPIPE_OK)
            return rc;
        if (!empty && size > p->max_message) {
            msgpipe__w_rx_drain(p, deadline);
            *len = (size_t)size;
            return MSGPIPE_EMSGSIZE;
        }
        if (size >= (uint64_t)SIZE_MAX)
            return MSGPIPE_ENOMEM;
        m = (unsigned char *)malloc((size_t)size + 1);
        if (m == NULL)
            return MSGPIPE_ENOMEM; /* nothing consumed: it stays queued */
        if (empty) {
            m[0] = 0;
            *msg = m;
            *len = 0;
            return MSGPIPE_OK;
        }
        r = msgpipe__w_rx_take(p, m, size, deadline, &got, &err);
        if (r == MSGPIPE__W_IO_OK) {
            msgpipe__w_stash_drop(p);
            m[got] = 0;
            *msg = m;
            *len = got;
            return MSGPIPE_OK;
        }
        if (r != MSGPIPE__W_IO_MORE) {
            free(m);
            return msgpipe__w_io_rc(r, err);
        }
        /* The message grew under us: m becomes the stash. */
        msgpipe__w_stash_keep(p, m, got, 1);
    }
}

/* ---- Servers ------------------------------------------------------------- */

static HANDLE msgpipe__w_instance(msgpipe_server *srv, int first)
{
    SECURITY_ATTRIBUTES sa;
    DWORD open_mode = PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED;

    /* FILE_FLAG_FIRST_PIPE_INSTANCE on the first instance makes listen fail
     * if anyone already owns the name, so a squatter cannot sit in front of
     * us; later instances join the pipe we created. */
    if (first)
        open_mode |= FILE_FLAG_FIRST_PIPE_INSTANCE;
    memset(&sa, 0, sizeof(sa));
    sa.nLength = sizeof(sa);
    sa.lpSecurityDescriptor = srv->sd;
    sa.bInheritHandle = FALSE;
    /* PIPE_UNLIMITED_INSTANCES, not `pending`: every accepted pipe remains
     * an instance, and the replacement must always be creatable. */
    return CreateNamedPipeW(srv->wname, open_mode,
                            PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE |
                                PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
                            PIPE_UNLIMITED_INSTANCES, MSGPIPE__W_BUFSIZE,
                            MSGPIPE__W_BUFSIZE, 0, &sa);
}

/* Start an overlapped ConnectNamedPipe on the slot's instance. */
static int msgpipe__w_arm(struct msgpipe__w_inst *in)
{
    int tries;

    for (tries = 0; tries < 8; tries++) {
        in->ready = 0;
        ResetEvent(in->ov.hEvent);
        in->ov.Internal = 0;
        in->ov.InternalHigh = 0;
        in->ov.Offset = 0;
        in->ov.OffsetHigh = 0;
        if (ConnectNamedPipe(in->h, &in->ov)) {
            in->ready = 1;
            SetEvent(in->ov.hEvent);
            return MSGPIPE_OK;
        }
        switch (GetLastError()) {
        case ERROR_IO_PENDING:
            return MSGPIPE_OK;
        case ERROR_PIPE_CONNECTED:
            /* A client connected between CreateNamedPipe and now: success,
             * but no completion will be signalled, so signal it. */
            in->ready = 1;
            SetEvent(in->ov.hEvent);
            return MSGPIPE_OK;
        case ERROR_NO_DATA:
            /* A client came and went: reset the instance and listen again. */
            DisconnectNamedPipe(in->h);
            break;
        default:
            return msgpipe__w_error(GetLastError());
        }
    }
    return msgpipe__w_error(ERROR_NO_DATA);
}

/* Stop the slot's instance: cancel a pending connect, refuse a connected
 * client that was never accepted, close it. */
static void msgpipe__w_slot_close(struct msgpipe__w_inst *in)
{
    DWORD n;

    if (in->h == INVALID_HANDLE_VALUE)
        return;
    if (!in->ready) {
        CancelIoEx(in->h, &in->ov);
        GetOverlappedResult(in->h, &in->ov, &n, TRUE);
    }
    DisconnectNamedPipe(in->h);
    CloseHandle(in->h);
    in->h = INVALID_HANDLE_VALUE;
    in->ready = 0;
}

/* Give an empty slot a fresh, listening instance. */
static int msgpipe__w_slot_fill(msgpipe_server *srv, struct msgpipe__w_inst *in)
{
    int rc;

    in->h = msgpipe__w_instance(srv, 0);
    if (in->h == INVALID_HANDLE_VALUE)
        return msgpipe__w_error(GetLastError());
    rc = msgpipe__w_arm(in);
    if (rc != MSGPIPE_OK) {
        CloseHandle(in->h);
        in->h = INVALID_HANDLE_VALUE;
    }
    return rc;
}

static void msgpipe__w_server_free(msgpipe_server *srv)
{
    int i;

    if (srv->inst != NULL) {
        for (i = 0; i < srv->n; i++) {
            msgpipe__w_slot_close(&srv->inst[i]);
            if (srv->inst[i].ov.hEvent != NULL)
                CloseHandle(srv->inst[i].ov.hEvent);
        }
        free(srv->inst);
    }
    if (srv->stop_ev != NULL)
        CloseHandle(srv->stop_ev);
    if (srv->sd != NULL)
        LocalFree(srv->sd);
    free(srv->wname);
    free(srv);
}

int msgpipe__b_listen(const msgpipe__name *name, const msgpipe__opts *o,
                      msgpipe_server **out)
{
    msgpipe_server *srv;
    int i, rc;

    srv = (msgpipe_server *)calloc(1, sizeof(*srv));
    if (srv == NULL)
        return MSGPIPE_ENOMEM;
    srv->opts = *o;
    srv->n = o->pending < MSGPIPE__W_PENDING_MAX ? o->pending
                                                 : MSGPIPE__W_PENDING_MAX;
    rc = msgpipe__w_wide(name, &srv->wname);
    if (rc != MSGPIPE_OK)
        goto fail;
    rc = msgpipe__w_sd_create(o->access, &srv->sd);
    if (rc != MSGPIPE_OK)
        goto fail;
    srv->inst =
        (struct msgpipe__w_inst *)calloc((size_t)srv->n, sizeof(*srv->inst));
    if (srv->inst == NULL) {
        rc = MSGPIPE_ENOMEM;
        goto fail;
    }
    for (i = 0; i < srv->n; i++)
        srv->inst[i].h = INVALID_HANDLE_VALUE;
    srv->stop_ev = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (srv->stop_ev == NULL) {
        rc = msgpipe__w_error(GetLastError());
        goto fail;
    }
    for (i = 0; i < srv->n; i++) {
        srv->inst[i].ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
        if (srv->inst[i].ov.hEvent == NULL) {
            rc = msgpipe__w_error(GetLastError());
            goto fail;
        }
    }

    srv->inst[0].h = msgpipe__w_instance(srv, 1);
    if (srv->inst[0].h == INVALID_HANDLE_VALUE) {
        DWORD e = GetLastError();
        rc = msgpipe__w_error(e);
        /* With FILE_FLAG_FIRST_PIPE_INSTANCE, "access denied" means the
         * name exists (a live server, or a squatter); "busy" means it
         * exists and has all the instances it allows. */
        if (e == ERROR_ACCESS_DENIED || e == ERROR_PIPE_BUSY)
            rc = MSGPIPE_EADDRINUSE;
        goto fail;
    }
    /* A second line of defence, for systems that ignore
     * FILE_FLAG_FIRST_PIPE_INSTANCE (Wine 8 does): if our "first" instance
     * is not the only one, somebody else already serves this name.  (Two
     * servers starting at the same moment may then both give up; that is
     * better than both serving.) */
    {
        DWORD cur = 0;
        if (GetNamedPipeHandleStateW(srv->inst[0].h, NULL, &cur, NULL, NULL,
                                     NULL, 0) &&
            cur > 1) {
            msgpipe__set_os_error(ERROR_ACCESS_DENIED);
            rc = MSGPIPE_EADDRINUSE;
            goto fail;
        }
    }
    rc = msgpipe__w_arm(&srv->inst[0]);
    if (rc != MSGPIPE_OK)
        goto fail;
    for (i = 1; i < srv->n; i++) {
        rc = msgpipe__w_slot_fill(srv, &srv->inst[i]);
        if (rc != MSGPIPE_OK)
            goto fail;
    }
    *out = srv;
    return MSGPIPE_OK;
fail:
    msgpipe__w_server_free(srv);
    return rc;
}

int msgpipe__b_accept(msgpipe_server *srv, int timeout_ms, msgpipe **out)
{
    HANDLE hs[MAXIMUM_WAIT_OBJECTS];
    int idx[MAXIMUM_WAIT_OBJECTS];
    int64_t deadline = msgpipe__w_deadline(timeout_ms);
    struct msgpipe__w_inst *in;
    msgpipe *p;
    DWORD w, n, e;
    int i, k, cnt, rc, fill_rc;

    for (;;) {
        /* Shut down wins over a client that is already waiting: after
         * msgpipe_server_shutdown() every accept fails. */
        if (WaitForSingleObject(srv->stop_ev, 0) == WAIT_OBJECT_0)
            return MSGPIPE_ESHUTDOWN;

        /* Refill slots left empty by an earlier failure. */
        fill_rc = MSGPIPE_OK;
        for (i = 0; i < srv->n; i++)
            if (srv->inst[i].h == INVALID_HANDLE_VALUE) {
                rc = msgpipe__w_slot_fill(srv, &srv->inst[i]);
                if (rc != MSGPIPE_OK)
                    fill_rc = rc;
            }

        hs[0] = srv->stop_ev;
        cnt = 1;
        /* Start after the slot served last, so that no slot starves:
         * WaitForMultipleObjects reports the first signalled handle. */
        for (i = 0; i < srv->n; i++) {
            k = (srv->next + i) % srv->n;
            if (srv->inst[k].h == INVALID_HANDLE_VALUE)
                continue;
            hs[cnt] = srv->inst[k].ov.hEvent;
            idx[cnt] = k;
            cnt++;
        }
        if (cnt == 1)
            return fill_rc; /* no instance at all, and none can be made */

        w = WaitForMultipleObjects((DWORD)cnt, hs, FALSE,
                                   msgpipe__w_left(deadline));
        if (w == WAIT_TIMEOUT) {
            msgpipe__set_os_error(WAIT_TIMEOUT);
            return MSGPIPE_ETIMEDOUT;
        }
        if (w == WAIT_OBJECT_0)
            return MSGPIPE_ESHUTDOWN;
        if (w < WAIT_OBJECT_0 + 1 || w >= WAIT_OBJECT_0 + (DWORD)cnt)
            return msgpipe__w_error(GetLastError());
        k = idx[w - WAIT_OBJECT_0];
        in = &srv->inst[k];

        if (!in->ready) {
            if (!GetOverlappedResult(in->h, &in->ov, &n, FALSE)) {
                e = GetLastError();
                if (e == ERROR_IO_INCOMPLETE)
                    continue; /* not ours after all */
                if (e == ERROR_NO_DATA || e == ERROR_BROKEN_PIPE ||
                    e == ERROR_PIPE_NOT_CONNECTED) {
                    /* The client came and went: recycle the instance. */
                    DisconnectNamedPipe(in->h);
                    if (msgpipe__w_arm(in) != MSGPIPE_OK)
                        msgpipe__w_slot_close(in);
                    continue;
                }
                /* Anything else: drop this instance (it is recreated on
                 * the next pass) and report the error. */
                msgpipe__w_slot_close(in);
                return msgpipe__w_error(e);
            }
            in->ready = 1;
        }

        /* A client is connected.  Make its pipe first, so that a failure
         * leaves it waiting in its slot for the next accept. */
        rc = msgpipe__w_pipe_new(in->h, 1, &srv->opts, &p);
        if (rc != MSGPIPE_OK)
            return rc;
        /* Then put a fresh listening instance in the slot before handing
         * the connected one out, so that clients never find the name
         * missing or busy between two accepts.  If that fails (say, no
         * handles left), the pipe is handed out anyway and the slot is
         * refilled by a later accept. */
        in->h = INVALID_HANDLE_VALUE;
        in->ready = 0;
        ResetEvent(in->ov.hEvent);
        msgpipe__w_slot_fill(srv, in);
        srv->next = (k + 1) % srv->n;
        *out = p;
        return MSGPIPE_OK;
    }
}

void msgpipe__b_server_shutdown(msgpipe_server *srv)
{
    /* SetEvent is atomic and setting a set event does nothing: safe from
     * any thread, any number of times. */
    SetEvent(srv->stop_ev);
}

void msgpipe__b_server_close(msgpipe_server *srv)
{
    msgpipe__w_server_free(srv);
}

/* ---- Clients ------------------------------------------------------------- */

int msgpipe__b_connect(const msgpipe__name *name, const msgpipe__opts *o,
                       int timeout_ms, msgpipe **out)
{
    int64_t deadline = msgpipe__w_deadline(timeout_ms);
    DWORD mode = PIPE_READMODE_MESSAGE, e, left, nap = 1;
    WCHAR *wname;
    HANDLE h;
    int rc;

    rc = msgpipe__w_wide(name, &wname);
    if (rc != MSGPIPE_OK)
        return rc;
    for (;;) {
        /* SECURITY_IDENTIFICATION: the server may learn who we are but
         * cannot act as us, should it be an impostor.  The access asked
         * for is read and write without FILE_CREATE_PIPE_INSTANCE, which
         * is what a server admitting other users grants them
         * (MSGPIPE__W_RW_ACCESS, see win32_int.h); GENERIC_WRITE would be
         * refused there. */
        h = CreateFileW(wname, MSGPIPE__W_RW_ACCESS, 0, NULL, OPEN_EXISTING,
                        FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT |
                            SECURITY_IDENTIFICATION,
                        NULL);
        if (h != INVALID_HANDLE_VALUE)
            break;
        e = GetLastError();
        if (e != ERROR_PIPE_BUSY && e != ERROR_FILE_NOT_FOUND) {
            free(wname);
            return msgpipe__w_error(e); /* e.g. ACCESS_DENIED: EACCES */
        }
        if (timeout_ms == 0) {
            free(wname);
            return msgpipe__w_error(e); /* EBUSY or ENOENT */
        }
        left = msgpipe__w_left(deadline);
        if (left == 0) {
            free(wname);
            msgpipe__set_os_error((int)e);
            return MSGPIPE_ETIMEDOUT;
        }
        if (e == ERROR_PIPE_BUSY) {
            /* Every instance is taken: wait for one to be free.  Never
             * pass 0, which means "the server's default wait"; and wake at
             * least every second when waiting forever, in case the server
             * goes away meanwhile. */
            WaitNamedPipeW(wname, left == INFINITE ? 1000 : left);
        } else {
            /* No server yet: poll, 1 ms at first, backing off to 50. */
            Sleep(nap < left ? nap : left);
            if (nap < 50)
                nap *= 2;
        }
    }
    free(wname);

    if (!SetNamedPipeHandleState(h, &mode, NULL, NULL)) {
        rc = msgpipe__w_error(GetLastError());
        CloseHandle(h);
        return rc;
    }
    rc = msgpipe__w_pipe_new(h, 0, o, out);
    if (rc != MSGPIPE_OK)
        CloseHandle(h);
    return rc;
}
