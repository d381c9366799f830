/* handoff.c - the Multiboot-1 info block, leaving boot services, and the jump to the kernel.
 *
 * Promises: everything the kernel is handed - the info block, the module list, every string,
 * the memory map, and the files themselves (volume.c) - lies in LoaderData pages below 4 GiB,
 * so the kernel's validation (src/kernel/multiboot.c) accepts it.  The info block carries:
 * mem_lower/mem_upper, the command line "/KERNEL.BIN", one module per handed file whose
 * command line is its 8.3 path ("/MODULES/RMSNORM.O2"), a memory map converted from the UEFI
 * map of the moment boot services ended (conventional and boot-services memory = available),
 * and the boot loader name "BareFlow UEFI".  ExitBootServices is retried with a fresh map key
 * when the map changed under us (EFI_INVALID_PARAMETER).  The kernel is entered at its BFU64
 * entry with RDI = 0x2BADB002, RSI = the info block, RDX = the ACPI RSDP (0 if the firmware
 * published none), interrupts off (docs/uefi.md).
 */
#include "loader.h"

#define MB_LOADER_MAGIC 0x2BADB002u
#define MBI_MEM (1u << 0)
#define MBI_CMDLINE (1u << 2)
#define MBI_MODS (1u << 3)
#define MBI_MMAP (1u << 6)
#define MBI_LOADER_NAME (1u << 9)
#define INFO_BYTES 128                      /* 120 defined by Multiboot-1, rounded up */
#define MMAP_ENTRY 24                       /* u32 size (= 20), u64 base, u64 length, u32 type */
#define MMAP_MAX_BYTES 65536                /* the kernel's limit */
#define SPARE_DESCRIPTORS 64                /* the map grows while we allocate its buffers */
#define EXIT_TRIES 8

#define MB_AVAILABLE 1
#define MB_RESERVED 2
#define MB_ACPI_RECLAIM 3
#define MB_ACPI_NVS 4
#define MB_BAD 5

struct range {
    uint64_t base, end;
    uint32_t type;                          /* Multiboot type */
    uint32_t ram;                           /* RAM of any owner: for mem_upper */
};

static uint8_t *info;
static uint8_t *mods;
static char *strings;
static size_t strings_used, strings_cap, n_files, max_files;

static void wr32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static void wr64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static uint32_t add_string(const char *s)
{
    size_t n = ascii_len(s) + 1;
    if (strings_used + n > strings_cap)
        fail(EFI_OUT_OF_RESOURCES, "no room for the Multiboot string %s", s);
    char *at = strings + strings_used;
    memcpy(at, s, n);
    strings_used += n;
    return (uint32_t)(uintptr_t)at;
}

void mb_init(size_t max)
{
    max_files = max;
    strings_cap = max * MAX_PATH + 64;
    uint64_t bytes = INFO_BYTES + max * 16 + strings_cap;
    EFI_STATUS why;
    uint64_t block = alloc_low_pages(bytes, &why);
    if (!block)
        fail(why, "no memory below 4 GiB for the Multiboot info block: %s", status_name(why));
    memset((void *)(uintptr_t)block, 0, pages_for(bytes) * EFI_PAGE_SIZE);
    info = (uint8_t *)(uintptr_t)block;
    mods = info + INFO_BYTES;
    strings = (char *)(mods + max * 16);
    wr32(info + 16, add_string("/KERNEL.BIN"));             /* cmdline */
    wr32(info + 64, add_string("BareFlow UEFI"));           /* boot_loader_name */
}

void mb_add_file(const char *path, uint64_t addr, uint64_t size)
{
    if (n_files == max_files)
        fail(EFI_OUT_OF_RESOURCES, "more than %u files to hand over (the kernel's limit); %s is one "
             "too many", (uint64_t)max_files, path);
    uint8_t *m = mods + 16 * n_files++;
    wr32(m + 0, (uint32_t)addr);
    wr32(m + 4, (uint32_t)(addr + size));
    wr32(m + 8, add_string(path));
    wr32(m + 12, 0);
}

size_t mb_file_count(void)
{
    return n_files;
}

static uint32_t multiboot_type(uint32_t efi_type, uint32_t *ram)
{
    *ram = 0;
    switch (efi_type) {
    case EfiConventionalMemory:
    case EfiBootServicesCode:
    case EfiBootServicesData:
        *ram = 1;
        return MB_AVAILABLE;
    case EfiLoaderCode:                     /* this loader, the kernel, the handed files */
    case EfiLoaderData:
        *ram = 1;
        return MB_RESERVED;
    case EfiACPIReclaimMemory:
        return MB_ACPI_RECLAIM;
    case EfiACPIMemoryNVS:
        return MB_ACPI_NVS;
    case EfiUnusableMemory:
        return MB_BAD;
    default:
        return MB_RESERVED;
    }
}

/* Sorted, merged Multiboot ranges from the final UEFI map; returns how many. */
static size_t convert_map(const uint8_t *map, uint64_t map_size, uint64_t desc_size,
                          struct range *out, uint32_t *mem_lower, uint32_t *mem_upper)
{
    size_t n = 0;
    for (uint64_t off = 0; off + sizeof(EFI_MEMORY_DESCRIPTOR) <= map_size; off += desc_size) {
        const EFI_MEMORY_DESCRIPTOR *d = (const void *)(map + off);
        if (d->number_of_pages == 0)
            continue;
        uint64_t end = d->physical_start + d->number_of_pages * EFI_PAGE_SIZE;
        struct range r = { d->physical_start, end, 0, 0 };
        r.type = multiboot_type(d->type, &r.ram);
        size_t j = n++;                                     /* insertion sort by base */
        for (; j > 0 && out[j - 1].base > r.base; j--)
            out[j] = out[j - 1];
        out[j] = r;
    }

    /* mem_upper: RAM contiguous from 1 MiB, whoever owns it; mem_lower: free RAM from 0. */
    uint64_t upper = 0x100000, lower = 0;
    for (size_t i = 0; i < n; i++) {
        if (out[i].ram && out[i].base <= upper && out[i].end > upper)
            upper = out[i].end;
        if (out[i].type == MB_AVAILABLE && out[i].base <= lower && out[i].end > lower)
            lower = out[i].end;
    }
    *mem_lower = (uint32_t)((lower > 0xA0000 ? 0xA0000 : lower) / 1024);
    uint64_t upper_kib = (upper - 0x100000) / 1024;
    *mem_upper = upper_kib > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)upper_kib;

    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m && out[m - 1].type == out[i].type && out[m - 1].end == out[i].base)
            out[m - 1].end = out[i].end;
        else
            out[m++] = out[i];
    }
    return m;
}

/* Buffers for the map must exist before the final GetMemoryMap: allocating changes the map. */
static uint8_t *map_buffer(uint64_t bytes)
{
    EFI_STATUS why;
    uint64_t at = alloc_low_pages(bytes, &why);
    if (!at)
        fail(why, "no memory below 4 GiB for the memory map: %s", status_name(why));
    return (uint8_t *)(uintptr_t)at;
}

void mb_exit_and_enter(const struct kernel_image *k, uint64_t rsdp)
{
    EFI_BOOT_SERVICES *bs = g_st->boot_services;
    uint64_t map_size = 0, key, desc_size = 0;
    uint32_t desc_version;
    EFI_STATUS s = bs->get_memory_map(&map_size, 0, &key, &desc_size, &desc_version);
    if (s != EFI_BUFFER_TOO_SMALL || desc_size < sizeof(EFI_MEMORY_DESCRIPTOR))
        fail(s, "GetMemoryMap did not report the map's size: %s", status_name(s));
    uint64_t capacity = map_size + SPARE_DESCRIPTORS * desc_size;
    uint64_t max_ranges = capacity / desc_size;
    uint8_t *map = map_buffer(capacity);
    struct range *ranges = (struct range *)map_buffer(max_ranges * sizeof(struct range));
    uint8_t *mmap = map_buffer(max_ranges * MMAP_ENTRY);

    say("bareflow-uefi: leaving boot services; kernel entry %x\n", (uint64_t)k->entry64);
    for (int tries = 0;; tries++) {
        map_size = capacity;
        s = bs->get_memory_map(&map_size, (EFI_MEMORY_DESCRIPTOR *)map, &key, &desc_size,
                               &desc_version);
        if (s != EFI_SUCCESS)
            fail(s, "GetMemoryMap: %s (map %u bytes, room for %u)", status_name(s), map_size,
                 capacity);
        /* After the first attempt only GetMemoryMap and ExitBootServices may be called: COM1
           becomes the only console (port I/O, no allocation, so the key stays valid). */
        if (tries == 0)
            con_boot_services_gone();
        s = bs->exit_boot_services(g_image, key);
        if (s == EFI_SUCCESS)
            break;
        if (s != EFI_INVALID_PARAMETER || tries + 1 == EXIT_TRIES)
            fail(s, "ExitBootServices: %s after %u attempts", status_name(s),
                 (uint64_t)tries + 1);
    }

    uint32_t mem_lower, mem_upper;
    size_t n = convert_map(map, map_size, desc_size, ranges, &mem_lower, &mem_upper);
    if (n * MMAP_ENTRY > MMAP_MAX_BYTES) {
        say("bareflow-uefi: warning: memory map cut to its first %u ranges\n",
            (uint64_t)(MMAP_MAX_BYTES / MMAP_ENTRY));
        n = MMAP_MAX_BYTES / MMAP_ENTRY;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t *e = mmap + i * MMAP_ENTRY;
        wr32(e, MMAP_ENTRY - 4);
        wr64(e + 4, ranges[i].base);
        wr64(e + 12, ranges[i].end - ranges[i].base);
        wr32(e + 20, ranges[i].type);
    }
    wr32(info + 0, MBI_MEM | MBI_CMDLINE | MBI_MODS | MBI_MMAP | MBI_LOADER_NAME);
    wr32(info + 4, mem_lower);
    wr32(info + 8, mem_upper);
    wr32(info + 20, (uint32_t)n_files);
    wr32(info + 24, (uint32_t)(uintptr_t)mods);
    wr32(info + 44, (uint32_t)(n * MMAP_ENTRY));
    wr32(info + 48, (uint32_t)(uintptr_t)mmap);

    say("bareflow-uefi: boot services exited; %u memory ranges, %u files; jumping to %x\n",
        (uint64_t)n, (uint64_t)n_files, (uint64_t)k->entry64);
    __asm__ volatile("cli\n\t"
                     "jmp *%3"
                     : : "D"((uint64_t)MB_LOADER_MAGIC), "S"((uint64_t)(uintptr_t)info), "d"(rsdp),
                         "r"((uint64_t)k->entry64)
                     : "memory");
    __builtin_unreachable();
}
