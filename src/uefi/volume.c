/* volume.c - reading files from the FAT volume BOOTX64.EFI itself was loaded from.
 *
 * Promises: vol_open() finds that volume through LoadedImage -> DeviceHandle ->
 * SimpleFileSystem, so the loader reads the same partition the firmware booted (an IDE disk
 * or a USB stick alike), or stops the boot naming the step that failed.  vol_read() places a
 * whole file in fresh pages below 4 GiB; a missing file or no room below 4 GiB is the
 * caller's decision, any other firmware error stops the boot naming the file.  vol_list()
 * returns a directory's regular files as upper-case 8.3 paths in sorted order, so the kernel
 * sees the same list whatever order the firmware's FAT driver reports.
 */
#include "loader.h"

#define INFO_BYTES 1024                     /* EFI_FILE_INFO plus a name: ample for 8.3 */
#define READ_CHUNK (16ull << 20)            /* some firmware USB stacks dislike huge reads */

static EFI_FILE_PROTOCOL *root;

void vol_open(void)
{
    static const EFI_GUID loaded_image_guid = EFI_LOADED_IMAGE_PROTOCOL_GUID;
    static const EFI_GUID fs_guid = EFI_SIMPLE_FILE_SYSTEM_PROTOCOL_GUID;
    EFI_BOOT_SERVICES *bs = g_st->boot_services;
    EFI_LOADED_IMAGE_PROTOCOL *image;
    EFI_SIMPLE_FILE_SYSTEM_PROTOCOL *fs;

    EFI_STATUS s = bs->handle_protocol(g_image, &loaded_image_guid, (void **)&image);
    if (s != EFI_SUCCESS)
        fail(s, "no LoadedImage protocol on our own image handle: %s", status_name(s));
    s = bs->handle_protocol(image->device_handle, &fs_guid, (void **)&fs);
    if (s != EFI_SUCCESS)
        fail(s, "the device BOOTX64.EFI was loaded from has no file system protocol: %s",
             status_name(s));
    s = fs->open_volume(fs, &root);
    if (s != EFI_SUCCESS)
        fail(s, "cannot open the boot volume: %s", status_name(s));
}

/* "/MODULES/X.O2" -> L"\MODULES\X.O2" */
static void to_efi_path(const char *path, CHAR16 *out, size_t cap)
{
    size_t n = 0;
    for (; path[n] && n < cap - 1; n++)
        out[n] = path[n] == '/' ? '\\' : (unsigned char)path[n];
    out[n] = 0;
}

static EFI_STATUS open_path(const char *path, EFI_FILE_PROTOCOL **f)
{
    CHAR16 wide[MAX_PATH];
    if (ascii_len(path) >= MAX_PATH)
        fail(EFI_INVALID_PARAMETER, "path %s is longer than %u characters", path, (uint64_t)MAX_PATH - 1);
    to_efi_path(path, wide, MAX_PATH);
    return root->open(root, f, wide, EFI_FILE_MODE_READ, 0);
}

static int is_absent(EFI_STATUS s)
{
    return s == EFI_NOT_FOUND;
}

int vol_read(const char *path, uint64_t *addr, uint64_t *size, EFI_STATUS *why)
{
    static const EFI_GUID info_guid = EFI_FILE_INFO_GUID;
    static uint64_t info_buf[INFO_BYTES / 8];          /* EFI_FILE_INFO wants 8-byte alignment */
    EFI_FILE_PROTOCOL *f;

    EFI_STATUS s = open_path(path, &f);
    *why = s;
    if (is_absent(s))
        return -1;
    if (s != EFI_SUCCESS)
        fail(s, "cannot open %s: %s", path, status_name(s));
    uint64_t n = sizeof info_buf;
    s = f->get_info(f, &info_guid, &n, info_buf);
    if (s != EFI_SUCCESS)
        fail(s, "cannot read the directory entry of %s: %s", path, status_name(s));
    const EFI_FILE_INFO *info = (const EFI_FILE_INFO *)info_buf;
    if (info->attribute & EFI_FILE_DIRECTORY)
        fail(EFI_INVALID_PARAMETER, "%s is a directory, not a file", path);

    uint64_t total = info->file_size, base = alloc_low_pages(total, why);
    if (!base) {
        f->close(f);
        return -2;
    }
    for (uint64_t done = 0; done < total;) {
        uint64_t want = total - done < READ_CHUNK ? total - done : READ_CHUNK, got = want;
        s = f->read(f, &got, (void *)(uintptr_t)(base + done));
        if (s != EFI_SUCCESS)
            fail(s, "reading %s at byte %u of %u: %s", path, done, total, status_name(s));
        if (got == 0 || got > want)
            fail(EFI_VOLUME_CORRUPTED, "reading %s: the firmware returned %u bytes at byte %u of %u",
                 path, got, done, total);
        done += got;
    }
    f->close(f);
    *addr = base;
    *size = total;
    *why = EFI_SUCCESS;
    return 0;
}

static int ascii_less(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return (unsigned char)*a < (unsigned char)*b;
}

size_t vol_list(const char *dir, char names[][MAX_PATH], size_t max)
{
    static uint64_t info_buf[INFO_BYTES / 8];
    EFI_FILE_PROTOCOL *d;
    EFI_STATUS s = open_path(dir, &d);
    if (is_absent(s))
        return 0;
    if (s != EFI_SUCCESS)
        fail(s, "cannot open directory %s: %s", dir, status_name(s));

    size_t count = 0, dir_len = ascii_len(dir);
    for (;;) {
        uint64_t n = sizeof info_buf;
        s = d->read(d, &n, info_buf);
        if (s != EFI_SUCCESS)
            fail(s, "listing %s: %s", dir, status_name(s));
        if (n == 0)
            break;                                      /* end of the directory */
        const EFI_FILE_INFO *info = (const EFI_FILE_INFO *)info_buf;
        if (info->attribute & EFI_FILE_DIRECTORY)
            continue;                                   /* ".", ".." and sub-directories */
        char name[MAX_PATH];
        size_t len = 0;
        int ok = 1;
        for (const CHAR16 *c = info->file_name; *c; c++) {
            if (*c > 0x7E || *c <= 0x20 || *c == '/' || *c == '\\' || len >= 12) {
                ok = 0;
                break;
            }
            name[len++] = (char)(*c >= 'a' && *c <= 'z' ? *c - 'a' + 'A' : *c);
        }
        if (!ok || len == 0) {
            say("bareflow-uefi: skipping a file in %s whose name is not 8.3 ASCII\n", dir);
            continue;
        }
        if (count == max)
            fail(EFI_OUT_OF_RESOURCES, "%s holds more than %u files; the kernel accepts at most %u "
                 "handed files", dir, (uint64_t)max, (uint64_t)MAX_HANDED_FILES);
        char *out = names[count++];
        memcpy(out, dir, dir_len);
        out[dir_len] = '/';
        memcpy(out + dir_len + 1, name, len);
        out[dir_len + 1 + len] = 0;
    }
    d->close(d);

    for (size_t i = 1; i < count; i++) {                /* insertion sort: a few dozen names */
        char tmp[MAX_PATH];
        memcpy(tmp, names[i], MAX_PATH);
        size_t j = i;
        for (; j > 0 && ascii_less(tmp, names[j - 1]); j--)
            memcpy(names[j], names[j - 1], MAX_PATH);
        memcpy(names[j], tmp, MAX_PATH);
    }
    return count;
}
