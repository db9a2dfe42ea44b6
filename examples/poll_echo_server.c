/*
 * poll_echo_server [NAME] - echo_server in one thread, with msgpipe_poll.
 *
 * Sends every message back to its sender, unchanged, for any number of
 * clients at once, without a thread per client: one msgpipe_poll() call
 * waits for all of them and for new clients.  SIGINT or SIGTERM stops it
 * cleanly: the handler calls msgpipe_server_shutdown(), which msgpipe_poll
 * reports on the server item; then every pipe is closed and
 * msgpipe_server_close() removes the name.  NAME defaults to "echo".
 *
 * The same source builds on POSIX and Windows.
 */
#include <msgpipe.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static msgpipe_server *g_srv;

static void on_signal(int sig)
{
    (void)sig;
    msgpipe_server_shutdown(g_srv); /* safe in a signal handler */
}

/* Item 0 is the server; the others are clients, closed ones are holes
 * (both pointers NULL) that msgpipe_poll skips and new clients reuse. */
typedef struct {
    msgpipe_pollitem *items;
    size_t n, cap;
} item_list;

static int add_client(item_list *l, msgpipe *p)
{
    size_t i;

    for (i = 1; i < l->n; i++) {
        if (l->items[i].pipe == NULL) {
            l->items[i].pipe = p;
            return 0;
        }
    }
    if (l->n == l->cap) {
        size_t cap = l->cap * 2;
        msgpipe_pollitem *ni =
            (msgpipe_pollitem *)realloc(l->items, cap * sizeof(*ni));
        if (ni == NULL)
            return -1;
        l->items = ni;
        l->cap = cap;
    }
    l->items[l->n].pipe = p;
    l->items[l->n].server = NULL;
    l->items[l->n].events = MSGPIPE_POLLIN;
    l->items[l->n].revents = 0;
    l->items[l->n].user = NULL;
    l->n++;
    return 0;
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
    item_list l;
    size_t i;
    int rc, running = 1;

    setvbuf(stdout, NULL, _IOLBF, 0);
    rc = msgpipe_listen(name, NULL, &g_srv);
    if (rc != MSGPIPE_OK) {
        fprintf(stderr, "poll_echo_server: cannot listen on \"%s\": %s\n", name,
                msgpipe_strerror(rc));
        return 1;
    }
    l.cap = 16;
    l.n = 1;
    l.items = (msgpipe_pollitem *)calloc(l.cap, sizeof(*l.items));
    if (l.items == NULL) {
        msgpipe_server_close(g_srv);
        return 1;
    }
    l.items[0].server = g_srv;
    l.items[0].events = MSGPIPE_POLLIN;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    printf("poll_echo_server: listening on \"%s\" (%s)\n", name,
           msgpipe_backend());

    while (running) {
        rc = msgpipe_poll(l.items, l.n, MSGPIPE_INFINITE);
        if (rc < 0) {
            fprintf(stderr, "poll_echo_server: poll: %s\n",
                    msgpipe_strerror(rc));
            break;
        }
        /* Clients first: new ones are added after this pass. */
        for (i = 1; i < l.n; i++) {
            msgpipe_pollitem *it = &l.items[i];
            if (it->pipe != NULL && (it->revents & MSGPIPE_POLLIN) &&
                serve(it->pipe) != 0) {
                msgpipe_close(it->pipe);
                it->pipe = NULL;
            }
        }
        if (l.items[0].revents & MSGPIPE_POLLIN) {
            msgpipe *p;
            while ((rc = msgpipe_accept(g_srv, 0, &p)) == MSGPIPE_OK) {
                if (add_client(&l, p) != 0)
                    msgpipe_close(p); /* out of memory: refuse politely */
            }
            if (rc == MSGPIPE_ESHUTDOWN)
                running = 0;
        }
    }
    for (i = 1; i < l.n; i++)
        msgpipe_close(l.items[i].pipe);
    free(l.items);
    msgpipe_server_close(g_srv);
    printf("poll_echo_server: stopped\n");
    return 0;
}
