// libcrypto (OpenSSL 3) loaded on first use, and SHA-256 on the CPU's SHA extensions.
//
// Issue 23: loading libcrypto.so.3 at start (its relocations, constructors and pages) was
// about 1.8 ms of CPU in every run of every tool, though most runs need nothing of it but
// SHA-256 and many (--version, list, completions) need nothing at all. So the tools do not
// link it: the first call of hs_libcrypto() dlopen()s it and fills a table of the functions
// the toolkit uses, with the prototypes of OpenSSL's headers (a wrong prototype does not
// compile). SHA-256 runs here on the SHA-NI instructions when the CPU has them (as OpenSSL's
// own SHA-NI code does, at the same speed); without them SHA256Hasher uses libcrypto, whose
// SSSE3/AVX2 code is faster than plain C. Support is the only importer (SHA256.swift,
// DigestHasher.swift, CryptoPrimitives.swift).
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <openssl/err.h>

/// Every libcrypto function the toolkit calls.
#define HS_LIBCRYPTO_FUNCTIONS(X) \
    X(ERR_get_error) X(ERR_clear_error) X(ERR_error_string_n) \
    X(EVP_MD_fetch) X(EVP_MD_free) X(EVP_sha256) \
    X(EVP_MD_CTX_new) X(EVP_MD_CTX_free) X(EVP_DigestInit_ex) X(EVP_DigestUpdate) X(EVP_DigestFinal_ex) \
    X(EVP_PKEY_new_raw_private_key) X(EVP_PKEY_new_raw_public_key) X(EVP_PKEY_get_raw_public_key) X(EVP_PKEY_free) \
    X(EVP_PKEY_CTX_new) X(EVP_PKEY_CTX_new_id) X(EVP_PKEY_CTX_free) \
    X(EVP_PKEY_derive_init) X(EVP_PKEY_derive_set_peer) X(EVP_PKEY_derive) \
    X(EVP_PKEY_CTX_set_hkdf_md) X(EVP_PKEY_CTX_set1_hkdf_salt) X(EVP_PKEY_CTX_set1_hkdf_key) X(EVP_PKEY_CTX_add1_hkdf_info) \
    X(HMAC) X(RAND_bytes) \
    X(EVP_chacha20_poly1305) X(EVP_CIPHER_CTX_new) X(EVP_CIPHER_CTX_free) X(EVP_CIPHER_CTX_ctrl) \
    X(EVP_EncryptInit_ex) X(EVP_EncryptUpdate) X(EVP_EncryptFinal_ex) \
    X(EVP_DecryptInit_ex) X(EVP_DecryptUpdate) X(EVP_DecryptFinal_ex)

#define HS_LIBCRYPTO_FIELD(name) __typeof__(name) *_Nonnull name;
/// The functions of libcrypto.so.3, each under its own name.
struct hs_libcrypto {
    HS_LIBCRYPTO_FUNCTIONS(HS_LIBCRYPTO_FIELD)
};
#undef HS_LIBCRYPTO_FIELD

/// libcrypto.so.3, loaded on the first call (thread-safe, once per process); NULL when it
/// cannot be loaded or lacks a function (hs_libcrypto_error() then says why).
const struct hs_libcrypto *_Nullable hs_libcrypto(void);

/// Why hs_libcrypto() returned NULL (dlopen's or dlsym's message); "" before that.
const char *_Nonnull hs_libcrypto_error(void);

/// 1 when this CPU runs hs_sha256_* on its SHA extensions (x86-64 SHA-NI with SSSE3 and
/// SSE4.1), else 0: then the hs_sha256_* functions must not be called.
int hs_sha256_native_available(void);

/// SHA-256 state for hs_sha256_*: the chaining value, the byte count, a partial block.
typedef struct {
    uint32_t h[8];
    uint64_t bytes;
    uint8_t block[64];
    uint32_t used;
} hs_sha256_ctx;

void hs_sha256_init(hs_sha256_ctx *_Nonnull ctx);
void hs_sha256_update(hs_sha256_ctx *_Nonnull ctx, const void *_Nonnull data, size_t count);
/// Writes the 32-byte digest; the context must be initialised again before further use.
void hs_sha256_final(hs_sha256_ctx *_Nonnull ctx, uint8_t out[_Nonnull 32]);
