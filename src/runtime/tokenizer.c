/* tokenizer.c - llama2.c's tokenizer: /TOKENIZR.BIN, prompt encoding, piece decoding.
 *
 * Promise: the file is read with every length checked against the bytes left and must end
 * exactly after vocab_size tokens; encoding follows llama2.c (BOS, dummy-prefix " ", UTF-8
 * characters or byte fallback id byte+3, then greedy merging of the best-scoring adjacent pair,
 * leftmost on ties) and only ever yields ids below vocab_size.  Pieces are 1..max_token_length
 * bytes without NUL and all different (a duplicate is refused, as the build refuses it), so a
 * binary search of the pieces sorted by bytes finds exactly one id.
 */
#include <stdlib.h>
#include <string.h>

#include "bareflow/runtime.h"
#include "rt.h"

#define TOK_PATH "/TOKENIZR.BIN"
#define BOS 1

static const struct bf_tokenizer *sorting;   /* qsort's comparator has no context argument */

static int by_piece(const void *a, const void *b)
{
    int ia = *(const int *)a, ib = *(const int *)b;
    int c = strcmp(sorting->pieces[ia], sorting->pieces[ib]);
    return c ? c : (ia > ib) - (ia < ib);
}

static int lookup(const struct bf_tokenizer *t, const char *s)
{
    int lo = 0, hi = t->vocab_size;        /* first index whose piece is >= s */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (strcmp(t->pieces[t->sorted[mid]], s) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < t->vocab_size && strcmp(t->pieces[t->sorted[lo]], s) == 0 ? t->sorted[lo] : -1;
}

void bf_tokenizer_load(struct bf_tokenizer *t, int vocab_size)
{
    size_t size, off = 4;
    const uint8_t *data = bf_read_file(TOK_PATH, &size);

    if (size < 4)
        bf_panic("tokenizer %s: %zu bytes, shorter than its 4-byte header", TOK_PATH, size);
    int32_t mtl = (int32_t)bf_le32(data);
    if (mtl < 1 || mtl > 1024)
        bf_panic("tokenizer %s: max_token_length %d out of range 1..1024", TOK_PATH, mtl);
    /* ids 0..2 are <unk>, BOS and EOS in every llama2.c vocabulary (the build refuses fewer). */
    if (vocab_size <= 2)
        bf_panic("tokenizer %s: vocab_size %d from the model; ids 0..2 must be <unk>, BOS, EOS", TOK_PATH,
                 vocab_size);
    t->vocab_size = vocab_size;
    t->max_token_length = mtl;
    t->pieces = bf_alloc((size_t)vocab_size * sizeof *t->pieces, 64, "tokenizer pieces");
    t->lengths = bf_alloc((size_t)vocab_size * sizeof(int), 64, "tokenizer lengths");
    t->scores = bf_alloc((size_t)vocab_size * sizeof(float), 64, "tokenizer scores");
    t->sorted = bf_alloc((size_t)vocab_size * sizeof(int), 64, "tokenizer index");
    for (int i = 0; i < vocab_size; i++) {
        if (size - off < 8)
            bf_panic("tokenizer %s: ends inside the record of token %d (vocab_size %d from the model)", TOK_PATH, i,
                     vocab_size);
        uint32_t bits = bf_le32(data + off);
        int32_t len = (int32_t)bf_le32(data + off + 4);
        off += 8;
        if ((bits & 0x7F800000u) == 0x7F800000u)
            bf_panic("tokenizer %s: token %d has a score that is not finite", TOK_PATH, i);
        if (len < 1 || len > mtl)
            bf_panic("tokenizer %s: token %d has length %d, outside 1..max_token_length %d", TOK_PATH, i, len, mtl);
        if ((size_t)len > size - off)
            bf_panic("tokenizer %s: token %d (length %d) runs past the end of the file", TOK_PATH, i, len);
        char *piece = bf_alloc((size_t)len + 1, 1, "tokenizer piece");
        memcpy(piece, data + off, (size_t)len);
        if (strlen(piece) != (size_t)len)   /* pieces are compared as C strings */
            bf_panic("tokenizer %s: token %d contains a NUL byte", TOK_PATH, i);
        memcpy(&t->scores[i], &bits, 4);
        t->pieces[i] = piece;
        t->lengths[i] = len;
        t->sorted[i] = i;
        off += (size_t)len;
    }
    if (off != size)
        bf_panic("tokenizer %s: %zu bytes follow the %d tokens the model's vocab_size asks for", TOK_PATH,
                 size - off, vocab_size);
    sorting = t;
    qsort(t->sorted, (size_t)vocab_size, sizeof(int), by_piece);
    /* Equal pieces sort next to each other; a lookup by bytes would be ambiguous. */
    for (int i = 1; i < vocab_size; i++) {
        int a = t->sorted[i - 1], b = t->sorted[i];
        if (strcmp(t->pieces[a], t->pieces[b]) == 0)
            bf_panic("tokenizer %s: token %d duplicates the piece of token %d", TOK_PATH, b, a);
    }
    t->space_id = lookup(t, " ");
}

static int checked_id(const struct bf_tokenizer *t, int id, unsigned char byte)
{
    if (id >= t->vocab_size)
        bf_panic("tokenizer %s: prompt byte 0x%02x has no piece and its byte-fallback id %d is not below "
                 "vocab_size %d", TOK_PATH, byte, id, t->vocab_size);
    return id;
}

int bf_encode(const struct bf_tokenizer *t, const char *text, int *out)
{
    static char buf[2 * 1024 + 2];           /* two pieces of at most max_token_length (1024) */
    int n = 0;
    size_t blen = 0;

    out[n++] = BOS;
    if (text[0]) {
        if (t->space_id < 0)
            bf_panic("tokenizer %s: no \" \" piece for the dummy prefix of a non-empty prompt", TOK_PATH);
        out[n++] = t->space_id;
    }
    /* One UTF-8 character at a time (at most 4 bytes); unknown characters fall back to bytes. */
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if ((*p & 0xC0) != 0x80)
            blen = 0;
        buf[blen++] = (char)*p;
        buf[blen] = 0;
        if ((p[1] & 0xC0) == 0x80 && blen < 4)
            continue;
        int id = lookup(t, buf);
        if (id >= 0) {
            out[n++] = id;
        } else {
            for (size_t i = 0; i < blen; i++)
                out[n++] = checked_id(t, (unsigned char)buf[i] + 3, (unsigned char)buf[i]);
        }
        blen = 0;
    }
    for (;;) {
        float best = -1e10f;
        int best_id = -1, best_at = -1;
        for (int i = 0; i + 1 < n; i++) {
            size_t a = (size_t)t->lengths[out[i]], b = (size_t)t->lengths[out[i + 1]];
            memcpy(buf, t->pieces[out[i]], a);
            memcpy(buf + a, t->pieces[out[i + 1]], b);
            buf[a + b] = 0;
            int id = lookup(t, buf);
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

static int hex_digit(char c)
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
    static char bytes[256];
    const char *piece = t->pieces[token];
    size_t n = (size_t)t->lengths[token];
    if (prev == BOS && n && piece[0] == ' ') {
        piece++;
        n--;
    }
    if (n == 6 && memcmp(piece, "<0x", 3) == 0 && piece[5] == '>') {
        int hi = hex_digit(piece[3]), lo = hex_digit(piece[4]);
        if (hi >= 0 && lo >= 0) {
            int b = hi * 16 + lo;
            bytes[b] = (char)b;
            *len = 1;
            return &bytes[b];
        }
    }
    *len = n;
    return piece;
}
