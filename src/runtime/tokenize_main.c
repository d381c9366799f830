/* tokenize_main.c - the hosted tokenizer test mode: the kernel's tokenizer on outside vectors.
 *
 * Promise: reads /TOKENIZR.BIN (any vocab size) and /TOKTEST.BIN = u32 flags (bit 0: parse
 * special tokens, bit 1: add BOS as the file says), u32 count, then count x (u32 length,
 * bytes), and prints "ids:" and the token ids of each text on one line, in order; a malformed
 * test file stops the run naming it.  Only bareflow-hosted calls this.
 */
#include <string.h>

#include "bareflow/runtime.h"
#include "bareflow/tcb.h"
#include "rt.h"
#include "tokenizer.h"

int bf_tokenize_main(void)
{
    static struct bf_tokenizer tok;
    static char text[BF_TOK_MAX_TEXT + 1];
    size_t size;

    bf_tcb_init();
    bf_files_init();
    bf_tokenizer_load(&tok, -1);
    const uint8_t *d = bf_read_file("/TOKTEST.BIN", &size);
    if (size < 8)
        bf_panic("/TOKTEST.BIN: %zu bytes, shorter than its header", size);
    uint32_t flags = bf_le32(d), count = bf_le32(d + 4);
    int cap = 4 * BF_TOK_MAX_TEXT + 8;
    int *ids = bf_alloc((size_t)cap * sizeof(int), 64, "test ids");
    size_t off = 8;
    for (uint32_t k = 0; k < count; k++) {
        if (size - off < 4)
            bf_panic("/TOKTEST.BIN: ends inside the length of text %u", k);
        uint32_t len = bf_le32(d + off);
        off += 4;
        if (len > BF_TOK_MAX_TEXT || len > size - off)
            bf_panic("/TOKTEST.BIN: text %u of %u bytes runs past the file or the %d-byte limit", k, len,
                     BF_TOK_MAX_TEXT);
        memcpy(text, d + off, len);
        text[len] = 0;
        off += len;
        if (strlen(text) != len)
            bf_panic("/TOKTEST.BIN: text %u holds a NUL byte", k);
        struct bf_tokenizer t = tok;
        if (!(flags & 2))
            t.add_bos = 0;
        int n = bf_encode(&t, text, (int)(flags & 1), ids, cap);
        bf_printf("ids:");
        for (int i = 0; i < n; i++)
            bf_printf(" %d", ids[i]);
        bf_printf("\n");
    }
    return BF_EXIT_OK;
}
