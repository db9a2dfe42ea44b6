/*
 * posix_internal.h - what the POSIX backend's files share.
 *
 * posix_stream.c is the message engine over connected stream file
 * descriptors: framing, receive buffering, timeouts, graceful close.  It
 * does not care how the descriptors were made.  posix_poll.c waits on many
 * of them.  A transport makes them: posix_socket.c with AF_UNIX sockets
 * (the default), posix_fifo.c with FIFOs (MSGPIPE_POSIX_TRANSPORT=fifo);
 * exactly one is built, and it implements the msgpipe__t_* hooks below
 * besides listen, accept, connect and peer identity.  posix_security.c
 * (the twin of win32/win32_security.c) gives the modes that carry the
 * access option, and the peer's user for msgpipe_peer_user and
 * require_same_user.  posix_tcp.c makes tcp:// servers and pipes with
 * either transport, and posix_crypto.c gives the authkey handshake
 * (api/auth.c) its HMAC and random bytes.
 */
#ifndef MSGPIPE_POSIX_INTERNAL_H
#define MSGPIPE_POSIX_INTERNAL_H

#include "backend.h"

#include <pthread.h>
#include <sys/types.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <stddef.h>
#include <stdint.h>

/* Size of each pipe's receive buffer.  Small messages arriving back to back
 * are read many per read(); payloads at least this large go straight from
 * the kernel into the caller's buffer. */
#define MSGPIPE__RBUF_SIZE 16384

/* After a message of at least this many bytes, the next one is read with
 * its payload straight into the caller's buffer (msgpipe__read_direct):
 * from here on that saves more than the copy out of the receive buffer
 * costs, against a read of three vectors instead of one (see "Small and
 * 4 KiB messages" in docs/performance.md). */
#define MSGPIPE__DIRECT_MIN 4096

struct msgpipe {
    int fd;  /* connected, non-blocking, close-on-exec; read */
    int wfd; /* written to: the same as fd for a socket */
    msgpipe__opts opts;

    /* Transport state.  A FIFO is written with SIGPIPE blocked (there is
     * no MSG_NOSIGNAL for write()); a FIFO client is "connecting" until
     * the server has accepted it (see posix_fifo.c).  A sender and a
     * receiver may both finish the connect, so connecting, conn, conn_rc
     * and the peer ids are touched only with conn_lock held (a socket
     * never uses them). */
    int fifo;
    int can_block; /* socket: blocking descriptor, MSG_DONTWAIT per call */
    /* A tcp:// pipe (posix_tcp.c), with either transport; the peer's
     * address as the system recorded it when the pipe was connected. */
    int tcp;
    struct sockaddr_storage tcp_peer;
    socklen_t tcp_peer_len;
    pthread_mutex_t conn_lock;
    int connecting;
    void *conn;  /* the transport's connect state, or NULL */
    int conn_rc; /* once connected: OK, or why not (ECLOSED, EPROTO) */
    int64_t conn_deadline; /* of msgpipe_connect(): msgpipe_peer waits */
    int early_sent; /* bytes were written (under tx_lock), maybe unaccepted */
    int64_t peer_pid, peer_uid, peer_gid; /* FIFO: from the handshake */

    /* Receive side: touched only by the receiving thread. */
    uint8_t *rbuf;     /* rcap bytes, allocated on first use */
    size_t rcap;       /* MSGPIPE__RBUF_SIZE, more only for a while (see
                        * msgpipe__read_direct) */
    size_t rpos, rend; /* unread bytes are rbuf[rpos, rend) */
    /* Length of the last message received into a caller's buffer if it
     * was at least MSGPIPE__DIRECT_MIN bytes, else 0: the next one is
     * read straight into the caller's buffer (msgpipe__read_direct). */
    size_t rx_big;
    int have_len; /* a header was decoded; msg_len bytes follow */
    uint64_t msg_len;
    uint64_t skip; /* bytes of an oversized message still to discard */
    uint8_t *hold; /* payload received before a timeout, kept here */
    size_t hold_len, hold_cap;
    int rx_err;        /* sticky: ECLOSED after end of pipe, EPROTO */
    int rx_wait_first; /* the last read came up short: wait before reading */
    /* The last read came up short and nothing has looked since: a receive
     * with timeout 0 on a pipe in a poller answers ETIMEDOUT without a read
     * (once; see msgpipe__read_some). */
    int rx_may_skip;
    /* msgpipe_poll met an oversized header: the next receive reports it. */
    int emsg_pending;
    uint64_t emsg_len;
    /* Handles with messages (see "Handles" in posix_stream.c): rx_total
     * counts the bytes read from fd so far; msg_start and msg_end are the
     * stream offsets of the current message (its header's first byte, and
     * just past its payload); rx_fds[0..rx_nfds) are the descriptor sets
     * received and not yet handed out, oldest first; rx_lost_end marks a
     * set that could not be kept (no memory). */
    uint64_t rx_total;
    uint64_t msg_start, msg_end;
    struct msgpipe__fdset *rx_fds;
    size_t rx_nfds, rx_fds_cap;
    uint64_t rx_lost_end;
    /* Its registration in a poller and that poller, or NULL
     * (posix_poller.c). */
    struct msgpipe__pl_entry *pl_entry;
    msgpipe_poller *pl_owner;

    /* Send side: touched only by the sending thread. */
    uint8_t *tx; /* unsent tail of a message already committed */
    size_t tx_len, tx_off;
    int tx_err;      /* sticky: ECLOSED once the peer has gone */
    int tx_timed;    /* a send with a finite timeout was made (see read_some) */
    int tx_new_tail; /* this send committed a tail (msgpipe__tx_unlock) */
    /* Guards tx/tx_len/tx_off/tx_err.  The sender holds it for the whole
     * send; a receiver waiting for input only tries it, to push out the
     * tail of a committed message while the sender is idle. */
    pthread_mutex_t tx_lock;
};

struct msgpipe_server {
    int fd;  /* listening (socket) or reading requests (FIFO) */
    int tcp; /* a tcp:// server (posix_tcp.c), with either transport */
    /* With an authkey (Linux): an epoll set of fd and the pipes in a
     * handshake, which is what readiness waits on (msgpipe__b_auth_setup);
     * else -1. */
    int auth_fd;
    int wake[2]; /* shutdown writes one byte to wake[1]; never drained */
    msgpipe__opts opts;
    msgpipe__name name;
    dev_t dev; /* identity of the file this server made */
    ino_t ino;
    /* NAME.lock, held with flock() for the server's life (path names):
     * see msgpipe__server_lock. */
    int lock_fd;
    dev_t lock_dev;
    ino_t lock_ino;
    /* FIFO only: a write end of our own FIFO, so that reads never see end
     * of file between clients; and requests read but not yet handled. */
    int keep_wfd;
    uint8_t *req;
    size_t req_len;
    /* Socket only: a connection accepted when there was no memory for its
     * pipe; the next accept takes it first.  -1 if none. */
    int held_fd;
    /* A client msgpipe_poll() accepted (and admitted) to tell for sure
     * that the server is ready; the next accept returns it. */
    msgpipe *ready;
    /* Its registration in a poller and that poller, or NULL
     * (posix_poller.c). */
    struct msgpipe__pl_entry *pl_entry;
    msgpipe_poller *pl_owner;
};

/* ---- Servers (posix_server.c) ------------------------------------------ */

/* A client waiting for a server to appear or to have room: ETIMEDOUT once
 * the deadline has passed, else sleep a little (*pause ms, growing from 1
 * to 64 as the caller retries) and OK. */
int msgpipe__connect_pause(int64_t deadline, int *pause);

/* A new server with its shutdown pipe; fd and keep_wfd are -1. */
int msgpipe__server_new(const msgpipe__name *name, const msgpipe__opts *o,
                        msgpipe_server **out);

/* Close whatever descriptors are open and free. */
void msgpipe__server_free(msgpipe_server *s);

/* Wait for s->fd to be readable: OK, ESHUTDOWN (wins), or ETIMEDOUT. */
int msgpipe__server_wait(msgpipe_server *s, int64_t deadline);

/* What a wait for a server's readiness watches: auth_fd or fd. */
int msgpipe__server_wait_fd(msgpipe_server *s);

/* 1 once msgpipe_server_shutdown() was called (no waiting). */
int msgpipe__server_is_shut(msgpipe_server *s);

/* What every accept does first: hand out the client msgpipe_poll() took
 * (1, *out set) unless the server is shut down; else 0. */
int msgpipe__server_take_ready(msgpipe_server *s, msgpipe **out);

/* The accept of the socket and the TCP servers, up to the connection: hand
 * out the client msgpipe_poll() took (OK, *fd -1, *out set), or wait until
 * the timeout for a connection and take it (OK, *fd a non-blocking,
 * close-on-exec descriptor, *out a new pipe from msgpipe__pipe_alloc for
 * the caller to put it into).  A client that leaves before it is taken is
 * skipped.  With no memory for the pipe (ENOMEM) the connection is kept
 * (held_fd) for the next accept instead of being dropped. */
int msgpipe__server_accept_fd(msgpipe_server *s, int timeout_ms, int *fd,
                              msgpipe **out);

/* For msgpipe_poll: 1 if msgpipe_accept(..., 0) returns at once.  It finds
 * out by accepting (with the allow_uids check), and keeps the client in
 * s->ready for the next accept. */
int msgpipe__server_probe(msgpipe_server *s);

/* Take the name for this server before looking at what is there: the
 * lock file NAME.lock beside it, held with flock() until the server is
 * freed.  Then no two msgpipe servers are ever between "is the file a
 * dead server's?" and "the file is mine" at once.  OK (or nothing to do
 * for an abstract name), EADDRINUSE while another server holds it, or an
 * error (EBADNAME: no such directory). */
int msgpipe__server_lock(msgpipe_server *s);

/* Remember which file the server made (after creating it), and remove it
 * on close only if it is still that file. */
int msgpipe__server_record_file(msgpipe_server *s);
void msgpipe__server_remove_file(msgpipe_server *s);

/* ---- TCP (posix_tcp.c), with either transport -------------------------- *
 * Each transport hands tcp:// names and TCP servers and pipes (the tcp
 * flags above) to these; its own hooks do the rest, as for a socket. */
int msgpipe__tcp_listen(const msgpipe__name *name, const msgpipe__opts *o,
                        msgpipe_server **out);
int msgpipe__tcp_accept(msgpipe_server *s, int timeout_ms, msgpipe **out);
int msgpipe__tcp_connect(const msgpipe__name *name, const msgpipe__opts *o,
                         int timeout_ms, msgpipe **out);
ssize_t msgpipe__tcp_writev(msgpipe *p, const struct iovec *iov, int cnt,
                            int block);
ssize_t msgpipe__tcp_readv(msgpipe *p, const struct iovec *iov, int cnt,
                           int block);

/* ---- Transport hooks (posix_socket.c or posix_fifo.c) ------------------ */

/* Finish connecting, waiting until the deadline.  OK once connected (at
 * once for a pipe that is); ETIMEDOUT while not yet; an error otherwise
 * (ECLOSED: the server closed without accepting; EPROTO), every time.
 * Safe to call from a sending and a receiving thread at once. */
int msgpipe__t_finish(msgpipe *p, int64_t deadline);

/* Release the transport's state of a pipe, before its descriptors are
 * closed.  A FIFO client that has sent bytes but was not accepted yet
 * first waits (until linger, a deadline) for the server to accept it, as
 * the bytes live only as long as its FIFO is open. */
void msgpipe__t_release(msgpipe *p, int64_t linger);

/* 1 if the server already holds a connection request (no system call). */
int msgpipe__t_server_ready(msgpipe_server *s);

/* Write iov[0..cnt) once to a pipe's write descriptor, never raising
 * SIGPIPE, or read into iov[0..cnt) once from its read descriptor.
 * Returns bytes moved or -1 with errno (as writev/readv).  block is 1 only
 * when p->can_block and the call may wait (then it does, as a blocking
 * call); otherwise the call never waits (EAGAIN). */
ssize_t msgpipe__t_writev(msgpipe *p, const struct iovec *iov, int cnt,
                          int block);
ssize_t msgpipe__t_readv(msgpipe *p, const struct iovec *iov, int cnt,
                         int block);

/* ---- System calls -------------------------------------------------------

 * The backend makes the calls that move data and wait through this table,
 * as SQLite's VFS does, so that tests can make them fail, return EINTR or
 * EAGAIN, or move one byte at a time (tests/test_faults.c).  Programs never
 * touch it; by default it holds the system's functions. */
typedef struct msgpipe__syscalls {
    ssize_t (*read)(int fd, void *buf, size_t n);
    ssize_t (*readv)(int fd, const struct iovec *iov, int cnt);
    ssize_t (*recvmsg)(int fd, struct msghdr *msg, int flags);
    ssize_t (*writev)(int fd, const struct iovec *iov, int cnt);
    ssize_t (*sendmsg)(int fd, const struct msghdr *msg, int flags);
    ssize_t (*send)(int fd, const void *buf, size_t n, int flags);
    /* accept a connection: a non-blocking, close-on-exec descriptor */
    int (*accept)(int lfd);
    int (*poll)(struct pollfd *fds, nfds_t n, int timeout);
} msgpipe__syscalls;

extern msgpipe__syscalls msgpipe__sys;

/* The default msgpipe__sys.accept. */
int msgpipe__accept_cloexec(int lfd);

/* Wait until fd has `events` (POLLIN/POLLOUT) or the deadline passes.
 * Returns 1 ready, 0 timed out, or a negative msgpipe error. */
int msgpipe__wait_fd(int fd, short events, int64_t deadline);

/* Map an errno value to a msgpipe error and record it. */
int msgpipe__from_errno(int err);

/* Make fd non-blocking and close-on-exec; returns 0 or -1 with errno. */
int msgpipe__fd_setup(int fd);

/* fd (from a call that may have failed: -1) made non-blocking and
 * close-on-exec, or -1 with errno, the descriptor closed. */
int msgpipe__fd_adopt(int fd);

/* Receive-side readiness for msgpipe_poll (posix_stream.c).
 * msgpipe__rx_ready: a receive would return at once with something other
 * than ETIMEDOUT, judged from what msgpipe holds (no system call).
 * msgpipe__rx_pump: the descriptor is readable: take what has arrived
 * (without blocking) into the pipe, then answer as msgpipe__rx_ready. */
int msgpipe__rx_ready(msgpipe *p);
int msgpipe__rx_pump(msgpipe *p);

/* Send-side readiness: push out what fits of a committed message's tail
 * if no send is running; returns 1 while some of it is left (then a send
 * would wait for it first). */
int msgpipe__tx_push(msgpipe *p);

/* 1 if a committed message's tail is waiting to go out, or a send is
 * running (it may leave one); no system call. */
int msgpipe__tx_pending(msgpipe *p);

/* Wrap a connected descriptor in a new pipe (takes fd, closing it on
 * failure). */
int msgpipe__pipe_new(int fd, const msgpipe__opts *o, msgpipe **out);

/* A new pipe without descriptors yet (fd and wfd -1): OK or ENOMEM. */
int msgpipe__pipe_alloc(const msgpipe__opts *o, msgpipe **out);

/* ---- Pairs, children, handles (posix_socket.c or posix_fifo.c) ---------- */

/* The transport can carry descriptors with messages (SCM_RIGHTS). */
extern const int msgpipe__t_handles;

/* How many descriptors one end of a pair has: 1 (a socket) or 2 (a FIFO
 * pair: read, then write). */
extern const int msgpipe__t_end_fds;

/* A connected pair of ends, every descriptor close-on-exec: mine[0] and
 * mine[1] read and write this process's end, theirs the other's (equal
 * for a socket).  "theirs" is in blocking mode, as a child (or Python's
 * Connection) expects.  OK or an error. */
int msgpipe__t_pair_fds(int mine[2], int theirs[2]);

/* Wrap the two descriptors of a connected end (equal for a socket) in a
 * new pipe.  Takes them: on failure they are closed. */
int msgpipe__t_wrap(int rfd, int wfd, const msgpipe__opts *o, msgpipe **out);

/* 1 if rfd/wfd are an end of this transport's kind (msgpipe_from_parent),
 * else 0. */
int msgpipe__t_end_check(int rfd, int wfd);

/* Send iov[0..cnt) once with the descriptors fds[0..nfds) attached to its
 * first byte, as msgpipe__t_writev (socket transport only). */
ssize_t msgpipe__t_sendfds(msgpipe *p, const struct iovec *iov, int cnt,
                           const int *fds, size_t nfds, int block);

/* The transport's receive found descriptors (each close-on-exec) with the
 * `nread` bytes just read (before p->rx_total counts them); trunc: the
 * system dropped some (MSG_CTRUNC).  Takes fds (posix_stream.c). */
void msgpipe__rx_got_fds(msgpipe *p, size_t nread, const int *fds, size_t n,
                         int trunc);

/* ---- The poller (posix_poller.c) ----------------------------------------- */

/* A pointer that one thread may set while another reads it (a pipe's
 * registration: added from one thread, looked at by a receive in
 * another). */
#if defined(__GNUC__) || defined(__clang__)
#define MSGPIPE__LOAD(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define MSGPIPE__STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)
#else
#define MSGPIPE__LOAD(x) (x)
#define MSGPIPE__STORE(x, v) ((x) = (v))
#endif

/* A pipe or server leaves its poller (msgpipe_close, msgpipe_server_close),
 * before its descriptors are closed. */
void msgpipe__pl_forget_pipe(msgpipe *p);
void msgpipe__pl_forget_server(msgpipe_server *s);

/* A receive left a message (or the end of the pipe) ready in p, or a send
 * kept back the tail of a message: the poller p is in looks at it on its
 * next wait (tail: at once, waking a wait that runs). */
void msgpipe__pl_touch(msgpipe *p, int tail);

/* posix_security.c: the mode of a server's name for the access option;
 * requests_only for a FIFO others only write requests to. */
mode_t msgpipe__p_mode(int access, int requests_only);

#endif /* MSGPIPE_POSIX_INTERNAL_H */
