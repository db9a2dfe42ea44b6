/*
 * test_access.c - who may connect: file modes (POSIX) and DACLs (Windows),
 * the allowed-uids list of a server, the required uid of a client's
 * server, and the squatting of a name.
 *
 * The POSIX tests need root, to run a client as another user: the child
 * process ("--child as UID GID MODE NAME") drops to UID/GID before it
 * connects, and its exit code reports what msgpipe_connect returned (the
 * negated msgpipe code).  CI runs as root; elsewhere they skip, saying so.
 */
#ifndef _WIN32
#define _DEFAULT_SOURCE /* setgroups() */
#endif
#include "support.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#include <aclapi.h>
#include <sddl.h>
#else
#include <grp.h>
#include <sys/types.h>
#include <unistd.h>
#endif

#define NOBODY 65534

/* ---- Options that only POSIX has ---------------------------------------- */

static void test_uid_options_are_checked(void **state)
{
    msgpipe_options o;
    msgpipe_server *srv = NULL;
    msgpipe *c = NULL;
    int64_t uid = 0;
    char name[96];
    (void)state;

    sup_name(name, sizeof(name), "acc");
    msgpipe_options_init(&o);
    assert_null(o.allow_uids);
    assert_int_equal(o.n_allow_uids, 0);
    assert_true(o.require_server_uid == -1);
    o.n_allow_uids = 1; /* but no array */
    assert_rc(msgpipe_listen(name, &o, &srv), MSGPIPE_EINVAL);
    msgpipe_options_init(&o);
    o.require_server_uid = -2;
    assert_rc(msgpipe_connect(name, &o, 0, &c), MSGPIPE_EINVAL);
    msgpipe_options_init(&o);
    o.allow_uids = &uid;
    o.n_allow_uids = 1;
#ifdef _WIN32
    /* Windows knows users by SID, not uid. */
    assert_rc(msgpipe_listen(name, &o, &srv), MSGPIPE_ENOTSUP);
    msgpipe_options_init(&o);
    o.require_server_uid = 0;
    assert_rc(msgpipe_connect(name, &o, 0, &c), MSGPIPE_ENOTSUP);
#else
    assert_rc(msgpipe_listen(name, &o, &srv), MSGPIPE_OK);
    msgpipe_server_close(srv);
#endif
}

#ifndef _WIN32

/* ---- POSIX: a client running as another user --------------------------- */

/* Child "serve": listen on name, open to every user, and accept clients
 * until none comes for 2 s: exit 0 if none of them sent anything (a
 * client that leaves without sending is passed over), 99 if one did, else
 * -rc of what failed. */
static int serve_until_quiet(const char *name)
{
    msgpipe_options o;
    msgpipe_server *srv = NULL;
    msgpipe *a = NULL;
    char buf[16];
    size_t len = 0;
    int rc;

    msgpipe_options_init(&o);
    o.access = MSGPIPE_ACCESS_WORLD;
    rc = msgpipe_listen(name, &o, &srv);
    if (rc != MSGPIPE_OK)
        return -rc;
    for (;;) {
        rc = msgpipe_accept(srv, 2000, &a);
        if (rc != MSGPIPE_OK)
            break;
        rc = msgpipe_recv(a, buf, sizeof(buf), &len, SUP_T);
        msgpipe_close(a);
        if (rc != MSGPIPE_ECLOSED)
            break;
    }
    msgpipe_server_close(srv);
    if (rc == MSGPIPE_ETIMEDOUT)
        return 0;
    return rc == MSGPIPE_OK ? 99 : -rc;
}

/* Child: become uid/gid (with gid as the only group), connect to name, and
 * report.  Modes: "connect" exits with -rc of msgpipe_connect (timeout 0);
 * "hello" connects (waiting), sends "hi" and expects the pipe to stay up
 * for the answer "ok" (exit 0), or exits with -rc of what failed;
 * "dropped" connects and expects MSGPIPE_ECLOSED before any message (exit
 * 0); "serve" is serve_until_quiet. */
static int child_as(int argc, char **argv)
{
    uid_t uid = (uid_t)strtol(argv[1], NULL, 10);
    gid_t gid = (gid_t)strtol(argv[2], NULL, 10);
    const char *mode = argv[3], *name = argv[4];
    msgpipe *p = NULL;
    char buf[16];
    size_t len;
    int rc;

    (void)argc;
    if (setgroups(1, &gid) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
        perror("child: cannot change user");
        return 100;
    }
    if (strcmp(mode, "serve") == 0)
        return serve_until_quiet(name);
    if (strcmp(mode, "connect") == 0) {
        rc = msgpipe_connect(name, NULL, 0, &p);
        msgpipe_close(p);
        return -rc;
    }
    rc = msgpipe_connect(name, NULL, SUP_T, &p);
    if (rc != MSGPIPE_OK)
        return -rc;
    if (strcmp(mode, "hello") == 0) {
        rc = msgpipe_send(p, "hi", 2, SUP_T);
        if (rc == MSGPIPE_OK)
            rc = msgpipe_recv(p, buf, sizeof(buf), &len, SUP_T);
        if (rc == MSGPIPE_OK && (len != 2 || memcmp(buf, "ok", 2) != 0))
            rc = MSGPIPE_EPROTO;
    } else {
        rc = msgpipe_recv(p, buf, sizeof(buf), &len, SUP_T);
        rc = rc == MSGPIPE_ECLOSED ? MSGPIPE_OK : (rc == 0 ? 99 : rc);
    }
    msgpipe_close(p);
    return rc < 0 ? -rc : rc;
}

static sup_proc *spawn_as(long uid, long gid, const char *mode,
                          const char *name)
{
    char u[24], g[24];
    const char *args[6];

    snprintf(u, sizeof(u), "%ld", uid);
    snprintf(g, sizeof(g), "%ld", gid);
    args[0] = "as";
    args[1] = u;
    args[2] = g;
    args[3] = mode;
    args[4] = name;
    args[5] = NULL;
    return sup_spawn_self(args);
}

/* A name in /tmp that another user can reach (not $XDG_RUNTIME_DIR, which
 * is private to its user). */
static void tmp_name(char *buf, size_t cap)
{
    char base[96];
    sup_name(base, sizeof(base), "acc");
    snprintf(buf, cap, "/tmp/%s", base);
}

static msgpipe_server *listen_with(const char *name, int access,
                                   const int64_t *uids, size_t n)
{
    msgpipe_options o;
    msgpipe_server *srv = NULL;

    msgpipe_options_init(&o);
    o.access = access;
    o.allow_uids = uids;
    o.n_allow_uids = n;
    assert_rc(msgpipe_listen(name, &o, &srv), MSGPIPE_OK);
    return srv;
}

/* Accept the child's pipe, check who it is, and answer its "hi". */
static void serve_hello(msgpipe_server *srv, sup_proc *child, long uid)
{
    msgpipe_peer_info info;
    msgpipe *a = NULL;
    char buf[16];
    size_t len = 0;

    assert_rc(msgpipe_accept(srv, SUP_T, &a), MSGPIPE_OK);
    assert_rc(msgpipe_peer(a, &info), MSGPIPE_OK);
    assert_true(info.pid == sup_proc_pid(child));
    assert_true(info.uid == uid);
    assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 2);
    assert_memory_equal(buf, "hi", 2);
    assert_rc(msgpipe_send(a, "ok", 2, SUP_T), MSGPIPE_OK);
    assert_int_equal(sup_proc_wait(child), 0);
    msgpipe_close(a);
}

#define NEED_ROOT()                                                            \
    do {                                                                       \
        if (geteuid() != 0) {                                                  \
            SUP_SKIP("needs root, to run a client as another user");           \
            return;                                                            \
        }                                                                      \
    } while (0)

#endif /* !_WIN32 */

static void test_other_user_cannot_connect_to_default_server(void **state)
{
    (void)state;
#ifdef _WIN32
    if (sup_is_wine()) {
        SUP_SKIP("Wine does not enforce DACLs: another user's refusal cannot "
                 "be observed");
        return;
    }
    SUP_SKIP("needs a second Windows account to connect from; the DACL "
             "itself is checked by test_default_dacl_admits_only_this_user");
#else
    msgpipe_server *srv;
    char name[128];

    NEED_ROOT();
    tmp_name(name, sizeof(name));
    srv = listen_with(name, MSGPIPE_ACCESS_OWNER, NULL, 0);
    assert_int_equal(sup_proc_wait(spawn_as(NOBODY, NOBODY, "connect", name)),
                     -MSGPIPE_EACCES);
    msgpipe_server_close(srv);
#endif
}

#ifndef _WIN32
static void test_group_access_admits_the_group(void **state)
{
    (void)state;
    msgpipe_server *srv;
    char name[128];

    NEED_ROOT();
    tmp_name(name, sizeof(name));
    srv = listen_with(name, MSGPIPE_ACCESS_GROUP, NULL, 0);
    /* Another user in another group: refused. */
    assert_int_equal(sup_proc_wait(spawn_as(NOBODY, NOBODY, "connect", name)),
                     -MSGPIPE_EACCES);
    /* Another user in the server's group: admitted, and identified. */
    serve_hello(srv, spawn_as(NOBODY, (long)getegid(), "hello", name), NOBODY);
    msgpipe_server_close(srv);
}
#endif

#ifndef _WIN32
static void test_world_access_admits_everyone(void **state)
{
    (void)state;
    msgpipe_server *srv;
    char name[128];

    NEED_ROOT();
    tmp_name(name, sizeof(name));
    srv = listen_with(name, MSGPIPE_ACCESS_WORLD, NULL, 0);
    serve_hello(srv, spawn_as(NOBODY, NOBODY, "hello", name), NOBODY);
    msgpipe_server_close(srv);
}
#endif

#ifndef _WIN32
static void test_allow_uids_drops_unlisted_clients(void **state)
{
    (void)state;
    const int64_t only_me = (int64_t)geteuid();
    msgpipe_server *srv;
    msgpipe *a = NULL, *c = NULL;
    sup_proc *child;
    char name[128], buf[8];
    size_t len = 0;

    NEED_ROOT();
    tmp_name(name, sizeof(name));
    srv = listen_with(name, MSGPIPE_ACCESS_WORLD, &only_me, 1);
    /* nobody may open the socket, but is not on the list: dropped. */
    child = spawn_as(NOBODY, NOBODY, "dropped", name);
    assert_rc(msgpipe_accept(srv, 1500, &a), MSGPIPE_ETIMEDOUT);
    assert_null(a);
    assert_int_equal(sup_proc_wait(child), 0);
    /* This user is on the list. */
    assert_rc(msgpipe_connect(name, NULL, SUP_T, &c), MSGPIPE_OK);
    assert_rc(msgpipe_send(c, "me", 2, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_accept(srv, SUP_T, &a), MSGPIPE_OK);
    assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 2);
    msgpipe_close(a);
    msgpipe_close(c);
    msgpipe_server_close(srv);
}
#endif

/* Accepts one client and counts the messages it sends before it goes. */
typedef struct {
    msgpipe_server *srv;
    int rc;
    int got; /* messages the accepted client sent before it went */
} acceptor;

static void *acceptor_main(void *arg)
{
    acceptor *ac = (acceptor *)arg;
    msgpipe *a = NULL;
    char buf[8];
    size_t len;

    ac->rc = msgpipe_accept(ac->srv, SUP_T, &a);
    if (ac->rc != MSGPIPE_OK)
        return NULL;
    while (msgpipe_recv(a, buf, sizeof(buf), &len, SUP_T) == MSGPIPE_OK)
        ac->got++;
    msgpipe_close(a);
    return NULL;
}

#ifndef _WIN32
static void test_client_can_require_the_server_uid(void **state)
{
    (void)state;
    msgpipe_options o;
    msgpipe_server *srv = NULL;
    msgpipe *c = NULL;
    acceptor ac;
    sup_thread *t;
    char name[96];

    sup_name(name, sizeof(name), "acc");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    /* The wrong user: refused before anything is sent. */
    msgpipe_options_init(&o);
    o.require_server_uid = (int64_t)geteuid() + 1;
    assert_rc(msgpipe_connect(name, &o, 2000, &c), MSGPIPE_EACCES);
    assert_null(c);
    /* The right one. */
    ac.srv = srv;
    ac.rc = MSGPIPE_EIO;
    ac.got = 0;
    t = sup_thread_start(acceptor_main, &ac);
    o.require_server_uid = (int64_t)geteuid();
    assert_rc(msgpipe_connect(name, &o, SUP_T, &c), MSGPIPE_OK);
    assert_rc(msgpipe_send(c, "x", 1, SUP_T), MSGPIPE_OK);
    msgpipe_close(c);
    sup_thread_join(t);
    assert_rc(ac.rc, MSGPIPE_OK);
    /* A socket server may have accepted the refused client first (it
     * connected, then closed without sending); either way exactly the one
     * message of the admitted client arrived. */
    if (ac.got == 0) {
        t = sup_thread_start(acceptor_main, &ac);
        sup_thread_join(t);
        assert_rc(ac.rc, MSGPIPE_OK);
    }
    assert_int_equal(ac.got, 1);
    msgpipe_server_close(srv);
}
#endif

/* ---- The peer's user, and require_same_user ----------------------------- */

/* This process's user as msgpipe_peer_user gives it, found here
 * independently of the library. */
static void own_user(char *buf, size_t cap)
{
#ifdef _WIN32
    HANDLE tok;
    BYTE ubuf[256];
    DWORD n;
    char *text = NULL;

    assert_true(OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &tok));
    assert_true(GetTokenInformation(tok, TokenUser, ubuf, sizeof(ubuf), &n));
    CloseHandle(tok);
    assert_true(ConvertSidToStringSidA(((TOKEN_USER *)ubuf)->User.Sid, &text));
    assert_true(strlen(text) < cap);
    strcpy(buf, text);
    LocalFree(text);
    assert_true(strncmp(buf, "S-1-", 4) == 0);
#else
    snprintf(buf, cap, "%ld", (long)getuid());
#endif
}

/* A connected pair on a new name; the client has sent "hi" and the server
 * received it (some Windows versions identify a client only then). */
static void connected_pair(msgpipe_server **srv, msgpipe **c, msgpipe **a)
{
    char name[96], buf[8];
    size_t len = 0;

    sup_name(name, sizeof(name), "acc");
    assert_rc(msgpipe_listen(name, NULL, srv), MSGPIPE_OK);
    assert_rc(msgpipe_connect(name, NULL, SUP_T, c), MSGPIPE_OK);
    assert_rc(msgpipe_send(*c, "hi", 2, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_accept(*srv, SUP_T, a), MSGPIPE_OK);
    assert_rc(msgpipe_recv(*a, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 2);
}

static void test_peer_user_of_each_end_is_this_user(void **state)
{
    (void)state;
    msgpipe_server *srv = NULL;
    msgpipe *c = NULL, *a = NULL;
    char me[256], got[256];
    size_t len = 0;

    own_user(me, sizeof(me));
    connected_pair(&srv, &c, &a);
    /* The server end: its client's user. */
    assert_rc(msgpipe_peer_user(a, got, sizeof(got), &len), MSGPIPE_OK);
    assert_string_equal(got, me);
    assert_int_equal(len, strlen(me));
    /* The client end: its server's user. */
    len = 0;
    assert_rc(msgpipe_peer_user(c, got, sizeof(got), &len), MSGPIPE_OK);
    assert_string_equal(got, me);
    assert_int_equal(len, strlen(me));
    msgpipe_close(c);
    msgpipe_close(a);
    msgpipe_server_close(srv);
}

static void test_peer_user_too_small_is_enobufs_with_the_size(void **state)
{
    (void)state;
    msgpipe_server *srv = NULL;
    msgpipe *c = NULL, *a = NULL;
    char me[256], got[256];
    size_t len = 0, need;

    own_user(me, sizeof(me));
    need = strlen(me) + 1;
    connected_pair(&srv, &c, &a);
    /* One byte short (no room for the NUL): the size needed, buf as it
     * was. */
    memset(got, 'x', sizeof(got));
    assert_rc(msgpipe_peer_user(c, got, need - 1, &len), MSGPIPE_ENOBUFS);
    assert_int_equal(len, need);
    assert_int_equal(got[0], 'x');
    /* No buffer at all: the size too. */
    len = 0;
    assert_rc(msgpipe_peer_user(a, NULL, 0, &len), MSGPIPE_ENOBUFS);
    assert_int_equal(len, need);
    /* Exactly that much is enough. */
    assert_rc(msgpipe_peer_user(a, got, need, &len), MSGPIPE_OK);
    assert_int_equal(len, need - 1);
    assert_string_equal(got, me);
    msgpipe_close(c);
    msgpipe_close(a);
    msgpipe_server_close(srv);
}

static void test_peer_user_arguments_are_checked(void **state)
{
    (void)state;
    msgpipe_server *srv = NULL;
    msgpipe *c = NULL, *a = NULL;
    char got[64];
    size_t len = 7;

    assert_rc(msgpipe_peer_user(NULL, got, sizeof(got), &len), MSGPIPE_EINVAL);
    assert_int_equal(len, 0);
    connected_pair(&srv, &c, &a);
    assert_rc(msgpipe_peer_user(c, got, sizeof(got), NULL), MSGPIPE_EINVAL);
    assert_rc(msgpipe_peer_user(c, NULL, 8, &len), MSGPIPE_EINVAL);
    msgpipe_close(c);
    msgpipe_close(a);
    msgpipe_server_close(srv);
}

static void test_require_same_user_is_checked(void **state)
{
    (void)state;
    msgpipe_options o;
    msgpipe *c = NULL;
    char name[96];

    sup_name(name, sizeof(name), "acc");
    msgpipe_options_init(&o);
    assert_int_equal(o.require_same_user, 0);
    o.require_same_user = 2;
    assert_rc(msgpipe_connect(name, &o, 0, &c), MSGPIPE_EINVAL);
    o.require_same_user = -1;
    assert_rc(msgpipe_connect(name, &o, 0, &c), MSGPIPE_EINVAL);
    assert_null(c);
}

static void
test_options_without_require_same_user_field_check_nothing(void **state)
{
    (void)state;
    msgpipe_options o;
    msgpipe_server *srv = NULL;
    msgpipe *c = NULL, *a = NULL;
    char name[96];

    sup_name(name, sizeof(name), "acc");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    /* A program built before the field: its struct ends before it. */
    memset(&o, 0xAB, sizeof(o));
    msgpipe_options_init_size(&o, offsetof(msgpipe_options, require_same_user));
    o.require_same_user = 2; /* beyond struct_size: must not be read */
    assert_rc(msgpipe_connect(name, &o, SUP_T, &c), MSGPIPE_OK);
    assert_rc(msgpipe_accept(srv, SUP_T, &a), MSGPIPE_OK);
    msgpipe_close(c);
    msgpipe_close(a);
    msgpipe_server_close(srv);
}

static void test_require_same_user_connects_to_our_own_server(void **state)
{
    (void)state;
    msgpipe_options o;
    msgpipe_server *srv = NULL;
    msgpipe *c = NULL;
    acceptor ac;
    sup_thread *t;
    char name[96];

    sup_name(name, sizeof(name), "acc");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    ac.srv = srv;
    ac.rc = MSGPIPE_EIO;
    ac.got = 0;
    /* Accepting meanwhile: the FIFO transport's connect waits for it. */
    t = sup_thread_start(acceptor_main, &ac);
    msgpipe_options_init(&o);
    o.require_same_user = 1;
    assert_rc(msgpipe_connect(name, &o, SUP_T, &c), MSGPIPE_OK);
    assert_rc(msgpipe_send(c, "x", 1, SUP_T), MSGPIPE_OK);
    msgpipe_close(c);
    sup_thread_join(t);
    assert_rc(ac.rc, MSGPIPE_OK);
    assert_int_equal(ac.got, 1);
    msgpipe_server_close(srv);
}

static void test_require_same_user_refuses_another_users_server(void **state)
{
    (void)state;
#ifdef _WIN32
    if (sup_is_wine()) {
        SUP_SKIP("Wine runs every process as one user: a server of another "
                 "user cannot be made");
        return;
    }
    SUP_SKIP("needs a second Windows account to run the server as");
#else
    msgpipe_options o;
    msgpipe *c = NULL;
    sup_proc *server;
    char name[128];

    if (geteuid() != 0) {
        SUP_SKIP("needs root, to run a server as another user");
        return;
    }
    tmp_name(name, sizeof(name));
    server = spawn_as(NOBODY, NOBODY, "serve", name);
    /* Waits for the server to appear, then refuses it. */
    msgpipe_options_init(&o);
    o.require_same_user = 1;
    assert_rc(msgpipe_connect(name, &o, SUP_T, &c), MSGPIPE_EACCES);
    assert_null(c);
    /* The server got nothing from that client (with the FIFO transport
     * not even a request): it says so once no client has come for 2 s. */
    assert_int_equal(sup_proc_wait(server), 0);
#endif
}

#ifdef _WIN32
static void test_require_same_user_refuses_a_pipe_owned_by_another(void **state)
{
    (void)state;
    msgpipe_options o;
    msgpipe *c = NULL;
    char name[96], sys[300];
    WCHAR wsys[300];
    SECURITY_ATTRIBUTES sa;
    PSECURITY_DESCRIPTOR sd = NULL;
    HANDLE squat, second;

    /* A message pipe made with raw Win32, owned by the Administrators
     * group rather than by this user (as a squatter's, or a server's of
     * another user, is owned by somebody else).  Everybody may connect. */
    sup_name(name, sizeof(name), "acc");
    sup_sys_name(name, sys, sizeof(sys));
    MultiByteToWideChar(CP_UTF8, 0, sys, -1, wsys, 300);
    assert_true(ConvertStringSecurityDescriptorToSecurityDescriptorA(
        "O:BAD:(A;;GA;;;WD)", SDDL_REVISION_1, &sd, NULL));
    sa.nLength = sizeof(sa);
    sa.lpSecurityDescriptor = sd;
    sa.bInheritHandle = FALSE;
    squat =
        CreateNamedPipeW(wsys, PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED,
                         PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE | PIPE_WAIT,
                         PIPE_UNLIMITED_INSTANCES, 4096, 4096, 0, &sa);
    /* Two instances: one for each connect below. */
    second =
        CreateNamedPipeW(wsys, PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED,
                         PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE | PIPE_WAIT,
                         PIPE_UNLIMITED_INSTANCES, 4096, 4096, 0, &sa);
    LocalFree(sd);
    if (squat == INVALID_HANDLE_VALUE) {
        SUP_SKIP("this user may not make the Administrators group the owner "
                 "of a pipe (not an administrator)");
        return;
    }
    msgpipe_options_init(&o);
    o.require_same_user = 1;
    assert_true(second != INVALID_HANDLE_VALUE);
    assert_rc(msgpipe_connect(name, &o, SUP_T, &c), MSGPIPE_EACCES);
    assert_null(c);
    /* Without the option the same pipe is a server like any other. */
    assert_rc(msgpipe_connect(name, NULL, SUP_T, &c), MSGPIPE_OK);
    msgpipe_close(c);
    CloseHandle(second);
    CloseHandle(squat);
}
#endif

/* ---- Windows: the DACL and squatters ------------------------------------ */

#ifdef _WIN32
static void test_default_dacl_admits_only_this_user(void **state)
{
    (void)state;
    msgpipe_server *srv = NULL;
    char name[96], sys[300];
    WCHAR wsys[300];
    PSECURITY_DESCRIPTOR sd = NULL;
    PACL dacl = NULL;
    HANDLE h, tok;
    BYTE ubuf[256];
    DWORD n, i;
    PSID system_sid = NULL;
    int user_seen = 0, system_seen = 0;

    /* This checks the descriptor, which Wine keeps too; that Windows then
     * refuses other users is its job (and not enforced under Wine). */
    sup_name(name, sizeof(name), "acc");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    sup_sys_name(name, sys, sizeof(sys));
    MultiByteToWideChar(CP_UTF8, 0, sys, -1, wsys, 300);
    h = CreateFileW(wsys, READ_CONTROL, 0, NULL, OPEN_EXISTING, 0, NULL);
    assert_true(h != INVALID_HANDLE_VALUE);
    assert_int_equal(GetSecurityInfo(h, SE_KERNEL_OBJECT,
                                     DACL_SECURITY_INFORMATION, NULL, NULL,
                                     &dacl, NULL, &sd),
                     ERROR_SUCCESS);
    assert_non_null(dacl); /* a NULL DACL would admit everybody */
    assert_true(OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &tok));
    assert_true(GetTokenInformation(tok, TokenUser, ubuf, sizeof(ubuf), &n));
    CloseHandle(tok);
    assert_true(ConvertStringSidToSidA("S-1-5-18", &system_sid));
    for (i = 0; i < dacl->AceCount; i++) {
        ACCESS_ALLOWED_ACE *ace;
        assert_true(GetAce(dacl, i, (void **)&ace));
        assert_int_equal(ace->Header.AceType, ACCESS_ALLOWED_ACE_TYPE);
        if (EqualSid((PSID)&ace->SidStart, ((TOKEN_USER *)ubuf)->User.Sid))
            user_seen = 1;
        else if (EqualSid((PSID)&ace->SidStart, system_sid))
            system_seen = 1;
        else
            fail_msg("an ACE for somebody other than this user and SYSTEM");
    }
    assert_true(user_seen && system_seen);
    LocalFree(system_sid);
    LocalFree(sd);
    CloseHandle(h);
    msgpipe_server_close(srv);
}
#endif

#ifdef _WIN32
static void test_squatter_on_the_name_is_refused(void **state)
{
    (void)state;
    msgpipe_server *srv = NULL;
    char name[96], sys[300];
    WCHAR wsys[300];
    HANDLE squat;

    /* Somebody made the pipe first, as a squatter would, with raw Win32. */
    sup_name(name, sizeof(name), "acc");
    sup_sys_name(name, sys, sizeof(sys));
    MultiByteToWideChar(CP_UTF8, 0, sys, -1, wsys, 300);
    squat =
        CreateNamedPipeW(wsys, PIPE_ACCESS_DUPLEX,
                         PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE | PIPE_WAIT,
                         PIPE_UNLIMITED_INSTANCES, 4096, 4096, 0, NULL);
    assert_true(squat != INVALID_HANDLE_VALUE);
    /* FILE_FLAG_FIRST_PIPE_INSTANCE (and, where that is not enforced, as
     * under Wine, the instance count) makes the server refuse the name
     * rather than share it with the squatter. */
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_EADDRINUSE);
    assert_null(srv);
    CloseHandle(squat);
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    msgpipe_server_close(srv);
}
#endif

/* ---- A security descriptor string (msgpipe_options.sddl) --------------- */

#define SDDL_AUTHENTICATED "D:P(A;;GA;;;AU)(A;;GA;;;SY)"

#ifdef _WIN32
/* The DACL of the pipe that h is a client handle of has exactly one
 * allowing ACE for each of sid_a and sid_b (string SIDs). */
static void expect_dacl_of(HANDLE h, const char *sid_a, const char *sid_b)
{
    PSECURITY_DESCRIPTOR sd = NULL;
    PACL dacl = NULL;
    PSID a = NULL, b = NULL;
    int a_seen = 0, b_seen = 0;
    DWORD i;

    assert_int_equal(GetSecurityInfo(h, SE_KERNEL_OBJECT,
                                     DACL_SECURITY_INFORMATION, NULL, NULL,
                                     &dacl, NULL, &sd),
                     ERROR_SUCCESS);
    assert_non_null(dacl);
    assert_true(ConvertStringSidToSidA(sid_a, &a));
    assert_true(ConvertStringSidToSidA(sid_b, &b));
    assert_int_equal(dacl->AceCount, 2);
    for (i = 0; i < dacl->AceCount; i++) {
        ACCESS_ALLOWED_ACE *ace;
        assert_true(GetAce(dacl, i, (void **)&ace));
        assert_int_equal(ace->Header.AceType, ACCESS_ALLOWED_ACE_TYPE);
        /* GA as written, or as the system maps it for a pipe. */
        assert_true(ace->Mask == GENERIC_ALL || ace->Mask == FILE_ALL_ACCESS);
        if (EqualSid((PSID)&ace->SidStart, a))
            a_seen++;
        else if (EqualSid((PSID)&ace->SidStart, b))
            b_seen++;
        else
            fail_msg("an ACE for somebody the SDDL did not name");
    }
    assert_int_equal(a_seen, 1);
    assert_int_equal(b_seen, 1);
    LocalFree(a);
    LocalFree(b);
    LocalFree(sd);
}
#endif

#ifdef _WIN32
static void test_sddl_sets_the_dacl_and_admits_a_client(void **state)
{
    (void)state;
    msgpipe_options o, co;
    msgpipe_server *srv = NULL;
    msgpipe *c = NULL, *a = NULL;
    char name[96], sys[300], buf[8];
    WCHAR wsys[300];
    size_t len = 0;
    HANDLE h;

    sup_name(name, sizeof(name), "acc");
    msgpipe_options_init(&o);
    o.sddl = SDDL_AUTHENTICATED;
    assert_rc(msgpipe_listen(name, &o, &srv), MSGPIPE_OK);
    /* A client's options may carry an sddl too: connect ignores it. */
    msgpipe_options_init(&co);
    co.sddl = "not an sddl";
    assert_rc(msgpipe_connect(name, &co, SUP_T, &c), MSGPIPE_OK);
    assert_rc(msgpipe_accept(srv, SUP_T, &a), MSGPIPE_OK);
    assert_rc(msgpipe_send(c, "hi", 2, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 2);
    assert_memory_equal(buf, "hi", 2);
    /* Another instance, made after the first was taken: the same DACL. */
    sup_sys_name(name, sys, sizeof(sys));
    MultiByteToWideChar(CP_UTF8, 0, sys, -1, wsys, 300);
    h = CreateFileW(wsys, READ_CONTROL, 0, NULL, OPEN_EXISTING, 0, NULL);
    assert_true(h != INVALID_HANDLE_VALUE);
    expect_dacl_of(h, "S-1-5-11", "S-1-5-18");
    CloseHandle(h);
    msgpipe_close(c);
    msgpipe_close(a);
    msgpipe_server_close(srv);
}
#endif

#ifdef _WIN32
static void test_sddl_that_does_not_parse_is_einval(void **state)
{
    (void)state;
    msgpipe_options o;
    msgpipe_server *srv = NULL;
    char name[96];

    sup_name(name, sizeof(name), "acc");
    msgpipe_options_init(&o);
    o.sddl = "not an sddl";
    assert_rc(msgpipe_listen(name, &o, &srv), MSGPIPE_EINVAL);
    assert_null(srv);
    assert_true(msgpipe_last_os_error() != 0); /* the system's reason */
    /* Invalid UTF-8 does not parse either. */
    o.sddl = "D:P(A;;GA;;;\xff)";
    assert_rc(msgpipe_listen(name, &o, &srv), MSGPIPE_EINVAL);
    assert_null(srv);
    /* Nothing was made: the name is free. */
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    msgpipe_server_close(srv);
}
#endif

#ifdef _WIN32
static void test_sddl_with_wider_access_is_einval(void **state)
{
    (void)state;
    msgpipe_options o;
    msgpipe_server *srv = NULL;
    char name[96];

    sup_name(name, sizeof(name), "acc");
    msgpipe_options_init(&o);
    o.sddl = SDDL_AUTHENTICATED;
    o.access = MSGPIPE_ACCESS_WORLD;
    assert_rc(msgpipe_listen(name, &o, &srv), MSGPIPE_EINVAL);
    o.access = MSGPIPE_ACCESS_GROUP;
    assert_rc(msgpipe_listen(name, &o, &srv), MSGPIPE_EINVAL);
    assert_null(srv);
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    msgpipe_server_close(srv);
}
#endif

#ifndef _WIN32
static void test_sddl_is_enotsup_and_leaves_the_name_free(void **state)
{
    (void)state;
    msgpipe_options o;
    msgpipe_server *srv = NULL;
    msgpipe *c = NULL, *a = NULL;
    char name[96], sys[300];

    sup_name(name, sizeof(name), "acc");
    sup_sys_name(name, sys, sizeof(sys));
    msgpipe_options_init(&o);
    o.sddl = SDDL_AUTHENTICATED;
    assert_rc(msgpipe_listen(name, &o, &srv), MSGPIPE_ENOTSUP);
    assert_null(srv);
    o.sddl = "not an sddl";
    assert_rc(msgpipe_listen(name, &o, &srv), MSGPIPE_ENOTSUP);
    assert_null(srv);
    /* Nothing was created under the name. */
    assert_int_equal(access(sys, F_OK), -1);
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    /* A client's options may carry an sddl: connect ignores it. */
    assert_rc(msgpipe_connect(name, &o, SUP_T, &c), MSGPIPE_OK);
    assert_rc(msgpipe_accept(srv, SUP_T, &a), MSGPIPE_OK);
    msgpipe_close(c);
    msgpipe_close(a);
    msgpipe_server_close(srv);
}
#endif

int main(int argc, char **argv)
{
    /* Each system runs the tests that mean something there; the others
     * are not listed (rather than reported as skipped on every run). */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uid_options_are_checked),
        cmocka_unit_test(test_other_user_cannot_connect_to_default_server),
        cmocka_unit_test(test_peer_user_of_each_end_is_this_user),
        cmocka_unit_test(test_peer_user_too_small_is_enobufs_with_the_size),
        cmocka_unit_test(test_peer_user_arguments_are_checked),
        cmocka_unit_test(test_require_same_user_is_checked),
        cmocka_unit_test(
            test_options_without_require_same_user_field_check_nothing),
        cmocka_unit_test(test_require_same_user_connects_to_our_own_server),
        cmocka_unit_test(test_require_same_user_refuses_another_users_server),
#ifdef _WIN32
        cmocka_unit_test(
            test_require_same_user_refuses_a_pipe_owned_by_another),
        cmocka_unit_test(test_default_dacl_admits_only_this_user),
        cmocka_unit_test(test_squatter_on_the_name_is_refused),
        cmocka_unit_test(test_sddl_sets_the_dacl_and_admits_a_client),
        cmocka_unit_test(test_sddl_that_does_not_parse_is_einval),
        cmocka_unit_test(test_sddl_with_wider_access_is_einval),
#else
        cmocka_unit_test(test_sddl_is_enotsup_and_leaves_the_name_free),
        cmocka_unit_test(test_group_access_admits_the_group),
        cmocka_unit_test(test_world_access_admits_everyone),
        cmocka_unit_test(test_allow_uids_drops_unlisted_clients),
        cmocka_unit_test(test_client_can_require_the_server_uid),
#endif
    };

    sup_init(argc, argv);
    if (sup_child_mode(argc, argv)) {
#ifndef _WIN32
        if (argc == 7 && strcmp(argv[2], "as") == 0)
            return child_as(argc - 2, argv + 2);
#endif
        fprintf(stderr, "unknown child mode\n");
        return 100;
    }
    return sup_finish(cmocka_run_group_tests_name("access", tests, NULL, NULL));
}
