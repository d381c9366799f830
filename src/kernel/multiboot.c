/* multiboot.c - what the Multiboot-1 loader handed over, checked before it is believed.
 *
 * Promises: multiboot_init() stops the run with a BAREFLOW-PANIC naming the field when the
 * magic is wrong or any pointer/length would reach outside [4 KiB, 4 GiB) (the mapped range);
 * it copies every module's name, so later code reads loader memory only for module contents.
 * A module's name is the first word of its command line, reduced to the 8.3 path the image
 * uses: "/MODULES/<file>" when its parent directory is MODULES, else "/<file>", upper-cased -
 * so "/MODULES/RMSNORM.O2", "MODULES/rmsnorm.o2" and "/tmp/x/MODULES/RMSNORM.O2" all match.
 * platform_handed_file() looks names up case-insensitively.
 */
#include <bareflow/platform.h>
#include "kernel.h"

#define MAX_MODULES 160
#define MAX_NAME 64
#define MAX_STRING 4096
#define MAX_MMAP_BYTES 65536
#define INFO_BYTES 120                      /* Multiboot-1 info block incl. framebuffer fields */
#define LOW_LIMIT 4096u                     /* page 0 is unmapped */
#define HIGH_LIMIT 0x100000000ull

#define MBI_MEM (1u << 0)
#define MBI_CMDLINE (1u << 2)
#define MBI_MODS (1u << 3)
#define MBI_MMAP (1u << 6)
#define MBI_LOADER_NAME (1u << 9)

struct handed_module {
    char name[MAX_NAME];
    uint32_t start, end;
};

static uint32_t info_flags, mem_upper_kib, mmap_addr, mmap_length;
static struct handed_module modules[MAX_MODULES];
static size_t n_modules;
static struct mem_range reserved[3 + 2 * MAX_MODULES + 2];
static size_t n_reserved;

static int range_ok(uint64_t addr, uint64_t len)
{
    return addr >= LOW_LIMIT && len <= HIGH_LIMIT && addr + len <= HIGH_LIMIT;
}

static uint32_t rd32(uint64_t addr)
{
    return *(const volatile uint32_t *)(uintptr_t)addr;
}

static void reserve(uint64_t start, uint64_t len)
{
    if (len && n_reserved < sizeof reserved / sizeof reserved[0])
        reserved[n_reserved++] = (struct mem_range){ start, start + len };
}

/* Length of a loader string, checked to stay in mapped memory; the run stops if it does not. */
static uint64_t checked_strlen(uint64_t addr, const char *what)
{
    if (!range_ok(addr, 1))
        kernel_fail2(what, addr);
    for (uint64_t n = 0; n < MAX_STRING; n++) {
        if (!range_ok(addr + n, 1))
            break;
        if (*(const volatile char *)(uintptr_t)(addr + n) == 0)
            return n;
    }
    kernel_fail2(what, addr);
}

static char upper(char c)
{
    return (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
}

static void set_module_name(struct handed_module *m, const char *cmd, size_t len)
{
    size_t word = 0, base = 0, dir = 0, dir_end = 0;
    while (word < len && cmd[word] != ' ' && cmd[word] != '\t')
        word++;
    for (size_t i = 0; i < word; i++) {
        if (cmd[i] == '/' || cmd[i] == '\\') {
            dir = base;
            dir_end = i;
            base = i + 1;
        }
    }
    int in_modules = dir_end - dir == 7;
    for (size_t i = 0; in_modules && i < 7; i++)
        in_modules = upper(cmd[dir + i]) == "MODULES"[i];

    size_t n = 0;
    const char *prefix = in_modules ? "/MODULES/" : "/";
    while (*prefix)
        m->name[n++] = *prefix++;
    for (size_t i = base; i < word && n < MAX_NAME - 1; i++)
        m->name[n++] = upper(cmd[i]);
    m->name[n] = 0;
}

static void read_modules(uint32_t count, uint32_t addr)
{
    if (count > MAX_MODULES)
        kernel_fail2("multiboot: too many modules (limit 160): ", count);
    if (!range_ok(addr, (uint64_t)count * 16))
        kernel_fail2("multiboot: module list outside memory at ", addr);
    reserve(addr, (uint64_t)count * 16);
    for (uint32_t i = 0; i < count; i++) {
        uint64_t rec = addr + 16ull * i;
        struct handed_module *m = &modules[i];
        m->start = rd32(rec);
        m->end = rd32(rec + 4);
        uint32_t str = rd32(rec + 8);
        if (m->end < m->start || !range_ok(m->start, m->end - m->start))
            kernel_fail2("multiboot: module outside memory, start ", m->start);
        reserve(m->start, m->end - m->start);
        if (str) {
            uint64_t len = checked_strlen(str, "multiboot: unterminated module string at ");
            reserve(str, len + 1);
            set_module_name(m, (const char *)(uintptr_t)str, len);
        } else {
            m->name[0] = 0;
        }
    }
    n_modules = count;
}

void multiboot_init(uint32_t magic, uint32_t info_addr)
{
    if (magic != MULTIBOOT_LOADER_MAGIC)
        kernel_fail2("not started by a Multiboot-1 loader: EAX=", magic);
    if (!range_ok(info_addr, INFO_BYTES))
        kernel_fail2("multiboot: info block outside memory at ", info_addr);
    reserve(info_addr, INFO_BYTES);
    info_flags = rd32(info_addr);
    if (info_flags & MBI_MEM)
        mem_upper_kib = rd32(info_addr + 8);
    if (info_flags & MBI_CMDLINE) {
        uint32_t s = rd32(info_addr + 16);
        reserve(s, checked_strlen(s, "multiboot: bad kernel command line at ") + 1);
    }
    if (info_flags & MBI_MODS)
        read_modules(rd32(info_addr + 20), rd32(info_addr + 24));
    if (info_flags & MBI_MMAP) {
        mmap_length = rd32(info_addr + 44);
        mmap_addr = rd32(info_addr + 48);
        if (mmap_length > MAX_MMAP_BYTES || !range_ok(mmap_addr, mmap_length))
            kernel_fail2("multiboot: memory map outside memory at ", mmap_addr);
        reserve(mmap_addr, mmap_length);
    }
    if (info_flags & MBI_LOADER_NAME) {
        uint32_t s = rd32(info_addr + 64);
        reserve(s, checked_strlen(s, "multiboot: bad boot loader name at ") + 1);
    }
}

void multiboot_for_each_ram(void (*fn)(uint64_t start, uint64_t end, void *ctx), void *ctx)
{
    if (info_flags & MBI_MMAP) {
        /* Each entry: u32 size (not counting itself), u64 base, u64 length, u32 type. */
        uint64_t p = mmap_addr, end = (uint64_t)mmap_addr + mmap_length;
        while (p + 4 <= end) {
            uint32_t size = rd32(p);
            if (size < 20 || p + 4 + size > end)
                kernel_fail2("multiboot: malformed memory map entry at ", p);
            uint64_t base = rd32(p + 4) | ((uint64_t)rd32(p + 8) << 32);
            uint64_t len = rd32(p + 12) | ((uint64_t)rd32(p + 16) << 32);
            if (rd32(p + 20) == 1 && len && base + len > base)
                fn(base, base + len, ctx);
            p += 4 + (uint64_t)size;
        }
    } else if (info_flags & MBI_MEM) {
        fn(0x100000, 0x100000 + (uint64_t)mem_upper_kib * 1024, ctx);
    } else {
        kernel_fail("multiboot: the boot loader reported no memory size or map");
    }
}

size_t multiboot_reserved(struct mem_range *out, size_t max)
{
    size_t n = n_reserved < max ? n_reserved : max;
    for (size_t i = 0; i < n; i++)
        out[i] = reserved[i];
    return n;
}

size_t multiboot_module_count(void)
{
    return n_modules;
}

static int name_equal(const char *a, const char *b)
{
    while (*a && upper(*a) == upper(*b)) {
        a++;
        b++;
    }
    return *a == 0 && *b == 0;
}

const void *platform_handed_file(const char *path, size_t *size)
{
    if (!path)
        return NULL;
    for (size_t i = 0; i < n_modules; i++) {
        const char *name = modules[i].name;
        if (name[0] && (name_equal(name, path) || (path[0] != '/' && name_equal(name + 1, path)))) {
            if (size)
                *size = modules[i].end - modules[i].start;
            return (const void *)(uintptr_t)modules[i].start;
        }
    }
    return NULL;
}
