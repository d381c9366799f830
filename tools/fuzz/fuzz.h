/* fuzz.h - what the fuzzing harness's files share (tools/fuzz/). */
#ifndef BAREFLOW_FUZZ_H
#define BAREFLOW_FUZZ_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

#define FUZZ_MAX_DIRTY 64
struct fuzz_range {
    uint64_t offset, len;
};

extern jmp_buf fuzz_exit_jmp;
extern int fuzz_exit_code;
extern uint8_t *fuzz_disk;                 /* the image under test; NULL = no disk */
extern uint64_t fuzz_disk_sectors;
extern struct fuzz_range fuzz_dirty[FUZZ_MAX_DIRTY];   /* bytes the runtime wrote */
extern int fuzz_n_dirty;
extern int fuzz_exec_arena;
extern char fuzz_console[4096];
extern size_t fuzz_console_len;
void fuzz_reset(void);

/* files_fuzz.c (parser harness only): the files bf_read_file serves. */
void fuzz_files_clear(void);
void fuzz_files_add(const char *path, const void *data, size_t size);

#endif
