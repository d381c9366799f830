/* jit.c - run-time tiers: a layer's bitcode from the image, compiled for this CPU, loaded.
 *
 * Promise: bf_jit_tier returns a callable entry only when every step held — the bitcode file
 * /MODULES/<LAYER>.BC passed every rule of docs/bitcode-file.md before the compiler saw a byte,
 * the compiler produced an object, and that object passed the module loader's rules after the
 * same conversion the build applies (jit_object.c).  Any failure returns NULL and a one-line
 * reason; nothing here stops the run.  Every attempt, good or bad, is recorded for the result
 * line and /PROFILE.BIN.  Compiles run inline on the calling core (core 0) in this version.
 */
#include <stdio.h>
#include <string.h>

#include "bareflow/jit.h"
#include "bareflow/layer_abi.h"
#include "bareflow/platform.h"
#include "rt.h"

#define BC_HDR 48
#define BC_MAX (8u << 20)

static struct bf_jit_record records[BF_MAX_JIT_RECORDS];
static int n_records;
static char cpu_override[64];
static uint64_t heap_kib = 65536;
static uint64_t init_cycles;
static int init_state;                 /* 0 not tried, 1 running, -1 failed */
static char init_error[160];
static char host_cpu[64], host_features[2048];

const char *const bf_jit_kind_names[4] = {"aot", "host", "x86-64-v3", "x86-64-v4"};

const char *bf_tier_name(int code)
{
    static const char *const names[4][4] = {
        {"O0", "O1", "O2", "O3"},
        {"O0@host", "O1@host", "O2@host", "O3@host"},
        {"O0@x86-64-v3", "O1@x86-64-v3", "O2@x86-64-v3", "O3@x86-64-v3"},
        {"O0@x86-64-v4", "O1@x86-64-v4", "O2@x86-64-v4", "O3@x86-64-v4"}};
    return code >= 0 && code < 0x40 && (code & 0xC) == 0 ? names[code >> 4][code & 3] : "?";
}

void bf_jit_configure(const struct bf_run_config *rc)
{
    memcpy(cpu_override, rc->jit_cpu, sizeof cpu_override);
    heap_kib = rc->jit_heap_kib;
}

const struct bf_jit_record *bf_jit_records(int *n)
{
    *n = n_records;
    return records;
}

void bf_jit_note_swap(int record, uint64_t call)
{
    if (record >= 0 && record < n_records)
        records[record].swap_call = call;
}

uint64_t bf_jit_init_cycles(void)
{
    return init_cycles;
}

const char *bf_bitcode_path(int layer)
{
    static char path[32];
    const char *m = bf_module_path(layer, 0, 0);     /* "/MODULES/NAME.O0" (x86-64) */
    size_t n = strlen(m) - 2;
    memcpy(path, m, n);
    memcpy(path + n, "BC", 3);
    return path;
}

/* The bitcode inside a BFBC file, or NULL with the reason (docs/bitcode-file.md). */
static const uint8_t *check_bitcode(int layer, const uint8_t *f, size_t size, size_t *bc_size, char *err,
                                    size_t errlen)
{
    const char *path = bf_bitcode_path(layer);
#define BAD(...) do { snprintf(err, errlen, "bitcode %s: " __VA_ARGS__); return NULL; } while (0)
    if (size < BC_HDR)
        BAD("%zu bytes, shorter than the %d-byte header", path, size, BC_HDR);
    if (memcmp(f, "BFBC", 4) != 0)
        BAD("bad magic %02x %02x %02x %02x, expected \"BFBC\"", path, f[0], f[1], f[2], f[3]);
    if (bf_le16(f + 4) != 1 || bf_le16(f + 6) != BC_HDR)
        BAD("version %u header_size %u, this kernel reads version 1 with a %d-byte header", path, bf_le16(f + 4),
            bf_le16(f + 6), BC_HDR);
    uint32_t n = bf_le32(f + 24), crc = bf_le32(f + 28);
    if (n > BC_MAX || (size_t)n + BC_HDR != size)
        BAD("bitcode_size %u, but the file is %zu bytes (need %d + bitcode_size, at most 8 MiB)", path, n, size,
            BC_HDR);
    static const uint8_t zero[4];
    uint32_t got = bf_crc32(bf_crc32(bf_crc32(0, f, 28), zero, 4), f + 32, size - 32);
    if (got != crc)
        BAD("crc32 0x%08x in the header, the contents give 0x%08x", path, crc, got);
    char name[17];
    memcpy(name, f + 8, 16);
    name[16] = 0;
    if (strcmp(name, bf_layer_names[layer]) != 0 || f[8 + strlen(name)] != 0)
        BAD("holds layer '%.16s', expected '%s'", path, name, bf_layer_names[layer]);
    for (int i = (int)strlen(name); i < 16; i++)
        if (f[8 + i])
            BAD("layer field has bytes after its NUL", path);
    for (int i = 32; i < 48; i++)
        if (!((f[i] >= 0x20 && f[i] < 0x7f) || (f[i] == 0 && (i == 47 || !f[i + 1]))))
            BAD("producer field is not printable ASCII padded with NUL", path);
    if (memcmp(f + 32, "LLVM22.", 7) != 0)
        BAD("written by %.16s; the run-time compiler reads LLVM 22 bitcode", path, (const char *)f + 32);
    const uint8_t *bc = f + BC_HDR;
    if (n < 4 || !(memcmp(bc, "BC\xC0\xDE", 4) == 0))
        BAD("payload does not start with the LLVM bitcode magic 'BC' 0xC0DE", path);
#undef BAD
    *bc_size = n;
    return bc;
}

/* "+avx2,+fma,..." reduced to the enabled vector features a reader of the result line wants. */
static void summarise(const char *features, char *out, size_t n)
{
    static const char *const keys[] = {"sse4.2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl",
                                       "avx512vnni", "avx512bf16", "avx512fp16"};
    size_t used = 0;
    out[0] = 0;
    for (unsigned k = 0; k < sizeof keys / sizeof *keys; k++) {
        size_t len = strlen(keys[k]);
        for (const char *p = features; *p;) {
            const char *end = p;
            while (*end && *end != ',')
                end++;
            if (*p == '+' && (size_t)(end - p - 1) == len && memcmp(p + 1, keys[k], len) == 0) {
                used += (size_t)snprintf(out + used, n - used, "%s%s", used ? "," : "", keys[k]);
                if (used >= n)
                    used = n - 1;
                break;
            }
            p = *end ? end + 1 : end;
        }
    }
}

static int start_backend(char *err, size_t errlen)
{
    if (init_state == 1)
        return 0;
    if (init_state < 0) {
        snprintf(err, errlen, "%s", init_error);
        return -1;
    }
    uint64_t t0 = platform_cycles();
    init_state = -1;
    if (!bf_jit_backend()) {
        snprintf(init_error, sizeof init_error, "this kernel was built with JIT=none");
    } else {
        void *heap = platform_alloc((size_t)heap_kib << 10, 4096);
        if (!heap)
            snprintf(init_error, sizeof init_error, "no arena memory for the %llu KiB JIT heap",
                     (unsigned long long)heap_kib);
        else if (bf_jit_init(heap, (size_t)heap_kib << 10, init_error, sizeof init_error) == 0 &&
                 bf_jit_host(host_cpu, sizeof host_cpu, host_features, sizeof host_features) == 0)
            init_state = 1;
        else if (!init_error[0])
            snprintf(init_error, sizeof init_error, "%s", host_cpu);
    }
    init_cycles = platform_cycles() - t0;
    if (init_state < 0) {
        snprintf(err, errlen, "%s", init_error);
        return -1;
    }
    return 0;
}

bf_layer_fn bf_jit_tier(int layer, int code, int *record)
{
    static char err[200];
    struct bf_jit_record scratch, *r = n_records < BF_MAX_JIT_RECORDS ? &records[n_records++] : &scratch;
    int kind = code >> 4;
    memset(r, 0, sizeof *r);
    r->layer = layer;
    r->code = code;
    r->core = 0;
    *record = (int)(r - records);
    uint64_t t0 = platform_cycles();
    bf_layer_fn fn = NULL;
    const char *cpu = "", *features = "";
    err[0] = 0;

    if (start_backend(err, sizeof err) < 0)
        goto out;
    if (kind == 1) {
        cpu = cpu_override[0] ? cpu_override : host_cpu;
        features = cpu_override[0] ? "" : host_features;
    } else {
        cpu = bf_jit_kind_names[kind];
        features = "+sse,+sse2";
        /* kind 2 = x86-64-v3, 3 = x86-64-v4: the same numbers as their ISA codes (x86_isa.h). */
        const char *missing;
        int level = platform_cpu_isa_level(&missing);
        if (kind > level) {
            snprintf(err, sizeof err, "code for %s asked for, but this CPU runs up to %s (no %s)",
                     bf_isa_names[kind], bf_isa_names[level], missing);
            goto out;
        }
    }
    snprintf(r->cpu, sizeof r->cpu, "%s", cpu);
    summarise(features, r->features, sizeof r->features);
    size_t size, bc_size;
    const char *path = bf_bitcode_path(layer);
    if (!bf_file_exists(path)) {
        snprintf(err, sizeof err, "bitcode %s is not on the image", path);
        goto out;
    }
    const uint8_t *f = bf_read_file(path, &size);
    const uint8_t *bc = check_bitcode(layer, f, size, &bc_size, err, sizeof err);
    if (!bc)
        goto out;
    void *obj;
    size_t obj_size;
    if (bf_jit_compile(bc, bc_size, bf_layer_names[layer], code & 3, cpu, features, &obj, &obj_size, err,
                       sizeof err) < 0)
        goto out;
    r->object_size = obj_size;
    size_t bfmd_size;
    void *bfmd = bf_object_to_bfmd(obj, obj_size, layer, code & 3, &bfmd_size, err, sizeof err);
    bf_jit_release(obj);
    if (!bfmd)
        goto out;
    fn = bf_load_module_image(bf_tier_name(code), bfmd, bfmd_size, layer, code & 3, err, sizeof err);
out:
    r->cycles = platform_cycles() - t0;
    r->ok = fn != NULL;
    if (!fn)
        snprintf(r->error, sizeof r->error, "%s", err);
    return fn;
}
