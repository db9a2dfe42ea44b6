/*
 * test_load.c - many clients, many messages, one echo server: nothing
 * lost, duplicated, reordered or corrupted.
 *
 * 32 clients (MSGPIPE_LOAD_CLIENTS) each send 100,000 messages
 * (MSGPIPE_LOAD_MESSAGES) through one msgpipe server that serves every
 * pipe from one thread with msgpipe_poll().  Each message carries the
 * client's id, a sequence number and a checksum of its payload; its size
 * varies (12 bytes to 128, and every 997th is 20 KiB, larger than the
 * POSIX receive buffer).  The server checks each message's sequence and
 * checksum before echoing it; the client checks each echo's sequence,
 * size, checksum and every byte.  A client keeps up to 64 messages (at
 * most 96 KiB) in flight, so pipes are full of back-to-back messages.
 *
 * The same engine, built with LOAD_NO_MAIN, is the soak program
 * (tests/soak.c): hundreds of clients for minutes, reconnecting
 * between sessions of random length.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOAD_WINDOW 64          /* messages in flight per client */
#define LOAD_WINDOW_BYTES 98304 /* bytes in flight per client */
#define LOAD_BIG 20480          /* size of every 997th message */
#define LOAD_SERVER_BATCH 32    /* messages per pipe per poll round */
#define LOAD_HDR 12             /* id, seq, checksum */

/* ---- Messages ---------------------------------------------------------- */

static uint32_t load_fnv(const unsigned char *b, size_t n)
{
    uint32_t h = 2166136261u;
    size_t i;
    for (i = 0; i < n; i++) {
        h ^= b[i];
        h *= 16777619u;
    }
    return h;
}

static size_t load_len(uint32_t id, uint32_t seq)
{
    if (seq % 997 == 996)
        return LOAD_BIG;
    return LOAD_HDR + (size_t)((id * 2654435761u + seq * 40503u) >> 7) % 117;
}

static uint32_t load_seed(uint32_t id, uint32_t seq)
{
    return id * 0x9e3779b1u ^ seq;
}

static void load_make(unsigned char *b, uint32_t id, uint32_t seq, size_t len)
{
    sup_put32(b, id);
    sup_put32(b + 4, seq);
    sup_fill(b + LOAD_HDR, len - LOAD_HDR, load_seed(id, seq));
    sup_put32(b + 8, load_fnv(b + LOAD_HDR, len - LOAD_HDR));
}

/* ---- Shared results ---------------------------------------------------- */

typedef struct load_result {
    volatile long sent, echoed, received; /* messages */
    volatile long bytes;                  /* received by clients */
    volatile long sessions;
    volatile long errors;
    char first_error[256]; /* written by whoever counted the first error */
} load_result;

static void load_error(load_result *r, const char *fmt, ...)
{
    if (sup_atomic_add(&r->errors, 1) == 1) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->first_error, sizeof(r->first_error), fmt, ap);
        va_end(ap);
    }
}

/* ---- The server: one thread, msgpipe_poll over every pipe --------------- */

typedef struct load_pipe {
    msgpipe *p;
    int known;         /* first message seen: id and next are set */
    uint32_t id, next; /* the client's id; the sequence number expected */
} load_pipe;

typedef struct load_server {
    msgpipe_server *srv;
    load_result *res;
    volatile long stop;
    volatile long fatal;
    volatile long open, accepted;
} load_server;

/* Check a message from a client, as the server sees it. */
static int load_server_check(load_server *s, load_pipe *lp,
                             const unsigned char *m, size_t len)
{
    uint32_t id, seq;

    if (len < LOAD_HDR) {
        load_error(s->res, "server: message of %lu bytes", (unsigned long)len);
        return -1;
    }
    id = sup_get32(m);
    seq = sup_get32(m + 4);
    if (!lp->known) {
        /* A client numbers each session from 0. */
        lp->known = 1;
        lp->id = id;
        lp->next = 0;
    }
    if (id != lp->id || seq != lp->next) {
        load_error(s->res,
                   "server: client %lu sent seq %lu (id %lu); expected %lu",
                   (unsigned long)lp->id, (unsigned long)seq, (unsigned long)id,
                   (unsigned long)lp->next);
        return -1;
    }
    if (len != load_len(id, seq) ||
        sup_get32(m + 8) != load_fnv(m + LOAD_HDR, len - LOAD_HDR)) {
        load_error(s->res, "server: client %lu seq %lu: bad size or checksum",
                   (unsigned long)id, (unsigned long)seq);
        return -1;
    }
    lp->next++;
    return 0;
}

static int load_serve(load_server *s, load_pipe *lp)
{
    int i;

    for (i = 0; i < LOAD_SERVER_BATCH; i++) {
        void *m = NULL;
        size_t len = 0;
        int rc = msgpipe_recv_alloc(lp->p, &m, &len, 0);

        if (rc == MSGPIPE_ETIMEDOUT)
            return 0;
        if (rc == MSGPIPE_ECLOSED)
            return -1; /* the client finished its session */
        if (rc != MSGPIPE_OK) {
            load_error(s->res, "server: receive: %s", msgpipe_errname(rc));
            return -1;
        }
        if (load_server_check(s, lp, (unsigned char *)m, len) != 0) {
            msgpipe_free(m);
            return -1;
        }
        rc = msgpipe_send(lp->p, m, len, SUP_T_LONG);
        msgpipe_free(m);
        if (rc != MSGPIPE_OK) {
            load_error(s->res, "server: send: %s", msgpipe_errname(rc));
            return -1;
        }
        sup_atomic_add(&s->res->echoed, 1);
    }
    return 0;
}

static void *load_server_main(void *arg)
{
    load_server *s = (load_server *)arg;
    load_pipe *pipes = NULL;
    msgpipe_pollitem *items = NULL;
    size_t n = 0, cap = 0, i, k;

    while (!sup_atomic_get(&s->stop)) {
        int rc;

        if (cap < n + 1) {
            cap = cap * 2 + 64;
            pipes = (load_pipe *)realloc(pipes, cap * sizeof(*pipes));
            items =
                (msgpipe_pollitem *)realloc(items, (cap + 1) * sizeof(*items));
            if (pipes == NULL || items == NULL) {
                sup_atomic_set(&s->fatal, MSGPIPE_ENOMEM);
                break;
            }
        }
        memset(items, 0, (n + 1) * sizeof(*items));
        items[0].server = s->srv;
        items[0].events = MSGPIPE_POLLIN;
        for (i = 0; i < n; i++) {
            items[i + 1].pipe = pipes[i].p;
            items[i + 1].events = MSGPIPE_POLLIN;
        }
        rc = msgpipe_poll(items, n + 1, 100);
        if (rc == MSGPIPE_ETIMEDOUT)
            continue;
        if (rc < 0) {
            sup_atomic_set(&s->fatal, rc);
            break;
        }
        for (i = 0; i < n; i++) {
            if ((items[i + 1].revents & MSGPIPE_POLLIN) &&
                load_serve(s, &pipes[i]) != 0) {
                msgpipe_close(pipes[i].p);
                pipes[i].p = NULL;
                sup_atomic_add(&s->open, -1);
            }
        }
        for (i = k = 0; i < n; i++)
            if (pipes[i].p != NULL)
                pipes[k++] = pipes[i];
        n = k;
        if (items[0].revents & MSGPIPE_POLLIN) {
            while (n < cap) {
                msgpipe *p = NULL;
                rc = msgpipe_accept(s->srv, 0, &p);
                if (rc == MSGPIPE_ETIMEDOUT || rc == MSGPIPE_ESHUTDOWN)
                    break;
                if (rc != MSGPIPE_OK) {
                    sup_atomic_set(&s->fatal, rc);
                    break;
                }
                memset(&pipes[n], 0, sizeof(pipes[n]));
                pipes[n++].p = p;
                sup_atomic_add(&s->accepted, 1);
                sup_atomic_add(&s->open, 1);
            }
        }
    }
    for (i = 0; i < n; i++)
        msgpipe_close(pipes[i].p);
    free(pipes);
    free(items);
    return NULL;
}

/* ---- Clients ----------------------------------------------------------- */

typedef struct load_client {
    const char *name;
    load_result *res;
    uint32_t id;
    long messages;    /* per session; 0: random sessions until deadline */
    int64_t deadline; /* sup_now_ms() value, or 0 */
    uint32_t rng;
} load_client;

/* One session: connect, send n messages with a window, check every echo,
 * close.  Returns 0, or -1 after recording an error. */
static int load_session(load_client *c, long n, unsigned char *out,
                        unsigned char *in)
{
    load_result *r = c->res;
    msgpipe *p = NULL;
    long sent = 0, got = 0, inflight_bytes = 0;
    int rc;

    rc = msgpipe_connect(c->name, NULL, SUP_T_LONG, &p);
    if (rc != MSGPIPE_OK) {
        load_error(r, "client %lu: connect: %s", (unsigned long)c->id,
                   msgpipe_errname(rc));
        return -1;
    }
    while (got < n) {
        size_t len, rlen = 0;
        uint32_t seq, id;

        /* Fill the window. */
        while (sent < n && sent - got < LOAD_WINDOW) {
            len = load_len(c->id, (uint32_t)sent);
            if (sent > got && inflight_bytes + (long)len > LOAD_WINDOW_BYTES)
                break;
            load_make(out, c->id, (uint32_t)sent, len);
            rc = msgpipe_send(p, out, len, SUP_T_LONG);
            if (rc != MSGPIPE_OK) {
                load_error(r, "client %lu: send %ld: %s", (unsigned long)c->id,
                           sent, msgpipe_errname(rc));
                goto fail;
            }
            inflight_bytes += (long)len;
            sent++;
            sup_atomic_add(&r->sent, 1);
        }
        /* Take one echo and check all of it. */
        rc = msgpipe_recv(p, in, LOAD_BIG, &rlen, SUP_T_LONG);
        if (rc != MSGPIPE_OK) {
            load_error(r, "client %lu: receive after %ld of %ld: %s",
                       (unsigned long)c->id, got, n, msgpipe_errname(rc));
            goto fail;
        }
        id = sup_get32(in);
        seq = sup_get32(in + 4);
        len = load_len(c->id, (uint32_t)got);
        if (rlen < LOAD_HDR || id != c->id || seq != (uint32_t)got) {
            load_error(r,
                       "client %lu: expected echo %ld, got id %lu seq %lu "
                       "(%s)",
                       (unsigned long)c->id, got, (unsigned long)id,
                       (unsigned long)seq,
                       seq < (uint32_t)got ? "duplicate or reordered"
                                           : "lost or reordered");
            goto fail;
        }
        if (rlen != len ||
            sup_get32(in + 8) != load_fnv(in + LOAD_HDR, rlen - LOAD_HDR) ||
            sup_check(in + LOAD_HDR, rlen - LOAD_HDR, load_seed(c->id, seq)) !=
                (size_t)-1) {
            load_error(r, "client %lu: echo %ld corrupted (%lu bytes)",
                       (unsigned long)c->id, got, (unsigned long)rlen);
            goto fail;
        }
        inflight_bytes -= (long)rlen;
        got++;
        sup_atomic_add(&r->received, 1);
        sup_atomic_add(&r->bytes, (long)rlen);
    }
    msgpipe_close(p);
    sup_atomic_add(&r->sessions, 1);
    return 0;
fail:
    msgpipe_close(p);
    return -1;
}

static void *load_client_main(void *arg)
{
    load_client *c = (load_client *)arg;
    unsigned char *out = (unsigned char *)malloc(LOAD_BIG);
    unsigned char *in = (unsigned char *)malloc(LOAD_BIG);

    if (out == NULL || in == NULL) {
        load_error(c->res, "client: out of memory");
    } else if (c->deadline == 0) {
        (void)load_session(c, c->messages, out, in);
    } else {
        /* Sessions of random length until the deadline. */
        while (sup_now_ms() < c->deadline) {
            long n;
            c->rng = c->rng * 1664525u + 1013904223u;
            n = 1 + (long)((c->rng >> 8) % 20000);
            if (load_session(c, n, out, in) != 0)
                break;
        }
    }
    free(out);
    free(in);
    return NULL;
}

/* ---- A whole run ------------------------------------------------------- */

typedef struct load_cfg {
    long clients;
    long messages;   /* per client, one session; 0 with seconds > 0 */
    long seconds;    /* > 0: random sessions for this long */
    int report_secs; /* print progress every this many seconds (0: no) */
} load_cfg;

/* Run the load; returns 0 if every message came back exactly, else -1
 * (with the first error printed).  *res is filled either way. */
static int load_run(const load_cfg *cfg, load_result *res, char *why,
                    size_t why_cap)
{
    char name[96];
    load_server *s = (load_server *)calloc(1, sizeof(*s));
    load_client *c = (load_client *)calloc((size_t)cfg->clients, sizeof(*c));
    sup_thread *ts,
        **tc = (sup_thread **)calloc((size_t)cfg->clients, sizeof(*tc));
    msgpipe_options o;
    int64_t t0 = sup_now_ms(), deadline = 0, next_report;
    long i;
    int rc;

    why[0] = '\0';
    if (s == NULL || c == NULL || tc == NULL) {
        snprintf(why, why_cap, "out of memory");
        return -1;
    }
    if (cfg->seconds > 0)
        deadline = t0 + (int64_t)cfg->seconds * 1000;
    sup_name(name, sizeof(name), "load");
    msgpipe_options_init(&o);
    o.pending = 256;
    rc = msgpipe_listen(name, &o, &s->srv);
    if (rc != MSGPIPE_OK) {
        snprintf(why, why_cap, "listen: %s", msgpipe_errname(rc));
        return -1;
    }
    s->res = res;
    ts = sup_thread_start(load_server_main, s);
    for (i = 0; i < cfg->clients; i++) {
        c[i].name = name;
        c[i].res = res;
        c[i].id = (uint32_t)i;
        c[i].messages = cfg->messages;
        c[i].deadline = deadline;
        c[i].rng = (uint32_t)i * 2654435761u + 1;
        tc[i] = sup_thread_start(load_client_main, &c[i]);
    }
    next_report = t0 + (int64_t)cfg->report_secs * 1000;
    for (i = 0; i < cfg->clients; i++) {
        while (cfg->report_secs > 0 &&
               sup_thread_join_timeout(tc[i], 200, NULL) != 0) {
            if (sup_now_ms() >= next_report) {
                printf("%6lds: %ld messages echoed, %ld sessions, %ld "
                       "errors\n",
                       (long)((sup_now_ms() - t0) / 1000),
                       sup_atomic_get(&res->received),
                       sup_atomic_get(&res->sessions),
                       sup_atomic_get(&res->errors));
                fflush(stdout);
                next_report += (int64_t)cfg->report_secs * 1000;
            }
        }
        if (cfg->report_secs <= 0)
            sup_thread_join(tc[i]);
    }
    msgpipe_server_shutdown(s->srv);
    sup_atomic_set(&s->stop, 1);
    sup_thread_join(ts);
    msgpipe_server_close(s->srv);
    if (s->fatal != 0)
        snprintf(why, why_cap, "server: poll/accept: %s",
                 msgpipe_errname((int)s->fatal));
    else if (res->errors > 0)
        snprintf(why, why_cap, "%ld error(s), the first: %s", res->errors,
                 res->first_error);
    else if (res->sent != res->received || res->echoed != res->received)
        snprintf(why, why_cap, "sent %ld, echoed %ld, received %ld", res->sent,
                 res->echoed, res->received);
    else if (cfg->seconds <= 0 && res->received != cfg->clients * cfg->messages)
        snprintf(why, why_cap, "received %ld of %ld", res->received,
                 cfg->clients * cfg->messages);
    free(s);
    free(c);
    free(tc);
    return why[0] == '\0' ? 0 : -1;
}

#ifndef LOAD_NO_MAIN

static void test_32_clients_each_100000_messages(void **state)
{
    load_cfg cfg;
    load_result *res = (load_result *)calloc(1, sizeof(*res));
    char why[512];
    int64_t t0 = sup_now_ms(), ms;
    int rc;
    (void)state;

    assert_non_null(res);
    memset(&cfg, 0, sizeof(cfg));
    cfg.clients = sup_env_long("MSGPIPE_LOAD_CLIENTS", 32);
    /* Under Wine every pipe operation is a round trip to the wineserver
     * (about 6,000 messages/s here): 100,000 per client would take ten
     * minutes, so the default there is 2,000 (about 10 s). */
    cfg.messages =
        sup_env_long("MSGPIPE_LOAD_MESSAGES", sup_is_wine() ? 2000 : 100000);
    if (cfg.clients < 1)
        cfg.clients = 1;
    if (cfg.messages < 1)
        cfg.messages = 1;
    rc = load_run(&cfg, res, why, sizeof(why));
    ms = sup_now_ms() - t0;
    print_message("%ld clients x %ld messages: %ld echoed (%ld MiB) in %ld ms "
                  "(%.0f messages/s)\n",
                  cfg.clients, cfg.messages, res->received, res->bytes >> 20,
                  (long)ms,
                  ms > 0 ? (double)res->received * 1000.0 / (double)ms : 0.0);
    if (rc != 0) {
        print_error("load: %s\n", why);
        fail();
    }
    assert_int_equal(res->received, cfg.clients * cfg.messages);
    free(res);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_32_clients_each_100000_messages),
    };

    sup_init(argc, argv);
    return sup_finish(cmocka_run_group_tests_name("load", tests, 0, 0));
}

#endif /* LOAD_NO_MAIN */
