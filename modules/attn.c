/* attn.c - layer "attn": causal multi-head attention with grouped-query key/value heads.
 *
 * Promise: for each query head h, scores q_h . k_t / sqrt(head_dim) for t <= pos go to
 * s->att[h*seq_len + t], are softmaxed, and the weighted sum of v_t lands in
 * s->xb[h*head_size ..]; head h reads kv head h / (n_heads / n_kv_heads).  Scores are
 * bf_dot (the lane order of layer_math.h); each output element sums its weighted values
 * over t = 0..pos in that order.  Split (layer
 * ABI 3): phase 0 has n_heads units; a chunk computes only its heads.
 */
#include "bareflow/layer_abi.h"
#include "layer_math.h"
#include "layer_split.h"

void bf_layer_entry(struct bf_layer_call *c)
{
    const struct bf_config *p = c->cfg;
    struct bf_state *s = c->s;
    int pos = c->pos;
    int head_size = p->head_dim;
    int kv_dim = p->n_kv_heads * head_size;
    int kv_mul = p->n_heads / p->n_kv_heads;
    const float *keys = s->key_cache + bf_cache_offset(p, c->block, 0);
    const float *values = s->value_cache + bf_cache_offset(p, c->block, 0);
    float scale = sqrtf((float)head_size);
    int b, e;
    if (!bf_split_range(c, 0, p->n_heads, &b, &e))
        return;
    for (int h = b; h < e; h++) {
        const float *q = s->q + h * head_size;
        float *att = s->att + (size_t)h * (size_t)p->seq_len;
        int kv_off = (h / kv_mul) * head_size;
        for (int t = 0; t <= pos; t++) {
            const float *k = keys + (size_t)t * (size_t)kv_dim + kv_off;
            att[t] = bf_dot(q, k, head_size) / scale;
        }
        bf_softmax(att, pos + 1);
        float *xb = s->xb + h * head_size;
        for (int i = 0; i < head_size; i++)
            xb[i] = 0.0f;
        for (int t = 0; t <= pos; t++) {
            bf_axpy(xb, att[t], values + (size_t)t * (size_t)kv_dim + kv_off, head_size);
        }
    }
}
