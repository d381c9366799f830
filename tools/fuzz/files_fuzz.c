/* files_fuzz.c - src/runtime/files.c's interface over an in-memory table (parser harness).
 *
 * Promise: bf_read_file serves exactly the files the driver registered and panics like the
 * real one for any other path, so each parser is fed its input directly, without a disk.
 */
#include <string.h>

#include "bareflow/runtime.h"
#include "../../src/runtime/rt.h"
#include "fuzz.h"

#define MAX_FILES 64

static struct {
    char path[40];
    const void *data;
    size_t size;
} files[MAX_FILES];
static int n_files;

void fuzz_files_clear(void)
{
    n_files = 0;
}

void fuzz_files_add(const char *path, const void *data, size_t size)
{
    for (int i = 0; i < n_files; i++)
        if (strcmp(files[i].path, path) == 0) {
            files[i].data = data;
            files[i].size = size;
            return;
        }
    if (n_files < MAX_FILES && strlen(path) < sizeof files[0].path) {
        strcpy(files[n_files].path, path);
        files[n_files].data = data;
        files[n_files].size = size;
        n_files++;
    }
}

void bf_files_init(void)
{
}

const void *bf_read_file(const char *path, size_t *size)
{
    for (int i = 0; i < n_files; i++)
        if (strcmp(files[i].path, path) == 0) {
            *size = files[i].size;
            return files[i].data;
        }
    bf_panic("file %s: not found (fuzz harness)", path);
}

int bf_file_exists(const char *path)
{
    for (int i = 0; i < n_files; i++)
        if (strcmp(files[i].path, path) == 0)
            return 1;
    return 0;
}

int bf_overwrite_file(const char *path, const void *data, size_t size)
{
    (void)path;
    (void)data;
    (void)size;
    return 0;
}
