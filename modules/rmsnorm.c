/* rmsnorm.c - layer "rmsnorm": out = in / sqrt(mean(in^2) + rms_eps) * weight over dim.
 *
 * Promise: reads c->in and c->weight, writes c->out (which may be c->in).
 */
#include "bareflow/layer_abi.h"
#include "layer_math.h"

void bf_layer_entry(struct bf_layer_call *c)
{
    bf_rmsnorm(c->out, c->in, (const float *)c->weight, c->cfg->dim, c->cfg->rms_eps);
}
