/* files.c - where the runtime's files come from.
 *
 * Promise: a file the boot loader handed over is used in place when the FAT16 boot disk holds
 * no file of that name or one of the same size (the loader read it from that disk moments ago:
 * reading the weights a second time over ATA PIO costs minutes under emulation and a second
 * copy in memory); otherwise the file is taken from the disk.  When neither has it the run stops
 * naming the path and why the disk did not answer.  A disk that is present but corrupt is not
 * silently skipped for a file it must read: a broken cluster chain stops the run with the FAT16
 * reader's message.
 */
#include <string.h>

#include "bareflow/fat16.h"
#include "bareflow/platform.h"
#include "bareflow/runtime.h"
#include "rt.h"

static struct bf_fat16 vol;
static int mounted;
static char mount_error[sizeof vol.error];

void bf_files_init(void)
{
    int r = bf_fat16_mount(&vol);
    mounted = r == BF_FAT_OK;
    if (mounted)
        return;
    memcpy(mount_error, vol.error, sizeof mount_error);
    /* Booting from handed-over files alone is legitimate; say why the disk is not used. */
    if (r != BF_FAT_NO_DISK)
        bf_printf("bareflow: disk not used: %s\n", mount_error);
}

/* The handed copy of `path` when the disk agrees it is that file (same size, or not on the disk). */
static const void *handed_copy(const char *path, size_t *size)
{
    size_t n;
    const void *handed = platform_handed_file(path, &n);
    if (!handed)
        return NULL;
    if (mounted) {
        uint32_t on_disk;
        int r = bf_fat16_stat(&vol, path, &on_disk);
        if (r == BF_FAT_OK && on_disk != n)
            return NULL;                /* the disk's file changed after the loader read it */
        if (r != BF_FAT_OK && r != BF_FAT_NOT_FOUND)
            bf_panic("%s", vol.error);
    }
    *size = n;
    return handed;
}

const void *bf_read_file(const char *path, size_t *size)
{
    const char *why = mount_error;
    const void *handed = handed_copy(path, size);
    if (handed)
        return handed;
    if (mounted) {
        void *data;
        uint32_t n;
        int r = bf_fat16_read(&vol, path, &data, &n);
        if (r == BF_FAT_OK) {
            *size = n;
            return data;
        }
        if (r != BF_FAT_NOT_FOUND)
            bf_panic("%s", vol.error);
        why = vol.error;
    }
    bf_panic("file %s: not found (disk: %s; boot loader: not handed over)", path, why);
}

int bf_file_exists(const char *path)
{
    size_t size;
    uint32_t n;
    if (mounted) {
        int r = bf_fat16_stat(&vol, path, &n);
        if (r == BF_FAT_OK)
            return 1;
        if (r != BF_FAT_NOT_FOUND)
            bf_panic("%s", vol.error);
    }
    return platform_handed_file(path, &size) != NULL;
}

int bf_overwrite_file(const char *path, const void *data, size_t size)
{
    if (!mounted) {
        bf_printf("bareflow: warning: %s not written: no FAT16 disk (%s)\n", path, mount_error);
        return -1;
    }
    if (bf_fat16_overwrite(&vol, path, data, (uint32_t)size) != BF_FAT_OK) {
        bf_printf("bareflow: warning: %s not written: %s\n", path, vol.error);
        return -1;
    }
    return 0;
}
