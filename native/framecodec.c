/* Cumulo frame codec (see framecodec.h for the frame layout and the contract). */
#include <string.h>

#include "framecodec.h"

static inline uint16_t load_be16(const uint8_t *p) {
    return (uint16_t)(((uint16_t)p[0] << 8) | p[1]);
}

static inline uint32_t load_be32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return __builtin_bswap32(v);
}

static inline uint64_t load_be64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return __builtin_bswap64(v);
}

static inline void store_be16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void store_be32(uint8_t *p, uint32_t v) {
    v = __builtin_bswap32(v);
    memcpy(p, &v, sizeof v);
}

static inline void store_be64(uint8_t *p, uint64_t v) {
    v = __builtin_bswap64(v);
    memcpy(p, &v, sizeof v);
}

/* The same checks, in the same order, as protocol/_pycodec.py: both must report the same error. */
static inline int check_header(uint8_t version, uint16_t flags, uint64_t length, uint32_t max_body) {
    if (version != CUMULO_VERSION) return CUMULO_E_VERSION;
    if (flags & ~CUMULO_KNOWN_FLAGS) return CUMULO_E_FLAGS;
    if (length > max_body) return CUMULO_E_TOO_LARGE;
    if (length < CUMULO_MIN_BODY) return CUMULO_E_TOO_SMALL;
    return CUMULO_OK;
}

size_t cumulo_scan(const uint8_t *buf, size_t len, size_t start, uint32_t max_body, uint64_t *records,
                   size_t max_frames, size_t *consumed, size_t *next_size, int *error) {
    size_t off = start > len ? len : start, n = 0;
    *error = CUMULO_OK;
    *next_size = 0;
    while (n < max_frames) {
        size_t left = len - off;
        if (left < CUMULO_HEADER_SIZE) {
            if (left) *next_size = CUMULO_HEADER_SIZE;
            break;
        }
        const uint8_t *h = buf + off;
        uint8_t version = h[0];
        uint16_t flags = load_be16(h + 2);
        uint32_t length = load_be32(h + 12);
        int err = check_header(version, flags, length, max_body);
        if (err) {
            *error = err;
            break;
        }
        size_t total = CUMULO_HEADER_SIZE + (size_t)length;
        if (left < total) {
            *next_size = total;
            break;
        }
        uint64_t *r = records + n * CUMULO_RECORD_WORDS;
        r[0] = version;
        r[1] = flags;
        r[2] = load_be64(h + 4);
        r[3] = load_be64(h + 16);
        r[4] = load_be64(h + 24);
        r[5] = load_be64(h + 32);
        r[6] = off + CUMULO_HEADER_SIZE;
        r[7] = length;
        off += total;
        n++;
    }
    *consumed = off;
    return n;
}

size_t cumulo_encode(uint8_t *out, size_t out_len, const uint64_t *fields, size_t n,
                     const uint8_t *bodies, size_t bodies_len, uint32_t max_body, int *error) {
    size_t off = 0, body_off = 0;
    *error = CUMULO_OK;
    for (size_t i = 0; i < n; i++) {
        const uint64_t *f = fields + i * 6;
        uint64_t flags = f[0], length = f[5];
        int err = flags > 0xFFFF ? CUMULO_E_FLAGS
                                 : check_header(CUMULO_VERSION, (uint16_t)flags, length, max_body);
        if (err) {
            *error = err;
            return 0;
        }
        if (length > bodies_len - body_off || CUMULO_HEADER_SIZE + length > out_len - off) {
            *error = CUMULO_E_NO_ROOM;
            return 0;
        }
        uint8_t *h = out + off;
        h[0] = CUMULO_VERSION;
        h[1] = 0;
        store_be16(h + 2, (uint16_t)flags);
        store_be64(h + 4, f[1]);
        store_be32(h + 12, (uint32_t)length);
        store_be64(h + 16, f[2]);
        store_be64(h + 24, f[3]);
        store_be64(h + 32, f[4]);
        memcpy(h + CUMULO_HEADER_SIZE, bodies + body_off, (size_t)length);
        off += CUMULO_HEADER_SIZE + (size_t)length;
        body_off += (size_t)length;
    }
    return off;
}
