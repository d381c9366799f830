/* embed.c - layer "embed": copy the token's embedding row into the residual stream.
 *
 * Promise: s->x[i] = weight[token*dim + i] for i < dim; reads nothing else.
 */
#include "bareflow/layer_abi.h"
#include "layer_math.h"

void bf_layer_entry(struct bf_layer_call *c)
{
    int dim = c->cfg->dim;
    const float *row = c->weight + (size_t)c->token * (size_t)dim;
    float *x = c->s->x;
    for (int i = 0; i < dim; i++)
        x[i] = row[i];
}
