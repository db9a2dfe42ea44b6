/*
 * consumer - a program that uses an installed msgpipe, as any application
 * would: #include <msgpipe.h> and a library found by CMake's find_package,
 * by pkg-config, or by add_subdirectory.  scripts/consumer-test.sh builds it
 * every way, against the shared and the static library, and runs it.
 *
 *   consumer [NAME]
 *
 * In one thread: listen on NAME, connect, accept, a message each way,
 * close one end and see the other get MSGPIPE_ECLOSED; plus the error
 * path a new user meets first (no server).  Exit status 0 when all is well.
 * Strict C99 and nothing but msgpipe.h and the C library.
 */
#include <msgpipe.h>

#include <stdio.h>
#include <string.h>

static int failures;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "consumer: %s:%d: check failed: %s\n", __FILE__,   \
                    __LINE__, #cond);                                          \
            failures++;                                                        \
        }                                                                      \
    } while (0)

#define CHECK_RC(call, want)                                                   \
    do {                                                                       \
        int rc_ = (call);                                                      \
        if (rc_ != (want)) {                                                   \
            fprintf(stderr,                                                    \
                    "consumer: %s:%d: %s returned %s (%s), "                   \
                    "expected %s\n",                                           \
                    __FILE__, __LINE__, #call, msgpipe_errname(rc_),           \
                    msgpipe_strerror(rc_), msgpipe_errname(want));             \
            failures++;                                                        \
        }                                                                      \
    } while (0)

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "msgpipe-consumer";
    char missing[200];
    msgpipe_server *srv = NULL;
    msgpipe *client = NULL, *server_end = NULL, *p;
    char buf[64];
    size_t len = 0;
    void *msg = NULL;

#ifdef MSGPIPE_STATIC
    const char *linkage = "static";
#else
    const char *linkage = "shared";
#endif
    printf("consumer: msgpipe %s (header %d, library %d), backend %s, %s "
           "library\n",
           msgpipe_version_string(), MSGPIPE_VERSION, msgpipe_version(),
           msgpipe_backend(), linkage);
    CHECK(msgpipe_version() == MSGPIPE_VERSION);

    /* The first error a new user meets: nobody listens there. */
    sprintf(missing, "%.150s-nobody", name);
    p = NULL;
    CHECK_RC(msgpipe_connect(missing, NULL, MSGPIPE_NOWAIT, &p),
             MSGPIPE_ENOENT);
    CHECK(p == NULL);

    /* A round trip, in one thread: connect completes before accept. */
    CHECK_RC(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    if (srv == NULL)
        return 1;
    CHECK_RC(msgpipe_connect(name, NULL, 5000, &client), MSGPIPE_OK);
    CHECK_RC(msgpipe_accept(srv, 5000, &server_end), MSGPIPE_OK);
    if (client == NULL || server_end == NULL) {
        msgpipe_close(client);
        msgpipe_close(server_end);
        msgpipe_server_close(srv);
        return 1;
    }

    CHECK_RC(msgpipe_send(client, "ping", 4, 5000), MSGPIPE_OK);
    CHECK_RC(msgpipe_recv(server_end, buf, sizeof buf, &len, 5000), MSGPIPE_OK);
    CHECK(len == 4 && memcmp(buf, "ping", 4) == 0);

    CHECK_RC(msgpipe_send(server_end, "pong", 4, 5000), MSGPIPE_OK);
    CHECK_RC(msgpipe_send(server_end, "", 0, 5000), MSGPIPE_OK);
    CHECK_RC(msgpipe_recv_alloc(client, &msg, &len, 5000), MSGPIPE_OK);
    CHECK(msg != NULL && len == 4 && strcmp((const char *)msg, "pong") == 0);
    msgpipe_free(msg);

    /* Close is graceful: the empty message sent before it still arrives,
     * then the end of the pipe. */
    msgpipe_close(server_end);
    CHECK_RC(msgpipe_recv(client, buf, sizeof buf, &len, 5000), MSGPIPE_OK);
    CHECK(len == 0);
    CHECK_RC(msgpipe_recv(client, buf, sizeof buf, &len, 5000),
             MSGPIPE_ECLOSED);
    msgpipe_close(client);
    msgpipe_server_close(srv);

    if (failures) {
        fprintf(stderr, "consumer: %d check(s) failed\n", failures);
        return 1;
    }
    printf("consumer: round trip on \"%s\" OK\n", name);
    return 0;
}
