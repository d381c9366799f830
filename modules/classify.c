/* classify.c - layer "classify": logits of the next token.
 *
 * Promise: s->logits = weight.x with weight [vocab_size, dim] (the kernel has already
 * applied the final rmsnorm to s->x).  Split (layer ABI 2): phase 0 has vocab_size rows.
 */
#include "bareflow/layer_abi.h"
#include "layer_math.h"
#include "layer_split.h"

void bf_layer_entry(struct bf_layer_call *c)
{
    int dim = c->cfg->dim;
    int b, e;
    if (bf_split_range(c, 0, c->cfg->vocab_size, &b, &e))
        bf_matmul(c->s->logits + b, c->s->x, c->weight + (size_t)b * (size_t)dim, dim, e - b);
}
