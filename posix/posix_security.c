/*
 * posix_security.c - who may use a msgpipe name, and who is at the other
 * end: the twin of win32/win32_security.c.
 *
 * A POSIX server's access control is the mode of the file that is its name
 * (a socket, or the FIFO clients write their requests to):
 *
 *   OWNER (default)  0600: the server's user only.
 *   GROUP            the file's group too: 0660 for a socket; 0620 for
 *                    the request FIFO, since others only ever write
 *                    requests to it.
 *   WORLD            every local user: 0666, or 0622 for the request FIFO.
 *
 * The transports apply the mode where it cannot be widened by a race (see
 * posix_socket.c and posix_fifo.c); allow_uids and require_server_uid are
 * checked with the peer's credentials (api/core.c, and the FIFO connect).
 * This file also answers msgpipe_peer_user and require_same_user from the
 * credentials msgpipe__b_peer reports.
 */
#include "posix_internal.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

mode_t msgpipe__p_mode(int access, int requests_only)
{
    switch (access) {
    case MSGPIPE_ACCESS_WORLD:
        return requests_only ? 0622 : 0666;
    case MSGPIPE_ACCESS_GROUP:
        return requests_only ? 0620 : 0660;
    default:
        return 0600;
    }
}

/* ---- The peer's user ---------------------------------------------------- */

/* Both transports know the peer's uid (msgpipe__b_peer): it is the user. */
int msgpipe__b_peer_user(msgpipe *p, char *buf, size_t cap, size_t *len)
{
    msgpipe_peer_info info;
    char text[24];
    int rc;

    rc = msgpipe__b_peer(p, &info);
    if (rc != MSGPIPE_OK)
        return rc;
    if (info.uid < 0)
        return MSGPIPE_ENOTSUP;
    snprintf(text, sizeof(text), "%lld", (long long)info.uid);
    return msgpipe__put_text(text, buf, cap, len);
}

int msgpipe__b_same_user(msgpipe *p)
{
    msgpipe_peer_info info;
    int rc;

    rc = msgpipe__b_peer(p, &info);
    if (rc != MSGPIPE_OK)
        return rc;
    if (info.uid != (int64_t)geteuid()) {
        msgpipe__set_os_error(EPERM);
        return MSGPIPE_EACCES;
    }
    return MSGPIPE_OK;
}
