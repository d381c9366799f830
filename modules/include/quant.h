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
 * Speed without changing that order: fp16 scales are widened exactly without branches, and Q4_0/
 * Q4_1 rows go four per pass over x (bf_q_rows4), each row's lanes and order untouched.
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

/* 16 float lanes as one vector (clang's vector extension): the order is in the source, so every
 * tier and ISA level runs the same additions.  aligned(1)/aligned(4) let a block's bytes and x
 * be loaded from any offset. */
typedef float bf_q_f32x16 __attribute__((vector_size(64), aligned(4)));
typedef float bf_q_f32x8 __attribute__((vector_size(32), aligned(4)));
typedef float bf_q_f32x4 __attribute__((vector_size(16), aligned(4)));
typedef uint8_t bf_q_u8x16 __attribute__((vector_size(16), aligned(1)));
typedef int8_t bf_q_i8x16 __attribute__((vector_size(16), aligned(1)));
typedef uint32_t bf_q_u32x4 __attribute__((vector_size(16), aligned(4)));

/* binary16 -> binary32 for four values at once, exact for every input (subnormals, infinities,
 * NaN payloads: the 10 mantissa bits move up 13 places, as IEEE 754 widening keeps them; no NaN
 * is quietened).  Branchless, so it vectorises and costs the same for every input: the 15
 * magnitude bits shift into binary32 position and the exponent is rebiased (+112); exponent 31
 * (inf/NaN) gets +112 more (255); exponent 0 (zero, subnormal) is rebuilt as
 * (2^-14 + man * 2^-24) - 2^-14, a subtraction of two normal floats that is exact (Sterbenz)
 * whatever MXCSR's DAZ/FTZ say.  `h` holds one binary16 per lane in bits 0..15. */
static inline bf_q_f32x4 bf_fp16x4_to_f32(bf_q_u32x4 h)
{
    bf_q_u32x4 em = (h & 0x7FFFu) << 13;
    bf_q_u32x4 e = em & 0x0F800000u;
    bf_q_u32x4 infnan = (bf_q_u32x4)(e == 0x0F800000u);        /* all ones where exponent 31 */
    bf_q_u32x4 small = (bf_q_u32x4)(e == 0u);                  /* all ones where exponent 0 */
    bf_q_u32x4 normal = em + (112u << 23) + (infnan & (112u << 23));
    bf_q_f32x4 sub = (bf_q_f32x4)(em + (113u << 23)) - 0x1p-14f;
    bf_q_u32x4 bits = (normal & ~small) | ((bf_q_u32x4)sub & small);
    return (bf_q_f32x4)(bits | (h & 0x8000u) << 16);
}

/* binary16 -> binary32, one value: bf_fp16x4_to_f32's steps on one lane (integer registers, so
 * that in the matmul loops it runs beside the vector arithmetic rather than on its ports). */
static inline float fp16_to_f32(bf_fp16 h)
{
    union { uint32_t u; float f; } sub, out;
    uint32_t em = (uint32_t)(h & 0x7FFFu) << 13;
    uint32_t e = em & 0x0F800000u;
    uint32_t infnan = 0u - (uint32_t)(e == 0x0F800000u);
    uint32_t small = 0u - (uint32_t)(e == 0u);
    uint32_t normal = em + (112u << 23) + (infnan & (112u << 23));
    sub.u = em + (113u << 23);
    sub.f -= 0x1p-14f;
    out.u = ((normal & ~small) | (sub.u & small)) | (uint32_t)(h & 0x8000u) << 16;
    return out.f;
}

/* The 16 lane sums combined by one fixed tree: s8[i] = l[i] + l[i+8], s4[i] = s8[i] + s8[i+4],
 * then (s4[0] + s4[2]) + (s4[1] + s4[3]). */
static inline float bf_q_lanes_sum(bf_q_f32x16 l)
{
    bf_q_f32x8 s8 = __builtin_shufflevector(l, l, 0, 1, 2, 3, 4, 5, 6, 7) +
                    __builtin_shufflevector(l, l, 8, 9, 10, 11, 12, 13, 14, 15);
    bf_q_f32x4 s4 = __builtin_shufflevector(s8, s8, 0, 1, 2, 3) + __builtin_shufflevector(s8, s8, 4, 5, 6, 7);
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

/* Bytes per block of a block type (ggml's block sizes; the structs above). */
static inline size_t bf_q_block_bytes(int type)
{
    return type == BF_GGML_Q4_1 ? sizeof(struct bf_block_q4_1) :
           type == BF_GGML_Q4_0 ? sizeof(struct bf_block_q4_0) : sizeof(struct bf_block_q8_0);
}

typedef int32_t bf_q_i32x16 __attribute__((vector_size(64), aligned(4)));
typedef uint32_t bf_q_u32_a1 __attribute__((aligned(1)));

/* One block of one row in the documented order: t_l = q_l * x0[l] + q_{l+16} * x1[l], then
 * acc += d * t, and for Q4_1 acc += m * s, where s = x0 + x1.  The quants are exact small
 * integers, so converting them through int32 or subtracting 8 before or after the conversion
 * gives the same floats.  Vectors go by pointer: a 64-byte vector argument is passed in memory
 * (byval), and at O0 for x86-64-v4 those copies became calls to memcpy. */
static inline __attribute__((always_inline)) void
bf_q_block(int type, bf_q_f32x16 *acc, const uint8_t *blk, float d, float m,
           const bf_q_f32x16 *x0, const bf_q_f32x16 *x1, const bf_q_f32x16 *s)
{
    bf_q_f32x16 lo, hi;
    if (type == BF_GGML_Q8_0) {
        const struct bf_block_q8_0 *b = (const struct bf_block_q8_0 *)blk;
        lo = __builtin_convertvector(*(const bf_q_i8x16 *)b->qs, bf_q_f32x16);
        hi = __builtin_convertvector(*(const bf_q_i8x16 *)(b->qs + 16), bf_q_f32x16);
    } else {
        /* Q4_0 and Q4_1: byte l holds weight l (low nibble) and weight l+16 (high nibble) */
        const uint8_t *qs = blk + (type == BF_GGML_Q4_1 ? 4 : 2);
        bf_q_i32x16 q = __builtin_convertvector(*(const bf_q_u8x16 *)qs, bf_q_i32x16);
        bf_q_i32x16 ql = q & 0x0F, qh = q >> 4;
        if (type == BF_GGML_Q4_0) {
            ql -= 8;
            qh -= 8;
        }
        lo = __builtin_convertvector(ql, bf_q_f32x16);
        hi = __builtin_convertvector(qh, bf_q_f32x16);
    }
    *acc += d * (lo * *x0 + hi * *x1);
    if (type == BF_GGML_Q4_1)
        *acc += m * *s;
}

/* One row of a block type against x[0..nb*32): 16 lanes, blocks in order, the fixed tree.  The
 * scales are converted in integer registers, beside the vector arithmetic. */
static inline __attribute__((always_inline)) float
bf_q_row(const uint8_t *row, int type, const float *x, int nb)
{
    size_t bs = bf_q_block_bytes(type);
    bf_q_f32x16 acc = {0};
    for (int k = 0; k < nb; k++, x += BF_QK) {
        const uint8_t *blk = row + (size_t)k * bs;
        uint32_t h = *(const bf_q_u32_a1 *)blk;         /* d in bits 0..15, Q4_1's m in 16..31 */
        float d = fp16_to_f32((bf_fp16)h);
        float m = type == BF_GGML_Q4_1 ? fp16_to_f32((bf_fp16)(h >> 16)) : 0.0f;
        bf_q_f32x16 x0 = *(const bf_q_f32x16 *)x, x1 = *(const bf_q_f32x16 *)(x + 16);
        bf_q_f32x16 s = x0 + x1;
        bf_q_block(type, &acc, blk, d, m, &x0, &x1, &s);
    }
    return bf_q_lanes_sum(acc);
}

/* Four rows of a block type, `stride` bytes apart, each computed exactly as bf_q_row computes it
 * (its own 16 lanes, blocks in order, the fixed tree), but in one pass over x: each block's 32
 * activations, and Q4_1's x0 + x1, serve four rows.  The four rows' scales of up to
 * BF_Q_CHUNK blocks are first converted four at a time into a small table; the arithmetic
 * loop then broadcasts them from memory (load ports) instead of shuffling them out of vector
 * registers (the same ports as the multiplies).  Measured on 1536x576 Q4_1 at x86-64-v3 O1:
 * 6.6 ns per block one row at a time, 4.0 with four rows, 3.7 with the table. */
#define BF_Q_ROWS 4
#define BF_Q_CHUNK 64

static inline __attribute__((always_inline)) void
bf_q_rows4(float *out, const uint8_t *row, size_t stride, int type, const float *x, int nb)
{
    size_t bs = bf_q_block_bytes(type);
    const uint8_t *r0 = row, *r1 = row + stride, *r2 = row + 2 * stride, *r3 = row + 3 * stride;
    float sc[BF_Q_CHUNK][8] __attribute__((aligned(32)));     /* d of rows 0..3, then m */
    bf_q_f32x16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    for (int k0 = 0; k0 < nb; k0 += BF_Q_CHUNK) {
        int kn = nb - k0 < BF_Q_CHUNK ? nb - k0 : BF_Q_CHUNK;
        for (int k = 0; k < kn; k++) {
            size_t o = (size_t)(k0 + k) * bs;
            bf_q_u32x4 h = {*(const bf_q_u32_a1 *)(r0 + o), *(const bf_q_u32_a1 *)(r1 + o),
                            *(const bf_q_u32_a1 *)(r2 + o), *(const bf_q_u32_a1 *)(r3 + o)};
            *(bf_q_f32x4 *)&sc[k][0] = bf_fp16x4_to_f32(h & 0xFFFFu);
            if (type == BF_GGML_Q4_1)
                *(bf_q_f32x4 *)&sc[k][4] = bf_fp16x4_to_f32(h >> 16);
        }
        for (int k = 0; k < kn; k++, x += BF_QK) {
            size_t o = (size_t)(k0 + k) * bs;
            bf_q_f32x16 x0 = *(const bf_q_f32x16 *)x, x1 = *(const bf_q_f32x16 *)(x + 16);
            bf_q_f32x16 s = x0 + x1;       /* used by Q4_1 only */
            bf_q_block(type, &a0, r0 + o, sc[k][0], sc[k][4], &x0, &x1, &s);
            bf_q_block(type, &a1, r1 + o, sc[k][1], sc[k][5], &x0, &x1, &s);
            bf_q_block(type, &a2, r2 + o, sc[k][2], sc[k][6], &x0, &x1, &s);
            bf_q_block(type, &a3, r3 + o, sc[k][3], sc[k][7], &x0, &x1, &s);
        }
    }
    out[0] = bf_q_lanes_sum(a0);
    out[1] = bf_q_lanes_sum(a1);
    out[2] = bf_q_lanes_sum(a2);
    out[3] = bf_q_lanes_sum(a3);
}

/* Rows [r0, r1) of one block type, four per pass over x when `grouped`, the rest one by one: the
 * same bits either way, so any split of the rows between cores agrees too. */
static inline __attribute__((always_inline)) void
bf_q_matmul_rows(float *out, const float *x, const uint8_t *w, int type, int grouped, int cols, int r0, int r1)
{
    size_t stride = bf_row_bytes(type, cols);
    int nb = cols / BF_QK, i = r0;
    if (grouped)
        for (; i + BF_Q_ROWS <= r1; i += BF_Q_ROWS)
            bf_q_rows4(out + i, w + (size_t)i * stride, stride, type, x, nb);
    for (; i < r1; i++)
        out[i] = bf_q_row(w + (size_t)i * stride, type, x, nb);
}

/* Dot product of one row (already offset to its first byte) with x[0..cols). */
static inline float bf_dot_row(const void *row, int type, const float *x, int cols)
{
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
    case BF_GGML_Q4_0:
        return bf_q_row(row, BF_GGML_Q4_0, x, cols / BF_QK);
    case BF_GGML_Q4_1:
        return bf_q_row(row, BF_GGML_Q4_1, x, cols / BF_QK);
    case BF_GGML_Q8_0:
        return bf_q_row(row, BF_GGML_Q8_0, x, cols / BF_QK);
    default:
        return 0.0f;               /* the loader admits no other type */
    }
}

/* out[i] = W_i . x for rows r0 <= i < r1 only (one core's chunk of a split call, layer ABI 3);
 * each row is computed exactly as matmul_typed computes it, so any split gives the same bits. */
static inline void matmul_typed_rows(float *out, const float *x, const void *w, int ggml_type, int cols,
                                     int r0, int r1)
{
    switch (ggml_type) {
    case BF_GGML_F32:
        bf_matmul_rows(out, x, w, cols, r0, r1);
        return;
    case BF_GGML_Q4_0:
        bf_q_matmul_rows(out, x, w, BF_GGML_Q4_0, 1, cols, r0, r1);
        return;
    case BF_GGML_Q4_1:
        bf_q_matmul_rows(out, x, w, BF_GGML_Q4_1, 1, cols, r0, r1);
        return;
    case BF_GGML_Q8_0:
        /* Q8_0 one row at a time: grouped, the x86-64 level (no SSE4.1 sign extension, 16 SSE
         * registers for 64 accumulator floats) ran 0.7x, and x86-64-v3 gained nothing clear. */
        bf_q_matmul_rows(out, x, w, BF_GGML_Q8_0, 0, cols, r0, r1);
        return;
    default: {
        size_t stride = bf_row_bytes(ggml_type, cols);
        const uint8_t *base = w;
        for (int i = r0; i < r1; i++)
            out[i] = bf_dot_row(base + (size_t)i * stride, ggml_type, x, cols);
    }
    }
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
