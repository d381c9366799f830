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
#define BF_MAX_CORES 64       /* cores a run can split its layers over */
extern const char *const bf_layer_names[BF_N_LAYERS];
extern const char *const bf_tier_names[BF_N_TIERS];
extern const char *const bf_isa_names[4];   /* by ISA code, bareflow/x86_isa.h */

/* files.c: whole files from the FAT16 disk, else from the boot loader's hand-over. */
void bf_files_init(void);
const void *bf_read_file(const char *path, size_t *size);  /* panics naming the path if absent */
int bf_file_exists(const char *path);
/* Overwrite an existing disk file of exactly `size` bytes in place.  Returns 0, or -1 after
 * printing a warning that says why (no disk, absent, other size, I/O error). */
int bf_overwrite_file(const char *path, const void *data, size_t size);

/* config.c: /BAREFLOW.CFG (docs/boot-config.md). */
struct bf_run_config {
    char prompt[1024];        /* UTF-8 */
    char chat_before[1024];   /* text the prompt is wrapped in (chat templates), unescaped */
    char chat_after[1024];
    int steps;
    int steps_line;           /* line that set steps (0 = default); steps is checked later */
    float temperature;
    float topp;
    uint64_t seed;
    int cores;                /* 0 = every core that started */
    int smp_test;             /* PLATFORM_SMP_TEST_* (test-only fault simulation) */
    char jit_cpu[64];         /* run-time tiers' target CPU instead of the host's ("" = host) */
    uint64_t jit_heap_kib;    /* memory for the run-time compiler's heap */
    uint64_t jit_timeout_ms;  /* a compile on the compiling core with no result after this is dropped */
};
void bf_config_load(struct bf_run_config *rc);
void bf_config_check_steps(const struct bf_run_config *rc, int seq_len);

/* model.c: /MODEL.BIN, a llama2.c checkpoint or a BareFlow weights file (weights.c). */
struct bf_model {
    struct bf_config cfg;
    struct bf_weight token_embedding; /* [vocab, dim] */
    const float *rms_final;           /* [dim] */
    struct bf_weight wcls;            /* [vocab, dim] (the embedding when shared) */
    struct bf_block_weights *blocks;  /* [n_layers] */
    int shared_classifier;
    const char *format;               /* "llama2.c" or "BFWT" */
};
void bf_model_load(struct bf_model *m);
void bf_state_alloc(struct bf_state *s, const struct bf_config *cfg);

/* weights.c: the BareFlow weights file (docs/weights-format.md), told apart by its magic. */
#define BF_WEIGHTS_MAGIC "BFWT"
void bf_weights_load(struct bf_model *m, const uint8_t *data, size_t size, const char *path);

/* tokfile.c, tokenizer.c, tokenizer_bpe.c: /TOKENIZR.BIN (docs/tokenizer-format.md) and the
 * llama2.c, SentencePiece and GPT-2 BPE tokenizers. */
struct bf_tokenizer {
    int kind, pre;            /* BF_TOK_*, BF_PRE_* (tokenizer.h) */
    int n_tokens, n_merges, max_piece_len;
    int bos, eos, eot, unk, pad;   /* -1 = none */
    int add_bos, add_space_prefix, stop_on_bos;
    const uint8_t **pieces;   /* into the file's string section, not NUL-terminated */
    uint16_t *lengths;
    float *scores;
    uint8_t *types;
    const uint8_t *merges;    /* the file's merge table: u32 left, u32 right per rank */
    int32_t *piece_slots;     /* open-addressing hash of pieces -> id, -1 empty */
    int32_t *merge_slots;     /* hash of (left, right) -> rank, -1 empty */
    uint32_t piece_mask, merge_mask;
    int *specials;            /* control/user-defined/unknown ids, longest piece first */
    int n_specials;
    int byte_ids[256];        /* SentencePiece byte fallback: <0xXX>, else the byte, else unk */
    int space_id;             /* llama2.c's dummy prefix " ", -1 if absent */
    void *work;               /* struct bf_tok_work, allocated once */
};
void bf_tokenizer_load(struct bf_tokenizer *t, int vocab_size);   /* vocab_size < 0: any */
/* Token ids for NUL-terminated, valid UTF-8 `text` (panics naming the byte otherwise); BOS
 * when the file says add_bos; special-token texts become their ids when parse_special.
 * Writes at most `cap` ids to `out` (panics when more are needed); returns the count. */
int bf_encode(const struct bf_tokenizer *t, const char *text, int parse_special, int *out, int cap);
/* The bytes `token` prints after `prev` (may be 0 bytes); *len receives their count. */
const char *bf_decode(const struct bf_tokenizer *t, int prev, int token, size_t *len);
/* Whether sampling `token` ends generation (eos, eot; bos for llama2.c). */
int bf_is_stop(const struct bf_tokenizer *t, int token);
/* utf8.c: the first byte offset where `s` (len bytes) is not UTF-8, or -1 when it all is. */
long bf_utf8_invalid_at(const void *s, size_t len);
/* utf8.c: whole characters only.  Bytes go in as pieces arrive; complete characters are
 * written with bf_write; malformed bytes are written as U+FFFD; bf_utf8_flush ends a stream. */
struct bf_utf8_stream {
    uint8_t pending[4];
    int n;
};
void bf_utf8_stream_write(struct bf_utf8_stream *st, const char *bytes, size_t len);
void bf_utf8_flush(struct bf_utf8_stream *st);

/* loader.c: BFMD module files (docs/module-format.md). */
bf_layer_fn bf_load_module(int layer, int tier);   /* at ISA level bf_isa */
/* "/MODULES/RMSNORM.O2" (x86-64), "/MODULES/RMSNORM.O23" (x86-64-v3); static buffer */
const char *bf_module_path(int layer, int tier, int isa);
extern int bf_isa;            /* ISA level chosen at boot (tiering.c), -1 before */
#define BF_ISA_HOST 0x10      /* BFMD isa code of run-time code (in memory only): the CPU the run is on */
/* The same rules for BFMD bytes built in memory by the JIT; NULL with the reason in err. */
bf_layer_fn bf_load_module_image(const char *what, const void *image, size_t size, int layer, int level, char *err,
                                 size_t errlen);

/* jit.c and jit_object.c: run-time tiers (docs/jit.md).  A tier code (docs/policy-table.md) is
 * 0..3 for the module file O0..O3, or kind << 4 | level for code compiled at run time:
 * kind 1 = for the CPU the run is on, 2 = for x86-64-v3, 3 = for x86-64-v4. */
#define BF_MAX_JIT_RECORDS 32
struct bf_jit_record {
    int layer, code, ok, core;
    int is_inline;            /* compiled on core 0 while nothing else ran (one core in use) */
    int timed_out;            /* no result within jit_timeout_ms: reported, result discarded */
    int late;                 /* a timed-out compile that finished later (its result was freed) */
    char cpu[48];             /* target CPU as LLVM names it */
    char features[96];        /* the enabled vector features among those the result line names */
    uint64_t cycles;          /* on the compiling core: backend start-up excluded, compile to object */
    uint64_t load_cycles;     /* on core 0: reading and checking the bitcode, converting, loading */
    uint64_t object_size;     /* bytes of the ELF object the compiler emitted */
    uint64_t request_call;    /* calls of the layer completed when the compile was requested */
    uint64_t swap_call;       /* calls of the layer before the new code took over (ok only) */
    char error[160];          /* why it failed (not ok) */
};
extern const char *const bf_jit_kind_names[4];
const char *bf_tier_name(int code);             /* "O2", "O3@host", "O2@x86-64-v3" */
const char *bf_bitcode_path(int layer);         /* "/MODULES/RMSNORM.BC"; static buffer */
void bf_jit_configure(const struct bf_run_config *rc);
#define BF_TIER_KIND(code) ((code) >> 4)
/* Core 0 only.  bf_jit_request asks for `code` of `layer` (after `call` calls): BF_JIT_DONE with
 * *fn the code or NULL (refused or failed; the record says why) when it was settled at once
 * (inline compile, or refused before compiling), BF_JIT_PENDING when it was queued for the
 * compiling core.  bf_jit_poll, between layer calls, returns 1 with the layer, record and code
 * (NULL: failed or timed out) of a pending compile that is settled, 0 when none is.
 * bf_jit_end records what was still compiling or queued when generation ended. */
enum { BF_JIT_DONE, BF_JIT_PENDING };
int bf_jit_request(int layer, int code, uint64_t call, bf_layer_fn *fn, int *record);
int bf_jit_poll(int *layer, bf_layer_fn *fn, int *record);
void bf_jit_end(void);
int bf_jit_compiling_core(void);                /* 1 with two or more cores in use, else 0 */
/* The compiler's heap (jit_heap_kib) and stack from the arena, once; -1 when the arena is short
 * (the first request then fails saying so).  Called at start-up when a ladder has run-time tiers,
 * so that zeroing 64 MiB is not a pause of core 0 in the middle of generation. */
int bf_jit_reserve(void);
extern int bf_jit_busy;                         /* a compile is queued or in flight (core 0 reads it) */
uint64_t bf_jit_timeout_ms(void);
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
    int max_cores;            /* the policy table's limit for this layer, 0 = none */
    uint64_t core_cycles[BF_MAX_CORES];  /* per core: cycles inside this layer's chunks */
    int tier;                 /* current tier code (calls[] and cycles[] count by its level, code & 3) */
    int n_changes;
    struct bf_tier_change changes[BF_MAX_CHANGES];
};
void bf_tiering_init(void);
void bf_call(int layer, struct bf_layer_call *call);
const struct bf_layer_stats *bf_layer_stats(int layer);
uint64_t bf_profiling_overhead(void);   /* median cycles per call, measured at init */

/* parallel.c: the work split across cores (docs/runtime.md "Several cores"). */
struct bf_cores {
    int found;                /* cores the machine lists */
    int started;              /* cores running (the calling one included) */
    int used;                 /* cores the layers are split over: min(started, cores=) */
    uint64_t busy_cycles[BF_MAX_CORES];   /* per core: cycles inside layer chunks */
    /* How the split went (docs/runtime.md, "Several cores"; the result line's cores object): */
    uint64_t pieces[BF_MAX_CORES];        /* per core: core 0 its own chunks and the pieces it took
                                             from workers' chunks, a worker the pieces it ran */
    uint64_t stolen;                      /* pieces of workers' chunks core 0 ran (nobody had started them) */
    uint64_t wait_cycles;                 /* core 0 waiting for pieces workers were running */
    uint64_t parks[BF_MAX_CORES];         /* per worker: waits in which it slept (platform_wait) */
    uint64_t joined[BF_MAX_CORES];        /* per worker: chunks of which it ran at least one piece */
    uint64_t claim_cycles[BF_MAX_CORES];  /* per worker: post of such a chunk to its first piece, summed */
    uint64_t wake_cycles[BF_MAX_CORES];   /* the part of claim_cycles for chunks claimed after a park */
    uint64_t woken[BF_MAX_CORES];         /* chunks whose first piece it claimed after a park */
};
void bf_parallel_init(const struct bf_run_config *rc);
const struct bf_cores *bf_cores(void);
/* Runs one layer call: every phase of the layer's kind, each split into the fixed chunks of
 * bf_chunk() over `cores` cores (1 = all on this core), a worker's chunk run in pieces that core 0
 * may take over; the next phase starts when every piece is done.
 * Per-core cycles of the chunks go to core_cycles[core] (may be NULL). */
void bf_parallel_call(int layer, bf_layer_fn fn, struct bf_layer_call *call, int cores, uint64_t *core_cycles);
/* Service jobs (core 0 only): run fn(arg, core) on worker core `core` (1..started-1) while core 0
 * goes on; the core is left out of the work split until the job is collected.  post returns -1
 * when the core does not exist or still has a job; collect returns 1 once the job has finished
 * (its writes to *arg are then visible) and frees the core, 0 while it runs. */
int bf_service_post(int core, void (*fn)(void *arg, int core), void *arg);
int bf_service_collect(int core);
int bf_service_busy(int core);
/* Units (rows or heads) of phase `phase` of a layer kind, and its phase count (0: not split). */
int bf_layer_phases(int layer);
int bf_layer_units(int layer, int phase, const struct bf_config *cfg);
/* The chunk [begin, end) of `units` that core `core` of `cores` runs: contiguous, in core
 * order, boundaries on multiples of `align` (BF_CHUNK_ALIGN rows; 1 head) except the last. */
#define BF_CHUNK_ALIGN 16
void bf_chunk(int units, int align, int core, int cores, int *begin, int *end);

/* inference.c: the forward pass and the generate loop. */
#define BF_MAX_PROMPT_TOKENS 4096
struct bf_run {
    int *prompt_tokens;       /* capacity BF_MAX_PROMPT_TOKENS */
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
