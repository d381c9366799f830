/* tokenizer.h - shared between the tokenizer files (tokfile.c, tokenizer.c, tokenizer_bpe.c,
 * utf8.c, unicode_tables.c); the rest of the runtime sees only struct bf_tokenizer in rt.h.
 *
 * Promise: every helper here works on byte strings with explicit lengths (pieces may hold any
 * byte), never allocates, and only reads inside the arrays it is given.
 */
#ifndef BAREFLOW_TOKENIZER_H
#define BAREFLOW_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

struct bf_tokenizer;

/* docs/tokenizer-format.md */
enum { BF_TOK_LLAMA2C = 1, BF_TOK_SPM = 2, BF_TOK_GPT2 = 3 };
enum { BF_PRE_NONE = 0, BF_PRE_GPT2 = 1, BF_PRE_SMOLLM = 2, BF_PRE_LLAMA3 = 3 };
enum { BF_TT_NORMAL = 1, BF_TT_UNKNOWN = 2, BF_TT_CONTROL = 3, BF_TT_USER = 4, BF_TT_UNUSED = 5,
       BF_TT_BYTE = 6 };

/* Longest text the tokenizer takes in one call (the wrapped prompt, a test case). */
#define BF_TOK_MAX_TEXT 8192

/* tokfile.c: exact-bytes lookups (-1 when absent). */
int bf_tok_lookup(const struct bf_tokenizer *t, const void *s, size_t len);
int bf_tok_rank(const struct bf_tokenizer *t, int left, int right);

/* One growing work area for a single encode call: symbols, heap and scratch text. */
struct bf_tok_symbol {
    int start, len, prev, next;
};
struct bf_tok_bigram {
    uint64_t key;             /* smaller pops first */
    int left, right, size;
};
struct bf_tok_work {
    struct bf_tok_symbol *sym;     /* BF_TOK_MAX_TEXT * 3 + 8 */
    struct bf_tok_bigram *heap;    /* 4 * that */
    int n_heap;
    uint8_t *text;                 /* 4 * BF_TOK_MAX_TEXT + 8: escaped / byte-encoded text */
    uint32_t *cps;                 /* BF_TOK_MAX_TEXT code points */
    int *bounds;                   /* 2 * BF_TOK_MAX_TEXT word bounds */
};
void bf_tok_heap_push(struct bf_tok_work *w, uint64_t key, int left, int right, int size);
int bf_tok_heap_pop(struct bf_tok_work *w, struct bf_tok_bigram *out);
/* w->text[0..m) cut into one symbol per UTF-8 character (a truncated last one kept whole), linked
 * in order; returns how many. */
int bf_tok_symbols(struct bf_tok_work *w, int m);
/* Merge symbol `right` into its left neighbour `left`; the caller re-queues the new neighbours. */
void bf_tok_join(struct bf_tok_work *w, int left, int right);

/* Appends ids to out[*n] (capacity cap); panics when full. */
void bf_tok_emit(int *out, int *n, int cap, int id);
/* Emits the id of each symbol left after merging, in order (ns symbols from bf_tok_symbols).  A
 * symbol with no token of its own goes out byte by byte: through byte_ids (SentencePiece's <0xXX>
 * fallback) or, when byte_ids is NULL, as each byte's one-byte token (byte-level BPE). */
void bf_tok_emit_symbols(const struct bf_tokenizer *t, const struct bf_tok_work *w, int ns,
                         const int *byte_ids, int *out, int *n, int cap);

/* tokenizer_bpe.c: GPT-2 byte-level BPE over one text fragment (no special tokens inside). */
void bf_tok_bpe(const struct bf_tokenizer *t, struct bf_tok_work *w, const uint8_t *text, size_t len,
                int *out, int *n, int cap);
/* GPT-2's byte -> character table and its inverse (character -> byte, -1 if none). */
uint32_t bf_gpt2_byte_char(uint8_t b);
int bf_gpt2_char_byte(uint32_t cp);

/* utf8.c */
/* Length of the well-formed UTF-8 character at s[0..len), 0 if none starts there; *cp gets it. */
size_t bf_utf8_char(const uint8_t *s, size_t len, uint32_t *cp);
/* llama.cpp's unicode_len_utf8: the length a lead byte announces (1 for any other byte). */
size_t bf_utf8_lead_len(uint8_t lead);
size_t bf_utf8_put(uint32_t cp, uint8_t *out);   /* 1..4 bytes */
/* Where no character starts at s: the bytes of the maximal ill-formed subpart (>= 1), which
 * one U+FFFD replaces. */
size_t bf_utf8_bad_len(const uint8_t *s, size_t len);

/* unicode_tables.c (generated) */
enum { BF_UC_OTHER = 0, BF_UC_LETTER = 1, BF_UC_NUMBER = 2, BF_UC_SPACE = 3 };
struct bf_unicode_range {
    uint32_t first, last;
    uint32_t cls;
};
extern const char bf_unicode_version[];
extern const unsigned bf_unicode_n_ranges;
extern const struct bf_unicode_range bf_unicode_ranges[];
int bf_unicode_class(uint32_t cp);

#endif
