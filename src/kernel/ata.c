/* ata.c - the boot disk through ATA PIO on the primary channel's master drive.
 *
 * Promises: ata_init() sends IDENTIFY and records the size (LBA48 sector count when the drive
 * supports it, else LBA28).  Reads and writes use LBA28 commands while the range fits and
 * LBA48 beyond; writes end with CACHE FLUSH so data survives a power-off.  Every wait has a
 * time-out measured with the TSC, so a missing drive or a wedged controller makes
 * platform_disk_* return negative (and platform_disk_sectors() 0) instead of hanging.
 * Return codes: -1 no disk, -2 range outside the disk, -3 time-out, -4 the drive reported an error.
 */
#include <bareflow/platform.h>
#include "io.h"
#include "kernel.h"

#define ATA_DATA 0x1F0
#define ATA_COUNT 0x1F2
#define ATA_LBA0 0x1F3
#define ATA_LBA1 0x1F4
#define ATA_LBA2 0x1F5
#define ATA_DRIVE 0x1F6
#define ATA_STATUS 0x1F7                   /* read: status; write: command */
#define ATA_CONTROL 0x3F6                  /* read: alternate status; write: device control */

#define ST_BSY 0x80
#define ST_DF 0x20
#define ST_DRQ 0x08
#define ST_ERR 0x01

#define CMD_READ28 0x20
#define CMD_READ48 0x24
#define CMD_WRITE28 0x30
#define CMD_WRITE48 0x34
#define CMD_FLUSH28 0xE7
#define CMD_FLUSH48 0xEA
#define CMD_IDENTIFY 0xEC

#define PROBE_MS 500
#define IO_MS 5000
#define FLUSH_MS 30000
#define LBA28_LIMIT 0x10000000ull

static uint64_t disk_sectors;
static int has_lba48;

/* The drive needs ~400 ns after a select or command before its status means anything;
 * four alternate-status reads take at least that long. */
static void settle(void)
{
    for (int i = 0; i < 4; i++)
        (void)inb(ATA_CONTROL);
}

/* Waits until BSY clears and every bit of `want` is set; returns the status, or -3 on
 * time-out, -4 on ERR/DF, -1 on a floating bus (no controller at all). */
static int wait_status(uint8_t want, uint32_t ms)
{
    uint64_t deadline = rdtsc() + tsc_ms_cycles(ms);
    for (;;) {
        uint8_t s = inb(ATA_STATUS);
        if (s == 0xFF)
            return -1;
        if (!(s & ST_BSY)) {
            if (s & (ST_ERR | ST_DF))
                return -4;
            if ((s & want) == want)
                return s;
        }
        if (rdtsc() > deadline)
            return -3;
        __asm__ volatile("pause");
    }
}

void ata_init(void)
{
    uint16_t id[256];

    disk_sectors = 0;
    outb(ATA_CONTROL, 0x02);               /* nIEN: the kernel polls, no IRQs */
    if (inb(ATA_STATUS) == 0xFF)
        return;                            /* floating bus: no controller */
    outb(ATA_DRIVE, 0xA0);
    settle();
    if (wait_status(0, PROBE_MS) < 0)
        return;
    outb(ATA_COUNT, 0);
    outb(ATA_LBA0, 0);
    outb(ATA_LBA1, 0);
    outb(ATA_LBA2, 0);
    outb(ATA_STATUS, CMD_IDENTIFY);
    settle();
    if (inb(ATA_STATUS) == 0)
        return;                            /* no device behind the selected drive */
    uint64_t deadline = rdtsc() + tsc_ms_cycles(PROBE_MS);
    while ((inb(ATA_STATUS) & ST_BSY) && rdtsc() < deadline)
        __asm__ volatile("pause");
    if (inb(ATA_LBA1) != 0 || inb(ATA_LBA2) != 0)
        return;                            /* ATAPI or SATA signature: not a PIO disk */
    if (wait_status(ST_DRQ, PROBE_MS) < 0)
        return;
    insw(ATA_DATA, id, 256);

    has_lba48 = (id[83] >> 10) & 1;
    uint64_t n28 = id[60] | ((uint64_t)id[61] << 16);
    uint64_t n48 = id[100] | ((uint64_t)id[101] << 16) | ((uint64_t)id[102] << 32) |
                   ((uint64_t)id[103] << 48);
    disk_sectors = has_lba48 && n48 ? n48 : n28;
}

uint64_t platform_disk_sectors(void)
{
    return disk_sectors;
}

static void issue(uint64_t lba, uint32_t n, uint8_t cmd28, uint8_t cmd48)
{
    if (lba + n <= LBA28_LIMIT) {
        outb(ATA_DRIVE, (uint8_t)(0xE0 | ((lba >> 24) & 0x0F)));
        settle();
        outb(ATA_COUNT, (uint8_t)n);       /* 256 is encoded as 0 */
        outb(ATA_LBA0, (uint8_t)lba);
        outb(ATA_LBA1, (uint8_t)(lba >> 8));
        outb(ATA_LBA2, (uint8_t)(lba >> 16));
        outb(ATA_STATUS, cmd28);
    } else {
        outb(ATA_DRIVE, 0x40);
        settle();
        outb(ATA_COUNT, (uint8_t)(n >> 8)); /* high bytes first, then low */
        outb(ATA_LBA0, (uint8_t)(lba >> 24));
        outb(ATA_LBA1, (uint8_t)(lba >> 32));
        outb(ATA_LBA2, (uint8_t)(lba >> 40));
        outb(ATA_COUNT, (uint8_t)n);
        outb(ATA_LBA0, (uint8_t)lba);
        outb(ATA_LBA1, (uint8_t)(lba >> 8));
        outb(ATA_LBA2, (uint8_t)(lba >> 16));
        outb(ATA_STATUS, cmd48);
    }
    settle();
}

static int check_range(uint64_t lba, uint32_t count)
{
    if (!disk_sectors)
        return -1;
    if (lba >= disk_sectors || count > disk_sectors - lba)
        return -2;
    return 0;
}

/* PIO transfer of count sectors (count > 0, range checked) in commands of at most 256 sectors;
 * a write waits for each command to finish.  Returns 0 or wait_status's negative code. */
static int transfer(uint64_t lba, uint32_t count, uint8_t *p, int write)
{
    while (count) {
        uint32_t n = count < 256 ? count : 256;
        int rc = wait_status(0, IO_MS);
        if (rc < 0)
            return rc;
        if (write)
            issue(lba, n, CMD_WRITE28, CMD_WRITE48);
        else
            issue(lba, n, CMD_READ28, CMD_READ48);
        for (uint32_t i = 0; i < n; i++) {
            if ((rc = wait_status(ST_DRQ, IO_MS)) < 0)
                return rc;
            if (write)
                outsw(ATA_DATA, p, 256);
            else
                insw(ATA_DATA, p, 256);
            p += 512;
            settle();
        }
        if (write && (rc = wait_status(0, IO_MS)) < 0)
            return rc;
        lba += n;
        count -= n;
    }
    return 0;
}

int platform_disk_read(uint64_t lba, uint32_t count, void *buf)
{
    int rc = check_range(lba, count);
    if (rc < 0 || count == 0)
        return count == 0 && disk_sectors ? 0 : rc;
    return transfer(lba, count, buf, 0);
}

int platform_disk_write(uint64_t lba, uint32_t count, const void *buf)
{
    int rc = check_range(lba, count);
    if (rc < 0 || count == 0)
        return count == 0 && disk_sectors ? 0 : rc;
    if ((rc = transfer(lba, count, (uint8_t *)buf, 1)) < 0)
        return rc;
    outb(ATA_STATUS, lba + count > LBA28_LIMIT ? CMD_FLUSH48 : CMD_FLUSH28);
    settle();
    rc = wait_status(0, FLUSH_MS);
    return rc < 0 ? rc : 0;
}
