/* model.c - reads /MODEL.BIN (a llama2.c checkpoint, or a BareFlow weights file handed to
 * weights.c when it starts with BF_WEIGHTS_MAGIC) and lays out the activations.
 *
 * Promise: after bf_model_load every header field is positive and consistent (dim divisible by
 * n_heads, n_heads by n_kv_heads, even head size, a vocabulary that holds BOS (id 1), each
 * size under a limit that keeps all offsets inside 64 bits), the file is exactly as long as
 * the header implies, and every weight pointer lies inside the file.  The legacy RoPE tables
 * are skipped: the rope layer computes its own.
 */
#include <stdint.h>
#include <string.h>

#include "bareflow/runtime.h"
#include "rt.h"

#define MODEL_PATH "/MODEL.BIN"
#define HEADER_BYTES 28

static struct bf_weight f32(const float *p)
{
    return (struct bf_weight){ p, 0, 0 };   /* BF_GGML_F32 */
}

static void check_dim(const char *field, int value, int limit)
{
    if (value <= 0)
        bf_panic("model %s: %s = %d, must be positive", MODEL_PATH, field, value);
    if (value > limit)
        bf_panic("model %s: %s = %d exceeds the limit %d", MODEL_PATH, field, value, limit);
}

void bf_model_load(struct bf_model *m)
{
    size_t size;
    const uint8_t *data = bf_read_file(MODEL_PATH, &size);
    struct bf_config *c = &m->cfg;

    memset(m, 0, sizeof *m);
    if (size >= 4 && memcmp(data, BF_WEIGHTS_MAGIC, 4) == 0) {
        bf_weights_load(m, data, size, MODEL_PATH);
        return;
    }
    m->format = "llama2.c";
    if (size < HEADER_BYTES)
        bf_panic("model %s: %zu bytes, shorter than the %d-byte header", MODEL_PATH, size, HEADER_BYTES);
    int32_t h[7];
    for (int i = 0; i < 7; i++)
        h[i] = (int32_t)bf_le32(data + 4 * i);
    /* The limits are the build's (bareflow_plugins/model.py MAXIMA): both accept the same headers. */
    check_dim("dim", h[0], 16384);
    check_dim("hidden_dim", h[1], 65536);
    check_dim("n_layers", h[2], 256);
    check_dim("n_heads", h[3], 1024);
    check_dim("n_kv_heads", h[4], 1024);
    if (h[5] == INT32_MIN)
        bf_panic("model %s: vocab_size = %d exceeds the limit", MODEL_PATH, h[5]);
    check_dim("vocab_size (absolute value)", h[5] < 0 ? -h[5] : h[5], 1 << 20);
    /* The generate loop starts every sequence with BOS (id 1), so id 1 must exist. */
    if (h[5] == 1 || h[5] == -1)
        bf_panic("model %s: vocab_size = %d leaves no room for BOS (token id 1)", MODEL_PATH, h[5]);
    check_dim("seq_len", h[6], 65536);         /* the build's MAXIMA["seq_len"] */
    *c = (struct bf_config){h[0], h[1], h[2], h[3], h[4], h[5] < 0 ? -h[5] : h[5], h[6],
                            h[0] / h[3], h[0] / h[3], 10000.0f, 1e-5f};
    m->shared_classifier = h[5] > 0;
    if (c->dim % c->n_heads)
        bf_panic("model %s: dim %d is not divisible by n_heads %d", MODEL_PATH, c->dim, c->n_heads);
    if (c->n_heads % c->n_kv_heads)
        bf_panic("model %s: n_heads %d is not divisible by n_kv_heads %d", MODEL_PATH, c->n_heads, c->n_kv_heads);
    uint64_t dim = (uint64_t)c->dim, hid = (uint64_t)c->hidden_dim, L = (uint64_t)c->n_layers;
    uint64_t vocab = (uint64_t)c->vocab_size, head = dim / (uint64_t)c->n_heads;
    uint64_t kv = dim * (uint64_t)c->n_kv_heads / (uint64_t)c->n_heads;
    if (head % 2)
        bf_panic("model %s: head size %llu (dim / n_heads) is odd; RoPE rotates pairs", MODEL_PATH,
                 (unsigned long long)head);

    /* Float counts in file order, llama2.c's layout: each weight kind for all blocks, then the next. */
    uint64_t n_emb = vocab * dim, n_rms = L * dim, n_wq = L * dim * dim, n_wk = L * kv * dim;
    uint64_t n_wo = L * dim * dim, n_w1 = L * hid * dim, n_rope = (uint64_t)c->seq_len * head;
    uint64_t floats = n_emb + 2 * n_rms + n_wq + 2 * n_wk + n_wo + 3 * n_w1 + dim + n_rope;
    if (!m->shared_classifier)
        floats += n_emb;
    uint64_t expect = HEADER_BYTES + 4 * floats;
    if ((uint64_t)size != expect)
        bf_panic("model %s: file is %zu bytes, the header (dim %d, hidden_dim %d, n_layers %d, vocab %d, seq_len %d, "
                 "%s classifier) implies %llu", MODEL_PATH, size, c->dim, c->hidden_dim, c->n_layers, c->vocab_size,
                 c->seq_len, m->shared_classifier ? "shared" : "separate", (unsigned long long)expect);

    /* Floats must be 4-byte aligned; a handed-over file may sit anywhere, so copy it if not. */
    const float *w = (const float *)(data + HEADER_BYTES);
    if ((uintptr_t)w % 4) {
        float *copy = bf_alloc(size - HEADER_BYTES, 64, "model weights");
        memcpy(copy, data + HEADER_BYTES, size - HEADER_BYTES);
        w = copy;
    }
    m->token_embedding = f32(w);
    const float *rms_att = w + n_emb, *wq = rms_att + n_rms, *wk = wq + n_wq, *wv = wk + n_wk;
    const float *wo = wv + n_wk, *rms_ffn = wo + n_wo, *w1 = rms_ffn + n_rms, *w2 = w1 + n_w1;
    const float *w3 = w2 + n_w1;
    m->rms_final = w3 + n_w1;
    m->wcls = f32(m->shared_classifier ? w : m->rms_final + dim + n_rope);
    m->blocks = bf_alloc(L * sizeof *m->blocks, 64, "block weight table");
    for (uint64_t l = 0; l < L; l++) {
        struct bf_block_weights *b = &m->blocks[l];
        b->rms_att = rms_att + l * dim;
        b->wq = f32(wq + l * dim * dim);
        b->wk = f32(wk + l * kv * dim);
        b->wv = f32(wv + l * kv * dim);
        b->wo = f32(wo + l * dim * dim);
        b->rms_ffn = rms_ffn + l * dim;
        b->w1 = f32(w1 + l * hid * dim);
        b->w2 = f32(w2 + l * dim * hid);
        b->w3 = f32(w3 + l * hid * dim);
    }
}

static float *floats(uint64_t n, const char *what)
{
    return bf_alloc((size_t)(n * sizeof(float)), 64, what);
}

void bf_state_alloc(struct bf_state *s, const struct bf_config *c)
{
    uint64_t kv = (uint64_t)c->head_dim * (uint64_t)c->n_kv_heads;
    uint64_t q_dim = (uint64_t)c->head_dim * (uint64_t)c->n_heads;
    uint64_t wide = q_dim > (uint64_t)c->dim ? q_dim : (uint64_t)c->dim;
    uint64_t cache = (uint64_t)c->n_layers * (uint64_t)c->seq_len * kv;
    s->x = floats(c->dim, "activation x");
    s->xb = floats(wide, "activation xb");
    s->xb2 = floats(c->dim, "activation xb2");
    s->hb = floats(c->hidden_dim, "activation hb");
    s->hb2 = floats(c->hidden_dim, "activation hb2");
    s->q = floats(q_dim, "activation q");
    s->att = floats((uint64_t)c->n_heads * (uint64_t)c->seq_len, "attention scores");
    s->logits = floats(c->vocab_size, "logits");
    s->key_cache = floats(cache, "key cache");
    s->value_cache = floats(cache, "value cache");
    s->probs = floats(c->vocab_size, "sampler probabilities");
    s->indices = bf_alloc((size_t)c->vocab_size * sizeof(int), 64, "sampler indices");
}
