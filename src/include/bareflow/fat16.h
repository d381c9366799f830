/* fat16.h - the FAT16 reader the runtime loads its files with.
 *
 * Promise: mounting checks the partition table and every BPB field the code later relies on,
 * so no later arithmetic can leave the partition, and proves every cluster chain on the volume
 * (each directory and file reachable from the root): clusters in range, no loop, a file's
 * chain exactly as long as its size needs, no cluster in two chains.  A volume where any of
 * that fails is not mounted.  Lookups and reads check every directory entry and FAT link
 * they follow again.  Functions return BF_FAT_OK or a negative code and, on
 * failure, leave a message naming the path (or the BPB/MBR) and the bad field in v->error.
 * The only write is bf_fat16_overwrite(): same size, same clusters, no FAT or directory change.
 * Sector I/O goes through platform_disk_read/platform_disk_write.
 */
#ifndef BAREFLOW_FAT16_H
#define BAREFLOW_FAT16_H

#include <stdint.h>

#define BF_FAT_OK 0
#define BF_FAT_NOT_FOUND (-1)    /* a path component does not exist: look elsewhere */
#define BF_FAT_ERROR (-2)        /* corrupt volume, bad path or I/O failure */
#define BF_FAT_NO_DISK (-3)      /* platform_disk_sectors() is 0 */

struct bf_fat16 {
    uint64_t part_lba;           /* first sector of the volume, counted from the MBR */
    uint32_t total_sectors;      /* of the volume */
    uint32_t sectors_per_cluster;
    uint32_t fat_start;          /* volume-relative sector of the first FAT */
    uint32_t root_start;         /* volume-relative sector of the root directory */
    uint32_t root_sectors;
    uint32_t data_start;         /* volume-relative sector of cluster 2 */
    uint32_t cluster_count;      /* valid clusters are 2 .. cluster_count+1 */
    const uint16_t *fat;         /* first FAT copy, cluster_count+2 entries (little-endian host) */
    uint16_t *owner;             /* per cluster: 0 = in no chain, else 1 + the index of its file */
    uint32_t n_files;            /* directory entries proven at mount (files and directories) */
    struct bf_fat16_file {       /* for messages: the 8.3 name and the directory holding it */
        char name[13];
        uint16_t parent;         /* 0 = root, else 1 + index */
    } *files;
    char error[256];
};

int bf_fat16_mount(struct bf_fat16 *v);
/* Size of a regular file (no data read). */
int bf_fat16_stat(struct bf_fat16 *v, const char *path, uint32_t *size);
/* Whole file into fresh platform_alloc memory (64-byte aligned; never freed). */
int bf_fat16_read(struct bf_fat16 *v, const char *path, void **data, uint32_t *size);
/* Rewrite an existing file's clusters with `size` bytes; the file must already be that size. */
int bf_fat16_overwrite(struct bf_fat16 *v, const char *path, const void *data, uint32_t size);

#endif
