/*
 * fuzz_names.c - libFuzzer target: msgpipe__name_parse() (api/names.c).
 *
 * Input: byte 0 chooses the settings (see below); then XDG_RUNTIME_DIR and
 * the name, separated by the first 0xff byte (no 0xff: no XDG dir, and all
 * the rest is the name).  Both are cut at their first NUL, as a C string
 * would be.  Each is copied to a buffer of exactly its size, so
 * AddressSanitizer sees any read past its end.
 *
 * The name is parsed in both styles (POSIX and Windows) with the chosen
 * limits, and each result is checked:
 *   - the return is OK, EBADNAME, ENAMETOOLONG or ENOTSUP, nothing else;
 *   - OK: the kind is valid for the style, the result is NUL-terminated,
 *     its length is out->len, it is never longer than the limit or
 *     MSGPIPE__NAME_MAX, and it is exactly what the documented rule gives:
 *     the name as given (a path, @abstract, \\.\pipe\X), or the directory
 *     (XDG_RUNTIME_DIR when absolute, else /tmp, trailing '/' dropped) or
 *     \\.\pipe\ followed by the name;
 *   - ENAMETOOLONG only when that result would not fit; EBADNAME for "",
 *     ".", "..";
 *   - a plain portable name (no '/', '\', leading '@', not "." or "..")
 *     that parses in one style is never EBADNAME in the other.
 * A broken invariant prints the case and calls abort().
 */
#include "backend.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#if defined(__GNUC__) || defined(__clang__)
#define FZ_NORETURN __attribute__((noreturn))
#else
#define FZ_NORETURN
#endif

FZ_NORETURN static void fn_fail(const char *name, const char *dir, int style,
                                const char *fmt, ...);

static void fn_fail(const char *name, const char *dir, int style,
                    const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr,
            "fuzz_names: invariant broken (%s style, name \"%s\", "
            "XDG_RUNTIME_DIR %s%s%s): ",
            style == MSGPIPE__STYLE_WIN32 ? "win32" : "posix", name,
            dir ? "\"" : "", dir ? dir : "unset", dir ? "\"" : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

#define FN_CHECK(cond, ...)                                                    \
    do {                                                                       \
        if (!(cond))                                                           \
            fn_fail(name, dir, bi->style, __VA_ARGS__);                        \
    } while (0)

/* The limits to try (byte 0 bits 0-2): sun_path on Linux (107) and the
 * BSDs/macOS (103), Windows (256), the core's maximum, and small ones
 * where every case is near the edge. */
static const size_t fn_limits[8] = {107, 103, 256, MSGPIPE__NAME_MAX,
                                    1,   9,   16,  40};

/* What the documented rules give; returns the expected code and fills
 * want[0..*wlen) on OK. */
static int fn_expect(const char *name, const char *dir,
                     const msgpipe__backend_info *bi, char *want, size_t *wlen,
                     int *kind)
{
    static const char pre[] = "\\\\.\\pipe\\";
    size_t len = strlen(name), plen = strlen(pre), dlen;
    const char *d;
    size_t i, total;
    int has_pre = 0;

    if (len == 0)
        return MSGPIPE_EBADNAME;
    if (bi->style == MSGPIPE__STYLE_WIN32) {
        if (len >= plen) {
            has_pre = 1;
            for (i = 0; i < plen; i++) {
                char c = name[i];
                if (c >= 'A' && c <= 'Z')
                    c = (char)(c - 'A' + 'a');
                if (c != pre[i])
                    has_pre = 0;
            }
        }
        *kind = MSGPIPE__NAME_WIN32;
        if (has_pre) {
            /* After the prefix, '\\'-separated components, none of them
             * empty, "." or "..". */
            size_t start = plen;
            for (i = plen; i <= len; i++) {
                if (i < len && name[i] != '\\')
                    continue;
                if (i == start || (i - start == 1 && name[start] == '.') ||
                    (i - start == 2 && name[start] == '.' &&
                     name[start + 1] == '.'))
                    return MSGPIPE_EBADNAME;
                start = i + 1;
            }
            total = len;
            if (total <= MSGPIPE__NAME_MAX + 64)
                memcpy(want, name, len);
        } else {
            if (name[0] == '@')
                return MSGPIPE_ENOTSUP;
            if (strchr(name, '/') || strchr(name, '\\') ||
                strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                return MSGPIPE_EBADNAME;
            total = plen + len;
            if (total <= MSGPIPE__NAME_MAX + 64) {
                memcpy(want, pre, plen);
                memcpy(want + plen, name, len);
            }
        }
    } else {
        if (name[0] == '\\')
            return MSGPIPE_EBADNAME;
        if (name[0] == '@') {
            if (len == 1)
                return MSGPIPE_EBADNAME;
            if (!bi->abstract_names)
                return MSGPIPE_ENOTSUP;
            *kind = MSGPIPE__NAME_ABSTRACT;
            total = len;
            if (total <= MSGPIPE__NAME_MAX + 64)
                memcpy(want, name, len);
        } else if (strchr(name, '/')) {
            if (name[len - 1] == '/')
                return MSGPIPE_EBADNAME;
            *kind = MSGPIPE__NAME_PATH;
            total = len;
            if (total <= MSGPIPE__NAME_MAX + 64)
                memcpy(want, name, len);
        } else {
            if (strchr(name, '\\') || strcmp(name, ".") == 0 ||
                strcmp(name, "..") == 0)
                return MSGPIPE_EBADNAME;
            *kind = MSGPIPE__NAME_PATH;
            d = dir != NULL && dir[0] == '/' ? dir : "/tmp";
            dlen = strlen(d);
            while (dlen > 1 && d[dlen - 1] == '/')
                dlen--;
            total = dlen + (dlen == 1 ? 0 : 1) + len;
            if (total <= MSGPIPE__NAME_MAX + 64) {
                memcpy(want, d, dlen);
                if (dlen > 1)
                    want[dlen] = '/';
                memcpy(want + total - len, name, len);
            }
        }
    }
    if (total > bi->path_max || total > MSGPIPE__NAME_MAX)
        return MSGPIPE_ENAMETOOLONG;
    *wlen = total;
    return MSGPIPE_OK;
}

static int fn_check(const char *name, const char *dir,
                    const msgpipe__backend_info *bi)
{
    /* The output is filled with garbage first: the parser must write
     * every byte it returns, and its terminating NUL. */
    static msgpipe__name out;
    static char want[MSGPIPE__NAME_MAX + 65];
    size_t wlen = 0;
    int kind = 0, rc, exp;

    memset(&out, 0xa5, sizeof(out));
    rc = msgpipe__name_parse(name, bi, dir, &out);
    FN_CHECK(rc == MSGPIPE_OK || rc == MSGPIPE_EBADNAME ||
                 rc == MSGPIPE_ENAMETOOLONG || rc == MSGPIPE_ENOTSUP,
             "returned %s (%d)", msgpipe_errname(rc), rc);
    /* tcp:// names follow rules of their own (tests/test_api.c). */
    if (strncmp(name, "tcp://", 6) == 0)
        return rc;
    exp = fn_expect(name, dir, bi, want, &wlen, &kind);
    FN_CHECK(rc == exp, "returned %s, the rules say %s", msgpipe_errname(rc),
             msgpipe_errname(exp));
    if (rc != MSGPIPE_OK)
        return rc;
    FN_CHECK(out.kind == kind, "kind %d, expected %d", out.kind, kind);
    FN_CHECK(bi->style != MSGPIPE__STYLE_WIN32 ||
                 out.kind == MSGPIPE__NAME_WIN32,
             "kind %d in win32 style", out.kind);
    FN_CHECK(out.kind != MSGPIPE__NAME_ABSTRACT || bi->abstract_names,
             "abstract name where there are none");
    FN_CHECK(out.len <= bi->path_max && out.len <= MSGPIPE__NAME_MAX,
             "result of %lu bytes over the limit %lu", (unsigned long)out.len,
             (unsigned long)bi->path_max);
    FN_CHECK(out.sys[out.len] == '\0', "result not NUL-terminated");
    FN_CHECK(strlen(out.sys) == out.len, "len %lu but strlen %lu",
             (unsigned long)out.len, (unsigned long)strlen(out.sys));
    FN_CHECK(out.len == wlen && memcmp(out.sys, want, wlen) == 0,
             "result \"%s\", expected \"%.*s\"", out.sys, (int)wlen, want);
    return rc;
}

/* A copy of s[0..n) cut at its first NUL, in a buffer of exactly its
 * size. */
static char *fn_cstr(const uint8_t *s, size_t n)
{
    const uint8_t *z = (const uint8_t *)memchr(s, 0, n);
    size_t len = z != NULL ? (size_t)(z - s) : n;
    char *c = (char *)malloc(len + 1);

    if (c == NULL)
        abort();
    memcpy(c, s, len);
    c[len] = '\0';
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    msgpipe__backend_info posix, win;
    const msgpipe__backend_info *bi;
    const uint8_t *sep;
    char *name, *dir = NULL;
    size_t limit;
    int rp, rw, plain;
    uint8_t c0;

    if (size == 0)
        return 0;
    c0 = data[0];
    data++;
    size--;
    limit = fn_limits[c0 & 7];
    memset(&posix, 0, sizeof(posix));
    posix.name = "posix-socket";
    posix.style = MSGPIPE__STYLE_POSIX;
    posix.path_max = limit;
    posix.abstract_names = (c0 >> 3) & 1;
    posix.default_pending = 16;
    memset(&win, 0, sizeof(win));
    win.name = "win32-pipe";
    win.style = MSGPIPE__STYLE_WIN32;
    win.path_max = (c0 >> 4) & 1 ? 256 : limit;
    win.default_pending = 4;

    sep = (const uint8_t *)memchr(data, 0xff, size);
    if (sep != NULL) {
        dir = fn_cstr(data, (size_t)(sep - data));
        name = fn_cstr(sep + 1, size - (size_t)(sep - data) - 1);
    } else {
        name = fn_cstr(data, size);
    }

    bi = &posix;
    rp = fn_check(name, dir, &posix);
    rw = fn_check(name, dir, &win);
    /* A plain name means the same thing on both systems: if it is
     * acceptable in one style it is not a bad name in the other. */
    plain = name[0] != '\0' && name[0] != '@' && strchr(name, '/') == NULL &&
            strchr(name, '\\') == NULL && strcmp(name, ".") != 0 &&
            strcmp(name, "..") != 0;
    if (plain) {
        FN_CHECK((rp == MSGPIPE_OK || rp == MSGPIPE_ENAMETOOLONG) &&
                     (rw == MSGPIPE_OK || rw == MSGPIPE_ENAMETOOLONG),
                 "plain name: posix %s, win32 %s", msgpipe_errname(rp),
                 msgpipe_errname(rw));
    }
    /* NULL is a bad name in either style. */
    {
        msgpipe__name out;
        FN_CHECK(
            msgpipe__name_parse(NULL, &posix, dir, &out) == MSGPIPE_EBADNAME &&
                msgpipe__name_parse(NULL, &win, dir, &out) == MSGPIPE_EBADNAME,
            "NULL name not EBADNAME");
    }
    free(name);
    free(dir);
    return 0;
}
