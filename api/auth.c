/*
 * auth.c - the authkey handshake of Python's multiprocessing.connection,
 * on any transport, over msgpipe's own messages.
 *
 * Python's deliver_challenge / answer_challenge, byte for byte (CPython's
 * Lib/multiprocessing/connection.py, 3.12 and 3.11):
 *
 *   deliver: send "#CHALLENGE#" + M, where M is "{sha256}" and 40 random
 *            bytes; receive the answer R (at most 256 bytes); if R is
 *            HMAC(key, M) - "{DIGEST}" + HMAC-DIGEST, or 16 bytes of raw
 *            HMAC-MD5 from Python 3.11 and older - send "#WELCOME#", else
 *            "#FAILURE#" and give up.
 *   answer:  receive "#CHALLENGE#" + M; answer a 20-byte M (Python 3.11
 *            and older) with raw HMAC-MD5(key, M), a "{DIGEST}"-prefixed
 *            one with "{DIGEST}" + HMAC-DIGEST(key, M); expect
 *            "#WELCOME#".
 *
 * The server delivers, then answers; the client answers, then delivers.
 * The MAC always covers the whole challenge, prefix included, so a peer
 * cannot talk the other down to a weaker digest than the one it offered
 * (except to the 16-byte MD5 reply that Python itself still accepts for
 * compatibility; authkey_no_md5 refuses it).  The HMAC and the random
 * bytes come from the system's libraries (msgpipe__b_hmac,
 * msgpipe__b_random): nothing cryptographic is written here.
 *
 * A server runs the handshakes of many connections side by side, each a
 * small state machine driven by receives with timeout 0, so that a client
 * that stalls, sends garbage or announces a huge message holds nothing
 * but its own slot: each message of the handshake is at most 256 bytes
 * (longer is refused at its header, before any payload is stored), each
 * connection has MSGPIPE__AUTH_LIMIT_MS for the whole handshake, and when
 * all MSGPIPE__AUTH_SLOTS slots are taken the oldest handshake is dropped
 * for the new connection (docs/tcp.md).
 */
#include "backend.h"

#include <string.h>

#define MSGPIPE__AUTH_MSG_MAX 256 /* Python: recv_bytes(256) */
#define MSGPIPE__AUTH_SLOTS 64
#define MSGPIPE__CHALLENGE_LEN 40 /* Python 3.12: MESSAGE_LENGTH */
#define MSGPIPE__LEGACY_CHALLENGE_LEN 20
#define MSGPIPE__MD5_LEN 16
#define MSGPIPE__DIGEST_NAME_MAX 8 /* "sha3_256" */

static const char msgpipe__tag_challenge[] = "#CHALLENGE#";
static const char msgpipe__tag_welcome[] = "#WELCOME#";
static const char msgpipe__tag_failure[] = "#FAILURE#";
#define MSGPIPE__TAG_LEN(t) (sizeof(t) - 1)

/* What the server waits for on one connection. */
enum {
    MSGPIPE__HS_ANSWER = 1,    /* the answer to our challenge */
    MSGPIPE__HS_CHALLENGE = 2, /* the client's challenge */
    MSGPIPE__HS_WELCOME = 3,   /* its verdict on our answer */
    MSGPIPE__HS_DONE = 4       /* authenticated, for the next accept */
};

typedef struct msgpipe__hs {
    msgpipe *p;
    int64_t deadline;
    int step;
    size_t chal_len;
    uint8_t chal[MSGPIPE__DIGEST_NAME_MAX + 2 + MSGPIPE__CHALLENGE_LEN];
} msgpipe__hs;

struct msgpipe__auth {
    msgpipe__hs hs[MSGPIPE__AUTH_SLOTS];
    size_t n;
    /* An EACCES that msgpipe_poll's probe met, for the next accept. */
    int pending_rc;
};

/* ---- The protocol, both roles ---------------------------------------------
 */

static const char *const msgpipe__digests[] = {"md5", "sha256", "sha384",
                                               "sha3_256", "sha3_384"};

/* Python's _get_digest_name_and_payload: a message of 16 or 20 bytes is
 * the legacy form (MD5, no prefix: *name "md5", *legacy 1); otherwise it
 * must start with "{NAME}", NAME one Python allows.  *payload is what
 * follows the prefix.  0, or -1 if the message has neither form. */
static int msgpipe__digest_of(const uint8_t *m, size_t len, const char **name,
                              int *legacy, size_t *payload)
{
    size_t i, k;

    *legacy = 0;
    if (len == MSGPIPE__LEGACY_CHALLENGE_LEN || len == MSGPIPE__MD5_LEN) {
        *name = "md5";
        *legacy = 1;
        *payload = 0;
        return 0;
    }
    if (len < 2 || m[0] != '{')
        return -1;
    for (k = 1; k < len && k < MSGPIPE__DIGEST_NAME_MAX + 2; k++)
        if (m[k] == '}')
            break;
    if (k >= len || m[k] != '}')
        return -1;
    for (i = 0; i < sizeof(msgpipe__digests) / sizeof(msgpipe__digests[0]);
         i++) {
        const char *d = msgpipe__digests[i];
        if (strlen(d) == k - 1 && memcmp(m + 1, d, k - 1) == 0) {
            *name = d;
            *payload = k + 1;
            return 0;
        }
    }
    return -1;
}

/* Equal without an early exit, so the time taken does not tell how much
 * of a guessed MAC was right (Python: hmac.compare_digest). */
static int msgpipe__same(const uint8_t *a, const uint8_t *b, size_t n)
{
    volatile uint8_t d = 0;
    size_t i;

    for (i = 0; i < n; i++)
        d = (uint8_t)(d | (a[i] ^ b[i]));
    return d == 0;
}

/* A new challenge: "#CHALLENGE#{sha256}" + 40 random bytes in msg (*len),
 * and what the answer is computed over (everything after the tag) in
 * hs_chal (*chal_len). */
static int msgpipe__make_challenge(uint8_t *msg, size_t *len, uint8_t *chal,
                                   size_t *chal_len)
{
    static const char prefix[] = "{sha256}";
    const size_t tl = MSGPIPE__TAG_LEN(msgpipe__tag_challenge);
    const size_t pl = sizeof(prefix) - 1;
    int rc;

    memcpy(chal, prefix, pl);
    rc = msgpipe__b_random(chal + pl, MSGPIPE__CHALLENGE_LEN);
    if (rc != MSGPIPE_OK)
        return rc;
    *chal_len = pl + MSGPIPE__CHALLENGE_LEN;
    memcpy(msg, msgpipe__tag_challenge, tl);
    memcpy(msg + tl, chal, *chal_len);
    *len = tl + *chal_len;
    return MSGPIPE_OK;
}

/* Python's _verify_challenge: is resp the right answer to chal?  OK or
 * EACCES (wrong, malformed, or an MD5 form that no_md5 refuses). */
static int msgpipe__verify(const msgpipe__opts *o, const uint8_t *chal,
                           size_t chal_len, const uint8_t *resp,
                           size_t resp_len)
{
    uint8_t want[MSGPIPE__HMAC_MAX];
    const char *name;
    size_t want_len, at;
    int legacy;

    if (msgpipe__digest_of(resp, resp_len, &name, &legacy, &at) != 0)
        return MSGPIPE_EACCES;
    if (o->no_md5 && strcmp(name, "md5") == 0)
        return MSGPIPE_EACCES;
    if (msgpipe__b_hmac(name, o->authkey, o->authkey_len, chal, chal_len, want,
                        &want_len) != MSGPIPE_OK)
        return MSGPIPE_EACCES; /* a digest this system lacks */
    if (resp_len - at != want_len || !msgpipe__same(resp + at, want, want_len))
        return MSGPIPE_EACCES;
    return MSGPIPE_OK;
}

/* Python's _create_response to a challenge message m (after the tag).
 * OK; EPROTO for a challenge of neither form; EACCES for an MD5 one that
 * no_md5 refuses. */
static int msgpipe__answer(const msgpipe__opts *o, const uint8_t *m, size_t len,
                           uint8_t *out, size_t *out_len)
{
    const char *name;
    size_t at, mac_len, nl;
    int legacy, rc;

    if (len < MSGPIPE__LEGACY_CHALLENGE_LEN ||
        msgpipe__digest_of(m, len, &name, &legacy, &at) != 0)
        return MSGPIPE_EPROTO;
    if (o->no_md5 && strcmp(name, "md5") == 0) {
        /* As Python does where MD5 is unavailable (FIPS): answer with
         * SHA-256 in the prefixed form, which an MD5-only peer refuses
         * ("#FAILURE#", then EACCES here and AuthenticationError there);
         * a prefixed "{md5}" challenge cannot be answered at all. */
        if (!legacy)
            return MSGPIPE_EACCES;
        name = "sha256";
        legacy = 0;
    }
    nl = legacy ? 0 : strlen(name) + 2;
    rc = msgpipe__b_hmac(name, o->authkey, o->authkey_len, m, len, out + nl,
                         &mac_len);
    if (rc != MSGPIPE_OK)
        return rc == MSGPIPE_ENOTSUP ? MSGPIPE_EACCES : rc;
    if (!legacy) {
        out[0] = '{';
        memcpy(out + 1, name, nl - 2);
        out[nl - 1] = '}';
    }
    *out_len = nl + mac_len;
    return MSGPIPE_OK;
}

static int msgpipe__is(const uint8_t *m, size_t len, const char *tag)
{
    return len == strlen(tag) && memcmp(m, tag, len) == 0;
}

/* A receive of one handshake message: a longer one is the peer's fault. */
static int msgpipe__hs_recv(msgpipe *p, uint8_t *buf, size_t *len,
                            int timeout_ms)
{
    int rc = msgpipe__b_recv(p, buf, MSGPIPE__AUTH_MSG_MAX, len, timeout_ms);

    if (rc == MSGPIPE_ENOBUFS || rc == MSGPIPE_EMSGSIZE ||
        rc == MSGPIPE_EHANDLES)
        return MSGPIPE_EPROTO;
    return rc;
}

/* ---- The client: answer, then deliver -------------------------------------
 */

int msgpipe__auth_client(msgpipe *p, const msgpipe__opts *o, int64_t deadline)
{
    const size_t tl = MSGPIPE__TAG_LEN(msgpipe__tag_challenge);
    uint8_t buf[MSGPIPE__AUTH_MSG_MAX], out[MSGPIPE__AUTH_MSG_MAX];
    uint8_t chal[MSGPIPE__DIGEST_NAME_MAX + 2 + MSGPIPE__CHALLENGE_LEN];
    size_t len, out_len, chal_len;
    int rc, verdict;

    /* Answer the server's challenge. */
    rc = msgpipe__hs_recv(p, buf, &len, msgpipe__remaining(deadline));
    if (rc != MSGPIPE_OK)
        return rc;
    if (len < tl || memcmp(buf, msgpipe__tag_challenge, tl) != 0)
        return MSGPIPE_EPROTO;
    rc = msgpipe__answer(o, buf + tl, len - tl, out, &out_len);
    if (rc != MSGPIPE_OK)
        return rc;
    rc = msgpipe__b_send(p, out, out_len, msgpipe__remaining(deadline));
    if (rc != MSGPIPE_OK)
        return rc;
    rc = msgpipe__hs_recv(p, buf, &len, msgpipe__remaining(deadline));
    if (rc != MSGPIPE_OK)
        return rc;
    if (!msgpipe__is(buf, len, msgpipe__tag_welcome))
        return msgpipe__is(buf, len, msgpipe__tag_failure) ? MSGPIPE_EACCES
                                                           : MSGPIPE_EPROTO;
    /* Then deliver ours. */
    rc = msgpipe__make_challenge(out, &out_len, chal, &chal_len);
    if (rc != MSGPIPE_OK)
        return rc;
    rc = msgpipe__b_send(p, out, out_len, msgpipe__remaining(deadline));
    if (rc != MSGPIPE_OK)
        return rc;
    rc = msgpipe__hs_recv(p, buf, &len, msgpipe__remaining(deadline));
    if (rc != MSGPIPE_OK)
        return rc;
    verdict = msgpipe__verify(o, chal, chal_len, buf, len);
    if (verdict == MSGPIPE_OK)
        rc = msgpipe__b_send(p, msgpipe__tag_welcome,
                             MSGPIPE__TAG_LEN(msgpipe__tag_welcome),
                             msgpipe__remaining(deadline));
    else
        (void)msgpipe__b_send(p, msgpipe__tag_failure,
                              MSGPIPE__TAG_LEN(msgpipe__tag_failure), 0);
    return verdict != MSGPIPE_OK ? verdict : rc;
}

/* ---- The server: deliver, then answer, many connections at once -----------
 */

struct msgpipe__auth *msgpipe__auth_new(void)
{
    return (struct msgpipe__auth *)msgpipe__calloc(
        1, sizeof(struct msgpipe__auth));
}

static void msgpipe__hs_drop(struct msgpipe__auth *a, size_t i)
{
    if (a->hs[i].p != NULL)
        msgpipe__b_close(a->hs[i].p);
    a->hs[i] = a->hs[a->n - 1];
    a->n--;
}

void msgpipe__auth_free(struct msgpipe__auth *a)
{
    if (a == NULL)
        return;
    while (a->n > 0)
        msgpipe__hs_drop(a, a->n - 1);
    msgpipe__free(a);
}

/* Make room for one more: drop the oldest handshake still running (never
 * a client already authenticated).  0, or -1 if every slot holds an
 * authenticated client waiting for msgpipe_accept(). */
static int msgpipe__hs_room(struct msgpipe__auth *a)
{
    size_t i, old = a->n;

    if (a->n < MSGPIPE__AUTH_SLOTS)
        return 0;
    for (i = 0; i < a->n; i++)
        if (a->hs[i].step != MSGPIPE__HS_DONE &&
            (old == a->n || a->hs[i].deadline < a->hs[old].deadline))
            old = i;
    if (old == a->n)
        return -1;
    msgpipe__hs_drop(a, old);
    return 0;
}

/* A new connection: send it our challenge and give it a slot, taking the
 * oldest handshake's when all are in use. */
static void msgpipe__hs_start(msgpipe_server *srv, struct msgpipe__auth *a,
                              msgpipe *p)
{
    uint8_t msg[MSGPIPE__AUTH_MSG_MAX];
    msgpipe__hs *h;
    size_t len;

    if (msgpipe__hs_room(a) != 0) {
        msgpipe__b_close(p); /* the accept loop has enough waiting */
        return;
    }
    h = &a->hs[a->n];
    memset(h, 0, sizeof(*h));
    if (msgpipe__make_challenge(msg, &len, h->chal, &h->chal_len) !=
            MSGPIPE_OK ||
        msgpipe__b_send(p, msg, len, 0) != MSGPIPE_OK) {
        msgpipe__b_close(p);
        return;
    }
    h->p = p;
    h->step = MSGPIPE__HS_ANSWER;
    h->deadline = msgpipe__now_ms() + MSGPIPE__AUTH_LIMIT_MS;
    a->n++;
    msgpipe__b_auth_watch(srv, p, 1);
}

/* Advance one handshake with what has arrived, without waiting.  Returns
 * ETIMEDOUT (waiting for the peer), OK (done: h->step is DONE), EACCES
 * (a key did not match: closed), or another error (closed). */
static int msgpipe__hs_advance(const msgpipe__opts *o, msgpipe__hs *h)
{
    const size_t tl = MSGPIPE__TAG_LEN(msgpipe__tag_challenge);
    uint8_t buf[MSGPIPE__AUTH_MSG_MAX], out[MSGPIPE__AUTH_MSG_MAX];
    size_t len, out_len;
    int rc;

    while (h->step != MSGPIPE__HS_DONE) {
        rc = msgpipe__hs_recv(h->p, buf, &len, 0);
        if (rc != MSGPIPE_OK)
            return rc;
        switch (h->step) {
        case MSGPIPE__HS_ANSWER:
            if (msgpipe__verify(o, h->chal, h->chal_len, buf, len) !=
                MSGPIPE_OK) {
                (void)msgpipe__b_send(h->p, msgpipe__tag_failure,
                                      MSGPIPE__TAG_LEN(msgpipe__tag_failure),
                                      0);
                return MSGPIPE_EACCES;
            }
            rc = msgpipe__b_send(h->p, msgpipe__tag_welcome,
                                 MSGPIPE__TAG_LEN(msgpipe__tag_welcome), 0);
            h->step = MSGPIPE__HS_CHALLENGE;
            break;
        case MSGPIPE__HS_CHALLENGE:
            if (len < tl || memcmp(buf, msgpipe__tag_challenge, tl) != 0)
                return MSGPIPE_EPROTO;
            rc = msgpipe__answer(o, buf + tl, len - tl, out, &out_len);
            if (rc == MSGPIPE_OK)
                rc = msgpipe__b_send(h->p, out, out_len, 0);
            h->step = MSGPIPE__HS_WELCOME;
            break;
        default: /* MSGPIPE__HS_WELCOME */
            if (msgpipe__is(buf, len, msgpipe__tag_failure))
                return MSGPIPE_EACCES;
            if (!msgpipe__is(buf, len, msgpipe__tag_welcome))
                return MSGPIPE_EPROTO;
            h->step = MSGPIPE__HS_DONE;
            rc = MSGPIPE_OK;
            break;
        }
        if (rc != MSGPIPE_OK)
            return rc;
    }
    return MSGPIPE_OK;
}

/* One look at everything, without waiting: take the waiting connections,
 * advance every handshake, drop those out of time.  OK with *out a
 * finished one; ETIMEDOUT if none finished; EACCES, ESHUTDOWN or an
 * accept's error. */
static int msgpipe__auth_pass(msgpipe_server *srv, struct msgpipe__auth *a,
                              const msgpipe__opts *o, msgpipe **out,
                              int64_t *next)
{
    msgpipe *p;
    int64_t now;
    size_t i;
    int rc, result = MSGPIPE_ETIMEDOUT;

    /* New connections; at most a table's worth per pass, so that a flood
     * cannot keep this loop from the handshakes. */
    for (i = 0; i < MSGPIPE__AUTH_SLOTS; i++) {
        rc = msgpipe__accept_plain(srv, 0, &p);
        if (rc == MSGPIPE_ETIMEDOUT)
            break;
        if (rc != MSGPIPE_OK)
            return rc;
        msgpipe__hs_start(srv, a, p);
    }
    now = msgpipe__now_ms();
    *next = -1;
    for (i = 0; i < a->n;) {
        msgpipe__hs *h = &a->hs[i];
        rc = msgpipe__hs_advance(o, h);
        if (rc == MSGPIPE_OK && result == MSGPIPE_ETIMEDOUT) {
            msgpipe__b_auth_watch(srv, h->p, 0);
            *out = h->p;
            h->p = NULL;
            msgpipe__hs_drop(a, i);
            result = MSGPIPE_OK;
            continue;
        }
        if (rc == MSGPIPE_OK) {
            i++; /* done: kept for the next accept */
            continue;
        }
        if (rc == MSGPIPE_ETIMEDOUT && h->deadline > now) {
            if (*next < 0 || h->deadline < *next)
                *next = h->deadline;
            i++;
            continue;
        }
        msgpipe__hs_drop(a, i);
        if (rc == MSGPIPE_EACCES && result == MSGPIPE_ETIMEDOUT)
            result = MSGPIPE_EACCES;
        else if (rc == MSGPIPE_EACCES)
            a->pending_rc = MSGPIPE_EACCES;
    }
    return result;
}

int msgpipe__auth_accept(msgpipe_server *srv, int timeout_ms, msgpipe **out)
{
    const msgpipe__opts *o = msgpipe__b_server_opts(srv);
    struct msgpipe__auth *a = o->auth;
    int64_t deadline = msgpipe__deadline(timeout_ms), next, until;
    msgpipe *pipes[MSGPIPE__AUTH_SLOTS];
    size_t i;
    int rc;

    if (a->pending_rc != MSGPIPE_OK) {
        rc = a->pending_rc;
        a->pending_rc = MSGPIPE_OK;
        return rc;
    }
    for (;;) {
        rc = msgpipe__auth_pass(srv, a, o, out, &next);
        if (rc != MSGPIPE_ETIMEDOUT)
            return rc;
        if (msgpipe__remaining(deadline) == 0)
            return MSGPIPE_ETIMEDOUT;
        /* Wait for a connection, a handshake's next message, or the
         * first handshake to run out of time. */
        until = deadline;
        if (next >= 0 && (until < 0 || next < until))
            until = next;
        for (i = 0; i < a->n; i++)
            pipes[i] = a->hs[i].p;
        rc = msgpipe__b_auth_wait(srv, pipes, a->n, until);
        if (rc != MSGPIPE_OK && rc != MSGPIPE_ETIMEDOUT)
            return rc;
    }
}

int msgpipe__auth_probe(msgpipe_server *srv)
{
    const msgpipe__opts *o = msgpipe__b_server_opts(srv);
    struct msgpipe__auth *a = o->auth;
    msgpipe *p = NULL;
    int64_t next;
    size_t i;
    int rc;

    if (a->pending_rc != MSGPIPE_OK)
        return 1;
    for (i = 0; i < a->n; i++)
        if (a->hs[i].step == MSGPIPE__HS_DONE)
            return 1;
    rc = msgpipe__auth_pass(srv, a, o, &p, &next);
    if (rc == MSGPIPE_ETIMEDOUT)
        return 0;
    if (rc == MSGPIPE_OK) {
        /* Back into a slot, marked done, for the next accept (its own
         * slot is free: the pass took it out). */
        if (msgpipe__hs_room(a) != 0) {
            msgpipe__b_close(p);
            return 0;
        }
        memset(&a->hs[a->n], 0, sizeof(a->hs[a->n]));
        a->hs[a->n].p = p;
        a->hs[a->n].step = MSGPIPE__HS_DONE;
        a->hs[a->n].deadline = msgpipe__now_ms() + MSGPIPE__AUTH_LIMIT_MS;
        a->n++;
        return 1;
    }
    if (rc != MSGPIPE_ESHUTDOWN)
        a->pending_rc = rc;
    return 1;
}
