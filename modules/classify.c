/* classify.c - layer "classify": logits of the next token.
 *
 * Promise: s->logits = weight.x with weight [vocab_size, dim] of type weight_type (the kernel has
 * already applied the final rmsnorm to s->x).  Split (layer ABI 3): phase 0 has vocab_size rows.
 */
#include "bareflow/layer_abi.h"
#include "layer_math.h"
#include "layer_split.h"
#include "quant.h"

void bf_layer_entry(struct bf_layer_call *c)
{
    int b, e;
    if (bf_split_range(c, 0, c->cfg->vocab_size, &b, &e))
        matmul_typed_rows(c->s->logits, c->s->x, c->weight, c->weight_type, c->cfg->dim, b, e);
}
