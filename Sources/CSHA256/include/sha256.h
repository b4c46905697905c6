#ifndef COTO_SHA256_H
#define COTO_SHA256_H

#include <stddef.h>
#include <stdint.h>

/// SHA-256 (FIPS 180-4), streaming: init, update any number of times, final.
typedef struct {
    uint32_t state[8];
    uint64_t length;     // bytes hashed so far
    uint8_t buffer[64];  // a partial block
    size_t used;         // bytes in buffer
} coto_sha256_ctx;

void coto_sha256_init(coto_sha256_ctx *ctx);
void coto_sha256_update(coto_sha256_ctx *ctx, const void *data, size_t length);
void coto_sha256_final(coto_sha256_ctx *ctx, uint8_t digest[32]);

#endif
