/*
 * core.c - the backend-neutral half of msgpipe: error strings, options,
 * argument checks, then dispatch to the backend (api/backend.h).
 *
 * Every public call checks its arguments here, once, so that both backends
 * reject bad input with the same codes and before any system call.
 */
#include "backend.h"

#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ---- Memory ------------------------------------------------------------- */

msgpipe__allocator msgpipe__mem = {malloc, calloc, realloc, free};

/* ---- Version and backend ---------------------------------------------- */

#define MSGPIPE__STR2(x) #x
#define MSGPIPE__STR(x) MSGPIPE__STR2(x)

int msgpipe_version(void)
{
    return MSGPIPE_VERSION;
}

const char *msgpipe_version_string(void)
{
    return MSGPIPE__STR(MSGPIPE_VERSION_MAJOR) "." MSGPIPE__STR(
        MSGPIPE_VERSION_MINOR) "." MSGPIPE__STR(MSGPIPE_VERSION_PATCH);
}

const char *msgpipe_backend(void)
{
    return msgpipe__backend.name;
}

/* ---- Errors ------------------------------------------------------------ */

const char *msgpipe_strerror(int err)
{
    switch (err) {
#define MSGPIPE__STRERROR(name, value, text)                                   \
    case MSGPIPE_##name:                                                       \
        return text;
        MSGPIPE_ERRNO_MAP(MSGPIPE__STRERROR)
#undef MSGPIPE__STRERROR
    default:
        return "unknown msgpipe error";
    }
}

const char *msgpipe_errname(int err)
{
    switch (err) {
#define MSGPIPE__ERRNAME(name, value, text)                                    \
    case MSGPIPE_##name:                                                       \
        return #name;
        MSGPIPE_ERRNO_MAP(MSGPIPE__ERRNAME)
#undef MSGPIPE__ERRNAME
    default:
        return "UNKNOWN";
    }
}

/* The native error is kept per thread so that concurrent calls on other
 * handles cannot overwrite the one a caller is about to inspect. */
#if defined(_MSC_VER)
#define MSGPIPE__TLS __declspec(thread)
#elif defined(__GNUC__) || defined(__clang__)
#define MSGPIPE__TLS __thread
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define MSGPIPE__TLS _Thread_local
#else
#define MSGPIPE__TLS /* no thread-local storage: shared by all threads */
#endif

static MSGPIPE__TLS int msgpipe__os_error;

void msgpipe__set_os_error(int err)
{
    msgpipe__os_error = err;
}

int msgpipe_last_os_error(void)
{
    return msgpipe__os_error;
}

/* ---- Options ----------------------------------------------------------- */

#define MSGPIPE__DEFAULT_LINGER_MS 5000
/* A struct_size beyond this is not a msgpipe_options: most likely the
 * caller forgot msgpipe_options_init(). */
#define MSGPIPE__OPTIONS_SIZE_MAX 4096

/* True if the caller's struct (of opt->struct_size bytes) has field f. */
#define MSGPIPE__HAS(opt, f)                                                   \
    (offsetof(msgpipe_options, f) + sizeof((opt)->f) <= (opt)->struct_size)

/* Copy the defaults d (of d_size bytes, starting with struct_size) to the
 * caller's struct of dst_size bytes.  A program built against an older,
 * smaller struct gets only the fields it knows; one built against a
 * newer, larger struct gets ours and zeroes for the rest. */
static void msgpipe__init_struct(void *dst, size_t dst_size, const void *d,
                                 size_t d_size)
{
    uint32_t size;

    if (dst_size > d_size) {
        memset(dst, 0, dst_size);
        memcpy(dst, d, d_size);
        size = (uint32_t)d_size;
    } else {
        memcpy(dst, d, dst_size);
        size = (uint32_t)dst_size;
    }
    memcpy(dst, &size, sizeof(size)); /* struct_size, the first field */
}

void msgpipe_options_init_size(msgpipe_options *opt, size_t opt_size)
{
    msgpipe_options d;

    if (opt == NULL || opt_size < sizeof(uint32_t))
        return;
    memset(&d, 0, sizeof(d));
    d.max_message = MSGPIPE_DEFAULT_MAX_MESSAGE;
    d.access = MSGPIPE_ACCESS_OWNER;
    d.pending = msgpipe__backend.default_pending;
    d.linger_ms = MSGPIPE__DEFAULT_LINGER_MS;
    d.allow_uids = NULL;
    d.n_allow_uids = 0;
    d.require_server_uid = -1;
    d.sddl = NULL;
    d.require_same_user = 0;
    d.spin_us = 0;
    d.authkey = NULL;
    d.authkey_len = 0;
    d.authkey_no_md5 = 0;
    d.allow_unauthenticated = 0;
    msgpipe__init_struct(opt, opt_size, &d, sizeof(d));
}

/* Turn the caller's options (or NULL) into complete, checked options. */
static int msgpipe__opts_get(const msgpipe_options *opt, msgpipe__opts *o)
{
    o->max_message = MSGPIPE_DEFAULT_MAX_MESSAGE;
    o->access = MSGPIPE_ACCESS_OWNER;
    o->pending = msgpipe__backend.default_pending;
    o->linger_ms = MSGPIPE__DEFAULT_LINGER_MS;
    o->require_server_uid = -1;
    o->allow_uids = NULL;
    o->n_allow_uids = 0;
    o->sddl = NULL;
    o->require_same_user = 0;
    o->spin_us = 0;
    o->authkey = NULL;
    o->authkey_len = 0;
    o->no_md5 = 0;
    o->allow_unauthenticated = 0;
    o->auth = NULL;
    if (opt == NULL)
        return MSGPIPE_OK;
    if (opt->struct_size < sizeof(uint32_t) ||
        opt->struct_size > MSGPIPE__OPTIONS_SIZE_MAX)
        return MSGPIPE_EINVAL;
    if (MSGPIPE__HAS(opt, max_message) && opt->max_message != 0) {
        if (opt->max_message > (uint64_t)INT64_MAX)
            return MSGPIPE_EINVAL;
        o->max_message = opt->max_message;
    }
    if (MSGPIPE__HAS(opt, access)) {
        if (opt->access < MSGPIPE_ACCESS_OWNER ||
            opt->access > MSGPIPE_ACCESS_WORLD)
            return MSGPIPE_EINVAL;
        o->access = opt->access;
    }
    if (MSGPIPE__HAS(opt, pending)) {
        if (opt->pending < 0)
            return MSGPIPE_EINVAL;
        if (opt->pending > 0)
            o->pending = opt->pending;
    }
    if (MSGPIPE__HAS(opt, linger_ms)) {
        if (opt->linger_ms < -1)
            return MSGPIPE_EINVAL;
        o->linger_ms = opt->linger_ms;
    }
    if (MSGPIPE__HAS(opt, n_allow_uids) && opt->n_allow_uids > 0) {
        if (opt->allow_uids == NULL)
            return MSGPIPE_EINVAL;
        if (!msgpipe__backend.has_uids)
            return MSGPIPE_ENOTSUP;
        /* Only pointed to here; msgpipe_listen() makes the copy. */
        o->allow_uids = (int64_t *)opt->allow_uids;
        o->n_allow_uids = opt->n_allow_uids;
    }
    if (MSGPIPE__HAS(opt, require_server_uid)) {
        if (opt->require_server_uid < -1)
            return MSGPIPE_EINVAL;
        if (opt->require_server_uid >= 0 && !msgpipe__backend.has_uids)
            return MSGPIPE_ENOTSUP;
        o->require_server_uid = opt->require_server_uid;
    }
    /* Checked by msgpipe_listen(); a client ignores it. */
    if (MSGPIPE__HAS(opt, sddl))
        o->sddl = opt->sddl;
    /* A struct from before this field has none: no check. */
    if (MSGPIPE__HAS(opt, require_same_user)) {
        if (opt->require_same_user != 0 && opt->require_same_user != 1)
            return MSGPIPE_EINVAL;
        o->require_same_user = opt->require_same_user;
    }
    /* Likewise: a struct from before spin_us never spins. */
    if (MSGPIPE__HAS(opt, spin_us)) {
        if (opt->spin_us < 0 || opt->spin_us > MSGPIPE__SPIN_US_MAX)
            return MSGPIPE_EINVAL;
        o->spin_us = (int)opt->spin_us;
    }
    /* Only pointed to here; msgpipe_listen() makes the copy. */
    if (MSGPIPE__HAS(opt, authkey_len) && opt->authkey != NULL) {
        o->authkey = (uint8_t *)opt->authkey;
        o->authkey_len = opt->authkey_len;
    } else if (MSGPIPE__HAS(opt, authkey_len) && opt->authkey_len > 0) {
        return MSGPIPE_EINVAL; /* a length without the bytes */
    }
    if (MSGPIPE__HAS(opt, authkey_no_md5)) {
        if (opt->authkey_no_md5 != 0 && opt->authkey_no_md5 != 1)
            return MSGPIPE_EINVAL;
        o->no_md5 = opt->authkey_no_md5;
    }
    if (MSGPIPE__HAS(opt, allow_unauthenticated)) {
        if (opt->allow_unauthenticated != 0 && opt->allow_unauthenticated != 1)
            return MSGPIPE_EINVAL;
        o->allow_unauthenticated = opt->allow_unauthenticated;
    }
    return MSGPIPE_OK;
}

/* ---- Calls ------------------------------------------------------------- */

/* ---- Deadlines (shared by the core and the backends) ------------------- */

/* Timeout 0 is the deadline 0, which has always passed (the monotonic
 * clock of msgpipe__now_ms() is past 0 by the time anything runs), so a
 * call with timeout 0 reads no clock at all. */
int64_t msgpipe__deadline(int timeout_ms)
{
    if (timeout_ms <= 0)
        return timeout_ms < 0 ? -1 : 0;
    return msgpipe__now_ms() + timeout_ms;
}

int msgpipe__remaining(int64_t deadline)
{
    int64_t left;

    if (deadline <= 0)
        return deadline < 0 ? -1 : 0;
    left = deadline - msgpipe__now_ms();
    if (left <= 0)
        return 0;
    return left > INT_MAX ? INT_MAX : (int)left;
}

static int msgpipe__timeout_ok(int timeout_ms)
{
    return timeout_ms >= -1;
}

static int msgpipe__name_get(const char *name, msgpipe__name *n)
{
    const char *dir = NULL;

    if (msgpipe__backend.style == MSGPIPE__STYLE_POSIX)
        dir = getenv("XDG_RUNTIME_DIR");
    return msgpipe__name_parse(name, &msgpipe__backend, dir, n);
}

int msgpipe_listen(const char *name, const msgpipe_options *opt,
                   msgpipe_server **out)
{
    msgpipe__name n;
    msgpipe__opts o;
    int rc;

    if (out == NULL)
        return MSGPIPE_EINVAL;
    *out = NULL;
    rc = msgpipe__opts_get(opt, &o);
    if (rc != MSGPIPE_OK)
        return rc;
    if (o.sddl != NULL) {
        /* Only Windows pipes have security descriptors.  An sddl replaces
         * the DACL that access would give; a wider access with it would
         * be a contradiction (docs/decisions.md). */
        if (msgpipe__backend.style != MSGPIPE__STYLE_WIN32)
            return MSGPIPE_ENOTSUP;
        if (o.access != MSGPIPE_ACCESS_OWNER)
            return MSGPIPE_EINVAL;
    }
    rc = msgpipe__name_get(name, &n);
    if (rc != MSGPIPE_OK)
        return rc;
    /* After every option is checked, so that a bad value is EINVAL on
     * every build. */
    if (o.authkey != NULL && !msgpipe__b_crypto_ok())
        return MSGPIPE_ENOTSUP;
    if (n.kind == MSGPIPE__NAME_TCP) {
        if (!msgpipe__backend.has_tcp)
            return MSGPIPE_ENOTSUP;
        /* No system tells a user id across a network. */
        if (o.n_allow_uids > 0)
            return MSGPIPE_ENOTSUP;
    }
    if (o.authkey != NULL) {
        const uint8_t *key = o.authkey;
        /* One byte more, so that an empty key is not malloc(0). */
        o.authkey = (uint8_t *)msgpipe__malloc(o.authkey_len + 1);
        if (o.authkey == NULL)
            return MSGPIPE_ENOMEM;
        memcpy(o.authkey, key, o.authkey_len);
        o.auth = msgpipe__auth_new();
        if (o.auth == NULL) {
            msgpipe__free(o.authkey);
            return MSGPIPE_ENOMEM;
        }
    }
    if (o.n_allow_uids > 0) {
        const int64_t *src = o.allow_uids;
        o.allow_uids = NULL;
        if (o.n_allow_uids > SIZE_MAX / sizeof(int64_t))
            rc = MSGPIPE_EINVAL;
        else
            o.allow_uids =
                (int64_t *)msgpipe__malloc(o.n_allow_uids * sizeof(int64_t));
        if (o.allow_uids == NULL && rc == MSGPIPE_OK)
            rc = MSGPIPE_ENOMEM;
        if (rc != MSGPIPE_OK) {
            msgpipe__auth_free(o.auth);
            msgpipe__free(o.authkey);
            return rc;
        }
        memcpy(o.allow_uids, src, o.n_allow_uids * sizeof(int64_t));
    }
    rc = msgpipe__b_listen(&n, &o, out);
    if (rc != MSGPIPE_OK) {
        msgpipe__free(o.allow_uids);
        msgpipe__auth_free(o.auth);
        msgpipe__free(o.authkey);
        return rc;
    }
    if (o.auth != NULL) {
        rc = msgpipe__b_auth_setup(*out);
        if (rc != MSGPIPE_OK) {
            msgpipe_server_close(*out);
            *out = NULL;
        }
    }
    return rc;
}

static int msgpipe__uid_allowed(const msgpipe__opts *o, int64_t uid)
{
    size_t i;

    for (i = 0; i < o->n_allow_uids; i++)
        if (o->allow_uids[i] == uid)
            return 1;
    return 0;
}

int msgpipe_accept(msgpipe_server *srv, int timeout_ms, msgpipe **out)
{
    if (out != NULL)
        *out = NULL;
    if (srv == NULL || out == NULL || !msgpipe__timeout_ok(timeout_ms))
        return MSGPIPE_EINVAL;
    return msgpipe__accept_admitted(srv, timeout_ms, out);
}

int msgpipe__accept_admitted(msgpipe_server *srv, int timeout_ms, msgpipe **out)
{
    if (msgpipe__b_server_opts(srv)->auth != NULL)
        return msgpipe__auth_accept(srv, timeout_ms, out);
    return msgpipe__accept_plain(srv, timeout_ms, out);
}

int msgpipe__accept_plain(msgpipe_server *srv, int timeout_ms, msgpipe **out)
{
    const msgpipe__opts *o;
    msgpipe_peer_info info;
    int64_t deadline;
    int rc;

    o = msgpipe__b_server_opts(srv);
    if (o->n_allow_uids == 0)
        return msgpipe__b_accept(srv, timeout_ms, out);
    /* Only listed users: a client that is not is dropped (it sees the end
     * of the pipe) and the wait goes on for the time that is left. */
    deadline = msgpipe__deadline(timeout_ms);
    for (;;) {
        rc = msgpipe__b_accept(srv, msgpipe__remaining(deadline), out);
        if (rc != MSGPIPE_OK)
            return rc;
        if (msgpipe__b_peer(*out, &info) == MSGPIPE_OK &&
            msgpipe__uid_allowed(o, info.uid))
            return MSGPIPE_OK;
        msgpipe__b_close(*out);
        *out = NULL;
    }
}

void msgpipe_server_shutdown(msgpipe_server *srv)
{
    if (srv != NULL)
        msgpipe__b_server_shutdown(srv);
}

void msgpipe_server_close(msgpipe_server *srv)
{
    const msgpipe__opts *o;
    int64_t *uids;
    uint8_t *key;

    if (srv == NULL)
        return;
    o = msgpipe__b_server_opts(srv);
    uids = o->allow_uids;
    key = o->authkey;
    /* Connections still in a handshake first: they are pipes of srv. */
    msgpipe__auth_free(o->auth);
    msgpipe__b_server_close(srv);
    msgpipe__free(uids);
    msgpipe__free(key);
}

int msgpipe_connect(const char *name, const msgpipe_options *opt,
                    int timeout_ms, msgpipe **out)
{
    msgpipe__name n;
    msgpipe__opts o;
    int64_t deadline;
    int rc;

    if (out == NULL)
        return MSGPIPE_EINVAL;
    *out = NULL;
    if (!msgpipe__timeout_ok(timeout_ms))
        return MSGPIPE_EINVAL;
    rc = msgpipe__opts_get(opt, &o);
    if (rc != MSGPIPE_OK)
        return rc;
    rc = msgpipe__name_get(name, &n);
    if (rc != MSGPIPE_OK)
        return rc;
    if (n.kind == MSGPIPE__NAME_TCP && !msgpipe__backend.has_tcp)
        return MSGPIPE_ENOTSUP;
    if (o.authkey != NULL && !msgpipe__b_crypto_ok())
        return MSGPIPE_ENOTSUP;
    deadline = msgpipe__deadline(timeout_ms);
    rc = msgpipe__b_connect(&n, &o, timeout_ms, out);
    if (rc == MSGPIPE_OK && o.require_server_uid >= 0) {
        /* Before anything is sent: is the server who it must be? */
        msgpipe_peer_info info;
        rc = msgpipe__b_peer(*out, &info);
        if (rc == MSGPIPE_OK && info.uid != o.require_server_uid)
            rc = MSGPIPE_EACCES;
        if (rc != MSGPIPE_OK) {
            msgpipe__b_close(*out);
            *out = NULL;
        }
    }
    if (rc == MSGPIPE_OK && o.require_same_user) {
        /* Likewise: does the server run as this user? */
        rc = msgpipe__b_same_user(*out);
        if (rc != MSGPIPE_OK) {
            msgpipe__b_close(*out);
            *out = NULL;
        }
    }
    if (rc == MSGPIPE_OK && o.authkey != NULL) {
        /* Last: the identity checks cost nothing and send nothing. */
        rc = msgpipe__auth_client(*out, &o, deadline);
        if (rc != MSGPIPE_OK) {
            msgpipe__b_close(*out);
            *out = NULL;
        }
    }
    return rc;
}

int msgpipe_send(msgpipe *p, const void *msg, size_t len, int timeout_ms)
{
    if (p == NULL || (msg == NULL && len > 0) ||
        !msgpipe__timeout_ok(timeout_ms))
        return MSGPIPE_EINVAL;
    return msgpipe__b_send(p, msg, len, timeout_ms);
}

int msgpipe_send_batch(msgpipe *p, const msgpipe_msg *msgs, size_t n,
                       size_t *sent, int timeout_ms)
{
    size_t i, dummy;

    if (sent == NULL)
        sent = &dummy;
    *sent = 0;
    if (p == NULL || (msgs == NULL && n > 0) ||
        !msgpipe__timeout_ok(timeout_ms))
        return MSGPIPE_EINVAL;
    for (i = 0; i < n; i++)
        if (msgs[i].data == NULL && msgs[i].len > 0)
            return MSGPIPE_EINVAL;
    if (n == 0)
        return MSGPIPE_OK;
    return msgpipe__b_send_batch(p, msgs, n, sent, timeout_ms);
}

int msgpipe__send_batch_each(msgpipe *p, const msgpipe_msg *msgs, size_t n,
                             size_t *sent, int timeout_ms)
{
    int64_t deadline = msgpipe__deadline(timeout_ms);
    size_t i;
    int rc = MSGPIPE_OK;

    for (i = 0; i < n && rc == MSGPIPE_OK; i++) {
        rc = msgpipe__b_send(p, msgs[i].data, msgs[i].len,
                             msgpipe__remaining(deadline));
        if (rc == MSGPIPE_OK)
            (*sent)++;
    }
    return rc;
}

int msgpipe_recv(msgpipe *p, void *buf, size_t cap, size_t *len, int timeout_ms)
{
    if (len != NULL)
        *len = 0;
    if (p == NULL || len == NULL || (buf == NULL && cap > 0) ||
        !msgpipe__timeout_ok(timeout_ms))
        return MSGPIPE_EINVAL;
    return msgpipe__b_recv(p, buf, cap, len, timeout_ms);
}

int msgpipe_recv_alloc(msgpipe *p, void **msg, size_t *len, int timeout_ms)
{
    if (msg != NULL)
        *msg = NULL;
    if (len != NULL)
        *len = 0;
    if (p == NULL || msg == NULL || len == NULL ||
        !msgpipe__timeout_ok(timeout_ms))
        return MSGPIPE_EINVAL;
    return msgpipe__b_recv_alloc(p, msg, len, timeout_ms);
}

void msgpipe_free(void *msg)
{
    msgpipe__free(msg);
}

int msgpipe_peer(msgpipe *p, msgpipe_peer_info *info)
{
    if (info != NULL) {
        info->pid = -1;
        info->uid = -1;
        info->gid = -1;
    }
    if (p == NULL || info == NULL)
        return MSGPIPE_EINVAL;
    return msgpipe__b_peer(p, info);
}

int msgpipe_peer_user(msgpipe *p, char *buf, size_t cap, size_t *len)
{
    if (len != NULL)
        *len = 0;
    if (p == NULL || len == NULL || (buf == NULL && cap > 0))
        return MSGPIPE_EINVAL;
    return msgpipe__b_peer_user(p, buf, cap, len);
}

int msgpipe_peer_address(msgpipe *p, char *buf, size_t cap, size_t *len)
{
    if (len != NULL)
        *len = 0;
    if (p == NULL || len == NULL || (buf == NULL && cap > 0))
        return MSGPIPE_EINVAL;
    return msgpipe__b_peer_address(p, buf, cap, len);
}

int msgpipe_server_address(msgpipe_server *srv, char *buf, size_t cap,
                           size_t *len)
{
    if (len != NULL)
        *len = 0;
    if (srv == NULL || len == NULL || (buf == NULL && cap > 0))
        return MSGPIPE_EINVAL;
    return msgpipe__b_server_address(srv, buf, cap, len);
}

int msgpipe__put_text(const char *text, char *buf, size_t cap, size_t *len)
{
    size_t n = strlen(text);

    if (n >= cap) {
        *len = n + 1;
        return MSGPIPE_ENOBUFS;
    }
    memcpy(buf, text, n + 1);
    *len = n;
    return MSGPIPE_OK;
}

void msgpipe_close(msgpipe *p)
{
    if (p != NULL)
        msgpipe__b_close(p);
}

int msgpipe_poll(msgpipe_pollitem *items, size_t n, int timeout_ms)
{
    size_t i;

    if (!msgpipe__timeout_ok(timeout_ms) || (items == NULL && n > 0) ||
        (n == 0 && timeout_ms < 0))
        return MSGPIPE_EINVAL;
    for (i = 0; i < n; i++) {
        msgpipe_pollitem *it = &items[i];
        if (it->pipe != NULL && it->server != NULL)
            return MSGPIPE_EINVAL;
        if ((it->events & ~(MSGPIPE_POLLIN | MSGPIPE_POLLOUT)) != 0)
            return MSGPIPE_EINVAL;
        if (it->server != NULL && (it->events & MSGPIPE_POLLOUT) != 0)
            return MSGPIPE_EINVAL;
    }
    for (i = 0; i < n; i++)
        items[i].revents = 0;
    return msgpipe__b_poll(items, n, timeout_ms);
}

int msgpipe_native_handle(msgpipe *p, unsigned events, msgpipe_native *out)
{
    if (p == NULL || out == NULL ||
        (events != MSGPIPE_POLLIN && events != MSGPIPE_POLLOUT))
        return MSGPIPE_EINVAL;
    return msgpipe__b_native_handle(p, events, out);
}

int msgpipe_server_native_handle(msgpipe_server *srv, msgpipe_native *out)
{
    if (srv == NULL || out == NULL)
        return MSGPIPE_EINVAL;
    return msgpipe__b_server_native_handle(srv, out);
}

/* ---- Pairs, child processes, handles with messages --------------------- */

#define MSGPIPE__SPAWN_SIZE_MAX 4096
#define MSGPIPE__SO_HAS(so, f)                                                 \
    (offsetof(msgpipe_spawn_options, f) + sizeof((so)->f) <= (so)->struct_size)

int msgpipe_pair(const msgpipe_options *opt, msgpipe **a, msgpipe **b)
{
    msgpipe__opts o;
    int rc;

    if (a != NULL)
        *a = NULL;
    if (b != NULL)
        *b = NULL;
    if (a == NULL || b == NULL)
        return MSGPIPE_EINVAL;
    rc = msgpipe__opts_get(opt, &o);
    if (rc != MSGPIPE_OK)
        return rc;
    return msgpipe__b_pair(&o, a, b);
}

void msgpipe_spawn_options_init_size(msgpipe_spawn_options *so, size_t so_size)
{
    msgpipe_spawn_options d;

    if (so == NULL || so_size < sizeof(uint32_t))
        return;
    memset(&d, 0, sizeof(d));
    d.env = NULL;
    d.cwd = NULL;
    d.pipe_options = NULL;
    msgpipe__init_struct(so, so_size, &d, sizeof(d));
}

/* An environment entry the child may be given: "NAME=VALUE", NAME not
 * empty and not the variable msgpipe itself sets. */
static int msgpipe__env_ok(const char *e)
{
    const char *eq = strchr(e, '=');
    size_t n = strlen(MSGPIPE__PARENT_VAR);

    if (eq == NULL || eq == e)
        return 0;
    if ((size_t)(eq - e) == n && memcmp(e, MSGPIPE__PARENT_VAR, n) == 0)
        return 0;
    return 1;
}

int msgpipe_spawn(const char *const argv[], const msgpipe_spawn_options *so,
                  msgpipe **pipe, msgpipe_process **proc)
{
    msgpipe__spawn sp;
    const msgpipe_options *po = NULL;
    size_t i;
    int rc;

    if (pipe != NULL)
        *pipe = NULL;
    if (proc != NULL)
        *proc = NULL;
    if (argv == NULL || argv[0] == NULL || argv[0][0] == '\0' || pipe == NULL ||
        proc == NULL)
        return MSGPIPE_EINVAL;
    sp.argv = argv;
    sp.env = NULL;
    sp.cwd = NULL;
    if (so != NULL) {
        if (so->struct_size < sizeof(uint32_t) ||
            so->struct_size > MSGPIPE__SPAWN_SIZE_MAX)
            return MSGPIPE_EINVAL;
        if (MSGPIPE__SO_HAS(so, env))
            sp.env = so->env;
        if (MSGPIPE__SO_HAS(so, cwd))
            sp.cwd = so->cwd;
        if (MSGPIPE__SO_HAS(so, pipe_options))
            po = so->pipe_options;
    }
    if (sp.cwd != NULL && sp.cwd[0] == '\0')
        return MSGPIPE_EINVAL;
    for (i = 0; sp.env != NULL && sp.env[i] != NULL; i++)
        if (!msgpipe__env_ok(sp.env[i]))
            return MSGPIPE_EINVAL;
    rc = msgpipe__opts_get(po, &sp.po);
    if (rc != MSGPIPE_OK)
        return rc;
    return msgpipe__b_spawn(&sp, pipe, proc);
}

int msgpipe_from_parent(const msgpipe_options *opt, msgpipe **out)
{
    msgpipe__opts o;
    int rc;

    if (out == NULL)
        return MSGPIPE_EINVAL;
    *out = NULL;
    rc = msgpipe__opts_get(opt, &o);
    if (rc != MSGPIPE_OK)
        return rc;
    return msgpipe__b_from_parent(&o, out);
}

int msgpipe_process_wait(msgpipe_process *proc, int timeout_ms, int *exit_code)
{
    int dummy;

    if (exit_code == NULL)
        exit_code = &dummy;
    if (proc == NULL || !msgpipe__timeout_ok(timeout_ms))
        return MSGPIPE_EINVAL;
    return msgpipe__b_process_wait(proc, timeout_ms, exit_code);
}

int msgpipe_process_kill(msgpipe_process *proc)
{
    if (proc == NULL)
        return MSGPIPE_EINVAL;
    return msgpipe__b_process_kill(proc);
}

int64_t msgpipe_process_pid(const msgpipe_process *proc)
{
    if (proc == NULL)
        return -1;
    return msgpipe__b_process_pid(proc);
}

void msgpipe_process_close(msgpipe_process *proc)
{
    if (proc != NULL)
        msgpipe__b_process_close(proc);
}

int msgpipe_send_handles(msgpipe *p, const void *msg, size_t len,
                         const msgpipe_native *h, size_t nh, int timeout_ms)
{
    if (p == NULL || (msg == NULL && len > 0) || (h == NULL && nh > 0) ||
        nh > MSGPIPE_MAX_HANDLES || !msgpipe__timeout_ok(timeout_ms))
        return MSGPIPE_EINVAL;
    if (nh == 0)
        return msgpipe__b_send(p, msg, len, timeout_ms);
    return msgpipe__b_send_handles(p, msg, len, h, nh, timeout_ms);
}

int msgpipe_recv_handles(msgpipe *p, void *buf, size_t cap, size_t *len,
                         msgpipe_native *h, size_t hcap, size_t *nh,
                         int timeout_ms)
{
    if (len != NULL)
        *len = 0;
    if (nh != NULL)
        *nh = 0;
    if (p == NULL || len == NULL || nh == NULL || (buf == NULL && cap > 0) ||
        (h == NULL && hcap > 0) || !msgpipe__timeout_ok(timeout_ms))
        return MSGPIPE_EINVAL;
    return msgpipe__b_recv_handles(p, buf, cap, len, h, hcap, nh, timeout_ms);
}

/* ---- The poller ---------------------------------------------------------- */

int msgpipe_poller_new(msgpipe_poller **out)
{
    if (out == NULL)
        return MSGPIPE_EINVAL;
    *out = NULL;
    return msgpipe__b_poller_new(out);
}

/* One of p and srv, known event bits, no POLLOUT on a server. */
static int msgpipe__poller_item_ok(const msgpipe *p, const msgpipe_server *srv,
                                   unsigned events)
{
    if ((p == NULL) == (srv == NULL))
        return 0;
    if ((events & ~(MSGPIPE_POLLIN | MSGPIPE_POLLOUT)) != 0)
        return 0;
    return srv == NULL || (events & MSGPIPE_POLLOUT) == 0;
}

int msgpipe_poller_add(msgpipe_poller *pl, msgpipe *p, msgpipe_server *srv,
                       unsigned events, void *user)
{
    if (pl == NULL || !msgpipe__poller_item_ok(p, srv, events))
        return MSGPIPE_EINVAL;
    return msgpipe__b_poller_add(pl, p, srv, events, user);
}

int msgpipe_poller_modify(msgpipe_poller *pl, msgpipe *p, msgpipe_server *srv,
                          unsigned events, void *user)
{
    if (pl == NULL || !msgpipe__poller_item_ok(p, srv, events))
        return MSGPIPE_EINVAL;
    return msgpipe__b_poller_modify(pl, p, srv, events, user);
}

int msgpipe_poller_remove(msgpipe_poller *pl, msgpipe *p, msgpipe_server *srv)
{
    if (pl == NULL || !msgpipe__poller_item_ok(p, srv, 0))
        return MSGPIPE_EINVAL;
    return msgpipe__b_poller_remove(pl, p, srv);
}

int msgpipe_poller_wait(msgpipe_poller *pl, msgpipe_event *ev, size_t cap,
                        int timeout_ms)
{
    if (pl == NULL || ev == NULL || cap == 0 ||
        !msgpipe__timeout_ok(timeout_ms))
        return MSGPIPE_EINVAL;
    if (cap > INT_MAX)
        cap = INT_MAX;
    return msgpipe__b_poller_wait(pl, ev, cap, timeout_ms);
}

void msgpipe_poller_wake(msgpipe_poller *pl)
{
    if (pl != NULL)
        msgpipe__b_poller_wake(pl);
}

void msgpipe_poller_close(msgpipe_poller *pl)
{
    if (pl != NULL)
        msgpipe__b_poller_close(pl);
}
