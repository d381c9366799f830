/* attnout.c - layer "attnout": attention output projection plus residual.
 *
 * Promise: s->xb2 = wo.xb, then s->x += s->xb2.
 */
#include "bareflow/layer_abi.h"
#include "layer_math.h"
#include "quant.h"

void bf_layer_entry(struct bf_layer_call *c)
{
    struct bf_state *s = c->s;
    int dim = c->cfg->dim;
    int q_dim = c->cfg->n_heads * c->cfg->head_dim;
    matmul_typed(s->xb2, s->xb, c->w->wo.data, c->w->wo.type, dim, q_dim);
    for (int i = 0; i < dim; i++)
        s->x[i] += s->xb2[i];
}
