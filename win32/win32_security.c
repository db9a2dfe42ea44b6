/*
 * win32_security.c - the security descriptor of a msgpipe server.
 *
 * Windows gives a named pipe created without one a default DACL that lets
 * Everyone read it (and, on some systems, more).  msgpipe instead sets an
 * explicit, protected DACL:
 *
 *   OWNER (default)  the server's user (the TokenUser SID of the process
 *                    token) and LocalSystem: full control.
 *   GROUP            also the token's primary group (TokenPrimaryGroup),
 *                    which is what Windows records as the group of every
 *                    object the process creates - the nearest thing to the
 *                    group of a POSIX socket file.  Note that it is usually
 *                    a wide group: "None" (every local account) on a
 *                    stand-alone machine, "Domain Users" in a domain.
 *   WORLD            also Everyone (S-1-1-0), as POSIX mode 0666 admits
 *                    every local user.  PIPE_REJECT_REMOTE_CLIENTS keeps
 *                    other machines out in every case.
 *
 * The entries for the group and for Everyone grant MSGPIPE__W_RW_ACCESS
 * (read and write, but not FILE_CREATE_PIPE_INSTANCE: see win32_internal.h), so
 * that no one but the server's user can add instances to the pipe.
 *
 * The descriptor is built as SDDL text and converted by
 * ConvertStringSecurityDescriptorToSecurityDescriptorW, which is simpler to
 * read and check than the equivalent sequence of ACL calls.
 *
 * With msgpipe_options.sddl the caller's own text is converted instead,
 * and used as it is (the core has made sure access is OWNER then): text
 * that does not parse is MSGPIPE_EINVAL, with the system's reason as the
 * last OS error.
 */
#include "win32_internal.h"

#include <sddl.h>
#include <stdlib.h>
#include <string.h>

/* A TOKEN_USER or TOKEN_PRIMARY_GROUP of the process token, from
 * msgpipe__malloc(). */
static int msgpipe__w_token_info(TOKEN_INFORMATION_CLASS cls, void **out)
{
    HANDLE tok = NULL;
    DWORD need = 0;
    void *buf = NULL;
    int rc;

    *out = NULL;
    /* The process token, not a thread's impersonation token: the server
     * belongs to the process that runs it. */
    if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &tok))
        return msgpipe__w_error(GetLastError());
    if (!GetTokenInformation(tok, cls, NULL, 0, &need) &&
        GetLastError() != ERROR_INSUFFICIENT_BUFFER) {
        rc = msgpipe__w_error(GetLastError());
        goto done;
    }
    buf = msgpipe__malloc(need ? need : 1);
    if (buf == NULL) {
        rc = MSGPIPE_ENOMEM;
        goto done;
    }
    if (!GetTokenInformation(tok, cls, buf, need, &need)) {
        rc = msgpipe__w_error(GetLastError());
        msgpipe__free(buf);
        goto done;
    }
    *out = buf;
    rc = MSGPIPE_OK;
done:
    CloseHandle(tok);
    return rc;
}

/* Append the NUL-terminated src to dst (capacity cap wide characters). */
static int msgpipe__w_append(WCHAR *dst, size_t cap, const WCHAR *src)
{
    size_t have = wcslen(dst), add = wcslen(src);

    if (have + add + 1 > cap)
        return 0;
    memcpy(dst + have, src, (add + 1) * sizeof(WCHAR));
    return 1;
}

/* Append "(A;;<mask>;;;<sid>)". */
static int msgpipe__w_append_ace(WCHAR *dst, size_t cap, const WCHAR *mask,
                                 const WCHAR *sid)
{
    return msgpipe__w_append(dst, cap, L"(A;;") &&
           msgpipe__w_append(dst, cap, mask) &&
           msgpipe__w_append(dst, cap, L";;;") &&
           msgpipe__w_append(dst, cap, sid) &&
           msgpipe__w_append(dst, cap, L")");
}

/* The caller's SDDL string (UTF-8) as a security descriptor. */
static int msgpipe__w_sd_from_sddl(const char *text, PSECURITY_DESCRIPTOR *out)
{
    WCHAR *w = NULL;
    int rc;

    *out = NULL;
    rc = msgpipe__w_utf16(text, &w);
    if (rc != MSGPIPE_OK)
        return rc;
    if (ConvertStringSecurityDescriptorToSecurityDescriptorW(w, SDDL_REVISION_1,
                                                             out, NULL)) {
        rc = MSGPIPE_OK;
    } else {
        DWORD e = GetLastError();
        *out = NULL;
        /* Out of memory is that; any other failure is the text's. */
        if (e == ERROR_NOT_ENOUGH_MEMORY || e == ERROR_OUTOFMEMORY) {
            rc = msgpipe__w_error(e);
        } else {
            msgpipe__set_os_error((int)e);
            rc = MSGPIPE_EINVAL;
        }
    }
    msgpipe__free(w);
    return rc;
}

int msgpipe__w_sd_create(const msgpipe__opts *o, PSECURITY_DESCRIPTOR *out)
{
    int access = o->access;
    /* Two SIDs of at most ~190 characters each plus fixed text. */
    enum { SDDL_CAP = 1024 };
    WCHAR sddl[SDDL_CAP];
    void *user = NULL, *group = NULL;
    WCHAR *user_s = NULL, *group_s = NULL;
    PSECURITY_DESCRIPTOR sd = NULL;
    int rc, ok;

    *out = NULL;
    if (o->sddl != NULL)
        return msgpipe__w_sd_from_sddl(o->sddl, out);
    rc = msgpipe__w_token_info(TokenUser, &user);
    if (rc != MSGPIPE_OK)
        goto done;
    if (!ConvertSidToStringSidW(((TOKEN_USER *)user)->User.Sid, &user_s)) {
        rc = msgpipe__w_error(GetLastError());
        goto done;
    }
    if (access == MSGPIPE_ACCESS_GROUP) {
        rc = msgpipe__w_token_info(TokenPrimaryGroup, &group);
        if (rc != MSGPIPE_OK)
            goto done;
        if (!ConvertSidToStringSidW(
                ((TOKEN_PRIMARY_GROUP *)group)->PrimaryGroup, &group_s)) {
            rc = msgpipe__w_error(GetLastError());
            goto done;
        }
    }

    /* "O:" - the server's user owns the pipe, which is what a client's
     * require_same_user checks (Windows's default owner would be the
     * Administrators group for an elevated administrator).  "D:P" - a
     * protected DACL: nothing is inherited from elsewhere. */
    sddl[0] = 0;
    ok = msgpipe__w_append(sddl, SDDL_CAP, L"O:") &&
         msgpipe__w_append(sddl, SDDL_CAP, user_s) &&
         msgpipe__w_append(sddl, SDDL_CAP, L"D:P") &&
         msgpipe__w_append_ace(sddl, SDDL_CAP, L"GA", user_s) &&
         msgpipe__w_append_ace(sddl, SDDL_CAP, L"GA", L"SY");
    if (ok && group_s != NULL)
        ok = msgpipe__w_append_ace(sddl, SDDL_CAP, L"0x12019b", group_s);
    if (ok && access == MSGPIPE_ACCESS_WORLD)
        ok = msgpipe__w_append_ace(sddl, SDDL_CAP, L"0x12019b", L"WD");
    if (!ok) {
        rc = msgpipe__w_error(ERROR_INSUFFICIENT_BUFFER);
        goto done;
    }
    if (!ConvertStringSecurityDescriptorToSecurityDescriptorW(
            sddl, SDDL_REVISION_1, &sd, NULL)) {
        rc = msgpipe__w_error(GetLastError());
        goto done;
    }
    *out = sd;
    rc = MSGPIPE_OK;
done:
    if (user_s != NULL)
        LocalFree(user_s);
    if (group_s != NULL)
        LocalFree(group_s);
    msgpipe__free(user);
    msgpipe__free(group);
    return rc;
}
