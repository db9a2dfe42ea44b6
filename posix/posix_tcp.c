/*
 * posix_tcp.c - tcp://HOST:PORT servers and clients, built with either
 * POSIX transport: TCP is a socket whatever carries local names.
 *
 * The framing is the POSIX socket transport's (posix_stream.c), which is
 * exactly Python's multiprocessing.connection over AF_INET.  Every TCP
 * socket has TCP_NODELAY (a message goes out when it is sent, not when
 * Nagle's algorithm has waited for an acknowledgement) and SO_KEEPALIVE
 * (a peer whose machine vanished is found out, after the system's
 * keep-alive time, instead of never); writes use MSG_NOSIGNAL (or
 * SO_NOSIGPIPE), so a closed peer never raises SIGPIPE.
 *
 * A server bound to an address other than loopback needs an authkey, or
 * allow_unauthenticated: msgpipe never opens an unauthenticated port to
 * the network by default (docs/tcp.md).
 */
#include "posix_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#ifdef MSG_NOSIGNAL
#define MSGPIPE__TCP_SEND_FLAGS MSG_NOSIGNAL
#else
#define MSGPIPE__TCP_SEND_FLAGS 0
#endif

/* ---- Helpers ------------------------------------------------------------- */

static int msgpipe__tcp_socket(int family)
{
    int fd;

#if defined(SOCK_CLOEXEC) && defined(SOCK_NONBLOCK)
    fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd >= 0 || errno != EINVAL)
        return fd;
#endif
    return msgpipe__fd_adopt(socket(family, SOCK_STREAM, 0));
}

/* What every connected TCP socket gets (see the top of this file). */
static void msgpipe__tcp_tune(int fd)
{
    int one = 1;

    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
#if !defined(MSG_NOSIGNAL) && defined(SO_NOSIGPIPE)
    (void)setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
#endif
}

static int msgpipe__is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        const uint8_t *b = in6->sin6_addr.s6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0,    0,
                                           0, 0, 0, 0, 0xff, 0xff};
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            return 1;
        return memcmp(b, mapped, 12) == 0 && b[12] == 127;
    }
    return 0;
}

static int msgpipe__resolve(const msgpipe__name *n, int passive,
                            struct addrinfo **res)
{
    struct addrinfo hints;
    char port[8];
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = n->is_ipv6 ? AF_INET6 : AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0) |
                     (n->is_ipv6 ? AI_NUMERICHOST : 0);
    snprintf(port, sizeof(port), "%d", n->port);
    rc = getaddrinfo(n->sys, port, &hints, res);
    if (rc == 0)
        return MSGPIPE_OK;
    if (rc == EAI_SYSTEM)
        return msgpipe__from_errno(errno);
    if (rc == EAI_MEMORY)
        return MSGPIPE_ENOMEM;
    /* The host is unknown (EAI_NONAME, EAI_NODATA) or cannot be looked
     * up now (EAI_AGAIN, EAI_FAIL): the name leads nowhere. */
    msgpipe__set_os_error(rc);
    return n->is_ipv6 ? MSGPIPE_EBADNAME : MSGPIPE_ENOENT;
}

/* "tcp://ADDRESS:PORT" for an address. */
static int msgpipe__addr_text(const struct sockaddr *sa, socklen_t len,
                              char *buf, size_t cap, size_t *out_len)
{
    char host[NI_MAXHOST], serv[NI_MAXSERV], text[NI_MAXHOST + NI_MAXSERV + 16];
    int rc;

    rc = getnameinfo(sa, len, host, sizeof(host), serv, sizeof(serv),
                     NI_NUMERICHOST | NI_NUMERICSERV);
    if (rc != 0) {
        msgpipe__set_os_error(rc == EAI_SYSTEM ? errno : rc);
        return MSGPIPE_EIO;
    }
    snprintf(text, sizeof(text),
             sa->sa_family == AF_INET6 ? "tcp://[%s]:%s" : "tcp://%s:%s", host,
             serv);
    return msgpipe__put_text(text, buf, cap, out_len);
}

/* A connected socket into the new pipe *out (from msgpipe__pipe_alloc):
 * blocking mode with MSG_DONTWAIT per call, as the socket transport's
 * pipes (posix_socket.c).  Takes fd, and on failure the pipe too. */
static int msgpipe__tcp_wrap(int fd, msgpipe **out)
{
    int fl = fcntl(fd, F_GETFL), rc;

    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        rc = msgpipe__from_errno(errno);
        close(fd);
        msgpipe__b_close(*out);
        *out = NULL;
        return rc;
    }
    msgpipe__tcp_tune(fd);
    (*out)->fd = (*out)->wfd = fd;
    (*out)->can_block = 1;
    (*out)->tcp = 1;
    (*out)->tcp_peer_len = sizeof((*out)->tcp_peer);
    if (getpeername(fd, (struct sockaddr *)&(*out)->tcp_peer,
                    &(*out)->tcp_peer_len) != 0)
        (*out)->tcp_peer_len = 0;
    return MSGPIPE_OK;
}

/* A connected socket into a new pipe.  Takes fd. */
static int msgpipe__tcp_pipe(int fd, const msgpipe__opts *o, msgpipe **out)
{
    int rc = msgpipe__pipe_alloc(o, out);

    if (rc != MSGPIPE_OK) {
        close(fd);
        return rc;
    }
    return msgpipe__tcp_wrap(fd, out);
}

/* ---- Servers ---------------------------------------------------------------
 */

int msgpipe__tcp_listen(const msgpipe__name *name, const msgpipe__opts *o,
                        msgpipe_server **out)
{
    struct addrinfo *res = NULL, *ai;
    msgpipe_server *s = NULL;
    int rc, fd = -1, one = 1, err = 0;

    rc = msgpipe__resolve(name, 1, &res);
    if (rc != MSGPIPE_OK)
        return rc == MSGPIPE_ENOENT ? MSGPIPE_EBADNAME : rc;
    /* The safe default, before anything is bound: a port open beyond this
     * machine must be authenticated, or explicitly not. */
    if (o->authkey == NULL && !o->allow_unauthenticated) {
        for (ai = res; ai != NULL; ai = ai->ai_next)
            if (!msgpipe__is_loopback(ai->ai_addr)) {
                freeaddrinfo(res);
                msgpipe__set_os_error(EACCES);
                return MSGPIPE_EINVAL;
            }
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = msgpipe__tcp_socket(ai->ai_family);
        if (fd < 0) {
            err = errno;
            continue;
        }
        /* A restarted server may bind while connections of its previous
         * life are in TIME_WAIT; a live server's port stays taken. */
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
            listen(fd, o->pending) == 0)
            break;
        err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        msgpipe__set_os_error(err);
        switch (err) {
        case EADDRINUSE:
            return MSGPIPE_EADDRINUSE;
        case EADDRNOTAVAIL:
            return MSGPIPE_EBADNAME; /* not an address of this machine */
        default:
            return msgpipe__from_errno(err);
        }
    }
    rc = msgpipe__server_new(name, o, &s);
    if (rc != MSGPIPE_OK) {
        close(fd);
        return rc;
    }
    s->fd = fd;
    s->tcp = 1;
    *out = s;
    return MSGPIPE_OK;
}

int msgpipe__tcp_accept(msgpipe_server *s, int timeout_ms, msgpipe **out)
{
    int rc, fd;

    rc = msgpipe__server_accept_fd(s, timeout_ms, &fd, out);
    if (rc != MSGPIPE_OK || fd < 0)
        return rc;
    return msgpipe__tcp_wrap(fd, out);
}

/* ---- Clients
 * ----------------------------------------------------------------- */

/* One connect to one address, waiting at most until `until`.  0 with *fd
 * set, or an errno value (ETIMEDOUT when the time ran out). */
static int msgpipe__tcp_try(const struct addrinfo *ai, int64_t until, int *out)
{
    socklen_t el;
    int fd = msgpipe__tcp_socket(ai->ai_family), err, w;

    if (fd < 0)
        return errno;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
        *out = fd;
        return 0;
    }
    err = errno;
    if (err == EINPROGRESS || err == EINTR) {
        w = msgpipe__wait_fd(fd, POLLOUT, until);
        el = sizeof(err);
        if (w == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0) {
            if (err == 0) {
                *out = fd;
                return 0;
            }
        } else {
            err = w == 0 ? ETIMEDOUT : EIO;
        }
    }
    close(fd);
    return err;
}

int msgpipe__tcp_connect(const msgpipe__name *name, const msgpipe__opts *o,
                         int timeout_ms, msgpipe **out)
{
    int64_t deadline = msgpipe__deadline(timeout_ms), until, now;
    struct addrinfo *res = NULL, *ai;
    int rc, err = ECONNREFUSED, fd = -1, pause = 1, left, n;

    /* getaddrinfo() itself takes no timeout: a host name that the
     * resolver answers slowly may take longer (docs/tcp.md). */
    rc = msgpipe__resolve(name, 0, &res);
    if (rc != MSGPIPE_OK)
        return rc;
    for (;;) {
        /* Every address in turn, each with an equal share of the time
         * that is left, so one that never answers cannot take it all. */
        for (n = 0, ai = res; ai != NULL; ai = ai->ai_next)
            n++;
        for (ai = res; ai != NULL; ai = ai->ai_next, n--) {
            left = msgpipe__remaining(deadline);
            if (deadline < 0) {
                until = -1;
            } else {
                now = msgpipe__now_ms();
                until = left == 0 ? 0 : now + (left + n - 1) / n;
            }
            err = msgpipe__tcp_try(ai, until, &fd);
            if (err == 0) {
                freeaddrinfo(res);
                return msgpipe__tcp_pipe(fd, o, out);
            }
        }
        msgpipe__set_os_error(err);
        switch (err) {
        case ECONNREFUSED:
        case ENETUNREACH:
        case EHOSTUNREACH:
        case ETIMEDOUT:
            /* No server there yet: wait for one, as for a local name. */
            if (timeout_ms == 0) {
                freeaddrinfo(res);
                return err == ETIMEDOUT ? MSGPIPE_ETIMEDOUT : MSGPIPE_ENOENT;
            }
            break;
        default:
            freeaddrinfo(res);
            return msgpipe__from_errno(err);
        }
        if (msgpipe__connect_pause(deadline, &pause) != MSGPIPE_OK) {
            freeaddrinfo(res);
            return MSGPIPE_ETIMEDOUT;
        }
    }
}

/* ---- Data and addresses
 * ------------------------------------------------------ */

ssize_t msgpipe__tcp_writev(msgpipe *p, const struct iovec *iov, int cnt,
                            int block)
{
    int fl = MSGPIPE__TCP_SEND_FLAGS | (block ? 0 : MSG_DONTWAIT);
    struct msghdr mh;

    if (cnt == 1) /* send() costs less than sendmsg() */
        return msgpipe__sys.send(p->wfd, iov[0].iov_base, iov[0].iov_len, fl);
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = (struct iovec *)iov;
    mh.msg_iovlen = cnt;
    return msgpipe__sys.sendmsg(p->wfd, &mh, fl);
}

ssize_t msgpipe__tcp_readv(msgpipe *p, const struct iovec *iov, int cnt,
                           int block)
{
    struct msghdr mh;

    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = (struct iovec *)iov;
    mh.msg_iovlen = cnt;
    return msgpipe__sys.recvmsg(p->fd, &mh, block ? 0 : MSG_DONTWAIT);
}

int msgpipe__b_peer_address(msgpipe *p, char *buf, size_t cap, size_t *len)
{
    if (!p->tcp)
        return MSGPIPE_ENOTSUP;
    if (p->tcp_peer_len == 0) {
        msgpipe__set_os_error(ENOTCONN);
        return MSGPIPE_EIO;
    }
    return msgpipe__addr_text((const struct sockaddr *)&p->tcp_peer,
                              p->tcp_peer_len, buf, cap, len);
}

int msgpipe__b_server_address(msgpipe_server *s, char *buf, size_t cap,
                              size_t *len)
{
    struct sockaddr_storage sa;
    socklen_t sl = sizeof(sa);

    if (!s->tcp)
        return MSGPIPE_ENOTSUP;
    if (getsockname(s->fd, (struct sockaddr *)&sa, &sl) != 0)
        return msgpipe__from_errno(errno);
    return msgpipe__addr_text((const struct sockaddr *)&sa, sl, buf, cap, len);
}
