/* layer_abi.h - the one calling convention between the kernel and every layer module.
 *
 * Promise: every module file exports exactly one entry point, `bf_layer_entry`, with the
 * signature bf_layer_fn.  The kernel fills a bf_layer_call and calls the layer through its
 * dispatch slot; the layer reads only the fields its kind documents below and writes only
 * into the run state.  Layers of the split kinds may run on several cores at once (one chunk
 * each, see "Work split"): they keep no mutable state outside the run state.  Field order is part of the ABI: bump BF_LAYER_ABI_VERSION on change
 * (the module header records it and the loader rejects a mismatch).
 */
#ifndef BAREFLOW_LAYER_ABI_H
#define BAREFLOW_LAYER_ABI_H

#define BF_LAYER_ABI_VERSION 3

struct bf_config {            /* llama2.c's header, extended by the GGUF hyperparameters */
    int dim;                  /* transformer width */
    int hidden_dim;           /* SwiGLU inner width */
    int n_layers;             /* transformer blocks */
    int n_heads;              /* query heads */
    int n_kv_heads;           /* key/value heads (grouped-query attention) */
    int vocab_size;           /* always positive here */
    int seq_len;              /* positions the KV cache holds (the run's steps, not the model's context) */
    int head_dim;             /* width of one head; q is n_heads*head_dim, k/v n_kv_heads*head_dim */
    int rope_dim;             /* leading dims of each head that RoPE rotates (even, <= head_dim) */
    float rope_theta;         /* RoPE frequency base (llama2.c: 10000) */
    float rms_eps;            /* RMSNorm epsilon (llama2.c: 1e-5) */
};

/* A weight matrix [rows, cols] (row-major: out x in) stored as ggml_type `type` (quant.h):
 * each row is bf_row_bytes(type, cols) bytes, GGUF's block layout for the quantised types. */
struct bf_weight {
    const void *data;
    int type;                 /* BF_GGML_F32, F16, Q4_0, Q4_1 or Q8_0 */
    int reserved;             /* 0 */
};

struct bf_block_weights {     /* one transformer block, pointers into the weights file */
    const float *rms_att;     /* [dim] */
    struct bf_weight wq;      /* [n_heads*head_dim, dim] */
    struct bf_weight wk;      /* [n_kv_heads*head_dim, dim] */
    struct bf_weight wv;      /* [n_kv_heads*head_dim, dim] */
    struct bf_weight wo;      /* [dim, n_heads*head_dim] */
    const float *rms_ffn;     /* [dim] */
    struct bf_weight w1;      /* [hidden_dim, dim] (GGUF ffn_gate) */
    struct bf_weight w2;      /* [dim, hidden_dim] (GGUF ffn_down) */
    struct bf_weight w3;      /* [hidden_dim, dim] (GGUF ffn_up) */
};

struct bf_state {             /* activations, all allocated by the kernel */
    float *x;                 /* [dim] residual stream */
    float *xb;                /* [max(dim, n_heads*head_dim)] */
    float *xb2;               /* [dim] */
    float *hb;                /* [hidden_dim] */
    float *hb2;               /* [hidden_dim] */
    float *q;                 /* [n_heads*head_dim] */
    float *att;               /* [n_heads, seq_len] */
    float *logits;            /* [vocab_size] */
    float *key_cache;         /* [n_layers, seq_len, kv_dim] */
    float *value_cache;       /* [n_layers, seq_len, kv_dim] */
    float *probs;             /* [vocab_size] scratch for the sampler */
    int *indices;             /* [vocab_size] scratch for the sampler */
};

struct bf_layer_call {
    const struct bf_config *cfg;
    struct bf_state *s;
    const struct bf_block_weights *w;  /* current block (qkv, rope, attn, attnout, ffn) */
    int block;                /* block index, 0..n_layers-1 */
    int pos;                  /* position of the current token */
    int token;                /* embed: token id */
    float *out;               /* rmsnorm: destination */
    const float *in;          /* rmsnorm: source */
    const void *weight;       /* embed: token table; rmsnorm: gain (F32); classify: classifier */
    float temperature;        /* sampler: 0 = greedy */
    float topp;               /* sampler: nucleus mass, (0,1] */
    float coin;               /* sampler: uniform random in [0,1) drawn by the kernel */
    int result;               /* sampler: chosen token id (written by the layer) */
    int weight_type;          /* embed, classify: ggml_type of weight ([vocab_size, dim]) */
    /* the work split (docs/runtime.md "Several cores"): */
    int split;                /* 0: do the whole layer; 1: only units [begin, end) of phase `phase` */
    int phase;
    int begin, end;
};

typedef void (*bf_layer_fn)(struct bf_layer_call *call);

/* Layer kinds and what each reads/writes:
 *   embed    : s->x = row `token` of weight (dequantised)
 *   rmsnorm  : out = rmsnorm(in) * weight   (eps cfg->rms_eps; out may equal in)
 *   qkv      : s->q = wq.xb; key_cache/value_cache[block][pos] = wk.xb / wv.xb
 *   rope     : rotate s->q and key_cache[block][pos] by pos (theta cfg->rope_theta, pairs (2i,2i+1)
 *              among the first cfg->rope_dim dims of each head)
 *   attn     : per head h: softmax(q_h . k_t / sqrt(head_dim), t<=pos) weighted sum of v_t into s->xb,
 *              kv head = h / (n_heads / n_kv_heads)
 *   attnout  : s->xb2 = wo.xb; s->x += s->xb2
 *   ffn      : s->xb = rmsnorm already done by the kernel; hb = silu(w1.xb) * (w3.xb); s->x += w2.hb
 *   classify : s->logits = weight.x   (weight is [vocab_size, dim])
 *   sampler  : result = argmax(logits) if temperature == 0, else top-p over softmax(logits/temperature)
 *              using coin; ties resolve to the lowest index.
 *
 * Work split (ABI 3; typed weights came with it).  The kinds below split their work into phases of independent units; with
 * split = 1 a call does only units [begin, end) of one phase, writing only those units' outputs,
 * with arithmetic identical to the whole call (each output depends on its unit alone), so any
 * split gives bit-identical results.  The kernel runs a phase's chunks on several cores at once
 * and starts the next phase only when every chunk of the previous one is done.  Other kinds are
 * always called whole (split = 0), and split = 0 means "every phase, every unit, in order".
 *   qkv      : phase 0, dim + 2*kv_dim rows: rows of wq (-> q), then wk, then wv (-> the caches)
 *   attn     : phase 0, n_heads heads (scores in att[h], output in xb[h*head_size ..])
 *   attnout  : phase 0, dim rows: xb2[i] = wo_i . xb; x[i] += xb2[i]
 *   ffn      : phase 0, hidden_dim rows: hb[i] = silu(w1_i . xb) * (w3_i . xb)
 *              phase 1, dim rows: xb[i] = w2_i . hb; x[i] += xb[i]
 *   classify : phase 0, vocab_size rows: logits[i] = weight_i . x
 */
#define BF_LAYER_ENTRY_SYMBOL "bf_layer_entry"

#endif
