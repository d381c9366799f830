/* ffn.c - layer "ffn": SwiGLU feed-forward block plus residual.
 *
 * Promise: with s->xb already normalised by the kernel, hb = silu(w1.xb) * (w3.xb)
 * where silu(v) = v / (1 + e^-v); then s->xb = w2.hb and s->x += s->xb (as llama2.c;
 * hb, hb2 and xb are scratch afterwards).  Split (layer ABI 3): phase 0 has hidden_dim rows
 * (hb[i] for each), phase 1 has dim rows (xb[i] and x[i] for each); phase 1 reads all of hb,
 * so the kernel starts it only when every chunk of phase 0 is done.
 */
#include "bareflow/layer_abi.h"
#include "layer_math.h"
#include "layer_split.h"
#include "quant.h"

void bf_layer_entry(struct bf_layer_call *c)
{
    const struct bf_config *p = c->cfg;
    struct bf_state *s = c->s;
    const struct bf_block_weights *w = c->w;
    int dim = p->dim;
    int hidden = p->hidden_dim;
    int b, e;
    if (bf_split_range(c, 0, hidden, &b, &e)) {
        matmul_typed_rows(s->hb, s->xb, w->w1.data, w->w1.type, dim, b, e);
        matmul_typed_rows(s->hb2, s->xb, w->w3.data, w->w3.type, dim, b, e);
        for (int i = b; i < e; i++) {
            float val = s->hb[i];
            val *= 1.0f / (1.0f + expf(-val));
            val *= s->hb2[i];
            s->hb[i] = val;
        }
    }
    if (bf_split_range(c, 1, dim, &b, &e)) {
        matmul_typed_rows(s->xb, s->hb, w->w2.data, w->w2.type, hidden, b, e);
        for (int i = b; i < e; i++)
            s->x[i] += s->xb[i];
    }
}
