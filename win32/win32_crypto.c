/*
 * win32_crypto.c - HMAC and random bytes for the authkey handshake
 * (api/auth.c), from Windows' own cryptography (BCrypt, part of the
 * system since Vista): BCryptCreateHash with an HMAC algorithm handle, and
 * BCryptGenRandom with the system's preferred generator.  Nothing
 * cryptographic is written here.  The twin of posix/posix_crypto.c.
 *
 * Also the server's wait of the handshake (msgpipe__b_auth_wait), which
 * needs the backend's events.
 */
#include "win32_internal.h"

#include <bcrypt.h>
#include <string.h>

/* NTSTATUS success, without ntstatus.h. */
#define MSGPIPE__W_NT_OK(s) ((LONG)(s) >= 0)

int msgpipe__b_crypto_ok(void)
{
    return 1;
}

/* The BCrypt algorithm for one of Python's digest names, and its length.
 * SHA-3 is not offered: older Windows lacks it (a peer that asks for it
 * is refused, as a Python without it refuses). */
static const WCHAR *msgpipe__w_alg(const char *digest, ULONG *len)
{
    if (strcmp(digest, "md5") == 0) {
        *len = 16;
        return BCRYPT_MD5_ALGORITHM;
    }
    if (strcmp(digest, "sha256") == 0) {
        *len = 32;
        return BCRYPT_SHA256_ALGORITHM;
    }
    if (strcmp(digest, "sha384") == 0) {
        *len = 48;
        return BCRYPT_SHA384_ALGORITHM;
    }
    return NULL;
}

int msgpipe__b_hmac(const char *digest, const uint8_t *key, size_t key_len,
                    const uint8_t *data, size_t n,
                    uint8_t out[MSGPIPE__HMAC_MAX], size_t *out_len)
{
    static UCHAR empty[1];
    BCRYPT_ALG_HANDLE alg = NULL;
    BCRYPT_HASH_HANDLE h = NULL;
    const WCHAR *name;
    ULONG len = 0;
    LONG st;

    *out_len = 0;
    name = msgpipe__w_alg(digest, &len);
    if (name == NULL || key_len > 0x7fffffffu || n > 0x7fffffffu)
        return MSGPIPE_ENOTSUP;
    st = BCryptOpenAlgorithmProvider(&alg, name, NULL,
                                     BCRYPT_ALG_HANDLE_HMAC_FLAG);
    if (!MSGPIPE__W_NT_OK(st)) {
        msgpipe__set_os_error((int)st);
        return MSGPIPE_ENOTSUP;
    }
    st = BCryptCreateHash(alg, &h, NULL, 0, key_len > 0 ? (PUCHAR)key : empty,
                          (ULONG)key_len, 0);
    if (MSGPIPE__W_NT_OK(st))
        st = BCryptHashData(h, (PUCHAR)data, (ULONG)n, 0);
    if (MSGPIPE__W_NT_OK(st))
        st = BCryptFinishHash(h, out, len, 0);
    if (h != NULL)
        BCryptDestroyHash(h);
    BCryptCloseAlgorithmProvider(alg, 0);
    if (!MSGPIPE__W_NT_OK(st)) {
        msgpipe__set_os_error((int)st);
        return MSGPIPE_EIO;
    }
    *out_len = len;
    return MSGPIPE_OK;
}

int msgpipe__b_random(uint8_t *buf, size_t n)
{
    LONG st;

    if (n > 0x7fffffffu)
        return MSGPIPE_EINVAL;
    st = BCryptGenRandom(NULL, buf, (ULONG)n, BCRYPT_USE_SYSTEM_PREFERRED_RNG);
    if (!MSGPIPE__W_NT_OK(st)) {
        msgpipe__set_os_error((int)st);
        return MSGPIPE_EIO;
    }
    return MSGPIPE_OK;
}

/* The server's readiness (msgpipe__w_srv_ready) asks the handshakes
 * themselves; its events wake for new connections only (docs/tcp.md). */
int msgpipe__b_auth_setup(msgpipe_server *srv)
{
    (void)srv;
    return MSGPIPE_OK;
}

void msgpipe__b_auth_watch(msgpipe_server *srv, msgpipe *p, int on)
{
    (void)srv;
    (void)p;
    (void)on;
}

/* More pipes than one wait can hold are looked at again every tick. */
#define MSGPIPE__W_AUTH_TICK_MS 10

int msgpipe__b_auth_wait(msgpipe_server *srv, msgpipe *const *pipes, size_t n,
                         int64_t deadline)
{
    HANDLE hs[MAXIMUM_WAIT_OBJECTS];
    DWORD k = 2, w;
    size_t i;
    int left;

    if (msgpipe__w_srv_raw_ready(srv, hs))
        return MSGPIPE_OK; /* hs[0], hs[1]: a client, the stop event */
    for (i = 0; i < n; i++) {
        HANDLE h = NULL;
        if (msgpipe__w_pipe_in_ready(pipes[i], &h))
            return MSGPIPE_OK;
        if (k < MAXIMUM_WAIT_OBJECTS && h != NULL)
            hs[k++] = h;
    }
    left = msgpipe__remaining(deadline);
    if (k == MAXIMUM_WAIT_OBJECTS &&
        (left < 0 || left > MSGPIPE__W_AUTH_TICK_MS))
        left = MSGPIPE__W_AUTH_TICK_MS;
    w = msgpipe__w32.WaitForMultipleObjects(k, hs, FALSE,
                                            left < 0 ? INFINITE : (DWORD)left);
    if (w == WAIT_FAILED)
        return msgpipe__w_error(GetLastError());
    if (w == WAIT_OBJECT_0 + 1)
        return MSGPIPE_ESHUTDOWN;
    return w == WAIT_TIMEOUT ? MSGPIPE_ETIMEDOUT : MSGPIPE_OK;
}
