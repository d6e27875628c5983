// See include/ccrypto.h: libcrypto through dlopen on first use, SHA-256 on SHA-NI.
#include "ccrypto.h"
#include "hs_dlopen.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

// MARK: libcrypto

/// The Debian 12 soname of OpenSSL 3's libcrypto (package libssl3, in the .deb's Depends).
static const char libcrypto_soname[] = "libcrypto.so.3";

static const char *const libcrypto_names[] = {HS_LIBCRYPTO_FUNCTIONS(HS_DLOPEN_NAME)};
#define LIBCRYPTO_COUNT (sizeof libcrypto_names / sizeof libcrypto_names[0])
static struct hs_libcrypto libcrypto_table;
_Static_assert(sizeof libcrypto_table == LIBCRYPTO_COUNT * sizeof(void *), "one name for each function of the table");
static int libcrypto_loaded;
static char libcrypto_error[512];
static pthread_once_t libcrypto_once = PTHREAD_ONCE_INIT;

static void libcrypto_load(void) {
    libcrypto_loaded = hs_dlopen_table(libcrypto_soname, libcrypto_names, LIBCRYPTO_COUNT, &libcrypto_table, libcrypto_error,
                                       sizeof libcrypto_error) != NULL;
}

const struct hs_libcrypto *hs_libcrypto(void) {
    pthread_once(&libcrypto_once, libcrypto_load);
    return libcrypto_loaded ? &libcrypto_table : NULL;
}

const char *hs_libcrypto_error(void) { return libcrypto_error; }

// MARK: SHA-256 (FIPS 180-4) on SHA-NI

static const uint32_t sha256_initial[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

#if defined(__x86_64__)
static const uint32_t sha256_k[64] __attribute__((aligned(16))) = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/// `blocks` 64-byte blocks into the chaining value `h`. Four rounds per step: sha256rnds2
/// does two with the low two words of W+K; sha256msg1/msg2 extend the message schedule.
__attribute__((target("sha,sse4.1,ssse3")))
static void sha256_blocks_shani(uint32_t h[8], const uint8_t *data, size_t blocks) {
    const __m128i byteswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    // h is A..H; the instructions want ABEF and CDGH (A in the high word).
    __m128i tmp = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[0]), 0xB1);    // CDAB
    __m128i state1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[4]), 0x1B); // EFGH
    __m128i state0 = _mm_alignr_epi8(tmp, state1, 8);                                  // ABEF
    state1 = _mm_blend_epi16(state1, tmp, 0xF0);                                       // CDGH
    while (blocks-- > 0) {
        const __m128i abef = state0, cdgh = state1;
        __m128i w[4];
        for (int i = 0; i < 4; i++) w[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16 * i)), byteswap);
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            // Rounds 4i..4i+3 with W[4i..4i+3] (in w[i % 4]).
            __m128i wk = _mm_add_epi32(w[i & 3], _mm_load_si128((const __m128i *)&sha256_k[4 * i]));
            state1 = _mm_sha256rnds2_epu32(state1, state0, wk);
            state0 = _mm_sha256rnds2_epu32(state0, state1, _mm_shuffle_epi32(wk, 0x0E));
            if (i < 12) {
                // W[t] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16] for t = 4i+16..4i+19.
                __m128i x = _mm_sha256msg1_epu32(w[i & 3], w[(i + 1) & 3]);
                x = _mm_add_epi32(x, _mm_alignr_epi8(w[(i + 3) & 3], w[(i + 2) & 3], 4));
                w[i & 3] = _mm_sha256msg2_epu32(x, w[(i + 3) & 3]);
            }
        }
        state0 = _mm_add_epi32(state0, abef);
        state1 = _mm_add_epi32(state1, cdgh);
        data += 64;
    }
    tmp = _mm_shuffle_epi32(state0, 0x1B);       // FEBA
    state1 = _mm_shuffle_epi32(state1, 0xB1);    // DCHG
    state0 = _mm_blend_epi16(tmp, state1, 0xF0); // DCBA
    state1 = _mm_alignr_epi8(state1, tmp, 8);    // HGFE
    _mm_storeu_si128((__m128i *)&h[0], state0);
    _mm_storeu_si128((__m128i *)&h[4], state1);
}

int hs_sha256_native_available(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const int ssse3 = (c >> 9) & 1, sse41 = (c >> 19) & 1;
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    const int sha = (b >> 29) & 1;
    return ssse3 && sse41 && sha;
}
#else
static void sha256_blocks_shani(uint32_t h[8], const uint8_t *data, size_t blocks) {
    (void)h; (void)data; (void)blocks;
    __builtin_trap(); // hs_sha256_native_available() is 0 here: callers use libcrypto.
}

int hs_sha256_native_available(void) { return 0; }
#endif

void hs_sha256_init(hs_sha256_ctx *ctx) {
    memcpy(ctx->h, sha256_initial, sizeof ctx->h);
    ctx->bytes = 0;
    ctx->used = 0;
}

void hs_sha256_update(hs_sha256_ctx *ctx, const void *data, size_t count) {
    const uint8_t *p = data;
    ctx->bytes += count;
    if (ctx->used > 0) {
        size_t take = 64 - ctx->used;
        if (take > count) take = count;
        memcpy(ctx->block + ctx->used, p, take);
        ctx->used += (uint32_t)take;
        p += take;
        count -= take;
        if (ctx->used < 64) return;
        sha256_blocks_shani(ctx->h, ctx->block, 1);
        ctx->used = 0;
    }
    if (count >= 64) {
        sha256_blocks_shani(ctx->h, p, count / 64);
        p += count / 64 * 64;
        count %= 64;
    }
    memcpy(ctx->block, p, count);
    ctx->used = (uint32_t)count;
}

void hs_sha256_final(hs_sha256_ctx *ctx, uint8_t out[32]) {
    const uint64_t bits = ctx->bytes * 8;
    // Padding: 0x80, zeros up to 56 mod 64, then the bit count big-endian.
    ctx->block[ctx->used++] = 0x80;
    if (ctx->used > 56) {
        memset(ctx->block + ctx->used, 0, 64 - ctx->used);
        sha256_blocks_shani(ctx->h, ctx->block, 1);
        ctx->used = 0;
    }
    memset(ctx->block + ctx->used, 0, 56 - ctx->used);
    for (int i = 0; i < 8; i++) ctx->block[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_blocks_shani(ctx->h, ctx->block, 1);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(ctx->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(ctx->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(ctx->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)ctx->h[i];
    }
}
