/*
 * names.c - one portable pipe name, mapped to each system's form.
 *
 * The rules are those documented in msgpipe.h and docs/names.md.  This file
 * makes no system call: it is a pure function of the name, the backend's
 * limits and XDG_RUNTIME_DIR, so it can be tested and fuzzed alone.  A name
 * that does not fit is rejected, never truncated.
 */
#include "backend.h"

#include <string.h>

#define MSGPIPE__WIN_PREFIX "\\\\.\\pipe\\"
#define MSGPIPE__WIN_PREFIX_LEN 9

static int msgpipe__put(msgpipe__name *out, int kind, const char *a,
                        size_t alen, const char *b, size_t blen, size_t limit)
{
    if (alen + blen > limit || alen + blen > MSGPIPE__NAME_MAX)
        return MSGPIPE_ENAMETOOLONG;
    memcpy(out->sys, a, alen);
    memcpy(out->sys + alen, b, blen);
    out->sys[alen + blen] = '\0';
    out->len = alen + blen;
    out->kind = kind;
    return MSGPIPE_OK;
}

/* "\\.\pipe\" with "pipe" in any case, as Windows accepts it. */
static int msgpipe__has_win_prefix(const char *name, size_t len)
{
    static const char lower[] = "\\\\.\\pipe\\";
    size_t i;

    if (len < MSGPIPE__WIN_PREFIX_LEN)
        return 0;
    for (i = 0; i < MSGPIPE__WIN_PREFIX_LEN; i++) {
        char c = name[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != lower[i])
            return 0;
    }
    return 1;
}

/* What follows "\\.\pipe\": one or more components separated by '\',
 * none of them empty (no trailing or doubled separator), "." or "..",
 * which the system would resolve into another name or fail on. */
static int msgpipe__win_tail_ok(const char *t)
{
    const char *c = t;

    for (;;) {
        const char *e = strchr(c, '\\');
        size_t n = e != NULL ? (size_t)(e - c) : strlen(c);
        if (n == 0 || (n == 1 && c[0] == '.') ||
            (n == 2 && c[0] == '.' && c[1] == '.'))
            return 0;
        if (e == NULL)
            return 1;
        c = e + 1;
    }
}

static int msgpipe__parse_win32(const char *name, size_t len,
                                const msgpipe__backend_info *bi,
                                msgpipe__name *out)
{
    if (msgpipe__has_win_prefix(name, len)) {
        if (!msgpipe__win_tail_ok(name + MSGPIPE__WIN_PREFIX_LEN))
            return MSGPIPE_EBADNAME;
        return msgpipe__put(out, MSGPIPE__NAME_WIN32, name, len, "", 0,
                            bi->path_max);
    }
    if (name[0] == '@')
        return MSGPIPE_ENOTSUP; /* the abstract namespace is Linux only */
    /* A path (or a remote or malformed pipe path) has no meaning here;
     * "." and ".." are refused as on POSIX, where they are directories,
     * so that a plain name valid on one system is valid on the other. */
    if (strchr(name, '/') != NULL || strchr(name, '\\') != NULL ||
        strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return MSGPIPE_EBADNAME;
    return msgpipe__put(out, MSGPIPE__NAME_WIN32, MSGPIPE__WIN_PREFIX,
                        MSGPIPE__WIN_PREFIX_LEN, name, len, bi->path_max);
}

static int msgpipe__parse_posix(const char *name, size_t len,
                                const msgpipe__backend_info *bi,
                                const char *runtime_dir, msgpipe__name *out)
{
    const char *dir = "/tmp";
    size_t dlen;
    char sep[2] = "/";

    if (name[0] == '\\')
        return MSGPIPE_EBADNAME; /* a Windows pipe name */
    if (name[0] == '@') {
        /* "@" alone names nothing, with or without abstract names. */
        if (len == 1)
            return MSGPIPE_EBADNAME;
        if (!bi->abstract_names)
            return MSGPIPE_ENOTSUP;
        return msgpipe__put(out, MSGPIPE__NAME_ABSTRACT, name, len, "", 0,
                            bi->path_max);
    }
    if (strchr(name, '/') != NULL) {
        if (name[len - 1] == '/')
            return MSGPIPE_EBADNAME; /* a directory, not a socket */
        return msgpipe__put(out, MSGPIPE__NAME_PATH, name, len, "", 0,
                            bi->path_max);
    }
    /* A plain name.  A backslash would make it mean something else on
     * Windows, and "." or ".." are directories: neither is portable. */
    if (strchr(name, '\\') != NULL || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0)
        return MSGPIPE_EBADNAME;
    /* XDG_RUNTIME_DIR is used only when it is an absolute path, as the XDG
     * Base Directory specification requires; anything else is ignored. */
    if (runtime_dir != NULL && runtime_dir[0] == '/')
        dir = runtime_dir;
    dlen = strlen(dir);
    while (dlen > 1 && dir[dlen - 1] == '/')
        dlen--;
    if (dlen == 1)
        sep[0] = '\0'; /* the root directory: "/ABC" */
    if (dlen + strlen(sep) + len > bi->path_max ||
        dlen + strlen(sep) + len > MSGPIPE__NAME_MAX)
        return MSGPIPE_ENAMETOOLONG;
    memcpy(out->sys, dir, dlen);
    memcpy(out->sys + dlen, sep, strlen(sep));
    memcpy(out->sys + dlen + strlen(sep), name, len);
    out->len = dlen + strlen(sep) + len;
    out->sys[out->len] = '\0';
    out->kind = MSGPIPE__NAME_PATH;
    return MSGPIPE_OK;
}

#define MSGPIPE__TCP_PREFIX "tcp://"
#define MSGPIPE__TCP_PREFIX_LEN 6
/* The longest host name DNS allows (RFC 1035), without a final dot. */
#define MSGPIPE__HOST_MAX 253

static int msgpipe__host_char(char c, int ipv6)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9') || c == '.')
        return 1;
    if (ipv6)
        return c == ':' || c == '%'; /* "fe80::1%eth0" */
    return c == '-' || c == '_';
}

/* "tcp://HOST:PORT": HOST a name or IPv4 address, or "[IPv6]"; PORT
 * decimal, 0-65535.  Only the form is checked here; getaddrinfo() judges
 * the host itself. */
static int msgpipe__parse_tcp(const char *name, size_t len, msgpipe__name *out)
{
    const char *h = name + MSGPIPE__TCP_PREFIX_LEN, *end = name + len;
    const char *hend, *colon;
    long port = 0;
    size_t i, hlen;
    int ipv6 = 0;

    if (h < end && *h == '[') {
        hend = memchr(h, ']', (size_t)(end - h));
        if (hend == NULL || hend + 1 >= end || hend[1] != ':')
            return MSGPIPE_EBADNAME;
        h++;
        colon = hend + 1;
        ipv6 = 1;
    } else {
        colon = NULL;
        for (hend = h; hend < end; hend++)
            if (*hend == ':')
                colon = hend;
        if (colon == NULL)
            return MSGPIPE_EBADNAME;
        hend = colon;
    }
    hlen = (size_t)(hend - h);
    if (hlen == 0)
        return MSGPIPE_EBADNAME;
    if (hlen > MSGPIPE__HOST_MAX)
        return MSGPIPE_ENAMETOOLONG;
    for (i = 0; i < hlen; i++)
        if (!msgpipe__host_char(h[i], ipv6))
            return MSGPIPE_EBADNAME;
    if (colon + 1 >= end || end - (colon + 1) > 5)
        return MSGPIPE_EBADNAME;
    for (i = 1; colon + i < end; i++) {
        if (colon[i] < '0' || colon[i] > '9')
            return MSGPIPE_EBADNAME;
        port = port * 10 + (colon[i] - '0');
    }
    if (port > 65535)
        return MSGPIPE_EBADNAME;
    memcpy(out->sys, h, hlen);
    out->sys[hlen] = '\0';
    out->len = hlen;
    out->kind = MSGPIPE__NAME_TCP;
    out->port = (int)port;
    out->is_ipv6 = ipv6;
    return MSGPIPE_OK;
}

int msgpipe__name_parse(const char *name, const msgpipe__backend_info *bi,
                        const char *runtime_dir, msgpipe__name *out)
{
    size_t len;

    if (name == NULL || name[0] == '\0')
        return MSGPIPE_EBADNAME;
    len = strlen(name);
    out->port = 0;
    out->is_ipv6 = 0;
    /* Both systems: a TCP name is the same everywhere. */
    if (strncmp(name, MSGPIPE__TCP_PREFIX, MSGPIPE__TCP_PREFIX_LEN) == 0)
        return msgpipe__parse_tcp(name, len, out);
    if (bi->style == MSGPIPE__STYLE_WIN32)
        return msgpipe__parse_win32(name, len, bi, out);
    return msgpipe__parse_posix(name, len, bi, runtime_dir, out);
}
