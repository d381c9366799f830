/* attnout.c - layer "attnout": attention output projection plus residual.
 *
 * Promise: s->xb2 = wo.xb, then s->x += s->xb2.
 */
#include "bareflow/layer_abi.h"
#include "layer_math.h"

void bf_layer_entry(struct bf_layer_call *c)
{
    struct bf_state *s = c->s;
    int dim = c->cfg->dim;
    bf_matmul(s->xb2, s->xb, c->w->wo, dim, dim);
    for (int i = 0; i < dim; i++)
        s->x[i] += s->xb2[i];
}
