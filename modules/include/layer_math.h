/* layer_math.h - the arithmetic every layer module shares (static inline, no symbols).
 *
 * Promise: each helper is the plain llama2.c loop, accumulating in float in index order,
 * so the result depends only on the inputs, never on the tier: optimisation levels may not
 * reorder these sums (no fast-math), and FP contraction is off below so a tier built for an
 * FMA-capable ISA rounds every product and sum exactly as the baseline tier does.
 * Editing this header rebuilds every module that includes it.
 */
#ifndef BAREFLOW_LAYER_MATH_H
#define BAREFLOW_LAYER_MATH_H

#include <math.h>
#include <stddef.h>
#include "bareflow/layer_abi.h"

#pragma STDC FP_CONTRACT OFF

/* xout[i] = sum_j w[i*n + j] * x[j] for i < d  (w is d rows of n, row-major) */
static inline void bf_matmul(float *xout, const float *x, const float *w, int n, int d)
{
    for (int i = 0; i < d; i++) {
        const float *row = w + (size_t)i * (size_t)n;
        float val = 0.0f;
        for (int j = 0; j < n; j++)
            val += row[j] * x[j];
        xout[i] = val;
    }
}

/* o = weight * x / sqrt(mean(x^2) + eps); o may equal x (the scale is known first). */
static inline void bf_rmsnorm(float *o, const float *x, const float *weight, int size, float eps)
{
    float ss = 0.0f;
    for (int j = 0; j < size; j++)
        ss += x[j] * x[j];
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
    float sum = 0.0f;
    for (int i = 0; i < size; i++) {
        x[i] = expf(x[i] - max_val);
        sum += x[i];
    }
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
