/* embed.c - layer "embed": copy the token's embedding row into the residual stream.
 *
 * Promise: s->x = row `token` of the [vocab_size, dim] table `weight` of type weight_type,
 * dequantised (quant.h's dequant_row); reads nothing else.
 */
#include "bareflow/layer_abi.h"
#include "layer_math.h"
#include "quant.h"

void bf_layer_entry(struct bf_layer_call *c)
{
    dequant_row(c->s->x, c->weight, c->weight_type, c->token, c->cfg->dim);
}
