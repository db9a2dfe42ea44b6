/*
 * poll_echo_server [NAME] - echo_server in one thread, with msgpipe_poller.
 *
 * Sends every message back to its sender, unchanged, for any number of
 * clients at once, without a thread per client: one msgpipe_poller holds
 * the server and every client, and each msgpipe_poller_wait() reports only
 * what is ready - its cost does not grow with idle clients.  SIGINT or
 * SIGTERM stops it cleanly: the handler calls msgpipe_server_shutdown(),
 * which the poller reports on the server; then every pipe is closed and
 * msgpipe_server_close() removes the name.  NAME defaults to "echo".
 *
 * The same source builds on POSIX and Windows.
 */
#include <msgpipe.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "example_options.h"

static msgpipe_server *g_srv;

static void on_signal(int sig)
{
    (void)sig;
    msgpipe_server_shutdown(g_srv); /* safe in a signal handler */
}

/* Every client, in a list so that all can be closed at the end; the
 * poller hands each one's node back as the user pointer. */
typedef struct client {
    msgpipe *p;
    struct client *prev, *next;
} client;

static client *g_clients;

static void client_drop(client *c)
{
    msgpipe_close(c->p); /* also removes it from the poller */
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        g_clients = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    free(c);
}

static void client_add(msgpipe_poller *pl, msgpipe *p)
{
    client *c = (client *)calloc(1, sizeof(*c));

    if (c == NULL ||
        msgpipe_poller_add(pl, p, NULL, MSGPIPE_POLLIN, c) != MSGPIPE_OK) {
        free(c);
        msgpipe_close(p); /* out of memory: refuse politely */
        return;
    }
    c->p = p;
    c->next = g_clients;
    if (g_clients != NULL)
        g_clients->prev = c;
    g_clients = c;
}

/* Echo every message that is waiting; returns 0 to keep the client. */
static int serve(msgpipe *p)
{
    void *msg;
    size_t len;
    int rc;

    for (;;) {
        rc = msgpipe_recv_alloc(p, &msg, &len, 0);
        if (rc == MSGPIPE_ETIMEDOUT)
            return 0; /* drained: wait for more */
        if (rc == MSGPIPE_EMSGSIZE)
            continue; /* too large: skipped, the pipe goes on */
        if (rc != MSGPIPE_OK)
            return -1; /* the client left (ECLOSED) or broke the pipe */
        /* A client that does not read its echoes for 5 s is dropped, so
         * that it cannot stall everybody else. */
        rc = msgpipe_send(p, msg, len, 5000);
        msgpipe_free(msg);
        if (rc != MSGPIPE_OK)
            return -1;
    }
}

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "echo";
    msgpipe_poller *pl;
    msgpipe_event ev[64];
    msgpipe_options opt;
    int rc, i, running = 1;

    setvbuf(stdout, NULL, _IOLBF, 0);
    rc = msgpipe_listen(name, ex_options(&opt), &g_srv);
    if (rc != MSGPIPE_OK) {
        fprintf(stderr, "poll_echo_server: cannot listen on \"%s\": %s\n", name,
                msgpipe_strerror(rc));
        return 1;
    }
    rc = msgpipe_poller_new(&pl);
    if (rc == MSGPIPE_OK)
        rc = msgpipe_poller_add(pl, NULL, g_srv, MSGPIPE_POLLIN, NULL);
    if (rc != MSGPIPE_OK) {
        fprintf(stderr, "poll_echo_server: poller: %s\n", msgpipe_strerror(rc));
        msgpipe_server_close(g_srv);
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    ex_print_listening("poll_echo_server", g_srv, name);

    while (running) {
        int n = msgpipe_poller_wait(pl, ev, 64, MSGPIPE_INFINITE);
        if (n < 0) {
            fprintf(stderr, "poll_echo_server: wait: %s\n",
                    msgpipe_strerror(n));
            break;
        }
        for (i = 0; i < n; i++) {
            if (ev[i].server != NULL) { /* new clients, or shutdown */
                msgpipe *p;
                /* EACCES: a client with the wrong authkey; go on. */
                while ((rc = msgpipe_accept(g_srv, 0, &p)) == MSGPIPE_OK ||
                       rc == MSGPIPE_EACCES)
                    if (rc == MSGPIPE_OK)
                        client_add(pl, p);
                if (rc == MSGPIPE_ESHUTDOWN)
                    running = 0;
            } else if (serve(ev[i].pipe) != 0) {
                /* Only this event names it: closing is safe here. */
                client_drop((client *)ev[i].user);
            }
        }
    }
    msgpipe_poller_close(pl);
    while (g_clients != NULL)
        client_drop(g_clients);
    msgpipe_server_close(g_srv);
    printf("poll_echo_server: stopped\n");
    return 0;
}
