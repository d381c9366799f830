/* main.c - BOOTX64.EFI: boot the BareFlow kernel from the volume this loader came from.
 *
 * Promises: in this order - open the boot volume; read /KERNEL.BIN and refuse it unless its
 * Multiboot and BFU64 headers check out; put it at its link address; read the files the
 * runtime may need (the root files in HANDED_ROOT_FILES, then every file in /MODULES) into
 * pages below 4 GiB and list them as Multiboot modules; look up the ACPI RSDP in the
 * configuration table; leave boot services; jump to the kernel's 64-bit entry.  Each step prints a "bareflow-uefi:" line; a failure prints
 * "BAREFLOW-PANIC: uefi: <why>" and returns to the firmware - it never jumps anywhere
 * unchecked.  A root file that is absent, or too big for memory below 4 GiB, is left out
 * with a line saying so: the kernel may still read it from an ATA disk.
 */
#include "loader.h"

/* The same list bareflow_plugins/builtin/syslinux.py hands over (docs/uefi.md). */
static const char *const HANDED_ROOT_FILES[] = {
    "/BAREFLOW.CFG", "/POLICY.TBL", "/MODEL.BIN", "/TOKENIZR.BIN", "/PROFILE.BIN", "/LIBC.MAN",
};
#define N_ROOT_FILES (sizeof HANDED_ROOT_FILES / sizeof HANDED_ROOT_FILES[0])

static uint64_t hand_over(const char *path, int quiet)
{
    uint64_t addr, size;
    EFI_STATUS why;
    int r = vol_read(path, &addr, &size, &why);
    if (r == -1) {
        say("bareflow-uefi: %s is not on the boot volume; not handed over\n", path);
        return 0;
    }
    if (r == -2) {
        say("bareflow-uefi: warning: no room below 4 GiB for %s (%s); not handed over\n", path,
            status_name(why));
        return 0;
    }
    mb_add_file(path, addr, size);
    if (!quiet)
        say("bareflow-uefi: %s: %u bytes at %x\n", path, size, addr);
    return size;
}

static int guid_equal(const EFI_GUID *a, const EFI_GUID *b)
{
    const uint8_t *x = (const uint8_t *)a, *y = (const uint8_t *)b;
    for (size_t i = 0; i < sizeof *a; i++)
        if (x[i] != y[i])
            return 0;
    return 1;
}

/* The ACPI RSDP from the configuration table: ACPI 2.0+ preferred, else 1.0; 0 when absent
 * (the kernel then runs on one core and says why). */
static uint64_t find_rsdp(EFI_SYSTEM_TABLE *st)
{
    static const EFI_GUID acpi20 = EFI_ACPI_20_TABLE_GUID, acpi10 = EFI_ACPI_10_TABLE_GUID;
    const EFI_CONFIGURATION_TABLE *t = st->configuration_table;
    uint64_t found = 0;
    for (uint64_t i = 0; t && i < st->number_of_table_entries; i++) {
        if (guid_equal(&t[i].vendor_guid, &acpi20))
            return (uint64_t)(uintptr_t)t[i].vendor_table;
        if (guid_equal(&t[i].vendor_guid, &acpi10))
            found = (uint64_t)(uintptr_t)t[i].vendor_table;
    }
    return found;
}

EFI_STATUS EFIAPI EfiMain(EFI_HANDLE image, EFI_SYSTEM_TABLE *st)
{
    con_init(image, st);
    /* The firmware's 5-minute watchdog would reset a slow (emulated) machine mid-load. */
    st->boot_services->set_watchdog_timer(0, 0, 0, 0);
    say("bareflow-uefi: BareFlow UEFI loader\n");

    uint64_t cr4;
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    if (cr4 & (1u << 12))
        fail(EFI_UNSUPPORTED, "the firmware runs with 5-level paging (CR4.LA57); the kernel "
             "needs 4-level paging");

    vol_open();
    say("bareflow-uefi: loading KERNEL.BIN\n");
    uint64_t kaddr, ksize;
    EFI_STATUS why;
    int r = vol_read("/KERNEL.BIN", &kaddr, &ksize, &why);
    if (r == -1)
        fail(why, "/KERNEL.BIN is not on the boot volume (%s)", status_name(why));
    if (r == -2)
        fail(why, "no memory below 4 GiB to read /KERNEL.BIN: %s", status_name(why));
    struct kernel_image k;
    kernel_check((const uint8_t *)(uintptr_t)kaddr, ksize, &k);
    kernel_place((const uint8_t *)(uintptr_t)kaddr, &k);
    st->boot_services->free_pages(kaddr, pages_for(ksize));
    say("bareflow-uefi: KERNEL.BIN at %x, %u bytes + bss to %x, 64-bit entry %x\n",
        (uint64_t)k.load_addr, ksize, (uint64_t)k.bss_end, (uint64_t)k.entry64);

    mb_init(MAX_HANDED_FILES);
    for (size_t i = 0; i < N_ROOT_FILES; i++)
        hand_over(HANDED_ROOT_FILES[i], 0);
    static char modules[MAX_HANDED_FILES][MAX_PATH];
    size_t n = vol_list("/MODULES", modules, MAX_HANDED_FILES);
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += hand_over(modules[i], 1);
    say("bareflow-uefi: /MODULES: %u files, %u bytes\n", (uint64_t)n, bytes);

    uint64_t rsdp = find_rsdp(st);
    if (rsdp)
        say("bareflow-uefi: ACPI RSDP at %x\n", rsdp);
    else
        say("bareflow-uefi: warning: no ACPI table in the configuration table; the kernel will use one core\n");
    mb_exit_and_enter(&k, rsdp);
}
