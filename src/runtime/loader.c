/* loader.c - checks and places BFMD module files (docs/module-format.md).
 *
 * Promise: bf_load_module returns a callable entry only after every rule of the format held
 * (size, magic, version, CRC-32, the layer/tier the caller asked for, an ISA level this CPU runs
 * and that is the level chosen at boot (bf_isa), the layer ABI version, every size, alignment,
 * relocation and import); otherwise the run stops with "module <file>: <what is wrong>".  The
 * image is copied into fresh zeroed arena memory, so the tail (bss and import slots) is zero
 * before the two relocation kinds are applied.  No byte of the file is executed before that.
 * bf_load_module_image applies the same rules to an image the JIT built in memory
 * (jit_object.c) and returns NULL with the reason instead of stopping the run.
 */
#include <stdio.h>
#include <string.h>

#include "bareflow/exports.h"
#include "bareflow/platform.h"
#include "bareflow/runtime.h"
#include "rt.h"

#define HDR 64
#define RELOC_BYTES 16
#define IMPORT_BYTES 32
#define MAX_IMAGE (16u << 20)
#define MAX_IMPORTS 256
#define RELATIVE64 1
#define IMPORT64 2

int bf_isa = -1;

const char *bf_module_path(int layer, int tier, int isa)
{
    static char path[32];
    const char *name = bf_layer_names[layer];
    size_t n = 0;
    memcpy(path, "/MODULES/", 9);
    n = 9;
    for (; *name && n < 9 + 8; name++)
        path[n++] = (*name >= 'a' && *name <= 'z') ? (char)(*name - 'a' + 'A') : *name;
    path[n++] = '.';
    path[n++] = 'O';
    path[n++] = (char)('0' + tier);
    if (isa > 0)
        path[n++] = (char)('1' + isa);   /* x86-64-v2 .. -v4 */
    path[n] = 0;
    return path;
}

static void *find_export(const char *name)
{
    for (unsigned i = 0; i < bf_export_count; i++)
        if (strcmp(bf_exports[i].name, name) == 0)
            return bf_exports[i].address;
    return NULL;
}

/* The 16-byte layer field: 1-15 of [a-z0-9_], NUL-padded to the end. */
static int layer_field_ok(const uint8_t *f, char out[16])
{
    int n = 0;
    while (n < 16 && f[n]) {
        char c = (char)f[n];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
        out[n] = c;
        n++;
    }
    if (n == 0 || n == 16)
        return 0;
    out[n] = 0;
    for (int i = n; i < 16; i++)
        if (f[i])
            return 0;
    return 1;
}

/* Check BFMD bytes `f` against every rule and place them; NULL with the reason in err (which
 * starts "module <path>: ") when a rule fails.  `run_time` marks an image the JIT produced in
 * memory for this very CPU: its isa code is BF_ISA_HOST and the ISA level the run chose for its
 * module files does not apply to it. */
static bf_layer_fn place(const char *path, const uint8_t *f, size_t size, int layer, int tier, int run_time,
                         char *err, size_t errlen)
{
    char name[16];

#define BAD(...) do { snprintf(err, errlen, "module %s: " __VA_ARGS__); return NULL; } while (0)
    if (size < HDR)
        BAD("file is %zu bytes, shorter than the %d-byte header", path, size, HDR);
    if (memcmp(f, "BFMD", 4) != 0)
        BAD("bad magic %02x %02x %02x %02x, expected \"BFMD\"", path, f[0], f[1], f[2], f[3]);
    if (bf_le16(f + 4) != 1)
        BAD("version %u, this kernel reads version 1", path, bf_le16(f + 4));
    if (bf_le16(f + 6) != HDR)
        BAD("header_size %u, expected %d", path, bf_le16(f + 6), HDR);
    uint32_t image_size = bf_le32(f + 28), file_image = bf_le32(f + 32), align = bf_le32(f + 36);
    uint32_t entry = bf_le32(f + 40), text = bf_le32(f + 44), n_relocs = bf_le32(f + 48);
    uint32_t n_imports = bf_le32(f + 52), file_size = bf_le32(f + 56), crc = bf_le32(f + 60);
    if (file_size != size)
        BAD("file_size field %u, but the file is %zu bytes", path, file_size, size);
    static const uint8_t zero[4];
    uint32_t got = bf_crc32(bf_crc32(bf_crc32(0, f, 60), zero, 4), f + HDR, size - HDR);
    if (got != crc)
        BAD("crc32 0x%08x in the header, the contents give 0x%08x", path, crc, got);
    if (!layer_field_ok(f + 8, name))
        BAD("layer field is not 1-15 characters [a-z0-9_] padded with NUL", path);
    if (strcmp(name, bf_layer_names[layer]) != 0)
        BAD("holds layer '%s', expected '%s'", path, name, bf_layer_names[layer]);
    if (f[24] > 3)
        BAD("tier code %u is not 0..3", path, f[24]);
    if (f[24] != tier)
        BAD("holds tier O%u, the file name says O%d", path, f[24], tier);
    if (run_time) {
        if (f[25] != BF_ISA_HOST)
            BAD("isa code %u, expected %u (run-time code for the CPU the run is on)", path, f[25], BF_ISA_HOST);
    } else {
        const char *missing;
        int cpu = platform_cpu_isa_level(&missing);
        if (f[25] > 3)
            BAD("isa code %u is unknown (0..3 = x86-64, x86-64-v2, x86-64-v3, x86-64-v4)", path, f[25]);
        if (f[25] > cpu)
            BAD("built for %s but this CPU runs up to %s (no %s)", path, bf_isa_names[f[25]], bf_isa_names[cpu],
                missing);
        if (f[25] != bf_isa)
            BAD("built for %s, but this run uses %s modules", path, bf_isa_names[f[25]], bf_isa_names[bf_isa]);
    }
    if (bf_le16(f + 26) != BF_LAYER_ABI_VERSION)
        BAD("abi_version %u, this kernel has layer ABI %d", path, bf_le16(f + 26), BF_LAYER_ABI_VERSION);
    if (image_size > MAX_IMAGE || file_image > image_size)
        BAD("image_size %u with file_image_size %u (need file_image_size <= image_size <= 16 MiB)", path,
            image_size, file_image);
    if (align < 16 || align > 4096 || (align & (align - 1)))
        BAD("align %u is not a power of two in 16..4096", path, align);
    if (text > file_image)
        BAD("text_size %u exceeds file_image_size %u", path, text, file_image);
    if (entry >= text)
        BAD("entry_offset %u is not inside the code (text_size %u)", path, entry, text);
    if (entry != 0)
        BAD("entry_offset %u, expected 0 (the build places bf_layer_entry first in the code)", path, entry);
    if (n_imports > MAX_IMPORTS)
        BAD("n_imports %u, at most %d", path, n_imports, MAX_IMPORTS);
    uint64_t expect = HDR + (uint64_t)file_image + (uint64_t)RELOC_BYTES * n_relocs +
                      (uint64_t)IMPORT_BYTES * n_imports;
    if (expect != size)
        BAD("file is %zu bytes, the header's sizes add up to %llu", path, size, (unsigned long long)expect);

    const uint8_t *relocs = f + HDR + file_image, *imports = relocs + (size_t)RELOC_BYTES * n_relocs;
    static void *addr[MAX_IMPORTS];
    for (uint32_t i = 0; i < n_imports; i++) {
        const char *sym = (const char *)imports + (size_t)IMPORT_BYTES * i;
        size_t len = 0;
        while (len < IMPORT_BYTES && sym[len])
            len++;
        if (len == 0 || len == IMPORT_BYTES)
            BAD("import %u is not a NUL-terminated name of 1-31 bytes", path, i);
        for (size_t k = len; k < IMPORT_BYTES; k++)
            if (sym[k])
                BAD("import %u ('%s') has bytes after its terminating NUL", path, i, sym);
        for (size_t k = 0; k < len; k++)
            if (sym[k] <= 0x20 || sym[k] > 0x7E)
                BAD("import %u has the non-printable byte 0x%02x in its name", path, i, (unsigned char)sym[k]);
        if (!(addr[i] = find_export(sym)))
            BAD("layer %s tier %s imports '%s', which the kernel does not export", path, name, bf_tier_names[tier],
                sym);
    }
    uint64_t next_free = text;            /* relocations patch data only, in ascending order */
    for (uint32_t i = 0; i < n_relocs; i++) {
        const uint8_t *r = relocs + (size_t)RELOC_BYTES * i;
        uint32_t off = bf_le32(r), index = bf_le16(r + 6);
        uint16_t kind = bf_le16(r + 4);
        int64_t addend = (int64_t)bf_le64(r + 8);
        if (kind != RELATIVE64 && kind != IMPORT64)
            BAD("relocation %u has kind %u (1 = RELATIVE64, 2 = IMPORT64)", path, i, kind);
        if ((uint64_t)off + 8 > image_size)
            BAD("relocation %u patches offset %u, outside the %u-byte image", path, i, off, image_size);
        if (off < text)
            BAD("relocation %u patches offset %u, inside the code (text_size %u); the build never patches code",
                path, i, off, text);
        if (off < next_free)
            BAD("relocation %u at offset %u overlaps or precedes the one before (records are ascending, 8 bytes "
                "apart)", path, i, off);
        next_free = (uint64_t)off + 8;
        if (kind == RELATIVE64 && (index != 0 || addend < 0 || addend > (int64_t)image_size))
            BAD("RELATIVE64 relocation %u has import index %u and addend %lld (need 0 and 0..%u)", path, i, index,
                (long long)addend, image_size);
        if (kind == RELATIVE64 && (uint64_t)off + 8 > file_image)
            BAD("RELATIVE64 relocation %u patches offset %u in the zero-filled tail (file_image_size %u)", path, i,
                off, file_image);
        if (kind == IMPORT64 && index >= n_imports)
            BAD("IMPORT64 relocation %u names import %u of %u", path, i, index, n_imports);
        if (kind == IMPORT64 && addend != 0)
            BAD("IMPORT64 relocation %u has addend %lld, expected 0 (an import is a function's address)", path, i,
                (long long)addend);
    }

    /* Every rule held: place the image and bind it. */
    uint8_t *base = run_time ? platform_alloc(image_size, align) : bf_alloc(image_size, align, path);
    if (!base)
        BAD("no arena memory for the %u-byte image", path, image_size);
#undef BAD
    memcpy(base, f + HDR, file_image);
    for (uint32_t i = 0; i < n_relocs; i++) {
        const uint8_t *r = relocs + (size_t)RELOC_BYTES * i;
        uint64_t addend = bf_le64(r + 8);
        uint64_t value = bf_le16(r + 4) == RELATIVE64 ? (uint64_t)(uintptr_t)base + addend
                                                      : (uint64_t)(uintptr_t)addr[bf_le16(r + 6)] + addend;
        memcpy(base + bf_le32(r), &value, 8);
    }
    return (bf_layer_fn)(uintptr_t)(base + entry);
}

bf_layer_fn bf_load_module(int layer, int tier)
{
    static char err[256];
    const char *path = bf_module_path(layer, tier, bf_isa);
    size_t size;
    const uint8_t *f = bf_read_file(path, &size);
    bf_layer_fn fn = place(path, f, size, layer, tier, 0, err, sizeof err);
    if (!fn)
        bf_panic("%s", err);
    return fn;
}

bf_layer_fn bf_load_module_image(const char *what, const void *image, size_t size, int layer, int level, char *err,
                                 size_t errlen)
{
    return place(what, image, size, layer, level, 1, err, errlen);
}
