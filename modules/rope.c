/* rope.c - layer "rope": rotary position embedding of the query and the cached key.
 *
 * Promise: for each even i < dim, with head_dim = i % head_size, freq =
 * 1 / powf(10000, head_dim / head_size) and angle = pos * freq, the pair (v[i], v[i+1])
 * is rotated by angle in s->q, and also in key_cache[block][pos] while i < kv_dim
 * (exactly llama2.c's loop, float arithmetic in the same order).
 */
#include "bareflow/layer_abi.h"
#include "layer_math.h"

void bf_layer_entry(struct bf_layer_call *c)
{
    const struct bf_config *p = c->cfg;
    int dim = p->dim;
    int head_size = dim / p->n_heads;
    int kv_dim = dim * p->n_kv_heads / p->n_heads;
    float *q = c->s->q;
    float *k = c->s->key_cache + bf_cache_offset(p, c->block, c->pos);
    for (int i = 0; i < dim; i += 2) {
        int head_dim = i % head_size;
        float freq = 1.0f / powf(10000.0f, head_dim / (float)head_size);
        float val = c->pos * freq;
        float fcr = cosf(val);
        float fci = sinf(val);
        int rotn = i < kv_dim ? 2 : 1;   /* keys are narrower than queries under GQA */
        for (int v = 0; v < rotn; v++) {
            float *vec = v == 0 ? q : k;
            float v0 = vec[i];
            float v1 = vec[i + 1];
            vec[i] = v0 * fcr - v1 * fci;
            vec[i + 1] = v0 * fci + v1 * fcr;
        }
    }
}
