/* attnout.c - layer "attnout": attention output projection plus residual.
 *
 * Promise: s->xb2 = wo.xb, then s->x += s->xb2.  Split (layer ABI 3): phase 0 has dim rows;
 * a chunk computes xb2[i] and adds it to x[i] for its rows only.
 */
#include "bareflow/layer_abi.h"
#include "layer_math.h"
#include "layer_split.h"
#include "quant.h"

void bf_layer_entry(struct bf_layer_call *c)
{
    struct bf_state *s = c->s;
    int dim = c->cfg->dim;
    int q_dim = c->cfg->n_heads * c->cfg->head_dim;
    int b, e;
    if (!bf_split_range(c, 0, dim, &b, &e))
        return;
    matmul_typed_rows(s->xb2, s->xb, c->w->wo.data, c->w->wo.type, q_dim, b, e);
    for (int i = b; i < e; i++)
        s->x[i] += s->xb2[i];
}
