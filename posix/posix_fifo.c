/*
 * posix_fifo.c - the FIFO transport of the POSIX backend
 * (MSGPIPE_POSIX_TRANSPORT=fifo): named pipes in the Unix sense, for
 * systems and sandboxes that allow mkfifo() but not AF_UNIX sockets.
 * The API, the framing and every behaviour are those of the socket
 * transport; docs/fifo.md describes the design.  In short:
 *
 * - The server's name is a well-known FIFO (mode 0600; 0620 or 0622 with
 *   wider access: others may only write requests into it).  The server
 *   holds it open for reading, and for writing too, so that its reads never
 *   see end of file between clients.
 * - A client makes a private directory (0700) inside its own per-user
 *   directory (0700), and in it two FIFOs (0600) with random names: c2s
 *   (client to server) and s2c.  It writes one request record, at most
 *   PIPE_BUF bytes so that concurrent requests never interleave, naming
 *   them and its pid.  Then msgpipe_connect() returns, as a socket connect
 *   does once queued: the client may send at once (into c2s, which it
 *   holds open for reading too until accepted, so the bytes wait there).
 * - msgpipe_accept() takes a request, checks that both FIFOs and their
 *   directory belong to one user and are private, opens them, and writes
 *   an acceptance record (its pid, uid, gid) into s2c.  The client reads
 *   that record before anything else, drops its own extra ends, and
 *   removes the FIFOs and the directory: the open descriptors are all
 *   that is left.  From then on each FIFO carries the same length-prefixed
 *   messages as a socket.
 *
 * Peer identity: the uid and gid are those of the client's FIFOs (the
 * files cannot lie about their owner); the pid is the one the client
 * claims, checked on Linux against the owner of /proc/PID.  Nobody can
 * make the server open another user's FIFOs: they sit in that user's
 * private directories under random names, and a request naming files of
 * mixed owners, or files that are not private, is ignored.
 *
 * End of pipe is end of file on read and EPIPE on write.  There is no
 * MSG_NOSIGNAL for write(), so every write to a FIFO blocks SIGPIPE in
 * the calling thread for its duration and consumes the SIGPIPE it raised.
 */
#include "posix_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef O_NOFOLLOW
#define O_NOFOLLOW 0
#endif

/* The longest request record: what one write() to a FIFO may carry
 * without being interleaved with another writer's (PIPE_BUF; POSIX
 * guarantees at least 512). */
#ifdef PIPE_BUF
#define MSGPIPE__REQ_MAX (PIPE_BUF < 4096 ? PIPE_BUF : 4096)
#else
#define MSGPIPE__REQ_MAX 512
#endif

/* Request: "MPF1", 2-byte big-endian total length, 8-byte big-endian pid,
 * then the c2s path and the s2c path, each NUL-terminated. */
#define MSGPIPE__REQ_HDR 14
/* Acceptance: "MPA1", then the server's pid, uid and gid, 8 bytes each. */
#define MSGPIPE__ACK_LEN 28

/* Longest path of a client FIFO. */
#define MSGPIPE__FIFO_PATH 256

/* Names are limited as for sockets, so that a name valid with one
 * transport is valid with the other. */
const msgpipe__backend_info msgpipe__backend = {
    "posix-fifo",
    MSGPIPE__STYLE_POSIX,
    sizeof(((struct sockaddr_un *)0)->sun_path) - 1,
    0,  /* no abstract names */
    16, /* pending: unused (the request FIFO holds the queue); TCP's */
    1,  /* uids: the owners of the FIFOs */
    1   /* tcp:// (posix_tcp.c): a socket, whatever carries local names */
};

/* A client's state until the server has accepted it. */
typedef struct msgpipe__fifo_conn {
    char dir[MSGPIPE__FIFO_PATH];
    char c2s[MSGPIPE__FIFO_PATH + 24]; /* dir + "/c2s-" + 16 hex digits */
    char s2c[MSGPIPE__FIFO_PATH + 24];
    int c2s_rd; /* our own read end of c2s: bytes sent wait in it */
    int s2c_wr; /* our own write end of s2c: no end of file before accept */
    uint8_t ack[MSGPIPE__ACK_LEN];
    size_t ack_len;
} msgpipe__fifo_conn;

/* ---- Small helpers ------------------------------------------------------ */

/* writev() that never raises SIGPIPE (see the top of this file). */
static ssize_t msgpipe__writev_nosig(int fd, const struct iovec *iov, int cnt)
{
    sigset_t set, old, pend;
    int e, sig;
    ssize_t rc;

    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    rc = msgpipe__sys.writev(fd, iov, cnt);
    e = errno;
    /* Take the SIGPIPE this write raised before unblocking it.  (If the
     * program itself had a SIGPIPE pending and blocked in this thread, it
     * is taken too: looking before every write would cost a system call
     * per message for that case alone.) */
    if (rc < 0 && e == EPIPE && !sigismember(&old, SIGPIPE)) {
        sigemptyset(&pend);
        sigpending(&pend);
        if (sigismember(&pend, SIGPIPE))
            sigwait(&set, &sig);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
    return rc;
}

/* A FIFO's descriptors stay non-blocking (there is no MSG_DONTWAIT for
 * read() and write()): block is always 0 here (p->can_block is 0). */
ssize_t msgpipe__t_readv(msgpipe *p, const struct iovec *iov, int cnt,
                         int block)
{
    if (p->tcp)
        return msgpipe__tcp_readv(p, iov, cnt, block);
    (void)block;
    return msgpipe__sys.readv(p->fd, iov, cnt);
}

ssize_t msgpipe__t_writev(msgpipe *p, const struct iovec *iov, int cnt,
                          int block)
{
    ssize_t n;

    if (p->tcp)
        return msgpipe__tcp_writev(p, iov, cnt, block);
    (void)block;
    n = msgpipe__writev_nosig(p->wfd, iov, cnt);

    /* Only a flag of the sending side (tx_lock is held): the connect
     * state itself may be freed by the receiving thread meanwhile. */
    if (n > 0)
        p->early_sent = 1;
    return n;
}

static ssize_t msgpipe__write_nosig(int fd, const void *buf, size_t len)
{
    struct iovec v;

    v.iov_base = (void *)buf;
    v.iov_len = len;
    return msgpipe__writev_nosig(fd, &v, 1);
}

static int msgpipe__open_fifo(const char *path, int flags)
{
    return msgpipe__fd_adopt(
        open(path, flags | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC));
}

/* 16 hex digits from /dev/urandom (or, failing that, from the clock, the
 * pid and an address: names must be unguessable by other users, and
 * unique; the private directory already makes them unreachable). */
static void msgpipe__random_hex(char out[17])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char r[8];
    int fd, i, ok = 0;

    fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ok = read(fd, r, sizeof(r)) == (ssize_t)sizeof(r);
        close(fd);
    }
    if (!ok) {
        struct timespec ts;
        uint64_t x;
        clock_gettime(CLOCK_REALTIME, &ts);
        x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^
            ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)&ts;
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdULL;
        x ^= x >> 33;
        msgpipe__put_be64(r, x);
    }
    for (i = 0; i < 8; i++) {
        out[2 * i] = hex[r[i] >> 4];
        out[2 * i + 1] = hex[r[i] & 15];
    }
    out[16] = '\0';
}

/* Remove a client's FIFOs and directory (best effort). */
static void msgpipe__remove_conn_files(const char *c2s, const char *s2c,
                                       const char *dir)
{
    if (c2s != NULL)
        unlink(c2s);
    if (s2c != NULL)
        unlink(s2c);
    if (dir != NULL)
        rmdir(dir);
}

/* ---- Server ------------------------------------------------------------- */

/* mkfifo() found the name taken: a dead server's FIFO (no reader) is
 * removed and 1 returned to retry; anything else is left alone. */
static int msgpipe__fifo_reclaim(const char *path)
{
    struct stat st;
    int fd;

    if (lstat(path, &st) != 0)
        return errno == ENOENT;
    if (!S_ISFIFO(st.st_mode))
        return 0;
    fd = msgpipe__open_fifo(path, O_WRONLY);
    if (fd >= 0) {
        close(fd);
        return 0; /* a live server reads it */
    }
    if (errno != ENXIO)
        return errno == ENOENT;
    return unlink(path) == 0 || errno == ENOENT;
}

int msgpipe__b_listen(const msgpipe__name *name, const msgpipe__opts *o,
                      msgpipe_server **out)
{
    mode_t mode = msgpipe__p_mode(o->access, 1);
    msgpipe_server *s;
    struct stat st;
    int rc, tries;

    if (name->kind == MSGPIPE__NAME_TCP)
        return msgpipe__tcp_listen(name, o, out);
    rc = msgpipe__server_new(name, o, &s);
    if (rc != MSGPIPE_OK)
        return rc;
    /* Holding the name's lock, no other server is between its mkfifo()
     * and open() - when the FIFO has no reader and looks dead - while we
     * judge a FIFO left there. */
    rc = msgpipe__server_lock(s);
    if (rc != MSGPIPE_OK)
        goto fail;
    for (tries = 0;; tries++) {
        if (mkfifo(name->sys, mode) == 0)
            break;
        if (errno == ENOENT || errno == ENOTDIR) {
            msgpipe__set_os_error(errno); /* no such directory */
            rc = MSGPIPE_EBADNAME;
            goto fail;
        }
        if (errno != EEXIST) {
            rc = msgpipe__from_errno(errno);
            goto fail;
        }
        if (tries >= 3 || !msgpipe__fifo_reclaim(name->sys)) {
            msgpipe__set_os_error(EEXIST);
            rc = MSGPIPE_EADDRINUSE;
            goto fail;
        }
    }
    /* mkfifo() applied the umask, which can only narrow the mode; set it
     * exactly. */
    if (chmod(name->sys, mode) != 0 ||
        (rc = msgpipe__server_record_file(s)) != MSGPIPE_OK) {
        rc = rc != MSGPIPE_OK ? rc : msgpipe__from_errno(errno);
        unlink(name->sys);
        goto fail;
    }
    s->fd = msgpipe__open_fifo(name->sys, O_RDONLY);
    if (s->fd >= 0)
        s->keep_wfd = msgpipe__open_fifo(name->sys, O_WRONLY);
    if (s->fd < 0 || s->keep_wfd < 0 || fstat(s->fd, &st) != 0) {
        rc = msgpipe__from_errno(errno);
        msgpipe__server_remove_file(s);
        goto fail;
    }
    if (st.st_dev != s->dev || st.st_ino != s->ino) {
        /* Replaced between mkfifo() and open(): not ours. */
        rc = MSGPIPE_EADDRINUSE;
        goto fail;
    }
    s->req = (uint8_t *)msgpipe__malloc(2 * MSGPIPE__REQ_MAX);
    if (s->req == NULL) {
        rc = MSGPIPE_ENOMEM;
        msgpipe__server_remove_file(s);
        goto fail;
    }
    *out = s;
    return MSGPIPE_OK;
fail:
    msgpipe__server_free(s);
    return rc;
}

/* Find the next whole request in s->req.  Returns its length (> 0), or 0
 * if none is complete yet.  Bytes that cannot start a request (only a
 * hostile writer produces them) are dropped. */
static size_t msgpipe__next_request(msgpipe_server *s)
{
    size_t len, i;

    for (;;) {
        if (s->req_len < MSGPIPE__REQ_HDR)
            return 0;
        len = ((size_t)s->req[4] << 8) | s->req[5];
        if (memcmp(s->req, "MPF1", 4) == 0 && len >= MSGPIPE__REQ_HDR + 4 &&
            len <= MSGPIPE__REQ_MAX)
            return s->req_len >= len ? len : 0;
        /* Resynchronise at the next "MPF1". */
        for (i = 1; i + 4 <= s->req_len; i++)
            if (memcmp(s->req + i, "MPF1", 4) == 0)
                break;
        if (i + 4 > s->req_len)
            i = s->req_len > 3 ? s->req_len - 3 : 0;
        memmove(s->req, s->req + i, s->req_len - i);
        s->req_len -= i;
    }
}

static void msgpipe__drop_request(msgpipe_server *s, size_t len)
{
    memmove(s->req, s->req + len, s->req_len - len);
    s->req_len -= len;
}

int msgpipe__t_server_ready(msgpipe_server *s)
{
    if (s->tcp)
        return s->held_fd >= 0;
    return msgpipe__next_request(s) > 0;
}

/* Is `path`, as lstat() saw it, a private FIFO of uid? */
static int msgpipe__private_fifo(const struct stat *st, uid_t uid)
{
    return S_ISFIFO(st->st_mode) && st->st_uid == uid &&
           (st->st_mode & 0077) == 0;
}

/* On Linux, a claimed pid must be a process of the FIFOs' owner. */
static int msgpipe__pid_of_uid(int64_t pid, uid_t uid)
{
#ifdef __linux__
    char path[64];
    struct stat st;

    snprintf(path, sizeof(path), "/proc/%lld", (long long)pid);
    if (stat(path, &st) == 0)
        return st.st_uid == uid;
    if (stat("/proc/self", &st) != 0)
        return 1; /* no /proc here: nothing to check against */
    return 0;     /* no such process */
#else
    (void)uid;
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
#endif
}

/* A request's two FIFOs, checked: both in one directory, which is
 * private to their owner, and both private FIFOs of that owner. */
typedef struct msgpipe__req_files {
    const char *c2s, *s2c;
    char dir[MSGPIPE__FIFO_PATH];
    struct stat sc, ss;
    int64_t pid;
} msgpipe__req_files;

/* 1 if the request record names files that pass the checks (then *f
 * describes them), 0 if it is to be ignored. */
static int msgpipe__check_request(const uint8_t *rec, size_t len,
                                  msgpipe__req_files *f)
{
    const char *end = (const char *)rec + len, *slash;
    struct stat sd;

    f->c2s = (const char *)rec + MSGPIPE__REQ_HDR;
    f->pid = (int64_t)msgpipe__get_be64(rec + 6);
    f->s2c = memchr(f->c2s, '\0', (size_t)(end - f->c2s));
    if (f->s2c == NULL || ++f->s2c >= end ||
        memchr(f->s2c, '\0', (size_t)(end - f->s2c)) == NULL)
        return 0;
    if (f->pid <= 0 || f->c2s[0] != '/' || f->s2c[0] != '/')
        return 0;
    slash = strrchr(f->c2s, '/');
    if ((size_t)(slash - f->c2s) >= sizeof(f->dir) ||
        strncmp(f->c2s, f->s2c, (size_t)(slash - f->c2s) + 1) != 0 ||
        strchr(f->s2c + (slash - f->c2s) + 1, '/') != NULL)
        return 0;
    memcpy(f->dir, f->c2s, (size_t)(slash - f->c2s));
    f->dir[slash - f->c2s] = '\0';
    if (lstat(f->c2s, &f->sc) != 0 || lstat(f->s2c, &f->ss) != 0 ||
        lstat(f->dir, &sd) != 0)
        return 0;
    return msgpipe__private_fifo(&f->sc, f->sc.st_uid) &&
           msgpipe__private_fifo(&f->ss, f->sc.st_uid) && S_ISDIR(sd.st_mode) &&
           sd.st_uid == f->sc.st_uid && (sd.st_mode & 0077) == 0;
}

/* Take one request: 1 and a new pipe in *out if it holds, 0 to ignore it
 * (malformed, not private, a client that is gone), or a negative error
 * that the caller must report (out of memory or descriptors).  With an
 * error nothing was done that the client can see: the request may be
 * taken again later. */
static int msgpipe__take_request(msgpipe_server *s, const uint8_t *rec,
                                 size_t len, msgpipe **out)
{
    msgpipe__req_files f;
    struct stat fc, fs;
    uint8_t ack[MSGPIPE__ACK_LEN];
    int rfd = -1, wfd = -1, rc;
    msgpipe *p;

    if (!msgpipe__check_request(rec, len, &f))
        return 0;
    if (!msgpipe__pid_of_uid(f.pid, f.sc.st_uid)) {
        /* Gone (or never that user's): if the process is gone, what it
         * left - checked above to be private FIFOs in a private directory
         * - goes too. */
        if (kill((pid_t)f.pid, 0) != 0 && errno == ESRCH)
            msgpipe__remove_conn_files(f.c2s, f.s2c, f.dir);
        return 0;
    }

    rfd = msgpipe__open_fifo(f.c2s, O_RDONLY);
    if (rfd < 0)
        return errno == EMFILE || errno == ENFILE ? msgpipe__from_errno(errno)
                                                  : 0;
    wfd = msgpipe__open_fifo(f.s2c, O_WRONLY);
    if (wfd < 0) {
        rc = errno;
        close(rfd);
        if (rc == ENXIO) {
            /* The client is gone (nobody reads s2c): clean up after it,
             * where this user may. */
            msgpipe__remove_conn_files(f.c2s, f.s2c, f.dir);
            return 0;
        }
        return rc == EMFILE || rc == ENFILE ? msgpipe__from_errno(rc) : 0;
    }
    /* The files opened must be the ones checked. */
    if (fstat(rfd, &fc) != 0 || fstat(wfd, &fs) != 0 ||
        fc.st_dev != f.sc.st_dev || fc.st_ino != f.sc.st_ino ||
        fs.st_dev != f.ss.st_dev || fs.st_ino != f.ss.st_ino)
        goto ignore;
    /* The pipe is made before the client is told: after the acceptance
     * nothing may fail. */
    rc = msgpipe__pipe_new(rfd, &s->opts, &p);
    if (rc != MSGPIPE_OK) {
        close(wfd);
        return rc;
    }
    p->wfd = wfd;
    p->fifo = 1;
    memcpy(ack, "MPA1", 4);
    msgpipe__put_be64(ack + 4, (uint64_t)getpid());
    msgpipe__put_be64(ack + 12, (uint64_t)geteuid());
    msgpipe__put_be64(ack + 20, (uint64_t)getegid());
    if (msgpipe__write_nosig(wfd, ack, sizeof(ack)) != (ssize_t)sizeof(ack)) {
        msgpipe__b_close(p); /* the client went away meanwhile */
        return 0;
    }
    p->peer_pid = f.pid;
    p->peer_uid = (int64_t)f.sc.st_uid;
    p->peer_gid = (int64_t)f.sc.st_gid;
    *out = p;
    return 1;
ignore:
    close(rfd);
    close(wfd);
    return 0;
}

/* Tell a client still waiting when its server closes that it will not be
 * accepted ("MPR1": it then reports MSGPIPE_ECLOSED), as a socket's
 * queued connections are reset. */
static void msgpipe__refuse_request(const uint8_t *rec, size_t len)
{
    msgpipe__req_files f;
    uint8_t no[MSGPIPE__ACK_LEN];
    struct stat fs;
    int wfd;

    if (!msgpipe__check_request(rec, len, &f))
        return;
    wfd = msgpipe__open_fifo(f.s2c, O_WRONLY);
    if (wfd < 0)
        return; /* gone */
    memset(no, 0, sizeof(no));
    memcpy(no, "MPR1", 4);
    if (fstat(wfd, &fs) == 0 && fs.st_dev == f.ss.st_dev &&
        fs.st_ino == f.ss.st_ino)
        (void)msgpipe__write_nosig(wfd, no, sizeof(no));
    close(wfd);
}

int msgpipe__b_accept(msgpipe_server *s, int timeout_ms, msgpipe **out)
{
    int64_t deadline = msgpipe__deadline(timeout_ms);
    size_t len;
    ssize_t n;
    int rc;

    if (s->tcp)
        return msgpipe__tcp_accept(s, timeout_ms, out);
    if (msgpipe__server_take_ready(s, out))
        return MSGPIPE_OK;
    for (;;) {
        if (msgpipe__server_is_shut(s))
            return MSGPIPE_ESHUTDOWN;
        while ((len = msgpipe__next_request(s)) > 0) {
            uint8_t rec[MSGPIPE__REQ_MAX];
            memcpy(rec, s->req, len);
            rc = msgpipe__take_request(s, rec, len, out);
            /* Out of descriptors or memory: the request stays first in
             * line for the next call ("close some and call again"). */
            if (rc < 0)
                return rc;
            msgpipe__drop_request(s, len);
            if (rc > 0)
                return MSGPIPE_OK;
        }
        n = msgpipe__sys.read(s->fd, s->req + s->req_len,
                              2 * MSGPIPE__REQ_MAX - s->req_len);
        if (n > 0) {
            s->req_len += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return msgpipe__from_errno(errno);
        rc = msgpipe__server_wait(s, deadline);
        if (rc != MSGPIPE_OK)
            return rc;
    }
}

/* How long a closing server waits for clients that are writing their
 * request at that moment (a write of one record: microseconds). */
#define MSGPIPE__CLOSE_DRAIN_MS 100

void msgpipe__b_server_close(msgpipe_server *s)
{
    int64_t deadline = msgpipe__deadline(MSGPIPE__CLOSE_DRAIN_MS);
    size_t len;
    ssize_t n;

    if (s->tcp) {
        msgpipe__server_free(s);
        return;
    }
    /* First the name goes, so that no new client can write a request;
     * then every request still queued is refused, until end of file says
     * that no client has the FIFO open any more. */
    msgpipe__server_remove_file(s);
    if (s->keep_wfd >= 0) {
        close(s->keep_wfd);
        s->keep_wfd = -1;
    }
    for (;;) {
        while ((len = msgpipe__next_request(s)) > 0) {
            msgpipe__refuse_request(s->req, len);
            msgpipe__drop_request(s, len);
        }
        if (s->fd < 0 || s->req == NULL)
            break;
        n = msgpipe__sys.read(s->fd, s->req + s->req_len,
                              2 * MSGPIPE__REQ_MAX - s->req_len);
        if (n > 0) {
            s->req_len += (size_t)n;
            continue;
        }
        if (n == 0 ||
            (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            break;
        if (errno != EINTR && msgpipe__wait_fd(s->fd, POLLIN, deadline) <= 0)
            break;
    }
    msgpipe__server_free(s);
}

/* ---- Client ------------------------------------------------------------- */

/* The per-user directory that holds clients' private directories:
 * $XDG_RUNTIME_DIR/msgpipe-fifo-UID, else /tmp/msgpipe-fifo-UID; created
 * 0700, and used only if it is a directory of ours that nobody else may
 * enter.  The server's name says nothing about where this is, so a
 * variable naming a directory that does not exist (or a file) must not
 * make connecting to a path fail: /tmp is used then. */
static int msgpipe__user_dir_in(const char *base, char *out, size_t cap)
{
    struct stat st;
    int n;

    n = snprintf(out, cap, "%s/msgpipe-fifo-%lu", base,
                 (unsigned long)geteuid());
    if (n < 0 || (size_t)n >= cap)
        return MSGPIPE_ENAMETOOLONG;
    if (mkdir(out, 0700) != 0 && errno != EEXIST)
        return msgpipe__from_errno(errno);
    if (lstat(out, &st) != 0)
        return msgpipe__from_errno(errno);
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
        (st.st_mode & 0077) != 0) {
        msgpipe__set_os_error(EPERM);
        return MSGPIPE_EACCES; /* somebody else's, or not private */
    }
    return MSGPIPE_OK;
}

static int msgpipe__user_dir(char *out, size_t cap)
{
    const char *base = getenv("XDG_RUNTIME_DIR");
    struct stat st;

    if (base != NULL && base[0] == '/' && stat(base, &st) == 0 &&
        S_ISDIR(st.st_mode) &&
        msgpipe__user_dir_in(base, out, cap) == MSGPIPE_OK)
        return MSGPIPE_OK;
    return msgpipe__user_dir_in("/tmp", out, cap);
}

/* Remove what clients of this user that died before being accepted left
 * in the per-user directory ("PID-XXXXXX" of a process that is gone). */
static void msgpipe__sweep(const char *udir)
{
    char path[MSGPIPE__FIFO_PATH], sub[MSGPIPE__FIFO_PATH];
    struct dirent *de, *fe;
    DIR *d, *f;
    long pid;
    char *endp;

    d = opendir(udir);
    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        pid = strtol(de->d_name, &endp, 10);
        if (pid <= 0 || *endp != '-' || kill((pid_t)pid, 0) == 0 ||
            errno != ESRCH)
            continue;
        if (snprintf(path, sizeof(path), "%s/%s", udir, de->d_name) >=
            (int)sizeof(path))
            continue;
        f = opendir(path);
        if (f != NULL) {
            while ((fe = readdir(f)) != NULL) {
                if (strncmp(fe->d_name, "c2s-", 4) != 0 &&
                    strncmp(fe->d_name, "s2c-", 4) != 0)
                    continue;
                if (snprintf(sub, sizeof(sub), "%s/%s", path, fe->d_name) <
                    (int)sizeof(sub))
                    unlink(sub);
            }
            closedir(f);
        }
        rmdir(path);
    }
    closedir(d);
}

static void msgpipe__conn_free(msgpipe__fifo_conn *c, int remove)
{
    if (c->c2s_rd >= 0)
        close(c->c2s_rd);
    if (c->s2c_wr >= 0)
        close(c->s2c_wr);
    if (remove)
        msgpipe__remove_conn_files(c->c2s, c->s2c, c->dir);
    msgpipe__free(c);
}

/* Make the private directory, the two FIFOs, and open the client's ends:
 * *rfd reads s2c, *wfd writes c2s. */
static int msgpipe__conn_new(msgpipe__fifo_conn **out, int *rfd, int *wfd)
{
    char udir[MSGPIPE__FIFO_PATH], rnd[17];
    msgpipe__fifo_conn *c;
    int rc, n;

    rc = msgpipe__user_dir(udir, sizeof(udir));
    if (rc != MSGPIPE_OK)
        return rc;
    msgpipe__sweep(udir);
    c = (msgpipe__fifo_conn *)msgpipe__calloc(1, sizeof(*c));
    if (c == NULL)
        return MSGPIPE_ENOMEM;
    c->c2s_rd = c->s2c_wr = -1;
    *rfd = *wfd = -1;
    n = snprintf(c->dir, sizeof(c->dir), "%s/%ld-XXXXXX", udir, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(c->dir) - 24) {
        msgpipe__free(c);
        return MSGPIPE_ENAMETOOLONG;
    }
    if (mkdtemp(c->dir) == NULL) {
        rc = msgpipe__from_errno(errno);
        msgpipe__free(c);
        return rc;
    }
    msgpipe__random_hex(rnd);
    snprintf(c->c2s, sizeof(c->c2s), "%s/c2s-%s", c->dir, rnd);
    snprintf(c->s2c, sizeof(c->s2c), "%s/s2c-%s", c->dir, rnd);
    if (mkfifo(c->c2s, 0600) != 0 || mkfifo(c->s2c, 0600) != 0)
        goto fail;
    /* Our own extra ends until accepted: a reader on c2s lets us open it
     * for writing (and keeps what we send), a writer on s2c keeps our
     * reads from seeing end of file before the server opens it. */
    *rfd = msgpipe__open_fifo(c->s2c, O_RDONLY);
    if (*rfd < 0)
        goto fail;
    c->s2c_wr = msgpipe__open_fifo(c->s2c, O_WRONLY);
    c->c2s_rd = msgpipe__open_fifo(c->c2s, O_RDONLY);
    if (c->s2c_wr < 0 || c->c2s_rd < 0)
        goto fail;
    *wfd = msgpipe__open_fifo(c->c2s, O_WRONLY);
    if (*wfd < 0)
        goto fail;
#ifdef F_SETPIPE_SZ
    /* Linux: a larger buffer than the default 64 KiB lets a large message
     * go in one write, and a burst without waiting for the reader.  1 MiB
     * is the unprivileged maximum by default; failing is harmless. */
    (void)fcntl(*wfd, F_SETPIPE_SZ, 1 << 20);
    (void)fcntl(*rfd, F_SETPIPE_SZ, 1 << 20);
#endif
    *out = c;
    return MSGPIPE_OK;
fail:
    rc = msgpipe__from_errno(errno);
    if (*rfd >= 0)
        close(*rfd);
    *rfd = -1;
    msgpipe__conn_free(c, 1);
    return rc;
}

/* Write the request into the server's FIFO: OK, or a retryable ENOENT (no
 * server) / EBUSY (its FIFO is full), or a final error. */
static int msgpipe__send_request(const msgpipe__name *name,
                                 const msgpipe__opts *o,
                                 const msgpipe__fifo_conn *c)
{
    uint8_t rec[MSGPIPE__REQ_MAX];
    size_t a = strlen(c->c2s) + 1, b = strlen(c->s2c) + 1;
    size_t len = MSGPIPE__REQ_HDR + a + b;
    struct stat st;
    ssize_t n;
    int fd, e;

    if (len > sizeof(rec))
        return MSGPIPE_ENAMETOOLONG;
    fd = msgpipe__open_fifo(name->sys, O_WRONLY);
    if (fd < 0) {
        e = errno;
        msgpipe__set_os_error(e);
        if (e == ENOENT || e == ENXIO || e == ENOTDIR || e == ELOOP)
            return MSGPIPE_ENOENT; /* nobody reads it: no server */
        return msgpipe__from_errno(e);
    }
    if (fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) {
        close(fd);
        return MSGPIPE_ENOENT;
    }
    if ((o->require_server_uid >= 0 &&
         (int64_t)st.st_uid != o->require_server_uid) ||
        (o->require_same_user && st.st_uid != geteuid())) {
        /* Not even the request goes to a server of the wrong user. */
        close(fd);
        msgpipe__set_os_error(EPERM);
        return MSGPIPE_EACCES;
    }
    memcpy(rec, "MPF1", 4);
    rec[4] = (uint8_t)(len >> 8);
    rec[5] = (uint8_t)len;
    msgpipe__put_be64(rec + 6, (uint64_t)getpid());
    memcpy(rec + MSGPIPE__REQ_HDR, c->c2s, a);
    memcpy(rec + MSGPIPE__REQ_HDR + a, c->s2c, b);
    /* One write of at most PIPE_BUF bytes: all or nothing, never mixed
     * with another client's. */
    do {
        n = msgpipe__write_nosig(fd, rec, len);
    } while (n < 0 && errno == EINTR);
    e = errno;
    close(fd);
    if (n == (ssize_t)len)
        return MSGPIPE_OK;
    msgpipe__set_os_error(e);
    if (n < 0 && (e == EAGAIN || e == EWOULDBLOCK))
        return MSGPIPE_EBUSY;
    if (n < 0 && e == EPIPE)
        return MSGPIPE_ENOENT; /* the server went away */
    return MSGPIPE_EIO;
}

int msgpipe__b_connect(const msgpipe__name *name, const msgpipe__opts *o,
                       int timeout_ms, msgpipe **out)
{
    int64_t deadline = msgpipe__deadline(timeout_ms);
    msgpipe__fifo_conn *c = NULL;
    int rfd = -1, wfd = -1, rc, pause = 1;
    msgpipe *p;

    if (name->kind == MSGPIPE__NAME_TCP)
        return msgpipe__tcp_connect(name, o, timeout_ms, out);
    if (name->kind != MSGPIPE__NAME_PATH)
        return MSGPIPE_ENOTSUP;
    for (;;) {
        /* Make the FIFOs only once a server is seen to be there. */
        if (c == NULL && access(name->sys, F_OK) == 0) {
            rc = msgpipe__conn_new(&c, &rfd, &wfd);
            if (rc != MSGPIPE_OK)
                return rc;
        }
        rc = c != NULL ? msgpipe__send_request(name, o, c) : MSGPIPE_ENOENT;
        if (rc == MSGPIPE_OK)
            break;
        if ((rc != MSGPIPE_ENOENT && rc != MSGPIPE_EBUSY) || timeout_ms == 0)
            goto fail;
        rc = msgpipe__connect_pause(deadline, &pause);
        if (rc != MSGPIPE_OK)
            goto fail;
    }
    rc = msgpipe__pipe_new(rfd, o, &p);
    rfd = -1;
    if (rc != MSGPIPE_OK)
        goto fail;
    p->wfd = wfd;
    p->fifo = 1;
    p->connecting = 1;
    p->conn_deadline = deadline;
    p->conn = c;
    *out = p;
    return MSGPIPE_OK;
fail:
    if (rfd >= 0)
        close(rfd);
    if (wfd >= 0)
        close(wfd);
    if (c != NULL)
        msgpipe__conn_free(c, 1);
    return rc;
}

/* One step of finishing the connect, with conn_lock held: read what has
 * come of the answer without waiting.  ETIMEDOUT while it is incomplete;
 * otherwise the connect's result, which stays in p->conn_rc. */
static int msgpipe__finish_locked(msgpipe *p)
{
    msgpipe__fifo_conn *c = (msgpipe__fifo_conn *)p->conn;
    ssize_t n;
    int rc;

    if (!p->connecting)
        return p->conn_rc;
    while (c->ack_len < MSGPIPE__ACK_LEN) {
        /* Exactly the answer record: what follows it is messages. */
        n = msgpipe__sys.read(p->fd, c->ack + c->ack_len,
                              MSGPIPE__ACK_LEN - c->ack_len);
        if (n > 0) {
            c->ack_len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return MSGPIPE_ETIMEDOUT;
        /* End of file cannot come while we hold s2c_wr; a read error. */
        return msgpipe__from_errno(n < 0 ? errno : EIO);
    }
    if (memcmp(c->ack, "MPA1", 4) == 0) {
        rc = MSGPIPE_OK;
        p->peer_pid = (int64_t)msgpipe__get_be64(c->ack + 4);
        p->peer_uid = (int64_t)msgpipe__get_be64(c->ack + 12);
        p->peer_gid = (int64_t)msgpipe__get_be64(c->ack + 20);
    } else if (memcmp(c->ack, "MPR1", 4) == 0) {
        rc = MSGPIPE_ECLOSED; /* the server closed before accepting us */
    } else {
        rc = MSGPIPE_EPROTO;
    }
    /* Answered: drop our extra ends, so that end of pipe works both ways,
     * and remove the names - the open descriptors are all that remains. */
    p->connecting = 0;
    p->conn = NULL;
    p->conn_rc = rc;
    msgpipe__conn_free(c, 1);
    return rc;
}

int msgpipe__t_finish(msgpipe *p, int64_t deadline)
{
    int rc, w;

    if (p->tcp)
        return MSGPIPE_OK; /* a socket is connected from the start */
    /* The sender and the receiver may both be here: each step is taken
     * with conn_lock held, and the waiting is done without it, so that a
     * sender (deadline 0) never waits behind a receiver. */
    for (;;) {
        pthread_mutex_lock(&p->conn_lock);
        rc = msgpipe__finish_locked(p);
        pthread_mutex_unlock(&p->conn_lock);
        if (rc != MSGPIPE_ETIMEDOUT)
            return rc;
        w = msgpipe__wait_fd(p->fd, POLLIN, deadline);
        if (w < 0)
            return w;
        if (w == 0)
            return MSGPIPE_ETIMEDOUT;
    }
}

void msgpipe__t_release(msgpipe *p, int64_t linger)
{
    /* Bytes sent before the server accepted wait in c2s, which vanishes
     * when its last descriptor closes: give the server until linger to
     * take them over, as a socket's queued connection would keep them.
     * (Closing is never concurrent with other calls on the pipe.) */
    if (p->conn != NULL && p->early_sent)
        (void)msgpipe__t_finish(p, linger);
    if (p->conn != NULL) {
        msgpipe__conn_free((msgpipe__fifo_conn *)p->conn, 1);
        p->conn = NULL;
        p->connecting = 0;
    }
}

int msgpipe__b_peer(msgpipe *p, msgpipe_peer_info *info)
{
    int rc;

    if (p->tcp)
        return MSGPIPE_ENOTSUP; /* msgpipe_peer_address */
    /* A client's server identity arrives with its acceptance.  A client
     * asks for it to decide whether to trust the server, so wait for it -
     * within the time msgpipe_connect() was given.  (Connected pipes
     * return at once; the lock orders the ids' writing before this.) */
    rc = msgpipe__t_finish(p, p->conn_deadline);
    if (rc != MSGPIPE_OK)
        return rc;
    info->pid = p->peer_pid;
    info->uid = p->peer_uid;
    info->gid = p->peer_gid;
    return MSGPIPE_OK;
}

/* ---- Pairs and children -------------------------------------------------- */

/* A FIFO cannot carry descriptors. */
const int msgpipe__t_handles = 0;
const int msgpipe__t_end_fds = 2;

ssize_t msgpipe__t_sendfds(msgpipe *p, const struct iovec *iov, int cnt,
                           const int *fds, size_t nfds, int block)
{
    (void)p;
    (void)iov;
    (void)cnt;
    (void)fds;
    (void)nfds;
    (void)block;
    errno = ENOTSUP;
    return -1;
}

/* A pipe() with both ends close-on-exec. */
static int msgpipe__cloexec_pipe(int fds[2])
{
    if (pipe(fds) != 0)
        return -1;
    if (fcntl(fds[0], F_SETFD, FD_CLOEXEC) != 0 ||
        fcntl(fds[1], F_SETFD, FD_CLOEXEC) != 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        errno = e;
        return -1;
    }
    return 0;
}

/* Two pipes: "up" carries theirs to mine, "down" mine to theirs. */
int msgpipe__t_pair_fds(int mine[2], int theirs[2])
{
    int up[2], down[2], e;

    if (msgpipe__cloexec_pipe(up) != 0)
        return msgpipe__from_errno(errno);
    if (msgpipe__cloexec_pipe(down) != 0) {
        e = errno;
        close(up[0]);
        close(up[1]);
        return msgpipe__from_errno(e);
    }
    mine[0] = up[0];
    mine[1] = down[1];
    theirs[0] = down[0];
    theirs[1] = up[1];
    return MSGPIPE_OK;
}

int msgpipe__t_wrap(int rfd, int wfd, const msgpipe__opts *o, msgpipe **out)
{
    int rc;

    if (msgpipe__fd_setup(rfd) != 0 || msgpipe__fd_setup(wfd) != 0) {
        rc = msgpipe__from_errno(errno);
        close(rfd);
        close(wfd);
        return rc;
    }
    rc = msgpipe__pipe_new(rfd, o, out);
    if (rc != MSGPIPE_OK) {
        close(wfd);
        return rc;
    }
    (*out)->wfd = wfd;
    (*out)->fifo = 1;
    return MSGPIPE_OK;
}

int msgpipe__t_end_check(int rfd, int wfd)
{
    struct stat sr, sw;
    int fr = fcntl(rfd, F_GETFL), fw = fcntl(wfd, F_GETFL);

    if (rfd == wfd || fr < 0 || fw < 0 || fstat(rfd, &sr) != 0 ||
        fstat(wfd, &sw) != 0)
        return 0;
    return S_ISFIFO(sr.st_mode) && S_ISFIFO(sw.st_mode) &&
           (fr & O_ACCMODE) == O_RDONLY && (fw & O_ACCMODE) == O_WRONLY;
}
