// ISA-L's streaming inflate (igzip), seen by Swift only through these helpers: the state
// struct (about 60 KiB of tables) stays opaque to Swift.
#include <stdint.h>
#include <stdlib.h>
#include <isa-l/igzip_lib.h>

/// A state for raw deflate data followed by a gzip trailer (CRC-32 and ISIZE), both checked
/// by ISA-L (ISAL_GZIP_NO_HDR_VER); the gzip header is parsed by the caller. NULL when out of memory.
static inline struct inflate_state *cisal_inflate_new(void) {
    struct inflate_state *s = malloc(sizeof *s);
    if (s) { isal_inflate_init(s); s->crc_flag = ISAL_GZIP_NO_HDR_VER; }
    return s;
}

/// Ready for the next member's deflate data.
static inline void cisal_inflate_reset(struct inflate_state *s) {
    isal_inflate_reset(s);
    s->crc_flag = ISAL_GZIP_NO_HDR_VER;
}

/// One isal_inflate call: consumes from `in`, writes to `out`; *consumed/*produced say how
/// much, *finished is 1 once the trailer was read and checked (the input is then positioned
/// right after it). Returns isal_inflate's result (ISAL_DECOMP_OK or a negative error).
static inline int cisal_inflate(struct inflate_state *s, const uint8_t *in, uint32_t in_len,
                                uint8_t *out, uint32_t out_len,
                                uint32_t *consumed, uint32_t *produced, int *finished) {
    s->next_in = (uint8_t *)in;
    s->avail_in = in_len;
    s->next_out = out;
    s->avail_out = out_len;
    int rc = isal_inflate(s);
    *consumed = in_len - s->avail_in;
    *produced = out_len - s->avail_out;
    *finished = s->block_state == ISAL_BLOCK_FINISH;
    return rc;
}
