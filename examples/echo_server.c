/*
 * echo_server [NAME] - sends every message back to its sender, unchanged.
 *
 * Serves many clients at once, one thread each.  SIGINT or SIGTERM stops
 * it cleanly: the accept loop is released with msgpipe_server_shutdown()
 * (safe to call from a signal handler), the clients' threads finish, and
 * msgpipe_server_close() removes the name.  NAME defaults to "echo".
 */
#include <msgpipe.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "example_options.h"
#include "example_util.h"

static msgpipe_server *g_srv;
static volatile sig_atomic_t g_stop;
static ex_mutex g_lock;
static int g_active;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
    msgpipe_server_shutdown(g_srv);
}

static void serve(void *arg)
{
    msgpipe *p = (msgpipe *)arg;
    void *msg;
    size_t len;
    int rc;

    while (!g_stop) {
        /* A short timeout lets the thread notice a stop request. */
        rc = msgpipe_recv_alloc(p, &msg, &len, 250);
        if (rc == MSGPIPE_ETIMEDOUT || rc == MSGPIPE_EMSGSIZE)
            continue;
        if (rc != MSGPIPE_OK)
            break;
        rc = msgpipe_send(p, msg, len, MSGPIPE_INFINITE);
        msgpipe_free(msg);
        if (rc != MSGPIPE_OK)
            break;
    }
    msgpipe_close(p);
    ex_mutex_lock(&g_lock);
    g_active--;
    ex_mutex_unlock(&g_lock);
}

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "echo";
    msgpipe_options opt;
    msgpipe *p;
    int rc, active;

    setvbuf(stdout, NULL, _IOLBF, 0);
    ex_mutex_init(&g_lock);
    rc = msgpipe_listen(name, ex_options(&opt), &g_srv);
    if (rc != MSGPIPE_OK) {
        fprintf(stderr, "echo_server: cannot listen on \"%s\": %s\n", name,
                msgpipe_strerror(rc));
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    ex_print_listening("echo_server", g_srv, name);
    for (;;) {
        rc = msgpipe_accept(g_srv, MSGPIPE_INFINITE, &p);
        if (rc == MSGPIPE_ESHUTDOWN)
            break;
        if (rc == MSGPIPE_EACCES) /* a client with the wrong authkey */
            continue;
        if (rc != MSGPIPE_OK) {
            fprintf(stderr, "echo_server: accept: %s\n", msgpipe_strerror(rc));
            ex_sleep_ms(100); /* e.g. out of descriptors: do not spin */
            continue;
        }
        ex_mutex_lock(&g_lock);
        g_active++;
        ex_mutex_unlock(&g_lock);
        if (ex_thread_detached(serve, p) != 0) {
            msgpipe_close(p);
            ex_mutex_lock(&g_lock);
            g_active--;
            ex_mutex_unlock(&g_lock);
        }
    }
    g_stop = 1;
    do {
        ex_mutex_lock(&g_lock);
        active = g_active;
        ex_mutex_unlock(&g_lock);
        if (active > 0)
            ex_sleep_ms(10);
    } while (active > 0);
    msgpipe_server_close(g_srv);
    printf("echo_server: stopped\n");
    return 0;
}
