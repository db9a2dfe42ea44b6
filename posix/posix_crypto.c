/*
 * posix_crypto.c - HMAC and random bytes for the authkey handshake
 * (api/auth.c), from the system's libraries: OpenSSL's libcrypto for the
 * HMAC (found by CMake's FindOpenSSL; MSGPIPE_HAVE_OPENSSL), and the
 * kernel's generator for the challenges (getrandom() where it exists,
 * else /dev/urandom).  Nothing cryptographic is written here.  Without
 * OpenSSL the library still builds, and an authkey is MSGPIPE_ENOTSUP.
 *
 * The twin of win32/win32_crypto.c (BCrypt).
 */
#include "posix_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#if defined(__linux__) && defined(__GLIBC__) &&                                \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 25))
#include <sys/random.h>
#define MSGPIPE__HAVE_GETRANDOM 1
#endif

#ifdef MSGPIPE_HAVE_OPENSSL
#include <openssl/evp.h>
#include <openssl/hmac.h>

int msgpipe__b_crypto_ok(void)
{
    return 1;
}

static const EVP_MD *msgpipe__md(const char *digest)
{
    if (strcmp(digest, "md5") == 0)
        return EVP_md5();
    if (strcmp(digest, "sha256") == 0)
        return EVP_sha256();
    if (strcmp(digest, "sha384") == 0)
        return EVP_sha384();
    if (strcmp(digest, "sha3_256") == 0)
        return EVP_sha3_256();
    if (strcmp(digest, "sha3_384") == 0)
        return EVP_sha3_384();
    return NULL;
}

int msgpipe__b_hmac(const char *digest, const uint8_t *key, size_t key_len,
                    const uint8_t *data, size_t n,
                    uint8_t out[MSGPIPE__HMAC_MAX], size_t *out_len)
{
    static const uint8_t empty[1] = {0};
    const EVP_MD *md = msgpipe__md(digest);
    unsigned int len = 0;

    if (md == NULL || (size_t)EVP_MD_size(md) > MSGPIPE__HMAC_MAX ||
        key_len > (size_t)0x7fffffff)
        return MSGPIPE_ENOTSUP;
    /* HMAC() returns NULL where a digest is disabled (MD5 under FIPS). */
    if (HMAC(md, key_len > 0 ? key : empty, (int)key_len, data, n, out, &len) ==
        NULL)
        return MSGPIPE_ENOTSUP;
    *out_len = len;
    return MSGPIPE_OK;
}
#else
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
#endif

int msgpipe__b_random(uint8_t *buf, size_t n)
{
    size_t got = 0;
    ssize_t r;
    int fd;

#ifdef MSGPIPE__HAVE_GETRANDOM
    while (got < n) {
        r = getrandom(buf + got, n - got, 0);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == ENOSYS)
            break; /* an old kernel: /dev/urandom below */
        return msgpipe__from_errno(errno);
    }
    if (got == n)
        return MSGPIPE_OK;
#endif
    fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return msgpipe__from_errno(errno);
    while (got < n) {
        r = read(fd, buf + got, n - got);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        r = r < 0 ? errno : EIO;
        close(fd);
        return msgpipe__from_errno((int)r);
    }
    close(fd);
    return MSGPIPE_OK;
}
