/* quant.h - typed weight matrices: GGUF's block layouts and the scalar kernels that read them.
 *
 * Promise: the block structs below are byte-for-byte ggml's (ggml-common.h: block_q4_0,
 * block_q4_1, block_q8_0; 32 weights per block, little-endian fp16 scales), so a tensor copied
 * straight out of a GGUF file is read in place: nothing is expanded to float32.  Type codes are
 * ggml's (enum ggml_type).  matmul_typed accumulates in a fixed order that depends only on the
 * inputs: for each output row, blocks in index order; inside a block the 32 products
 * q_j * x_j (q_j the integer quant, or the weight itself for F32/F16) are summed in float in
 * index order, then the block's sum is scaled by d (and, for Q4_1, m times the block's sum of
 * x is added) and added to the row total.  F32 and F16 rows are summed element by element in
 * index order (exactly bf_matmul for F32).  Every helper is static inline (no symbols), like
 * layer_math.h, and FP contraction is off so every tier rounds identically.
 */
#ifndef BAREFLOW_QUANT_H
#define BAREFLOW_QUANT_H

#include <stddef.h>
#include <stdint.h>

#pragma STDC FP_CONTRACT OFF

#include "bareflow/weight_types.h"   /* BF_GGML_* codes, BF_QK, bf_row_bytes */

typedef uint16_t bf_fp16;          /* IEEE 754 binary16 bits */

struct bf_block_q4_0 {             /* 18 bytes: w = (nibble - 8) * d */
    bf_fp16 d;
    uint8_t qs[BF_QK / 2];         /* low nibbles: weights 0..15, high nibbles: 16..31 */
};

struct bf_block_q4_1 {             /* 20 bytes: w = nibble * d + m */
    bf_fp16 d;
    bf_fp16 m;
    uint8_t qs[BF_QK / 2];
};

struct bf_block_q8_0 {             /* 34 bytes: w = q * d */
    bf_fp16 d;
    int8_t qs[BF_QK];
};

_Static_assert(sizeof(struct bf_block_q4_0) == 18, "block_q4_0 is 18 bytes in GGUF");
_Static_assert(sizeof(struct bf_block_q4_1) == 20, "block_q4_1 is 20 bytes in GGUF");
_Static_assert(sizeof(struct bf_block_q8_0) == 34, "block_q8_0 is 34 bytes in GGUF");

/* binary16 -> binary32, exact for every input (subnormals, infinities, NaN payloads). */
static inline float fp16_to_f32(bf_fp16 h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t man = h & 0x3FFu;
    uint32_t bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else {                       /* subnormal: normalise the mantissa */
        int e = 113;
        while (!(man & 0x400u)) {
            man <<= 1;
            e--;
        }
        bits = sign | ((uint32_t)e << 23) | ((man & 0x3FFu) << 13);
    }
    union { uint32_t u; float f; } v = { bits };
    return v.f;
}

/* Dot product of one row (already offset to its first byte) with x[0..cols). */
static inline float bf_dot_row(const void *row, int type, const float *x, int cols)
{
    float val = 0.0f;
    switch (type) {
    case BF_GGML_F32: {
        const float *r = row;
        for (int j = 0; j < cols; j++)
            val += r[j] * x[j];
        break;
    }
    case BF_GGML_F16: {
        const bf_fp16 *r = row;
        for (int j = 0; j < cols; j++)
            val += fp16_to_f32(r[j]) * x[j];
        break;
    }
    case BF_GGML_Q4_0: {
        const struct bf_block_q4_0 *b = row;
        for (int k = 0; k < cols / BF_QK; k++, x += BF_QK) {
            float s = 0.0f;
            for (int j = 0; j < BF_QK / 2; j++)
                s += (float)((b[k].qs[j] & 0x0F) - 8) * x[j];
            for (int j = 0; j < BF_QK / 2; j++)
                s += (float)((b[k].qs[j] >> 4) - 8) * x[j + BF_QK / 2];
            val += fp16_to_f32(b[k].d) * s;
        }
        break;
    }
    case BF_GGML_Q4_1: {
        const struct bf_block_q4_1 *b = row;
        for (int k = 0; k < cols / BF_QK; k++, x += BF_QK) {
            float s = 0.0f, sx = 0.0f;
            for (int j = 0; j < BF_QK / 2; j++)
                s += (float)(b[k].qs[j] & 0x0F) * x[j];
            for (int j = 0; j < BF_QK / 2; j++)
                s += (float)(b[k].qs[j] >> 4) * x[j + BF_QK / 2];
            for (int j = 0; j < BF_QK; j++)
                sx += x[j];
            val += fp16_to_f32(b[k].d) * s + fp16_to_f32(b[k].m) * sx;
        }
        break;
    }
    case BF_GGML_Q8_0: {
        const struct bf_block_q8_0 *b = row;
        for (int k = 0; k < cols / BF_QK; k++, x += BF_QK) {
            float s = 0.0f;
            for (int j = 0; j < BF_QK; j++)
                s += (float)b[k].qs[j] * x[j];
            val += fp16_to_f32(b[k].d) * s;
        }
        break;
    }
    default:
        break;                     /* the loader admits no other type */
    }
    return val;
}

/* out[i] = sum_j W[i][j] * x[j] for i < rows; W is `rows` rows of `cols` weights of ggml_type,
 * each row bf_row_bytes(ggml_type, cols) bytes, rows back to back. */
static inline void matmul_typed(float *out, const float *x, const void *w, int ggml_type, int rows, int cols)
{
    size_t stride = bf_row_bytes(ggml_type, cols);
    const uint8_t *base = w;
    for (int i = 0; i < rows; i++)
        out[i] = bf_dot_row(base + (size_t)i * stride, ggml_type, x, cols);
}

/* out[0..cols) = row `row` of W, dequantised (the embedding lookup). */
static inline void dequant_row(float *out, const void *w, int ggml_type, int row, int cols)
{
    const uint8_t *r = (const uint8_t *)w + (size_t)row * bf_row_bytes(ggml_type, cols);
    switch (ggml_type) {
    case BF_GGML_F32:
        for (int j = 0; j < cols; j++)
            out[j] = ((const float *)r)[j];
        break;
    case BF_GGML_F16:
        for (int j = 0; j < cols; j++)
            out[j] = fp16_to_f32(((const bf_fp16 *)r)[j]);
        break;
    case BF_GGML_Q4_0:
        for (int k = 0; k < cols / BF_QK; k++) {
            const struct bf_block_q4_0 *b = (const struct bf_block_q4_0 *)r + k;
            float d = fp16_to_f32(b->d);
            for (int j = 0; j < BF_QK / 2; j++) {
                out[k * BF_QK + j] = (float)((b->qs[j] & 0x0F) - 8) * d;
                out[k * BF_QK + j + BF_QK / 2] = (float)((b->qs[j] >> 4) - 8) * d;
            }
        }
        break;
    case BF_GGML_Q4_1:
        for (int k = 0; k < cols / BF_QK; k++) {
            const struct bf_block_q4_1 *b = (const struct bf_block_q4_1 *)r + k;
            float d = fp16_to_f32(b->d), m = fp16_to_f32(b->m);
            for (int j = 0; j < BF_QK / 2; j++) {
                out[k * BF_QK + j] = (float)(b->qs[j] & 0x0F) * d + m;
                out[k * BF_QK + j + BF_QK / 2] = (float)(b->qs[j] >> 4) * d + m;
            }
        }
        break;
    case BF_GGML_Q8_0:
        for (int k = 0; k < cols / BF_QK; k++) {
            const struct bf_block_q8_0 *b = (const struct bf_block_q8_0 *)r + k;
            float d = fp16_to_f32(b->d);
            for (int j = 0; j < BF_QK; j++)
                out[k * BF_QK + j] = (float)b->qs[j] * d;
        }
        break;
    default:
        break;
    }
}

#endif
