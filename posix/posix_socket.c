/*
 * posix_socket.c - servers and clients on AF_UNIX stream sockets.
 *
 * Security: a server's socket file is owner-only (0600) unless the access
 * option widens it.  On Linux the mode is set with fchmod() on the socket
 * before bind(), so the file never exists with a wider mode; elsewhere
 * fchmod() on a socket may not apply, and the mode is set right after bind()
 * (the file is created with 0777 & ~umask, so keep a umask of 077 or put the
 * socket in a private directory if that moment matters).  In both cases the
 * mode is set again with chmod() after bind(), so the umask cannot narrow a
 * requested group or world access.
 *
 * A socket file left by a crashed server is removed only after a connect to
 * it is refused: a live server's name is never taken, and a file that is not
 * a socket is never removed.  That judgement is made holding the name's
 * lock file (NAME.lock, msgpipe__server_lock): without it, a server starting
 * at the same moment as another could probe the other's socket between its
 * bind() and listen(), be refused, and remove it.
 */
#include "posix_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#define MSGPIPE__SUN_PATH_SIZE sizeof(((struct sockaddr_un *)0)->sun_path)

static int msgpipe__socket_pipe(int fd, const msgpipe__opts *o, msgpipe **out);
static int msgpipe__socket_wrap(int fd, msgpipe *p);

/* MSG_NOSIGNAL keeps a write to a closed peer from raising SIGPIPE on Linux
 * and the BSDs; macOS has no such flag and uses SO_NOSIGPIPE on the socket
 * instead (msgpipe__nosigpipe). */
#ifdef MSG_NOSIGNAL
#define MSGPIPE__SEND_FLAGS MSG_NOSIGNAL
#else
#define MSGPIPE__SEND_FLAGS 0
#endif

const msgpipe__backend_info msgpipe__backend = {
    "posix-socket", MSGPIPE__STYLE_POSIX,
    /* A file system path needs its terminating NUL inside sun_path. */
    MSGPIPE__SUN_PATH_SIZE - 1,
#ifdef __linux__
    1, /* abstract names: "@NAME" */
#else
    0,
#endif
    16, /* default listen backlog */
    1,  /* uids: SO_PEERCRED / getpeereid */
    1   /* tcp:// (posix_tcp.c) */
};

/* A new AF_UNIX stream socket, non-blocking and close-on-exec. */
static int msgpipe__socket(void)
{
    int fd;

#if defined(SOCK_CLOEXEC) && defined(SOCK_NONBLOCK)
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd >= 0 || errno != EINVAL)
        return fd;
#endif
    return msgpipe__fd_adopt(socket(AF_UNIX, SOCK_STREAM, 0));
}

/* Systems without MSG_NOSIGNAL (macOS) keep SIGPIPE away per socket. */
static void msgpipe__nosigpipe(int fd)
{
#if !defined(MSG_NOSIGNAL) && defined(SO_NOSIGPIPE)
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
#else
    (void)fd;
#endif
}

static socklen_t msgpipe__addr(const msgpipe__name *n, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    /* The core checked the length against sun_path already. */
    memcpy(sa->sun_path, n->sys, n->len);
    if (n->kind == MSGPIPE__NAME_ABSTRACT) {
        /* Linux abstract namespace: a leading NUL, and the address is
         * exactly as long as the name (no terminating NUL). */
        sa->sun_path[0] = '\0';
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n->len);
    }
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n->len + 1);
}

/* Try one connect to a name.  Returns 0 on success (fd set), or an errno
 * value. */
static int msgpipe__try_connect(const msgpipe__name *n, int *out_fd)
{
    struct sockaddr_un sa;
    socklen_t sl = msgpipe__addr(n, &sa);
    int fd = msgpipe__socket(), err;

    if (fd < 0)
        return errno;
    if (connect(fd, (struct sockaddr *)&sa, sl) == 0) {
        *out_fd = fd;
        return 0;
    }
    err = errno;
    if (err == EINPROGRESS || err == EINTR) {
        /* Some systems complete AF_UNIX connects asynchronously. */
        socklen_t el = sizeof(err);
        if (msgpipe__wait_fd(fd, POLLOUT, msgpipe__deadline(1000)) == 1 &&
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0) {
            *out_fd = fd;
            return 0;
        }
        if (err == EINPROGRESS || err == EINTR)
            err = EAGAIN;
    }
    close(fd);
    return err;
}

/* bind() found the name taken.  Decide whether the file is a dead server's
 * socket (then remove it and return 1 to retry) or not (return 0). */
static int msgpipe__reclaim_stale(const msgpipe__name *n)
{
    struct stat st;
    int fd = -1, err;

    if (n->kind != MSGPIPE__NAME_PATH)
        return 0; /* abstract names vanish with their owner */
    if (lstat(n->sys, &st) != 0)
        return errno == ENOENT; /* gone meanwhile: retry */
    if (!S_ISSOCK(st.st_mode))
        return 0;
    err = msgpipe__try_connect(n, &fd);
    if (err == 0) {
        close(fd);
        return 0; /* a live server */
    }
    if (err == ENOENT)
        return 1;
    if (err != ECONNREFUSED)
        return 0; /* busy (EAGAIN) or not ours to judge (EACCES) */
    if (unlink(n->sys) != 0 && errno != ENOENT)
        return 0;
    return 1;
}

static int msgpipe__bind_listen(msgpipe_server *s)
{
    struct sockaddr_un sa;
    socklen_t sl = msgpipe__addr(&s->name, &sa);
    mode_t mode = msgpipe__p_mode(s->opts.access, 0);
    int tries;

    if (s->name.kind == MSGPIPE__NAME_PATH) {
        /* Linux applies the socket's mode to the file bind() creates;
         * other systems may refuse, and chmod() below covers them. */
        (void)fchmod(s->fd, mode);
    }
    for (tries = 0;; tries++) {
        if (bind(s->fd, (struct sockaddr *)&sa, sl) == 0)
            break;
        if (errno != EADDRINUSE || tries >= 3 ||
            !msgpipe__reclaim_stale(&s->name)) {
            if (errno == ENOENT || errno == ENOTDIR) {
                /* The directory in the path does not exist. */
                msgpipe__set_os_error(errno);
                return MSGPIPE_EBADNAME;
            }
            return msgpipe__from_errno(errno);
        }
    }
    if (s->name.kind == MSGPIPE__NAME_PATH) {
        int rc = chmod(s->name.sys, mode) != 0 ? msgpipe__from_errno(errno)
                                               : msgpipe__server_record_file(s);
        if (rc != MSGPIPE_OK) {
            unlink(s->name.sys);
            return rc;
        }
    }
    if (listen(s->fd, s->opts.pending) != 0) {
        int rc = msgpipe__from_errno(errno);
        if (s->name.kind == MSGPIPE__NAME_PATH)
            unlink(s->name.sys);
        return rc;
    }
    return MSGPIPE_OK;
}

int msgpipe__b_listen(const msgpipe__name *name, const msgpipe__opts *o,
                      msgpipe_server **out)
{
    msgpipe_server *s;
    int rc;

    if (name->kind == MSGPIPE__NAME_TCP)
        return msgpipe__tcp_listen(name, o, out);
    rc = msgpipe__server_new(name, o, &s);
    if (rc != MSGPIPE_OK)
        return rc;
    /* Holding the name's lock, no other server is between its bind() and
     * listen() - when a probe connect would be refused - while we judge a
     * file left there. */
    rc = msgpipe__server_lock(s);
    if (rc != MSGPIPE_OK) {
        msgpipe__server_free(s);
        return rc;
    }
    s->fd = msgpipe__socket();
    if (s->fd < 0) {
        rc = msgpipe__from_errno(errno);
        msgpipe__server_free(s);
        return rc;
    }
    rc = msgpipe__bind_listen(s);
    if (rc != MSGPIPE_OK) {
        msgpipe__server_free(s);
        return rc;
    }
    *out = s;
    return MSGPIPE_OK;
}

int msgpipe__b_accept(msgpipe_server *s, int timeout_ms, msgpipe **out)
{
    int rc, fd;

    if (s->tcp)
        return msgpipe__tcp_accept(s, timeout_ms, out);
    rc = msgpipe__server_accept_fd(s, timeout_ms, &fd, out);
    if (rc != MSGPIPE_OK || fd < 0)
        return rc;
    rc = msgpipe__socket_wrap(fd, *out);
    if (rc != MSGPIPE_OK)
        *out = NULL;
    return rc;
}

void msgpipe__b_server_close(msgpipe_server *s)
{
    msgpipe__server_remove_file(s);
    msgpipe__server_free(s);
}

int msgpipe__b_connect(const msgpipe__name *name, const msgpipe__opts *o,
                       int timeout_ms, msgpipe **out)
{
    int64_t deadline = msgpipe__deadline(timeout_ms);
    int fd = -1, err, pause = 1;

    if (name->kind == MSGPIPE__NAME_TCP)
        return msgpipe__tcp_connect(name, o, timeout_ms, out);
    for (;;) {
        err = msgpipe__try_connect(name, &fd);
        if (err == 0)
            return msgpipe__socket_pipe(fd, o, out);
        switch (err) {
        case ENOENT:
        case ECONNREFUSED:
        case ENOTDIR:
            /* No server yet (or only a dead one's file): wait for one. */
            msgpipe__set_os_error(err);
            if (timeout_ms == 0)
                return MSGPIPE_ENOENT;
            break;
        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
        case EWOULDBLOCK:
#endif
            /* The server's backlog is full: wait for room. */
            msgpipe__set_os_error(err);
            if (timeout_ms == 0)
                return MSGPIPE_EBUSY;
            break;
        default:
            return msgpipe__from_errno(err);
        }
        if (msgpipe__connect_pause(deadline, &pause) != MSGPIPE_OK)
            return MSGPIPE_ETIMEDOUT;
    }
}

int msgpipe__b_peer(msgpipe *p, msgpipe_peer_info *info)
{
    if (p->tcp)
        return MSGPIPE_ENOTSUP; /* msgpipe_peer_address */
#if defined(SO_PEERCRED) && defined(__linux__)
    struct ucred uc;
    socklen_t len = sizeof(uc);

    if (getsockopt(p->fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) != 0)
        return msgpipe__from_errno(errno);
    info->pid = uc.pid > 0 ? (int64_t)uc.pid : -1;
    /* A socketpair records the process that made it for both ends: the
     * parent's end of msgpipe_spawn knows its child better. */
    if (p->peer_pid >= 0)
        info->pid = p->peer_pid;
    info->uid = (int64_t)uc.uid;
    info->gid = (int64_t)uc.gid;
    return MSGPIPE_OK;
#else
    uid_t uid;
    gid_t gid;

    if (getpeereid(p->fd, &uid, &gid) != 0)
        return msgpipe__from_errno(errno);
    info->uid = (int64_t)uid;
    info->gid = (int64_t)gid;
#if defined(LOCAL_PEERPID)
    {
        pid_t pid;
        socklen_t len = sizeof(pid);
        if (getsockopt(p->fd, SOL_LOCAL, LOCAL_PEERPID, &pid, &len) == 0)
            info->pid = (int64_t)pid;
    }
#endif
    if (p->peer_pid >= 0)
        info->pid = p->peer_pid;
    return MSGPIPE_OK;
#endif
}

/* ---- Transport hooks: a socket is connected from the start ------------- */

int msgpipe__t_finish(msgpipe *p, int64_t deadline)
{
    (void)p;
    (void)deadline;
    return MSGPIPE_OK;
}

void msgpipe__t_release(msgpipe *p, int64_t linger)
{
    (void)p;
    (void)linger;
}

int msgpipe__t_server_ready(msgpipe_server *s)
{
    return s->held_fd >= 0;
}

/* A connected socket is left in blocking mode and every call that must not
 * wait says MSG_DONTWAIT: then a wait without a deadline is one blocking
 * call instead of poll() and a read - the difference between msgpipe and a
 * raw socket in a request/answer exchange. */
ssize_t msgpipe__t_writev(msgpipe *p, const struct iovec *iov, int cnt,
                          int block)
{
    int fl = MSGPIPE__SEND_FLAGS | (block ? 0 : MSG_DONTWAIT);
    struct msghdr mh;

    if (cnt == 1) /* send() costs less than sendmsg() */
        return msgpipe__sys.send(p->wfd, iov[0].iov_base, iov[0].iov_len, fl);
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = (struct iovec *)iov;
    mh.msg_iovlen = cnt;
    return msgpipe__sys.sendmsg(p->wfd, &mh, fl);
}

/* Descriptors that come with a read are handed to posix_stream.c, which
 * knows which message they belong to.  MSG_CMSG_CLOEXEC makes them
 * close-on-exec as they arrive (elsewhere fcntl() does, just after). */
#ifdef MSG_CMSG_CLOEXEC
#define MSGPIPE__RECV_FLAGS MSG_CMSG_CLOEXEC
#else
#define MSGPIPE__RECV_FLAGS 0
#endif

static void msgpipe__take_fds(msgpipe *p, size_t nread, struct msghdr *mh)
{
    int fds[MSGPIPE_MAX_HANDLES + 1];
    size_t n = 0, k, i;
    int trunc = (mh->msg_flags & MSG_CTRUNC) != 0, fd;
    struct cmsghdr *c;

    for (c = CMSG_FIRSTHDR(mh); c != NULL; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
            c->cmsg_len < CMSG_LEN(0))
            continue;
        k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (i = 0; i < k; i++) {
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
#ifndef MSG_CMSG_CLOEXEC
            (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
#endif
            if (n < MSGPIPE_MAX_HANDLES) {
                fds[n++] = fd;
            } else {
                close(fd);
                trunc = 1;
            }
        }
    }
    if (n > 0 || trunc)
        msgpipe__rx_got_fds(p, nread, fds, n, trunc);
}

ssize_t msgpipe__t_readv(msgpipe *p, const struct iovec *iov, int cnt,
                         int block)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * MSGPIPE_MAX_HANDLES)];
    } cm;
    struct msghdr mh;
    ssize_t rc;

    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = (struct iovec *)iov;
    mh.msg_iovlen = cnt;
    mh.msg_control = cm.buf;
    mh.msg_controllen = sizeof(cm.buf);
    rc = msgpipe__sys.recvmsg(p->fd, &mh,
                              MSGPIPE__RECV_FLAGS | (block ? 0 : MSG_DONTWAIT));
    if (rc > 0 && (mh.msg_controllen > 0 || (mh.msg_flags & MSG_CTRUNC)))
        msgpipe__take_fds(p, (size_t)rc, &mh);
    return rc;
}

ssize_t msgpipe__t_sendfds(msgpipe *p, const struct iovec *iov, int cnt,
                           const int *fds, size_t nfds, int block)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * MSGPIPE_MAX_HANDLES)];
    } cm;
    struct msghdr mh;
    struct cmsghdr *c;

    memset(&mh, 0, sizeof(mh));
    memset(&cm, 0, sizeof(cm));
    mh.msg_iov = (struct iovec *)iov;
    mh.msg_iovlen = cnt;
    mh.msg_control = cm.buf;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    return msgpipe__sys.sendmsg(
        p->wfd, &mh, MSGPIPE__SEND_FLAGS | (block ? 0 : MSG_DONTWAIT));
}

/* Put a connected socket into pipe p (made by msgpipe__pipe_alloc):
 * blocking mode, see msgpipe__t_writev.  On failure both are released. */
static int msgpipe__socket_wrap(int fd, msgpipe *p)
{
    int fl = fcntl(fd, F_GETFL), rc;

    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        rc = msgpipe__from_errno(errno);
        close(fd);
        msgpipe__b_close(p);
        return rc;
    }
    msgpipe__nosigpipe(fd);
    p->fd = p->wfd = fd;
    p->can_block = 1;
    return MSGPIPE_OK;
}

static int msgpipe__socket_pipe(int fd, const msgpipe__opts *o, msgpipe **out)
{
    int rc = msgpipe__pipe_alloc(o, out);

    if (rc != MSGPIPE_OK) {
        close(fd);
        return rc;
    }
    rc = msgpipe__socket_wrap(fd, *out);
    if (rc != MSGPIPE_OK)
        *out = NULL;
    return rc;
}

/* ---- Pairs and children -------------------------------------------------- */

const int msgpipe__t_handles = 1;
const int msgpipe__t_end_fds = 1;

int msgpipe__t_pair_fds(int mine[2], int theirs[2])
{
    int sv[2];

#ifdef SOCK_CLOEXEC
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return msgpipe__from_errno(errno);
#else
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return msgpipe__from_errno(errno);
    if (fcntl(sv[0], F_SETFD, FD_CLOEXEC) != 0 ||
        fcntl(sv[1], F_SETFD, FD_CLOEXEC) != 0) {
        int e = errno;
        close(sv[0]);
        close(sv[1]);
        return msgpipe__from_errno(e);
    }
#endif
    msgpipe__nosigpipe(sv[1]);
    mine[0] = mine[1] = sv[0];
    theirs[0] = theirs[1] = sv[1];
    return MSGPIPE_OK;
}

int msgpipe__t_wrap(int rfd, int wfd, const msgpipe__opts *o, msgpipe **out)
{
    (void)wfd;
    return msgpipe__socket_pipe(rfd, o, out);
}

int msgpipe__t_end_check(int rfd, int wfd)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof(sa), tl = sizeof(int);
    struct stat st;
    int type = 0;

    if (rfd != wfd || fstat(rfd, &st) != 0 || !S_ISSOCK(st.st_mode))
        return 0;
    if (getsockopt(rfd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 ||
        type != SOCK_STREAM)
        return 0;
    memset(&sa, 0, sizeof(sa));
    if (getsockname(rfd, (struct sockaddr *)&sa, &len) != 0 ||
        sa.ss_family != AF_UNIX)
        return 0;
    return 1;
}
