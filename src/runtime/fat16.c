/* fat16.c - a small, suspicious FAT16 reader (and in-place rewriter) for the boot disk.
 *
 * Promise (see bareflow/fat16.h): every number taken from the disk is range-checked before it
 * is used to compute a sector, so a corrupt or hostile image yields an error message naming
 * the path and field, never a read outside the volume, an endless loop or a write elsewhere
 * than the clusters of the file being rewritten.  The first FAT is read once at mount; the
 * volume is never changed in a way that would invalidate that copy.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "bareflow/fat16.h"
#include "bareflow/platform.h"
#include "rt.h"

#define SECTOR 512u
#define MAX_IO 128u                /* sectors per platform call: keeps ATA PIO requests small */
#define FAT_BAD 0xFFF7u
#define FAT_EOC 0xFFF8u            /* this value and above end a chain */
#define ATTR_VOLUME 0x08u
#define ATTR_DIR 0x10u
#define ATTR_LFN 0x0Fu

struct entry {
    uint8_t attr;
    uint16_t cluster;
    uint32_t size;
};

__attribute__((format(printf, 3, 4)))
static int fail(struct bf_fat16 *v, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->error, sizeof v->error, fmt, ap);
    va_end(ap);
    return code;
}

/* Volume-relative sector I/O in bounded pieces. */
static int disk_io(struct bf_fat16 *v, const char *what, uint32_t sector, uint32_t count, void *buf, int write)
{
    if ((uint64_t)sector + count > v->total_sectors)
        return fail(v, BF_FAT_ERROR, "%s: sector %u+%u lies outside the %u-sector volume", what, sector, count,
                    v->total_sectors);
    uint8_t *p = buf;
    while (count) {
        uint32_t n = count < MAX_IO ? count : MAX_IO;
        uint64_t lba = v->part_lba + sector;
        int r = write ? platform_disk_write(lba, n, p) : platform_disk_read(lba, n, p);
        if (r < 0)
            return fail(v, BF_FAT_ERROR, "%s: disk %s error at sector %llu", what, write ? "write" : "read",
                        (unsigned long long)lba);
        sector += n;
        count -= n;
        p += (size_t)n * SECTOR;
    }
    return BF_FAT_OK;
}

/* A FAT16 boot sector at sector 0 means a disk without a partition table (superfloppy). */
static int is_fat16_boot_sector(const uint8_t *s)
{
    return (s[0] == 0xEB || s[0] == 0xE9) && bf_le16(s + 11) == SECTOR && memcmp(s + 54, "FAT16", 5) == 0;
}

static int find_partition(struct bf_fat16 *v, const uint8_t *mbr, uint64_t disk, uint64_t *start, uint64_t *count)
{
    if (is_fat16_boot_sector(mbr)) {
        *start = 0;
        *count = disk;
        return BF_FAT_OK;
    }
    if (bf_le16(mbr + 510) != 0xAA55)
        return fail(v, BF_FAT_ERROR, "MBR: signature 0x%04x at offset 510, expected 0xaa55", bf_le16(mbr + 510));
    for (int i = 0; i < 4; i++) {
        const uint8_t *e = mbr + 446 + 16 * i;
        if (e[4] != 0x04 && e[4] != 0x06 && e[4] != 0x0E)
            continue;
        *start = bf_le32(e + 8);
        *count = bf_le32(e + 12);
        if (*start == 0 || *count == 0 || *start + *count > disk)
            return fail(v, BF_FAT_ERROR, "MBR: partition %d (type 0x%02x) spans sectors %llu+%llu, outside the "
                        "%llu-sector disk", i + 1, e[4], (unsigned long long)*start, (unsigned long long)*count,
                        (unsigned long long)disk);
        return BF_FAT_OK;
    }
    return fail(v, BF_FAT_ERROR, "MBR: no partition of type 0x04, 0x06 or 0x0e");
}

static int parse_bpb(struct bf_fat16 *v, const uint8_t *bs, uint64_t part_sectors)
{
    uint32_t bps = bf_le16(bs + 11), spc = bs[13], reserved = bf_le16(bs + 14), nfats = bs[16];
    uint32_t root_entries = bf_le16(bs + 17), fat_size = bf_le16(bs + 22);
    uint32_t total = bf_le16(bs + 19) ? bf_le16(bs + 19) : bf_le32(bs + 32);

    if (bf_le16(bs + 510) != 0xAA55)
        return fail(v, BF_FAT_ERROR, "FAT16 boot sector: signature 0x%04x, expected 0xaa55", bf_le16(bs + 510));
    if (bps != SECTOR)
        return fail(v, BF_FAT_ERROR, "FAT16 BPB: bytes_per_sector %u, expected 512", bps);
    if (spc == 0 || (spc & (spc - 1)))
        return fail(v, BF_FAT_ERROR, "FAT16 BPB: sectors_per_cluster %u is not a power of two", spc);
    if (reserved < 1)
        return fail(v, BF_FAT_ERROR, "FAT16 BPB: reserved_sectors 0, expected at least 1");
    if (nfats < 1 || nfats > 2)
        return fail(v, BF_FAT_ERROR, "FAT16 BPB: num_fats %u, expected 1 or 2", nfats);
    if (root_entries == 0 || root_entries % (SECTOR / 32))
        return fail(v, BF_FAT_ERROR, "FAT16 BPB: root_entries %u is not a non-zero multiple of 16", root_entries);
    if (fat_size == 0)
        return fail(v, BF_FAT_ERROR, "FAT16 BPB: fat_size_16 is 0 (not a FAT16 volume)");
    if (total == 0 || total > part_sectors)
        return fail(v, BF_FAT_ERROR, "FAT16 BPB: total_sectors %u, the partition has %llu", total,
                    (unsigned long long)part_sectors);
    uint32_t root_start = reserved + nfats * fat_size;
    uint32_t data_start = root_start + root_entries * 32 / SECTOR;
    if (data_start >= total)
        return fail(v, BF_FAT_ERROR, "FAT16 BPB: reserved, FATs and root directory (%u sectors) fill the "
                    "%u-sector volume", data_start, total);
    uint32_t clusters = (total - data_start) / spc;
    if (clusters < 4085 || clusters > 65524)
        return fail(v, BF_FAT_ERROR, "FAT16 BPB: %u clusters, a FAT16 volume has 4085..65524", clusters);
    if ((uint64_t)fat_size * (SECTOR / 2) < clusters + 2)
        return fail(v, BF_FAT_ERROR, "FAT16 BPB: fat_size_16 %u sectors cannot map %u clusters", fat_size,
                    clusters);
    v->total_sectors = total;
    v->sectors_per_cluster = spc;
    v->fat_start = reserved;
    v->root_start = root_start;
    v->root_sectors = root_entries * 32 / SECTOR;
    v->data_start = data_start;
    v->cluster_count = clusters;
    return BF_FAT_OK;
}

static int prove_volume(struct bf_fat16 *v);

int bf_fat16_mount(struct bf_fat16 *v)
{
    static uint8_t sec[SECTOR] __attribute__((aligned(16)));
    uint64_t disk = platform_disk_sectors(), start, count;

    memset(v, 0, sizeof *v);
    if (disk == 0)
        return fail(v, BF_FAT_NO_DISK, "no disk");
    if (platform_disk_read(0, 1, sec) < 0)
        return fail(v, BF_FAT_ERROR, "MBR: disk read error at sector 0");
    int r = find_partition(v, sec, disk, &start, &count);
    if (r)
        return r;
    if (platform_disk_read(start, 1, sec) < 0)
        return fail(v, BF_FAT_ERROR, "FAT16 boot sector: disk read error at sector %llu", (unsigned long long)start);
    v->part_lba = start;
    if ((r = parse_bpb(v, sec, count)))
        return r;

    uint32_t fat_sectors = ((v->cluster_count + 2) * 2 + SECTOR - 1) / SECTOR;
    uint16_t *fat = platform_alloc((size_t)fat_sectors * SECTOR, 64);
    if (!fat)
        return fail(v, BF_FAT_ERROR, "FAT16: out of memory for the %u-sector FAT", fat_sectors);
    if ((r = disk_io(v, "FAT16 FAT", v->fat_start, fat_sectors, fat, 0)))
        return r;
    v->fat = fat;
    if ((r = prove_volume(v))) {
        v->fat = NULL;      /* an unproven volume is not mounted: nothing reads or writes it */
        return r;
    }
    return BF_FAT_OK;
}

static int valid_cluster(const struct bf_fat16 *v, uint32_t c)
{
    return c >= 2 && c <= v->cluster_count + 1;
}

/* ---- the volume proof: every chain reachable from the root, checked once at mount ---- */

#define MAX_FILES 4096u            /* directory entries (files and directories) on the volume */
#define MAX_DIRS 256u

/* "/MODULES/RMSNORM.O2" for file number `n` (1-based); four rotating static buffers. */
static const char *file_path(const struct bf_fat16 *v, uint32_t n)
{
    static char path[4][128];
    static unsigned which;
    char *out = path[which++ & 3];
    uint32_t chain[16], depth = 0;
    for (uint32_t f = n; f && depth < 16; f = v->files[f - 1].parent)
        chain[depth++] = f;
    size_t len = 0;
    out[0] = 0;
    while (depth-- > 0) {
        const char *name = v->files[chain[depth] - 1].name;
        size_t k = strlen(name);
        if (len + 1 + k + 1 > sizeof path[0])
            break;
        out[len++] = '/';
        memcpy(out + len, name, k + 1);
        len += k;
    }
    return out;
}

static void entry_name(const uint8_t *e, char out[13])
{
    int n = 0;
    for (int i = 0; i < 8 && e[i] != ' '; i++)
        out[n++] = (e[i] >= 0x20 && e[i] < 0x7F) ? (char)e[i] : '?';
    if (e[8] != ' ') {
        out[n++] = '.';
        for (int i = 8; i < 11 && e[i] != ' '; i++)
            out[n++] = (e[i] >= 0x20 && e[i] < 0x7F) ? (char)e[i] : '?';
    }
    out[n] = 0;
}

/* Claim the chain of file `n` starting at `first`: every link in range, no cluster already
 * claimed (by another file: cross-linked; by this one: a loop), and for a regular file exactly
 * `need` clusters.  Directories (need == 0) run to the end-of-chain mark. */
static int claim_chain(struct bf_fat16 *v, uint32_t n, uint32_t first, uint32_t need)
{
    uint32_t cur = first, count = 0;
    for (;;) {
        if (!valid_cluster(v, cur))
            return fail(v, BF_FAT_ERROR, "%s: cluster %u (link %u of its chain) out of range 2..%u", file_path(v, n),
                        cur, count, v->cluster_count + 1);
        if (v->owner[cur] == n)
            return fail(v, BF_FAT_ERROR, "%s: cluster chain loops back to cluster %u", file_path(v, n), cur);
        if (v->owner[cur])
            return fail(v, BF_FAT_ERROR, "%s and %s share cluster %u (cross-linked cluster chains)",
                        file_path(v, v->owner[cur]), file_path(v, n), cur);
        v->owner[cur] = (uint16_t)n;
        count++;
        uint16_t next = v->fat[cur];
        if (next >= FAT_EOC)
            break;
        if (need && count == need)
            return fail(v, BF_FAT_ERROR, "%s: cluster chain continues past the %u clusters its size needs "
                        "(FAT[%u] = 0x%04x)", file_path(v, n), need, cur, next);
        if (next == FAT_BAD)
            return fail(v, BF_FAT_ERROR, "%s: cluster chain reaches a cluster marked bad (FAT[%u] = 0xfff7)",
                        file_path(v, n), cur);
        cur = next;
    }
    if (need && count != need)
        return fail(v, BF_FAT_ERROR, "%s: cluster chain ends after %u clusters, its size needs %u", file_path(v, n),
                    count, need);
    return BF_FAT_OK;
}

struct dir_ref {
    uint32_t file;                 /* file number of the directory, 0 = root */
    uint32_t first;                /* its first cluster (unused for the root) */
};

/* One live directory entry: register it, claim its chain, queue it if it is a directory. */
static int prove_entry(struct bf_fat16 *v, const uint8_t *e, uint32_t parent, struct dir_ref *dirs,
                       uint32_t *n_dirs)
{
    if (v->n_files >= MAX_FILES)
        return fail(v, BF_FAT_ERROR, "FAT16: more than %u directory entries on the volume", MAX_FILES);
    uint32_t n = ++v->n_files;
    entry_name(e, v->files[n - 1].name);
    v->files[n - 1].parent = (uint16_t)parent;
    uint32_t first = bf_le16(e + 26), size = bf_le32(e + 28);
    uint32_t cluster_bytes = v->sectors_per_cluster * SECTOR;
    if (e[11] & ATTR_DIR) {
        if (*n_dirs >= MAX_DIRS)
            return fail(v, BF_FAT_ERROR, "%s: more than %u directories on the volume", file_path(v, n), MAX_DIRS);
        dirs[(*n_dirs)++] = (struct dir_ref){n, first};
        return claim_chain(v, n, first, 0);
    }
    if (size == 0) {
        if (first != 0)
            return fail(v, BF_FAT_ERROR, "%s: size 0 but first cluster %u (an empty file has none)",
                        file_path(v, n), first);
        return BF_FAT_OK;
    }
    return claim_chain(v, n, first, size / cluster_bytes + (size % cluster_bytes != 0));
}

/* The entries of one sector of directory `dir`; *end is set at the 0x00 end marker. */
static int prove_sector(struct bf_fat16 *v, uint32_t sector, struct dir_ref dir, struct dir_ref *dirs,
                        uint32_t *n_dirs, int *end)
{
    static uint8_t sec[SECTOR] __attribute__((aligned(16)));
    int r = disk_io(v, "FAT16 directory", sector, 1, sec, 0);
    if (r)
        return r;
    for (int i = 0; i < (int)(SECTOR / 32); i++) {
        const uint8_t *e = sec + 32 * i;
        if (e[0] == 0x00) {
            *end = 1;
            return BF_FAT_OK;
        }
        if (e[0] == 0xE5 || e[11] == ATTR_LFN || (e[11] & ATTR_VOLUME))
            continue;
        if (dir.file && e[0] == '.' && (e[1] == ' ' || (e[1] == '.' && e[2] == ' ')))
            continue;   /* "." and "..": links to this directory and its parent, not chains of their own */
        if ((r = prove_entry(v, e, dir.file, dirs, n_dirs)))
            return r;
    }
    return BF_FAT_OK;
}

static int prove_volume(struct bf_fat16 *v)
{
    static struct dir_ref dirs[MAX_DIRS];
    uint32_t n_dirs = 0;
    size_t map = (size_t)(v->cluster_count + 2) * sizeof *v->owner;
    v->owner = platform_alloc(map, 64);
    v->files = platform_alloc(MAX_FILES * sizeof *v->files, 64);
    if (!v->owner || !v->files)
        return fail(v, BF_FAT_ERROR, "FAT16: out of memory for the cluster map");
    memset(v->owner, 0, map);
    v->n_files = 0;
    int end = 0, r;
    for (uint32_t s = 0; s < v->root_sectors && !end; s++)
        if ((r = prove_sector(v, v->root_start + s, (struct dir_ref){0, 0}, dirs, &n_dirs, &end)))
            return r;
    /* The queue grows while it is walked; each directory's chain was claimed (proven) when queued. */
    for (uint32_t d = 0; d < n_dirs; d++) {
        end = 0;
        for (uint32_t c = dirs[d].first; !end && c < FAT_EOC; c = v->fat[c])
            for (uint32_t s = 0; s < v->sectors_per_cluster && !end; s++)
                if ((r = prove_sector(v, v->data_start + (c - 2) * v->sectors_per_cluster + s, dirs[d], dirs,
                                      &n_dirs, &end)))
                    return r;
    }
    return BF_FAT_OK;
}

/* "rmsnorm.o2" -> "RMSNORM O2 ".  Only characters FAT allows in short names are accepted. */
static int short_name(const char *s, size_t len, char out[11])
{
    static const char extra[] = "!#$%&'()-@^_`{}~";
    size_t i = 0, n = 0;
    memset(out, ' ', 11);
    for (; i < len && s[i] != '.'; i++, n++) {
        if (n >= 8)
            return -1;
        out[n] = s[i];
    }
    if (n == 0)
        return -1;
    if (i < len) {
        i++;
        for (n = 8; i < len; i++, n++) {
            if (n >= 11 || s[i] == '.')
                return -1;
            out[n] = s[i];
        }
        if (n == 8)
            return -1;
    }
    for (n = 0; n < 11; n++) {
        char c = out[n];
        if (c >= 'a' && c <= 'z')
            out[n] = (char)(c - 'a' + 'A');
        else if (!(c == ' ' || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr(extra, c)))
            return -1;
    }
    return 0;
}

static int check_entry(const uint8_t *e, const char name[11], struct entry *out)
{
    if (e[11] == ATTR_LFN || (e[11] & ATTR_VOLUME) || memcmp(e, name, 11) != 0)
        return 0;
    out->attr = e[11];
    out->cluster = bf_le16(e + 26);
    out->size = bf_le32(e + 28);
    return 1;
}

/* Scan one directory (root if dir == 0) for `name`.  Returns OK, NOT_FOUND or ERROR. */
static int find_in_dir(struct bf_fat16 *v, const char *path, uint16_t dir, const char name[11], struct entry *out)
{
    static uint8_t sec[SECTOR] __attribute__((aligned(16)));
    uint32_t cluster = dir, steps = 0;

    for (;;) {
        uint32_t first, count;
        if (dir == 0) {
            first = v->root_start;
            count = v->root_sectors;
        } else {
            if (!valid_cluster(v, cluster))
                return fail(v, BF_FAT_ERROR, "%s: directory cluster %u out of range 2..%u", path, cluster,
                            v->cluster_count + 1);
            first = v->data_start + (cluster - 2) * v->sectors_per_cluster;
            count = v->sectors_per_cluster;
        }
        for (uint32_t s = 0; s < count; s++) {
            int r = disk_io(v, path, first + s, 1, sec, 0);
            if (r)
                return r;
            for (int i = 0; i < (int)(SECTOR / 32); i++) {
                const uint8_t *e = sec + 32 * i;
                if (e[0] == 0x00)
                    return BF_FAT_NOT_FOUND;
                if (e[0] != 0xE5 && check_entry(e, name, out))
                    return BF_FAT_OK;
            }
        }
        if (dir == 0)
            return BF_FAT_NOT_FOUND;
        uint16_t next = v->fat[cluster];
        if (next >= FAT_EOC)
            return BF_FAT_NOT_FOUND;
        if (++steps > v->cluster_count)
            return fail(v, BF_FAT_ERROR, "%s: directory cluster chain loops (FAT[%u] = 0x%04x)", path, cluster, next);
        cluster = next;
    }
}

/* Walk `path` from the root to a regular file's directory entry. */
static int resolve(struct bf_fat16 *v, const char *path, struct entry *out)
{
    if (!v->fat)
        return fail(v, BF_FAT_ERROR, "%s: no FAT16 volume is mounted", path);
    if (path[0] != '/')
        return fail(v, BF_FAT_ERROR, "%s: path must start with '/'", path);
    uint16_t dir = 0;
    const char *p = path + 1;
    for (;;) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char name[11];
        if (short_name(p, len, name))
            return fail(v, BF_FAT_ERROR, "%s: '%.*s' is not a valid 8.3 name", path, (int)len, p);
        int r = find_in_dir(v, path, dir, name, out);
        if (r == BF_FAT_NOT_FOUND)
            return fail(v, r, "%s: '%.*s' not found", path, (int)len, p);
        if (r)
            return r;
        if (!end)
            break;
        if (!(out->attr & ATTR_DIR))
            return fail(v, BF_FAT_ERROR, "%s: '%.*s' is not a directory", path, (int)len, p);
        if (!valid_cluster(v, out->cluster))
            return fail(v, BF_FAT_ERROR, "%s: directory '%.*s' starts at cluster %u, out of range 2..%u", path,
                        (int)len, p, out->cluster, v->cluster_count + 1);
        dir = out->cluster;
        p = end + 1;
    }
    if (out->attr & ATTR_DIR)
        return fail(v, BF_FAT_ERROR, "%s: is a directory", path);
    if (out->size && !valid_cluster(v, out->cluster))
        return fail(v, BF_FAT_ERROR, "%s: first cluster %u out of range 2..%u", path, out->cluster,
                    v->cluster_count + 1);
    return BF_FAT_OK;
}

enum io_mode { IO_CHECK, IO_READ, IO_WRITE };

/* Move one run of contiguous clusters holding `bytes` bytes of the file. */
static int run_io(struct bf_fat16 *v, const char *path, uint32_t cluster, uint8_t *buf, uint32_t bytes,
                  enum io_mode mode)
{
    static uint8_t tail[SECTOR] __attribute__((aligned(16)));
    int write = mode == IO_WRITE;
    if (mode == IO_CHECK)
        return BF_FAT_OK;
    uint32_t sector = v->data_start + (cluster - 2) * v->sectors_per_cluster;
    uint32_t full = bytes / SECTOR, rest = bytes % SECTOR;
    int r = disk_io(v, path, sector, full, buf, write);
    if (r || !rest)
        return r;
    /* The last partial sector goes through a bounce buffer; a write keeps the bytes past the end. */
    if ((r = disk_io(v, path, sector + full, 1, tail, 0)))
        return r;
    if (!write) {
        memcpy(buf + (size_t)full * SECTOR, tail, rest);
        return BF_FAT_OK;
    }
    memcpy(tail, buf + (size_t)full * SECTOR, rest);
    return disk_io(v, path, sector + full, 1, tail, 1);
}

/* Follow the chain from `first` for exactly the clusters `size` needs, moving data as it goes.
 * The chain must end exactly there: a short chain, a long one (also how loops show) or a link
 * outside the volume is corruption.  IO_CHECK walks without moving data, so a rewrite can
 * refuse a broken chain before it writes a single sector. */
static int chain_io(struct bf_fat16 *v, const char *path, uint32_t first, uint8_t *buf, uint32_t size,
                    enum io_mode mode)
{
    uint32_t cluster_bytes = v->sectors_per_cluster * SECTOR;
    uint32_t need = size / cluster_bytes + (size % cluster_bytes != 0), done = 0, cur = first;

    if (need > v->cluster_count)
        return fail(v, BF_FAT_ERROR, "%s: size %u needs %u clusters, the volume has %u", path, size, need,
                    v->cluster_count);
    while (done < need) {
        if (!valid_cluster(v, cur))
            return fail(v, BF_FAT_ERROR, "%s: cluster %u (link %u of its chain) out of range 2..%u", path, cur, done,
                        v->cluster_count + 1);
        uint32_t run = cur, n = 1, next = v->fat[cur];
        while (done + n < need && next == cur + 1 && valid_cluster(v, next)) {
            cur = next;
            next = v->fat[cur];
            n++;
        }
        uint32_t offset = done * cluster_bytes, left = size - offset;
        uint32_t bytes = (uint64_t)n * cluster_bytes < left ? n * cluster_bytes : left;
        int r = run_io(v, path, run, buf + offset, bytes, mode);
        if (r)
            return r;
        done += n;
        if (done < need && next >= FAT_EOC)
            return fail(v, BF_FAT_ERROR, "%s: cluster chain ends after %u clusters, size %u needs %u", path, done,
                        size, need);
        if (done < need && next == FAT_BAD)
            return fail(v, BF_FAT_ERROR, "%s: cluster chain reaches a cluster marked bad (FAT[%u] = 0xfff7)", path,
                        cur);
        if (done == need && next < FAT_EOC)
            return fail(v, BF_FAT_ERROR, "%s: cluster chain continues past the %u clusters size %u needs "
                        "(FAT[%u] = 0x%04x)", path, need, size, cur, next);
        cur = next;
    }
    return BF_FAT_OK;
}

int bf_fat16_stat(struct bf_fat16 *v, const char *path, uint32_t *size)
{
    struct entry e;
    int r = resolve(v, path, &e);
    if (r == BF_FAT_OK)
        *size = e.size;
    return r;
}

int bf_fat16_read(struct bf_fat16 *v, const char *path, void **data, uint32_t *size)
{
    struct entry e;
    int r = resolve(v, path, &e);
    if (r)
        return r;
    uint8_t *buf = platform_alloc(e.size ? e.size : 1, 64);
    if (!buf)
        return fail(v, BF_FAT_ERROR, "%s: out of memory for %u bytes", path, e.size);
    if (e.size && (r = chain_io(v, path, e.cluster, buf, e.size, IO_READ)))
        return r;
    *data = buf;
    *size = e.size;
    return BF_FAT_OK;
}

int bf_fat16_overwrite(struct bf_fat16 *v, const char *path, const void *data, uint32_t size)
{
    struct entry e;
    int r = resolve(v, path, &e);
    if (r)
        return r;
    if (e.size != size)
        return fail(v, BF_FAT_ERROR, "%s: file is %u bytes, the new contents %u; only same-size rewrites happen "
                    "in place", path, e.size, size);
    if (size == 0)
        return BF_FAT_OK;
    /* chain_io's write path only reads from buf; the cast keeps one walker for both directions. */
    uint8_t *src = (uint8_t *)(uintptr_t)data;
    if ((r = chain_io(v, path, e.cluster, src, size, IO_CHECK)))
        return r;
    /* The mount proved every chain; a write still goes only where that proof gave one file. */
    uint32_t owner = v->owner[e.cluster];
    for (uint32_t c = e.cluster, left = size; ; c = v->fat[c]) {
        if (!owner || v->owner[c] != owner)
            return fail(v, BF_FAT_ERROR, "%s: cluster %u is not proven to belong to this file alone", path, c);
        uint32_t bytes = v->sectors_per_cluster * SECTOR;
        if (left <= bytes)
            break;
        left -= bytes;
    }
    return chain_io(v, path, e.cluster, src, size, IO_WRITE);
}
