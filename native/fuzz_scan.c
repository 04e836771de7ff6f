/* libFuzzer target for the C frame decoder: `make fuzz` builds it with ASan and UBSan and runs it.
 *
 * Invariants checked on any input, scanned whole and from every split point the input names:
 * - consumed never exceeds the input, and records describe bodies inside the input;
 * - every record's header fields are valid (version, flags, length within limits);
 * - scanning in two pieces finds the same frames as scanning at once (a receiver's view);
 * - encoding the frames found gives back the bytes they were found in.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "framecodec.h"

#define MAX_FRAMES 4096
#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static uint64_t records[MAX_FRAMES * CUMULO_RECORD_WORDS];
static uint64_t again[MAX_FRAMES * CUMULO_RECORD_WORDS];
static uint64_t fields[MAX_FRAMES * 6];
static uint8_t out[1 << 20];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint32_t max_body = 1 + (data[0] % 200); /* small limits reach the length checks often */
    const uint8_t *buf = data + 1;
    size_t len = size - 1;

    size_t consumed = 0, next_size = 0;
    int error = 0;
    size_t n = cumulo_scan(buf, len, 0, max_body, records, MAX_FRAMES, &consumed, &next_size, &error);
    CHECK(consumed <= len);
    CHECK(error == 0 || next_size == 0);
    size_t body_total = 0;
    for (size_t i = 0; i < n; i++) {
        const uint64_t *r = records + i * CUMULO_RECORD_WORDS;
        CHECK(r[0] == CUMULO_VERSION);
        CHECK((r[1] & ~(uint64_t)CUMULO_KNOWN_FLAGS) == 0);
        CHECK(r[7] >= CUMULO_MIN_BODY && r[7] <= max_body);
        CHECK(r[6] + r[7] <= consumed);
        body_total += r[7];
    }

    /* The same bytes arriving in two reads: frames found in the first read, then the rest. */
    size_t split = len ? (size_t)data[0] * 7 % (len + 1) : 0;
    size_t c1 = 0, ns1 = 0, c2 = 0, ns2 = 0;
    int e1 = 0, e2 = 0;
    size_t n1 = cumulo_scan(buf, split, 0, max_body, again, MAX_FRAMES, &c1, &ns1, &e1);
    size_t n2 = 0;
    if (!e1) n2 = cumulo_scan(buf, len, c1, max_body, again + n1 * CUMULO_RECORD_WORDS, MAX_FRAMES - n1,
                              &c2, &ns2, &e2);
    if (!e1) {
        CHECK(n1 + n2 == n && c2 == consumed && e2 == error);
        CHECK(memcmp(records, again, n * CUMULO_RECORD_WORDS * sizeof(uint64_t)) == 0);
    } else {
        CHECK(error == e1 && n1 <= n); /* a bad header inside the first read is bad in the whole too */
    }

    /* Re-encode what was found: the frames must come back byte for byte (the reserved byte aside). */
    if (n && consumed <= sizeof out) {
        uint8_t *bodies = malloc(body_total ? body_total : 1);
        size_t off = 0;
        for (size_t i = 0; i < n; i++) {
            const uint64_t *r = records + i * CUMULO_RECORD_WORDS;
            uint64_t *f = fields + i * 6;
            f[0] = r[1]; f[1] = r[2]; f[2] = r[3]; f[3] = r[4]; f[4] = r[5]; f[5] = r[7];
            memcpy(bodies + off, buf + r[6], r[7]);
            off += r[7];
        }
        int err = 0;
        size_t written = cumulo_encode(out, sizeof out, fields, n, bodies, body_total, max_body, &err);
        CHECK(err == 0 && written == consumed);
        size_t pos = 0; /* compare every byte but each header's reserved one */
        for (size_t i = 0; i < n; i++) {
            size_t total = CUMULO_HEADER_SIZE + records[i * CUMULO_RECORD_WORDS + 7];
            CHECK(memcmp(out + pos, buf + pos, 1) == 0);
            CHECK(memcmp(out + pos + 2, buf + pos + 2, total - 2) == 0);
            pos += total;
        }
        free(bodies);
    }
    return 0;
}
