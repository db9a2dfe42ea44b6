/*
 * win32_crypto.c - HMAC and random bytes for the authkey handshake
 * (api/auth.c): the twin of posix/posix_crypto.c.  In this version the
 * Windows backend has none, so an authkey is MSGPIPE_ENOTSUP there
 * (docs/tcp.md says what is planned: BCrypt's HMAC and BCryptGenRandom).
 */
#include "win32_internal.h"

int msgpipe__b_crypto_ok(void)
{
    return 0;
}

int msgpipe__b_hmac(const char *digest, const uint8_t *key, size_t key_len,
                    const uint8_t *data, size_t n,
                    uint8_t out[MSGPIPE__HMAC_MAX], size_t *out_len)
{
    (void)digest;
    (void)key;
    (void)key_len;
    (void)data;
    (void)n;
    (void)out;
    *out_len = 0;
    return MSGPIPE_ENOTSUP;
}

int msgpipe__b_random(uint8_t *buf, size_t n)
{
    (void)buf;
    (void)n;
    return MSGPIPE_ENOTSUP;
}

int msgpipe__b_auth_wait(msgpipe_server *srv, msgpipe *const *pipes, size_t n,
                         int64_t deadline)
{
    (void)srv;
    (void)pipes;
    (void)n;
    (void)deadline;
    return MSGPIPE_ENOTSUP;
}
