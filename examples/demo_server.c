/*
 * demo_server [NAME] - the seed article's server, with msgpipe.
 *
 * Three sessions.  In each it waits for a client, sends it the local time
 * ten times, 0.2 s apart, as a 19-character string ("%d/%m/%Y %H:%M:%S";
 * the second session uses "%d_%m_%Y_%H_%M_%S"), then closes that pipe.
 * Closing is graceful: the client receives all ten messages, then the end
 * of the pipe.  NAME defaults to "ABC" (\\.\pipe\ABC on Windows,
 * $XDG_RUNTIME_DIR/ABC or /tmp/ABC elsewhere).
 */
#include <msgpipe.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "example_options.h"
#include "example_util.h"

#define SESSIONS 3
#define MESSAGES 10

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "ABC";
    msgpipe_server *srv;
    msgpipe_options opt;
    int rc, session, i;

    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("server: Named_Pipe_Server.\n");
    rc = msgpipe_listen(name, ex_options(&opt), &srv);
    if (rc != MSGPIPE_OK) {
        fprintf(stderr, "server: cannot listen on \"%s\": %s\n", name,
                msgpipe_strerror(rc));
        return 1;
    }
    ex_print_listening("server", srv, name);
    for (session = 1; session <= SESSIONS; session++) {
        const char *fmt =
            session == 2 ? "%d_%m_%Y_%H_%M_%S" : "%d/%m/%Y %H:%M:%S";
        msgpipe_peer_info peer;
        msgpipe *p;

        rc = msgpipe_accept(srv, MSGPIPE_INFINITE, &p);
        if (rc == MSGPIPE_EACCES) { /* its authkey did not match */
            printf("server: a client with the wrong authkey was refused\n");
            session--;
            continue;
        }
        if (rc != MSGPIPE_OK) {
            fprintf(stderr, "server: accept failed: %s\n",
                    msgpipe_strerror(rc));
            msgpipe_server_close(srv);
            return 1;
        }
        if (msgpipe_peer(p, &peer) == MSGPIPE_OK)
            printf("server: session %d: client connected (pid %lld)\n", session,
                   (long long)peer.pid);
        else
            printf("server: session %d: client connected\n", session);
        for (i = 0; i < MESSAGES; i++) {
            char stamp[64];
            time_t now = time(NULL);
            size_t n = strftime(stamp, sizeof(stamp), fmt, localtime(&now));

            rc = msgpipe_send(p, stamp, n, 5000);
            if (rc != MSGPIPE_OK) {
                printf("server: session %d: client gone after %d messages "
                       "(%s)\n",
                       session, i, msgpipe_strerror(rc));
                break;
            }
            printf("server: session %d: sent %s\n", session, stamp);
            if (i + 1 < MESSAGES)
                ex_sleep_ms(200);
        }
        msgpipe_close(p);
        printf("server: session %d: closed\n", session);
    }
    msgpipe_server_close(srv);
    printf("server: done\n");
    return 0;
}
