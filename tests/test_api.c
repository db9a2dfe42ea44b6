/*
 * test_api.c - errors, version, options, argument checks, framing, names.
 *
 * The frame and name tests call the internal helpers of api/backend.h
 * directly, with hand-made backend descriptions, so that the Windows name
 * rules are tested on POSIX too (and the POSIX rules on Windows).
 */
#include "support.h"

#include "backend.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef _WIN32
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

/* ---- Errors ------------------------------------------------------------ */

static const struct {
    int code;
    const char *name;
    const char *text;
} codes[] = {
#define MPT_CODE(name, value, text) {value, #name, text},
    MSGPIPE_ERRNO_MAP(MPT_CODE)
#undef MPT_CODE
};
#define NCODES (sizeof(codes) / sizeof(codes[0]))

static void test_strerror_and_errname_match_table_for_every_code(void **state)
{
    size_t i;
    (void)state;
    for (i = 0; i < NCODES; i++) {
        const char *s = msgpipe_strerror(codes[i].code);
        const char *n = msgpipe_errname(codes[i].code);
        assert_non_null(s);
        assert_non_null(n);
        assert_string_equal(s, codes[i].text);
        assert_string_equal(n, codes[i].name);
        assert_string_not_equal(s, "unknown msgpipe error");
        assert_string_not_equal(n, "UNKNOWN");
    }
}

static void test_error_codes_strings_and_names_are_distinct(void **state)
{
    size_t i, j;
    (void)state;
    assert_int_equal(codes[0].code, MSGPIPE_OK);
    assert_int_equal(MSGPIPE_OK, 0);
    for (i = 0; i < NCODES; i++) {
        if (i > 0) {
            assert_true(codes[i].code < 0);
            assert_true(codes[i].code > MSGPIPE_ERRNO_LAST_);
        }
        for (j = i + 1; j < NCODES; j++) {
            assert_int_not_equal(codes[i].code, codes[j].code);
            assert_string_not_equal(msgpipe_strerror(codes[i].code),
                                    msgpipe_strerror(codes[j].code));
            assert_string_not_equal(msgpipe_errname(codes[i].code),
                                    msgpipe_errname(codes[j].code));
        }
    }
}

static void test_unknown_error_code_gives_unknown_strings(void **state)
{
    static const int unknown[] = {1,     2,       MSGPIPE_ERRNO_LAST_,
                                  -1000, INT_MIN, INT_MAX};
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        assert_non_null(msgpipe_strerror(unknown[i]));
        assert_string_equal(msgpipe_strerror(unknown[i]),
                            "unknown msgpipe error");
        assert_string_equal(msgpipe_errname(unknown[i]), "UNKNOWN");
    }
}

/* ---- Version and backend ----------------------------------------------- */

static void test_version_macro_matches_library(void **state)
{
    char want[32];
    (void)state;
    assert_int_equal(msgpipe_version(), MSGPIPE_VERSION);
    assert_int_equal(MSGPIPE_VERSION, MSGPIPE_VERSION_MAJOR * 10000 +
                                          MSGPIPE_VERSION_MINOR * 100 +
                                          MSGPIPE_VERSION_PATCH);
    snprintf(want, sizeof(want), "%d.%d.%d", MSGPIPE_VERSION_MAJOR,
             MSGPIPE_VERSION_MINOR, MSGPIPE_VERSION_PATCH);
    assert_non_null(msgpipe_version_string());
    assert_string_equal(msgpipe_version_string(), want);
}

static void test_backend_is_one_of_the_known_names(void **state)
{
    const char *b = msgpipe_backend();
    (void)state;
    assert_non_null(b);
    assert_true(strcmp(b, "posix-socket") == 0 ||
                strcmp(b, "posix-fifo") == 0 || strcmp(b, "win32-pipe") == 0);
#ifdef _WIN32
    assert_string_equal(b, "win32-pipe");
#else
    assert_true(strncmp(b, "posix-", 6) == 0);
#endif
}

/* ---- Options ----------------------------------------------------------- */

static void test_options_init_sets_documented_defaults(void **state)
{
    msgpipe_options o;
    (void)state;
    memset(&o, 0xAB, sizeof(o));
    msgpipe_options_init(&o);
    assert_int_equal(o.struct_size, sizeof(msgpipe_options));
    assert_true(o.max_message == MSGPIPE_DEFAULT_MAX_MESSAGE);
    assert_true(o.max_message == (uint64_t)64 * 1024 * 1024);
    assert_int_equal(o.access, MSGPIPE_ACCESS_OWNER);
#ifdef _WIN32
    assert_int_equal(o.pending, 4);
#else
    assert_int_equal(o.pending, 16);
#endif
    assert_int_equal(o.linger_ms, 5000);
    assert_null(o.sddl);
}

/* A program compiled against an older, smaller msgpipe_options: the
 * library writes only the fields that fit in opt_size. */
static void test_options_init_size_writes_only_fields_that_fit(void **state)
{
    static const size_t sizes[] = {
        offsetof(msgpipe_options, max_message),
        offsetof(msgpipe_options, access),
        offsetof(msgpipe_options, pending),
        offsetof(msgpipe_options, linger_ms),
        offsetof(msgpipe_options, sddl),
    };
    size_t k, i;
    (void)state;
    for (k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t n = sizes[k];
        msgpipe_options o;
        const unsigned char *b = (const unsigned char *)&o;

        memset(&o, 0xAB, sizeof(o));
        msgpipe_options_init_size(&o, n);
        assert_int_equal(o.struct_size, n);
        if (n >= offsetof(msgpipe_options, max_message) + 8)
            assert_true(o.max_message == MSGPIPE_DEFAULT_MAX_MESSAGE);
        if (n >= offsetof(msgpipe_options, access) + sizeof(int))
            assert_int_equal(o.access, MSGPIPE_ACCESS_OWNER);
        if (n >= offsetof(msgpipe_options, pending) + sizeof(int))
            assert_true(o.pending >= 1);
        for (i = n; i < sizeof(o); i++) {
            if (b[i] != 0xAB) {
                print_error("opt_size %lu: byte %lu was written\n",
                            (unsigned long)n, (unsigned long)i);
                fail();
            }
        }
    }
}

/* The fields beyond struct_size hold garbage that would be EINVAL if read. */
static void test_listen_and_connect_ignore_fields_beyond_struct_size(void **s)
{
    msgpipe_options o;
    msgpipe_server *srv = NULL;
    msgpipe *c = NULL, *a = NULL;
    char name[96];
    (void)s;

    sup_name(name, sizeof(name), "api");
    memset(&o, 0xAB, sizeof(o));
    msgpipe_options_init_size(&o, offsetof(msgpipe_options, access));
    o.access = 7;
    o.pending = -1;
    o.linger_ms = -2;
    assert_rc(msgpipe_listen(name, &o, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_connect(name, &o, SUP_T, &c), MSGPIPE_OK);
    assert_rc(msgpipe_accept(srv, SUP_T, &a), MSGPIPE_OK);
    msgpipe_close(c);
    msgpipe_close(a);
    msgpipe_server_close(srv);
}

/* A program built before sddl existed: its struct ends where sddl begins,
 * so whatever lies there is not read - the pipe gets the DACL of access
 * (Windows) and listen is not ENOTSUP (POSIX). */
static void test_options_without_sddl_field_get_no_sddl(void **state)
{
    msgpipe_options o;
    msgpipe_server *srv = NULL;
    msgpipe *c = NULL, *a = NULL;
    char name[96];
    (void)state;

    sup_name(name, sizeof(name), "api");
    memset(&o, 0xAB, sizeof(o));
    msgpipe_options_init_size(&o, offsetof(msgpipe_options, sddl));
    assert_int_equal(o.struct_size, offsetof(msgpipe_options, sddl));
    o.sddl = "not an sddl"; /* beyond struct_size: must not be read */
    assert_rc(msgpipe_listen(name, &o, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_connect(name, &o, SUP_T, &c), MSGPIPE_OK);
    assert_rc(msgpipe_accept(srv, SUP_T, &a), MSGPIPE_OK);
    msgpipe_close(c);
    msgpipe_close(a);
    msgpipe_server_close(srv);
}

static void test_options_struct_size_zero_is_einval(void **state)
{
    msgpipe_options o;
    msgpipe_server *srv = NULL;
    msgpipe *c = NULL;
    char name[96];
    (void)state;

    sup_name(name, sizeof(name), "api");
    msgpipe_options_init(&o);
    o.struct_size = 0; /* as if the caller forgot msgpipe_options_init */
    assert_rc(msgpipe_listen(name, &o, &srv), MSGPIPE_EINVAL);
    assert_null(srv);
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_connect(name, &o, 0, &c), MSGPIPE_EINVAL);
    assert_null(c);
    msgpipe_server_close(srv);
}

/* ---- Invalid arguments ------------------------------------------------- */

static void test_listen_and_connect_null_out_is_einval(void **state)
{
    char name[96];
    (void)state;
    sup_name(name, sizeof(name), "api");
    assert_rc(msgpipe_listen(name, NULL, NULL), MSGPIPE_EINVAL);
    assert_rc(msgpipe_connect(name, NULL, 0, NULL), MSGPIPE_EINVAL);
}

static void test_listen_bad_access_is_einval(void **state)
{
    msgpipe_options o;
    msgpipe_server *srv = NULL;
    msgpipe *c = NULL;
    char name[96];
    (void)state;

    sup_name(name, sizeof(name), "api");
    msgpipe_options_init(&o);
    o.access = 7;
    assert_rc(msgpipe_listen(name, &o, &srv), MSGPIPE_EINVAL);
    o.access = -1;
    assert_rc(msgpipe_listen(name, &o, &srv), MSGPIPE_EINVAL);
    /* Nothing was created under the name. */
    assert_rc(msgpipe_connect(name, NULL, 0, &c), MSGPIPE_ENOENT);
}

static void test_listen_negative_pending_is_einval(void **state)
{
    msgpipe_options o;
    msgpipe_server *srv = NULL;
    char name[96];
    (void)state;

    sup_name(name, sizeof(name), "api");
    msgpipe_options_init(&o);
    o.pending = -1;
    assert_rc(msgpipe_listen(name, &o, &srv), MSGPIPE_EINVAL);
    o.pending = 0; /* the default */
    assert_rc(msgpipe_listen(name, &o, &srv), MSGPIPE_OK);
    msgpipe_server_close(srv);
}

static void test_linger_below_minus_one_is_einval(void **state)
{
    msgpipe_options o;
    msgpipe_server *srv = NULL;
    msgpipe *c = NULL;
    char name[96];
    (void)state;

    sup_name(name, sizeof(name), "api");
    msgpipe_options_init(&o);
    o.linger_ms = -2;
    assert_rc(msgpipe_listen(name, &o, &srv), MSGPIPE_EINVAL);
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_connect(name, &o, 0, &c), MSGPIPE_EINVAL);
    o.linger_ms = -1; /* forever: valid */
    assert_rc(msgpipe_connect(name, &o, SUP_T, &c), MSGPIPE_OK);
    msgpipe_close(c);
    msgpipe_server_close(srv);
}

static void test_accept_invalid_arguments_are_einval(void **state)
{
    msgpipe_server *srv = NULL;
    msgpipe *p = NULL;
    char name[96];
    (void)state;

    sup_name(name, sizeof(name), "api");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_accept(NULL, 0, &p), MSGPIPE_EINVAL);
    assert_rc(msgpipe_accept(srv, 0, NULL), MSGPIPE_EINVAL);
    assert_rc(msgpipe_accept(srv, -2, &p), MSGPIPE_EINVAL);
    assert_rc(msgpipe_accept(srv, INT_MIN, &p), MSGPIPE_EINVAL);
    /* The server is still fine. */
    assert_rc(msgpipe_accept(srv, 0, &p), MSGPIPE_ETIMEDOUT);
    msgpipe_server_close(srv);
}

static void test_connect_bad_timeout_is_einval_and_does_not_connect(void **s)
{
    msgpipe_server *srv = NULL;
    msgpipe *p = NULL;
    char name[96];
    (void)s;

    sup_name(name, sizeof(name), "api");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_connect(name, NULL, -2, &p), MSGPIPE_EINVAL);
    assert_null(p);
    assert_rc(msgpipe_accept(srv, 100, &p), MSGPIPE_ETIMEDOUT);
    msgpipe_server_close(srv);
}

static void test_send_and_recv_bad_timeout_is_einval(void **state)
{
    sup_pair pr;
    char buf[8];
    size_t len = 99;
    void *m = NULL;
    (void)state;

    sup_pair_open(&pr, "api", NULL, NULL);
    assert_rc(msgpipe_send(pr.c, "x", 1, -2), MSGPIPE_EINVAL);
    assert_rc(msgpipe_send(pr.c, "x", 1, INT_MIN), MSGPIPE_EINVAL);
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, -2), MSGPIPE_EINVAL);
    assert_rc(msgpipe_recv_alloc(pr.s, &m, &len, -2), MSGPIPE_EINVAL);
    /* The rejected send sent nothing. */
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, 100),
              MSGPIPE_ETIMEDOUT);
    sup_pair_close(&pr);
}

static void test_send_null_message_with_length_is_einval(void **state)
{
    sup_pair pr;
    char buf[8];
    size_t len;
    (void)state;

    sup_pair_open(&pr, "api", NULL, NULL);
    assert_rc(msgpipe_send(pr.c, NULL, 1, 0), MSGPIPE_EINVAL);
    assert_rc(msgpipe_send(NULL, "x", 1, 0), MSGPIPE_EINVAL);
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, 100),
              MSGPIPE_ETIMEDOUT);
    sup_pair_close(&pr);
}

static void test_send_null_message_of_length_zero_is_empty_message(void **s)
{
    sup_pair pr;
    size_t len = 99;
    (void)s;

    sup_pair_open(&pr, "api", NULL, NULL);
    assert_rc(msgpipe_send(pr.c, NULL, 0, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(pr.s, NULL, 0, &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 0);
    sup_pair_close(&pr);
}

static void test_recv_invalid_arguments_are_einval_and_keep_message(void **s)
{
    sup_pair pr;
    char buf[8];
    size_t len;
    void *m = NULL;
    (void)s;

    sup_pair_open(&pr, "api", NULL, NULL);
    assert_rc(msgpipe_send(pr.c, "abc", 3, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(pr.s, NULL, 10, &len, SUP_T), MSGPIPE_EINVAL);
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), NULL, SUP_T),
              MSGPIPE_EINVAL);
    assert_rc(msgpipe_recv(NULL, buf, sizeof(buf), &len, SUP_T),
              MSGPIPE_EINVAL);
    assert_rc(msgpipe_recv_alloc(pr.s, NULL, &len, SUP_T), MSGPIPE_EINVAL);
    assert_rc(msgpipe_recv_alloc(pr.s, &m, NULL, SUP_T), MSGPIPE_EINVAL);
    assert_rc(msgpipe_recv_alloc(NULL, &m, &len, SUP_T), MSGPIPE_EINVAL);
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 3);
    assert_memory_equal(buf, "abc", 3);
    sup_pair_close(&pr);
}

static void test_peer_invalid_arguments_are_einval(void **state)
{
    sup_pair pr;
    msgpipe_peer_info info;
    (void)state;

    sup_pair_open(&pr, "api", NULL, NULL);
    assert_rc(msgpipe_peer(NULL, &info), MSGPIPE_EINVAL);
    assert_rc(msgpipe_peer(pr.s, NULL), MSGPIPE_EINVAL);
    sup_pair_close(&pr);
}

static void test_null_handles_are_ignored(void **state)
{
    (void)state;
    msgpipe_close(NULL);
    msgpipe_server_shutdown(NULL);
    msgpipe_server_close(NULL);
    msgpipe_free(NULL);
}

/* ---- Framing ----------------------------------------------------------- */

typedef struct {
    uint64_t len;
    size_t hlen;
    uint8_t hdr[MSGPIPE__FRAME_HDR_MAX];
} frame_case;

static const frame_case frame_cases[] = {
    {0, 4, {0, 0, 0, 0}},
    {1, 4, {0, 0, 0, 1}},
    {300, 4, {0, 0, 1, 0x2c}},
    {0x7fffffff, 4, {0x7f, 0xff, 0xff, 0xff}},
    {0x80000000u, 12, {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x80, 0, 0, 0}},
    {0xffffffffu,
     12,
     {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}},
    {(uint64_t)1 << 40, 12, {0xff, 0xff, 0xff, 0xff, 0, 0, 1, 0, 0, 0, 0, 0}},
    {(uint64_t)INT64_MAX,
     12,
     {0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
};
#define NFRAMES (sizeof(frame_cases) / sizeof(frame_cases[0]))

static void test_frame_encode_matches_python_framing(void **state)
{
    size_t i;
    (void)state;
    for (i = 0; i < NFRAMES; i++) {
        uint8_t hdr[MSGPIPE__FRAME_HDR_MAX];
        memset(hdr, 0x5a, sizeof(hdr));
        assert_int_equal(msgpipe__frame_encode(hdr, frame_cases[i].len),
                         frame_cases[i].hlen);
        assert_memory_equal(hdr, frame_cases[i].hdr, frame_cases[i].hlen);
    }
}

static void test_frame_decode_reads_both_forms(void **state)
{
    size_t i;
    (void)state;
    for (i = 0; i < NFRAMES; i++) {
        uint8_t buf[MSGPIPE__FRAME_HDR_MAX + 8];
        uint64_t len = 12345;
        size_t hlen = 99;

        memset(buf, 0x5a, sizeof(buf)); /* payload bytes after the header */
        memcpy(buf, frame_cases[i].hdr, frame_cases[i].hlen);
        assert_int_equal(
            msgpipe__frame_decode(buf, frame_cases[i].hlen, &len, &hlen), 1);
        assert_true(len == frame_cases[i].len);
        assert_int_equal(hlen, frame_cases[i].hlen);
        len = 12345;
        hlen = 99;
        assert_int_equal(msgpipe__frame_decode(buf, sizeof(buf), &len, &hlen),
                         1);
        assert_true(len == frame_cases[i].len);
        assert_int_equal(hlen, frame_cases[i].hlen);
    }
}

static void test_frame_decode_partial_header_needs_more(void **state)
{
    size_t i, avail;
    (void)state;
    for (i = 0; i < NFRAMES; i++) {
        for (avail = 0; avail < frame_cases[i].hlen; avail++) {
            uint64_t len = 0;
            size_t hlen = 0;
            int rc =
                msgpipe__frame_decode(frame_cases[i].hdr, avail, &len, &hlen);
            if (rc != 0) {
                print_error("case %lu, %lu bytes: returned %d, expected 0\n",
                            (unsigned long)i, (unsigned long)avail, rc);
                fail();
            }
        }
    }
}

static void test_frame_decode_negative_length_is_eproto(void **state)
{
    static const uint8_t bad[][4] = {{0x80, 0, 0, 0},
                                     {0x80, 0, 0, 1},
                                     {0xff, 0xff, 0xff, 0xfe},
                                     {0xfe, 0xff, 0xff, 0xff}};
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t buf[12] = {0};
        uint64_t len;
        size_t hlen;
        memcpy(buf, bad[i], 4);
        assert_rc(msgpipe__frame_decode(buf, 4, &len, &hlen), MSGPIPE_EPROTO);
        assert_rc(msgpipe__frame_decode(buf, 12, &len, &hlen), MSGPIPE_EPROTO);
    }
}

static void test_frame_decode_length_of_2_pow_63_or_more_is_eproto(void **s)
{
    static const uint8_t huge[][12] = {
        {0xff, 0xff, 0xff, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0},
        {0xff, 0xff, 0xff, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1},
        {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
         0xff},
    };
    size_t i;
    (void)s;
    for (i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
        uint64_t len;
        size_t hlen;
        assert_rc(msgpipe__frame_decode(huge[i], 12, &len, &hlen),
                  MSGPIPE_EPROTO);
    }
}

/* ---- Names ------------------------------------------------------------- */

static const msgpipe__backend_info bi_posix = {
    "test-posix", MSGPIPE__STYLE_POSIX, 107, 1, 16, 1, 1};
static const msgpipe__backend_info bi_posix_noabs = {
    "test-posix-noabs", MSGPIPE__STYLE_POSIX, 103, 0, 16, 1, 1};
static const msgpipe__backend_info bi_win = {
    "test-win", MSGPIPE__STYLE_WIN32, 256, 0, 4, 0, 0};

/* Parse and expect success with the given system form and kind. */
static void expect_name(const msgpipe__backend_info *bi, const char *name,
                        const char *dir, int kind, const char *sys)
{
    msgpipe__name n;
    int rc;
    memset(&n, 0x5a, sizeof(n));
    rc = msgpipe__name_parse(name, bi, dir, &n);
    if (rc != MSGPIPE_OK) {
        print_error("%s: \"%s\" (dir %s) gave %s\n", bi->name, name,
                    dir ? dir : "NULL", msgpipe_errname(rc));
        fail();
    }
    assert_int_equal(n.kind, kind);
    assert_string_equal(n.sys, sys);
    assert_int_equal(n.len, strlen(sys));
}

static void expect_name_rc(const msgpipe__backend_info *bi, const char *name,
                           const char *dir, int want)
{
    msgpipe__name n;
    int rc = msgpipe__name_parse(name, bi, dir, &n);
    if (rc != want) {
        print_error("%s: \"%s\" gave %s, expected %s\n", bi->name,
                    name ? name : "(NULL)", msgpipe_errname(rc),
                    msgpipe_errname(want));
        fail();
    }
}

static void test_name_plain_posix_goes_to_runtime_dir(void **state)
{
    (void)state;
    expect_name(&bi_posix, "ABC", "/run/user/1000", MSGPIPE__NAME_PATH,
                "/run/user/1000/ABC");
    expect_name(&bi_posix, "a.sock", "/x", MSGPIPE__NAME_PATH, "/x/a.sock");
}

static void
test_name_plain_posix_without_absolute_runtime_dir_uses_tmp(void **state)
{
    (void)state;
    expect_name(&bi_posix, "ABC", NULL, MSGPIPE__NAME_PATH, "/tmp/ABC");
    expect_name(&bi_posix, "ABC", "", MSGPIPE__NAME_PATH, "/tmp/ABC");
    expect_name(&bi_posix, "ABC", "run/user/1000", MSGPIPE__NAME_PATH,
                "/tmp/ABC");
    expect_name(&bi_posix, "ABC", "./rt", MSGPIPE__NAME_PATH, "/tmp/ABC");
}

static void
test_name_plain_posix_drops_trailing_slashes_of_runtime_dir(void **state)
{
    (void)state;
    expect_name(&bi_posix, "ABC", "/run/user/1000/", MSGPIPE__NAME_PATH,
                "/run/user/1000/ABC");
    expect_name(&bi_posix, "ABC", "/run/user/1000///", MSGPIPE__NAME_PATH,
                "/run/user/1000/ABC");
}

static void test_name_posix_path_is_used_as_given(void **state)
{
    (void)state;
    expect_name(&bi_posix, "/run/app/sock", "/run/user/1000",
                MSGPIPE__NAME_PATH, "/run/app/sock");
    expect_name(&bi_posix, "./x.sock", "/run/user/1000", MSGPIPE__NAME_PATH,
                "./x.sock");
    expect_name(&bi_posix, "dir/sub/s", NULL, MSGPIPE__NAME_PATH, "dir/sub/s");
    expect_name(&bi_posix, "../up", NULL, MSGPIPE__NAME_PATH, "../up");
}

static void test_name_plain_win32_gets_pipe_prefix(void **state)
{
    (void)state;
    expect_name(&bi_win, "ABC", NULL, MSGPIPE__NAME_WIN32, "\\\\.\\pipe\\ABC");
    /* XDG_RUNTIME_DIR means nothing on Windows. */
    expect_name(&bi_win, "ABC", "/run/user/1000", MSGPIPE__NAME_WIN32,
                "\\\\.\\pipe\\ABC");
}

static void test_name_win32_pipe_path_is_used_as_given(void **state)
{
    (void)state;
    expect_name(&bi_win, "\\\\.\\pipe\\X", NULL, MSGPIPE__NAME_WIN32,
                "\\\\.\\pipe\\X");
    expect_name(&bi_win, "\\\\.\\PIPE\\X", NULL, MSGPIPE__NAME_WIN32,
                "\\\\.\\PIPE\\X");
    expect_name(&bi_win, "\\\\.\\Pipe\\my pipe", NULL, MSGPIPE__NAME_WIN32,
                "\\\\.\\Pipe\\my pipe");
}

static void test_name_null_and_empty_are_ebadname(void **state)
{
    (void)state;
    expect_name_rc(&bi_posix, NULL, NULL, MSGPIPE_EBADNAME);
    expect_name_rc(&bi_posix, "", NULL, MSGPIPE_EBADNAME);
    expect_name_rc(&bi_win, NULL, NULL, MSGPIPE_EBADNAME);
    expect_name_rc(&bi_win, "", NULL, MSGPIPE_EBADNAME);
}

static void test_name_ending_in_separator_is_ebadname(void **state)
{
    (void)state;
    expect_name_rc(&bi_posix, "dir/", NULL, MSGPIPE_EBADNAME);
    expect_name_rc(&bi_posix, "/tmp/x/", NULL, MSGPIPE_EBADNAME);
    expect_name_rc(&bi_posix, "/", NULL, MSGPIPE_EBADNAME);
    expect_name_rc(&bi_win, "\\\\.\\pipe\\", NULL, MSGPIPE_EBADNAME);
    expect_name_rc(&bi_win, "dir\\", NULL, MSGPIPE_EBADNAME);
    expect_name_rc(&bi_win, "dir/", NULL, MSGPIPE_EBADNAME);
}

static void test_name_dot_and_dotdot_are_ebadname_on_posix(void **state)
{
    (void)state;
    expect_name_rc(&bi_posix, ".", NULL, MSGPIPE_EBADNAME);
    expect_name_rc(&bi_posix, "..", NULL, MSGPIPE_EBADNAME);
    expect_name_rc(&bi_posix, ".", "/run/user/1000", MSGPIPE_EBADNAME);
    /* Rejected on Windows too, so that a plain name that works on one
     * system works on the other. */
    expect_name_rc(&bi_win, ".", NULL, MSGPIPE_EBADNAME);
    expect_name_rc(&bi_win, "..", NULL, MSGPIPE_EBADNAME);
}

static void test_name_backslash_in_plain_name_is_ebadname(void **state)
{
    (void)state;
    expect_name_rc(&bi_posix, "a\\b", NULL, MSGPIPE_EBADNAME);
    expect_name_rc(&bi_win, "a\\b", NULL, MSGPIPE_EBADNAME);
}

static void test_name_win32_form_on_posix_is_ebadname(void **state)
{
    (void)state;
    expect_name_rc(&bi_posix, "\\\\.\\pipe\\X", NULL, MSGPIPE_EBADNAME);
    expect_name_rc(&bi_posix, "\\\\.\\PIPE\\X", "/run/user/1000",
                   MSGPIPE_EBADNAME);
}

static void test_name_path_on_win32_is_ebadname(void **state)
{
    (void)state;
    expect_name_rc(&bi_win, "/x", NULL, MSGPIPE_EBADNAME);
    expect_name_rc(&bi_win, "./x.sock", NULL, MSGPIPE_EBADNAME);
    expect_name_rc(&bi_win, "a/b", NULL, MSGPIPE_EBADNAME);
    expect_name_rc(&bi_win, "\\\\server\\pipe\\x", NULL, MSGPIPE_EBADNAME);
    expect_name_rc(&bi_win, "C:\\x", NULL, MSGPIPE_EBADNAME);
}

static void test_name_abstract_on_posix_with_support(void **state)
{
    (void)state;
    expect_name(&bi_posix, "@x", "/run/user/1000", MSGPIPE__NAME_ABSTRACT,
                "@x");
    expect_name(&bi_posix, "@a/b", NULL, MSGPIPE__NAME_ABSTRACT, "@a/b");
}

static void test_name_abstract_without_support_is_enotsup(void **state)
{
    (void)state;
    expect_name_rc(&bi_posix_noabs, "@x", NULL, MSGPIPE_ENOTSUP);
    expect_name_rc(&bi_win, "@x", NULL, MSGPIPE_ENOTSUP);
}

static void test_name_lone_at_sign_is_ebadname(void **state)
{
    (void)state;
    expect_name_rc(&bi_posix, "@", NULL, MSGPIPE_EBADNAME);
}

/* A string of n copies of c after prefix, in a static buffer. */
static const char *make_name(const char *prefix, char c, size_t n)
{
    static char buf[4096];
    size_t p = strlen(prefix);
    assert_true(p + n < sizeof(buf));
    memcpy(buf, prefix, p);
    memset(buf + p, c, n);
    buf[p + n] = '\0';
    return buf;
}

static void expect_limit(const msgpipe__backend_info *bi, const char *prefix,
                         const char *dir, size_t sys_extra)
{
    /* The system form is sys_extra + strlen(prefix) + n bytes long. */
    size_t n = bi->path_max - sys_extra - strlen(prefix);
    msgpipe__name out;
    const char *name = make_name(prefix, 'a', n);

    assert_rc(msgpipe__name_parse(name, bi, dir, &out), MSGPIPE_OK);
    assert_int_equal(out.len, bi->path_max);
    assert_int_equal(strlen(out.sys), bi->path_max);
    name = make_name(prefix, 'a', n + 1);
    assert_rc(msgpipe__name_parse(name, bi, dir, &out), MSGPIPE_ENAMETOOLONG);
}

static void test_name_too_long_by_one_byte_is_enametoolong(void **state)
{
    msgpipe__backend_info big = bi_posix;
    msgpipe__name out;
    (void)state;

    expect_limit(&bi_posix, "/", NULL, 0);                 /* path */
    expect_limit(&bi_posix, "./", NULL, 0);                /* relative path */
    expect_limit(&bi_posix, "", NULL, strlen("/tmp/"));    /* plain, /tmp */
    expect_limit(&bi_posix, "", "/r/u/", strlen("/r/u/")); /* plain, XDG */
    expect_limit(&bi_posix, "@", NULL, 0);                 /* abstract */
    expect_limit(&bi_posix_noabs, "/", NULL, 0);
    expect_limit(&bi_win, "", NULL, strlen("\\\\.\\pipe\\"));
    expect_limit(&bi_win, "\\\\.\\pipe\\", NULL, 0);

    /* However large the backend's limit, a system name never exceeds
     * MSGPIPE__NAME_MAX (the size of msgpipe__name.sys). */
    big.path_max = (size_t)-1;
    assert_rc(msgpipe__name_parse(make_name("/", 'b', MSGPIPE__NAME_MAX - 1),
                                  &big, NULL, &out),
              MSGPIPE_OK);
    assert_int_equal(out.len, MSGPIPE__NAME_MAX);
    assert_rc(msgpipe__name_parse(make_name("/", 'b', MSGPIPE__NAME_MAX), &big,
                                  NULL, &out),
              MSGPIPE_ENAMETOOLONG);
}

#ifndef _WIN32
/* A fresh empty directory; returns its path in buf. */
static void make_dir(char *buf, size_t cap)
{
    char name[96];
    sup_name(name, sizeof(name), "api");
    snprintf(buf, cap, "/tmp/%s.d", name);
    assert_int_equal(mkdir(buf, 0700), 0);
}
#endif

/* The public calls reject a name one byte too long before any system
 * call: no file appears (POSIX: the directory stays empty). */
static void test_listen_and_connect_too_long_name_is_enametoolong(void **s)
{
    msgpipe_server *srv = NULL;
    msgpipe *c = NULL;
    const char *name;
    char dir[128] = "";
    (void)s;

#ifdef _WIN32
    name = make_name("", 'n',
                     msgpipe__backend.path_max - strlen("\\\\.\\pipe\\") + 1);
#else
    {
        char prefix[160];
        make_dir(dir, sizeof(dir));
        snprintf(prefix, sizeof(prefix), "%s/", dir);
        name = make_name(prefix, 'n',
                         msgpipe__backend.path_max - strlen(prefix) + 1);
    }
#endif
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_ENAMETOOLONG);
    assert_null(srv);
    assert_rc(msgpipe_connect(name, NULL, 0, &c), MSGPIPE_ENAMETOOLONG);
    assert_rc(msgpipe_connect(name, NULL, 100, &c), MSGPIPE_ENAMETOOLONG);
    assert_null(c);
    /* Also far too long. */
    name = make_name("", 'm', 3000);
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_ENAMETOOLONG);
#ifndef _WIN32
    if (rmdir(dir) != 0) {
        print_error("%s is not empty: a file was created\n", dir);
        fail();
    }
#endif
    (void)dir;
}

/* The longest accepted name really works: nothing is cut off. */
static void test_name_at_the_limit_works(void **state)
{
    msgpipe_server *srv = NULL;
    msgpipe *c = NULL, *a = NULL;
    const char *name;
    char dir[128] = "";
    char copy[4096];
    (void)state;

#ifdef _WIN32
    {
        char base[96];
        sup_name(base, sizeof(base), "api");
        name = make_name(base, 'n',
                         msgpipe__backend.path_max - strlen("\\\\.\\pipe\\") -
                             strlen(base));
    }
#else
    {
        char prefix[160];
        make_dir(dir, sizeof(dir));
        snprintf(prefix, sizeof(prefix), "%s/", dir);
        name =
            make_name(prefix, 'n', msgpipe__backend.path_max - strlen(prefix));
    }
#endif
    strcpy(copy, name);
    assert_rc(msgpipe_listen(copy, NULL, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_connect(copy, NULL, SUP_T, &c), MSGPIPE_OK);
    assert_rc(msgpipe_accept(srv, SUP_T, &a), MSGPIPE_OK);
    assert_rc(msgpipe_send(c, "limit", 5, SUP_T), MSGPIPE_OK);
    {
        char buf[8];
        size_t len;
        assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
        assert_int_equal(len, 5);
        assert_memory_equal(buf, "limit", 5);
    }
#ifndef _WIN32
    {
        struct stat st;
        assert_int_equal(stat(copy, &st), 0);
        assert_true(
            (sup_is_fifo() ? S_ISFIFO(st.st_mode) : S_ISSOCK(st.st_mode)));
    }
#endif
    msgpipe_close(c);
    msgpipe_close(a);
    msgpipe_server_close(srv);
#ifndef _WIN32
    assert_int_equal(rmdir(dir), 0);
#endif
    (void)dir;
}

static void test_public_calls_reject_bad_names(void **state)
{
    msgpipe_server *srv = NULL;
    msgpipe *c = NULL;
    (void)state;
    assert_rc(msgpipe_listen(NULL, NULL, &srv), MSGPIPE_EBADNAME);
    assert_rc(msgpipe_listen("", NULL, &srv), MSGPIPE_EBADNAME);
    assert_rc(msgpipe_connect(NULL, NULL, 0, &c), MSGPIPE_EBADNAME);
    assert_rc(msgpipe_connect("", NULL, 0, &c), MSGPIPE_EBADNAME);
#ifdef _WIN32
    assert_rc(msgpipe_listen("/tmp/x", NULL, &srv), MSGPIPE_EBADNAME);
    assert_rc(msgpipe_listen("@x", NULL, &srv), MSGPIPE_ENOTSUP);
#else
    assert_rc(msgpipe_listen("\\\\.\\pipe\\x", NULL, &srv), MSGPIPE_EBADNAME);
    assert_rc(msgpipe_listen("/tmp/", NULL, &srv), MSGPIPE_EBADNAME);
#endif
    assert_null(srv);
    assert_null(c);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror_and_errname_match_table_for_every_code),
        cmocka_unit_test(test_error_codes_strings_and_names_are_distinct),
        cmocka_unit_test(test_unknown_error_code_gives_unknown_strings),
        cmocka_unit_test(test_version_macro_matches_library),
        cmocka_unit_test(test_backend_is_one_of_the_known_names),
        cmocka_unit_test(test_options_init_sets_documented_defaults),
        cmocka_unit_test(test_options_init_size_writes_only_fields_that_fit),
        cmocka_unit_test(
            test_listen_and_connect_ignore_fields_beyond_struct_size),
        cmocka_unit_test(test_options_without_sddl_field_get_no_sddl),
        cmocka_unit_test(test_options_struct_size_zero_is_einval),
        cmocka_unit_test(test_listen_and_connect_null_out_is_einval),
        cmocka_unit_test(test_listen_bad_access_is_einval),
        cmocka_unit_test(test_listen_negative_pending_is_einval),
        cmocka_unit_test(test_linger_below_minus_one_is_einval),
        cmocka_unit_test(test_accept_invalid_arguments_are_einval),
        cmocka_unit_test(
            test_connect_bad_timeout_is_einval_and_does_not_connect),
        cmocka_unit_test(test_send_and_recv_bad_timeout_is_einval),
        cmocka_unit_test(test_send_null_message_with_length_is_einval),
        cmocka_unit_test(
            test_send_null_message_of_length_zero_is_empty_message),
        cmocka_unit_test(
            test_recv_invalid_arguments_are_einval_and_keep_message),
        cmocka_unit_test(test_peer_invalid_arguments_are_einval),
        cmocka_unit_test(test_null_handles_are_ignored),
        cmocka_unit_test(test_frame_encode_matches_python_framing),
        cmocka_unit_test(test_frame_decode_reads_both_forms),
        cmocka_unit_test(test_frame_decode_partial_header_needs_more),
        cmocka_unit_test(test_frame_decode_negative_length_is_eproto),
        cmocka_unit_test(
            test_frame_decode_length_of_2_pow_63_or_more_is_eproto),
        cmocka_unit_test(test_name_plain_posix_goes_to_runtime_dir),
        cmocka_unit_test(
            test_name_plain_posix_without_absolute_runtime_dir_uses_tmp),
        cmocka_unit_test(
            test_name_plain_posix_drops_trailing_slashes_of_runtime_dir),
        cmocka_unit_test(test_name_posix_path_is_used_as_given),
        cmocka_unit_test(test_name_plain_win32_gets_pipe_prefix),
        cmocka_unit_test(test_name_win32_pipe_path_is_used_as_given),
        cmocka_unit_test(test_name_null_and_empty_are_ebadname),
        cmocka_unit_test(test_name_ending_in_separator_is_ebadname),
        cmocka_unit_test(test_name_dot_and_dotdot_are_ebadname_on_posix),
        cmocka_unit_test(test_name_backslash_in_plain_name_is_ebadname),
        cmocka_unit_test(test_name_win32_form_on_posix_is_ebadname),
        cmocka_unit_test(test_name_path_on_win32_is_ebadname),
        cmocka_unit_test(test_name_abstract_on_posix_with_support),
        cmocka_unit_test(test_name_abstract_without_support_is_enotsup),
        cmocka_unit_test(test_name_lone_at_sign_is_ebadname),
        cmocka_unit_test(test_name_too_long_by_one_byte_is_enametoolong),
        cmocka_unit_test(test_listen_and_connect_too_long_name_is_enametoolong),
        cmocka_unit_test(test_name_at_the_limit_works),
        cmocka_unit_test(test_public_calls_reject_bad_names),
    };

    sup_init(argc, argv);
    return sup_finish(cmocka_run_group_tests_name("api", tests, NULL, NULL));
}
