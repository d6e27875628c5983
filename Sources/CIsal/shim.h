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

/// A state for `cisal_deflate_raw_l1` (the stream struct and ISA-L's level-1 buffer); NULL when
/// out of memory. Free with `cisal_deflate_free`.
struct cisal_deflater { struct isal_zstream stream; uint8_t level_buf[ISAL_DEF_LVL1_DEFAULT]; };

static inline struct cisal_deflater *cisal_deflate_new(void) { return malloc(sizeof(struct cisal_deflater)); }
static inline void cisal_deflate_free(struct cisal_deflater *d) { free(d); }

/// Raw deflate data (no gzip header or trailer) of all of `in` at ISA-L's level 1, in one call
/// (isal_deflate_stateless). Returns the bytes written to `out`, or 0 when they do not fit in
/// `out_len` or ISA-L fails. ISA-L falls back to stored blocks where compressing would expand:
/// `in_len` plus 5 bytes per 64 KiB and a block header always fit.
static inline uint32_t cisal_deflate_raw_l1(struct cisal_deflater *d, const uint8_t *in, uint32_t in_len,
                                            uint8_t *out, uint32_t out_len) {
    struct isal_zstream *s = &d->stream;
    isal_deflate_stateless_init(s);
    s->level = 1;
    s->level_buf = d->level_buf;
    s->level_buf_size = sizeof d->level_buf;
    s->gzip_flag = IGZIP_DEFLATE;
    s->flush = NO_FLUSH;
    s->end_of_stream = 1;
    s->next_in = (uint8_t *)in;
    s->avail_in = in_len;
    s->next_out = out;
    s->avail_out = out_len;
    if (isal_deflate_stateless(s) != COMP_OK || s->avail_in != 0) return 0;
    return s->total_out;
}
