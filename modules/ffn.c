/* ffn.c - layer "ffn": SwiGLU feed-forward block plus residual.
 *
 * Promise: with s->xb already normalised by the kernel, hb = silu(w1.xb) * (w3.xb)
 * where silu(v) = v / (1 + e^-v); then s->xb = w2.hb and s->x += s->xb (as llama2.c;
 * hb, hb2 and xb are scratch afterwards).
 */
#include "bareflow/layer_abi.h"
#include "layer_math.h"
#include "quant.h"

void bf_layer_entry(struct bf_layer_call *c)
{
    const struct bf_config *p = c->cfg;
    struct bf_state *s = c->s;
    const struct bf_block_weights *w = c->w;
    int dim = p->dim;
    int hidden = p->hidden_dim;
    matmul_typed(s->hb, s->xb, w->w1.data, w->w1.type, hidden, dim);
    matmul_typed(s->hb2, s->xb, w->w3.data, w->w3.type, hidden, dim);
    for (int i = 0; i < hidden; i++) {
        float val = s->hb[i];
        val *= 1.0f / (1.0f + expf(-val));
        val *= s->hb2[i];
        s->hb[i] = val;
    }
    matmul_typed(s->xb, s->hb, w->w2.data, w->w2.type, dim, hidden);
    for (int i = 0; i < dim; i++)
        s->x[i] += s->xb[i];
}
