/* rt.h - interfaces between the files of the portable runtime (src/runtime/).
 *
 * Nothing outside src/runtime/ includes this: the platforms see only bareflow/runtime.h and
 * bareflow/platform.h.  Each group of declarations belongs to the file named in its comment;
 * every function here either succeeds or ends the run through bf_panic() unless its comment
 * says otherwise.
 */
#ifndef BAREFLOW_RT_H
#define BAREFLOW_RT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "bareflow/layer_abi.h"

/* console.c: all runtime output goes through here (platform_console_write underneath). */
void bf_write(const char *buf, size_t len);
int bf_console_mid_line(void);   /* the last byte written was not a newline */
void bf_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void bf_vprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* util.c: CRC-32 (IEEE, zlib's), a deterministic u64 sort, the layer and tier names. */
uint32_t bf_crc32(uint32_t crc, const void *data, size_t len);
void bf_sort_u64(uint64_t *v, size_t n);
void *bf_alloc(size_t size, size_t align, const char *what);  /* panics when the arena is full */
uint32_t bf_le32(const void *p);
uint16_t bf_le16(const void *p);
uint64_t bf_le64(const void *p);

enum bf_layer_id {
    BF_EMBED, BF_RMSNORM, BF_QKV, BF_ROPE, BF_ATTN, BF_ATTNOUT, BF_FFN, BF_CLASSIFY, BF_SAMPLER,
    BF_N_LAYERS
};
#define BF_N_TIERS 4
extern const char *const bf_layer_names[BF_N_LAYERS];
extern const char *const bf_tier_names[BF_N_TIERS];
extern const char *const bf_isa_names[2];

/* files.c: whole files from the FAT16 disk, else from the boot loader's hand-over. */
void bf_files_init(void);
const void *bf_read_file(const char *path, size_t *size);  /* panics naming the path if absent */
int bf_file_exists(const char *path);
/* Overwrite an existing disk file of exactly `size` bytes in place.  Returns 0, or -1 after
 * printing a warning that says why (no disk, absent, other size, I/O error). */
int bf_overwrite_file(const char *path, const void *data, size_t size);

/* config.c: /BAREFLOW.CFG (docs/boot-config.md). */
struct bf_run_config {
    char prompt[256];
    int steps;
    int steps_line;           /* line that set steps (0 = default); steps is checked later */
    float temperature;
    float topp;
    uint64_t seed;
    char jit_cpu[64];         /* run-time tiers' target CPU instead of the host's ("" = host) */
    uint64_t jit_heap_kib;    /* memory for the run-time compiler's heap */
};
void bf_config_load(struct bf_run_config *rc);
void bf_config_check_steps(const struct bf_run_config *rc, int seq_len);

/* model.c: /MODEL.BIN, a llama2.c checkpoint. */
struct bf_model {
    struct bf_config cfg;
    const float *token_embedding;     /* [vocab, dim] */
    const float *rms_final;           /* [dim] */
    const float *wcls;                /* [vocab, dim] (the embedding when shared) */
    struct bf_block_weights *blocks;  /* [n_layers] */
    int shared_classifier;
};
void bf_model_load(struct bf_model *m);
void bf_state_alloc(struct bf_state *s, const struct bf_config *cfg);

/* tokenizer.c: /TOKENIZR.BIN, llama2.c's tokenizer. */
struct bf_tokenizer {
    int vocab_size;
    int max_token_length;
    const char **pieces;      /* NUL-terminated copies */
    int *lengths;
    float *scores;
    int *sorted;              /* token ids ordered by piece bytes, then id */
    int space_id;             /* id of " " (dummy prefix) or -1 */
};
void bf_tokenizer_load(struct bf_tokenizer *t, int vocab_size);
/* Returns the number of ids written to `out` (capacity strlen(text) + 3). */
int bf_encode(const struct bf_tokenizer *t, const char *text, int *out);
/* The bytes `token` decodes to after `prev`; *len receives their count. */
const char *bf_decode(const struct bf_tokenizer *t, int prev, int token, size_t *len);

/* loader.c: BFMD module files (docs/module-format.md). */
bf_layer_fn bf_load_module(int layer, int tier);
const char *bf_module_path(int layer, int tier);   /* "/MODULES/RMSNORM.O2"; static buffer */
extern int bf_module_isa;     /* ISA level of the modules loaded so far, -1 before the first */
#define BF_ISA_HOST 2         /* isa code of run-time code: the CPU the run is on */
/* The same rules for BFMD bytes built in memory by the JIT; NULL with the reason in err. */
bf_layer_fn bf_load_module_image(const char *what, const void *image, size_t size, int layer, int level, char *err,
                                 size_t errlen);

/* jit.c and jit_object.c: run-time tiers (docs/jit.md).  A tier code (docs/policy-table.md) is
 * 0..3 for the module file O0..O3, or kind << 4 | level for code compiled at run time:
 * kind 1 = for the CPU the run is on, 2 = for x86-64-v3, 3 = for x86-64-v4. */
#define BF_MAX_JIT_RECORDS 32
struct bf_jit_record {
    int layer, code, ok, core;
    char cpu[48];             /* target CPU as LLVM names it */
    char features[96];        /* the enabled vector features among those the result line names */
    uint64_t cycles;          /* reading the bitcode, compiling, converting and loading */
    uint64_t object_size;     /* bytes of the ELF object the compiler emitted */
    uint64_t swap_call;       /* calls of the layer before the new code took over (ok only) */
    char error[160];          /* why it failed (not ok) */
};
extern const char *const bf_jit_kind_names[4];
const char *bf_tier_name(int code);             /* "O2", "O3@host", "O2@x86-64-v3" */
const char *bf_bitcode_path(int layer);         /* "/MODULES/RMSNORM.BC"; static buffer */
void bf_jit_configure(const struct bf_run_config *rc);
#define BF_TIER_KIND(code) ((code) >> 4)
bf_layer_fn bf_jit_tier(int layer, int code, int *record);
void bf_jit_note_swap(int record, uint64_t call);
const struct bf_jit_record *bf_jit_records(int *n);
uint64_t bf_jit_init_cycles(void);
void *bf_object_to_bfmd(const void *object, size_t n, int layer, int level, size_t *out_size, char *err,
                        size_t errlen);

/* tiering.c: /POLICY.TBL (docs/policy-table.md) and the dispatch slots. */
#define BF_MAX_CHANGES 3
struct bf_tier_change {
    uint64_t call;            /* calls of the layer completed before the new tier took over */
    uint8_t from, to;         /* tier codes */
};
struct bf_layer_stats {
    uint64_t calls[BF_N_TIERS];
    uint64_t cycles[BF_N_TIERS];
    int tier;                 /* current tier code (calls[] and cycles[] count by its level, code & 3) */
    int n_changes;
    struct bf_tier_change changes[BF_MAX_CHANGES];
};
void bf_tiering_init(void);
void bf_call(int layer, struct bf_layer_call *call);
const struct bf_layer_stats *bf_layer_stats(int layer);
uint64_t bf_profiling_overhead(void);   /* median cycles per call, measured at init */

/* inference.c: the forward pass and the generate loop. */
struct bf_run {
    int prompt_tokens[258];
    int n_prompt;
    int *tokens;              /* generated ids, capacity steps */
    int n_tokens;
    char *text;               /* decoded generated bytes, NUL-terminated */
    size_t text_len;
    uint64_t loop_cycles;     /* cycles of the whole generate loop */
    uint64_t first_token_at;  /* platform_cycles() when the first token was generated, 0 if none */
};
void bf_generate(const struct bf_model *m, const struct bf_tokenizer *t,
                 const struct bf_run_config *rc, struct bf_run *run);

/* result.c and profile.c: what a run leaves behind. */
void bf_print_result(const struct bf_run_config *rc, const struct bf_run *run, uint64_t start_cycles);
void bf_write_profile(const struct bf_run *run);

#endif
