/* layer_math.h - the arithmetic every layer module shares (static inline, no symbols).
 *
 * Promise: every result depends only on the inputs, never on the tier or the ISA level.
 *
 * The summation order (docs/layer-math.md has the reasoning and the measurements):
 *  - Every reduction over n floats (dot products, matmul rows, rmsnorm's sum of squares,
 *    softmax's sum, attention scores) is split into BF_LANES = 16 lanes: element j is added
 *    to lane j % 16, in increasing j, each lane starting from +0.0f.  The 16 lane sums are
 *    then combined by one fixed tree: s8[i] = l[i] + l[i+8], s4[i] = s8[i] + s8[i+4],
 *    s2[i] = s4[i] + s4[i+2], sum = s2[0] + s2[1].
 *  - The lanes are written as one 16-float vector (clang's vector extension), so the order
 *    is in the source, not left to the vectoriser: O0 runs it as packed instructions too,
 *    and no tier may reorder it (no fast-math anywhere).  16 lanes are one AVX-512 register,
 *    two AVX2 registers or four SSE registers: each ISA level keeps the whole accumulator in
 *    registers with no shuffles in the loop, and head sizes 48, 64, 128 and widths like 288
 *    are whole multiples of 16; a shorter tail is one zero-padded step (bf_tail16).
 *  - No fused multiply-add: every product is rounded before it is added (FP contraction is
 *    off here and in the build flags), so x86-64, -v2, -v3 and -v4 modules give the same bits
 *    and an image gives the same tokens on every CPU it runs on.
 *  - Elementwise work (scaling, residual adds, the attention's weighted sum over positions,
 *    which is summed over t in increasing order for each output element) has no order to
 *    choose: vectorising it across elements changes nothing.
 * Editing this header rebuilds every module that includes it.
 */
#ifndef BAREFLOW_LAYER_MATH_H
#define BAREFLOW_LAYER_MATH_H

#include <math.h>
#include <stddef.h>
#include "bareflow/layer_abi.h"

#pragma STDC FP_CONTRACT OFF

#define BF_LANES 16

/* 16 floats; aligned(4) so that rows at any float offset can be loaded through it. */
typedef float bf_f32x16 __attribute__((vector_size(64), aligned(4)));
typedef float bf_f32x8 __attribute__((vector_size(32), aligned(4)));
typedef float bf_f32x4 __attribute__((vector_size(16), aligned(4)));

static inline bf_f32x16 bf_load16(const float *p)
{
    return *(const bf_f32x16 *)p;
}

/* The last n < 16 elements, zero-padded: element j + l lands in lane l and the padding adds
 * +0.0f (0 * 0) to the other lanes, which leaves them unchanged - a lane starts at +0.0f, so it
 * is never -0.0f, and x + 0.0f == x for every other x.  One vector step instead of n inserts. */
static inline bf_f32x16 bf_tail16(const float *p, int n)
{
    float t[BF_LANES] __attribute__((aligned(64))) = {0};
    for (int l = 0; l < n; l++)
        t[l] = p[l];
    return bf_load16(t);
}

/* The fixed tree that turns the 16 lane sums into one float (see the header comment). */
static inline float bf_lanes_sum(bf_f32x16 l)
{
    bf_f32x8 s8 = __builtin_shufflevector(l, l, 0, 1, 2, 3, 4, 5, 6, 7) +
                  __builtin_shufflevector(l, l, 8, 9, 10, 11, 12, 13, 14, 15);
    bf_f32x4 s4 = __builtin_shufflevector(s8, s8, 0, 1, 2, 3) + __builtin_shufflevector(s8, s8, 4, 5, 6, 7);
    float s2_0 = s4[0] + s4[2];
    float s2_1 = s4[1] + s4[3];
    return s2_0 + s2_1;
}

/* sum_j a[j] * b[j] for j < n, in the lane order above. */
static inline float bf_dot(const float *a, const float *b, int n)
{
    bf_f32x16 acc = {0};
    int j = 0;
    for (; j + BF_LANES <= n; j += BF_LANES)
        acc += bf_load16(a + j) * bf_load16(b + j);
    if (j < n)
        acc += bf_tail16(a + j, n - j) * bf_tail16(b + j, n - j);
    return bf_lanes_sum(acc);
}

/* sum_j x[j] for j < n, in the lane order above. */
static inline float bf_sum(const float *x, int n)
{
    bf_f32x16 acc = {0};
    int j = 0;
    for (; j + BF_LANES <= n; j += BF_LANES)
        acc += bf_load16(x + j);
    if (j < n)
        acc += bf_tail16(x + j, n - j);
    return bf_lanes_sum(acc);
}

/* xout[i] = sum_j w[i*n + j] * x[j] for rows r0 <= i < r1 (w is row-major with n columns).
 * Each row is one bf_dot; rows are independent, so any split of [0, d) into ranges (one per
 * core) gives the same bits. */
static inline void bf_matmul_rows(float *xout, const float *x, const float *w, int n, int r0, int r1)
{
    int i = r0;
    /* Two rows at a time: two independent add chains and one load of x for both. */
    for (; i + 2 <= r1; i += 2) {
        const float *w0 = w + (size_t)i * (size_t)n, *w1 = w0 + n;
        bf_f32x16 a0 = {0}, a1 = {0};
        int j = 0;
        for (; j + BF_LANES <= n; j += BF_LANES) {
            bf_f32x16 xv = bf_load16(x + j);
            a0 += bf_load16(w0 + j) * xv;
            a1 += bf_load16(w1 + j) * xv;
        }
        if (j < n) {
            bf_f32x16 xv = bf_tail16(x + j, n - j);
            a0 += bf_tail16(w0 + j, n - j) * xv;
            a1 += bf_tail16(w1 + j, n - j) * xv;
        }
        xout[i] = bf_lanes_sum(a0);
        xout[i + 1] = bf_lanes_sum(a1);
    }
    for (; i < r1; i++)
        xout[i] = bf_dot(w + (size_t)i * (size_t)n, x, n);
}

/* xout[i] = sum_j w[i*n + j] * x[j] for i < d  (w is d rows of n, row-major) */
static inline void bf_matmul(float *xout, const float *x, const float *w, int n, int d)
{
    bf_matmul_rows(xout, x, w, n, 0, d);
}

/* y[i] += a * x[i] for i < n (the product rounded, then added: no reduction, no order). */
static inline void bf_axpy(float *y, float a, const float *x, int n)
{
    for (int i = 0; i < n; i++)
        y[i] += a * x[i];
}

/* o = weight * x / sqrt(mean(x^2) + eps); o may equal x (the scale is known first). */
static inline void bf_rmsnorm(float *o, const float *x, const float *weight, int size, float eps)
{
    float ss = bf_dot(x, x, size);
    ss /= size;
    ss += eps;
    ss = 1.0f / sqrtf(ss);
    for (int j = 0; j < size; j++)
        o[j] = weight[j] * (ss * x[j]);
}

/* In-place softmax of x[0..size); subtracting the max keeps expf from overflowing. */
static inline void bf_softmax(float *x, int size)
{
    float max_val = x[0];
    for (int i = 1; i < size; i++) {
        if (x[i] > max_val)
            max_val = x[i];
    }
    for (int i = 0; i < size; i++)
        x[i] = expf(x[i] - max_val);
    float sum = bf_sum(x, size);
    for (int i = 0; i < size; i++)
        x[i] /= sum;
}

/* Offset of position pos of block `block` in the key/value caches ([n_layers, seq_len, kv_dim]). */
static inline size_t bf_cache_offset(const struct bf_config *p, int block, int pos)
{
    int kv_dim = p->n_kv_heads * p->head_dim;
    return ((size_t)block * (size_t)p->seq_len + (size_t)pos) * (size_t)kv_dim;
}

#endif
