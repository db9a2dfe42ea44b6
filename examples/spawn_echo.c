/*
 * spawn_echo.c - start a program with a pipe to it and talk to it line by
 * line.
 *
 *     spawn_echo PROGRAM [ARGS...]
 *
 * PROGRAM is started with msgpipe_spawn(); it finds its end of the pipe in
 * the environment variable MSGPIPE_PARENT (msgpipe_from_parent() in C, or
 * multiprocessing.connection.Connection in Python on POSIX: docs/spawn.md).
 * Every line of standard input, without its newline, is sent as one
 * message; after each, one reply is awaited and printed as a line.  At the
 * end of input the replies still coming are printed, the pipe is closed
 * (the child then receives MSGPIPE_ECLOSED, its cue to end), and the
 * child's exit code is printed:
 *
 *     $ printf 'one\ntwo\n' | spawn_echo python3 tests/py_spawn_child.py 3
 *     hello from python
 *     py:one
 *     py:two
 *     exit code 3
 */
#include "msgpipe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Print one message as a line. */
static void print_reply(const void *m, size_t len)
{
    fwrite(m, 1, len, stdout);
    putchar('\n');
    fflush(stdout);
}

/* Receive one message within timeout_ms and print it: MSGPIPE_OK, or the
 * error (ETIMEDOUT, ECLOSED, ...). */
static int print_next(msgpipe *p, int timeout_ms)
{
    void *m = NULL;
    size_t len = 0;
    int rc = msgpipe_recv_alloc(p, &m, &len, timeout_ms);
    if (rc == MSGPIPE_OK)
        print_reply(m, len);
    msgpipe_free(m);
    return rc;
}

int main(int argc, char **argv)
{
    msgpipe *p = NULL;
    msgpipe_process *child = NULL;
    char line[65536];
    int rc, code = 0, alive = 1;

    if (argc < 2) {
        fprintf(stderr, "usage: %s PROGRAM [ARGS...]\n", argv[0]);
        return 2;
    }
    /* argv + 1 ends with the NULL that ends argv. */
    rc = msgpipe_spawn((const char *const *)(argv + 1), NULL, &p, &child);
    if (rc != MSGPIPE_OK) {
        fprintf(stderr, "spawn_echo: cannot start %s: %s\n", argv[1],
                msgpipe_strerror(rc));
        return 1;
    }

    while (alive && fgets(line, sizeof(line), stdin) != NULL) {
        size_t n = strlen(line);
        if (n > 0 && line[n - 1] == '\n')
            line[--n] = '\0';
        if (n > 0 && line[n - 1] == '\r')
            line[--n] = '\0';
        rc = msgpipe_send(p, line, n, MSGPIPE_INFINITE);
        if (rc == MSGPIPE_OK)
            rc = print_next(p, MSGPIPE_INFINITE);
        if (rc != MSGPIPE_OK) {
            if (rc != MSGPIPE_ECLOSED)
                fprintf(stderr, "spawn_echo: %s\n", msgpipe_strerror(rc));
            alive = 0; /* the child closed its end, or exited */
        }
    }
    /* Replies still on their way (a child that says more than one thing
     * per message), until it is quiet for half a second. */
    while (alive && print_next(p, 500) == MSGPIPE_OK) {
    }
    msgpipe_close(p);

    rc = msgpipe_process_wait(child, MSGPIPE_INFINITE, &code);
    msgpipe_process_close(child);
    if (rc != MSGPIPE_OK) {
        fprintf(stderr, "spawn_echo: wait: %s\n", msgpipe_strerror(rc));
        return 1;
    }
    printf("exit code %d\n", code);
    return 0;
}
