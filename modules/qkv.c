/* qkv.c - layer "qkv": project the normalised input into query, key and value.
 *
 * Promise: s->q = wq.xb (weights of any quant.h type); the key and value for (block, pos) are written straight into
 * key_cache / value_cache, so attention finds them there.
 */
#include "bareflow/layer_abi.h"
#include "layer_math.h"
#include "quant.h"

void bf_layer_entry(struct bf_layer_call *c)
{
    const struct bf_config *p = c->cfg;
    struct bf_state *s = c->s;
    const struct bf_block_weights *w = c->w;
    int dim = p->dim;
    int q_dim = p->n_heads * p->head_dim;
    int kv_dim = p->n_kv_heads * p->head_dim;
    size_t off = bf_cache_offset(p, c->block, c->pos);
    matmul_typed(s->q, s->xb, w->wq.data, w->wq.type, q_dim, dim);
    matmul_typed(s->key_cache + off, s->xb, w->wk.data, w->wk.type, kv_dim, dim);
    matmul_typed(s->value_cache + off, s->xb, w->wv.data, w->wv.type, kv_dim, dim);
}
