/* qkv.c - layer "qkv": project the normalised input into query, key and value.
 *
 * Promise: s->q = wq.xb (weights of any quant.h type); the key and value for (block, pos) are
 * written straight into key_cache / value_cache, so attention finds them there.  Split (layer
 * ABI 3): phase 0 has q_dim + 2*kv_dim rows - wq's, then wk's, then wv's - and a chunk computes
 * only its rows.
 */
#include "bareflow/layer_abi.h"
#include "layer_math.h"
#include "layer_split.h"
#include "quant.h"

/* Rows [b, e) of one projection whose rows are numbered from `first` in the split's count. */
static void rows(float *out, const float *x, const struct bf_weight *w, int n, int first, int count, int b, int e)
{
    int lo = b > first ? b - first : 0;
    int hi = e - first < count ? e - first : count;
    if (lo < hi)
        matmul_typed_rows(out, x, w->data, w->type, n, lo, hi);
}

void bf_layer_entry(struct bf_layer_call *c)
{
    const struct bf_config *p = c->cfg;
    struct bf_state *s = c->s;
    const struct bf_block_weights *w = c->w;
    int dim = p->dim;
    int q_dim = p->n_heads * p->head_dim;
    int kv_dim = p->n_kv_heads * p->head_dim;
    size_t off = bf_cache_offset(p, c->block, c->pos);
    int b, e;
    if (!bf_split_range(c, 0, q_dim + 2 * kv_dim, &b, &e))
        return;
    rows(s->q, s->xb, &w->wq, dim, 0, q_dim, b, e);
    rows(s->key_cache + off, s->xb, &w->wk, dim, q_dim, kv_dim, b, e);
    rows(s->value_cache + off, s->xb, &w->wv, dim, q_dim + kv_dim, kv_dim, b, e);
}
