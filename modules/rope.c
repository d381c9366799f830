/* rope.c - layer "rope": rotary position embedding of the query and the cached key.
 *
 * Promise: for each even i < n_heads*head_dim, with head_dim = i % head_size (only while
 * head_dim < rope_dim), freq = 1 / powf(rope_theta, head_dim / rope_dim) and angle = pos * freq,
 * the pair (v[i], v[i+1]) is rotated by angle in s->q, and also in key_cache[block][pos] while
 * i < kv_dim (llama2.c's loop, float arithmetic in the same order; with rope_theta 10000 and
 * rope_dim = head_size it is exactly llama2.c's).
 * The angle depends on head_dim only, so with an even head_size (every head then starts at an
 * even i) cos and sin are computed once per head_dim, not once per head: the same expressions on
 * the same inputs, so the same bits, at 1/n_heads of the powf/cosf/sinf calls.  Rope is never
 * split across cores, so on several cores its time is a serial share of every block.
 */
#include "bareflow/layer_abi.h"
#include "layer_math.h"

#define TABLE 256                       /* head_dim / 2 entries: head_size <= 512 uses the table */

static void angle(const struct bf_config *p, int pos, int head_dim, float *fcr, float *fci)
{
    float freq = 1.0f / powf(p->rope_theta, head_dim / (float)p->rope_dim);
    float val = pos * freq;
    *fcr = cosf(val);
    *fci = sinf(val);
}

void bf_layer_entry(struct bf_layer_call *c)
{
    const struct bf_config *p = c->cfg;
    int head_size = p->head_dim;
    int q_dim = p->n_heads * head_size;
    int kv_dim = p->n_kv_heads * head_size;
    float *q = c->s->q;
    float *k = c->s->key_cache + bf_cache_offset(p, c->block, c->pos);
    float cr[TABLE], ci[TABLE];
    int table = head_size % 2 == 0 && head_size <= 2 * TABLE;
    for (int head_dim = 0; table && head_dim < head_size && head_dim < p->rope_dim; head_dim += 2)
        angle(p, c->pos, head_dim, &cr[head_dim / 2], &ci[head_dim / 2]);
    for (int i = 0; i < q_dim; i += 2) {
        int head_dim = i % head_size;
        if (head_dim >= p->rope_dim)
            continue;
        float fcr, fci;
        if (table) {
            fcr = cr[head_dim / 2];
            fci = ci[head_dim / 2];
        } else {
            angle(p, c->pos, head_dim, &fcr, &fci);
        }
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
