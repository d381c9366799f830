/* inference.c - llama2.c's forward pass and generate loop, every layer through bf_call.
 *
 * Promise: one forward pass makes exactly the calls of the shared constants (embed 1, rmsnorm
 * 2*n_layers+1, qkv/rope/attn/attnout/ffn n_layers, classify 1) in llama2.c's order; the loop
 * forces the prompt tokens, calls the sampler (after drawing one coin from the xorshift RNG)
 * only where the next token is not forced, stops after `steps` positions or when the
 * tokenizer's stop token (eos/eot; BOS for llama2.c) is sampled, and streams each decoded
 * piece to the console as soon as it completes a UTF-8 character.  A sampler
 * result outside the vocabulary stops the run instead of indexing past the embedding.
 */
#include <string.h>

#include "bareflow/platform.h"
#include "bareflow/runtime.h"
#include "rt.h"

static struct bf_state state;

static void forward(const struct bf_model *m, int token, int pos)
{
    const struct bf_config *c = &m->cfg;
    struct bf_layer_call call;
    memset(&call, 0, sizeof call);
    call.cfg = c;
    call.s = &state;
    call.pos = pos;

    call.token = token;
    call.weight = m->token_embedding.data;
    call.weight_type = m->token_embedding.type;
    bf_call(BF_EMBED, &call);
    for (int l = 0; l < c->n_layers; l++) {
        const struct bf_block_weights *w = &m->blocks[l];
        call.w = w;
        call.block = l;
        call.in = state.x;
        call.out = state.xb;
        call.weight = w->rms_att;
        bf_call(BF_RMSNORM, &call);
        bf_call(BF_QKV, &call);
        bf_call(BF_ROPE, &call);
        bf_call(BF_ATTN, &call);
        bf_call(BF_ATTNOUT, &call);
        call.in = state.x;
        call.out = state.xb;
        call.weight = w->rms_ffn;
        bf_call(BF_RMSNORM, &call);
        bf_call(BF_FFN, &call);
    }
    call.in = state.x;
    call.out = state.x;
    call.weight = m->rms_final;
    call.weight_type = 0;
    bf_call(BF_RMSNORM, &call);
    call.weight = m->wcls.data;
    call.weight_type = m->wcls.type;
    bf_call(BF_CLASSIFY, &call);
}

/* xorshift64* exactly as the shared constants define it (the numpy reference mirrors it). */
static uint32_t next_u32(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (uint32_t)((*s * 0x2545F4914F6CDD1Dull) >> 32);
}

static int sample(const struct bf_model *m, const struct bf_run_config *rc, uint64_t *rng)
{
    struct bf_layer_call call;
    memset(&call, 0, sizeof call);
    call.cfg = &m->cfg;
    call.s = &state;
    call.temperature = rc->temperature;
    call.topp = rc->topp;
    call.coin = (float)(next_u32(rng) >> 8) / 16777216.0f;
    call.result = -1;
    bf_call(BF_SAMPLER, &call);
    if (call.result < 0 || call.result >= m->cfg.vocab_size)
        bf_panic("layer sampler (tier %s) returned token %d, outside 0..%d",
                 bf_tier_name(bf_layer_stats(BF_SAMPLER)->tier), call.result, m->cfg.vocab_size - 1);
    return call.result;
}

/* The console gets what llama2.c's safe_printf prints (lone control bytes are dropped), and
 * only whole UTF-8 characters: a character split across tokens waits for its last byte. */
static struct bf_utf8_stream console;

static void stream(const char *piece, size_t len)
{
    unsigned char b = len == 1 ? (unsigned char)piece[0] : 0;
    if (len == 1 && (b < 0x20 || b == 0x7F) && b != '\n' && b != '\t' && b != '\r')
        return;
    bf_utf8_stream_write(&console, piece, len);
}

/* The text the tokenizer sees: the prompt, inside the chat wrapping when the config has one. */
static const char *prompt_text(const struct bf_run_config *rc)
{
    static char text[sizeof rc->chat_before + sizeof rc->prompt + sizeof rc->chat_after];
    size_t a = strlen(rc->chat_before), b = strlen(rc->prompt), c = strlen(rc->chat_after);
    memcpy(text, rc->chat_before, a);
    memcpy(text + a, rc->prompt, b);
    memcpy(text + a + b, rc->chat_after, c + 1);
    return text;
}

void bf_generate(const struct bf_model *m, const struct bf_tokenizer *t, const struct bf_run_config *rc,
                 struct bf_run *run)
{
    bf_state_alloc(&state, &m->cfg);
    run->prompt_tokens = bf_alloc(BF_MAX_PROMPT_TOKENS * sizeof(int), 64, "prompt tokens");
    run->n_prompt = bf_encode(t, prompt_text(rc), 1, run->prompt_tokens, BF_MAX_PROMPT_TOKENS);
    if (run->n_prompt == 0)
        bf_panic("BAREFLOW.CFG: the prompt is empty and the tokenizer adds no BOS: there is no token to start "
                 "from");
    run->tokens = bf_alloc((size_t)rc->steps * sizeof(int), 64, "generated tokens");
    run->text = bf_alloc((size_t)rc->steps * (size_t)t->max_piece_len * 4 + 1, 1, "generated text");
    run->n_tokens = 0;
    run->text_len = 0;
    run->first_token_at = 0;

    uint64_t rng = rc->seed ? rc->seed : 0x853c49e6748fea9bull;
    int token = run->prompt_tokens[0], pos = 0;
    if (token != t->bos) {                 /* no BOS (add_bos false): the first piece is prompt text */
        size_t len;
        const char *piece = bf_decode(t, t->bos, token, &len);
        stream(piece, len);
    }
    uint64_t start = platform_cycles();
    while (pos < rc->steps) {
        forward(m, token, pos);
        int forced = pos < run->n_prompt - 1;
        int next = forced ? run->prompt_tokens[pos + 1] : sample(m, rc, &rng);
        pos++;
        if (!forced && bf_is_stop(t, next))
            break;
        size_t len;
        const char *piece = bf_decode(t, token, next, &len);
        stream(piece, len);
        if (!forced) {
            if (run->n_tokens == 0)
                run->first_token_at = platform_cycles();
            run->tokens[run->n_tokens++] = next;
            memcpy(run->text + run->text_len, piece, len);
            run->text_len += len;
        }
        token = next;
    }
    run->loop_cycles = platform_cycles() - start;
    run->text[run->text_len] = 0;
    bf_utf8_flush(&console);
    bf_write("\n", 1);
}
