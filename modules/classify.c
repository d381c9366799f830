/* classify.c - layer "classify": logits of the next token.
 *
 * Promise: s->logits = weight.x with weight [vocab_size, dim] of type weight_type (the kernel has already
 * applied the final rmsnorm to s->x).
 */
#include "bareflow/layer_abi.h"
#include "layer_math.h"
#include "quant.h"

void bf_layer_entry(struct bf_layer_call *c)
{
    matmul_typed(c->s->logits, c->s->x, c->weight, c->weight_type, c->cfg->vocab_size, c->cfg->dim);
}
