/* Cumulo frame codec: the hot path of the agent wire protocol, in C.
 *
 * A frame is a 40-byte big-endian header followed by `length` body bytes:
 *   0 version u8 | 1 reserved u8 | 2 flags u16 | 4 sequence u64 | 12 length u32 |
 *   16 management-server id u64 | 24 agent id u64 | 32 via u64
 * The length is the body's size on the wire, so the stream is self-delimiting.
 *
 * Scan results are written as records of CUMULO_RECORD_WORDS uint64 words:
 *   version, flags, sequence, mgmt id, agent id, via, body offset, body length
 * The pure-Python reference (protocol/_pycodec.py) produces the same records.
 */
#ifndef CUMULO_FRAMECODEC_H
#define CUMULO_FRAMECODEC_H

#include <stddef.h>
#include <stdint.h>

#define CUMULO_HEADER_SIZE 40
#define CUMULO_RECORD_WORDS 8
#define CUMULO_VERSION 1
#define CUMULO_KNOWN_FLAGS 0x00E7 /* REQUEST|STOP_ON_ERROR|IN_SEQUENCE|FROM_SERVER|CONTROL|COMPRESSED */
#define CUMULO_MIN_BODY 2         /* the shortest JSON array: [] */

enum cumulo_error {
    CUMULO_OK = 0,
    CUMULO_E_VERSION = 1,    /* version byte is not CUMULO_VERSION */
    CUMULO_E_FLAGS = 2,      /* a flag bit outside CUMULO_KNOWN_FLAGS is set */
    CUMULO_E_TOO_LARGE = 3,  /* body length above the configured maximum */
    CUMULO_E_TOO_SMALL = 4,  /* body length below CUMULO_MIN_BODY */
    CUMULO_E_NO_ROOM = 5     /* encode: output buffer too small */
};

/* Scan `buf` for complete frames, from offset `start`, writing at most `max_frames` records to `records`.
 * Returns the number of complete frames found. `*consumed` is the offset just past the last complete
 * frame (or of the frame in error); `*next_size` is the total size of the first frame not returned
 * (CUMULO_HEADER_SIZE while its header is incomplete, 0 when the buffer ended on a frame boundary);
 * `*error` is a cumulo_error for the header at `*consumed`, 0 when none. Headers are validated as soon
 * as their 40 bytes are present, before the body is buffered. */
size_t cumulo_scan(const uint8_t *buf, size_t len, size_t start, uint32_t max_body, uint64_t *records,
                   size_t max_frames, size_t *consumed, size_t *next_size, int *error);

/* Encode `n` frames into `out`. `fields` holds 6 words per frame (flags, sequence, mgmt id, agent id,
 * via, body length); `bodies` is the frames' bodies back to back. Returns bytes written, or 0 with
 * `*error` set when a frame is invalid (flags, length) or `out` is too small. */
size_t cumulo_encode(uint8_t *out, size_t out_len, const uint64_t *fields, size_t n,
                     const uint8_t *bodies, size_t bodies_len, uint32_t max_body, int *error);

#endif
