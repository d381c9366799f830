/* tokenizer.c - prompt text to token ids and token ids to bytes, for every kind of
 * /TOKENIZR.BIN (docs/tokenizer-format.md).
 *
 * Promise: the text must be UTF-8 (else the run stops naming the byte); ids are only ever
 * below n_tokens.  The algorithms are llama.cpp's (src/llama-vocab.cpp), step for step, so its
 * test vectors hold exactly:
 *  - special tokens: with parse_special, every control/user-defined/unknown piece, longest
 *    first, splits the remaining text fragments at its occurrences and stands for its id;
 *  - llama2c: llama2.c's encode (BOS, dummy " ", characters or byte fallback byte+3, best
 *    score pair merging, leftmost on ties);
 *  - SentencePiece: a space before each fragment that follows BOS or a special token when
 *    add_space_prefix, " " -> U+2581, highest-score pair merging over characters (leftmost
 *    on ties), leftovers as byte tokens;
 *  - GPT-2: tokenizer_bpe.c.
 * Decoding prints nothing for control and unused tokens, the byte of a byte token, U+2581 as
 * a space (and drops the first space after BOS), GPT-2 pieces through byte<->unicode.
 */
#include <string.h>

#include "bareflow/runtime.h"
#include "rt.h"
#include "tokenizer.h"

#define TOK_PATH "/TOKENIZR.BIN"

void bf_tok_emit(int *out, int *n, int cap, int id)
{
    if (*n >= cap)
        bf_panic("tokenizer %s: the prompt needs more than %d tokens", TOK_PATH, cap);
    if (id < 0)
        return;                       /* llama.cpp drops bytes that have no token */
    out[(*n)++] = id;
}

void bf_tok_emit_symbols(const struct bf_tokenizer *t, const struct bf_tok_work *w, int ns,
                         const int *byte_ids, int *out, int *n, int cap)
{
    for (int i = ns ? 0 : -1; i != -1; i = w->sym[i].next) {
        const uint8_t *s = w->text + w->sym[i].start;
        int id = bf_tok_lookup(t, s, (size_t)w->sym[i].len);
        if (id >= 0) {
            bf_tok_emit(out, n, cap, id);
            continue;
        }
        for (int k = 0; k < w->sym[i].len; k++)
            bf_tok_emit(out, n, cap, byte_ids ? byte_ids[s[k]] : bf_tok_lookup(t, s + k, 1));
    }
}

/* Binary min-heap on key (ties cannot matter: keys carry the left index). */
void bf_tok_heap_push(struct bf_tok_work *w, uint64_t key, int left, int right, int size)
{
    int i = w->n_heap++;
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (w->heap[parent].key <= key)
            break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = (struct bf_tok_bigram){key, left, right, size};
}

int bf_tok_heap_pop(struct bf_tok_work *w, struct bf_tok_bigram *out)
{
    if (!w->n_heap)
        return 0;
    *out = w->heap[0];
    struct bf_tok_bigram last = w->heap[--w->n_heap];
    int i = 0, n = w->n_heap;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && w->heap[c + 1].key < w->heap[c].key)
            c++;
        if (last.key <= w->heap[c].key)
            break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n)
        w->heap[i] = last;
    return 1;
}

int bf_tok_symbols(struct bf_tok_work *w, int m)
{
    int ns = 0;
    for (int i = 0; i < m;) {
        int l = (int)bf_utf8_lead_len(w->text[i]);
        if (l > m - i)
            l = m - i;
        w->sym[ns] = (struct bf_tok_symbol){i, l, ns - 1, i + l == m ? -1 : ns + 1};
        ns++;
        i += l;
    }
    return ns;
}

void bf_tok_join(struct bf_tok_work *w, int left, int right)
{
    struct bf_tok_symbol *l = &w->sym[left], *r = &w->sym[right];
    l->len += r->len;
    r->len = 0;
    l->next = r->next;
    if (r->next >= 0)
        w->sym[r->next].prev = left;
}

/* A float's order as an unsigned integer (larger float -> larger integer). */
static uint32_t float_order(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

/* ------------------------------------------------------------------ SentencePiece */

static void spm_add(const struct bf_tokenizer *t, struct bf_tok_work *w, int left, int right)
{
    if (left < 0 || right < 0)
        return;
    int size = w->sym[left].len + w->sym[right].len;
    int id = bf_tok_lookup(t, w->text + w->sym[left].start, (size_t)size);
    if (id < 0)
        return;
    /* llama.cpp pops the highest score first, then the smallest left index. */
    uint64_t key = (uint64_t)(~float_order(t->scores[id])) << 32 | (uint32_t)left;
    bf_tok_heap_push(w, key, left, right, size);
}

static void spm(const struct bf_tokenizer *t, struct bf_tok_work *w, const uint8_t *frag, size_t len, int prefix,
                int *out, int *n, int cap)
{
    size_t m = 0;
    if (prefix) {
        memcpy(w->text, "\xE2\x96\x81", 3);
        m = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (frag[i] == ' ') {
            memcpy(w->text + m, "\xE2\x96\x81", 3);
            m += 3;
        } else {
            w->text[m++] = frag[i];
        }
    }
    int ns = bf_tok_symbols(w, (int)m);
    w->n_heap = 0;
    for (int i = 1; i < ns; i++)
        spm_add(t, w, i - 1, i);
    struct bf_tok_bigram b;
    while (bf_tok_heap_pop(w, &b)) {
        struct bf_tok_symbol *l = &w->sym[b.left], *r = &w->sym[b.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != b.size)
            continue;
        bf_tok_join(w, b.left, b.right);
        spm_add(t, w, l->prev, b.left);
        spm_add(t, w, b.left, l->next);
    }
    bf_tok_emit_symbols(t, w, ns, t->byte_ids, out, n, cap);
}

/* ------------------------------------------------------------------ llama2.c */

static int llama2c(const struct bf_tokenizer *t, const uint8_t *text, size_t len, int *out, int cap)
{
    int n = 0;
    bf_tok_emit(out, &n, cap, t->bos);
    if (len) {
        if (t->space_id < 0)
            bf_panic("tokenizer %s: no \" \" piece for the dummy prefix of a non-empty prompt", TOK_PATH);
        bf_tok_emit(out, &n, cap, t->space_id);
    }
    for (size_t i = 0; i < len;) {
        size_t l = bf_utf8_lead_len(text[i]);
        int id = bf_tok_lookup(t, text + i, l);
        if (id >= 0) {
            bf_tok_emit(out, &n, cap, id);
        } else {
            for (size_t k = 0; k < l; k++) {
                int fb = text[i + k] + 3;
                if (fb >= t->n_tokens)
                    bf_panic("tokenizer %s: prompt byte 0x%02x has no piece and its byte-fallback id %d is not "
                             "below the %d tokens", TOK_PATH, text[i + k], fb, t->n_tokens);
                bf_tok_emit(out, &n, cap, fb);
            }
        }
        i += l;
    }
    static uint8_t buf[2 * 1024];
    for (;;) {
        float best = -1e10f;
        int best_id = -1, best_at = -1;
        for (int i = 0; i + 1 < n; i++) {
            size_t a = t->lengths[out[i]], b = t->lengths[out[i + 1]];
            memcpy(buf, t->pieces[out[i]], a);
            memcpy(buf + a, t->pieces[out[i + 1]], b);
            int id = bf_tok_lookup(t, buf, a + b);
            if (id >= 0 && t->scores[id] > best) {
                best = t->scores[id];
                best_id = id;
                best_at = i;
            }
        }
        if (best_at < 0)
            return n;
        out[best_at] = best_id;
        memmove(out + best_at + 1, out + best_at + 2, (size_t)(n - best_at - 2) * sizeof *out);
        n--;
    }
}

/* ------------------------------------------------------------------ special tokens */

struct fragment {
    int start, len, id;               /* id >= 0: a special token; else text[start..start+len) */
};

static const uint8_t *find(const uint8_t *h, size_t hl, const uint8_t *nd, size_t nl)
{
    for (size_t i = 0; i + nl <= hl; i++)
        if (h[i] == nd[0] && memcmp(h + i, nd, nl) == 0)
            return h + i;
    return NULL;
}

/* llama.cpp's tokenizer_st_partition; returns the number of fragments. */
static int partition(const struct bf_tokenizer *t, const uint8_t *text, int len, int parse_special,
                     struct fragment *a, struct fragment *b)
{
    int n = 0;
    if (len)
        a[n++] = (struct fragment){0, len, -1};
    if (!parse_special)
        return n;
    for (int s = 0; s < t->n_specials; s++) {
        int id = t->specials[s], m = 0;
        size_t pl = t->lengths[id];
        for (int f = 0; f < n; f++) {
            if (a[f].id >= 0) {
                b[m++] = a[f];
                continue;
            }
            int start = a[f].start, flen = a[f].len;
            for (;;) {
                const uint8_t *hit = find(text + start, (size_t)flen, t->pieces[id], pl);
                if (!hit) {
                    if (flen)
                        b[m++] = (struct fragment){start, flen, -1};
                    break;
                }
                int at = (int)(hit - text);
                if (at > start)
                    b[m++] = (struct fragment){start, at - start, -1};
                b[m++] = (struct fragment){at, (int)pl, id};
                flen -= at - start + (int)pl;
                start = at + (int)pl;
            }
        }
        memcpy(a, b, (size_t)m * sizeof *a);
        n = m;
    }
    return n;
}

int bf_encode(const struct bf_tokenizer *t, const char *text, int parse_special, int *out, int cap)
{
    static struct fragment frags[2][BF_TOK_MAX_TEXT + 1];
    const uint8_t *s = (const uint8_t *)text;
    size_t len = strlen(text);
    long bad = bf_utf8_invalid_at(s, len);
    if (bad >= 0)
        bf_panic("tokenizer: prompt is not valid UTF-8 (byte 0x%02x at offset %ld)", s[bad], bad);
    if (len > BF_TOK_MAX_TEXT)
        bf_panic("tokenizer: text of %zu bytes, at most %d", len, BF_TOK_MAX_TEXT);
    if (t->kind == BF_TOK_LLAMA2C)
        return llama2c(t, s, len, out, cap);

    struct bf_tok_work *w = t->work;
    int n = 0, prev_special = 1;
    if (t->add_bos)
        bf_tok_emit(out, &n, cap, t->bos);
    int nf = partition(t, s, (int)len, parse_special, frags[0], frags[1]);
    for (int f = 0; f < nf; f++) {
        const struct fragment *fr = &frags[0][f];
        if (fr->id >= 0) {
            bf_tok_emit(out, &n, cap, fr->id);
            prev_special = 1;
            continue;
        }
        if (t->kind == BF_TOK_SPM)
            spm(t, w, s + fr->start, (size_t)fr->len, t->add_space_prefix && prev_special, out, &n, cap);
        else
            bf_tok_bpe(t, w, s + fr->start, (size_t)fr->len, out, &n, cap);
        prev_special = 0;
    }
    return n;
}

int bf_is_stop(const struct bf_tokenizer *t, int token)
{
    return token == t->eos || token == t->eot || (t->stop_on_bos && token == t->bos);
}

static int hex_digit(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

const char *bf_decode(const struct bf_tokenizer *t, int prev, int token, size_t *len)
{
    static uint8_t buf[4 * 1024 + 4];
    const uint8_t *p = t->pieces[token];
    size_t n = t->lengths[token], m = 0;
    int type = t->types[token];
    *len = 0;
    if (t->kind != BF_TOK_LLAMA2C && (type == BF_TT_CONTROL || type == BF_TT_UNUSED))
        return (const char *)buf;
    if (t->kind == BF_TOK_GPT2 && type != BF_TT_USER) {
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            size_t l = bf_utf8_char(p + i, n - i, &cp);
            int b = l ? bf_gpt2_char_byte(cp) : -1;
            buf[m++] = b >= 0 ? (uint8_t)b : '?';
            i += l ? l : 1;
        }
        *len = m;
        return (const char *)buf;
    }
    if (n == 6 && memcmp(p, "<0x", 3) == 0 && p[5] == '>' && (type == BF_TT_BYTE || t->kind == BF_TOK_LLAMA2C)) {
        int hi = hex_digit(p[3]), lo = hex_digit(p[4]);
        if (hi >= 0 && lo >= 0) {
            buf[0] = (uint8_t)(hi * 16 + lo);
            *len = 1;
            return (const char *)buf;
        }
    }
    if (t->kind == BF_TOK_SPM) {
        for (size_t i = 0; i < n;) {
            if (i + 3 <= n && memcmp(p + i, "\xE2\x96\x81", 3) == 0) {
                buf[m++] = ' ';
                i += 3;
            } else {
                buf[m++] = p[i++];
            }
        }
        p = buf;
        n = m;
    }
    if (prev == t->bos && n && p[0] == ' ' && (t->kind == BF_TOK_LLAMA2C || t->add_space_prefix)) {
        p++;
        n--;
    }
    *len = n;
    return (const char *)p;
}
