/* profile.c - writes the run's profile into /PROFILE.BIN in place (docs/profile-file.md).
 *
 * Promise: the 4096 bytes written are a complete BFPR version 1 profile with its CRC; they go
 * into the clusters the build pre-allocated and nowhere else.  A missing file, a file of another
 * size or no disk is a warning on the console, not a failed run.
 */
#include <string.h>

#include "bareflow/platform.h"
#include "rt.h"

#define PROFILE_PATH "/PROFILE.BIN"
#define PROFILE_BYTES 4096
#define HDR 32
#define ENTRY 96

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

void bf_write_profile(const struct bf_run *run)
{
    static uint8_t buf[PROFILE_BYTES];
    memset(buf, 0, sizeof buf);
    memcpy(buf, "BFPR", 4);
    buf[4] = 1;                                   /* version 1, u16 */
    buf[6] = BF_N_LAYERS;                         /* n_layers, u16 */
    put32(buf + 8, (uint32_t)run->n_tokens);
    put64(buf + 16, platform_cycles_per_second());
    put64(buf + 24, run->loop_cycles);
    for (int id = 0; id < BF_N_LAYERS; id++) {
        const struct bf_layer_stats *st = bf_layer_stats(id);
        uint8_t *e = buf + HDR + ENTRY * id;
        memcpy(e, bf_layer_names[id], strlen(bf_layer_names[id]));
        for (int t = 0; t < BF_N_TIERS; t++) {
            put64(e + 16 + 8 * t, st->calls[t]);
            put64(e + 48 + 8 * t, st->cycles[t]);
        }
        e[80] = (uint8_t)st->tier;
        e[81] = (uint8_t)st->n_changes;
    }
    put32(buf + 12, bf_crc32(0, buf, HDR + ENTRY * BF_N_LAYERS));
    bf_overwrite_file(PROFILE_PATH, buf, sizeof buf);
}
