/* tokenizer_bpe.c - GPT-2 byte-level BPE: the pre-tokenizer splits and rank-ordered merging.
 *
 * Promise: for one text fragment (valid UTF-8, no special tokens), emits the ids llama.cpp's
 * llm_tokenizer_bpe_session emits: the fragment is split into words by the rules `pre` names
 * (llama.cpp's unicode_regex_split_custom_gpt2 and _llama3, and smollm's extra "\p{N}" split
 * before gpt-2's), each word's bytes are mapped through GPT-2's byte<->unicode table, then
 * adjacent symbols are merged lowest merge rank first (leftmost on ties); a final symbol that
 * is not a piece falls back to its single bytes that are pieces.  Character classes come from
 * the generated unicode_tables.c; whitespace is Unicode's White_Space list.
 */
#include <string.h>

#include "bareflow/runtime.h"
#include "rt.h"
#include "tokenizer.h"

#define OUT_OF_RANGE (-1)

int bf_unicode_class(uint32_t cp)
{
    if ((cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
        (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
        cp == 0x3000)
        return BF_UC_SPACE;
    unsigned lo = 0, hi = bf_unicode_n_ranges;   /* first range with last >= cp */
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (bf_unicode_ranges[mid].last < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < bf_unicode_n_ranges && bf_unicode_ranges[lo].first <= cp)
        return (int)bf_unicode_ranges[lo].cls;
    return BF_UC_OTHER;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 take
 * U+0100.. in byte order. */
static int printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t bf_gpt2_byte_char(uint8_t b)
{
    if (printable(b))
        return b;
    uint32_t k = 0;
    for (unsigned i = 0; i < b; i++)
        k += !printable(i);
    return 0x100 + k;
}

int bf_gpt2_char_byte(uint32_t cp)
{
    if (cp < 0x100)
        return printable(cp) ? (int)cp : -1;
    if (cp >= 0x100 + 68)
        return -1;
    uint32_t k = cp - 0x100;
    for (unsigned b = 0; b < 256; b++)
        if (!printable(b) && k-- == 0)
            return (int)b;
    return -1;
}

/* ------------------------------------------------------------------ splitting */

struct split {
    const uint32_t *cps;
    int lo, hi;               /* the range being split */
    int *bounds, nb, prev;    /* word ends appended to bounds */
};

static int cls_at(const struct split *s, int p)
{
    return p >= s->lo && p < s->hi ? bf_unicode_class(s->cps[p]) : OUT_OF_RANGE;
}

static long cp_at(const struct split *s, int p)
{
    return p >= s->lo && p < s->hi ? (long)s->cps[p] : OUT_OF_RANGE;
}

static int add(struct split *s, int end)
{
    int n = end - s->prev;
    if (n > 0)
        s->bounds[s->nb++] = end;
    s->prev = end;
    return n;
}

static int is_other(int c)
{
    return c != OUT_OF_RANGE && c != BF_UC_LETTER && c != BF_UC_NUMBER && c != BF_UC_SPACE;
}

static uint32_t ascii_lower(long c)
{
    return c >= 'A' && c <= 'Z' ? (uint32_t)c + 32 : (uint32_t)c;
}

/* 's|'t|'re|'ve|'m|'ll|'d at p: its length, else 0 (fold: llama3's case-insensitive form). */
static int contraction(const struct split *s, int p, int fold)
{
    if (cp_at(s, p) != '\'' || p + 1 >= s->hi)
        return 0;
    uint32_t a = fold ? ascii_lower(cp_at(s, p + 1)) : (uint32_t)cp_at(s, p + 1);
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return 2;
    if (p + 2 >= s->hi)
        return 0;
    uint32_t b = fold ? ascii_lower(cp_at(s, p + 2)) : (uint32_t)cp_at(s, p + 2);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        return 3;
    return 0;
}

/* The last alternatives of both patterns, \s+(?!\S)|\s+, for the nw >= 0 white-space characters
 * at pos: a run followed by more text leaves its last space to start the next piece, and where
 * there is no white space one character makes a piece.  Adds the piece; returns where it ends. */
static int add_spaces(struct split *s, int pos, int nw)
{
    if (nw > 1 && cp_at(s, pos + nw) != OUT_OF_RANGE)
        pos += nw - 1;
    else if (nw > 0)
        pos += nw;
    else
        pos++;
    add(s, pos);
    return pos;
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static void split_gpt2(struct split *s)
{
    for (int pos = s->lo; pos < s->hi;) {
        int k = contraction(s, pos, 0);
        if (k) {
            pos += add(s, pos + k);
            continue;
        }
        int space = cp_at(s, pos) == ' ';
        int c2 = space ? cls_at(s, pos + 1) : cls_at(s, pos);
        if (c2 == BF_UC_LETTER || c2 == BF_UC_NUMBER) {
            pos += space;
            while (cls_at(s, pos) == c2)
                pos++;
            add(s, pos);
            continue;
        }
        if (is_other(c2)) {
            pos += space;
            while (is_other(cls_at(s, pos)))
                pos++;
            add(s, pos);
            continue;
        }
        int nw = 0;
        while (cls_at(s, pos + nw) == BF_UC_SPACE)
            nw++;
        pos = add_spaces(s, pos, nw);
    }
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 * \s*[\r\n]+|\s+(?!\S)|\s+ */
static void split_llama3(struct split *s)
{
    for (int pos = s->lo; pos < s->hi;) {
        long cp = cp_at(s, pos);
        int c = cls_at(s, pos);
        int k = contraction(s, pos, 1);
        if (k) {
            pos += add(s, pos + k);
            continue;
        }
        if (!(cp == '\r' || cp == '\n' || c == BF_UC_NUMBER) &&
            (c == BF_UC_LETTER || cls_at(s, pos + 1) == BF_UC_LETTER)) {
            pos++;
            while (cls_at(s, pos) == BF_UC_LETTER)
                pos++;
            add(s, pos);
            continue;
        }
        if (c == BF_UC_NUMBER) {
            int ini = pos;
            while (cls_at(s, pos) == BF_UC_NUMBER) {
                if (++pos - ini >= 3) {
                    add(s, pos);
                    ini = pos;
                }
            }
            add(s, pos);
            continue;
        }
        int c2 = cp == ' ' ? cls_at(s, pos + 1) : c;
        if (is_other(c2)) {
            pos += cp == ' ';
            while (is_other(cls_at(s, pos)))
                pos++;
            while (cp_at(s, pos) == '\r' || cp_at(s, pos) == '\n')
                pos++;
            add(s, pos);
            continue;
        }
        int nw = 0, last_nl = 0;
        while (cls_at(s, pos + nw) == BF_UC_SPACE) {
            long w = cp_at(s, pos + nw);
            if (w == '\r' || w == '\n')
                last_nl = pos + nw + 1;
            nw++;
        }
        if (last_nl > 0) {
            pos = last_nl;
            add(s, pos);
            continue;
        }
        pos = add_spaces(s, pos, nw);
    }
}

static void split_range(const struct bf_tokenizer *t, struct split *s, int lo, int hi)
{
    s->lo = lo;
    s->hi = hi;
    s->prev = lo;
    if (t->pre == BF_PRE_LLAMA3)
        split_llama3(s);
    else
        split_gpt2(s);
}

/* ------------------------------------------------------------------ merging */

static void bpe_add(const struct bf_tokenizer *t, struct bf_tok_work *w, int left, int right)
{
    if (left < 0 || right < 0)
        return;
    const struct bf_tok_symbol *l = &w->sym[left], *r = &w->sym[right];
    int a = bf_tok_lookup(t, w->text + l->start, (size_t)l->len);
    int b = a >= 0 ? bf_tok_lookup(t, w->text + r->start, (size_t)r->len) : -1;
    int rank = b >= 0 ? bf_tok_rank(t, a, b) : -1;
    if (rank < 0)
        return;
    /* lowest rank first, then the smallest left index; size packs both lengths */
    bf_tok_heap_push(w, (uint64_t)(uint32_t)rank << 32 | (uint32_t)left, left, right, l->len << 16 | r->len);
}

/* One word: w->text[0..m) in the byte<->unicode alphabet. */
static void bpe_word(const struct bf_tokenizer *t, struct bf_tok_work *w, int m, int *out, int *n, int cap)
{
    if (t->pre == BF_PRE_LLAMA3) {            /* llama.cpp's ignore_merges */
        int id = bf_tok_lookup(t, w->text, (size_t)m);
        if (id >= 0) {
            bf_tok_emit(out, n, cap, id);
            return;
        }
    }
    int ns = bf_tok_symbols(w, m);
    w->n_heap = 0;
    for (int i = 1; i < ns; i++)
        bpe_add(t, w, i - 1, i);
    struct bf_tok_bigram b;
    while (bf_tok_heap_pop(w, &b)) {
        struct bf_tok_symbol *l = &w->sym[b.left], *r = &w->sym[b.right];
        if (l->len != b.size >> 16 || r->len != (b.size & 0xFFFF) || l->next != b.right || !l->len || !r->len)
            continue;
        bf_tok_join(w, b.left, b.right);
        bpe_add(t, w, l->prev, b.left);
        bpe_add(t, w, b.left, l->next);
    }
    bf_tok_emit_symbols(t, w, ns, NULL, out, n, cap);
}

void bf_tok_bpe(const struct bf_tokenizer *t, struct bf_tok_work *w, const uint8_t *text, size_t len, int *out,
                int *n, int cap)
{
    /* Code points, and the byte offset each one starts at (valid UTF-8 is guaranteed). */
    static int offs[BF_TOK_MAX_TEXT + 1];
    int nc = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t l = bf_utf8_char(text + i, len - i, &cp);
        offs[nc] = (int)i;
        w->cps[nc++] = cp;
        i += l ? l : 1;
    }
    offs[nc] = (int)len;
    struct split s = {.cps = w->cps, .bounds = w->bounds, .nb = 0};
    if (t->pre == BF_PRE_SMOLLM) {            /* "\p{N}" first: each number character alone */
        int start = 0;
        for (int i = 0; i < nc; i++) {
            if (bf_unicode_class(w->cps[i]) != BF_UC_NUMBER)
                continue;
            if (i > start)
                split_range(t, &s, start, i);
            split_range(t, &s, i, i + 1);
            start = i + 1;
        }
        if (start < nc)
            split_range(t, &s, start, nc);
    } else {
        split_range(t, &s, 0, nc);
    }
    int begin = 0;
    for (int k = 0; k < s.nb; k++) {
        int end = s.bounds[k], m = 0;
        for (int b = offs[begin]; b < offs[end]; b++)
            m += (int)bf_utf8_put(bf_gpt2_byte_char(text[b]), w->text + m);
        bpe_word(t, w, m, out, n, cap);
        begin = end;
    }
}
