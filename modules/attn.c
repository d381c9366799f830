/* attn.c - layer "attn": causal multi-head attention with grouped-query key/value heads.
 *
 * Promise: for each query head h, scores q_h . k_t / sqrt(head_dim) for t <= pos go to
 * s->att[h*seq_len + t], are softmaxed, and the weighted sum of v_t lands in
 * s->xb[h*head_size ..]; head h reads kv head h / (n_heads / n_kv_heads).
 */
#include "bareflow/layer_abi.h"
#include "layer_math.h"

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
    for (int h = 0; h < p->n_heads; h++) {
        const float *q = s->q + h * head_size;
        float *att = s->att + (size_t)h * (size_t)p->seq_len;
        int kv_off = (h / kv_mul) * head_size;
        for (int t = 0; t <= pos; t++) {
            const float *k = keys + (size_t)t * (size_t)kv_dim + kv_off;
            float score = 0.0f;
            for (int i = 0; i < head_size; i++)
                score += q[i] * k[i];
            att[t] = score / scale;
        }
        bf_softmax(att, pos + 1);
        float *xb = s->xb + h * head_size;
        for (int i = 0; i < head_size; i++)
            xb[i] = 0.0f;
        for (int t = 0; t <= pos; t++) {
            const float *v = values + (size_t)t * (size_t)kv_dim + kv_off;
            float a = att[t];
            for (int i = 0; i < head_size; i++)
                xb[i] += a * v[i];
        }
    }
}
