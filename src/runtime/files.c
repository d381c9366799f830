/* files.c - where the runtime's files come from.
 *
 * Promise: a file is taken from the FAT16 boot disk when one is mounted and holds it, else from
 * the files the boot loader handed over; when neither has it the run stops naming the path and
 * why the disk did not answer.  A disk that is present but corrupt is not silently skipped for
 * a file it does hold: a broken cluster chain stops the run with the FAT16 reader's message.
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

const void *bf_read_file(const char *path, size_t *size)
{
    const char *why = mount_error;
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
    const void *handed = platform_handed_file(path, size);
    if (handed)
        return handed;
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
