/* qkv.c - layer "qkv": project the normalised input into query, key and value.
 *
 * Promise: s->q = wq.xb; the key and value for (block, pos) are written straight into
 * key_cache / value_cache, so attention finds them there.
 */
#include "bareflow/layer_abi.h"
#include "layer_math.h"

void bf_layer_entry(struct bf_layer_call *c)
{
    const struct bf_config *p = c->cfg;
    struct bf_state *s = c->s;
    const struct bf_block_weights *w = c->w;
    int dim = p->dim;
    int kv_dim = dim * p->n_kv_heads / p->n_heads;
    size_t off = bf_cache_offset(p, c->block, c->pos);
    bf_matmul(s->q, s->xb, w->wq, dim, dim);
    bf_matmul(s->key_cache + off, s->xb, w->wk, dim, kv_dim);
    bf_matmul(s->value_cache + off, s->xb, w->wv, dim, kv_dim);
}
