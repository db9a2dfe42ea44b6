/*
 * frame.c - the POSIX wire format, shared by the socket and FIFO transports.
 *
 * It is exactly the framing of Python's multiprocessing.connection, so a
 * Python program using only the standard library can be a msgpipe peer:
 * a 4-byte big-endian signed length and the bytes; for 2^31 bytes or more,
 * the length -1 followed by an 8-byte big-endian unsigned length.
 */
#include "backend.h"

void msgpipe__put_be64(uint8_t *b, uint64_t v)
{
    int i;

    for (i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * (7 - i)));
}

uint64_t msgpipe__get_be64(const uint8_t *b)
{
    uint64_t v = 0;
    int i;

    for (i = 0; i < 8; i++)
        v = (v << 8) | b[i];
    return v;
}

size_t msgpipe__frame_encode(uint8_t hdr[MSGPIPE__FRAME_HDR_MAX], uint64_t len)
{
    int i;

    if (len <= 0x7fffffffu) {
        for (i = 0; i < 4; i++)
            hdr[i] = (uint8_t)(len >> (8 * (3 - i)));
        return 4;
    }
    hdr[0] = hdr[1] = hdr[2] = hdr[3] = 0xff;
    msgpipe__put_be64(hdr + 4, len);
    return 12;
}

int msgpipe__frame_decode(const uint8_t *buf, size_t avail, uint64_t *len,
                          size_t *hdr_len)
{
    uint32_t head;
    uint64_t big;

    if (avail < 4)
        return 0;
    head = ((uint32_t)buf[0] << 24) | ((uint32_t)buf[1] << 16) |
           ((uint32_t)buf[2] << 8) | (uint32_t)buf[3];
    if (head < 0x80000000u) {
        *len = head;
        *hdr_len = 4;
        return 1;
    }
    if (head != 0xffffffffu)
        return MSGPIPE_EPROTO; /* negative, and not the -1 marker */
    if (avail < 12)
        return 0;
    big = msgpipe__get_be64(buf + 4);
    /* Python would accept any 64-bit length here, but no message that
     * large can exist; refusing it keeps every length representable as a
     * signed 64-bit count. */
    if (big > (uint64_t)INT64_MAX)
        return MSGPIPE_EPROTO;
    *len = big;
    *hdr_len = 12;
    return 1;
}
