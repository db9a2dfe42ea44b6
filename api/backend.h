/*
 * backend.h - the contract between msgpipe's neutral core and a backend.
 *
 * These are the functions a backend must implement.  The core (api/core.c)
 * checks every argument once - NULL handles and out-pointers, timeouts,
 * option values, names - and only then calls the backend, so a backend may
 * assume:
 *   - handles and out-pointers are non-NULL;
 *   - timeout_ms is MSGPIPE_INFINITE (-1) or >= 0;
 *   - a name has been parsed and fits the system's limit (msgpipe__name);
 *   - options are complete and valid (msgpipe__opts).
 * Every function returns MSGPIPE_OK or a negative MSGPIPE_E* code, records
 * the native error behind an OS failure with msgpipe__set_os_error(), and
 * never raises SIGPIPE.  Internal non-static names start with "msgpipe__".
 *
 * Each backend file compiles only on its platform; CMake picks one backend.
 */
#ifndef MSGPIPE_BACKEND_H
#define MSGPIPE_BACKEND_H

#include "msgpipe.h"

#include <stddef.h>
#include <stdint.h>

/* ---- What the core hands to a backend --------------------------------- */

/* Options after defaults are applied and values checked. */
typedef struct msgpipe__opts {
    uint64_t max_message; /* >= 1 */
    int access;           /* msgpipe_access */
    int pending;          /* >= 1 */
    int linger_ms;        /* -1 or >= 0 */
    /* The identity checks are done by the core (api/core.c) with
     * msgpipe__b_peer; a backend does not look at them. */
    int64_t require_server_uid; /* -1: none */
    int require_same_user;      /* 0 or 1 (the FIFO connect reads it too) */
    int64_t *allow_uids;        /* a copy owned by the server, or NULL */
    size_t n_allow_uids;
    /* Windows: the caller's SDDL string (UTF-8) or NULL; valid only during
     * msgpipe__b_listen, which must not keep it.  Never set on POSIX (the
     * core returns ENOTSUP first).  Connect ignores it. */
    const char *sddl;
    /* msgpipe_options.spin_us: 0 (no spin) to MSGPIPE__SPIN_US_MAX.  Each
     * backend keeps it per pipe and spins in its own waits. */
    int spin_us;
    /* authkey (Python's challenge-response, api/auth.c): a server's own
     * copy (freed by the core with allow_uids), or during
     * msgpipe__b_connect the caller's bytes; NULL for none.  no_md5:
     * refuse the HMAC-MD5 forms.  allow_unauthenticated: a tcp:// server
     * on an address other than loopback may start without an authkey. */
    uint8_t *authkey;
    size_t authkey_len;
    int no_md5;
    int allow_unauthenticated;
    /* A server with an authkey: its handshakes in progress (api/auth.c),
     * owned by the server, freed by the core. */
    struct msgpipe__auth *auth;
} msgpipe__opts;

#define MSGPIPE__SPIN_US_MAX 1000000

enum msgpipe__name_kind {
    MSGPIPE__NAME_PATH = 1,     /* a file system path (POSIX) */
    MSGPIPE__NAME_ABSTRACT = 2, /* Linux abstract namespace; sys[0] is '@' */
    MSGPIPE__NAME_WIN32 = 3,    /* \\.\pipe\NAME (UTF-8) */
    MSGPIPE__NAME_TCP = 4       /* tcp://HOST:PORT: sys is HOST, port */
};

/* Longest system name the core produces, in bytes, without the NUL. */
#define MSGPIPE__NAME_MAX 1024

/* A parsed name: sys is the system form (NUL-terminated), len its length. */
typedef struct msgpipe__name {
    int kind;
    size_t len;
    char sys[MSGPIPE__NAME_MAX + 1];
    /* MSGPIPE__NAME_TCP: the port (0-65535); sys is the host without the
     * brackets of an IPv6 literal, which is_ipv6 then marks. */
    int port;
    int is_ipv6;
} msgpipe__name;

/* What a backend tells the core about names. */
enum msgpipe__name_style { MSGPIPE__STYLE_POSIX = 1, MSGPIPE__STYLE_WIN32 = 2 };

typedef struct msgpipe__backend_info {
    const char *name;    /* msgpipe_backend() */
    int style;           /* msgpipe__name_style */
    size_t path_max;     /* longest system name accepted, without NUL */
    int abstract_names;  /* 1 if "@NAME" is supported */
    int default_pending; /* default for msgpipe_options.pending */
    int has_uids;        /* 1 if msgpipe__b_peer reports uids */
    int has_tcp;         /* 1 if tcp://HOST:PORT names work */
} msgpipe__backend_info;

/* ---- Memory ------------------------------------------------------------ */

/* Every allocation of the library goes through this table, so that tests
 * can make allocations fail or count them (api/core.c holds it; the C
 * library's functions by default). */
typedef struct msgpipe__allocator {
    void *(*malloc)(size_t n);
    void *(*calloc)(size_t n, size_t size);
    void *(*realloc)(void *p, size_t n);
    void (*free)(void *p);
} msgpipe__allocator;

extern msgpipe__allocator msgpipe__mem;

static inline void *msgpipe__malloc(size_t n)
{
    return msgpipe__mem.malloc(n);
}
static inline void *msgpipe__calloc(size_t n, size_t size)
{
    return msgpipe__mem.calloc(n, size);
}
static inline void *msgpipe__realloc(void *p, size_t n)
{
    return msgpipe__mem.realloc(p, n);
}
static inline void msgpipe__free(void *p)
{
    msgpipe__mem.free(p);
}

/* ---- Neutral helpers (api/core.c, api/names.c, api/frame.c) ----------- */

/* Deadlines: msgpipe__deadline turns a timeout (-1: none) into an absolute
 * msgpipe__now_ms() value (-1: none; timeout 0 gives 0, a deadline that has
 * passed, without reading the clock); msgpipe__remaining gives the timeout
 * left until it (-1: none, 0: passed). */
int64_t msgpipe__deadline(int timeout_ms);
int msgpipe__remaining(int64_t deadline);

/* Record the native error behind a failure, for msgpipe_last_os_error(). */
void msgpipe__set_os_error(int err);

/* Parse a user's name by the rules in msgpipe.h.  runtime_dir is the value
 * of XDG_RUNTIME_DIR (may be NULL); it is used for plain names on POSIX.
 * Pure function: no system calls.  Returns OK, EBADNAME, ENAMETOOLONG or
 * ENOTSUP. */
int msgpipe__name_parse(const char *name, const msgpipe__backend_info *bi,
                        const char *runtime_dir, msgpipe__name *out);

/* POSIX framing (Python multiprocessing.connection): a 4-byte big-endian
 * signed length, or -1 followed by an 8-byte big-endian length for messages
 * of 2^31 bytes or more.  MSGPIPE__FRAME_HDR_MAX is the longest header. */
#define MSGPIPE__FRAME_HDR_MAX 12

/* 8-byte big-endian integers (the long frame header; the FIFO transport's
 * records). */
void msgpipe__put_be64(uint8_t *b, uint64_t v);
uint64_t msgpipe__get_be64(const uint8_t *b);

/* Write the header for a message of len bytes into hdr; returns its size
 * (4 or 12). */
size_t msgpipe__frame_encode(uint8_t hdr[MSGPIPE__FRAME_HDR_MAX], uint64_t len);

/* Decode a header from the avail bytes at buf.  Returns 1 and sets *len and
 * *hdr_len when a whole header is there, 0 when more bytes are needed, or
 * MSGPIPE_EPROTO for a negative length other than -1 or an 8-byte length
 * of 2^63 or more. */
int msgpipe__frame_decode(const uint8_t *buf, size_t avail, uint64_t *len,
                          size_t *hdr_len);

/* ---- What a backend implements ---------------------------------------- */

extern const msgpipe__backend_info msgpipe__backend;

/* Milliseconds from a monotonic clock (arbitrary origin). */
int64_t msgpipe__now_ms(void);

/* Create a server on a parsed name.  Never blocks. */
int msgpipe__b_listen(const msgpipe__name *name, const msgpipe__opts *o,
                      msgpipe_server **out);

/* Wait up to timeout_ms for a client; ESHUTDOWN once shut down. */
int msgpipe__b_accept(msgpipe_server *srv, int timeout_ms, msgpipe **out);

/* msgpipe_accept() after its argument checks: msgpipe__b_accept, and with
 * allow_uids only the clients listed (api/core.c).  A backend's poll may
 * call it with timeout 0 to make a server's readiness exact. */
int msgpipe__accept_admitted(msgpipe_server *srv, int timeout_ms,
                             msgpipe **out);

/* Wake msgpipe__b_accept and make later accepts fail; any thread; idempotent.
 */
void msgpipe__b_server_shutdown(msgpipe_server *srv);

/* Remove the name and free the server; no accept may be running.  (The
 * core frees opts->allow_uids itself.) */
void msgpipe__b_server_close(msgpipe_server *srv);

/* The options the server was made with (its own copy). */
const msgpipe__opts *msgpipe__b_server_opts(msgpipe_server *srv);

/* Connect with a deadline (timeout 0: one attempt). */
int msgpipe__b_connect(const msgpipe__name *name, const msgpipe__opts *o,
                       int timeout_ms, msgpipe **out);

/* Send one message; EMSGSIZE above the pipe's max_message.  msg may be NULL
 * when len is 0. */
int msgpipe__b_send(msgpipe *p, const void *msg, size_t len, int timeout_ms);

/* Send n messages (each checked: data non-NULL when len > 0); *sent is
 * set, as msgpipe_send_batch documents. */
int msgpipe__b_send_batch(msgpipe *p, const msgpipe_msg *msgs, size_t n,
                          size_t *sent, int timeout_ms);

/* A msgpipe__b_send_batch for backends that send one message per call:
 * msgpipe__b_send for each, within the one timeout (api/core.c). */
int msgpipe__send_batch_each(msgpipe *p, const msgpipe_msg *msgs, size_t n,
                             size_t *sent, int timeout_ms);

/* Receive one message into buf; ENOBUFS keeps it queued; EMSGSIZE drops it.
 * buf may be NULL when cap is 0. */
int msgpipe__b_recv(msgpipe *p, void *buf, size_t cap, size_t *len,
                    int timeout_ms);

/* Receive one message into a buffer from malloc() of len + 1 bytes, the
 * last one zero. */
int msgpipe__b_recv_alloc(msgpipe *p, void **msg, size_t *len, int timeout_ms);

/* Peer process identity, as recorded by the system. */
int msgpipe__b_peer(msgpipe *p, msgpipe_peer_info *info);

/* The peer's user as text (msgpipe_peer_user); the core has checked the
 * arguments and set *len to 0.  Use msgpipe__put_text to hand it back. */
int msgpipe__b_peer_user(msgpipe *p, char *buf, size_t cap, size_t *len);

/* On a client: MSGPIPE_OK if its server runs as this process's user,
 * MSGPIPE_EACCES if not, or the error that kept it from telling. */
int msgpipe__b_same_user(msgpipe *p);

/* Copy the NUL-terminated text to buf as msgpipe_peer_user documents:
 * MSGPIPE_OK with *len its length, or ENOBUFS with *len the size needed
 * (with the NUL) and buf untouched (api/core.c). */
int msgpipe__put_text(const char *text, char *buf, size_t cap, size_t *len);

/* Graceful close (see msgpipe_close) and free. */
void msgpipe__b_close(msgpipe *p);

/* Wait for readiness as msgpipe_poll() documents.  The core has checked
 * the items (each is skipped, or has exactly one of pipe/server, events
 * within MSGPIPE_POLLIN|MSGPIPE_POLLOUT, no POLLOUT on a server) and
 * cleared every revents.  Returns the number of ready items (> 0),
 * ETIMEDOUT, or an error. */
int msgpipe__b_poll(msgpipe_pollitem *items, size_t n, int timeout_ms);

/* The handle an outside loop waits on; events is exactly one of
 * MSGPIPE_POLLIN / MSGPIPE_POLLOUT. */
int msgpipe__b_native_handle(msgpipe *p, unsigned events, msgpipe_native *out);
int msgpipe__b_server_native_handle(msgpipe_server *srv, msgpipe_native *out);

/* ---- Pairs, child processes, handles with messages --------------------- */

/* msgpipe_spawn()'s request after the core's checks: argv has at least
 * one entry and ends with NULL; env (or NULL) ends with NULL and each
 * entry is "NAME=VALUE" with a non-empty NAME other than MSGPIPE_PARENT;
 * all strings are the caller's and valid only during the call. */
typedef struct msgpipe__spawn {
    const char *const *argv;
    const char *const *env;
    const char *cwd;  /* or NULL */
    msgpipe__opts po; /* the parent's end */
} msgpipe__spawn;

/* The environment variable that names the child's end. */
#define MSGPIPE__PARENT_VAR "MSGPIPE_PARENT"

/* Two connected pipes (msgpipe_pair); on error both stay NULL. */
int msgpipe__b_pair(const msgpipe__opts *o, msgpipe **a, msgpipe **b);

/* Start a child with one end of a pair (msgpipe_spawn); on error nothing
 * is left running or open, and both stay NULL. */
int msgpipe__b_spawn(const msgpipe__spawn *sp, msgpipe **pipe,
                     msgpipe_process **proc);

/* The child's side (msgpipe_from_parent): read, check and wrap the value
 * of MSGPIPE__PARENT_VAR, then remove it from the environment. */
int msgpipe__b_from_parent(const msgpipe__opts *o, msgpipe **out);

/* msgpipe_process_*; proc is non-NULL, timeout_ms checked. */
int msgpipe__b_process_wait(msgpipe_process *proc, int timeout_ms,
                            int *exit_code);
int msgpipe__b_process_kill(msgpipe_process *proc);
int64_t msgpipe__b_process_pid(const msgpipe_process *proc);
void msgpipe__b_process_close(msgpipe_process *proc);

/* Send one message with 1..MSGPIPE_MAX_HANDLES handles (h non-NULL);
 * msgpipe_send_handles with nh 0 is msgpipe__b_send. */
int msgpipe__b_send_handles(msgpipe *p, const void *msg, size_t len,
                            const msgpipe_native *h, size_t nh, int timeout_ms);

/* Receive one message and its handles (msgpipe_recv_handles); the core
 * has set *len and *nh to 0.  h may be NULL when hcap is 0: then every
 * handle that came is closed and the result is EHANDLES, as
 * msgpipe__b_recv must also do. */
int msgpipe__b_recv_handles(msgpipe *p, void *buf, size_t cap, size_t *len,
                            msgpipe_native *h, size_t hcap, size_t *nh,
                            int timeout_ms);

/* ---- TCP and authentication -------------------------------------------- */

/* The text msgpipe_server_address / msgpipe_peer_address give back:
 * "tcp://HOST:PORT" of a TCP server or pipe's peer ("tcp://[::1]:80"
 * for IPv6).  ENOTSUP for what is not TCP.  The core has checked the
 * arguments and set *len to 0; hand the text back with msgpipe__put_text. */
int msgpipe__b_server_address(msgpipe_server *srv, char *buf, size_t cap,
                              size_t *len);
int msgpipe__b_peer_address(msgpipe *p, char *buf, size_t cap, size_t *len);

/* Cryptography from the system's libraries (posix/posix_crypto.c with
 * OpenSSL's libcrypto, win32/win32_crypto.c with BCrypt).
 * msgpipe__b_crypto_ok: 1 if HMAC is available (else authkey is ENOTSUP).
 * msgpipe__b_hmac: HMAC of data with key; digest is a name Python's
 * multiprocessing.connection allows ("md5", "sha256", "sha384",
 * "sha3_256", "sha3_384"); out gets *out_len (<= 64) bytes; ENOTSUP for a
 * digest the library lacks.  msgpipe__b_random: n bytes from the system's
 * random number generator (getrandom, /dev/urandom, BCryptGenRandom). */
#define MSGPIPE__HMAC_MAX 64
int msgpipe__b_crypto_ok(void);
int msgpipe__b_hmac(const char *digest, const uint8_t *key, size_t key_len,
                    const uint8_t *data, size_t n,
                    uint8_t out[MSGPIPE__HMAC_MAX], size_t *out_len);
int msgpipe__b_random(uint8_t *buf, size_t n);

/* For the server side of the handshake (api/auth.c): wait until the
 * deadline for srv to have a connection for msgpipe__b_accept (or to be
 * shut down: ESHUTDOWN), or for one of pipes[0..n) to have input.
 * Accepts and receives nothing.  OK means "look again", not a promise. */
int msgpipe__b_auth_wait(msgpipe_server *srv, msgpipe *const *pipes, size_t n,
                         int64_t deadline);

/* So that msgpipe_poll, the poller and the server's native handle wake up
 * for a handshake's messages too: msgpipe__b_auth_setup prepares a server
 * with an authkey (after msgpipe__b_listen; OK or an error, then the core
 * closes the server), and msgpipe__b_auth_watch adds (on 1) or removes (on
 * 0) a pipe in a handshake to what the server's readiness waits on.  A
 * backend may do nothing (readiness then wakes for new connections only;
 * docs/tcp.md). */
int msgpipe__b_auth_setup(msgpipe_server *srv);
void msgpipe__b_auth_watch(msgpipe_server *srv, msgpipe *p, int on);

/* api/auth.c.  msgpipe__auth_client: the client's side (answer, then
 * deliver) on a new pipe, within the deadline; OK, EACCES (a key does not
 * match), EPROTO, ETIMEDOUT, ECLOSED, ENOTSUP.  msgpipe__auth_accept: an
 * accept on a server with an authkey: new connections are accepted and
 * their handshakes run side by side, each for at most
 * MSGPIPE__AUTH_LIMIT_MS; the first that completes is returned; one
 * whose key does not match is closed and reported as EACCES.
 * msgpipe__auth_probe: msgpipe_poll's question, "would an accept with
 * timeout 0 return at once?", advancing the handshakes without waiting.
 * msgpipe__auth_free: close every connection still in a handshake. */
#define MSGPIPE__AUTH_LIMIT_MS 10000
int msgpipe__auth_client(msgpipe *p, const msgpipe__opts *o, int64_t deadline);
int msgpipe__auth_accept(msgpipe_server *srv, int timeout_ms, msgpipe **out);
int msgpipe__auth_probe(msgpipe_server *srv);
struct msgpipe__auth *msgpipe__auth_new(void);
void msgpipe__auth_free(struct msgpipe__auth *a);

/* The accept of msgpipe_accept() without authentication: msgpipe__b_accept
 * and the allow_uids check (api/core.c). */
int msgpipe__accept_plain(msgpipe_server *srv, int timeout_ms, msgpipe **out);

/* ---- The poller ----------------------------------------------------------
 * msgpipe_poller_*; the core has checked pl (non-NULL), that exactly one
 * of p and srv is given, the event bits (no POLLOUT on a server), ev,
 * cap (1..INT_MAX) and the timeout. */
int msgpipe__b_poller_new(msgpipe_poller **out);
int msgpipe__b_poller_add(msgpipe_poller *pl, msgpipe *p, msgpipe_server *srv,
                          unsigned events, void *user);
int msgpipe__b_poller_modify(msgpipe_poller *pl, msgpipe *p,
                             msgpipe_server *srv, unsigned events, void *user);
int msgpipe__b_poller_remove(msgpipe_poller *pl, msgpipe *p,
                             msgpipe_server *srv);
int msgpipe__b_poller_wait(msgpipe_poller *pl, msgpipe_event *ev, size_t cap,
                           int timeout_ms);
void msgpipe__b_poller_wake(msgpipe_poller *pl);
void msgpipe__b_poller_close(msgpipe_poller *pl);

#endif /* MSGPIPE_BACKEND_H */
