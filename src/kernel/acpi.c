/* acpi.c - which processors the machine has, from the ACPI MADT.
 *
 * Promises: acpi_find_cpus() follows RSDP -> XSDT (ACPI 2.0+, else RSDT) -> the "APIC" table
 * (MADT) and lists the APIC id of every enabled Processor Local APIC (type 0) and Processor
 * Local x2APIC (type 9) entry, plus the local APIC address (the header's, or a type-5
 * override).  Every byte it reads is first checked to lie in [4 KiB, 4 GiB) (the identity-
 * mapped range); every table's signature, length and checksum (and the RSDP's 20- and 36-byte
 * checksums) are checked before it is believed; a MADT entry shorter than 2 bytes, shorter than
 * its type needs or running past the table is "corrupt".  Any of these returns a message that
 * names the table and the field and leaves the CPU list empty: the caller runs on one core.
 * The RSDP comes from the UEFI loader (configuration table) or, on BIOS machines, from the
 * first KiB of the EBDA and then 0xE0000-0xFFFFF on 16-byte boundaries (ACPI 6.5, 5.2.5.1).
 * The MADT is parsed from a copy, so the test corruption (smp_test=corrupt-madt) never writes
 * firmware memory.
 */
#include <string.h>

#include "kernel.h"

#define LOW_LIMIT 0x1000ull
#define HIGH_LIMIT 0x100000000ull
#define MAX_TABLE (1u << 20)
#define MADT_COPY 16384

static int range_ok(uint64_t addr, uint64_t len)
{
    return addr >= LOW_LIMIT && len <= HIGH_LIMIT && addr + len <= HIGH_LIMIT;
}

static uint8_t sum(const uint8_t *p, uint32_t n)
{
    uint8_t s = 0;
    while (n--)
        s += *p++;
    return s;
}

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* A valid RSDP at addr (signature and the ACPI 1.0 checksum; 2.0's too when revision >= 2). */
static int rsdp_ok(uint64_t addr)
{
    const uint8_t *p = (const uint8_t *)(uintptr_t)addr;
    if (!range_ok(addr, 36) || memcmp(p, "RSD PTR ", 8) != 0 || sum(p, 20) != 0)
        return 0;
    if (p[15] >= 2 && (rd32(p + 20) < 36 || rd32(p + 20) > 4096 || !range_ok(addr, rd32(p + 20)) ||
                       sum(p, rd32(p + 20)) != 0))
        return 0;
    return 1;
}

static uint64_t scan(uint64_t start, uint64_t end)
{
    for (uint64_t a = start & ~15ull; a + 36 <= end; a += 16)
        if (rsdp_ok(a))
            return a;
    return 0;
}

extern uint64_t boot_page_tables[];        /* boot.S: pml4, pdpt, 4 page directories, pt_low */

/* The EBDA segment, a word in the BIOS data area at 0x40E - in page 0, which stays unmapped so
 * NULL faults: map it read-only for this one read. */
static uint64_t ebda_address(void)
{
    uint64_t *pt_low = boot_page_tables + 6 * 512;
    pt_low[0] = 0x001;                     /* present, read-only, frame 0 */
    __asm__ volatile("invlpg (%0)" : : "r"((uintptr_t)0) : "memory");
    uint16_t segment = *(const volatile uint16_t *)(uintptr_t)0x40E;
    pt_low[0] = 0;
    __asm__ volatile("invlpg (%0)" : : "r"((uintptr_t)0) : "memory");
    return (uint64_t)segment << 4;
}

static uint64_t find_rsdp(uint64_t hint)
{
    if (hint)
        return rsdp_ok(hint) ? hint : 0;
    uint64_t ebda = ebda_address();
    uint64_t found = 0;
    if (ebda >= 0x80000 && ebda < 0xA0000)
        found = scan(ebda, ebda + 1024);
    return found ? found : scan(0xE0000, 0x100000);
}

/* Length of the table at addr after checking where it lies, its signature and checksum. */
static const char *table_ok(uint64_t addr, const char *sig, uint32_t *len)
{
    static char why[96];
    const uint8_t *p = (const uint8_t *)(uintptr_t)addr;
    if (!range_ok(addr, 36))
        return "acpi: a table pointer lies outside [4 KiB, 4 GiB)";
    *len = rd32(p + 4);
    if (sig && memcmp(p, sig, 4) != 0) {
        memcpy(why, "acpi: expected table ", 21);
        memcpy(why + 21, sig, 4);
        memcpy(why + 25, " at the root pointer's address", 31);
        return why;
    }
    if (*len < 36 || *len > MAX_TABLE || !range_ok(addr, *len))
        return "acpi: a table's length field is below 36, above 1 MiB or runs past 4 GiB";
    if (sum(p, *len) != 0) {
        memcpy(why, "acpi: table ", 12);
        memcpy(why + 12, p, 4);
        memcpy(why + 16, " checksum does not add up to 0", 31);
        return why;
    }
    return NULL;
}

static void add_cpu(struct acpi_cpus *out, uint32_t id)
{
    out->listed++;
    if (out->n < ACPI_MAX_CPUS)
        out->apic_id[out->n++] = id;
}

/* Corrupt-MADT messages name the entry; composed here since the kernel has no printf. */
static const char *entry_fault(uint32_t index, uint32_t offset, uint32_t type, uint32_t length)
{
    static char why[128];
    static const char *const parts[] = {"acpi: MADT entry ", " at offset ", " (type ", ") has length ",
                                        ", which is too short or runs past the table"};
    uint32_t values[] = {index, offset, type, length};
    size_t n = 0;
    for (int i = 0; i < 5; i++) {
        for (const char *s = parts[i]; *s && n < sizeof why - 12; s++)
            why[n++] = *s;
        if (i < 4) {
            char digits[12];
            int k = 0;
            uint32_t v = values[i];
            do {
                digits[k++] = (char)('0' + v % 10);
                v /= 10;
            } while (v);
            while (k)
                why[n++] = digits[--k];
        }
    }
    why[n] = 0;
    return why;
}

static const char *parse_madt(const uint8_t *m, uint32_t len, struct acpi_cpus *out)
{
    if (len < 44)
        return "acpi: MADT shorter than its 44-byte header";
    out->lapic_base = rd32(m + 36);
    uint32_t index = 0;
    for (uint32_t off = 44; off < len; index++) {
        uint32_t type = m[off], elen = off + 1 < len ? m[off + 1] : 0;
        uint32_t need = type == 0 ? 8 : type == 5 ? 12 : type == 9 ? 16 : 2;
        if (elen < need || off + elen > len)
            return entry_fault(index, off, type, elen);
        const uint8_t *e = m + off;
        if (type == 0 && (rd32(e + 4) & 1))
            add_cpu(out, e[3]);
        else if (type == 9 && (rd32(e + 8) & 1))
            add_cpu(out, rd32(e + 4));
        else if (type == 5)
            out->lapic_base = rd64(e + 4);
        off += elen;
    }
    return NULL;
}

const char *acpi_find_cpus(uint64_t rsdp_hint, int test, struct acpi_cpus *out)
{
    memset(out, 0, sizeof *out);
    uint64_t rsdp = find_rsdp(rsdp_hint);
    if (!rsdp)
        return rsdp_hint ? "acpi: the RSDP the UEFI loader passed has a bad signature or checksum"
                         : "acpi: no RSDP in the EBDA or 0xE0000-0xFFFFF";
    const uint8_t *r = (const uint8_t *)(uintptr_t)rsdp;
    int xsdt = r[15] >= 2 && rd64(r + 24) != 0;
    uint64_t root = xsdt ? rd64(r + 24) : rd32(r + 16);
    uint32_t root_len;
    const char *why = table_ok(root, xsdt ? "XSDT" : "RSDT", &root_len);
    if (why)
        return why;
    uint32_t width = xsdt ? 8 : 4;
    const uint8_t *entries = (const uint8_t *)(uintptr_t)root + 36;
    for (uint32_t i = 0; i < (root_len - 36) / width; i++) {
        uint64_t t = xsdt ? rd64(entries + i * width) : rd32(entries + i * width);
        if (!range_ok(t, 36) || memcmp((const void *)(uintptr_t)t, "APIC", 4) != 0)
            continue;
        uint32_t len;
        if ((why = table_ok(t, "APIC", &len)))
            return why;
        if (len > MADT_COPY)
            return "acpi: MADT larger than 16 KiB";
        static uint8_t copy[MADT_COPY];
        memcpy(copy, (const void *)(uintptr_t)t, len);
        if (test == ACPI_TEST_CORRUPT_MADT && len > 45) {
            copy[45] = 0;                  /* the first entry's length: as a broken firmware might */
            copy[9] = 0;
            copy[9] = (uint8_t)(0 - sum(copy, len));   /* checksum still right: the entry check must catch it */
        }
        why = parse_madt(copy, len, out);
        if (why)
            memset(out, 0, sizeof *out);
        return why;
    }
    return xsdt ? "acpi: the XSDT lists no MADT (APIC) table" : "acpi: the RSDT lists no MADT (APIC) table";
}
