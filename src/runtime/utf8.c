/* utf8.c - UTF-8 checking and whole-character output.
 *
 * Promise: "valid" means RFC 3629 UTF-8 (no overlong forms, no surrogates, nothing above
 * U+10FFFF); a malformed
 * sequence is replaced by one U+FFFD per maximal ill-formed subpart, which is what Python's
 * bytes.decode("utf-8", errors="replace") produces, so the console and the result line agree
 * with the build's reference.  The stream writer never splits a character across writes.
 */
#include <string.h>

#include "rt.h"
#include "tokenizer.h"

size_t bf_utf8_lead_len(uint8_t lead)
{
    static const uint8_t lens[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lens[lead >> 4];
}

/* Bytes of the maximal prefix of s that can start a well-formed character (Unicode table
 * 3-7), and whether it is complete (returned as the length, 0 = ill-formed at s[0]). */
static size_t well_formed(const uint8_t *s, size_t len, size_t *prefix, uint32_t *cp, int *truncated)
{
    uint8_t b = s[0];
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    *prefix = 1;
    *truncated = 0;
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    if (b >= 0xC2 && b <= 0xDF) {
        need = 2;
        *cp = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 3;
        *cp = b & 0x0F;
        if (b == 0xE0)
            lo = 0xA0;
        if (b == 0xED)
            hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 4;
        *cp = b & 0x07;
        if (b == 0xF0)
            lo = 0x90;
        if (b == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    for (size_t i = 1; i < need; i++) {
        if (i >= len) {
            *truncated = 1;
            return 0;
        }
        uint8_t c = s[i];
        if (c < lo || c > hi)
            return 0;
        lo = 0x80;
        hi = 0xBF;
        *cp = *cp << 6 | (c & 0x3F);
        *prefix = i + 1;
    }
    return need;
}

size_t bf_utf8_char(const uint8_t *s, size_t len, uint32_t *cp)
{
    size_t prefix;
    int truncated;
    if (!len)
        return 0;
    return well_formed(s, len, &prefix, cp, &truncated);
}

size_t bf_utf8_bad_len(const uint8_t *s, size_t len)
{
    size_t prefix;
    uint32_t cp;
    int truncated;
    well_formed(s, len, &prefix, &cp, &truncated);
    return prefix;
}

size_t bf_utf8_put(uint32_t cp, uint8_t *out)
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | cp >> 6);
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | cp >> 12);
        out[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | cp >> 18);
    out[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

long bf_utf8_invalid_at(const void *data, size_t len)
{
    const uint8_t *s = data;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = bf_utf8_char(s + i, len - i, &cp);
        if (!n)
            return (long)i;
        i += n;
    }
    return -1;
}

/* Write the complete characters at the front of p[0..*n); keep an incomplete tail that could
 * still become a character. */
static void drain(struct bf_utf8_stream *st, int final)
{
    static const char replacement[3] = {(char)0xEF, (char)0xBF, (char)0xBD};
    size_t i = 0, n = (size_t)st->n;
    while (i < n) {
        uint32_t cp;
        size_t prefix;
        int truncated;
        size_t k = well_formed(st->pending + i, n - i, &prefix, &cp, &truncated);
        if (k) {
            bf_write((const char *)st->pending + i, k);
            i += k;
        } else if (!final && truncated) {
            break;                    /* a character still arriving */
        } else {
            bf_write(replacement, 3);
            i += prefix;
        }
    }
    memmove(st->pending, st->pending + i, n - i);
    st->n = (int)(n - i);
}

void bf_utf8_stream_write(struct bf_utf8_stream *st, const char *bytes, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        st->pending[st->n++] = (uint8_t)bytes[i];
        /* ASCII and complete characters go out at once; 4 bytes always decide. */
        drain(st, 0);
    }
}

void bf_utf8_flush(struct bf_utf8_stream *st)
{
    drain(st, 1);
}
