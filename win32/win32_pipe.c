/*
 * win32_pipe.c - the Win32 backend's transport: what is named pipes'
 * own beyond the engine and the server - the backend description,
 * connecting to a server's pipe, and who the peer is.  The twin of
 * posix/posix_socket.c (and posix_fifo.c), named after its transport as
 * they are; its listen and accept live in win32_server.c, which holds the
 * instance pool they need.  See win32_internal.h for the other files.
 */
#include "win32_internal.h"

#include <aclapi.h>
#include <sddl.h>

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
    4,                    /* default_pending */
    0, /* has_uids: Windows identifies users by SID, not uid */
    1  /* has_tcp: Winsock (win32_tcp.c) */
};

/* ---- Clients ------------------------------------------------------------- */

int msgpipe__b_connect(const msgpipe__name *name, const msgpipe__opts *o,
                       int timeout_ms, msgpipe **out)
{
    int64_t deadline = msgpipe__deadline(timeout_ms);
    DWORD mode = PIPE_READMODE_MESSAGE, e, left, nap = 1;
    WCHAR *wname;
    HANDLE h;
    int rc;

    if (name->kind == MSGPIPE__NAME_TCP)
        return msgpipe__w_tcp_connect(name, o, timeout_ms, out);
    rc = msgpipe__w_wide(name, &wname);
    if (rc != MSGPIPE_OK)
        return rc;
    for (;;) {
        /* SECURITY_IDENTIFICATION: the server may learn who we are but
         * cannot act as us, should it be an impostor.  The access asked
         * for is read and write without FILE_CREATE_PIPE_INSTANCE, which
         * is what a server admitting other users grants them
         * (MSGPIPE__W_RW_ACCESS, see win32_internal.h); GENERIC_WRITE would be
         * refused there. */
        h = CreateFileW(wname, MSGPIPE__W_RW_ACCESS, 0, NULL, OPEN_EXISTING,
                        FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT |
                            SECURITY_IDENTIFICATION,
                        NULL);
        if (h != INVALID_HANDLE_VALUE)
            break;
        e = GetLastError();
        if (e != ERROR_PIPE_BUSY && e != ERROR_FILE_NOT_FOUND) {
            msgpipe__free(wname);
            return msgpipe__w_error(e); /* e.g. ACCESS_DENIED: EACCES */
        }
        if (timeout_ms == 0) {
            msgpipe__free(wname);
            return msgpipe__w_error(e); /* EBUSY or ENOENT */
        }
        left = msgpipe__w_left(deadline);
        if (left == 0) {
            msgpipe__free(wname);
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
    msgpipe__free(wname);

    if (!SetNamedPipeHandleState(h, &mode, NULL, NULL)) {
        DWORD flags = 0;
        int byte_pipe;

        e = GetLastError();
        /* A byte-type pipe (PIPE_TYPE_BYTE: libuv, Node.js, .NET's byte
         * mode) cannot be read in message mode - Windows refuses with
         * ERROR_INVALID_PARAMETER - and has no message boundaries to
         * keep: not a pipe msgpipe can speak with.  Say so (EPROTO) rather
         * than "system error"; msgpipe_last_os_error() keeps e.  The pipe's
         * type decides; if the server has disconnected meanwhile it can no
         * longer be asked, and then the error does: the mode is the only
         * parameter, and it is valid for every message pipe. */
        if (GetNamedPipeInfo(h, &flags, NULL, NULL, NULL))
            byte_pipe = !(flags & PIPE_TYPE_MESSAGE);
        else
            byte_pipe = e == ERROR_INVALID_PARAMETER;
        if (byte_pipe) {
            msgpipe__set_os_error((int)e);
            rc = MSGPIPE_EPROTO;
        } else {
            rc = msgpipe__w_error(e);
        }
        CloseHandle(h);
        return rc;
    }
    rc = msgpipe__w_pipe_new(h, 0, 0, o, out);
    if (rc != MSGPIPE_OK)
        CloseHandle(h);
    return rc;
}

/* ---- Peer identity ------------------------------------------------------- */

int msgpipe__b_peer(msgpipe *p, msgpipe_peer_info *info)
{
    ULONG pid = 0;
    BOOL ok;

    if (p->tcp != NULL)
        return MSGPIPE_ENOTSUP; /* msgpipe_peer_address */
    /* The parent's end of a spawned child knows its peer better than the
     * pipe, whose client end this process opened (win32_spawn.c). */
    if (p->peer_pid != 0) {
        pid = p->peer_pid;
        ok = TRUE;
    } else if (p->server_end) {
        ok = GetNamedPipeClientProcessId(p->h, &pid);
    } else {
        ok = GetNamedPipeServerProcessId(p->h, &pid);
    }
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

/* The TOKEN_USER of the token tok, from msgpipe__malloc(). */
static int msgpipe__w_token_user(HANDLE tok, TOKEN_USER **out)
{
    DWORD need = 0;
    void *buf;

    *out = NULL;
    if (!GetTokenInformation(tok, TokenUser, NULL, 0, &need) &&
        GetLastError() != ERROR_INSUFFICIENT_BUFFER)
        return msgpipe__w_error(GetLastError());
    buf = msgpipe__malloc(need ? need : 1);
    if (buf == NULL)
        return MSGPIPE_ENOMEM;
    if (!GetTokenInformation(tok, TokenUser, buf, need, &need)) {
        DWORD e = GetLastError();
        msgpipe__free(buf);
        return msgpipe__w_error(e);
    }
    *out = (TOKEN_USER *)buf;
    return MSGPIPE_OK;
}

/* The user of this process (its process token, not a thread's
 * impersonation token: as the server's pipe belongs to its process). */
static int msgpipe__w_own_user(TOKEN_USER **out)
{
    HANDLE tok;
    int rc;

    *out = NULL;
    if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &tok))
        return msgpipe__w_error(GetLastError());
    rc = msgpipe__w_token_user(tok, out);
    CloseHandle(tok);
    return rc;
}

/* Server end: the user of the client's token.  The client allows
 * identification (SECURITY_IDENTIFICATION): enough to query the token.
 * The calling thread is given back the identity it had - its own, or an
 * impersonation it was already doing - before this returns. */
static int msgpipe__w_client_user(msgpipe *p, TOKEN_USER **out)
{
    HANDLE prev = NULL, tok = NULL;
    DWORD e = 0;
    int rc;

    *out = NULL;
    if (!OpenThreadToken(GetCurrentThread(), TOKEN_IMPERSONATE, TRUE, &prev))
        prev = NULL; /* not impersonating (ERROR_NO_TOKEN) */
    if (!ImpersonateNamedPipeClient(p->h)) {
        e = GetLastError();
        if (prev != NULL)
            CloseHandle(prev);
        if (e == ERROR_CANNOT_IMPERSONATE) {
            /* Nothing read from this client yet (some Windows versions). */
            msgpipe__set_os_error((int)e);
            return MSGPIPE_ENOTSUP;
        }
        return msgpipe__w_error(e);
    }
    if (!OpenThreadToken(GetCurrentThread(), TOKEN_QUERY, TRUE, &tok)) {
        e = GetLastError();
        tok = NULL;
    }
    /* Never leave the thread acting as the client. */
    if (prev == NULL || !SetThreadToken(NULL, prev))
        RevertToSelf();
    if (prev != NULL)
        CloseHandle(prev);
    if (tok == NULL) {
        /* An anonymous-level client cannot be identified. */
        if (e == ERROR_CANT_OPEN_ANONYMOUS) {
            msgpipe__set_os_error((int)e);
            return MSGPIPE_EACCES;
        }
        return msgpipe__w_error(e);
    }
    rc = msgpipe__w_token_user(tok, out);
    CloseHandle(tok);
    return rc;
}

/* Client end: the owner of the server's pipe, in *sd (LocalFree it). */
static int msgpipe__w_pipe_owner(msgpipe *p, PSID *owner,
                                 PSECURITY_DESCRIPTOR *sd)
{
    DWORD e;

    *owner = NULL;
    *sd = NULL;
    e = GetSecurityInfo(p->h, SE_KERNEL_OBJECT, OWNER_SECURITY_INFORMATION,
                        owner, NULL, NULL, NULL, sd);
    if (e != ERROR_SUCCESS)
        return msgpipe__w_error(e);
    if (*owner == NULL) {
        LocalFree(*sd);
        *sd = NULL;
        return msgpipe__w_error(ERROR_INVALID_OWNER);
    }
    return MSGPIPE_OK;
}

int msgpipe__b_peer_user(msgpipe *p, char *buf, size_t cap, size_t *len)
{
    PSECURITY_DESCRIPTOR sd = NULL;
    TOKEN_USER *user = NULL;
    PSID sid;
    char *text = NULL;
    int rc;

    if (p->tcp != NULL)
        return MSGPIPE_ENOTSUP;
    if (p->server_end) {
        rc = msgpipe__w_client_user(p, &user);
        sid = user != NULL ? user->User.Sid : NULL;
    } else {
        rc = msgpipe__w_pipe_owner(p, &sid, &sd);
    }
    if (rc == MSGPIPE_OK) {
        /* SID strings are ASCII: the same text in UTF-8. */
        if (ConvertSidToStringSidA(sid, &text)) {
            rc = msgpipe__put_text(text, buf, cap, len);
            LocalFree(text);
        } else {
            rc = msgpipe__w_error(GetLastError());
        }
    }
    msgpipe__free(user);
    if (sd != NULL)
        LocalFree(sd);
    return rc;
}

int msgpipe__b_same_user(msgpipe *p)
{
    PSECURITY_DESCRIPTOR sd = NULL;
    TOKEN_USER *me = NULL;
    PSID owner;
    int rc;

    if (p->tcp != NULL)
        return MSGPIPE_ENOTSUP;
    rc = msgpipe__w_pipe_owner(p, &owner, &sd);
    if (rc == MSGPIPE_OK)
        rc = msgpipe__w_own_user(&me);
    if (rc == MSGPIPE_OK && !EqualSid(owner, me->User.Sid)) {
        msgpipe__set_os_error(ERROR_ACCESS_DENIED);
        rc = MSGPIPE_EACCES;
    }
    msgpipe__free(me);
    if (sd != NULL)
        LocalFree(sd);
    return rc;
}

int msgpipe__w_pipe_same_user(msgpipe *p)
{
    PSECURITY_DESCRIPTOR sd = NULL;
    TOKEN_USER *me = NULL, *user = NULL;
    PSID sid = NULL;
    int rc, same = -1;

    rc = msgpipe__w_own_user(&me);
    if (rc == MSGPIPE_OK) {
        if (p->server_end) {
            rc = msgpipe__w_client_user(p, &user);
            sid = user != NULL ? user->User.Sid : NULL;
        } else {
            rc = msgpipe__w_pipe_owner(p, &sid, &sd);
        }
    }
    if (rc == MSGPIPE_OK && sid != NULL)
        same = EqualSid(sid, me->User.Sid) ? 1 : 0;
    msgpipe__free(me);
    msgpipe__free(user);
    if (sd != NULL)
        LocalFree(sd);
    return same;
}

/* ---- TCP (win32_tcp.c; a server's address: win32_server.c) ------------- */

int msgpipe__b_peer_address(msgpipe *p, char *buf, size_t cap, size_t *len)
{
    if (p->tcp == NULL)
        return MSGPIPE_ENOTSUP;
    return msgpipe__w_tcp_peer_address(p, buf, cap, len);
}
