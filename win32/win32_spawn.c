/*
 * win32_spawn.c - the Win32 backend's pipes for child processes and the
 * handles that travel with messages: msgpipe_pair (one instance of a pipe
 * with a random name, connected at once), msgpipe_spawn (CreateProcessW
 * with an explicit list of the handles the child inherits),
 * msgpipe_from_parent, the msgpipe_process calls, and the sending side of
 * msgpipe_send_handles (DuplicateHandle into the peer's process; the
 * receiving side is in win32_stream.c).  See win32_internal.h for the
 * other files.
 */
#include "win32_internal.h"

#include <ntsecapi.h> /* RtlGenRandom (SystemFunction036, advapi32) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* As a server's instances (win32_server.c). */
#ifdef MSGPIPE__W_BUFSIZE
#define MSGPIPE__W_PAIR_BUFSIZE MSGPIPE__W_BUFSIZE
#else
#define MSGPIPE__W_PAIR_BUFSIZE (256 * 1024)
#endif

/* Tries with a fresh random name should a name be taken. */
#define MSGPIPE__W_PAIR_TRIES 4

#define MSGPIPE__W_PARENT_VAR L"MSGPIPE_PARENT"

struct msgpipe_process {
    HANDLE h;
    DWORD pid;
};

/* ---- Peer process and user ----------------------------------------------- */

DWORD msgpipe__w_peer_pid(msgpipe *p)
{
    ULONG pid = 0;
    BOOL ok;

    if (p->peer_pid != 0)
        return p->peer_pid;
    if (p->server_end)
        ok = GetNamedPipeClientProcessId(p->h, &pid);
    else
        ok = GetNamedPipeServerProcessId(p->h, &pid);
    return ok ? (DWORD)pid : 0;
}

/* The user SID of process proc's token, from msgpipe__malloc(). */
static TOKEN_USER *msgpipe__w_proc_user(HANDLE proc)
{
    HANDLE tok;
    DWORD need = 0;
    TOKEN_USER *u = NULL;

    if (!OpenProcessToken(proc, TOKEN_QUERY, &tok))
        return NULL;
    if (GetTokenInformation(tok, TokenUser, NULL, 0, &need) ||
        GetLastError() == ERROR_INSUFFICIENT_BUFFER) {
        u = (TOKEN_USER *)msgpipe__malloc(need ? need : 1);
        if (u != NULL && !GetTokenInformation(tok, TokenUser, u, need, &need)) {
            msgpipe__free(u);
            u = NULL;
        }
    }
    CloseHandle(tok);
    return u;
}

/* 1 if process proc runs as this process's user. */
static int msgpipe__w_same_user_proc(HANDLE proc)
{
    TOKEN_USER *me = msgpipe__w_proc_user(GetCurrentProcess());
    TOKEN_USER *it = me != NULL ? msgpipe__w_proc_user(proc) : NULL;
    int same = it != NULL && EqualSid(me->User.Sid, it->User.Sid);

    msgpipe__free(me);
    msgpipe__free(it);
    return same;
}

/*
 * Handle values in a message are taken only from a peer of this user: one
 * that could have duplicated them into this process.  A peer of another
 * user can only name handles this process already has.  The answer is
 * kept for the pipe; a failure to tell is not kept (the next handle
 * message asks again) and counts as "no".  (The peer's own process is
 * asked first: on a server end the pipe tells the user of whoever opened
 * the client end, and on a client end only the owner of the pipe.)
 */
int msgpipe__w_peer_trusted(msgpipe *p)
{
    DWORD pid;
    HANDLE proc;
    int same;

    if (p->peer_trust != 0)
        return p->peer_trust > 0;
    pid = msgpipe__w_peer_pid(p);
    if (pid == GetCurrentProcessId()) {
        p->peer_trust = 1;
        return 1;
    }
    proc = pid != 0 ? OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid)
                    : NULL;
    if (proc != NULL) {
        same = msgpipe__w_same_user_proc(proc);
        CloseHandle(proc);
    } else {
        /* The peer has exited (its handles in this process are still
         * ours to close): ask the pipe instead. */
        same = msgpipe__w_pipe_same_user(p);
        if (same < 0)
            return 0;
    }
    p->peer_trust = same ? 1 : -1;
    return same;
}

/* p->peer_proc, opened for DuplicateHandle if it is not yet. */
static int msgpipe__w_peer_proc(msgpipe *p)
{
    DWORD pid;

    if (p->peer_proc != NULL)
        return MSGPIPE_OK;
    pid = msgpipe__w_peer_pid(p);
    if (pid == 0)
        return msgpipe__w_error(GetLastError() ? GetLastError()
                                               : ERROR_NOT_SUPPORTED);
    if (pid == GetCurrentProcessId()) {
        p->peer_proc = GetCurrentProcess();
        return MSGPIPE_OK;
    }
    p->peer_proc = OpenProcess(PROCESS_DUP_HANDLE, FALSE, pid);
    if (p->peer_proc == NULL) {
        DWORD e = GetLastError();
        msgpipe__set_os_error((int)e);
        /* ERROR_INVALID_PARAMETER: no such process (any more): the peer
         * is gone. */
        return e == ERROR_INVALID_PARAMETER ? MSGPIPE_ECLOSED : MSGPIPE_EACCES;
    }
    return MSGPIPE_OK;
}

static void msgpipe__w_put_le32(unsigned char *b, uint32_t v)
{
    b[0] = (unsigned char)v;
    b[1] = (unsigned char)(v >> 8);
    b[2] = (unsigned char)(v >> 16);
    b[3] = (unsigned char)(v >> 24);
}

int msgpipe__b_send_handles(msgpipe *p, const void *msg, size_t len,
                            const msgpipe_native *h, size_t nh, int timeout_ms)
{
    unsigned char hdr[MSGPIPE__W_HDR_MAX];
    size_t hlen = MSGPIPE__W_HDR + 8 * nh;
    int split = (uint64_t)hlen + len > MSGPIPE__W_SPLIT_MIN;
    uint64_t dup[MSGPIPE_MAX_HANDLES];
    HANDLE copy;
    size_t i;
    int rc;

    if (p->tcp != NULL)
        return MSGPIPE_ENOTSUP; /* TCP carries no handles */
    if ((uint64_t)len > p->max_message)
        return MSGPIPE_EMSGSIZE;
    rc = msgpipe__w_peer_proc(p);
    if (rc != MSGPIPE_OK)
        return rc;
    for (i = 0; i < nh; i++) {
        if (!DuplicateHandle(GetCurrentProcess(), (HANDLE)h[i], p->peer_proc,
                             &copy, 0, FALSE, DUPLICATE_SAME_ACCESS)) {
            DWORD e = GetLastError();
            msgpipe__w_close_remote(p->peer_proc, dup, i);
            if (e == ERROR_INVALID_HANDLE) {
                msgpipe__set_os_error((int)e);
                return MSGPIPE_EINVAL;
            }
            return msgpipe__w_error(e);
        }
        dup[i] = (uint64_t)(uintptr_t)copy;
    }
    memcpy(hdr, msgpipe__w_magic, MSGPIPE__W_MAGIC_LEN);
    msgpipe__w_put_le32(hdr + 16, (uint32_t)nh);
    msgpipe__w_put_le32(hdr + 20, split ? 1 : 0); /* flags: split */
    for (i = 0; i < nh; i++) {
        msgpipe__w_put_le32(hdr + MSGPIPE__W_HDR + 8 * i, (uint32_t)dup[i]);
        msgpipe__w_put_le32(hdr + MSGPIPE__W_HDR + 8 * i + 4,
                            (uint32_t)(dup[i] >> 32));
    }
    if (split) {
        /* The length of the payload, the next message. */
        msgpipe__w_put_le32(hdr + hlen, (uint32_t)len);
        msgpipe__w_put_le32(hdr + hlen + 4, (uint32_t)((uint64_t)len >> 32));
        hlen += 8;
    }
    /* From here the copies are msgpipe__w_send_ex's: it closes them
     * unless the message is delivered. */
    return msgpipe__w_send_ex(p, hdr, hlen, msg, len, timeout_ms, dup, nh,
                              split);
}

/* ---- Pairs --------------------------------------------------------------- */

/*
 * The two handles of a pair: one message-mode instance of a pipe with a
 * random name, created with FILE_FLAG_FIRST_PIPE_INSTANCE (so the name is
 * nobody else's), at most one instance and a DACL for this user only, and
 * opened at once by this process - as Python's multiprocessing.Pipe().
 * *srv is the server end, *cli the client end.
 */
static int msgpipe__w_pair_handles(const msgpipe__opts *o, HANDLE *srv,
                                   HANDLE *cli)
{
    static LONG volatile counter = 0;
    msgpipe__opts so = *o;
    PSECURITY_DESCRIPTOR sd = NULL;
    SECURITY_ATTRIBUTES sa;
    DWORD mode = PIPE_READMODE_MESSAGE, e = 0;
    unsigned char rnd[8];
    char name[96];
    WCHAR wname[96];
    OVERLAPPED ov;
    HANDLE s = INVALID_HANDLE_VALUE, c = INVALID_HANDLE_VALUE;
    int rc, tries, i;

    *srv = *cli = INVALID_HANDLE_VALUE;
    so.access = MSGPIPE_ACCESS_OWNER;
    so.sddl = NULL;
    rc = msgpipe__w_sd_create(&so, &sd);
    if (rc != MSGPIPE_OK)
        return rc;
    memset(&sa, 0, sizeof(sa));
    sa.nLength = sizeof(sa);
    sa.lpSecurityDescriptor = sd;
    sa.bInheritHandle = FALSE;
    for (tries = 0; tries < MSGPIPE__W_PAIR_TRIES; tries++) {
        if (!RtlGenRandom(rnd, sizeof(rnd))) {
            rc = msgpipe__w_error(GetLastError());
            break;
        }
        snprintf(name, sizeof(name),
                 "\\\\.\\pipe\\msgpipe-pair-%lu-%lu-%02x%02x%02x%02x%02x%02x"
                 "%02x%02x",
                 (unsigned long)GetCurrentProcessId(),
                 (unsigned long)(ULONG)InterlockedIncrement(&counter), rnd[0],
                 rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
        for (i = 0; name[i] != '\0'; i++)
            wname[i] = (WCHAR)(unsigned char)name[i];
        wname[i] = 0;
        s = CreateNamedPipeW(wname,
                             PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED |
                                 FILE_FLAG_FIRST_PIPE_INSTANCE,
                             PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE |
                                 PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
                             1, MSGPIPE__W_PAIR_BUFSIZE,
                             MSGPIPE__W_PAIR_BUFSIZE, 0, &sa);
        if (s == INVALID_HANDLE_VALUE) {
            e = GetLastError();
            rc = msgpipe__w_error(e);
            if (e == ERROR_ACCESS_DENIED || e == ERROR_PIPE_BUSY)
                continue; /* the name is taken: another one */
            break;
        }
        /* The access of msgpipe_connect (see MSGPIPE__W_RW_ACCESS). */
        c = CreateFileW(wname, MSGPIPE__W_RW_ACCESS, 0, NULL, OPEN_EXISTING,
                        FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT |
                            SECURITY_IDENTIFICATION,
                        NULL);
        if (c == INVALID_HANDLE_VALUE) {
            e = GetLastError();
            rc = msgpipe__w_error(e);
            CloseHandle(s);
            s = INVALID_HANDLE_VALUE;
            if (e == ERROR_PIPE_BUSY)
                continue; /* somebody of ours came first: another name */
            break;
        }
        rc = MSGPIPE_OK;
        if (!SetNamedPipeHandleState(c, &mode, NULL, NULL)) {
            rc = msgpipe__w_error(GetLastError());
        } else {
            memset(&ov, 0, sizeof(ov));
            ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
            if (ov.hEvent == NULL) {
                rc = msgpipe__w_error(GetLastError());
            } else if (!ConnectNamedPipe(s, &ov)) {
                e = GetLastError();
                if (e == ERROR_IO_PENDING) {
                    /* Cannot be: the client is there.  Do not wait. */
                    CancelIoEx(s, &ov);
                    GetOverlappedResult(s, &ov, &mode, TRUE);
                    msgpipe__set_os_error(ERROR_PIPE_NOT_CONNECTED);
                    rc = MSGPIPE_EIO;
                } else if (e != ERROR_PIPE_CONNECTED) {
                    rc = msgpipe__w_error(e);
                }
            }
            if (ov.hEvent != NULL)
                CloseHandle(ov.hEvent);
        }
        if (rc != MSGPIPE_OK) {
            CloseHandle(c);
            CloseHandle(s);
            c = s = INVALID_HANDLE_VALUE;
        }
        break;
    }
    LocalFree(sd);
    if (rc == MSGPIPE_OK) {
        *srv = s;
        *cli = c;
    }
    return rc;
}

int msgpipe__b_pair(const msgpipe__opts *o, msgpipe **a, msgpipe **b)
{
    HANDLE s, c;
    int rc;

    rc = msgpipe__w_pair_handles(o, &s, &c);
    if (rc != MSGPIPE_OK)
        return rc;
    rc = msgpipe__w_pipe_new(s, 1, 0, o, a);
    if (rc != MSGPIPE_OK) {
        CloseHandle(s);
        CloseHandle(c);
        return rc;
    }
    rc = msgpipe__w_pipe_new(c, 0, 0, o, b);
    if (rc != MSGPIPE_OK) {
        msgpipe__b_close(*a);
        *a = NULL;
        CloseHandle(c);
        return rc;
    }
    /* Both ends are this process's: so are the handles they carry. */
    (*a)->peer_trust = (*b)->peer_trust = 1;
    return MSGPIPE_OK;
}

/* ---- Command lines and environment blocks -------------------------------- */

/* Append argument a to the command line being built at *out (NULL: only
 * count), quoted as CommandLineToArgvW and the C runtime read it back:
 * in quotes if it is empty or has a space, tab or quote; inside, the
 * backslashes before a quote are doubled and the quote escaped, and those
 * before the closing quote doubled.  Returns the bytes it takes. */
static size_t msgpipe__w_quote(const char *a, char *out)
{
    size_t n = 0, bs = 0, k;
    const char *c;
    int quote = a[0] == '\0' || strpbrk(a, " \t\"\n\v") != NULL;

#define MSGPIPE__W_PUT(ch)                                                     \
    do {                                                                       \
        if (out != NULL)                                                       \
            out[n] = (ch);                                                     \
        n++;                                                                   \
    } while (0)
    if (!quote) {
        for (c = a; *c != '\0'; c++)
            MSGPIPE__W_PUT(*c);
        return n;
    }
    MSGPIPE__W_PUT('"');
    for (c = a;; c++) {
        if (*c == '\\') {
            bs++;
            continue;
        }
        if (*c == '\0') {
            for (k = 0; k < 2 * bs; k++)
                MSGPIPE__W_PUT('\\');
            break;
        }
        if (*c == '"') {
            for (k = 0; k < 2 * bs + 1; k++)
                MSGPIPE__W_PUT('\\');
        } else {
            for (k = 0; k < bs; k++)
                MSGPIPE__W_PUT('\\');
        }
        bs = 0;
        MSGPIPE__W_PUT(*c);
    }
    MSGPIPE__W_PUT('"');
#undef MSGPIPE__W_PUT
    return n;
}

/* argv as one command line (UTF-16, from msgpipe__malloc()). */
static int msgpipe__w_cmdline(const char *const *argv, WCHAR **out)
{
    size_t n = 0, i;
    char *line, *at;
    int rc;

    *out = NULL;
    for (i = 0; argv[i] != NULL; i++)
        n += msgpipe__w_quote(argv[i], NULL) + 1;
    line = (char *)msgpipe__malloc(n + 1);
    if (line == NULL)
        return MSGPIPE_ENOMEM;
    at = line;
    for (i = 0; argv[i] != NULL; i++) {
        if (i > 0)
            *at++ = ' ';
        at += msgpipe__w_quote(argv[i], at);
    }
    *at = '\0';
    rc = msgpipe__w_utf16(line, out);
    msgpipe__free(line);
    return rc;
}

/* The length of the name of the environment entry e ("NAME=VALUE"; a name
 * may begin with '=', as the "=C:" entries do). */
static size_t msgpipe__w_env_name_len(const WCHAR *e)
{
    const WCHAR *eq = e[0] != 0 ? wcschr(e + 1, L'=') : NULL;

    return eq != NULL ? (size_t)(eq - e) : wcslen(e);
}

static int msgpipe__w_same_name(const WCHAR *a, size_t an, const WCHAR *b,
                                size_t bn)
{
    return CompareStringOrdinal(a, (int)an, b, (int)bn, TRUE) == CSTR_EQUAL;
}

/*
 * The child's environment block: this process's, with the entries of add
 * replacing those of the same name (names compare without regard to case,
 * as Windows' do), and MSGPIPE_PARENT=value.  UTF-16, each entry
 * NUL-terminated, the block ended by one more NUL.
 */
static int msgpipe__w_env_block(const char *const *add, uintptr_t value,
                                WCHAR **out)
{
    static const WCHAR var[] = MSGPIPE__W_PARENT_VAR;
    const size_t var_len = sizeof(var) / sizeof(var[0]) - 1;
    WCHAR **w = NULL;
    size_t *wn = NULL, na = 0, i, j, total = 0, len, n;
    WCHAR *cur = NULL, *e, *blk = NULL, *at;
    char val[32];
    int rc = MSGPIPE_OK, skip;

    *out = NULL;
    for (na = 0; add != NULL && add[na] != NULL; na++)
        ;
    if (na > 0) {
        w = (WCHAR **)msgpipe__calloc(na, sizeof(*w));
        wn = (size_t *)msgpipe__calloc(na, sizeof(*wn));
        if (w == NULL || wn == NULL) {
            rc = MSGPIPE_ENOMEM;
            goto done;
        }
    }
    for (i = 0; i < na; i++) {
        rc = msgpipe__w_utf16(add[i], &w[i]);
        if (rc != MSGPIPE_OK)
            goto done;
        wn[i] = msgpipe__w_env_name_len(w[i]);
        /* The core refused MSGPIPE_PARENT; on Windows also in any case. */
        if (msgpipe__w_same_name(w[i], wn[i], var, var_len)) {
            rc = MSGPIPE_EINVAL;
            goto done;
        }
    }
    cur = GetEnvironmentStringsW();
    if (cur == NULL) {
        rc = msgpipe__w_error(GetLastError());
        goto done;
    }
    snprintf(val, sizeof(val), "%llu", (unsigned long long)value);
    /* Two passes: count, then copy. */
    for (;;) {
        at = blk;
        total = 0;
        for (e = cur; *e != 0; e += len + 1) {
            len = wcslen(e);
            n = msgpipe__w_env_name_len(e);
            skip = msgpipe__w_same_name(e, n, var, var_len);
            for (j = 0; j < na && !skip; j++)
                skip = msgpipe__w_same_name(e, n, w[j], wn[j]);
            if (skip)
                continue;
            if (at != NULL) {
                memcpy(at, e, (len + 1) * sizeof(WCHAR));
                at += len + 1;
            }
            total += len + 1;
        }
        for (i = 0; i < na; i++) {
            /* A later entry of the same name wins. */
            for (skip = 0, j = i + 1; j < na && !skip; j++)
                skip = msgpipe__w_same_name(w[i], wn[i], w[j], wn[j]);
            if (skip)
                continue;
            len = wcslen(w[i]);
            if (at != NULL) {
                memcpy(at, w[i], (len + 1) * sizeof(WCHAR));
                at += len + 1;
            }
            total += len + 1;
        }
        if (at != NULL) {
            memcpy(at, var, var_len * sizeof(WCHAR));
            at += var_len;
            *at++ = L'=';
            for (i = 0; val[i] != '\0'; i++)
                *at++ = (WCHAR)val[i];
            *at++ = 0;
            *at = 0;
            break;
        }
        total += var_len + 1 + strlen(val) + 1 + 1;
        blk = (WCHAR *)msgpipe__malloc(total * sizeof(WCHAR));
        if (blk == NULL) {
            rc = MSGPIPE_ENOMEM;
            goto done;
        }
    }
    *out = blk;
done:
    if (cur != NULL)
        FreeEnvironmentStringsW(cur);
    for (i = 0; w != NULL && i < na; i++)
        msgpipe__free(w[i]);
    msgpipe__free(w);
    msgpipe__free(wn);
    return rc;
}

/* ---- Child processes ----------------------------------------------------- */

static int msgpipe__w_spawn_error(DWORD e)
{
    switch (e) {
    case ERROR_DIRECTORY: /* the working directory is not one */
        msgpipe__set_os_error((int)e);
        return MSGPIPE_ENOENT;
    case ERROR_BAD_EXE_FORMAT:
    case ERROR_EXE_MACHINE_TYPE_MISMATCH:
        msgpipe__set_os_error((int)e);
        return MSGPIPE_EACCES; /* not a program this system runs */
    default:
        return msgpipe__w_error(e); /* FILE/PATH_NOT_FOUND: ENOENT, ... */
    }
}

int msgpipe__b_spawn(const msgpipe__spawn *sp, msgpipe **pipe,
                     msgpipe_process **proc)
{
    static const DWORD std_ids[3] = {STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
                                     STD_ERROR_HANDLE};
    STARTUPINFOEXW si;
    PROCESS_INFORMATION pi;
    HANDLE s, c, list[4], std[3], dups[3];
    DWORD flags, e;
    SIZE_T asize = 0;
    LPPROC_THREAD_ATTRIBUTE_LIST attrs = NULL;
    WCHAR *cmd = NULL, *env = NULL, *wcwd = NULL;
    msgpipe *p = NULL;
    msgpipe_process *pr = NULL;
    size_t nl = 0, i, k;
    int rc, attrs_init = 0;

    for (i = 0; i < 3; i++)
        dups[i] = NULL;
    rc = msgpipe__w_cmdline(sp->argv, &cmd);
    if (rc != MSGPIPE_OK)
        return rc;
    if (sp->cwd != NULL) {
        rc = msgpipe__w_utf16(sp->cwd, &wcwd);
        if (rc != MSGPIPE_OK) {
            msgpipe__free(cmd);
            return rc;
        }
    }
    pr = (msgpipe_process *)msgpipe__calloc(1, sizeof(*pr));
    if (pr == NULL) {
        msgpipe__free(cmd);
        msgpipe__free(wcwd);
        return MSGPIPE_ENOMEM;
    }
    rc = msgpipe__w_pair_handles(&sp->po, &s, &c);
    if (rc != MSGPIPE_OK)
        goto fail_early;
    rc = msgpipe__w_pipe_new(s, 1, 0, &sp->po, &p);
    if (rc != MSGPIPE_OK) {
        CloseHandle(s);
        CloseHandle(c);
        goto fail_early;
    }
    /* From here on s is p's; c is closed at the end in every case. */
    rc = msgpipe__w_env_block(sp->env, (uintptr_t)c, &env);
    if (rc != MSGPIPE_OK)
        goto out;

    /* The child's end must be inheritable to be listed; it is nobody
     * else's meanwhile (see docs/decisions.md for a CreateProcess of
     * another library that inherits everything). */
    if (!SetHandleInformation(c, HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT)) {
        rc = msgpipe__w_error(GetLastError());
        goto out;
    }
    list[nl++] = c;
    /* The standard handles this process has: as they are if inheritable,
     * else an inheritable duplicate (a listed handle must be inheritable);
     * each listed once. */
    for (i = 0; i < 3; i++) {
        std[i] = GetStdHandle(std_ids[i]);
        if (std[i] == NULL || std[i] == INVALID_HANDLE_VALUE ||
            !GetHandleInformation(std[i], &flags)) {
            std[i] = NULL;
            continue;
        }
        if (!(flags & HANDLE_FLAG_INHERIT)) {
            if (!DuplicateHandle(GetCurrentProcess(), std[i],
                                 GetCurrentProcess(), &dups[i], 0, TRUE,
                                 DUPLICATE_SAME_ACCESS)) {
                dups[i] = NULL;
                std[i] = NULL;
                continue;
            }
            std[i] = dups[i];
        }
        for (k = 0; k < nl && list[k] != std[i]; k++)
            ;
        if (k == nl)
            list[nl++] = std[i];
    }
    InitializeProcThreadAttributeList(NULL, 1, 0, &asize);
    attrs = (LPPROC_THREAD_ATTRIBUTE_LIST)msgpipe__malloc(asize ? asize : 1);
    if (attrs == NULL) {
        rc = MSGPIPE_ENOMEM;
        goto out;
    }
    if (!InitializeProcThreadAttributeList(attrs, 1, 0, &asize)) {
        rc = msgpipe__w_error(GetLastError());
        goto out;
    }
    attrs_init = 1;
    if (!UpdateProcThreadAttribute(attrs, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST,
                                   list, nl * sizeof(HANDLE), NULL, NULL)) {
        rc = msgpipe__w_error(GetLastError());
        goto out;
    }
    memset(&si, 0, sizeof(si));
    si.StartupInfo.cb = sizeof(si);
    si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
    si.StartupInfo.hStdInput = std[0];
    si.StartupInfo.hStdOutput = std[1];
    si.StartupInfo.hStdError = std[2];
    si.lpAttributeList = attrs;
    memset(&pi, 0, sizeof(pi));
    if (!CreateProcessW(NULL, cmd, NULL, NULL, TRUE,
                        EXTENDED_STARTUPINFO_PRESENT |
                            CREATE_UNICODE_ENVIRONMENT,
                        env, wcwd, &si.StartupInfo, &pi)) {
        e = GetLastError();
        rc = msgpipe__w_spawn_error(e);
        goto out;
    }
    CloseHandle(pi.hThread);
    pr->h = pi.hProcess;
    pr->pid = pi.dwProcessId;
    /* This end's peer is the child, though this process opened the other
     * end; the child runs as this user (no other token was given). */
    p->peer_pid = pi.dwProcessId;
    p->peer_trust = 1;
    rc = MSGPIPE_OK;

out:
    if (attrs_init)
        DeleteProcThreadAttributeList(attrs);
    msgpipe__free(attrs);
    for (i = 0; i < 3; i++)
        if (dups[i] != NULL)
            CloseHandle(dups[i]);
    CloseHandle(c); /* the child has its own copy */
    msgpipe__free(env);
    msgpipe__free(cmd);
    msgpipe__free(wcwd);
    if (rc != MSGPIPE_OK) {
        msgpipe__b_close(p);
        msgpipe__free(pr);
        return rc;
    }
    *pipe = p;
    *proc = pr;
    return MSGPIPE_OK;

fail_early:
    msgpipe__free(pr);
    msgpipe__free(cmd);
    msgpipe__free(wcwd);
    return rc;
}

int msgpipe__b_process_wait(msgpipe_process *proc, int timeout_ms,
                            int *exit_code)
{
    DWORD w, code;

    w = WaitForSingleObject(proc->h,
                            timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms);
    if (w == WAIT_TIMEOUT) {
        msgpipe__set_os_error(WAIT_TIMEOUT);
        return MSGPIPE_ETIMEDOUT;
    }
    if (w != WAIT_OBJECT_0)
        return msgpipe__w_error(GetLastError());
    if (!GetExitCodeProcess(proc->h, &code))
        return msgpipe__w_error(GetLastError());
    *exit_code = (int)code;
    return MSGPIPE_OK;
}

int msgpipe__b_process_kill(msgpipe_process *proc)
{
    DWORD e;

    if (TerminateProcess(proc->h, 1))
        return MSGPIPE_OK;
    e = GetLastError();
    /* An exited process refuses (ERROR_ACCESS_DENIED): not an error. */
    if (WaitForSingleObject(proc->h, 0) == WAIT_OBJECT_0)
        return MSGPIPE_OK;
    return msgpipe__w_error(e);
}

int64_t msgpipe__b_process_pid(const msgpipe_process *proc)
{
    return (int64_t)proc->pid;
}

void msgpipe__b_process_close(msgpipe_process *proc)
{
    CloseHandle(proc->h);
    msgpipe__free(proc);
}

/* ---- The child's side ---------------------------------------------------- */

/* FILE_MODE_INFORMATION through NtQueryInformationFile: is h open for
 * overlapped I/O (neither FILE_SYNCHRONOUS_IO_ALERT nor _NONALERT)?  1 if
 * so or if it cannot be told. */
static int msgpipe__w_overlapped(HANDLE h)
{
    typedef LONG(WINAPI * nqif_fn)(HANDLE, void *, PVOID, ULONG, int);
    struct {
        union {
            LONG Status;
            PVOID Pointer;
        } u;
        ULONG_PTR Information;
    } io;
    ULONG mode = 0;
    HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
    nqif_fn fn = NULL;

    if (ntdll != NULL)
        fn = (nqif_fn)(void (*)(void))GetProcAddress(ntdll,
                                                     "NtQueryInformationFile");
    if (fn == NULL)
        return 1;
    memset(&io, 0, sizeof(io));
    if (fn(h, &io, &mode, (ULONG)sizeof(mode), 16 /* FileModeInformation */) <
        0)
        return 1;
    return (mode & 0x30) == 0; /* FILE_SYNCHRONOUS_IO_(NON)ALERT */
}

int msgpipe__b_from_parent(const msgpipe__opts *o, msgpipe **out)
{
    WCHAR val[32];
    DWORD n, flags = 0, mode = PIPE_READMODE_MESSAGE;
    uint64_t v = 0;
    HANDLE h;
    msgpipe *p;
    int rc;
    DWORD i;

    SetLastError(0);
    n = GetEnvironmentVariableW(MSGPIPE__W_PARENT_VAR, val,
                                (DWORD)(sizeof(val) / sizeof(val[0])));
    if (n == 0 && GetLastError() == ERROR_ENVVAR_NOT_FOUND) {
        msgpipe__set_os_error(ERROR_ENVVAR_NOT_FOUND);
        return MSGPIPE_ENOENT;
    }
    /* A decimal number, digits only, that fits a handle. */
    if (n == 0 || n >= sizeof(val) / sizeof(val[0]))
        return MSGPIPE_EBADNAME;
    for (i = 0; i < n; i++) {
        unsigned d;
        if (val[i] < L'0' || val[i] > L'9')
            return MSGPIPE_EBADNAME;
        d = (unsigned)(val[i] - L'0');
        if (v > (UINT64_MAX - d) / 10)
            return MSGPIPE_EBADNAME;
        v = v * 10 + d;
    }
    if (v == 0 || v > (uint64_t)UINTPTR_MAX)
        return MSGPIPE_EBADNAME;
    h = (HANDLE)(uintptr_t)v;
    /* A value that is no handle makes these fail; one of another kind
     * answers otherwise.  The client end of a message-mode pipe, for
     * overlapped I/O. */
    if (GetFileType(h) != FILE_TYPE_PIPE ||
        !GetNamedPipeInfo(h, &flags, NULL, NULL, NULL) ||
        !(flags & PIPE_TYPE_MESSAGE) || (flags & PIPE_SERVER_END) ||
        !msgpipe__w_overlapped(h)) {
        msgpipe__set_os_error((int)GetLastError());
        return MSGPIPE_EBADNAME;
    }
    if (!SetNamedPipeHandleState(h, &mode, NULL, NULL))
        return msgpipe__w_error(GetLastError());
    if (!SetHandleInformation(h, HANDLE_FLAG_INHERIT, 0))
        return msgpipe__w_error(GetLastError());
    rc = msgpipe__w_pipe_new(h, 0, 0, o, &p);
    if (rc != MSGPIPE_OK)
        return rc;
    /* Taken: the variable goes, from the system's environment and from
     * the C runtime's copy (getenv). */
    SetEnvironmentVariableW(MSGPIPE__W_PARENT_VAR, NULL);
    _wputenv(MSGPIPE__W_PARENT_VAR L"=");
    /* Ask now, while the parent surely runs. */
    msgpipe__w_peer_trusted(p);
    *out = p;
    return MSGPIPE_OK;
}
