/*
 * example_options.h - the options the examples listen and connect with:
 * the authkey from the environment variable MSGPIPE_AUTHKEY when it is
 * set (docs/tcp.md), so that any example works with any name - a local
 * one, or tcp://HOST:PORT between machines - and with a server or client
 * that has a key, Python's multiprocessing.connection included:
 *
 *     MSGPIPE_AUTHKEY=secret ./echo_server tcp://0.0.0.0:5000
 *     MSGPIPE_AUTHKEY=secret ./demo_client tcp://server.example:5000
 *
 * Not part of the library.
 */
#ifndef MSGPIPE_EXAMPLE_OPTIONS_H
#define MSGPIPE_EXAMPLE_OPTIONS_H

#include <msgpipe.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline msgpipe_options *ex_options(msgpipe_options *o)
{
    const char *key = getenv("MSGPIPE_AUTHKEY");

    msgpipe_options_init(o);
    if (key != NULL && key[0] != '\0') {
        o->authkey = key;
        o->authkey_len = strlen(key);
    }
    return o;
}

/* Say where a server listens: for tcp:// the address it is bound to (with
 * the port the system picked for port 0), else the name. */
static inline void ex_print_listening(const char *who, msgpipe_server *srv,
                                      const char *name)
{
    char addr[128];
    size_t len;

    if (msgpipe_server_address(srv, addr, sizeof(addr), &len) == MSGPIPE_OK)
        name = addr;
    printf("%s: listening on \"%s\" (%s%s)\n", who, name, msgpipe_backend(),
           getenv("MSGPIPE_AUTHKEY") != NULL ? ", authkey" : "");
}

#endif /* MSGPIPE_EXAMPLE_OPTIONS_H */
