/* tokfile.c - reads /TOKENIZR.BIN (docs/tokenizer-format.md) and builds the lookup tables.
 *
 * Promise: the file is accepted only when every rule of the format holds (the build's
 * validator, bareflow/model/tokenizer_v2.py, applies the same ones): magic, version, sizes,
 * section offsets, CRC-32, ranges of every field, each piece inside the string section, no
 * duplicate piece or merge pair, and exactly the model's vocab_size tokens.  Anything else
 * stops the run naming the file and the field.  After loading, a piece or merge lookup is an
 * open-addressing hash probe; the file's bytes stay where bf_read_file put them.
 */
#include <stdlib.h>
#include <string.h>

#include "bareflow/runtime.h"
#include "rt.h"
#include "tokenizer.h"

#define TOK_PATH "/TOKENIZR.BIN"
#define HEADER_SIZE 96
#define TOKEN_SIZE 12
#define MERGE_SIZE 8
#define CRC_OFFSET 72
#define MAX_TOKENS (1u << 20)
#define MAX_MERGES (1u << 21)
#define MAX_PIECE 1024

static uint32_t hash_bytes(const void *s, size_t len)
{
    const uint8_t *p = s;
    uint32_t h = 2166136261u;            /* FNV-1a */
    while (len--)
        h = (h ^ *p++) * 16777619u;
    return h;
}

static uint32_t hash_pair(uint32_t a, uint32_t b)
{
    uint64_t x = ((uint64_t)a << 32 | b) * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(x >> 32) ^ (uint32_t)x;
}

static uint32_t table_mask(uint32_t n)
{
    uint32_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    return cap - 1;
}

int bf_tok_lookup(const struct bf_tokenizer *t, const void *s, size_t len)
{
    for (uint32_t i = hash_bytes(s, len) & t->piece_mask;; i = (i + 1) & t->piece_mask) {
        int id = t->piece_slots[i];
        if (id < 0)
            return -1;
        if (t->lengths[id] == len && memcmp(t->pieces[id], s, len) == 0)
            return id;
    }
}

int bf_tok_rank(const struct bf_tokenizer *t, int left, int right)
{
    if (!t->n_merges)
        return -1;
    for (uint32_t i = hash_pair((uint32_t)left, (uint32_t)right) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        int rank = t->merge_slots[i];
        if (rank < 0)
            return -1;
        const uint8_t *m = t->merges + (size_t)rank * MERGE_SIZE;
        if ((int)bf_le32(m) == left && (int)bf_le32(m + 4) == right)
            return rank;
    }
}

static void check_id(const char *name, int32_t id, uint32_t n)
{
    if (id < -1 || id >= (int32_t)n)
        bf_panic("tokenizer %s: %s id %d is outside -1..%u", TOK_PATH, name, id, n - 1);
}

/* Header checks in the order of docs/tokenizer-format.md; returns the token count. */
static void read_header(struct bf_tokenizer *t, const uint8_t *d, size_t size)
{
    if (size < HEADER_SIZE)
        bf_panic("tokenizer %s: %zu bytes, shorter than the %d-byte header", TOK_PATH, size, HEADER_SIZE);
    if (memcmp(d, "BFTK", 4) != 0)
        bf_panic("tokenizer %s: magic is not BFTK (a llama2.c tokenizer.bin must be converted by the build)",
                 TOK_PATH);
    if (bf_le16(d + 4) != 2 || bf_le16(d + 6) != HEADER_SIZE)
        bf_panic("tokenizer %s: version %u / header size %u; this kernel reads version 2, %d", TOK_PATH,
                 bf_le16(d + 4), bf_le16(d + 6), HEADER_SIZE);
    if (bf_le32(d + 68) != size)
        bf_panic("tokenizer %s: file_size field %u but the file has %zu bytes", TOK_PATH, bf_le32(d + 68), size);
    uint32_t want = bf_le32(d + CRC_OFFSET);
    static const uint8_t zero[4];
    uint32_t crc = bf_crc32(0, d, CRC_OFFSET);
    crc = bf_crc32(crc, zero, 4);
    crc = bf_crc32(crc, d + CRC_OFFSET + 4, size - CRC_OFFSET - 4);
    if (crc != want)
        bf_panic("tokenizer %s: checksum 0x%08x does not match the contents (0x%08x)", TOK_PATH, want, crc);
    uint32_t flags = bf_le32(d + 28);
    for (int i = 76; i < HEADER_SIZE; i++)
        if (d[i])
            bf_panic("tokenizer %s: reserved header byte %d is not zero", TOK_PATH, i);
    if (flags & ~7u)
        bf_panic("tokenizer %s: unknown flag bits 0x%x", TOK_PATH, flags);
    uint32_t kind = bf_le32(d + 8), pre = bf_le32(d + 12), n = bf_le32(d + 16), m = bf_le32(d + 20);
    if (kind < BF_TOK_LLAMA2C || kind > BF_TOK_GPT2)
        bf_panic("tokenizer %s: kind %u is not 1 (llama2c), 2 (llama) or 3 (gpt2)", TOK_PATH, kind);
    if (n < 1 || n > MAX_TOKENS || m > MAX_MERGES)
        bf_panic("tokenizer %s: n_tokens %u / n_merges %u out of range", TOK_PATH, n, m);
    if ((kind == BF_TOK_GPT2) != (pre != BF_PRE_NONE) || pre > BF_PRE_LLAMA3)
        bf_panic("tokenizer %s: pre-tokenizer %u does not fit kind %u", TOK_PATH, pre, kind);
    if (kind != BF_TOK_GPT2 && m)
        bf_panic("tokenizer %s: %u merges for a kind %u tokenizer (only gpt2 has merges)", TOK_PATH, m, kind);
    uint32_t tokens_off = bf_le32(d + 52), merges_off = bf_le32(d + 56), strings_off = bf_le32(d + 60),
             strings_size = bf_le32(d + 64);
    if (tokens_off != HEADER_SIZE || merges_off != tokens_off + n * TOKEN_SIZE ||
        strings_off != merges_off + m * MERGE_SIZE || (uint64_t)strings_off + strings_size != size)
        bf_panic("tokenizer %s: section offsets do not follow header, token table, merges, strings", TOK_PATH);
    static const char *const names[5] = {"bos", "eos", "eot", "unk", "pad"};
    int32_t ids[5];
    for (int i = 0; i < 5; i++) {
        ids[i] = (int32_t)bf_le32(d + 32 + 4 * i);
        check_id(names[i], ids[i], n);
    }
    t->kind = (int)kind;
    t->pre = (int)pre;
    t->n_tokens = (int)n;
    t->n_merges = (int)m;
    t->max_piece_len = (int)bf_le32(d + 24);
    t->bos = ids[0];
    t->eos = ids[1];
    t->eot = ids[2];
    t->unk = ids[3];
    t->pad = ids[4];
    t->add_bos = flags & 1;
    t->add_space_prefix = (flags >> 1) & 1;
    t->stop_on_bos = (flags >> 2) & 1;
    if (t->add_bos && t->bos < 0)
        bf_panic("tokenizer %s: add_bos is set but there is no bos id", TOK_PATH);
}

static void read_tokens(struct bf_tokenizer *t, const uint8_t *d)
{
    uint32_t n = (uint32_t)t->n_tokens, strings_off = bf_le32(d + 60), strings_size = bf_le32(d + 64);
    int longest = 0;
    t->pieces = bf_alloc(n * sizeof *t->pieces, 64, "tokenizer pieces");
    t->lengths = bf_alloc(n * sizeof *t->lengths, 64, "tokenizer lengths");
    t->scores = bf_alloc(n * sizeof *t->scores, 64, "tokenizer scores");
    t->types = bf_alloc(n, 64, "tokenizer types");
    t->piece_mask = table_mask(n);
    t->piece_slots = bf_alloc(((size_t)t->piece_mask + 1) * 4, 64, "tokenizer piece hash");
    memset(t->piece_slots, 0xFF, ((size_t)t->piece_mask + 1) * 4);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *r = d + HEADER_SIZE + (size_t)i * TOKEN_SIZE;
        uint32_t bits = bf_le32(r), off = bf_le32(r + 4), len = bf_le16(r + 8), type = r[10];
        if ((bits & 0x7F800000u) == 0x7F800000u)
            bf_panic("tokenizer %s: token %u has a score that is not finite", TOK_PATH, i);
        if (len < 1 || len > MAX_PIECE || (uint64_t)off + len > strings_size || r[11])
            bf_panic("tokenizer %s: token %u: piece at %u+%u outside the %u-byte strings section (or length "
                     "outside 1..%d)", TOK_PATH, i, off, len, strings_size, MAX_PIECE);
        if (type < BF_TT_NORMAL || type > BF_TT_BYTE)
            bf_panic("tokenizer %s: token %u has type %u, not 1..6", TOK_PATH, i, type);
        memcpy(&t->scores[i], &bits, 4);
        t->pieces[i] = d + strings_off + off;
        t->lengths[i] = (uint16_t)len;
        t->types[i] = (uint8_t)type;
        if ((int)len > longest)
            longest = (int)len;
        uint32_t s = hash_bytes(t->pieces[i], len) & t->piece_mask;
        for (;; s = (s + 1) & t->piece_mask) {
            int other = t->piece_slots[s];
            if (other < 0)
                break;
            if (t->lengths[other] == len && memcmp(t->pieces[other], t->pieces[i], len) == 0)
                bf_panic("tokenizer %s: token %u has the same piece as token %d", TOK_PATH, i, other);
        }
        t->piece_slots[s] = (int32_t)i;
    }
    if (longest != t->max_piece_len)
        bf_panic("tokenizer %s: max_piece_len %d is not the longest piece (%d)", TOK_PATH, t->max_piece_len,
                 longest);
}

static void read_merges(struct bf_tokenizer *t, const uint8_t *d)
{
    uint32_t m = (uint32_t)t->n_merges;
    t->merges = d + bf_le32(d + 56);
    if (!m)
        return;
    t->merge_mask = table_mask(m);
    t->merge_slots = bf_alloc(((size_t)t->merge_mask + 1) * 4, 64, "tokenizer merge hash");
    memset(t->merge_slots, 0xFF, ((size_t)t->merge_mask + 1) * 4);
    for (uint32_t r = 0; r < m; r++) {
        uint32_t a = bf_le32(t->merges + (size_t)r * MERGE_SIZE), b = bf_le32(t->merges + (size_t)r * MERGE_SIZE + 4);
        if (a >= (uint32_t)t->n_tokens || b >= (uint32_t)t->n_tokens)
            bf_panic("tokenizer %s: merge %u: ids (%u, %u) outside 0..%d", TOK_PATH, r, a, b, t->n_tokens - 1);
        if (bf_tok_rank(t, (int)a, (int)b) >= 0)
            bf_panic("tokenizer %s: merge %u repeats the pair (%u, %u)", TOK_PATH, r, a, b);
        uint32_t s = hash_pair(a, b) & t->merge_mask;
        while (t->merge_slots[s] >= 0)
            s = (s + 1) & t->merge_mask;
        t->merge_slots[s] = (int32_t)r;
    }
}

static const struct bf_tokenizer *sorting;    /* qsort's comparator has no context argument */

static int longest_first(const void *a, const void *b)
{
    int ia = *(const int *)a, ib = *(const int *)b;
    int la = sorting->lengths[ia], lb = sorting->lengths[ib];
    if (la != lb)
        return lb - la;
    return (ia > ib) - (ia < ib);
}

static void index_specials(struct bf_tokenizer *t)
{
    t->n_specials = 0;
    for (int i = 0; i < t->n_tokens; i++)
        t->n_specials += t->types[i] == BF_TT_CONTROL || t->types[i] == BF_TT_USER || t->types[i] == BF_TT_UNKNOWN;
    t->specials = bf_alloc((size_t)(t->n_specials ? t->n_specials : 1) * sizeof(int), 64, "tokenizer specials");
    int k = 0;
    for (int i = 0; i < t->n_tokens; i++)
        if (t->types[i] == BF_TT_CONTROL || t->types[i] == BF_TT_USER || t->types[i] == BF_TT_UNKNOWN)
            t->specials[k++] = i;
    sorting = t;
    qsort(t->specials, (size_t)t->n_specials, sizeof(int), longest_first);
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        char name[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
        uint8_t raw = (uint8_t)b;
        int id = bf_tok_lookup(t, name, 6);
        if (id < 0)
            id = bf_tok_lookup(t, &raw, 1);
        t->byte_ids[b] = id >= 0 ? id : t->unk;
    }
    t->space_id = bf_tok_lookup(t, " ", 1);
}

void bf_tokenizer_load(struct bf_tokenizer *t, int vocab_size)
{
    size_t size;
    const uint8_t *d = bf_read_file(TOK_PATH, &size);
    memset(t, 0, sizeof *t);
    read_header(t, d, size);
    if (vocab_size >= 0 && t->n_tokens != vocab_size)
        bf_panic("tokenizer %s: %d tokens but the model's vocab_size is %d (tokenizer and model do not belong "
                 "together)", TOK_PATH, t->n_tokens, vocab_size);
    read_tokens(t, d);
    read_merges(t, d);
    index_specials(t);
    struct bf_tok_work *w = bf_alloc(sizeof *w, 64, "tokenizer work area");
    w->sym = bf_alloc((BF_TOK_MAX_TEXT * 3 + 8) * sizeof *w->sym, 64, "tokenizer symbols");
    w->heap = bf_alloc(4 * (BF_TOK_MAX_TEXT * 3 + 8) * sizeof *w->heap, 64, "tokenizer heap");
    w->text = bf_alloc(4 * BF_TOK_MAX_TEXT + 8, 64, "tokenizer text");
    w->cps = bf_alloc(BF_TOK_MAX_TEXT * sizeof *w->cps, 64, "tokenizer code points");
    w->bounds = bf_alloc(2 * BF_TOK_MAX_TEXT * sizeof *w->bounds, 64, "tokenizer word bounds");
    t->work = w;
}
