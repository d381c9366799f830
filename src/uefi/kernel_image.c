/* kernel_image.c - KERNEL.BIN's headers checked, then the image put where it was linked.
 *
 * Promises: kernel_check() accepts exactly what bareflow_plugins/kernel_recipe.py's
 * check_multiboot(require_uefi_entry=True) accepts - a Multiboot-1 a.out-kludge header in
 * the first 8 KiB whose address fields describe this very file, no required feature beyond
 * bits 0-1, and the BFU64 header right after it with a valid checksum and an entry inside
 * the loaded bytes - plus that the whole image ends below 4 GiB; anything else stops the boot
 * naming the field.  Nothing is ever jumped to unless it passed.  kernel_place() reserves the
 * image's physical range (the kernel is not relocatable), copies the file and zeroes the bss.
 */
#include "loader.h"

#define MB_MAGIC 0x1BADB002u
#define MB_SEARCH 8192u
#define MB_AOUT_KLUDGE (1u << 16)
#define MB_SUPPORTED_REQUIRED 0x3u          /* page-aligned modules, memory information */
#define BFU64_OFFSET 32u
#define BFU64_BYTES 16u

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void kernel_check(const uint8_t *data, uint64_t size, struct kernel_image *k)
{
    uint64_t off = 0, limit = size < MB_SEARCH ? size : MB_SEARCH;
    int found = 0;
    for (; off + 12 <= limit; off += 4) {
        if (rd32(data + off) == MB_MAGIC) {
            found = 1;
            break;
        }
    }
    if (!found)
        fail(EFI_LOAD_ERROR, "/KERNEL.BIN: no multiboot magic 0x1BADB002 in the first 8192 bytes");
    const uint8_t *h = data + off;
    uint32_t flags = rd32(h + 4);
    if ((uint32_t)(MB_MAGIC + flags + rd32(h + 8)) != 0)
        fail(EFI_LOAD_ERROR, "/KERNEL.BIN: multiboot checksum at offset %u is wrong", off);
    if (!(flags & MB_AOUT_KLUDGE))
        fail(EFI_LOAD_ERROR, "/KERNEL.BIN: multiboot flags %x lack bit 16 (address fields)", (uint64_t)flags);
    if (flags & 0xFFFF & ~MB_SUPPORTED_REQUIRED)
        fail(EFI_LOAD_ERROR, "/KERNEL.BIN: multiboot flags %x require features this loader "
             "does not provide (only bits 0 and 1)", (uint64_t)flags);
    if (off + 32 > size)
        fail(EFI_LOAD_ERROR, "/KERNEL.BIN: multiboot header at offset %u is truncated", off);
    uint32_t header_addr = rd32(h + 12), load = rd32(h + 16), load_end = rd32(h + 20);
    uint32_t bss_end = rd32(h + 24), entry = rd32(h + 28);
    if ((uint64_t)header_addr - load != off)
        fail(EFI_LOAD_ERROR, "/KERNEL.BIN: header_addr %x - load_addr %x is not the header "
             "offset %u", (uint64_t)header_addr, (uint64_t)load, off);
    uint64_t file_end = (uint64_t)load + size;
    if (load_end && !(load < load_end && load_end <= file_end))
        fail(EFI_LOAD_ERROR, "/KERNEL.BIN: load_end_addr %x outside the file", (uint64_t)load_end);
    if (load_end && load_end - load != size)
        fail(EFI_LOAD_ERROR, "/KERNEL.BIN: file is %u bytes but the header loads %u", size,
             (uint64_t)(load_end - load));
    uint64_t image_end = bss_end ? bss_end : file_end;
    if (bss_end && bss_end < file_end)
        fail(EFI_LOAD_ERROR, "/KERNEL.BIN: bss_end_addr %x below the end of the file", (uint64_t)bss_end);
    if (entry < load || entry >= file_end)
        fail(EFI_LOAD_ERROR, "/KERNEL.BIN: entry_addr %x outside the loaded image", (uint64_t)entry);
    if (load < EFI_PAGE_SIZE || image_end > LOW_LIMIT)
        fail(EFI_LOAD_ERROR, "/KERNEL.BIN: image [%x, %x) must lie in [4 KiB, 4 GiB)",
             (uint64_t)load, image_end);

    uint64_t b = off + BFU64_OFFSET;
    static const uint8_t signature[8] = { 'B', 'F', 'U', '6', '4', 0, 0, 0 };
    int signed_ok = b + 8 <= size;
    for (int i = 0; signed_ok && i < 8; i++)
        signed_ok = data[b + i] == signature[i];
    if (!signed_ok)
        fail(EFI_LOAD_ERROR, "/KERNEL.BIN: no BFU64 UEFI entry header at offset %u (right after the "
             "multiboot header); this kernel can only be started by a Multiboot loader", b);
    if (b + BFU64_BYTES > size)
        fail(EFI_LOAD_ERROR, "/KERNEL.BIN: BFU64 header at offset %u is truncated", b);
    uint32_t sum = rd32(data + b) + rd32(data + b + 4) + rd32(data + b + 8) + rd32(data + b + 12);
    if (sum != 0)
        fail(EFI_LOAD_ERROR, "/KERNEL.BIN: BFU64 header checksum at offset %u is wrong", b + 12);
    uint32_t entry64 = rd32(data + b + 8);
    if (entry64 < load || entry64 >= file_end)
        fail(EFI_LOAD_ERROR, "/KERNEL.BIN: BFU64 entry %x outside the loaded image", (uint64_t)entry64);

    k->load_addr = load;
    k->load_end = (uint32_t)file_end;
    k->bss_end = (uint32_t)image_end;
    k->entry64 = entry64;
}

void kernel_place(const uint8_t *data, const struct kernel_image *k)
{
    uint64_t first = k->load_addr & ~(EFI_PAGE_SIZE - 1);
    uint64_t pages = pages_for(k->bss_end - first);
    EFI_PHYSICAL_ADDRESS at = first;
    /* LoaderCode, not LoaderData: firmware with an NX policy for data would fault on the jump. */
    EFI_STATUS s = g_st->boot_services->allocate_pages(AllocateAddress, EfiLoaderCode, pages, &at);
    if (s != EFI_SUCCESS)
        fail(s, "cannot reserve [%x, %x) for /KERNEL.BIN, the addresses it is linked for: %s "
             "(the firmware uses that memory)", first, first + pages * EFI_PAGE_SIZE, status_name(s));
    uint8_t *dst = (uint8_t *)(uintptr_t)k->load_addr;
    memcpy(dst, data, k->load_end - k->load_addr);
    memset(dst + (k->load_end - k->load_addr), 0, k->bss_end - k->load_end);
}
