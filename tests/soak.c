/*
 * soak.c - a long load run: many clients, sessions of random length, one
 * echo server, for minutes.  Not a ctest test: run it by hand.
 *
 *     soak [MINUTES [CLIENTS]]        (defaults: 10 minutes, 256 clients)
 *
 * Each client connects, sends a random number (1 to 20,000) of numbered,
 * checksummed messages with up to 64 in flight, checks every echo, closes,
 * and starts again, until the time is up.  The server (one thread,
 * msgpipe_poll) checks the sequence and checksum of every message it
 * receives before echoing it.  Progress is printed every 10 seconds, the
 * totals at the end.  Exit status 0 if every message came back exactly;
 * 1 on the first loss, duplicate, reordering, corruption or failed call
 * (the first error is printed); 2 on a usage error.
 *
 * The engine is tests/test_load.c's (built here without its cmocka main).
 */
#define LOAD_NO_MAIN
#include "test_load.c"

int main(int argc, char **argv)
{
    load_cfg cfg;
    load_result *res;
    char why[512];
    double minutes = 10;
    int64_t t0, ms;
    int rc;

    sup_init(argc, argv);
    memset(&cfg, 0, sizeof(cfg));
    cfg.clients = 256;
    if (argc > 1)
        minutes = atof(argv[1]);
    if (argc > 2)
        cfg.clients = atol(argv[2]);
    if (argc > 3 || minutes <= 0 || cfg.clients < 1) {
        fprintf(stderr, "usage: %s [MINUTES [CLIENTS]]\n", argv[0]);
        return 2;
    }
    cfg.seconds = (long)(minutes * 60 + 0.5);
    if (cfg.seconds < 1)
        cfg.seconds = 1;
    cfg.report_secs = 10;
    /* Two descriptors per client in this process, plus some. */
    if (!sup_raise_fd_limit(2 * cfg.clients + 64)) {
        fprintf(stderr, "soak: cannot open %ld descriptors\n",
                2 * cfg.clients + 64);
        return 2;
    }
    res = (load_result *)calloc(1, sizeof(*res));
    if (res == NULL)
        return 2;
    printf("soak: %s backend, %ld clients, %ld s\n", msgpipe_backend(),
           cfg.clients, cfg.seconds);
    t0 = sup_now_ms();
    rc = load_run(&cfg, res, why, sizeof(why));
    ms = sup_now_ms() - t0;
    printf("soak: %ld sessions, %ld messages sent, %ld echoed, %ld received "
           "(%ld MiB) in %.1f s: %.0f messages/s\n",
           res->sessions, res->sent, res->echoed, res->received,
           res->bytes >> 20, (double)ms / 1000.0,
           ms > 0 ? (double)res->received * 1000.0 / (double)ms : 0.0);
    if (rc != 0) {
        printf("soak: FAILED: %s\n", why);
        return 1;
    }
    printf("soak: OK: nothing lost, duplicated, reordered or corrupted\n");
    return 0;
}
