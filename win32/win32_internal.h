/*
 * win32_internal.h - what the Win32 backend's files share.
 *
 * Not a public header and not part of the backend contract (api/backend.h):
 * only the .c files of win32/ include it.  The files, and their POSIX twins:
 *
 *   win32_stream.c    the message engine over a connected pipe handle:
 *                     send, receive, discard, graceful close, readiness,
 *                     the completion port that keeps writes alive, the
 *                     system-call table and the error mapping
 *                     (posix/posix_stream.c).
 *   win32_server.c    the server: its pool of listening instances, listen,
 *                     accept, shutdown (posix/posix_server.c, with the
 *                     listen and accept of posix/posix_socket.c).
 *   win32_pipe.c      the transport's own part: the backend description,
 *                     connecting, peer identity (posix/posix_socket.c, or
 *                     posix_fifo.c).  Named after the named pipe as those
 *                     are after the socket and the FIFO.
 *   win32_poll.c      msgpipe_poll over many pipes and servers
 *                     (posix/posix_poll.c).
 *   win32_poller.c    the process's completion port, its dispatcher thread
 *                     and the registry of keys; msgpipe_poller
 *                     (posix/posix_poller.c).
 *   win32_security.c  the security descriptor of a server's pipe
 *                     (posix/posix_security.c: the mode of its name).
 *   win32_spawn.c     pairs, child processes (msgpipe_spawn,
 *                     msgpipe_from_parent) and the handles that travel
 *                     with messages: the peer's process, whether it runs
 *                     as this user, DuplicateHandle.
 *   win32_crypto.c    authkey's HMAC and random bytes (BCrypt) and the
 *                     wait of a server's handshakes (posix_crypto.c).
 *   win32_tcp.c       tcp:// with Winsock: connecting, a TCP server's
 *                     listening socket, and the stream engine of TCP
 *                     pipes, to which the entry points of win32_stream.c
 *                     route them (posix/posix_tcp.c).
 *
 * Dependencies go one way: win32_stream.c uses nothing of the others but
 * msgpipe__w_peer_trusted (win32_spawn.c), which its receive asks before it
 * takes handle values from a message, and the port of win32_poller.c;
 * win32_security.c uses its error mapping; win32_server.c and win32_pipe.c
 * make pipes with msgpipe__w_pipe_new; win32_poll.c asks the readiness
 * calls of win32_stream.c and win32_server.c.
 */
#ifndef MSGPIPE_WIN32_INTERNAL_H
#define MSGPIPE_WIN32_INTERNAL_H

#include "backend.h"

#include <windows.h>

/*
 * The access mask granted to users other than the server's own user (the
 * GROUP and WORLD options), and the one msgpipe's client asks for.
 *
 * It is FILE_GENERIC_READ | FILE_GENERIC_WRITE without FILE_APPEND_DATA,
 * which for a named pipe is FILE_CREATE_PIPE_INSTANCE (both are 0x0004).
 * GENERIC_WRITE would include that right, and whoever holds it may create
 * further instances of our pipe and so receive some of our clients.  This
 * is the mask Windows itself grants Everyone on its own pipes (eventlog).
 * A client therefore has to ask for exactly this instead of GENERIC_WRITE
 * to get in through such an entry; msgpipe_connect() does.  Clients of the
 * server's own user are granted everything (GENERIC_ALL), so a foreign
 * client (pywin32, Python's multiprocessing) that asks for GENERIC_WRITE
 * works for the same user.
 */
#define MSGPIPE__W_RW_ACCESS 0x0012019Bu

/* ---- Pipes (win32_stream.c) -------------------------------------------- */

/* A message that carries handles starts with MSGPIPE__W_HDR bytes (the
 * first 16 the magic, msgpipe__w_magic), 8 per handle, and then the
 * payload - or, when it is split, 8 bytes of the payload's length (see
 * msgpipe__w_hdr_parse in win32_stream.c).  MSGPIPE__W_HDR_MAX is the
 * longest header. */
#define MSGPIPE__W_MAGIC_LEN 16
#define MSGPIPE__W_HDR 24
#define MSGPIPE__W_HDR_MAX (MSGPIPE__W_HDR + 8 * MSGPIPE_MAX_HANDLES + 8)
/* A message with handles larger than this in all is split: a quarter of
 * the buffer of the pipes msgpipe makes (256 KiB), so that its header
 * completes at once even when the buffer is partly full, and any foreign
 * pipe with the seed's 64 KiB buffer is covered too. */
#define MSGPIPE__W_SPLIT_MIN 65536

/* States of a pipe's zero-byte "arm" read (see "Readiness" in
 * win32_stream.c). */
enum {
    MSGPIPE__W_RX_IDLE,  /* no read outstanding; nothing known */
    MSGPIPE__W_RX_ARMED, /* the zero-byte read is outstanding */
    MSGPIPE__W_RX_DONE   /* it completed: a message or the end is waiting */
};

struct msgpipe__w_tcp; /* win32_tcp.c */

struct msgpipe {
    HANDLE h;
    /* A tcp:// pipe (win32_tcp.c): its socket and its engine's state; h is
     * then INVALID_HANDLE_VALUE, and of the fields below only the key,
     * max_message, linger_ms, the tail's write (tx_ov, tx_ev, tx_busy,
     * tx_seen, tx_len) and the poller's are used. */
    struct msgpipe__w_tcp *tcp;
    HANDLE rd_ev;   /* manual-reset event for data reads */
    int server_end; /* 1: made by accept, 0: made by connect */
    int linger_ms;
    uint64_t max_message;
    int spin_us; /* msgpipe_options.spin_us (see msgpipe__w_spin_rx) */
    /*
     * The process's completion port (win32_poller.c) knows h by key, and
     * its dispatcher finds the pipe by it.
     *
     * Sending (see msgpipe__b_send).  Writes report to that port (tx_ov
     * has no event), so that a write survives the exit of the thread that
     * issued it; the dispatcher sets tx_ev when a write that went pending
     * has completed.  tx_busy: a write was issued whose result has not
     * been taken yet; it writes from the caller's buffer only while its
     * send is still running (and then from tx_buf, which the pipe owns).
     * tx_busy is read by a polling thread.  tx_seen: the write's result is
     * final - it completed at once with no packet to come (tx_skip: the
     * handle has FILE_SKIP_COMPLETION_PORT_ON_SUCCESS), or the dispatcher
     * has taken its completion packet.  Only then is tx_ov read or reused:
     * the packet, not the OVERLAPPED, is what says a write has ended (see
     * msgpipe__w_tx_seen in win32_poller.c).
     */
    ULONG_PTR key;
    HANDLE tx_ev;
    OVERLAPPED tx_ov;
    LONG volatile tx_busy;
    LONG volatile tx_seen;
    int tx_skip;
    DWORD tx_len;
    unsigned char *tx_buf;
    size_t tx_cap;
    /*
     * Receive readiness (see "Readiness" in win32_stream.c).  arm_ov is the
     * OVERLAPPED of the one zero-byte ReadFile that waits for the next message;
     * its event, ready_ev, is what msgpipe_native_handle() hands out.  Both
     * live here, not on a stack, because the read may stay outstanding
     * between calls.  rx_empty: that read consumed an empty message, which
     * the next receive returns.  arm_port: the read outstanding reports to
     * the completion port as well (it is issued so while the pipe is in a
     * poller for MSGPIPE_POLLIN, pl_in).  Touched only by the receiving
     * side.
     */
    HANDLE ready_ev;
    OVERLAPPED arm_ov;
    int rx_state; /* MSGPIPE__W_RX_* */
    int arm_port;
    int rx_empty;
    unsigned char arm_buf; /* the zero-byte read's (unused) buffer */
    /*
     * The head of a message that had to be partly consumed (rare: see
     * msgpipe__w_rx_next).  stash_len bytes are held here; the rest of the
     * message is still in the pipe.
     */
    unsigned char *stash;
    size_t stash_len;
    uint64_t stash_rest; /* the bytes that must follow it, 0 if unknown */
    /* An oversized message is being discarded and part of it is gone: the
     * rest must be drained before anything else is received (see
     * msgpipe__w_rx_drain). */
    int rx_draining;
    uint64_t rx_drain_left; /* bytes of that message still in the pipe */
    /*
     * Handles with messages (win32_spawn.c; the wire form is described at
     * msgpipe__w_hdr_parse in win32_stream.c).  peer_pid: the peer's process
     * when the pipe cannot tell it (the parent's end of a spawned child,
     * whose client end this process opened), else 0.  peer_proc: the
     * peer's process opened for DuplicateHandle at the first handle message
     * sent (GetCurrentProcess() for a pair), or NULL.  peer_trust: 1 if the
     * peer runs as this process's user, -1 if not, 0 not known yet.
     * tx_dup[0..tx_ndup): the copies in peer_proc that the write in flight
     * carries; closed there again if that write fails.
     */
    DWORD peer_pid;
    HANDLE peer_proc;
    int peer_trust;
    size_t tx_ndup;
    uint64_t tx_dup[MSGPIPE_MAX_HANDLES];
    /*
     * A large message with handles goes out as two writes, its header
     * first (see msgpipe__w_send_ex): tx_hov, tx_hbusy, tx_hlen and tx_hbuf
     * are the header's write, as tx_ov... are the payload's; tx_split says
     * that the copies in tx_dup go with the header's write.  On the
     * receiving side, held_on says such a header was taken and its
     * payload, of held_len bytes, is the next message; held[0..held_n)
     * are its handle values, this process's.
     */
    OVERLAPPED tx_hov;
    LONG volatile tx_hbusy;
    LONG volatile tx_hseen;
    DWORD tx_hlen;
    int tx_split;
    unsigned char tx_hbuf[MSGPIPE__W_HDR_MAX];
    int held_on;
    uint32_t held_n;
    uint64_t held_len;
    uint64_t held[MSGPIPE_MAX_HANDLES];
    /* Its registration in a poller, or NULL, and whether that watches
     * MSGPIPE_POLLIN (win32_poller.c: written under the registry lock). */
    void *pl_entry;
    LONG volatile pl_in;
};

/* msgpipe__w_pipe_new - wrap the connected pipe handle h (overlapped, in
 * message read mode) in a new pipe; server_end is 1 for a pipe made by
 * accept.  key: the handle's key at the completion port if it is bound
 * already (a server's instance), else 0 and it is bound here.  On failure
 * h is left open for the caller (and a key given stays the caller's). */
int msgpipe__w_pipe_new(HANDLE h, int server_end, ULONG_PTR key,
                        const msgpipe__opts *o, msgpipe **out);

/* What every pipe, named or tcp://, takes from its options and its side:
 * server_end, max_message, linger_ms, spin_us. */
void msgpipe__w_pipe_opts(msgpipe *p, int server_end, const msgpipe__opts *o);

/* ---- tcp:// (win32_tcp.c) ---------------------------------------------
 * The entry points of msgpipe's calls route TCP pipes (p->tcp) here. */
int msgpipe__w_tcp_connect(const msgpipe__name *name, const msgpipe__opts *o,
                           int timeout_ms, msgpipe **out);
int msgpipe__w_tcp_send(msgpipe *p, const void *msg, size_t len,
                        int timeout_ms);
/* msg NULL: into buf (cap bytes); else into a new buffer stored there. */
int msgpipe__w_tcp_recv(msgpipe *p, void *buf, size_t cap, void **msg,
                        size_t *len, int timeout_ms);
int msgpipe__w_tcp_in_ready(msgpipe *p, HANDLE *wait);
int msgpipe__w_tcp_in_ready_port(msgpipe *p);
int msgpipe__w_tcp_out_ready(msgpipe *p);
int msgpipe__w_tcp_native_handle(msgpipe *p, unsigned events,
                                 msgpipe_native *out);
int msgpipe__w_tcp_peer_address(msgpipe *p, char *buf, size_t cap, size_t *len);
void msgpipe__w_tcp_close(msgpipe *p);
/* A server's listening socket, non-blocking, its FD_ACCEPT on ev: bound
 * to the name (with the non-loopback safe default checked) in *sock. */
int msgpipe__w_tcp_bind(const msgpipe__name *name, const msgpipe__opts *o,
                        UINT_PTR *sock, HANDLE ev);
/* 1 if a connection waits on the listening socket (no blocking). */
int msgpipe__w_tcp_pending(UINT_PTR sock);
/* Accept one waiting connection as a pipe; ETIMEDOUT if none waits. */
int msgpipe__w_tcp_accept(UINT_PTR sock, const msgpipe__opts *o, msgpipe **out);
void msgpipe__w_tcp_close_socket(UINT_PTR sock);
int msgpipe__w_tcp_sock_address(UINT_PTR sock, char *buf, size_t cap,
                                size_t *len);
/* The next signal of ev posts a completion for key to the port (once),
 * replacing the wait in *wait: how a poller hears of a socket. */
void msgpipe__w_tcp_watch(HANDLE ev, HANDLE *wait, ULONG_PTR key);

/* ---- Handles with messages (win32_stream.c, win32_spawn.c) ------------- */

extern const unsigned char msgpipe__w_magic[MSGPIPE__W_MAGIC_LEN];

/* Send hdr (hlen bytes, may be 0) and then msg as one message, with the
 * engine's commit rule; or with split, hdr (at most MSGPIPE__W_HDR_MAX
 * bytes) as one message and msg as the next, both committed together.
 * dup[0..ndup) are handle values already in p->peer_proc that the message
 * carries: the call owns them, and they are closed there again unless the
 * message (its header, when split) is delivered. */
int msgpipe__w_send_ex(msgpipe *p, const unsigned char *hdr, size_t hlen,
                       const void *msg, size_t len, int timeout_ms,
                       const uint64_t *dup, size_t ndup, int split);

/* Close the values v[0..n) in process proc (DUPLICATE_CLOSE_SOURCE). */
void msgpipe__w_close_remote(HANDLE proc, const uint64_t *v, size_t n);

/* 1 if the peer of p runs as this process's user (cached in
 * p->peer_trust), 0 if not or if that cannot be told. */
int msgpipe__w_peer_trusted(msgpipe *p);

/* The peer's process id (p->peer_pid, or what the pipe says), or 0. */
DWORD msgpipe__w_peer_pid(msgpipe *p);

/* Does the peer of p run as this process's user, by what the pipe tells
 * (win32_pipe.c: the client's token on a server end, the pipe's owner on a
 * client end) - for a peer whose process can no longer be asked?  1 yes,
 * 0 no, -1 cannot tell. */
int msgpipe__w_pipe_same_user(msgpipe *p);

/* ---- Errors, time and names (win32_stream.c) ---------------------------- */

/* msgpipe__w_error - record the Windows error e as the last OS error and
 * return the msgpipe code it maps to. */
int msgpipe__w_error(DWORD e);

/* Milliseconds left before the deadline, as a Win32 wait timeout. */
DWORD msgpipe__w_left(int64_t deadline);

/* The NUL-terminated UTF-8 string s as UTF-16, from msgpipe__malloc();
 * invalid UTF-8 is EINVAL (the OS error recorded). */
int msgpipe__w_utf16(const char *s, WCHAR **out);

/* The name as UTF-16 for the W calls; invalid UTF-8 is EBADNAME. */
int msgpipe__w_wide(const msgpipe__name *name, WCHAR **out);

/* Has the I/O of ov finished?  (HasOverlappedIoCompleted through a
 * volatile read: the system writes Internal from elsewhere.) */
int msgpipe__w_ov_done(const OVERLAPPED *ov);

/* spin_us (win32_stream.c's "Spinning"): a monotonic clock in
 * microseconds, and when the spin of a wait until deadline ends on it, or
 * -1 when that wait must not spin (no spin_us, timeout 0, less left). */
int64_t msgpipe__w_now_us(void);
int64_t msgpipe__w_spin_end(const msgpipe *p, int64_t deadline);

/* ---- Security (win32_security.c) ---------------------------------------- */

/* msgpipe__w_sd_create - build the security descriptor of a new server:
 * from the SDDL string o->sddl when it is set, else for the access option
 * (msgpipe_access); release it with LocalFree().  Returns MSGPIPE_OK,
 * EINVAL (o->sddl does not parse), ENOMEM or EIO (the OS error recorded). */
int msgpipe__w_sd_create(const msgpipe__opts *o, PSECURITY_DESCRIPTOR *out);

/* ---- Readiness (win32_stream.c, win32_server.c), for win32_poll.c -------
 * None of these blocks.  Each returns 1 if the object is ready. */

/* MSGPIPE_POLLIN on a pipe.  If not ready, the pipe is armed and *wait is
 * the event that is signalled when it becomes ready. */
int msgpipe__w_pipe_in_ready(msgpipe *p, HANDLE *wait);

/* MSGPIPE_POLLIN on a server: a client waits, or it was shut down.  If not
 * ready, wait[0..1] are the events to wait on. */
int msgpipe__w_srv_ready(msgpipe_server *srv, HANDLE wait[2]);
/* The same before authentication: a connection waits for msgpipe__b_accept
 * (what the authkey handshakes wait for, win32_crypto.c). */
int msgpipe__w_srv_raw_ready(msgpipe_server *srv, HANDLE wait[2]);

/* MSGPIPE_POLLOUT on a pipe: an estimate (see win32_stream.c), with no event
 * to wait on; now is msgpipe__now_ms().  If not ready, check again every
 * MSGPIPE__W_OUT_TICK_MS. */
int msgpipe__w_pipe_out_ready(msgpipe *p, int64_t now);

/* The same as msgpipe__w_pipe_in_ready, for a poller (win32_poller.c): a
 * read left armed is one that reports to the completion port. */
int msgpipe__w_pipe_in_ready_port(msgpipe *p);

/* ---- The completion port and the registry (win32_poller.c) --------------
 *
 * Every pipe handle and every server instance is bound to one completion
 * port of the process, with a key that names its pipe or server in a
 * table, the registry.  A thread of the library takes the completions from
 * the port and passes them on as hints: "a write of this pipe ended" (it
 * sets tx_ev), "look at this pipe or server again" (to its poller).  A
 * completion whose pipe or server has meanwhile gone finds its key stale
 * and is dropped.  The registry lock also guards every pl_entry. */

enum { MSGPIPE__W_KEY_PIPE = 1, MSGPIPE__W_KEY_SERVER = 2 };

/* Bind h to the port under a new key for obj (a msgpipe or a
 * msgpipe_server, by kind), stored in *key; or, if *key is not 0, under
 * that key (obj and kind are then not used).  With h NULL, only the new
 * key is made (for msgpipe__w_port_post).  Starts the port and its
 * thread on first use.  OK or the error (h then bound to nothing, *key
 * unchanged).  Takes the registry lock: never call it, nor
 * msgpipe__w_port_retarget or _release, with a poller's lock held. */
int msgpipe__w_port_bind(HANDLE h, int kind, void *obj, ULONG_PTR *key);

/* A completion for key, with no I/O: the dispatcher treats it as any
 * other (it never blocks and takes no lock: a server's shutdown uses it,
 * which a signal handler may call). */
void msgpipe__w_port_post(ULONG_PTR key);

/* The key now names obj (a server's instance that became a pipe). */
void msgpipe__w_port_retarget(ULONG_PTR key, int kind, void *obj);

/* The key names nothing any more: completions still coming for it are
 * dropped.  On return the dispatcher is not using its object. */
void msgpipe__w_port_release(ULONG_PTR key);

/* A pipe (srv NULL) or server (p NULL) that is closed leaves its poller. */
void msgpipe__w_pl_forget(msgpipe *p, msgpipe_server *srv);

/* Look at this pipe or server again at the next wait of its poller, if it
 * is in one: a receive or accept left something msgpipe itself knows of.
 * Takes the registry lock shared and the poller's lock. */
void msgpipe__w_pl_touch(msgpipe *p, msgpipe_server *srv);

/* Where a server keeps its registration (win32_server.c). */
void **msgpipe__w_srv_pl_slot(msgpipe_server *srv);

/* How often a poll re-checks a pipe waiting for MSGPIPE_POLLOUT (see
 * msgpipe__w_pipe_out_ready). */
#define MSGPIPE__W_OUT_TICK_MS 10

/* ---- System calls --------------------------------------------------------
 * The backend makes the calls that move data and wait through this table,
 * as the POSIX backend does through msgpipe__sys, so that tests can make
 * them fail, come back short, be cancelled or report what a racing client
 * would (tests/test_faults.c).  Programs never touch it; by default it
 * holds the system's functions. */
typedef struct msgpipe__w32_calls {
    BOOL(WINAPI *ReadFile)(HANDLE, LPVOID, DWORD, LPDWORD, LPOVERLAPPED);
    BOOL(WINAPI *WriteFile)(HANDLE, LPCVOID, DWORD, LPDWORD, LPOVERLAPPED);
    BOOL(WINAPI *ConnectNamedPipe)(HANDLE, LPOVERLAPPED);
    BOOL(WINAPI *GetOverlappedResult)(HANDLE, LPOVERLAPPED, LPDWORD, BOOL);
    DWORD(WINAPI *WaitForSingleObject)(HANDLE, DWORD);
    DWORD(WINAPI *WaitForMultipleObjects)(DWORD, const HANDLE *, BOOL, DWORD);
    BOOL(WINAPI *CancelIoEx)(HANDLE, LPOVERLAPPED);
    BOOL(WINAPI *PeekNamedPipe)
    (HANDLE, LPVOID, DWORD, LPDWORD, LPDWORD, LPDWORD);
} msgpipe__w32_calls;

extern msgpipe__w32_calls msgpipe__w32;

#endif /* MSGPIPE_WIN32_INTERNAL_H */
