/* profile.c - writes the run's profile into /PROFILE.BIN in place (docs/profile-file.md).
 *
 * Promise: the 4096 bytes written are a complete BFPR version 3 profile with its CRC: the layer
 * entries, the run-time compile records when compiles happened, then the cores section (per-core
 * busy cycles and, per split layer, per-core chunk cycles - as many cores as fit, every used core
 * unless the file is full); they go into the clusters the build pre-allocated and nowhere else.  A missing file, a file of another
 * size or no disk is a warning on the console, not a failed run.
 */
#include <string.h>

#include "bareflow/platform.h"
#include "rt.h"

#define PROFILE_PATH "/PROFILE.BIN"
#define PROFILE_BYTES 4096
#define HDR 32
#define ENTRY 96
#define JIT_RECORD 64
#define CORES_HDR 16
#define ROW_HDR 8

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

/* The cores section at `at` (docs/profile-file.md); returns the offset after it.  Cores past
 * what the 4096 bytes still hold are left out and `recorded` says how many are in. */
static size_t put_cores(uint8_t *buf, size_t at)
{
    const struct bf_cores *k = bf_cores();
    int rows = 0;
    for (int id = 0; id < BF_N_LAYERS; id++)
        rows += bf_layer_phases(id) != 0;
    size_t room = PROFILE_BYTES - at - CORES_HDR - ROW_HDR * (size_t)rows;
    int recorded = k->used;
    if ((size_t)recorded * 8 * (size_t)(rows + 1) > room)
        recorded = (int)(room / (8 * (size_t)(rows + 1)));
    uint8_t *c = buf + at;
    memcpy(c, "BFCC", 4);
    c[4] = (uint8_t)k->found;
    c[5] = (uint8_t)(k->found >> 8);
    c[6] = (uint8_t)k->started;
    c[7] = (uint8_t)k->used;
    c[8] = (uint8_t)recorded;
    c[9] = (uint8_t)rows;
    uint8_t *p = c + CORES_HDR;
    for (int core = 0; core < recorded; core++, p += 8)
        put64(p, k->busy_cycles[core]);
    for (int id = 0; id < BF_N_LAYERS; id++) {
        if (!bf_layer_phases(id))
            continue;
        p[0] = (uint8_t)id;                       /* index of the layer's entry */
        p += ROW_HDR;
        for (int core = 0; core < recorded; core++, p += 8)
            put64(p, bf_layer_stats(id)->core_cycles[core]);
    }
    return (size_t)(p - buf);
}

void bf_write_profile(const struct bf_run *run)
{
    static uint8_t buf[PROFILE_BYTES];
    memset(buf, 0, sizeof buf);
    memcpy(buf, "BFPR", 4);
    buf[4] = 3;                                   /* version 3, u16 */
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
    /* Version 2: the run-time compiles follow the layers (docs/profile-file.md). */
    int n;
    const struct bf_jit_record *r = bf_jit_records(&n);
    size_t used = HDR + ENTRY * BF_N_LAYERS;
    if (n) {
        uint8_t *j = buf + used;
        memcpy(j, "BFJC", 4);
        j[4] = (uint8_t)n;
        j[6] = JIT_RECORD;
        for (int i = 0; i < n; i++) {
            uint8_t *e = j + 8 + JIT_RECORD * i;
            memcpy(e, bf_layer_names[r[i].layer], strlen(bf_layer_names[r[i].layer]));
            e[16] = (uint8_t)r[i].code;
            e[17] = (uint8_t)r[i].ok;
            e[18] = (uint8_t)r[i].core;
            e[19] = (uint8_t)((r[i].is_inline ? 1 : 0) | (r[i].timed_out ? 2 : 0) | (r[i].late ? 4 : 0));
            put32(e + 20, (uint32_t)r[i].object_size);
            put64(e + 24, r[i].cycles);
            put64(e + 32, r[i].swap_call);
            size_t len = strlen(r[i].cpu);
            memcpy(e + 40, r[i].cpu, len < 23 ? len : 23);
        }
        used += 8 + (size_t)JIT_RECORD * (size_t)n;
    }
    used = put_cores(buf, used);
    put32(buf + 12, bf_crc32(0, buf, used));
    bf_overwrite_file(PROFILE_PATH, buf, sizeof buf);
}
