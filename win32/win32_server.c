/*
 * win32_server.c - the Win32 backend's server: a pool of listening
 * instances of one named pipe, listen, accept and shutdown.  The twin of
 * posix/posix_server.c (with the listen and accept of posix_socket.c);
 * see win32_internal.h for the other files.
 *
 * Every instance has an overlapped ConnectNamedPipe outstanding, all on
 * one shared event (the server's native handle); accept hands out a
 * connected instance as a pipe (msgpipe__w_pipe_new) and puts a fresh
 * listening one in its slot.  A connect cancelled by the exit of the
 * thread that issued it is issued again (see msgpipe__w_srv_scan).
 *
 * Every instance is bound to the process's completion port when it is
 * made (win32_poller.c), under a key that names its server until accept
 * hands it out, and its pipe from then on: a connect that ends reports
 * there as well as to conn_ev, so that a poller learns of it.
 */
#include "win32_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Size hint for each direction's buffer of a pipe instance.  A message
 * that fits in the free part of the buffer completes its WriteFile at once;
 * a larger one stays pending (in the writer's memory) until the reader has
 * taken it.  256 KiB, not the seed's 64 KiB: under Wine, streaming 64 KiB
 * messages ran about twice as fast with 256 KiB or 1 MiB buffers, and 1 MiB
 * gained nothing over 256 KiB (docs/windows.md, "Buffer sizes").  Defined
 * here unless the build sets it (-DMSGPIPE__W_BUFSIZE=N in CMAKE_C_FLAGS),
 * which is how that measurement is repeated. */
#ifndef MSGPIPE__W_BUFSIZE
#define MSGPIPE__W_BUFSIZE (256 * 1024)
#endif

/* At most this many pending instances; a larger `pending` option is
 * silently capped.  (Accept once waited on one event per instance, which
 * had to fit in one WaitForMultipleObjects; the instances now share one
 * event, but every accept and poll still scans them all, and 63 clients
 * waiting at once is plenty.) */
#define MSGPIPE__W_PENDING_MAX (MAXIMUM_WAIT_OBJECTS - 1)

/* How often listen tries to create the first instance of a name while
 * another instance exists (see msgpipe__b_listen). */
#define MSGPIPE__W_LISTEN_TRIES 8

struct msgpipe__w_inst {
    HANDLE h;      /* INVALID_HANDLE_VALUE when the slot is empty */
    OVERLAPPED ov; /* for ConnectNamedPipe; hEvent is the server's conn_ev */
    int ready;     /* a client is connected and waits for accept */
    ULONG_PTR key; /* h's key at the completion port, or 0 */
};

struct msgpipe_server {
    WCHAR *wname;
    PSECURITY_DESCRIPTOR sd;
    msgpipe__opts opts;
    HANDLE stop_ev; /* manual-reset; set by msgpipe__b_server_shutdown */
    /*
     * One manual-reset event shared by the ConnectNamedPipe of every
     * instance, so that a single handle says "a client is waiting" (the
     * server's native handle; one slot in a poll).  A completion sets it;
     * msgpipe__w_srv_scan resets it, then looks at every instance, and
     * sets it again if one is ready - so it is signalled exactly while a
     * client waits, and no completion is lost.  See msgpipe__w_srv_scan
     * for why arming an instance forces another look.
     */
    HANDLE conn_ev;
    HANDLE name_lock; /* see msgpipe__w_name_lock */
    ULONG_PTR key;    /* the server's own key at the completion port */
    DWORD err; /* a failure met by a scan, for the next accept to report */
    int n;
    int next; /* where the next accept starts looking (fairness) */
    struct msgpipe__w_inst *inst;
    void *pl_entry; /* its registration in a poller (win32_poller.c) */
    /* A tcp:// server (tcp 1): its listening socket, whose FD_ACCEPT sets
     * conn_ev, and the thread-pool wait that tells a poller (see
     * msgpipe__w_tcp_watch); it has no name, instances or descriptor. */
    int tcp;
    UINT_PTR lsock;
    HANDLE pl_wait;
};

/* ---- Instances ----------------------------------------------------------- */

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

/* Bind the slot's new instance to the completion port, under the slot's
 * key (made the first time); on failure it is closed again.  A slot keeps
 * its key from one instance to the next, so that a poller's wait, which
 * may close an instance (msgpipe__w_srv_scan), never has to release one
 * (see msgpipe__w_port_bind); the key goes with the instance accept hands
 * out, and the server's close releases the rest. */
static int msgpipe__w_inst_bind(msgpipe_server *srv, struct msgpipe__w_inst *in)
{
    int rc = msgpipe__w_port_bind(in->h, MSGPIPE__W_KEY_SERVER, srv, &in->key);

    if (rc != MSGPIPE_OK) {
        CloseHandle(in->h);
        in->h = INVALID_HANDLE_VALUE;
    }
    return rc;
}

/*
 * Start an overlapped ConnectNamedPipe on the slot's instance.
 *
 * ERROR_NO_DATA means a client connected before this call and has already
 * closed its end (a client that connects, sends and leaves at once).  Its
 * messages are still in the instance and readable: the instance is handed
 * out like any connected one, and its receives return them, then
 * MSGPIPE_ECLOSED (as Python's multiprocessing treats ERROR_NO_DATA).
 * Disconnecting it instead would discard what the client sent.
 */
static int msgpipe__w_arm(struct msgpipe__w_inst *in)
{
    DWORD e;

    in->ready = 0;
    /* hEvent is shared: it is not reset here (ConnectNamedPipe resets it
     * anyway; msgpipe__w_srv_scan copes with that). */
    in->ov.Internal = 0;
    in->ov.InternalHigh = 0;
    in->ov.Offset = 0;
    in->ov.OffsetHigh = 0;
    if (msgpipe__w32.ConnectNamedPipe(in->h, &in->ov)) {
        in->ready = 1;
        SetEvent(in->ov.hEvent);
        return MSGPIPE_OK;
    }
    e = GetLastError();
    switch (e) {
    case ERROR_IO_PENDING:
        return MSGPIPE_OK;
    case ERROR_PIPE_CONNECTED: /* connected between create and now */
    case ERROR_NO_DATA:        /* ... and gone again: see above */
        /* Success, but no completion will be signalled: signal it.  (The
         * OVERLAPPED is not the system's: mark it done for the scan.) */
        in->ov.Internal = 0;
        in->ready = 1;
        SetEvent(in->ov.hEvent);
        return MSGPIPE_OK;
    default:
        return msgpipe__w_error(e);
    }
}

/* Stop the slot's instance: cancel a pending connect, refuse a connected
 * client that was never accepted, close it. */
static void msgpipe__w_slot_close(struct msgpipe__w_inst *in)
{
    int spins = 0;

    if (in->h == INVALID_HANDLE_VALUE)
        return;
    if (!in->ready) {
        msgpipe__w32.CancelIoEx(in->h, &in->ov);
        /* The system owns in->ov until the connect has ended.  Its event is
         * shared with the other instances, so GetOverlappedResult(TRUE)
         * could wake on another instance's completion and return early;
         * watch Internal instead.  Cancelling takes microseconds. */
        while (!msgpipe__w_ov_done(&in->ov)) {
            if (++spins < 100)
                SwitchToThread();
            else
                Sleep(1);
        }
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
    rc = msgpipe__w_inst_bind(srv, in);
    if (rc != MSGPIPE_OK)
        return rc;
    rc = msgpipe__w_arm(in);
    if (rc != MSGPIPE_OK)
        msgpipe__w_slot_close(in);
    return rc;
}

/*
 * msgpipe__w_srv_scan - is a client waiting?  Returns the slot of a
 * connected instance (looking from srv->next on, so that no slot starves),
 * or -1.  Never blocks.  Recycles instances whose client came and went,
 * records any other failure in srv->err (dropping that instance; accept
 * recreates it), and leaves conn_ev signalled exactly when a client waits
 * or srv->err is set.
 *
 * Lost wake-ups: conn_ev is reset first and every instance examined
 * after, so a connect that completes during the scan sets it again.  But
 * ConnectNamedPipe itself resets its event when it starts (Windows and
 * Wine both do), which would wipe a completion of another instance that
 * happened after the reset; so when the scan had to re-arm an instance and
 * found nobody, it scans again.  Re-arming only follows a client that came
 * and went, so this ends; after a few rounds conn_ev is simply left set
 * (a spurious wake-up costs one more scan, a lost one a hang).
 */
static int msgpipe__w_srv_scan(msgpipe_server *srv)
{
    struct msgpipe__w_inst *in;
    DWORD n, e;
    int i, k, found, rearmed, rounds = 0;

    do {
        rearmed = 0;
        found = -1;
        ResetEvent(srv->conn_ev);
        for (i = 0; i < srv->n; i++) {
            k = (srv->next + i) % srv->n;
            in = &srv->inst[k];
            if (in->h == INVALID_HANDLE_VALUE)
                continue;
            if (!in->ready && msgpipe__w_ov_done(&in->ov)) {
                if (msgpipe__w32.GetOverlappedResult(in->h, &in->ov, &n,
                                                     FALSE)) {
                    in->ready = 1;
                } else {
                    e = GetLastError();
                    switch (e) {
                    case ERROR_NO_DATA:
                    case ERROR_BROKEN_PIPE:
                        /* The client came and went: what it sent is
                         * still there (see msgpipe__w_arm). */
                        in->ready = 1;
                        break;
                    case ERROR_PIPE_NOT_CONNECTED:
                        /* Disconnected, nothing in it: recycle. */
                        DisconnectNamedPipe(in->h);
                        /* fall through */
                    case ERROR_OPERATION_ABORTED:
                        /* Or the thread that started the connect (say,
                         * the one that called msgpipe_listen) has exited,
                         * which cancels its I/O.  The instance still
                         * listens - a client may even have connected to
                         * it meanwhile, and left: listen again, which
                         * reports such a client (see msgpipe__w_arm). */
                        if (msgpipe__w_arm(in) != MSGPIPE_OK)
                            msgpipe__w_slot_close(in);
                        rearmed = 1;
                        break;
                    default:
                        msgpipe__w_slot_close(in);
                        if (srv->err == 0)
                            srv->err = e;
                        break;
                    }
                }
            }
            if (in->h != INVALID_HANDLE_VALUE && in->ready && found < 0)
                found = k;
        }
    } while (rearmed && found < 0 && srv->err == 0 && ++rounds < 4);
    if (found >= 0 || srv->err != 0 || rearmed)
        SetEvent(srv->conn_ev);
    return found;
}

/*
 * The name lock: two msgpipe servers listening on one name at the same
 * moment must have exactly one winner.  The instance count below cannot
 * decide between them (both may see two instances and both give up), so
 * a server first creates a named event for the pipe name and holds it for
 * its life, as the POSIX backend holds NAME.lock with flock.  Creating a
 * named object is atomic: whoever finds it existing (ERROR_ALREADY_EXISTS)
 * or cannot open it (ERROR_ACCESS_DENIED: another user's server) has lost,
 * and the system removes the object when its last handle closes, also when
 * a server crashes.  The object's name is a hash of the pipe name, since
 * pipe names may hold backslashes and be longer than an object name; pipe
 * names are case-insensitive, so ASCII letters are folded first.  The
 * "Local\" namespace is one logon session; servers in different sessions
 * still rely on FILE_FLAG_FIRST_PIPE_INSTANCE and the instance count.
 */
static int msgpipe__w_name_lock(const WCHAR *wname, HANDLE *out)
{
    uint64_t h = 14695981039346656037u; /* FNV-1a, 64 bits */
    WCHAR obj[64];
    const WCHAR *c;
    HANDLE ev;
    DWORD e;

    for (c = wname; *c != 0; c++) {
        WCHAR ch = (*c >= L'A' && *c <= L'Z') ? (WCHAR)(*c - L'A' + L'a') : *c;
        h = (h ^ (uint64_t)(ch & 0xff)) * 1099511628211u;
        h = (h ^ (uint64_t)(ch >> 8)) * 1099511628211u;
    }
    _snwprintf(obj, sizeof(obj) / sizeof(obj[0]),
               L"Local\\msgpipe-listen-%08lx%08lx", (unsigned long)(h >> 32),
               (unsigned long)(h & 0xffffffffu));
    obj[sizeof(obj) / sizeof(obj[0]) - 1] = 0;
    ev = CreateEventW(NULL, TRUE, FALSE, obj);
    e = GetLastError();
    if (ev != NULL && e != ERROR_ALREADY_EXISTS) {
        *out = ev;
        return MSGPIPE_OK;
    }
    if (ev != NULL)
        CloseHandle(ev);
    if (ev != NULL || e == ERROR_ACCESS_DENIED) {
        msgpipe__set_os_error(ERROR_ACCESS_DENIED);
        return MSGPIPE_EADDRINUSE;
    }
    return msgpipe__w_error(e);
}

static void msgpipe__w_server_free(msgpipe_server *srv)
{
    int i;

    if (srv->pl_wait != NULL)
        UnregisterWaitEx(srv->pl_wait, INVALID_HANDLE_VALUE);
    if (srv->tcp && srv->lsock != (UINT_PTR)INVALID_HANDLE_VALUE)
        msgpipe__w_tcp_close_socket(srv->lsock);
    if (srv->inst != NULL) {
        for (i = 0; i < srv->n; i++) {
            msgpipe__w_slot_close(&srv->inst[i]);
            if (srv->inst[i].key != 0)
                msgpipe__w_port_release(srv->inst[i].key);
        }
        msgpipe__free(srv->inst);
    }
    if (srv->conn_ev != NULL)
        CloseHandle(srv->conn_ev);
    if (srv->stop_ev != NULL)
        CloseHandle(srv->stop_ev);
    if (srv->sd != NULL)
        LocalFree(srv->sd);
    if (srv->key != 0)
        msgpipe__w_port_release(srv->key);
    /* Last: the name is free for the next server only once our instances
     * are closed. */
    if (srv->name_lock != NULL)
        CloseHandle(srv->name_lock);
    msgpipe__free(srv->wname);
    msgpipe__free(srv);
}

/* A tcp:// server: one listening socket instead of the instance pool. */
static int msgpipe__w_tcp_listen(const msgpipe__name *name,
                                 const msgpipe__opts *o, msgpipe_server **out)
{
    msgpipe_server *srv = (msgpipe_server *)msgpipe__calloc(1, sizeof(*srv));
    int rc;

    if (srv == NULL)
        return MSGPIPE_ENOMEM;
    srv->opts = *o;
    srv->tcp = 1;
    srv->lsock = (UINT_PTR)INVALID_HANDLE_VALUE;
    srv->stop_ev = CreateEventW(NULL, TRUE, FALSE, NULL);
    srv->conn_ev = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (srv->stop_ev == NULL || srv->conn_ev == NULL) {
        rc = msgpipe__w_error(GetLastError());
        goto fail;
    }
    rc = msgpipe__w_tcp_bind(name, o, &srv->lsock, srv->conn_ev);
    if (rc != MSGPIPE_OK)
        goto fail;
    rc = msgpipe__w_port_bind(NULL, MSGPIPE__W_KEY_SERVER, srv, &srv->key);
    if (rc != MSGPIPE_OK)
        goto fail;
    *out = srv;
    return MSGPIPE_OK;
fail:
    msgpipe__w_server_free(srv);
    return rc;
}

/* conn_ev set exactly while a connection waits (FD_ACCEPT sets it; a look
 * behind it settles it): 1 if one waits. */
static int msgpipe__w_tcp_settle(msgpipe_server *srv)
{
    ResetEvent(srv->conn_ev);
    if (msgpipe__w_tcp_pending(srv->lsock)) {
        SetEvent(srv->conn_ev);
        return 1;
    }
    return 0;
}

/* What an accept waits for: shutdown (ESHUTDOWN) or conn_ev (OK: look
 * again), until the deadline (ETIMEDOUT). */
static int msgpipe__w_srv_wait(msgpipe_server *srv, int64_t deadline)
{
    HANDLE hs[2];
    DWORD w;

    hs[0] = srv->stop_ev;
    hs[1] = srv->conn_ev;
    w = msgpipe__w32.WaitForMultipleObjects(2, hs, FALSE,
                                            msgpipe__w_left(deadline));
    if (w == WAIT_TIMEOUT) {
        msgpipe__set_os_error(WAIT_TIMEOUT);
        return MSGPIPE_ETIMEDOUT;
    }
    if (w == WAIT_OBJECT_0)
        return MSGPIPE_ESHUTDOWN;
    if (w != WAIT_OBJECT_0 + 1)
        return msgpipe__w_error(GetLastError());
    return MSGPIPE_OK;
}

static int msgpipe__w_tcp_srv_accept(msgpipe_server *srv, int timeout_ms,
                                     msgpipe **out)
{
    int64_t deadline = msgpipe__deadline(timeout_ms);
    int rc;

    for (;;) {
        if (msgpipe__w32.WaitForSingleObject(srv->stop_ev, 0) == WAIT_OBJECT_0)
            return MSGPIPE_ESHUTDOWN;
        ResetEvent(srv->conn_ev);
        rc = msgpipe__w_tcp_accept(srv->lsock, &srv->opts, out);
        if (rc != MSGPIPE_ETIMEDOUT) {
            msgpipe__w_tcp_settle(srv);
            msgpipe__w_pl_touch(NULL, srv);
            return rc;
        }
        rc = msgpipe__w_srv_wait(srv, deadline);
        if (rc != MSGPIPE_OK)
            return rc;
    }
}

int msgpipe__b_server_address(msgpipe_server *srv, char *buf, size_t cap,
                              size_t *len)
{
    if (!srv->tcp)
        return MSGPIPE_ENOTSUP;
    return msgpipe__w_tcp_sock_address(srv->lsock, buf, cap, len);
}

int msgpipe__b_listen(const msgpipe__name *name, const msgpipe__opts *o,
                      msgpipe_server **out)
{
    msgpipe_server *srv;
    unsigned seed = (unsigned)GetCurrentThreadId() * 2654435761u ^
                    (unsigned)GetCurrentProcessId() ^ (unsigned)GetTickCount();
    int i, rc, tries;

    if (name->kind == MSGPIPE__NAME_TCP)
        return msgpipe__w_tcp_listen(name, o, out);
    srv = (msgpipe_server *)msgpipe__calloc(1, sizeof(*srv));
    if (srv == NULL)
        return MSGPIPE_ENOMEM;
    srv->opts = *o;
    srv->n = o->pending < MSGPIPE__W_PENDING_MAX ? o->pending
                                                 : MSGPIPE__W_PENDING_MAX;
    rc = msgpipe__w_wide(name, &srv->wname);
    if (rc != MSGPIPE_OK)
        goto fail;
    rc = msgpipe__w_name_lock(srv->wname, &srv->name_lock);
    if (rc != MSGPIPE_OK)
        goto fail;
    rc = msgpipe__w_sd_create(o, &srv->sd);
    if (rc != MSGPIPE_OK)
        goto fail;
    srv->opts.sddl = NULL; /* the caller's string; srv->sd holds it now */
    srv->inst = (struct msgpipe__w_inst *)msgpipe__calloc((size_t)srv->n,
                                                          sizeof(*srv->inst));
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
    srv->conn_ev = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (srv->conn_ev == NULL) {
        rc = msgpipe__w_error(GetLastError());
        goto fail;
    }
    rc = msgpipe__w_port_bind(NULL, MSGPIPE__W_KEY_SERVER, srv, &srv->key);
    if (rc != MSGPIPE_OK)
        goto fail;
    for (i = 0; i < srv->n; i++)
        srv->inst[i].ov.hEvent = srv->conn_ev;

    /*
     * The first instance.  FILE_FLAG_FIRST_PIPE_INSTANCE makes this fail
     * if the name exists.  A second line of defence, for systems that
     * ignore that flag (Wine 8 does): if our "first" instance is not the
     * only one, somebody else has the name.  Two msgpipe servers in one
     * session never get here together (the name lock); two in different
     * sessions may both see two instances; then each closes its own and
     * tries again after a pause that differs between them, so that one of
     * them wins.  Neither can win while the other keeps an instance, so
     * never both; a live server keeps its instances, so a listen on its
     * name fails after MSGPIPE__W_LISTEN_TRIES.
     */
    for (tries = 0;; tries++) {
        DWORD cur = 0, e;
        srv->inst[0].h = msgpipe__w_instance(srv, 1);
        if (srv->inst[0].h == INVALID_HANDLE_VALUE) {
            e = GetLastError();
            rc = msgpipe__w_error(e);
            /* "Access denied" means the name exists (a live server, or a
             * squatter); "busy" means it exists and has all the
             * instances it allows. */
            if (e == ERROR_ACCESS_DENIED || e == ERROR_PIPE_BUSY)
                rc = MSGPIPE_EADDRINUSE;
            goto fail;
        }
        if (!GetNamedPipeHandleStateW(srv->inst[0].h, NULL, &cur, NULL, NULL,
                                      NULL, 0) ||
            cur <= 1)
            break;
        CloseHandle(srv->inst[0].h);
        srv->inst[0].h = INVALID_HANDLE_VALUE;
        if (tries + 1 >= MSGPIPE__W_LISTEN_TRIES) {
            msgpipe__set_os_error(ERROR_ACCESS_DENIED);
            rc = MSGPIPE_EADDRINUSE;
            goto fail;
        }
        seed = seed * 1103515245u + 12345u;
        Sleep(1 + (seed >> 16) % 4);
    }
    rc = msgpipe__w_inst_bind(srv, &srv->inst[0]);
    if (rc != MSGPIPE_OK)
        goto fail;
    rc = msgpipe__w_arm(&srv->inst[0]);
    if (rc != MSGPIPE_OK)
        goto fail;
    for (i = 1; i < srv->n; i++) {
        rc = msgpipe__w_slot_fill(srv, &srv->inst[i]);
        if (rc != MSGPIPE_OK)
            goto fail;
    }
    /* Arming later instances reset conn_ev: settle it. */
    msgpipe__w_srv_scan(srv);
    *out = srv;
    return MSGPIPE_OK;
fail:
    msgpipe__w_server_free(srv);
    return rc;
}

int msgpipe__b_accept(msgpipe_server *srv, int timeout_ms, msgpipe **out)
{
    int64_t deadline = msgpipe__deadline(timeout_ms);
    struct msgpipe__w_inst *in;
    msgpipe *p;
    DWORD e;
    int i, k, live, rc, fill_rc;

    if (srv->tcp)
        return msgpipe__w_tcp_srv_accept(srv, timeout_ms, out);
    for (;;) {
        /* Shut down wins over a client that is already waiting: after
         * msgpipe_server_shutdown() every accept fails. */
        if (msgpipe__w32.WaitForSingleObject(srv->stop_ev, 0) == WAIT_OBJECT_0)
            return MSGPIPE_ESHUTDOWN;

        /* Refill slots left empty by an earlier failure. */
        fill_rc = MSGPIPE_OK;
        live = 0;
        for (i = 0; i < srv->n; i++) {
            if (srv->inst[i].h == INVALID_HANDLE_VALUE) {
                rc = msgpipe__w_slot_fill(srv, &srv->inst[i]);
                if (rc != MSGPIPE_OK)
                    fill_rc = rc;
            }
            if (srv->inst[i].h != INVALID_HANDLE_VALUE)
                live++;
        }

        k = msgpipe__w_srv_scan(srv);
        if (srv->err != 0) {
            /* An instance failed (it was dropped and is recreated on the
             * next pass): report it once. */
            e = srv->err;
            srv->err = 0;
            msgpipe__w_srv_scan(srv); /* conn_ev back to the truth */
            return msgpipe__w_error(e);
        }
        if (k >= 0)
            break;
        if (live == 0)
            return fill_rc; /* no instance at all, and none can be made */

        rc = msgpipe__w_srv_wait(srv, deadline);
        if (rc != MSGPIPE_OK)
            return rc;
        /* conn_ev: scan again. */
    }

    /* A client is connected in slot k.  Make its pipe first, so that a
     * failure leaves it waiting in its slot for the next accept. */
    in = &srv->inst[k];
    rc = msgpipe__w_pipe_new(in->h, 1, in->key, &srv->opts, &p);
    if (rc != MSGPIPE_OK)
        return rc;
    in->key = 0; /* the pipe's now */
    /* Then put a fresh listening instance in the slot before handing the
     * connected one out, so that clients never find the name missing or
     * busy between two accepts.  If that fails (say, no handles left), the
     * pipe is handed out anyway and the slot is refilled by a later
     * accept. */
    in->h = INVALID_HANDLE_VALUE;
    in->ready = 0;
    msgpipe__w_slot_fill(srv, in);
    srv->next = (k + 1) % srv->n;
    /* conn_ev must now say whether another client still waits (and the
     * new instance's ConnectNamedPipe reset it); and so must the poller,
     * which sees no completion for a client that connected at once. */
    msgpipe__w_srv_scan(srv);
    msgpipe__w_pl_touch(NULL, srv);
    *out = p;
    return MSGPIPE_OK;
}

void msgpipe__b_server_shutdown(msgpipe_server *srv)
{
    /* SetEvent is atomic and setting a set event does nothing: safe from
     * any thread, any number of times; so is telling a poller through the
     * port (no lock is taken, so also from a signal handler). */
    SetEvent(srv->stop_ev);
    msgpipe__w_port_post(srv->key);
}

void **msgpipe__w_srv_pl_slot(msgpipe_server *srv)
{
    return &srv->pl_entry;
}

void msgpipe__b_server_close(msgpipe_server *srv)
{
    msgpipe__w_pl_forget(NULL, srv);
    msgpipe__w_server_free(srv);
}

int msgpipe__w_srv_raw_ready(msgpipe_server *srv, HANDLE wait[2])
{
    wait[0] = srv->conn_ev;
    wait[1] = srv->stop_ev;
    if (msgpipe__w32.WaitForSingleObject(srv->stop_ev, 0) == WAIT_OBJECT_0)
        return 1; /* accept(..., 0) returns ESHUTDOWN at once */
    if (srv->tcp) {
        if (msgpipe__w_tcp_settle(srv))
            return 1;
        /* In a poller: the next connection posts to the port. */
        if (srv->pl_entry != NULL)
            msgpipe__w_tcp_watch(srv->conn_ev, &srv->pl_wait, srv->key);
        return 0;
    }
    if (msgpipe__w_srv_scan(srv) >= 0 || srv->err != 0)
        return 1;
    return 0;
}

int msgpipe__w_srv_ready(msgpipe_server *srv, HANDLE wait[2])
{
    int raw = msgpipe__w_srv_raw_ready(srv, wait);

    /* With an authkey a client is ready once its handshake is done: the
     * probe takes waiting clients into handshakes (api/auth.c). */
    if (srv->opts.auth != NULL)
        return msgpipe__auth_probe(srv);
    return raw;
}

int msgpipe__b_server_native_handle(msgpipe_server *srv, msgpipe_native *out)
{
    if (srv->tcp)
        msgpipe__w_tcp_settle(srv);
    else
        msgpipe__w_srv_scan(srv); /* settle conn_ev */
    *out = (msgpipe_native)srv->conn_ev;
    return MSGPIPE_OK;
}

const msgpipe__opts *msgpipe__b_server_opts(msgpipe_server *srv)
{
    return &srv->opts;
}
