/*
 * posix_server.c - what both POSIX transports' servers share: the
 * shutdown pipe that wakes a blocked accept, waiting for a client or a
 * shutdown, the accept loop of the socket and TCP servers, and removing
 * the server's file on close.
 *
 * Shutdown is a byte written to a pipe that is never drained: it is one
 * async-signal-safe write(), needs no lock and no atomic variable, and
 * every accept from then on sees the pipe readable.
 */
#include "posix_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#ifdef __linux__
#include <sys/epoll.h>
#endif
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

int msgpipe__fd_setup(int fd)
{
    int fl = fcntl(fd, F_GETFD);

    if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
        return -1;
    fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    return 0;
}

int msgpipe__fd_adopt(int fd)
{
    if (fd >= 0 && msgpipe__fd_setup(fd) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int msgpipe__accept_cloexec(int lfd)
{
    int fd;

#if defined(__linux__) || defined(__FreeBSD__) || defined(__NetBSD__) ||       \
    defined(__OpenBSD__) || defined(__DragonFly__)
    fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0 || errno != ENOSYS)
        return fd;
#endif
    return msgpipe__fd_adopt(accept(lfd, NULL, NULL));
}

int msgpipe__connect_pause(int64_t deadline, int *pause)
{
    int left = msgpipe__remaining(deadline);

    if (left == 0)
        return MSGPIPE_ETIMEDOUT;
    /* Neither a socket nor a FIFO gives an event when a server appears or
     * its queue drains, so look again after a short, growing pause. */
    if (left < 0 || left > *pause)
        left = *pause;
    poll(NULL, 0, left); /* a sleep; a signal may cut it short */
    if (*pause < 50)
        *pause *= 2;
    return MSGPIPE_OK;
}

int msgpipe__server_new(const msgpipe__name *name, const msgpipe__opts *o,
                        msgpipe_server **out)
{
    msgpipe_server *s = (msgpipe_server *)msgpipe__calloc(1, sizeof(*s));
    int rc;

    if (s == NULL)
        return MSGPIPE_ENOMEM;
    s->fd = -1;
    s->keep_wfd = -1;
    s->lock_fd = -1;
    s->held_fd = -1;
    s->auth_fd = -1;
    s->wake[0] = s->wake[1] = -1;
    s->opts = *o;
    s->name = *name;
    if (pipe(s->wake) != 0 || msgpipe__fd_setup(s->wake[0]) != 0 ||
        msgpipe__fd_setup(s->wake[1]) != 0) {
        rc = msgpipe__from_errno(errno);
        msgpipe__server_free(s);
        return rc;
    }
    *out = s;
    return MSGPIPE_OK;
}

/* NAME.lock for a path name; 0, or -1 if it would not fit. */
static int msgpipe__lock_path(const msgpipe_server *s, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s.lock", s->name.sys);

    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int msgpipe__server_lock(msgpipe_server *s)
{
    char path[MSGPIPE__NAME_MAX + 8];
    struct stat fs, ps;
    int fd, e, tries;

    if (s->name.kind != MSGPIPE__NAME_PATH)
        return MSGPIPE_OK; /* bind() itself decides: nothing to clean up */
    if (msgpipe__lock_path(s, path, sizeof(path)) != 0)
        return MSGPIPE_ENAMETOOLONG;
    for (tries = 0; tries < 100; tries++) {
        /* Read-only and readable by all: flock() needs no more, and a
         * server of another user may still find out that it is held. */
        fd = msgpipe__fd_adopt(
            open(path, O_RDONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644));
        if (fd < 0) {
            e = errno;
            msgpipe__set_os_error(e);
            if (e == ENOENT || e == ENOTDIR)
                return MSGPIPE_EBADNAME; /* no such directory */
            return e == ELOOP ? MSGPIPE_EADDRINUSE : msgpipe__from_errno(e);
        }
        while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            e = errno;
            if (e == EINTR)
                continue;
            close(fd);
            msgpipe__set_os_error(e);
            return e == EWOULDBLOCK || e == EAGAIN ? MSGPIPE_EADDRINUSE
                                                   : msgpipe__from_errno(e);
        }
        /* The lock counts only if the file is still the one at the path:
         * a server closing just now removes it before it lets go. */
        if (fstat(fd, &fs) == 0 && lstat(path, &ps) == 0 &&
            fs.st_dev == ps.st_dev && fs.st_ino == ps.st_ino &&
            S_ISREG(fs.st_mode)) {
            s->lock_fd = fd;
            s->lock_dev = fs.st_dev;
            s->lock_ino = fs.st_ino;
            return MSGPIPE_OK;
        }
        close(fd);
    }
    msgpipe__set_os_error(EAGAIN);
    return MSGPIPE_EADDRINUSE;
}

/* Remove the lock file while still holding it (see msgpipe__server_lock),
 * then let go. */
static void msgpipe__server_unlock(msgpipe_server *s)
{
    char path[MSGPIPE__NAME_MAX + 8];
    struct stat st;

    if (s->lock_fd < 0)
        return;
    if (msgpipe__lock_path(s, path, sizeof(path)) == 0 &&
        lstat(path, &st) == 0 && st.st_dev == s->lock_dev &&
        st.st_ino == s->lock_ino)
        unlink(path);
    close(s->lock_fd);
    s->lock_fd = -1;
}

void msgpipe__server_free(msgpipe_server *s)
{
    if (MSGPIPE__LOAD(s->pl_owner) != NULL)
        msgpipe__pl_forget_server(s);
    msgpipe__server_unlock(s);
    if (s->fd >= 0)
        close(s->fd);
    if (s->keep_wfd >= 0)
        close(s->keep_wfd);
    if (s->held_fd >= 0)
        close(s->held_fd);
    if (s->auth_fd >= 0)
        close(s->auth_fd);
    if (s->wake[0] >= 0)
        close(s->wake[0]);
    if (s->wake[1] >= 0)
        close(s->wake[1]);
    if (s->ready != NULL)
        msgpipe__b_close(s->ready); /* the client sees ECLOSED */
    msgpipe__free(s->req);
    msgpipe__free(s);
}

int msgpipe__server_wait(msgpipe_server *s, int64_t deadline)
{
    struct pollfd pf[2];
    int rc;

    for (;;) {
        pf[0].fd = s->wake[0];
        pf[0].events = POLLIN;
        pf[1].fd = s->fd;
        pf[1].events = POLLIN;
        pf[0].revents = pf[1].revents = 0;
        rc = msgpipe__sys.poll(pf, 2, msgpipe__remaining(deadline));
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            return msgpipe__from_errno(errno);
        }
        /* Shutdown wins over a waiting client. */
        if (pf[0].revents != 0)
            return MSGPIPE_ESHUTDOWN;
        if (rc == 0)
            return MSGPIPE_ETIMEDOUT;
        return MSGPIPE_OK;
    }
}

int msgpipe__server_is_shut(msgpipe_server *s)
{
    struct pollfd pf;

    pf.fd = s->wake[0];
    pf.events = POLLIN;
    pf.revents = 0;
    return poll(&pf, 1, 0) > 0;
}

int msgpipe__server_take_ready(msgpipe_server *s, msgpipe **out)
{
    if (s->ready == NULL || msgpipe__server_is_shut(s))
        return 0;
    *out = s->ready;
    s->ready = NULL;
    return 1;
}

int msgpipe__server_accept_fd(msgpipe_server *s, int timeout_ms, int *fd,
                              msgpipe **out)
{
    int64_t deadline = msgpipe__deadline(timeout_ms);
    int rc;

    *fd = -1;
    if (msgpipe__server_take_ready(s, out))
        return MSGPIPE_OK;
    for (;;) {
        if (s->held_fd >= 0 && !msgpipe__server_is_shut(s)) {
            *fd = s->held_fd;
            s->held_fd = -1;
        } else {
            rc = msgpipe__server_wait(s, deadline);
            if (rc != MSGPIPE_OK)
                return rc;
            *fd = msgpipe__sys.accept(s->fd);
        }
        if (*fd >= 0) {
            /* The pipe first: out of memory, the connection is kept for
             * the next accept instead of being dropped. */
            rc = msgpipe__pipe_alloc(&s->opts, out);
            if (rc != MSGPIPE_OK) {
                s->held_fd = *fd;
                *fd = -1;
            }
            return rc;
        }
        switch (errno) {
        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
        case EWOULDBLOCK:
#endif
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
            /* The client left before we took it: wait for the next. */
            if (timeout_ms == 0)
                return MSGPIPE_ETIMEDOUT;
            continue;
        default:
            return msgpipe__from_errno(errno);
        }
    }
}

int msgpipe__server_probe(msgpipe_server *s)
{
    msgpipe *p;
    int rc;

    /* With an authkey a client is ready once its handshake is done: the
     * handshakes keep it themselves (api/auth.c). */
    if (s->opts.auth != NULL)
        return msgpipe__auth_probe(s);
    if (s->ready != NULL)
        return 1;
    /* A readable descriptor is not enough: the client may be one that
     * allow_uids turns away, or a FIFO request that is ignored. */
    rc = msgpipe__accept_admitted(s, 0, &p);
    if (rc == MSGPIPE_OK) {
        s->ready = p;
        return 1;
    }
    return rc != MSGPIPE_ETIMEDOUT; /* ESHUTDOWN, EMFILE: at once too */
}

int msgpipe__b_auth_wait(msgpipe_server *s, msgpipe *const *pipes, size_t n,
                         int64_t deadline)
{
    struct pollfd pf[2 + 64];
    size_t i, k = 2;
    int rc;

    if (s->held_fd >= 0 || msgpipe__t_server_ready(s))
        return MSGPIPE_OK;
    for (i = 0; i < n; i++)
        if (msgpipe__rx_ready(pipes[i]))
            return MSGPIPE_OK;
    pf[0].fd = s->wake[0];
    pf[1].fd = s->fd;
    for (i = 0; i < n && k < sizeof(pf) / sizeof(pf[0]); i++)
        pf[k++].fd = pipes[i]->fd;
    for (i = 0; i < k; i++) {
        pf[i].events = POLLIN;
        pf[i].revents = 0;
    }
    rc = msgpipe__sys.poll(pf, (nfds_t)k, msgpipe__remaining(deadline));
    if (rc < 0)
        return errno == EINTR ? MSGPIPE_OK : msgpipe__from_errno(errno);
    if (pf[0].revents != 0)
        return MSGPIPE_ESHUTDOWN;
    return rc == 0 ? MSGPIPE_ETIMEDOUT : MSGPIPE_OK;
}

void msgpipe__b_server_shutdown(msgpipe_server *s)
{
    static const char one = 1;
    ssize_t rc;

    /* EAGAIN means an earlier shutdown filled the pipe: nothing to do. */
    do {
        rc = write(s->wake[1], &one, 1);
    } while (rc < 0 && errno == EINTR);
}

int msgpipe__server_record_file(msgpipe_server *s)
{
    struct stat st;

    if (lstat(s->name.sys, &st) != 0)
        return msgpipe__from_errno(errno);
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    return MSGPIPE_OK;
}

void msgpipe__server_remove_file(msgpipe_server *s)
{
    struct stat st;

    /* Remove the file only if it is still the one this server made: a
     * later server may have replaced it. */
    if (s->name.kind == MSGPIPE__NAME_PATH && lstat(s->name.sys, &st) == 0 &&
        st.st_dev == s->dev && st.st_ino == s->ino)
        unlink(s->name.sys);
}

int msgpipe__server_wait_fd(msgpipe_server *s)
{
    return s->auth_fd >= 0 ? s->auth_fd : s->fd;
}

/* An epoll descriptor is itself readable while one of its set is: a wait
 * on it wakes for a new connection and for every handshake's message.
 * (Elsewhere readiness wakes for new connections only: docs/tcp.md.) */
int msgpipe__b_auth_setup(msgpipe_server *s)
{
#ifdef __linux__
    struct epoll_event ev;

    s->auth_fd = epoll_create1(EPOLL_CLOEXEC);
    if (s->auth_fd < 0)
        return msgpipe__from_errno(errno);
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    if (epoll_ctl(s->auth_fd, EPOLL_CTL_ADD, s->fd, &ev) != 0)
        return msgpipe__from_errno(errno);
#else
    (void)s;
#endif
    return MSGPIPE_OK;
}

void msgpipe__b_auth_watch(msgpipe_server *s, msgpipe *p, int on)
{
#ifdef __linux__
    struct epoll_event ev;

    if (s->auth_fd < 0)
        return;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    (void)epoll_ctl(s->auth_fd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, p->fd, &ev);
#else
    (void)s;
    (void)p;
    (void)on;
#endif
}

int msgpipe__b_server_native_handle(msgpipe_server *s, msgpipe_native *out)
{
    *out = msgpipe__server_wait_fd(s);
    return MSGPIPE_OK;
}

const msgpipe__opts *msgpipe__b_server_opts(msgpipe_server *s)
{
    return &s->opts;
}
