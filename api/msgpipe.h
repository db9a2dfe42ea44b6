/*
 * msgpipe.h - one message-pipe API for local inter-process communication.
 *
 * This is the only header a msgpipe user includes.  The same program compiles
 * against either backend, chosen when the library is built:
 *
 *   "win32-pipe"   Windows named pipes in message mode (\\.\pipe\NAME).
 *   "posix-socket" Unix domain stream sockets with a length prefix on every
 *                  message (Linux, the BSDs, macOS).
 *   "posix-fifo"   FIFOs (mkfifo) with the same framing, for systems and
 *                  sandboxes without AF_UNIX sockets
 *                  (MSGPIPE_POSIX_TRANSPORT=fifo).
 *
 * Beyond one machine, names "tcp://HOST:PORT" carry the same pipes over TCP
 * (both systems: POSIX sockets, either transport, and Winsock), and
 * msgpipe_options.authkey makes both ends prove a shared secret first
 * (every backend) - both exactly as Python's multiprocessing.connection
 * does them (docs/tcp.md).
 *
 * Model
 * -----
 * A server listens on a name.  Each msgpipe_accept() yields one pipe: a duplex,
 * ordered, reliable channel of messages with one client.  A client calls
 * msgpipe_connect() and gets a pipe.  A message is a byte string of 0 to
 * max_message bytes; one send is one message and one receive returns exactly
 * one whole message - never merged, split or silently truncated.
 *
 * Return values
 * -------------
 * Every call that can fail returns MSGPIPE_OK (0) or one negative
 * MSGPIPE_E* code from the table below.  msgpipe_strerror() describes a code;
 * msgpipe_last_os_error() gives the operating-system error behind the last
 * failure in the calling thread, for diagnostics.
 *
 * Timeouts
 * --------
 * Every call that can block takes timeout_ms: MSGPIPE_INFINITE (-1) waits
 * forever, MSGPIPE_NOWAIT (0) does not wait, a positive value waits at most
 * that many milliseconds.  Any other negative value is MSGPIPE_EINVAL.  A
 * call that returns MSGPIPE_ETIMEDOUT has lost nothing and may be retried.
 *
 * Threads
 * -------
 * Distinct handles may be used from distinct threads freely.  On one pipe,
 * one thread may send while another receives; any other concurrent use of
 * one pipe (two senders, two receivers, close while in use) must be
 * serialised by the caller.  msgpipe_server_shutdown() is the one call that
 * may be made on a server while another thread is inside msgpipe_accept().
 * A handle may be used by a thread other than the one that made it, and
 * the thread that made a call may exit afterwards: nothing a call leaves
 * in progress (a committed message still going out, a server waiting for
 * clients) depends on the life of the thread that made it.
 *
 * Signals
 * -------
 * msgpipe never raises SIGPIPE and never changes signal dispositions.  A
 * signal that interrupts a blocking call is handled inside (the call goes on
 * with the time left); it is not reported as an error.
 */
#ifndef MSGPIPE_H
#define MSGPIPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* MSGPIPE_EXTERN marks every public function.  Define MSGPIPE_STATIC when
 * linking the static library (required on Windows, where it turns off
 * dllimport; elsewhere it keeps msgpipe's functions from being exported
 * again by a shared library of yours that links the static one). */
#if defined(MSGPIPE_STATIC)
#define MSGPIPE_EXTERN
#elif defined(_WIN32) || defined(__CYGWIN__)
#if defined(MSGPIPE_BUILD_SHARED)
#define MSGPIPE_EXTERN __declspec(dllexport)
#else
#define MSGPIPE_EXTERN __declspec(dllimport)
#endif
#elif defined(__GNUC__) && __GNUC__ >= 4
#define MSGPIPE_EXTERN __attribute__((visibility("default")))
#else
#define MSGPIPE_EXTERN
#endif

/* ---- Version ---------------------------------------------------------- */

#define MSGPIPE_VERSION_MAJOR 0
#define MSGPIPE_VERSION_MINOR 1
#define MSGPIPE_VERSION_PATCH 0
/* One number, MAJOR * 10000 + MINOR * 100 + PATCH, for compile-time tests. */
#define MSGPIPE_VERSION                                                        \
    (MSGPIPE_VERSION_MAJOR * 10000 + MSGPIPE_VERSION_MINOR * 100 +             \
     MSGPIPE_VERSION_PATCH)

/* msgpipe_version - the MSGPIPE_VERSION of the library actually linked
 * (which may differ from the header a program was compiled with). */
MSGPIPE_EXTERN int msgpipe_version(void);

/* msgpipe_version_string - the same as "MAJOR.MINOR.PATCH"; a static string. */
MSGPIPE_EXTERN const char *msgpipe_version_string(void);

/* msgpipe_backend - the backend this library was built with:
 * "posix-socket", "posix-fifo" or "win32-pipe".  A static string. */
MSGPIPE_EXTERN const char *msgpipe_backend(void);

/* ---- Errors ----------------------------------------------------------- */

/* XX(NAME, value, description).  One table generates the enum, the strings
 * of msgpipe_strerror() and the names of msgpipe_errname(); values never
 * change once released. */
#define MSGPIPE_ERRNO_MAP(XX)                                                  \
    XX(OK, 0, "success")                                                       \
    XX(EINVAL, -1, "invalid argument")                                         \
    XX(EBADNAME, -2, "invalid pipe name")                                      \
    XX(ENAMETOOLONG, -3, "pipe name too long for this system")                 \
    XX(ENOTSUP, -4, "not supported on this system")                            \
    XX(ENOMEM, -5, "out of memory")                                            \
    XX(ETIMEDOUT, -6, "timed out")                                             \
    XX(ENOENT, -7, "not found: no server on that name, or no such program")    \
    XX(EBUSY, -8, "server busy: every pending connection slot is taken")       \
    XX(EADDRINUSE, -9, "name already used by a live server")                   \
    XX(EACCES, -10, "access denied")                                           \
    XX(ECLOSED, -11, "pipe closed by the peer")                                \
    XX(ENOBUFS, -12, "buffer too small for the next message")                  \
    XX(EMSGSIZE, -13, "message larger than max_message")                       \
    XX(ESHUTDOWN, -14, "server shut down")                                     \
    XX(EPROTO, -15, "protocol error: malformed data from the peer")            \
    XX(EMFILE, -16, "too many open files")                                     \
    XX(EIO, -17, "system error (see msgpipe_last_os_error)")                   \
    XX(EHANDLES, -18, "message received; handles that came with it were closed")

typedef enum msgpipe_errno {
#define MSGPIPE_ERRNO_ENUM_(name, value, text) MSGPIPE_##name = (value),
    MSGPIPE_ERRNO_MAP(MSGPIPE_ERRNO_ENUM_)
#undef MSGPIPE_ERRNO_ENUM_
        MSGPIPE_ERRNO_LAST_ = -19
} msgpipe_errno;

/* msgpipe_strerror - a one-line English description of an error code.
 * Never NULL; an unknown code gives "unknown msgpipe error".  The string is
 * static: do not free it.  Thread-safe. */
MSGPIPE_EXTERN const char *msgpipe_strerror(int err);

/* msgpipe_errname - the code's name without prefix ("ETIMEDOUT", "OK");
 * "UNKNOWN" for an unknown code.  Static string.  Thread-safe. */
MSGPIPE_EXTERN const char *msgpipe_errname(int err);

/* msgpipe_last_os_error - the native error (errno on POSIX, GetLastError()
 * on Windows) behind the last msgpipe call in this thread that failed with
 * an operating-system error, or 0 if there was none.  Kept per thread. */
MSGPIPE_EXTERN int msgpipe_last_os_error(void);

/* ---- Options ---------------------------------------------------------- */

#define MSGPIPE_INFINITE (-1)
#define MSGPIPE_NOWAIT 0

/* Default max_message: 64 MiB. */
#define MSGPIPE_DEFAULT_MAX_MESSAGE ((uint64_t)64 * 1024 * 1024)

/* Who may connect to a server (msgpipe_options.access). */
typedef enum msgpipe_access {
    MSGPIPE_ACCESS_OWNER = 0, /* the server's user only (default)       */
    MSGPIPE_ACCESS_GROUP = 1, /* also the server's group (POSIX: 0660)   */
    MSGPIPE_ACCESS_WORLD = 2  /* every local user (POSIX: 0666)          */
} msgpipe_access;

/*
 * msgpipe_options - settings for msgpipe_listen() and msgpipe_connect().
 *
 * Always initialise with msgpipe_options_init() before setting fields: it
 * records the size of the struct this program was compiled with, so a newer
 * library with more fields reads only the fields this program knows and uses
 * its defaults for the rest.  Fields are only ever added at the end.
 */
typedef struct msgpipe_options {
    /* Set by msgpipe_options_init(); do not change. */
    uint32_t struct_size;
    /* Receive limit for each pipe made with these options: a larger
     * incoming message is discarded and its receive returns
     * MSGPIPE_EMSGSIZE.  Default MSGPIPE_DEFAULT_MAX_MESSAGE; 0 means the
     * default.  Also the largest message msgpipe_send() accepts. */
    uint64_t max_message;
    /* Server only: who may connect (msgpipe_access).  Default OWNER. */
    int access;
    /* Server only: how many connections may wait for msgpipe_accept()
     * (POSIX listen backlog; Windows pending pipe instances, at most 63).
     * Default 16 (POSIX) or 4 (Windows); 0 means the default.  The system
     * may round it: Linux admits one connection more (the kernel's backlog
     * + 1) and caps it at net.core.somaxconn.  The FIFO transport ignores
     * it (its queue is the server's FIFO). */
    int pending;
    /* msgpipe_close(): how long to wait, in ms, to finish writing a message
     * that a timed-out send had committed but not finished (see
     * msgpipe_send).  Default 5000; -1 forever; 0 do not wait (the message
     * is then cut off: a msgpipe peer receives none of it, then
     * MSGPIPE_ECLOSED; on Windows a plain reader that had read part of it
     * sees the rest missing). */
    int linger_ms;
    /* Server, POSIX only: admit only clients whose effective user id is one
     * of these n_allow_uids ids, checked with the peer credentials when a
     * client is accepted - defence in depth behind the file mode.  A client
     * not listed is disconnected (it sees MSGPIPE_ECLOSED) and
     * msgpipe_accept() goes on waiting.  The array is copied by
     * msgpipe_listen().  Default NULL/0: no such check.  Windows:
     * MSGPIPE_ENOTSUP when set. */
    const int64_t *allow_uids;
    size_t n_allow_uids;
    /* Client, POSIX only: the server must run as this effective user id,
     * checked with the peer credentials before msgpipe_connect() returns
     * (MSGPIPE_EACCES otherwise; nothing has been sent).  With the FIFO
     * transport, connect then waits for the server to accept, and the
     * server's FIFO must belong to that user.  Default -1: no check.
     * Windows: MSGPIPE_ENOTSUP when set. */
    int64_t require_server_uid;
    /* Server, Windows only: the security descriptor of the server's pipe
     * as an SDDL string (UTF-8), e.g. "D:P(A;;GA;;;AU)(A;;GA;;;SY)" to
     * admit every authenticated user, in place of the DACL that access
     * would give.  It is parsed by msgpipe_listen()
     * (ConvertStringSecurityDescriptorToSecurityDescriptorW): MSGPIPE_EINVAL
     * if it does not parse, msgpipe_last_os_error() then says why; and it
     * applies to every instance of the pipe for the server's life.  The
     * string is not kept: it may be freed once msgpipe_listen() returns.
     * With access other than MSGPIPE_ACCESS_OWNER it is MSGPIPE_EINVAL
     * (the two would contradict each other).  msgpipe_connect() asks for
     * read and write without FILE_CREATE_PIPE_INSTANCE (0x0012019B), so
     * grant that or GA to those who may connect (docs/windows.md).
     * Default NULL: the DACL of access.  POSIX: MSGPIPE_ENOTSUP at
     * msgpipe_listen() when set (nothing is created).  msgpipe_connect()
     * ignores it. */
    const char *sddl;
    /* Client: the server must run as the calling user, checked before
     * msgpipe_connect() returns and before anything is sent
     * (MSGPIPE_EACCES otherwise: the pipe is closed and nothing was sent;
     * a squatter that took the name first is refused so).  POSIX: the
     * server's effective user id, from the peer credentials, must equal
     * geteuid(); with the FIFO transport the server's FIFO must also
     * belong to this user, and connect waits for the server to accept (as
     * with require_server_uid).  Windows: the owner of the server's pipe
     * (GetSecurityInfo) must be the user SID of this process's token - the
     * check of .NET's PipeOptions.CurrentUserOnly; a msgpipe server makes
     * its user the owner, but with an sddl that names no owner ("O:") the
     * owner is Windows's default, which for an elevated administrator is
     * the Administrators group, and then this check refuses it.  0 (the
     * default) makes no check, 1 this one; other values are
     * MSGPIPE_EINVAL.  A server ignores it. */
    int require_same_user;
    /* Spin before blocking, in microseconds: 0 (the default) never spins.
     * A receive that finds no message polls the pipe without blocking
     * (POSIX: non-blocking reads; Windows: a look at its pending
     * zero-byte read) for up to spin_us before it blocks, and a send that
     * must wait for room in the pipe likewise polls for room; what arrives
     * during the spin is taken at once, without the system's wake-up of a
     * blocked thread (tens of microseconds on some virtual machines).
     * Each time a call would block it spins again, for at most spin_us.
     * It never spins with timeout 0, nor when less than spin_us of the
     * timeout is left: the timeout is kept.  The end of the pipe, or an
     * error, ends the spin as it would the wait.  msgpipe_poll,
     * msgpipe_poller_wait and msgpipe_close never spin.
     * Cost: a spinning thread keeps its CPU busy for up to spin_us per
     * wait (it shows as the process's CPU time, user and system), so set
     * it only on pipes whose peer answers within about that time, and only
     * with a CPU to spare for each spinning thread.  Between its looks it
     * yields the CPU (sched_yield, SwitchToThread), so a peer or another
     * thread that shares the CPU runs instead, and a spin with both peers
     * on one otherwise idle CPU costs little against blocking
     * (docs/performance.md, "Spinning").  On a CPU that other busy threads
     * or processes share, each yield may give them the CPU for a time
     * slice (milliseconds), where a blocked receive would have been woken
     * at once: do not spin there.  Applies to every pipe made with these
     * options (msgpipe_connect, the pipes a server accepts,
     * msgpipe_pair, msgpipe_spawn's pipe_options, msgpipe_from_parent),
     * tcp:// pipes included.
     * 0 to 1000000 (one second); other values are MSGPIPE_EINVAL.  A
     * 64-bit field so that the struct grows with it (docs/decisions.md). */
    int64_t spin_us;
    /* Authentication with a shared secret, exactly Python's
     * multiprocessing.connection authkey (docs/tcp.md): authkey_len bytes
     * at authkey (any bytes; Python's authkey=b"..."), on any transport.
     * A server delivers a challenge, then answers the client's; a client
     * answers, then delivers: each proves it knows the key without
     * sending it (HMAC-SHA256 over a "{sha256}" + 40 random bytes
     * challenge; the 16-byte HMAC-MD5 reply and the 20-byte challenge of
     * Python 3.11 and older are accepted and answered unless
     * authkey_no_md5 is set).  It runs within msgpipe_connect()'s timeout
     * (so a client needs a timeout other than 0) and inside
     * msgpipe_accept().  A key that does not match is MSGPIPE_EACCES on
     * both sides, and nothing else passes.  It authenticates; it does not
     * encrypt.  The key is copied by msgpipe_listen() (a client uses it
     * only during msgpipe_connect()).  Ignored by msgpipe_pair() and
     * msgpipe_spawn().  The HMAC is BCrypt's on Windows and OpenSSL's
     * libcrypto on POSIX; a POSIX build without OpenSSL gives
     * MSGPIPE_ENOTSUP for any authkey.  Default
     * NULL/0: no authentication; authkey_len 0 with a non-NULL authkey is
     * an empty key, as Python's b"". */
    const void *authkey;
    size_t authkey_len;
    /* 1: refuse the HMAC-MD5 forms of Python 3.11 and older (a peer that
     * offers only them gets MSGPIPE_EACCES); 0 (default) accepts them.
     * Other values are MSGPIPE_EINVAL. */
    int authkey_no_md5;
    /* Server, tcp:// only: 1 lets a server listen on an address other
     * than loopback (127.0.0.0/8, ::1) without an authkey.  0 (the
     * default) makes that msgpipe_listen() fail with MSGPIPE_EINVAL, so
     * that a program never opens an unauthenticated port to the network
     * by mistake.  Other values are MSGPIPE_EINVAL. */
    int allow_unauthenticated;
} msgpipe_options;

/* msgpipe_options_init_size - fill *opt with the defaults; opt_size is the
 * size of the caller's struct.  Use the msgpipe_options_init() macro. */
MSGPIPE_EXTERN void msgpipe_options_init_size(msgpipe_options *opt,
                                              size_t opt_size);

/* msgpipe_options_init - set every field of *opt to its default. */
#define msgpipe_options_init(opt)                                              \
    msgpipe_options_init_size((opt), sizeof(msgpipe_options))

/* ---- Handles ---------------------------------------------------------- */

typedef struct msgpipe_server msgpipe_server; /* a listening name */
typedef struct msgpipe msgpipe;               /* one connected pipe */

/*
 * Names.  One portable name works on both systems:
 *
 *   "ABC" (no '/' or '\')   Windows: \\.\pipe\ABC
 *                           POSIX:   $XDG_RUNTIME_DIR/ABC when that variable
 *                                    is set to an absolute path, else /tmp/ABC
 *   a path with '/'         POSIX: used as given ("./x.sock", "/run/a/s");
 *                           Windows: MSGPIPE_EBADNAME
 *   "\\.\pipe\ABC"          Windows: used as given; POSIX: MSGPIPE_EBADNAME
 *   "@ABC"                  Linux: the abstract socket namespace;
 *                           elsewhere MSGPIPE_ENOTSUP
 *   "tcp://HOST:PORT"       TCP (docs/tcp.md): HOST a host name, an IPv4
 *                           address or an IPv6 address in brackets
 *                           ("tcp://[::1]:5000"); PORT 0-65535, 0 for a
 *                           server to pick one (msgpipe_server_address).
 *                           Both systems (Windows: Winsock).
 *                           (A POSIX path that starts with "tcp://" is
 *                           reached as "./tcp://...".)
 *
 * A name that is NULL, empty, "." or "..", or (POSIX) a path ending in '/',
 * or (Windows) a "\\.\pipe\" name with an empty, "." or ".." part
 * between its separators ("\\.\pipe\x\", "\\.\pipe\.") is
 * MSGPIPE_EBADNAME; one whose system form does not fit the system's
 * limit (sun_path with its NUL on POSIX; 256 bytes of UTF-8 on Windows, a
 * little stricter than Windows' 256 UTF-16 characters for non-ASCII names)
 * is MSGPIPE_ENAMETOOLONG.  Both are found before any system call: a name
 * is never truncated.  Names are UTF-8.
 */

/*
 * msgpipe_listen - start a server on `name`.
 *
 * opt may be NULL for the defaults.  Does not block.  On success *out is a
 * new server owned by the caller (release it with msgpipe_server_close()).
 *
 * POSIX: the socket file is created with mode 0600 (0660/0666 with wider
 * access).  A socket file left by a dead server is removed, but only after a
 * connect to it is refused; a regular file in the way is never removed.
 * For a path name the server also holds NAME.lock beside it (flock) for its
 * life, so that of two servers starting on one name at the same moment
 * exactly one succeeds; the lock file is removed on close.
 *
 * Windows: the pipe's DACL is that of opt->access, or opt->sddl when set.
 *
 * tcp://HOST:PORT (docs/tcp.md): the socket is bound to the first address
 * HOST resolves to and listens with opt->pending; access does not apply
 * (anyone who can reach the port can connect: use an authkey).  A server
 * on an address other than loopback needs opt->authkey, or
 * opt->allow_unauthenticated: otherwise MSGPIPE_EINVAL, nothing bound
 * (msgpipe_last_os_error() is EACCES, to tell it from a bad option).
 *
 * Errors: EINVAL (out NULL, bad option; sddl does not parse, or is set with
 * access other than OWNER; a tcp:// address beyond loopback without an
 * authkey), EBADNAME (also: a tcp:// host that does not resolve, or is not
 * an address of this machine), ENAMETOOLONG, ENOTSUP (also: sddl set on
 * POSIX; allow_uids on tcp://; tcp:// or authkey where this build has
 * none), EADDRINUSE (a live server has the name or the port, or a
 * non-socket file is there), EACCES, ENOMEM, EMFILE, EIO.
 */
MSGPIPE_EXTERN int msgpipe_listen(const char *name, const msgpipe_options *opt,
                                  msgpipe_server **out);

/*
 * msgpipe_accept - wait for the next client and return its pipe.
 *
 * Blocks up to timeout_ms.  On success *out is a new pipe owned by the
 * caller (release it with msgpipe_close()).  Only one thread at a time may
 * be in msgpipe_accept() on one server.  A client that connected, sent
 * and closed before it was accepted is handed out like any other: its
 * receives return what it sent, then MSGPIPE_ECLOSED.  (With the POSIX
 * FIFO transport such a client's close waits for the acceptance for at
 * most its linger_ms: docs/fifo.md.)
 *
 * With an authkey, the handshakes of new clients run inside this call,
 * many side by side, each for at most 10 seconds (docs/tcp.md): the first
 * client to complete its handshake is returned, and a client whose key
 * does not match is closed and reported, once, as MSGPIPE_EACCES - call
 * msgpipe_accept() again.  A client that stalls or sends garbage is
 * dropped without holding the others.
 *
 * Errors: EINVAL, ETIMEDOUT (no client came; nothing lost), ESHUTDOWN
 * (msgpipe_server_shutdown() was called, before or during the wait),
 * EACCES (authkey: a client failed the handshake; accept again), EMFILE,
 * ENOMEM, EIO.
 */
MSGPIPE_EXTERN int msgpipe_accept(msgpipe_server *srv, int timeout_ms,
                                  msgpipe **out);

/*
 * msgpipe_server_shutdown - stop a server from any thread.
 *
 * A thread blocked in msgpipe_accept() on srv returns MSGPIPE_ESHUTDOWN
 * promptly, and so does every later msgpipe_accept().  New clients are no
 * longer accepted (they may still be queued until msgpipe_server_close()).
 * Pipes already accepted are not affected.  Does not block; thread-safe and
 * safe to call from a signal handler (POSIX: one write() to a pipe; Windows:
 * SetEvent() and PostQueuedCompletionStatus()); calling it again does
 * nothing.  srv stays valid until
 * msgpipe_server_close().
 */
MSGPIPE_EXTERN void msgpipe_server_shutdown(msgpipe_server *srv);

/*
 * msgpipe_server_close - release a server.
 *
 * Removes its name (POSIX: the socket file, if it is still the one this
 * server made), refuses clients still waiting, and frees srv.  Pipes already
 * accepted stay open.  No thread may be inside msgpipe_accept() on srv: call
 * msgpipe_server_shutdown() and join that thread first.  NULL is ignored.
 *
 * Windows difference: the system keeps a pipe name while any instance of
 * it is open, and every accepted pipe is one.  So while pipes this server
 * accepted are still open the name stays taken: msgpipe_connect() with
 * timeout 0 returns MSGPIPE_EBUSY (not ENOENT), with a timeout it waits
 * (then ETIMEDOUT), and msgpipe_listen() on the name returns
 * MSGPIPE_EADDRINUSE.  Once the last of them is closed the name is free,
 * as it is at once on POSIX.
 */
MSGPIPE_EXTERN void msgpipe_server_close(msgpipe_server *srv);

/*
 * msgpipe_connect - connect to the server listening on `name`.
 *
 * opt may be NULL for the defaults (a client uses max_message, linger_ms,
 * require_server_uid and require_same_user).  With timeout_ms 0 it makes one
 * attempt: ENOENT if no server listens there, EBUSY if the server has no free
 * pending slot.  Otherwise it waits, retrying, for a server to appear and to
 * have room, up to timeout_ms; then ETIMEDOUT.  On success *out is a new pipe
 * owned by the caller (release it with msgpipe_close()).
 *
 * tcp://HOST:PORT: every address HOST resolves to is tried, each with an
 * equal share of the time left (the lookup itself, getaddrinfo(), has no
 * timeout); a refused connection counts as no server yet.  Timeout 0
 * makes one attempt, which over TCP can seldom finish at once.
 *
 * With opt->authkey the handshake runs after the connection is made and
 * within the same timeout; the pipe is returned only once both sides have
 * proved the key (docs/tcp.md).
 *
 * Windows: EPROTO means the pipe on that name is not a message pipe - a
 * byte-type pipe (PIPE_TYPE_BYTE), as libuv, Node.js and .NET's byte mode
 * make them - so no msgpipe server is there.  It is returned at once,
 * without retrying; msgpipe_strerror() gives the code's generic "protocol
 * error" text and msgpipe_last_os_error() the system's error.
 *
 * Errors: EINVAL, EBADNAME, ENAMETOOLONG, ENOTSUP (also: tcp:// or authkey
 * where this build has none; require_server_uid or require_same_user on
 * tcp://), ENOENT (also: a tcp:// host that does not resolve), EBUSY,
 * ETIMEDOUT (also: the authkey handshake did not finish in time),
 * EACCES (the server does not admit this user, or does not run as the
 * user require_server_uid or require_same_user asks for: then the pipe
 * is closed and nothing was sent; or the authkey does not match),
 * ECLOSED (FIFO transport with require_server_uid or require_same_user:
 * the server closed before accepting; authkey: the server closed during
 * the handshake), EPROTO (Windows: not a message pipe; FIFO transport
 * with either: a malformed answer; authkey: a malformed handshake),
 * EMFILE, ENOMEM, EIO.
 */
MSGPIPE_EXTERN int msgpipe_connect(const char *name, const msgpipe_options *opt,
                                   int timeout_ms, msgpipe **out);

/*
 * msgpipe_send - send one message of len bytes (len may be 0).
 *
 * Blocks up to timeout_ms while the peer is not reading.  The bytes are
 * copied or written before it returns; msg stays the caller's.  Returns
 * MSGPIPE_OK once the message is committed: it will reach the peer whole,
 * ahead of any later message, even if the pipe is closed right after (see
 * msgpipe_close).  On ETIMEDOUT nothing of this message was sent - the peer
 * never sees any of it - and the call may be retried.
 *
 * A message that has started to go out is never taken back, because the
 * peer may already have read part of it: if the time runs out then, the
 * call returns MSGPIPE_OK and the rest goes out later, ahead of anything
 * else.  So ETIMEDOUT means the time ran out before this message could
 * start: the pipe had no room at all (POSIX), or the rest of an earlier
 * committed message was still going out.
 *   POSIX: the rest is kept inside the pipe and goes out as the pipe is
 *   used: during the next msgpipe_send(), while any receive or
 *   msgpipe_poll() on the pipe waits, and in msgpipe_close() (for at most
 *   linger_ms).
 *   Windows: the system finishes the write by itself, from a copy msgpipe
 *   keeps, as the peer reads - also after the thread that sent it has
 *   exited; the next msgpipe_send() first waits for it (within its own
 *   timeout), and msgpipe_close() for at most linger_ms.  So a send with a
 *   finite timeout copies the message (one with MSGPIPE_INFINITE does
 *   not), and one with timeout 0 commits a message whenever no earlier one
 *   is still going out.
 *
 * Errors: EINVAL (p NULL, msg NULL with len > 0), EMSGSIZE (len larger than
 * the pipe's max_message), ETIMEDOUT, ECLOSED (the peer has gone), ENOMEM,
 * EIO.
 */
MSGPIPE_EXTERN int msgpipe_send(msgpipe *p, const void *msg, size_t len,
                                int timeout_ms);

/* One message for msgpipe_send_batch(). */
typedef struct msgpipe_msg {
    const void *data; /* may be NULL when len is 0 */
    size_t len;
} msgpipe_msg;

/*
 * msgpipe_send_batch - send n messages, in order, as n msgpipe_send() calls
 * would, in as few system calls as the backend allows (POSIX: header and
 * payload of up to 128 messages in one call; Windows: one WriteFile each,
 * since a message-mode write is one message).
 *
 * Blocks up to timeout_ms for the whole batch.  *sent (sent may be NULL)
 * is set to how many messages were committed: they reach the peer, in
 * order, exactly as if sent one by one.  Returns MSGPIPE_OK when all n
 * were sent.  MSGPIPE_ETIMEDOUT means the time ran out after *sent of them
 * (possibly 0): the rest were not sent; retry with msgs + *sent.  The
 * messages stay the caller's.  For many small messages this is much faster
 * than msgpipe_send() in a loop; the receiver still receives them singly.
 *
 * Errors: EINVAL (p NULL, msgs NULL with n > 0, a message with data NULL
 * and len > 0, a bad timeout), EMSGSIZE (a message larger than
 * max_message: checked first, nothing sent), ETIMEDOUT, ECLOSED, ENOMEM,
 * EIO.
 */
MSGPIPE_EXTERN int msgpipe_send_batch(msgpipe *p, const msgpipe_msg *msgs,
                                      size_t n, size_t *sent, int timeout_ms);

/*
 * msgpipe_recv - receive the next message into buf (capacity cap).
 *
 * Blocks up to timeout_ms for a message.  On success *len is the message's
 * length and buf holds it.  If the message is larger than cap, the call
 * returns MSGPIPE_ENOBUFS, sets *len to the size needed, and the message
 * stays queued: retry with a buffer of at least *len bytes.  If the message
 * is larger than max_message it is discarded without being stored, the call
 * returns MSGPIPE_EMSGSIZE with *len set to its announced size, and the
 * next call receives the message after it (EMSGSIZE takes precedence over
 * ENOBUFS: such a message can never be received).  buf may be NULL when cap
 * is 0.
 *
 * A message the peer sent with handles (msgpipe_send_handles) is received
 * as any other, its handles are closed, and the call returns
 * MSGPIPE_EHANDLES instead of MSGPIPE_OK (msgpipe_recv_handles takes them).
 *
 * Errors: EINVAL (p or len NULL, buf NULL with cap > 0), ETIMEDOUT (nothing
 * lost), ENOBUFS, EMSGSIZE, ECLOSED (the peer closed; every message it sent
 * before closing has been received), EHANDLES (received: see above),
 * EPROTO, ENOMEM, EIO.
 */
MSGPIPE_EXTERN int msgpipe_recv(msgpipe *p, void *buf, size_t cap, size_t *len,
                                int timeout_ms);

/*
 * msgpipe_recv_alloc - receive the next message into a new buffer.
 *
 * As msgpipe_recv(), but *msg receives a buffer of exactly *len bytes
 * (plus one hidden zero byte after them, so text may be used as a C
 * string), allocated by msgpipe; release it with msgpipe_free().  An empty
 * message still gives a non-NULL buffer.  Memory grows as the bytes arrive,
 * never ahead of them on the strength of a length the peer announced.
 *
 * On any error *msg is NULL (and *len 0, except with EMSGSIZE).
 *
 * Errors: EINVAL, ETIMEDOUT (nothing lost), EMSGSIZE, ECLOSED, EHANDLES
 * (received, as with OK; its handles were closed: see msgpipe_recv),
 * EPROTO, ENOMEM (the message stays queued), EIO.
 */
MSGPIPE_EXTERN int msgpipe_recv_alloc(msgpipe *p, void **msg, size_t *len,
                                      int timeout_ms);

/* msgpipe_free - release a buffer from msgpipe_recv_alloc().  NULL is
 * ignored.  Use this, not free(): on Windows the library may use another C
 * runtime than the program. */
MSGPIPE_EXTERN void msgpipe_free(void *msg);

/* Who is at the other end of a pipe.  This struct does not grow: what
 * else msgpipe learns about a peer comes with calls of its own (such as
 * msgpipe_peer_user), so a program built against it keeps working with a
 * newer library. */
typedef struct msgpipe_peer_info {
    int64_t pid; /* process id, or -1 if the system cannot tell */
    int64_t uid; /* POSIX effective user id, or -1 (always -1 on Windows) */
    int64_t gid; /* POSIX effective group id, or -1 (always -1 on Windows) */
} msgpipe_peer_info;

/*
 * msgpipe_peer - identify the process at the other end of p.
 *
 * The values are those the operating system recorded when the pipe was
 * connected (SO_PEERCRED / getpeereid on POSIX,
 * GetNamedPipeClientProcessId / GetNamedPipeServerProcessId on Windows), not
 * anything the peer claims.  Does not block - except with the POSIX FIFO
 * transport on a client the server has not accepted yet: the server's
 * identity comes with its acceptance, which this call then waits for,
 * within the timeout given to msgpipe_connect() (ETIMEDOUT after it).
 *
 * tcp:// pipes: ENOTSUP; the peer is known by its address
 * (msgpipe_peer_address).
 *
 * Errors: EINVAL, ENOTSUP (the system reports nothing), ETIMEDOUT (FIFO
 * transport, see above), ECLOSED (FIFO transport: the server closed before
 * accepting this client), EIO.
 */
MSGPIPE_EXTERN int msgpipe_peer(msgpipe *p, msgpipe_peer_info *info);

/*
 * msgpipe_peer_user - the user the process at the other end of p runs as,
 * as text: on POSIX its effective user id in decimal ("1000", from the
 * same peer credentials as msgpipe_peer), on Windows its SID
 * ("S-1-5-21-..."), both on either end of any transport.
 *
 * The text and its terminating NUL are copied to buf (cap bytes; buf may
 * be NULL when cap is 0), and *len is set to its length without the NUL.
 * If it does not fit, MSGPIPE_ENOBUFS: *len is then the size needed,
 * including the NUL, and buf is not written.  The caller owns buf.
 *
 * Windows: a server learns its client's user from the client's token
 * (ImpersonateNamedPipeClient at the identification level msgpipe's
 * clients allow, then TokenUser, then the calling thread's own identity
 * is restored); a client learns its server's user as the owner of the
 * server's pipe (GetSecurityInfo).  Some Windows versions can tell a
 * server its client's token only once a message from that client has
 * been received: before that this is MSGPIPE_ENOTSUP, with
 * ERROR_CANNOT_IMPERSONATE (1368) as msgpipe_last_os_error() - receive a
 * message first.  A client that opened the pipe with anonymous-level
 * security (SECURITY_ANONYMOUS) cannot be identified: EACCES.
 *
 * Blocks as msgpipe_peer does: not at all, except with the POSIX FIFO
 * transport on a client the server has not accepted yet.
 *
 * Errors: EINVAL (p or len NULL, buf NULL with cap > 0), ENOBUFS, ENOTSUP,
 * EACCES, ETIMEDOUT and ECLOSED (FIFO transport, as msgpipe_peer), ENOMEM,
 * EIO.
 */
MSGPIPE_EXTERN int msgpipe_peer_user(msgpipe *p, char *buf, size_t cap,
                                     size_t *len);

/*
 * msgpipe_peer_address - where the peer of a tcp:// pipe is, as a name:
 * "tcp://ADDRESS:PORT" with the numeric address ("tcp://127.0.0.1:40512",
 * "tcp://[::1]:40512"), as the system recorded it when the pipe was
 * connected.  This is the identity a TCP peer has: msgpipe_peer() and
 * msgpipe_peer_user() return MSGPIPE_ENOTSUP on TCP pipes (no system
 * tells a process or user across a network; an authkey is what proves
 * who is at the other end).
 *
 * The text and its NUL are copied to buf as msgpipe_peer_user() does (buf
 * may be NULL when cap is 0; ENOBUFS with *len the size needed).  Does
 * not block.
 *
 * Errors: EINVAL (p or len NULL, buf NULL with cap > 0), ENOBUFS, ENOTSUP
 * (not a TCP pipe), EIO.
 */
MSGPIPE_EXTERN int msgpipe_peer_address(msgpipe *p, char *buf, size_t cap,
                                        size_t *len);

/*
 * msgpipe_server_address - the address a tcp:// server listens on, as a
 * name a client can connect to: "tcp://127.0.0.1:40511" - with the port
 * the system picked when the server was made with port 0.  A server on a
 * host name that resolves to several addresses listens on the first
 * (docs/tcp.md).  Copied to buf as msgpipe_peer_user() does.  Does not
 * block.
 *
 * Errors: EINVAL (srv or len NULL, buf NULL with cap > 0), ENOBUFS,
 * ENOTSUP (not a TCP server), EIO.
 */
MSGPIPE_EXTERN int msgpipe_server_address(msgpipe_server *srv, char *buf,
                                          size_t cap, size_t *len);

/*
 * msgpipe_close - close a pipe and release it.
 *
 * Graceful: every message whose msgpipe_send() returned MSGPIPE_OK is still
 * delivered to the peer, which then receives MSGPIPE_ECLOSED.  Blocks only
 * to finish a message a timed-out send had committed but not finished, at
 * most the linger_ms option.  Messages not yet received from the peer are
 * dropped.  NULL is ignored.
 */
MSGPIPE_EXTERN void msgpipe_close(msgpipe *p);

/* ---- Many pipes in one thread ------------------------------------------ */

/* Events for msgpipe_pollitem.events and .revents. */
#define MSGPIPE_POLLIN 0x1u  /* see msgpipe_poll */
#define MSGPIPE_POLLOUT 0x2u /* see msgpipe_poll; pipes only */

/* One thing msgpipe_poll() watches: a pipe or a server. */
typedef struct msgpipe_pollitem {
    msgpipe *pipe;          /* a pipe to watch, or NULL */
    msgpipe_server *server; /* or a server to watch; NULL for a pipe item */
    unsigned events;        /* what to watch for: MSGPIPE_POLLIN/POLLOUT */
    unsigned revents;       /* set by msgpipe_poll(): what is ready */
    void *user;             /* the caller's; msgpipe does not touch it */
} msgpipe_pollitem;

/*
 * msgpipe_poll - wait until one of n pipes or servers is ready.
 *
 * Blocks up to timeout_ms until at least one item is ready, then sets every
 * item's revents and returns how many items are ready (> 0).  Readiness is
 * exact, including messages msgpipe has already read from the system:
 *
 *   MSGPIPE_POLLIN on a pipe    msgpipe_recv(..., 0) returns at once with
 *                               something other than ETIMEDOUT: a whole
 *                               message (or ENOBUFS/EMSGSIZE for it), the
 *                               end of the pipe (ECLOSED), or an error.
 *   MSGPIPE_POLLIN on a server  msgpipe_accept(..., 0) returns at once: a
 *                               client is waiting, or the server was shut
 *                               down (ESHUTDOWN).  (POSIX: the poll
 *                               accepts, with the allow_uids check, to
 *                               know; the next accept returns the client.)
 *   MSGPIPE_POLLOUT on a pipe   msgpipe_send(..., 0) of a small message
 *                               succeeds (or reports ECLOSED): the pipe has
 *                               room.  A large message may still not fit.
 *                               (Windows: no earlier message is still
 *                               going out; docs/windows.md.)
 *
 * After an item is reported ready, receive (or accept) with timeout 0 until
 * MSGPIPE_ETIMEDOUT; an item that is not drained is reported again at once.
 * An item whose pipe and server are both NULL, or whose events is 0, is
 * skipped (revents 0), so an array may have holes.  An idle wait does not
 * wake up: it uses no CPU.
 *
 * Polling a pipe counts as receiving on it (it may read messages from the
 * system into the pipe, and it pushes out the rest of a message a
 * timed-out send kept back, as a waiting receive does): no other thread
 * may receive on that pipe during the call; sending from another thread is
 * allowed.  Polling a server counts as accepting on it: no other thread may
 * accept on it or poll it meanwhile.  Any number of items (beyond 1,024 on
 * POSIX, beyond 64 on Windows).
 *
 * Errors: EINVAL (items NULL with n > 0; an item with both a pipe and a
 * server; unknown event bits; POLLOUT on a server; n == 0 with timeout -1),
 * ETIMEDOUT (nothing became ready; n == 0 just waits), ENOMEM, EIO.
 */
MSGPIPE_EXTERN int msgpipe_poll(msgpipe_pollitem *items, size_t n,
                                int timeout_ms);

/* A system handle that an outside event loop can wait on. */
#if defined(_WIN32) || defined(__CYGWIN__)
typedef void *msgpipe_native; /* a HANDLE */
#else
typedef int msgpipe_native; /* a file descriptor */
#endif

/*
 * msgpipe_native_handle - what to wait on for one pipe in another event
 * loop (libuv, GLib, Qt, poll, WaitForMultipleObjects).
 *
 * events is MSGPIPE_POLLIN or MSGPIPE_POLLOUT.  The handle stays owned by
 * msgpipe and valid until msgpipe_close(): do not close, read, write or
 * reset it.  Does not block.  On Windows this call counts as receiving on
 * the pipe (it starts the read that signals the event).
 *
 * POSIX: a file descriptor; wait for it to be readable (POLLIN) or
 * writable (POLLOUT), level-triggered.  Windows (POLLIN only): a
 * manual-reset event, signalled while a message or the end of the pipe is
 * waiting; usable with WaitForMultipleObjects.  A tcp:// pipe's handle
 * (the socket on POSIX, its WSAEventSelect event on Windows) also wakes
 * while a message is still arriving: receive with timeout 0, and wait
 * again on MSGPIPE_ETIMEDOUT.
 *
 * The rule that keeps readiness exact: msgpipe may already hold messages
 * it read from the system, which then no longer makes the handle ready.
 * So, when the handle is ready - and once before the first wait - call
 * msgpipe_recv(..., 0) (or msgpipe_recv_alloc) until it returns
 * MSGPIPE_ETIMEDOUT, and only then wait on the handle again.
 *
 * Errors: EINVAL (p or out NULL, events not exactly one of the two),
 * ENOTSUP (Windows and POLLOUT: no waitable object exists for room in a
 * pipe; use msgpipe_poll), ENOMEM, EIO.
 */
MSGPIPE_EXTERN int msgpipe_native_handle(msgpipe *p, unsigned events,
                                         msgpipe_native *out);

/*
 * msgpipe_server_native_handle - what to wait on for a server in another
 * event loop: ready while a client is waiting for msgpipe_accept().
 * POSIX: the listening descriptor, to wait on for readability; Windows: a
 * manual-reset event.  Owned by msgpipe, valid until
 * msgpipe_server_close().  Counts as accepting on the server (Windows
 * may restart pending instances).  When it is ready, accept with timeout 0
 * until
 * MSGPIPE_ETIMEDOUT.  With an authkey on Linux it is an epoll descriptor
 * that is also readable when a handshake can go on (docs/tcp.md).
 * msgpipe_server_shutdown() is not reported through
 * this handle (the loop that calls it knows); msgpipe_poll() does report
 * it.  Does not block.
 *
 * Errors: EINVAL, ENOMEM, EIO.
 */
MSGPIPE_EXTERN int msgpipe_server_native_handle(msgpipe_server *srv,
                                                msgpipe_native *out);

/* ---- One loop, thousands of pipes: the poller --------------------------- */

/* A persistent set of pipes and servers to wait on (msgpipe_poller_new). */
typedef struct msgpipe_poller msgpipe_poller;

/* What msgpipe_poller_wait() reports for one ready pipe or server.  This
 * struct does not grow (it is an array element): what later versions
 * report more comes as further bits in events. */
typedef struct msgpipe_event {
    msgpipe *pipe;          /* the ready pipe, or NULL */
    msgpipe_server *server; /* or the ready server */
    unsigned events;        /* MSGPIPE_POLLIN and/or MSGPIPE_POLLOUT */
    void *user;             /* the pointer given to add or modify */
} msgpipe_event;

/*
 * msgpipe_poller_new - a new, empty poller, released with
 * msgpipe_poller_close().
 *
 * A poller is msgpipe_poll() made persistent: pipes and servers are added
 * once, and each wait costs time in proportion to what is ready, not to
 * what is registered.  Linux: epoll; the BSDs and macOS: kqueue; other
 * POSIX systems: poll() (a wait there is proportional to the set).
 * Windows: one I/O completion port for the process, to which the pipes'
 * reads and the servers' connects report, taken by a thread the library
 * starts with its first pipe or server and keeps for the life of the
 * process (docs/poll.md).
 *
 * Errors: EINVAL (out NULL), EMFILE, ENOMEM, EIO.
 */
MSGPIPE_EXTERN int msgpipe_poller_new(msgpipe_poller **out);

/*
 * msgpipe_poller_add - watch a pipe (srv NULL) or a server (p NULL) for
 * events (MSGPIPE_POLLIN, MSGPIPE_POLLOUT on pipes; 0 to keep it
 * registered without watching), reported with the caller's user pointer.
 *
 * Readiness is exactly that of msgpipe_poll(), level-triggered: an item is
 * reported by every wait while it is ready - messages msgpipe already
 * holds included - so after a report, receive (or accept) with timeout 0
 * as much as you like; what is left is reported again by the next wait.
 * (No edge-triggered or one-shot mode: with messages held inside msgpipe
 * an edge has no meaning a caller could rely on; docs/poll.md.)
 *
 * A pipe or server belongs to at most one poller at a time.  It may be
 * added, modified and removed from any thread, also while another thread
 * waits: the change applies to that wait at once.  msgpipe_close() and
 * msgpipe_server_close() remove a registered pipe or server themselves
 * (also while another thread waits on its poller).
 *
 * Errors: EINVAL (pl NULL, neither or both of p and srv, unknown event
 * bits, POLLOUT on a server), EBUSY (already in this or another poller),
 * ENOMEM, EMFILE, EIO.
 */
MSGPIPE_EXTERN int msgpipe_poller_add(msgpipe_poller *pl, msgpipe *p,
                                      msgpipe_server *srv, unsigned events,
                                      void *user);

/*
 * msgpipe_poller_modify - change what a registered pipe or server is
 * watched for, and its user pointer.  Errors: EINVAL (as add), ENOENT
 * (not in this poller), EIO.
 */
MSGPIPE_EXTERN int msgpipe_poller_modify(msgpipe_poller *pl, msgpipe *p,
                                         msgpipe_server *srv, unsigned events,
                                         void *user);

/*
 * msgpipe_poller_remove - stop watching a pipe or server; it stays open.
 * Once this returns, no wait reports it (a wait running in another thread
 * may have reported it just before: its event is still valid to use until
 * the pipe is closed).  Errors: EINVAL, ENOENT (not in this poller).
 */
MSGPIPE_EXTERN int msgpipe_poller_remove(msgpipe_poller *pl, msgpipe *p,
                                         msgpipe_server *srv);

/*
 * msgpipe_poller_wait - wait up to timeout_ms until something is ready,
 * and report up to cap ready items in ev[0..).
 *
 * Returns how many were written (> 0), 0 if msgpipe_poller_wake() ended
 * the wait before anything was ready, or ETIMEDOUT.  What was ready
 * beyond cap is reported by the next wait.  Only one thread at a time may
 * wait on one poller.  An idle wait is one blocking system call: it uses
 * no CPU.
 *
 * As with msgpipe_poll(), waiting counts as receiving on the pipes
 * watched for MSGPIPE_POLLIN (it may read their messages from the system
 * into msgpipe, and it pushes out the rest of a message a timed-out send
 * kept back) and as accepting on the servers: while a wait runs, no other
 * thread may receive on such a pipe or accept on such a server.  Receive
 * in the waiting thread between waits, or from another thread on a pipe
 * registered without MSGPIPE_POLLIN (or removed first).  Sending from any
 * thread is always allowed.
 *
 * Errors: EINVAL (pl or ev NULL, cap 0, bad timeout), ETIMEDOUT, ENOMEM,
 * EIO.
 */
MSGPIPE_EXTERN int msgpipe_poller_wait(msgpipe_poller *pl, msgpipe_event *ev,
                                       size_t cap, int timeout_ms);

/*
 * msgpipe_poller_wake - make a msgpipe_poller_wait() running in another
 * thread return (0) promptly, or the next one if none is running.  Any
 * thread; does not block; safe in a signal handler on POSIX (one write()).
 * NULL is ignored.
 */
MSGPIPE_EXTERN void msgpipe_poller_wake(msgpipe_poller *pl);

/*
 * msgpipe_poller_close - release a poller.  Its pipes and servers are
 * removed and stay open.  No other call on the poller, nor on its pipes
 * and servers (a close included), may run meanwhile in another thread.
 * NULL is ignored.
 */
MSGPIPE_EXTERN void msgpipe_poller_close(msgpipe_poller *pl);

/* ---- Pipes for child processes ----------------------------------------- */

/*
 * msgpipe_pair - two pipes connected to each other, without a name.
 *
 * *a and *b are the two ends: what is sent on one is received on the
 * other, with every promise of a pipe from msgpipe_accept() or
 * msgpipe_connect() (timeouts, ENOBUFS, max_message, graceful close,
 * msgpipe_poll, native handles, handles with messages).  opt may be NULL;
 * both ends use its max_message and linger_ms (the server and client
 * options are ignored).  Nothing else can connect to a pair.  Does not
 * block.  Each end is the caller's, released with msgpipe_close(); the
 * two may be used from different threads.
 *
 * POSIX: socketpair(AF_UNIX, SOCK_STREAM); the FIFO transport makes two
 * pipe()s instead (and cannot carry handles).  Windows: one message-mode
 * instance of a pipe with a random name, created with
 * FILE_FLAG_FIRST_PIPE_INSTANCE and a DACL for this user only, opened at
 * once by this process - what Python's multiprocessing.Pipe() does.
 *
 * Errors: EINVAL (a or b NULL, bad option), EMFILE, ENOMEM, EIO.  On any
 * error *a and *b are NULL.
 */
MSGPIPE_EXTERN int msgpipe_pair(const msgpipe_options *opt, msgpipe **a,
                                msgpipe **b);

/* A child process started by msgpipe_spawn(). */
typedef struct msgpipe_process msgpipe_process;

/*
 * msgpipe_spawn_options - settings for msgpipe_spawn().  Initialise with
 * msgpipe_spawn_options_init(); fields are only ever added at the end.
 */
typedef struct msgpipe_spawn_options {
    /* Set by msgpipe_spawn_options_init(); do not change. */
    uint32_t struct_size;
    /* Variables to add to the child's environment, as "NAME=VALUE"
     * strings (UTF-8), the array ended by NULL; each replaces a variable
     * of the same name that the child would inherit from this process.
     * Default NULL: the child gets this process's environment (plus
     * MSGPIPE_PARENT, which is always set and cannot be replaced). */
    const char *const *env;
    /* The child's working directory (UTF-8), or NULL (the default) for
     * this process's.  A directory that does not exist is ENOENT. */
    const char *cwd;
    /* Options of the parent's end of the pipe (max_message, linger_ms),
     * or NULL (the default) for the defaults. */
    const msgpipe_options *pipe_options;
} msgpipe_spawn_options;

MSGPIPE_EXTERN void msgpipe_spawn_options_init_size(msgpipe_spawn_options *so,
                                                    size_t so_size);

/* msgpipe_spawn_options_init - set every field of *so to its default. */
#define msgpipe_spawn_options_init(so)                                         \
    msgpipe_spawn_options_init_size((so), sizeof(msgpipe_spawn_options))

/*
 * msgpipe_spawn - start the program argv[0] with arguments argv[1..] (the
 * array ended by NULL; UTF-8) and a pipe to it.
 *
 * On success *pipe is this process's end of a pair (as msgpipe_pair()
 * makes) and *proc the child; both are the caller's, released with
 * msgpipe_close() and msgpipe_process_close().  The child's end is the
 * one handle the child inherits besides its standard input, output and
 * error (which it shares with this process): every other descriptor or
 * handle of this process stays out of it, also one another thread opens
 * while the child starts.  The child finds its end in the environment
 * variable MSGPIPE_PARENT - the descriptor number (POSIX) or the handle
 * value (Windows) in decimal - and takes it with msgpipe_from_parent(), or
 * in Python with multiprocessing.connection.Connection(int(...)) on POSIX
 * (docs/spawn.md).  so may be NULL for the defaults.
 *
 * When the child exits, or crashes, this end receives every message the
 * child sent and then MSGPIPE_ECLOSED (a grandchild that inherited the
 * child's end keeps it open).  Does not wait for the child to do
 * anything.
 *
 * POSIX: posix_spawnp(), so argv[0] without a '/' is searched for in
 * this process's PATH; every descriptor but 0, 1, 2 and the child's end
 * is closed in the child (Linux and the BSDs: a close-from action; macOS:
 * POSIX_SPAWN_CLOEXEC_DEFAULT; elsewhere only descriptors that are
 * close-on-exec, as all of msgpipe's are, stay out).  The child's end is
 * a blocking socket, as a Python Connection expects (msgpipe_from_parent
 * makes its own use non-blocking).  The FIFO transport gives the child
 * two descriptors: MSGPIPE_PARENT is then "READ,WRITE".
 *
 * Windows: CreateProcessW() with a STARTUPINFOEX whose
 * PROC_THREAD_ATTRIBUTE_HANDLE_LIST names only the child's end and the
 * standard handles; argv is joined into one command line quoted so that
 * the child's C runtime (CommandLineToArgvW rules) gives back exactly
 * argv - spaces, quotes and backslashes included.  argv[0] is found as
 * CreateProcessW finds a program (the application's directory, the
 * current directory, the system directories, PATH).
 *
 * Errors: EINVAL (argv NULL or empty, pipe or proc NULL, a bad option or
 * an env entry without '=', or one that sets MSGPIPE_PARENT), ENOENT (no
 * such program, or cwd does not exist), EACCES (not executable), ENOTSUP
 * (cwd on a POSIX system without posix_spawn_file_actions_addchdir),
 * EMFILE, ENOMEM, EIO.  On any error nothing was started and *pipe and
 * *proc are NULL.
 */
MSGPIPE_EXTERN int msgpipe_spawn(const char *const argv[],
                                 const msgpipe_spawn_options *so,
                                 msgpipe **pipe, msgpipe_process **proc);

/*
 * msgpipe_from_parent - in a program started by msgpipe_spawn(), take the
 * pipe to the parent.
 *
 * Reads MSGPIPE_PARENT, checks that it names an open pipe of this
 * backend's kind (POSIX: a connected AF_UNIX stream socket, or with the
 * FIFO transport a pair of pipes, the first readable and the second
 * writable; Windows: a message-mode named pipe handle opened for
 * overlapped I/O), wraps it in *out (the caller's, released with
 * msgpipe_close()) and removes MSGPIPE_PARENT from the environment, so
 * that a program this one starts does not take the same pipe.  A second
 * call therefore returns ENOENT.  opt may be NULL (max_message and
 * linger_ms are used).  Does not block.  It changes the environment:
 * call it before other threads read the environment (as with setenv).
 *
 * Errors: EINVAL (out NULL, a bad option), ENOENT (MSGPIPE_PARENT is not
 * set), EBADNAME (MSGPIPE_PARENT is not a descriptor or handle value in
 * decimal, names nothing open, or names something that is not a pipe of
 * the right kind: nothing is taken and the variable is left as it was),
 * ENOMEM, EIO.
 */
MSGPIPE_EXTERN int msgpipe_from_parent(const msgpipe_options *opt,
                                       msgpipe **out);

/*
 * msgpipe_process_wait - wait up to timeout_ms for the child to exit.
 *
 * MSGPIPE_OK once it has exited: *exit_code (exit_code may be NULL) is its
 * exit status (0-255 on POSIX, the 32-bit exit code on Windows as an int),
 * or on POSIX minus the number of the signal that ended it (-9 after
 * msgpipe_process_kill), as Python's Popen.returncode.  Once it has
 * returned OK it returns the same again at once.  ETIMEDOUT while the
 * child still runs (timeout 0 just asks).  POSIX: the child is reaped
 * (waitpid) by this call, so no other code of the program may wait for
 * it.  Only one thread at a time may wait on one process; kill and pid
 * may be called meanwhile.
 *
 * Errors: EINVAL (proc NULL, bad timeout), ETIMEDOUT, EIO.
 */
MSGPIPE_EXTERN int msgpipe_process_wait(msgpipe_process *proc, int timeout_ms,
                                        int *exit_code);

/*
 * msgpipe_process_kill - end the child at once (POSIX: SIGKILL; Windows:
 * TerminateProcess with exit code 1).  Does not wait: use
 * msgpipe_process_wait.  A child that has already exited is not an error,
 * and a child that has been reaped is never signalled (its pid may belong
 * to another process by then).  Thread-safe with msgpipe_process_wait.
 *
 * Errors: EINVAL (proc NULL), EIO.
 */
MSGPIPE_EXTERN int msgpipe_process_kill(msgpipe_process *proc);

/* msgpipe_process_pid - the child's process id (-1 for NULL). */
MSGPIPE_EXTERN int64_t msgpipe_process_pid(const msgpipe_process *proc);

/*
 * msgpipe_process_close - release proc.  The child is neither waited for
 * nor killed: it runs on.  POSIX: a child that has exited but was not
 * waited for is reaped now if it can be without waiting; otherwise it
 * stays a zombie until this process exits (call msgpipe_process_wait
 * first).  NULL is ignored.
 */
MSGPIPE_EXTERN void msgpipe_process_close(msgpipe_process *proc);

/* ---- Handles with messages ---------------------------------------------- */

/* The most handles one message carries. */
#define MSGPIPE_MAX_HANDLES 16

/*
 * msgpipe_send_handles - send one message with nh handles attached: open
 * file descriptors on POSIX (files, sockets, pipes, shared memory, ...),
 * HANDLEs on Windows (files, pipes, events, sections, processes, ...).
 *
 * The peer receives the message and copies of the handles together
 * (msgpipe_recv_handles), or neither; the handles stay the caller's (close
 * them when you no longer need them: the peer has its own copies).
 * Otherwise exactly as msgpipe_send(): blocking, timeout, commit rule.
 * nh 0 is a plain msgpipe_send().  The peer may be a pipe from
 * msgpipe_pair, msgpipe_spawn/from_parent, or a named server or client.
 *
 * POSIX: SCM_RIGHTS on the sendmsg() that carries the message's first
 * byte, so the framing seen by a plain reader does not change.
 * Windows: each handle is duplicated into the peer's process
 * (DuplicateHandle with DUPLICATE_SAME_ACCESS; the process comes from the
 * pipe), and the values travel in front of the message - for a message
 * over 64 KiB in all, as a message of their own just before it, so that
 * a writer killed half-way leaves no copies nobody knows of
 * (docs/spawn.md); if the message is not sent, the copies are closed
 * again.  This needs
 * the right to duplicate handles into the peer (PROCESS_DUP_HANDLE),
 * which a process has over the others of its own user; EACCES otherwise.
 *
 * Errors: EINVAL (p NULL, msg NULL with len > 0, h NULL with nh > 0, nh
 * above MSGPIPE_MAX_HANDLES, a handle that is not open), ENOTSUP (FIFO
 * transport, with nh > 0), EACCES (Windows, see above), and those of
 * msgpipe_send.
 */
MSGPIPE_EXTERN int msgpipe_send_handles(msgpipe *p, const void *msg, size_t len,
                                        const msgpipe_native *h, size_t nh,
                                        int timeout_ms);

/*
 * msgpipe_recv_handles - receive the next message and the handles that
 * came with it.
 *
 * As msgpipe_recv() for the message; then h[0..*nh) are its handles
 * (*nh 0 for a message sent without), the caller's to close (POSIX:
 * close-on-exec; Windows: not inheritable).  If it came with more than
 * hcap handles, the first hcap are given and the rest are closed: the
 * call returns MSGPIPE_EHANDLES, with the message received as with OK.
 * With ENOBUFS the message and its handles stay queued.  A message that is
 * discarded (EMSGSIZE), or cut off by the peer's end (ECLOSED), has its
 * handles closed.  h may be NULL when hcap is
 * 0.
 *
 * msgpipe_recv() and msgpipe_recv_alloc() are this call with hcap 0: a
 * message that carries handles is received, its handles are closed, and
 * the call returns MSGPIPE_EHANDLES instead of MSGPIPE_OK - never a leak.
 *
 * POSIX: if a peer sends more than MSGPIPE_MAX_HANDLES, the system drops
 * the rest (MSG_CTRUNC) and the call returns EHANDLES.  Windows: handle
 * values in front of a message are accepted only from a peer of this
 * process's own user (one that could have duplicated them into this
 * process); from another, or when malformed, the message is EPROTO and the
 * values are left alone (docs/spawn.md).
 *
 * Errors: EINVAL (p, len or nh NULL, buf NULL with cap > 0, h NULL with
 * hcap > 0), EHANDLES, and those of msgpipe_recv.
 */
MSGPIPE_EXTERN int msgpipe_recv_handles(msgpipe *p, void *buf, size_t cap,
                                        size_t *len, msgpipe_native *h,
                                        size_t hcap, size_t *nh,
                                        int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif /* MSGPIPE_H */
