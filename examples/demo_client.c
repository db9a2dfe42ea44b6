/*
 * demo_client [NAME] - the seed article's client, with msgpipe.
 *
 * Three sessions.  In each it connects (waiting up to 10 s for the server,
 * so the two programs may be started in either order), prints every
 * message as it arrives, and reports the end of the session in one line.
 */
#include <msgpipe.h>

#include <stdio.h>
#include <stdlib.h>

#include "example_options.h"

#define SESSIONS 3
#define CONNECT_TIMEOUT_MS 10000

/* Say why msgpipe_connect() failed, by what the code means here. */
static void report_connect_failure(int session, const char *name, int rc)
{
    printf("client: session %d: ", session);
    switch (rc) {
    case MSGPIPE_ENOENT:
        printf("no server on \"%s\"\n", name);
        break;
    case MSGPIPE_ETIMEDOUT:
        printf("no server on \"%s\" with room for a client within %d s\n", name,
               CONNECT_TIMEOUT_MS / 1000);
        break;
    case MSGPIPE_EBUSY:
        printf("the server on \"%s\" is busy: every pending slot is taken\n",
               name);
        break;
    case MSGPIPE_EACCES:
        printf("the server on \"%s\" does not admit this user, or the "
               "authkey (MSGPIPE_AUTHKEY) does not match\n",
               name);
        break;
    case MSGPIPE_EPROTO:
        /* Windows: a byte-type pipe (libuv, Node.js, .NET's byte mode). */
        printf("\"%s\" is not a msgpipe server (not a message pipe)\n", name);
        break;
    default:
        printf("cannot connect to \"%s\": %s (%s, system error %d)\n", name,
               msgpipe_strerror(rc), msgpipe_errname(rc),
               msgpipe_last_os_error());
        break;
    }
}

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "ABC";
    char buf[65536];
    msgpipe_options opt;
    int session, rc, failed = 0;

    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("client: Named_Pipe_Client. connecting to \"%s\" (%s)\n", name,
           msgpipe_backend());
    for (session = 1; session <= SESSIONS; session++) {
        msgpipe *p;
        size_t len;
        int count = 0;

        rc = msgpipe_connect(name, ex_options(&opt), CONNECT_TIMEOUT_MS, &p);
        if (rc != MSGPIPE_OK) {
            report_connect_failure(session, name, rc);
            failed = 1;
            continue;
        }
        for (;;) {
            rc = msgpipe_recv(p, buf, sizeof(buf) - 1, &len, MSGPIPE_INFINITE);
            if (rc != MSGPIPE_OK)
                break;
            buf[len] = '\0';
            count++;
            printf("client: session %d: received %s\n", session, buf);
        }
        if (rc == MSGPIPE_ECLOSED)
            printf("client: session %d: server closed the pipe after %d "
                   "messages\n",
                   session, count);
        else {
            printf("client: session %d: ended after %d messages (%s)\n",
                   session, count, msgpipe_strerror(rc));
            failed = 1;
        }
        msgpipe_close(p);
    }
    return failed ? 1 : 0;
}
