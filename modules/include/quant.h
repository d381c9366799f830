/* quant.h - typed weight matrices: GGUF's block layouts and the scalar kernels that read them.
 *
 * Promise: the block structs below are byte-for-byte ggml's (ggml-common.h: block_q4_0,
 * block_q4_1, block_q8_0; 32 weights per block, little-endian fp16 scales), so a tensor copied
 * straight out of a GGUF file is read in place: nothing is expanded to float32.  Type codes are
 * ggml's (enum ggml_type, bareflow/weight_types.h).  matmul_typed's order depends only on the
 * inputs, never on the tier or ISA (docs/weights-format.md, "Summation order"):
 *  - block types: 16 float lanes per row, all starting at +0.0f.  For block k (x_k = its 32
 *    activations), lane l (0..15) gets t_l = q_l * x_k[l] + q_{l+16} * x_k[l+16] (each product
 *    rounded, then one add; q is the integer quant, nibble - 8 for Q4_0, the raw nibble for Q4_1),
 *    then acc_l += d_k * t_l, and for Q4_1 also acc_l += m_k * (x_k[l] + x_k[l+16]).  Blocks go in
 *    index order; the row's value is the 16 lanes combined by bf_q_lanes_sum's fixed tree.
 *  - F32 and F16 rows: one float sum over j in index order (exactly bf_matmul for F32).
 * Lane l pairs weights l and l+16 because that is how Q4_0/Q4_1 pack nibbles (low nibble of byte l
 * = weight l, high nibble = weight l+16): one 16-lane vector per half block, no shuffles, one
 * AVX-512 register or two AVX2/four SSE registers.  No fused multiply-add (FP contraction off).
 * Every helper is static inline (no symbols), like layer_math.h.
 */
#ifndef BAREFLOW_QUANT_H
#define BAREFLOW_QUANT_H

#include <stddef.h>
#include <stdint.h>

#pragma STDC FP_CONTRACT OFF

#include "bareflow/weight_types.h"   /* BF_GGML_* codes, BF_QK, bf_row_bytes */
#include "layer_math.h"                 /* bf_dot, bf_matmul_rows: the f32 lane order */

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

/* 16 float lanes as one vector (clang's vector extension): the order is in the source, so every
 * tier and ISA level runs the same additions.  aligned(1)/aligned(4) let a block's bytes and x
 * be loaded from any offset. */
typedef float bf_q_f32x16 __attribute__((vector_size(64), aligned(4)));
typedef float bf_q_f32x8 __attribute__((vector_size(32), aligned(4)));
typedef float bf_q_f32x4 __attribute__((vector_size(16), aligned(4)));
typedef uint8_t bf_q_u8x16 __attribute__((vector_size(16), aligned(1)));
typedef int8_t bf_q_i8x16 __attribute__((vector_size(16), aligned(1)));

/* The 16 lane sums combined by one fixed tree: s8[i] = l[i] + l[i+8], s4[i] = s8[i] + s8[i+4],
 * then (s4[0] + s4[2]) + (s4[1] + s4[3]). */
static inline float bf_q_lanes_sum(bf_q_f32x16 l)
{
    bf_q_f32x8 s8 = __builtin_shufflevector(l, l, 0, 1, 2, 3, 4, 5, 6, 7) +
                    __builtin_shufflevector(l, l, 8, 9, 10, 11, 12, 13, 14, 15);
    bf_q_f32x4 s4 = __builtin_shufflevector(s8, s8, 0, 1, 2, 3) + __builtin_shufflevector(s8, s8, 4, 5, 6, 7);
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

/* Dot product of one row (already offset to its first byte) with x[0..cols). */
static inline float bf_dot_row(const void *row, int type, const float *x, int cols)
{
    bf_q_f32x16 acc = {0};
    switch (type) {
    case BF_GGML_F32:
        return bf_dot(row, x, cols);
    case BF_GGML_F16: {
        /* bf_dot's lane order on the converted weights: 16 at a time, the tail zero-padded. */
        const bf_fp16 *r = row;
        float w[BF_LANES] __attribute__((aligned(64)));
        bf_f32x16 lanes = {0};
        for (int j = 0; j < cols; j += BF_LANES) {
            int n = cols - j < BF_LANES ? cols - j : BF_LANES;
            for (int l = 0; l < BF_LANES; l++)
                w[l] = l < n ? fp16_to_f32(r[j + l]) : 0.0f;
            lanes += bf_load16(w) * (n == BF_LANES ? bf_load16(x + j) : bf_tail16(x + j, n));
        }
        return bf_lanes_sum(lanes);
    }
    case BF_GGML_Q4_0: {
        const struct bf_block_q4_0 *b = row;
        for (int k = 0; k < cols / BF_QK; k++, x += BF_QK) {
            bf_q_u8x16 qs = *(const bf_q_u8x16 *)b[k].qs;
            bf_q_f32x16 lo = __builtin_convertvector(qs & 0x0F, bf_q_f32x16) - 8.0f;
            bf_q_f32x16 hi = __builtin_convertvector(qs >> 4, bf_q_f32x16) - 8.0f;
            bf_q_f32x16 t = lo * *(const bf_q_f32x16 *)x + hi * *(const bf_q_f32x16 *)(x + 16);
            acc += fp16_to_f32(b[k].d) * t;
        }
        break;
    }
    case BF_GGML_Q4_1: {
        const struct bf_block_q4_1 *b = row;
        for (int k = 0; k < cols / BF_QK; k++, x += BF_QK) {
            bf_q_u8x16 qs = *(const bf_q_u8x16 *)b[k].qs;
            bf_q_f32x16 lo = __builtin_convertvector(qs & 0x0F, bf_q_f32x16);
            bf_q_f32x16 hi = __builtin_convertvector(qs >> 4, bf_q_f32x16);
            bf_q_f32x16 x0 = *(const bf_q_f32x16 *)x, x1 = *(const bf_q_f32x16 *)(x + 16);
            bf_q_f32x16 t = lo * x0 + hi * x1;
            acc += fp16_to_f32(b[k].d) * t;
            acc += fp16_to_f32(b[k].m) * (x0 + x1);
        }
        break;
    }
    case BF_GGML_Q8_0: {
        const struct bf_block_q8_0 *b = row;
        for (int k = 0; k < cols / BF_QK; k++, x += BF_QK) {
            bf_q_f32x16 lo = __builtin_convertvector(*(const bf_q_i8x16 *)b[k].qs, bf_q_f32x16);
            bf_q_f32x16 hi = __builtin_convertvector(*(const bf_q_i8x16 *)(b[k].qs + 16), bf_q_f32x16);
            bf_q_f32x16 t = lo * *(const bf_q_f32x16 *)x + hi * *(const bf_q_f32x16 *)(x + 16);
            acc += fp16_to_f32(b[k].d) * t;
        }
        break;
    }
    default:
        return 0.0f;               /* the loader admits no other type */
    }
    return bf_q_lanes_sum(acc);
}

/* out[i] = W_i . x for rows r0 <= i < r1 only (one core's chunk of a split call, layer ABI 3);
 * each row is computed exactly as matmul_typed computes it, so any split gives the same bits. */
static inline void matmul_typed_rows(float *out, const float *x, const void *w, int ggml_type, int cols,
                                     int r0, int r1)
{
    if (ggml_type == BF_GGML_F32) {
        bf_matmul_rows(out, x, w, cols, r0, r1);
        return;
    }
    size_t stride = bf_row_bytes(ggml_type, cols);
    const uint8_t *base = w;
    for (int i = r0; i < r1; i++)
        out[i] = bf_dot_row(base + (size_t)i * stride, ggml_type, x, cols);
}

/* out[i] = sum_j W[i][j] * x[j] for i < rows; W is `rows` rows of `cols` weights of ggml_type,
 * each row bf_row_bytes(ggml_type, cols) bytes, rows back to back. */
static inline void matmul_typed(float *out, const float *x, const void *w, int ggml_type, int rows, int cols)
{
    matmul_typed_rows(out, x, w, ggml_type, cols, 0, rows);
}

/* out[0..cols) = row `row` of W, dequantised (the embedding lookup).  The block loops stay loops
 * (the loop vectoriser still widens them): fully unrolled, the 16-32 byte loads and float stores
 * per block fed the SLP vectoriser and loop-load elimination a straight-line body that took
 * 1.5 s to compile at O3 for AVX2 (4.6 s as the first run-time compile of a hosted run) and
 * emitted 22 KB of code, against 0.12 s and 5 KB now, for a function called once per token.
 * Element-wise conversions: the result is the same either way. */
static inline void dequant_row(float *restrict out, const void *restrict w, int ggml_type, int row, int cols)
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
            _Pragma("clang loop unroll(disable)")
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
            _Pragma("clang loop unroll(disable)")
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
            _Pragma("clang loop unroll(disable)")
            for (int j = 0; j < BF_QK; j++)
                out[k * BF_QK + j] = (float)b->qs[j] * d;
        }
        break;
    default:
        break;
    }
}

#endif
