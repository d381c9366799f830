/* jit_object.c - an ELF relocatable object from the run-time compiler to BFMD bytes.
 *
 * Promise: bf_object_to_bfmd applies, in C and to an object in memory, the same conversion
 * the build applies to tier objects (bareflow_plugins/modformat.py pack(), docs/module-format.md):
 * allocated sections placed code first, then read-only data, then data, then bss; PC32/PLT32
 * references resolved now; R_X86_64_64 becomes RELATIVE64 (or IMPORT64 for an import); each
 * imported function gets a `jmp *slot(%rip)` stub and an IMPORT64 slot.  The result goes to the
 * module loader (loader.c), which checks it like any module file.  Every offset, size and index
 * in the object is bounds-checked first: an object that is not a well-formed x86-64 ELF64
 * relocatable, that uses another relocation type, that imports a function the kernel does not
 * export, or that defines no bf_layer_entry function gives NULL and the reason, never a fault.
 */
#include <stdio.h>
#include <string.h>

#include "bareflow/exports.h"
#include "bareflow/layer_abi.h"
#include "bareflow/platform.h"
#include "rt.h"

#define MAX_SECTIONS 512
#define MAX_IMPORTS 256
#define R_64 1
#define R_PC32 2
#define R_PLT32 4
#define SHF_WRITE 1u
#define SHF_ALLOC 2u
#define SHF_EXEC 4u
#define SHT_SYMTAB 2
#define SHT_RELA 4
#define SHT_NOBITS 8
#define SHT_REL 9
#define SHN_UNDEF 0
#define SHN_LORESERVE 0xff00u
#define HDR 64

struct sec {
    uint64_t off, size, align, flags;
    uint32_t type, link, info;
    int64_t base;                 /* place in the image, -1 when not loaded */
};

static int exported(const char *name)
{
    for (unsigned i = 0; i < bf_export_count; i++)
        if (strcmp(bf_exports[i].name, name) == 0)
            return 1;
    return 0;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }

/* The NUL-terminated name at `off` of string table section `t`, or NULL. */
static const char *str_at(const uint8_t *o, size_t n, const struct sec *t, uint64_t off)
{
    if (off >= t->size || t->off + t->size > n)
        return NULL;
    const char *s = (const char *)o + t->off + off;
    for (uint64_t i = 0; i < t->size - off; i++)
        if (!s[i])
            return s;
    return NULL;
}

void *bf_object_to_bfmd(const void *object, size_t n, int layer, int level, size_t *out_size, char *err,
                        size_t errlen)
{
    static struct sec secs[MAX_SECTIONS];
    static const char *imports[MAX_IMPORTS];
    static uint64_t stub_at[MAX_IMPORTS];
    const uint8_t *o = object;

#define BAD(...) do { snprintf(err, errlen, "run-time object: " __VA_ARGS__); return NULL; } while (0)
    if (n < 64 || memcmp(o, "\177ELF\2\1", 6) != 0)
        BAD("not a little-endian ELF64 file");
    if (bf_le16(o + 16) != 1 || bf_le16(o + 18) != 62)
        BAD("ELF type %u machine %u, expected a relocatable (1) for x86-64 (62)", bf_le16(o + 16), bf_le16(o + 18));
    uint64_t shoff = bf_le64(o + 40);
    unsigned shentsize = bf_le16(o + 58), shnum = bf_le16(o + 60);
    if (shentsize != 64 || shnum > MAX_SECTIONS || shoff > n || (uint64_t)shnum * 64 > n - shoff)
        BAD("section header table (%u entries of %u bytes at %llu) does not fit the %zu-byte object", shnum,
            shentsize, (unsigned long long)shoff, n);
    int symtab = -1;
    for (unsigned i = 0; i < shnum; i++) {
        const uint8_t *h = o + shoff + 64ull * i;
        struct sec *s = &secs[i];
        s->type = bf_le32(h + 4);
        s->flags = bf_le64(h + 8);
        s->off = bf_le64(h + 24);
        s->size = bf_le64(h + 32);
        s->link = bf_le32(h + 40);
        s->info = bf_le32(h + 44);
        s->align = bf_le64(h + 48) ? bf_le64(h + 48) : 1;
        s->base = -1;
        if (s->type != SHT_NOBITS && (s->off > n || s->size > n - s->off))
            BAD("section %u (%llu bytes at %llu) lies outside the object", i, (unsigned long long)s->size,
                (unsigned long long)s->off);
        if (s->align & (s->align - 1) || s->align > 4096)
            BAD("section %u alignment %llu is not a power of two up to 4096", i, (unsigned long long)s->align);
        if (s->type == SHT_REL)
            BAD("section %u holds REL relocations; x86-64 objects use RELA", i);
        if (s->type == SHT_SYMTAB)
            symtab = (int)i;
    }
    if (symtab < 0 || secs[symtab].link >= shnum)
        BAD("no symbol table");
    const struct sec *st = &secs[symtab], *strtab = &secs[st->link];
    uint64_t nsyms = st->size / 24;

    /* Imports: undefined symbols some relocation uses, each exported by the kernel. */
    unsigned n_imports = 0;
    for (unsigned i = 0; i < shnum; i++) {
        const struct sec *r = &secs[i];
        if (r->type != SHT_RELA || r->info >= shnum || !(secs[r->info].flags & SHF_ALLOC))
            continue;
        if (r->link != (uint32_t)symtab)
            BAD("relocation section %u does not use the symbol table", i);
        for (uint64_t k = 0; k < r->size / 24; k++) {
            uint64_t sym = bf_le64(o + r->off + 24 * k + 8) >> 32;
            if (sym >= nsyms)
                BAD("relocation %llu of section %u names symbol %llu of %llu", (unsigned long long)k, i,
                    (unsigned long long)sym, (unsigned long long)nsyms);
            const uint8_t *e = o + st->off + 24 * sym;
            if (bf_le16(e + 6) != SHN_UNDEF || sym == 0)
                continue;
            const char *name = str_at(o, n, strtab, bf_le32(e));
            if (!name || !name[0])
                BAD("an undefined symbol has no name");
            int seen = 0;
            for (unsigned j = 0; j < n_imports && !seen; j++)
                seen = strcmp(imports[j], name) == 0;
            if (seen)
                continue;
            if (!exported(name))
                BAD("imports '%s', which the kernel does not export", name);
            if (n_imports == MAX_IMPORTS || strlen(name) > 31)
                BAD("more than %d imports, or the import name '%s' is over 31 bytes", MAX_IMPORTS, name);
            imports[n_imports++] = name;
        }
    }

    /* Layout, as pack(): executable, then read-only, then writable, then nobits; stubs after code. */
    uint64_t cursor = 0, text_end = 0, align = 16;
    for (int pass = 0; pass < 4; pass++) {
        if (pass == 1) {
            cursor = align_up(cursor, 16);
            for (unsigned j = 0; j < n_imports; j++, cursor += 8)
                stub_at[j] = cursor;
            text_end = cursor;
        }
        for (unsigned i = 0; i < shnum; i++) {
            struct sec *s = &secs[i];
            if (!(s->flags & SHF_ALLOC) || !s->size)
                continue;
            int nobits = s->type == SHT_NOBITS, exec = (s->flags & SHF_EXEC) != 0, wr = (s->flags & SHF_WRITE) != 0;
            int want = nobits ? 3 : exec ? 0 : wr ? 2 : 1;
            if (want != pass)
                continue;
            cursor = align_up(cursor, s->align);
            s->base = (int64_t)cursor;
            cursor += s->size;
            if (s->align > align)
                align = s->align;
        }
    }
    uint64_t file_image = text_end;
    for (unsigned i = 0; i < shnum; i++)
        if (secs[i].base >= 0 && secs[i].type != SHT_NOBITS && (uint64_t)secs[i].base + secs[i].size > file_image)
            file_image = (uint64_t)secs[i].base + secs[i].size;
    cursor = align_up(cursor > file_image ? cursor : file_image, 8);
    uint64_t slots = cursor, image_size = cursor + 8ull * n_imports;
    if (image_size > (16u << 20))
        BAD("image of %llu bytes exceeds 16 MiB", (unsigned long long)image_size);

    /* Count relocation records (IMPORT64 slots plus absolute references) to size the file. */
    uint64_t n_relocs = n_imports;
    for (unsigned i = 0; i < shnum; i++)
        if (secs[i].type == SHT_RELA && secs[i].info < shnum && secs[secs[i].info].base >= 0)
            for (uint64_t k = 0; k < secs[i].size / 24; k++)
                n_relocs += (bf_le64(o + secs[i].off + 24 * k + 8) & 0xffffffffu) == R_64;
    uint64_t file_size = HDR + file_image + 16 * n_relocs + 32ull * n_imports;
    uint8_t *f = platform_alloc(file_size, 16);
    if (!f)
        BAD("no arena memory for %llu bytes", (unsigned long long)file_size);
    uint8_t *img = f + HDR, *rel = img + file_image, *imp = rel + 16 * n_relocs;
    for (unsigned i = 0; i < shnum; i++)
        if (secs[i].base >= 0 && secs[i].type != SHT_NOBITS)
            memcpy(img + secs[i].base, o + secs[i].off, secs[i].size);
    uint64_t r_out = 0;
    for (unsigned j = 0; j < n_imports; j++) {
        int32_t disp = (int32_t)(slots + 8 * j - (stub_at[j] + 6));
        memcpy(img + stub_at[j], "\xff\x25", 2);
        put32(img + stub_at[j] + 2, (uint32_t)disp);
        img[stub_at[j] + 6] = img[stub_at[j] + 7] = 0xcc;
        uint8_t *r = rel + 16 * r_out++;
        put32(r, (uint32_t)(slots + 8 * j));
        put16(r + 4, 2);
        put16(r + 6, (uint16_t)j);
        put64(r + 8, 0);
        memset(imp + 32 * j, 0, 32);
        memcpy(imp + 32 * j, imports[j], strlen(imports[j]));
    }

    int64_t entry = -1;
    for (uint64_t k = 1; k < nsyms; k++) {
        const uint8_t *e = o + st->off + 24 * k;
        const char *name = str_at(o, n, strtab, bf_le32(e));
        unsigned shndx = bf_le16(e + 6);
        if (name && strcmp(name, BF_LAYER_ENTRY_SYMBOL) == 0 && (e[4] & 15) == 2 && shndx < shnum &&
            secs[shndx].base >= 0 && (secs[shndx].flags & SHF_EXEC) && bf_le64(e + 8) < secs[shndx].size)
            entry = secs[shndx].base + (int64_t)bf_le64(e + 8);
    }
    if (entry < 0)
        BAD("does not define the function %s in its code", BF_LAYER_ENTRY_SYMBOL);

    for (unsigned i = 0; i < shnum; i++) {
        const struct sec *r = &secs[i];
        if (r->type != SHT_RELA || r->info >= shnum || secs[r->info].base < 0)
            continue;
        const struct sec *tgt = &secs[r->info];
        for (uint64_t k = 0; k < r->size / 24; k++) {
            const uint8_t *e = o + r->off + 24 * k;
            uint64_t off = bf_le64(e), info = bf_le64(e + 8);
            int64_t addend = (int64_t)bf_le64(e + 16);
            uint32_t type = (uint32_t)info;
            const uint8_t *sym = o + st->off + 24 * (info >> 32);
            unsigned shndx = bf_le16(sym + 6);
            uint64_t place = (uint64_t)tgt->base + off;
            if (type != R_64 && type != R_PC32 && type != R_PLT32)
                BAD("relocation type %u in section %u (supported: R_X86_64_PC32, PLT32, 64)", type, r->info);
            if (off > tgt->size || tgt->size - off < (type == R_64 ? 8u : 4u) || tgt->type == SHT_NOBITS)
                BAD("relocation at offset %llu lies outside section %u", (unsigned long long)off, r->info);
            int64_t target;
            int import = -1;
            if (shndx == SHN_UNDEF) {
                const char *name = str_at(o, n, strtab, bf_le32(sym));
                for (unsigned j = 0; j < n_imports; j++)
                    if (name && strcmp(imports[j], name) == 0)
                        import = (int)j;
                if (import < 0)
                    BAD("a relocation names an undefined symbol that is not an import");
                target = (int64_t)stub_at[import];
            } else if (shndx < shnum && secs[shndx].base >= 0) {
                target = secs[shndx].base + (int64_t)bf_le64(sym + 8);
            } else {
                BAD("a relocation refers to section %u, which is not loaded", shndx);
            }
            if (type == R_64) {
                uint8_t *rr = rel + 16 * r_out++;
                put32(rr, (uint32_t)place);
                put16(rr + 4, import >= 0 ? 2 : 1);
                put16(rr + 6, import >= 0 ? (uint16_t)import : 0);
                int64_t value = import >= 0 ? addend : target + addend;
                if (import < 0 && (value < 0 || (uint64_t)value > image_size))
                    BAD("an absolute reference points outside the image");
                put64(rr + 8, (uint64_t)value);
            } else {
                int64_t value = target + addend - (int64_t)place;
                if (value < INT32_MIN || value > INT32_MAX)
                    BAD("a PC-relative reference is out of range");
                put32(img + place, (uint32_t)(int32_t)value);
            }
        }
    }
#undef BAD

    memcpy(f, "BFMD", 4);
    put16(f + 4, 1);
    put16(f + 6, HDR);
    memset(f + 8, 0, 16);
    memcpy(f + 8, bf_layer_names[layer], strlen(bf_layer_names[layer]));
    f[24] = (uint8_t)level;
    f[25] = BF_ISA_HOST;
    put16(f + 26, BF_LAYER_ABI_VERSION);
    put32(f + 28, (uint32_t)image_size);
    put32(f + 32, (uint32_t)file_image);
    put32(f + 36, (uint32_t)align);
    put32(f + 40, (uint32_t)entry);
    put32(f + 44, (uint32_t)(text_end ? text_end : file_image));
    put32(f + 48, (uint32_t)n_relocs);
    put32(f + 52, n_imports);
    put32(f + 56, (uint32_t)file_size);
    static const uint8_t zero[4];
    put32(f + 60, bf_crc32(bf_crc32(bf_crc32(0, f, 60), zero, 4), f + HDR, file_size - HDR));
    *out_size = file_size;
    return f;
}
