/* classify.c - layer "classify": logits of the next token.
 *
 * Promise: s->logits = weight.x with weight [vocab_size, dim] (the kernel has already
 * applied the final rmsnorm to s->x).
 */
#include "bareflow/layer_abi.h"
#include "layer_math.h"

void bf_layer_entry(struct bf_layer_call *c)
{
    bf_matmul(c->s->logits, c->s->x, c->weight, c->cfg->dim, c->cfg->vocab_size);
}
