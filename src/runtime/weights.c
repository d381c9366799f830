/* weights.c - the BareFlow weights file (docs/weights-format.md): typed tensors read in place.
 *
 * Promise: bf_weights_load accepts a file only when its CRC-32 over the header and tensor table
 * matches, every hyperparameter is positive, consistent and under the same limits as a llama2.c
 * header, and the table lists exactly the tensors the config implies, in the documented order,
 * each of a type the layer modules run (norms F32 only) with the shape the config implies, at a
 * 64-byte aligned offset after the previous tensor and inside the file, the last one ending at
 * the file's end.  Anything else stops the run naming the file, the tensor and the field.  The
 * weights stay where the file was read: quantised blocks are never expanded.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "bareflow/runtime.h"
#include "bareflow/weight_types.h"
#include "rt.h"

#define HEADER 64
#define ENTRY 32
#define ALIGN 64
#define NO_BLOCK 0xFFFFFFFFu
#define FLAG_SHARED 1u

enum kind { TOKEN_EMBD, OUTPUT_NORM, OUTPUT, ATTN_NORM, ATTN_Q, ATTN_K, ATTN_V, ATTN_OUTPUT, FFN_NORM,
            FFN_GATE, FFN_DOWN, FFN_UP, N_KINDS };
static const char *const kind_names[N_KINDS] = {
    "token_embd", "output_norm", "output", "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
    "ffn_norm", "ffn_gate", "ffn_down", "ffn_up",
};

struct ctx {
    const char *path;
    const uint8_t *data;
    size_t size;
    uint64_t next;            /* first byte the next tensor may occupy */
    uint32_t index;           /* table entry being checked */
};

static void check_int(const struct ctx *x, const char *field, int32_t v, int32_t limit)
{
    if (v <= 0 || v > limit)
        bf_panic("weights %s: header %s = %d out of range 1..%d", x->path, field, v, limit);
}

static const char *type_name(uint32_t t)
{
    switch (t) {
    case BF_GGML_F32: return "F32";
    case BF_GGML_F16: return "F16";
    case BF_GGML_Q4_0: return "Q4_0";
    case BF_GGML_Q4_1: return "Q4_1";
    case BF_GGML_Q8_0: return "Q8_0";
    default: return 0;
    }
}

/* Check table entry x->index against what the config implies; returns the tensor's data. */
static const void *tensor(struct ctx *x, enum kind k, uint32_t block, uint32_t rows, uint32_t cols,
                          int norm, int *type_out)
{
    const uint8_t *e = x->data + HEADER + (size_t)x->index * ENTRY;
    uint32_t kind = bf_le32(e), blk = bf_le32(e + 4), type = bf_le32(e + 8);
    uint32_t r = bf_le32(e + 12), c = bf_le32(e + 16);
    uint64_t off = bf_le64(e + 24);
    char name[32];
    if (block == NO_BLOCK)
        snprintf(name, sizeof name, "%s", kind_names[k]);
    else
        snprintf(name, sizeof name, "blk.%u.%s", block, kind_names[k]);
    if (kind != (uint32_t)k || blk != block)
        bf_panic("weights %s: tensor table entry %u is kind %u block %u, expected %s", x->path, x->index,
                 kind, blk, name);
    if (!type_name(type) || (norm && type != BF_GGML_F32))
        bf_panic("weights %s: tensor %s has ggml type %u; the kernel runs %s", x->path, name, type,
                 norm ? "F32 for norms" : "F32, F16, Q4_0, Q4_1 and Q8_0");
    if (r != rows || c != cols)
        bf_panic("weights %s: tensor %s is [%u, %u], the header implies [%u, %u]", x->path, name, r, c, rows,
                 cols);
    if (bf_row_bytes((int)type, (int)cols) == 0)
        bf_panic("weights %s: tensor %s of type %s has %u columns, not a multiple of %d", x->path, name,
                 type_name(type), cols, BF_QK);
    uint64_t bytes = (uint64_t)rows * bf_row_bytes((int)type, (int)cols);
    if (off % ALIGN)
        bf_panic("weights %s: tensor %s offset %llu is not %d-byte aligned", x->path, name,
                 (unsigned long long)off, ALIGN);
    if (off < x->next)
        bf_panic("weights %s: tensor %s offset %llu overlaps what precedes it (ends at %llu)", x->path, name,
                 (unsigned long long)off, (unsigned long long)x->next);
    if (off > x->size || bytes > x->size - off)
        bf_panic("weights %s: tensor %s (%llu bytes at %llu) runs past the end of the %zu-byte file", x->path,
                 name, (unsigned long long)bytes, (unsigned long long)off, x->size);
    x->next = off + bytes;
    x->index++;
    *type_out = (int)type;
    return x->data + off;
}

static struct bf_weight matrix(struct ctx *x, enum kind k, uint32_t block, int rows, int cols)
{
    struct bf_weight w = {0, 0, 0};
    w.data = tensor(x, k, block, (uint32_t)rows, (uint32_t)cols, 0, &w.type);
    return w;
}

static const float *norm(struct ctx *x, enum kind k, uint32_t block, int dim)
{
    int type;
    return tensor(x, k, block, 1, (uint32_t)dim, 1, &type);
}

static float header_float(const uint8_t *p)
{
    union { uint32_t u; float f; } v = { bf_le32(p) };
    return v.f;
}

void bf_weights_load(struct bf_model *m, const uint8_t *data, size_t size, const char *path)
{
    /* Offsets are aligned relative to the file; a handed-over file may sit anywhere, so copy it. */
    if ((uintptr_t)data % ALIGN) {
        uint8_t *copy = bf_alloc(size, ALIGN, "weights file");
        memcpy(copy, data, size);
        data = copy;
    }
    struct ctx x = { path, data, size, 0, 0 };
    struct bf_config *c = &m->cfg;
    m->format = "BFWT";
    if (size < HEADER)
        bf_panic("weights %s: %zu bytes, shorter than the %d-byte header", path, size, HEADER);
    uint32_t version = bf_le32(data + 4), n = bf_le32(data + 12), flags = bf_le32(data + 16);
    if (version != 1)
        bf_panic("weights %s: header version %u, this kernel reads version 1", path, version);
    if (n > 3 + 9 * 1024u || HEADER + (uint64_t)n * ENTRY > size)
        bf_panic("weights %s: header n_tensors = %u does not fit the %zu-byte file", path, n, size);
    size_t table_end = HEADER + (size_t)n * ENTRY;
    uint32_t want = bf_le32(data + 8), got = bf_crc32(0, data + 12, table_end - 12);
    if (want != got)
        bf_panic("weights %s: header checksum 0x%08x does not match the header and tensor table (0x%08x)",
                 path, want, got);
    if (flags & ~FLAG_SHARED)
        bf_panic("weights %s: header flags 0x%x has unknown bits", path, flags);

    int32_t h[9];
    for (int i = 0; i < 9; i++)
        h[i] = (int32_t)bf_le32(data + 20 + 4 * i);
    check_int(&x, "dim", h[0], 1 << 16);
    check_int(&x, "hidden_dim", h[1], 1 << 18);
    check_int(&x, "n_layers", h[2], 1024);
    check_int(&x, "n_heads", h[3], 1024);
    check_int(&x, "n_kv_heads", h[4], h[3]);
    check_int(&x, "vocab_size", h[5], 1 << 20);
    check_int(&x, "seq_len", h[6], 1 << 20);
    check_int(&x, "head_dim", h[7], 1 << 12);
    check_int(&x, "rope_dim", h[8], h[7]);
    float theta = header_float(data + 56), eps = header_float(data + 60);
    if (h[5] < 2)
        bf_panic("weights %s: header vocab_size = %d leaves no room for BOS (token id 1)", path, h[5]);
    if (h[3] % h[4])
        bf_panic("weights %s: header n_heads %d is not divisible by n_kv_heads %d", path, h[3], h[4]);
    if (h[7] % 2 || h[8] % 2)
        bf_panic("weights %s: header head_dim %d / rope_dim %d must be even; RoPE rotates pairs", path, h[7],
                 h[8]);
    if (!(theta > 0.0f && theta < 1e30f) || !(eps > 0.0f && eps < 1.0f))
        bf_panic("weights %s: header rope_theta / rms_eps out of range (must be positive and finite)", path);
    *c = (struct bf_config){h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], theta, eps};
    m->shared_classifier = (flags & FLAG_SHARED) != 0;
    uint32_t expect = (m->shared_classifier ? 2u : 3u) + 9u * (uint32_t)c->n_layers;
    if (n != expect)
        bf_panic("weights %s: header n_tensors = %u, the config implies %u", path, n, expect);

    x.next = table_end;
    int q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
    m->token_embedding = matrix(&x, TOKEN_EMBD, NO_BLOCK, c->vocab_size, c->dim);
    m->rms_final = norm(&x, OUTPUT_NORM, NO_BLOCK, c->dim);
    m->wcls = m->shared_classifier ? m->token_embedding : matrix(&x, OUTPUT, NO_BLOCK, c->vocab_size, c->dim);
    m->blocks = bf_alloc((size_t)c->n_layers * sizeof *m->blocks, 64, "block weight table");
    for (uint32_t l = 0; l < (uint32_t)c->n_layers; l++) {
        struct bf_block_weights *b = &m->blocks[l];
        b->rms_att = norm(&x, ATTN_NORM, l, c->dim);
        b->wq = matrix(&x, ATTN_Q, l, q_dim, c->dim);
        b->wk = matrix(&x, ATTN_K, l, kv_dim, c->dim);
        b->wv = matrix(&x, ATTN_V, l, kv_dim, c->dim);
        b->wo = matrix(&x, ATTN_OUTPUT, l, c->dim, q_dim);
        b->rms_ffn = norm(&x, FFN_NORM, l, c->dim);
        b->w1 = matrix(&x, FFN_GATE, l, c->hidden_dim, c->dim);
        b->w2 = matrix(&x, FFN_DOWN, l, c->dim, c->hidden_dim);
        b->w3 = matrix(&x, FFN_UP, l, c->hidden_dim, c->dim);
    }
    if (x.next != size)
        bf_panic("weights %s: the last tensor ends at byte %llu, the file has %zu", path,
                 (unsigned long long)x.next, size);
}
