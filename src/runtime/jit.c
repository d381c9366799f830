/* jit.c - run-time tiers: a layer's bitcode from the image, compiled for this CPU, loaded.
 *
 * Promise: a run-time tier becomes callable only when every step held — the bitcode file
 * /MODULES/<LAYER>.BC passed every rule of docs/bitcode-file.md before the compiler saw a byte,
 * the compiler produced an object, and that object passed the module loader's rules after the
 * same conversion the build applies (jit_object.c).  Any failure gives NULL and a one-line
 * reason; nothing here stops the run.  Every attempt, good or bad, is recorded for the result
 * line and /PROFILE.BIN.
 * Where compiles run: with two or more cores in use, on core 1 (the compiling core; always the
 * lowest worker, so a run is reproducible) through a service job (parallel.c), while core 0
 * goes on generating at the current tier; one compile at a time, later requests wait in a FIFO
 * queue in request order.  Core 0 reads and checks the bitcode before posting, and converts,
 * checks and places the object after the job is done, so the arena, the disk and the loader are
 * only ever touched by core 0; the compiling core touches only the LLVM heap (locked, heap.c)
 * and its job record.  With one core in use the compile runs inline on core 0.  Every compile
 * runs on the JIT's own 1 MiB stack (an AP's stack is 64 KiB; LLVM needs up to ~54 KiB).
 * Time-out: a compile on the compiling core that has no result jit_timeout_ms after it was
 * posted is reported as timed out and its layer stays at its tier; the core stays out of the
 * work split until the late job ends, whose result is then freed unused.  Inline compiles are
 * not timed out (nothing else runs while they do).
 */
#include <stdio.h>
#include <string.h>

#include "bareflow/jit.h"
#include "bareflow/layer_abi.h"
#include "bareflow/platform.h"
#include "bareflow/runtime.h"
#include "rt.h"

#define BC_HDR 48
#define BC_MAX (8u << 20)

static struct bf_jit_record records[BF_MAX_JIT_RECORDS];
static int n_records;
static char cpu_override[64];
static uint64_t heap_kib = 65536;
static uint64_t init_cycles;
static int init_state;                 /* 0 not tried, 1 running, -1 failed */
static char init_error[160];
static char host_cpu[64], host_features[2048];

const char *const bf_jit_kind_names[4] = {"aot", "host", "x86-64-v3", "x86-64-v4"};

const char *bf_tier_name(int code)
{
    static const char *const names[4][4] = {
        {"O0", "O1", "O2", "O3"},
        {"O0@host", "O1@host", "O2@host", "O3@host"},
        {"O0@x86-64-v3", "O1@x86-64-v3", "O2@x86-64-v3", "O3@x86-64-v3"},
        {"O0@x86-64-v4", "O1@x86-64-v4", "O2@x86-64-v4", "O3@x86-64-v4"}};
    return code >= 0 && code < 0x40 && (code & 0xC) == 0 ? names[code >> 4][code & 3] : "?";
}

const struct bf_jit_record *bf_jit_records(int *n)
{
    *n = n_records;
    return records;
}

void bf_jit_note_swap(int record, uint64_t call)
{
    if (record >= 0 && record < n_records)
        records[record].swap_call = call;
}

uint64_t bf_jit_init_cycles(void)
{
    return init_cycles;
}

const char *bf_bitcode_path(int layer)
{
    static char path[32];
    const char *m = bf_module_path(layer, 0, 0);     /* "/MODULES/NAME.O0" (x86-64) */
    size_t n = strlen(m) - 2;
    memcpy(path, m, n);
    memcpy(path + n, "BC", 3);
    return path;
}

/* The bitcode inside a BFBC file, or NULL with the reason (docs/bitcode-file.md). */
static const uint8_t *check_bitcode(int layer, const uint8_t *f, size_t size, size_t *bc_size, char *err,
                                    size_t errlen)
{
    const char *path = bf_bitcode_path(layer);
#define BAD(...) do { snprintf(err, errlen, "bitcode %s: " __VA_ARGS__); return NULL; } while (0)
    if (size < BC_HDR)
        BAD("%zu bytes, shorter than the %d-byte header", path, size, BC_HDR);
    if (memcmp(f, "BFBC", 4) != 0)
        BAD("bad magic %02x %02x %02x %02x, expected \"BFBC\"", path, f[0], f[1], f[2], f[3]);
    if (bf_le16(f + 4) != 1 || bf_le16(f + 6) != BC_HDR)
        BAD("version %u header_size %u, this kernel reads version 1 with a %d-byte header", path, bf_le16(f + 4),
            bf_le16(f + 6), BC_HDR);
    uint32_t n = bf_le32(f + 24), crc = bf_le32(f + 28);
    if (n > BC_MAX || (size_t)n + BC_HDR != size)
        BAD("bitcode_size %u, but the file is %zu bytes (need %d + bitcode_size, at most 8 MiB)", path, n, size,
            BC_HDR);
    static const uint8_t zero[4];
    uint32_t got = bf_crc32(bf_crc32(bf_crc32(0, f, 28), zero, 4), f + 32, size - 32);
    if (got != crc)
        BAD("crc32 0x%08x in the header, the contents give 0x%08x", path, crc, got);
    char name[17];
    memcpy(name, f + 8, 16);
    name[16] = 0;
    if (strcmp(name, bf_layer_names[layer]) != 0 || f[8 + strlen(name)] != 0)
        BAD("holds layer '%.16s', expected '%s'", path, name, bf_layer_names[layer]);
    for (int i = (int)strlen(name); i < 16; i++)
        if (f[8 + i])
            BAD("layer field has bytes after its NUL", path);
    for (int i = 32; i < 48; i++)
        if (!((f[i] >= 0x20 && f[i] < 0x7f) || (f[i] == 0 && (i == 47 || !f[i + 1]))))
            BAD("producer field is not printable ASCII padded with NUL", path);
    if (memcmp(f + 32, "LLVM22.", 7) != 0)
        BAD("written by %.16s; the run-time compiler reads LLVM 22 bitcode", path, (const char *)f + 32);
    const uint8_t *bc = f + BC_HDR;
    if (n < 4 || !(memcmp(bc, "BC\xC0\xDE", 4) == 0))
        BAD("payload does not start with the LLVM bitcode magic 'BC' 0xC0DE", path);
#undef BAD
    *bc_size = n;
    return bc;
}

/* "+avx2,+fma,..." reduced to the enabled vector features a reader of the result line wants. */
static void summarise(const char *features, char *out, size_t n)
{
    static const char *const keys[] = {"sse4.2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl",
                                       "avx512vnni", "avx512bf16", "avx512fp16"};
    size_t used = 0;
    out[0] = 0;
    for (unsigned k = 0; k < sizeof keys / sizeof *keys; k++) {
        size_t len = strlen(keys[k]);
        for (const char *p = features; *p;) {
            const char *end = p;
            while (*end && *end != ',')
                end++;
            if (*p == '+' && (size_t)(end - p - 1) == len && memcmp(p + 1, keys[k], len) == 0) {
                used += (size_t)snprintf(out + used, n - used, "%s%s", used ? "," : "", keys[k]);
                if (used >= n)
                    used = n - 1;
                break;
            }
            p = *end ? end + 1 : end;
        }
    }
}

static void *heap_memory;            /* prepared by core 0 before the first compile */
static uint8_t *compile_stack_top;
static uint64_t timeout_ms = 60000, timeout_cycles;
static int compile_core = -1;        /* -1 until the first request */

#define COMPILE_STACK (1u << 20)

/* Calls fn(arg) with the stack pointer at `top` (16-byte aligned) and comes back to the caller's
 * stack.  r12 (callee-saved) holds the old stack pointer across the call; every caller-saved
 * register is declared clobbered. */
static void call_on_stack(void (*fn)(void *), void *arg, void *top)
{
    __asm__ volatile("mov %%rsp, %%r12\n\t"
                     "mov %2, %%rsp\n\t"
                     "call *%0\n\t"
                     "mov %%r12, %%rsp"
                     : "+a"(fn), "+D"(arg), "+S"(top)
                     :
                     : "r12", "rcx", "rdx", "r8", "r9", "r10", "r11", "memory", "cc", "xmm0", "xmm1", "xmm2",
                       "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
                       "xmm13", "xmm14", "xmm15");
}

/* On the compiling core: the backend's start (once) and that core's thread pointer. */
static int start_backend(int core, char *err, size_t errlen)
{
    if (init_state == 1)
        return bf_jit_thread(core, err, errlen);
    if (init_state < 0) {
        snprintf(err, errlen, "%s", init_error);
        return -1;
    }
    uint64_t t0 = platform_cycles();
    init_state = -1;
    if (bf_jit_init(heap_memory, (size_t)heap_kib << 10, core, init_error, sizeof init_error) == 0 &&
        bf_jit_host(host_cpu, sizeof host_cpu, host_features, sizeof host_features) == 0)
        init_state = 1;
    else if (!init_error[0])
        snprintf(init_error, sizeof init_error, "%s", host_cpu);
    init_cycles = platform_cycles() - t0;
    if (init_state < 0) {
        snprintf(err, errlen, "%s", init_error);
        return -1;
    }
    return 0;
}

/* One compile: written by core 0 before the post, the results by the compiling core before it
 * publishes DONE (parallel.c's release/acquire pair orders both ways). */
struct job {
    int record, layer, code, core;
    const uint8_t *bc;
    size_t bc_size;
    uint64_t call;                    /* layer calls when it was requested */
    uint64_t posted_at;               /* platform_cycles() at the post */
    /* results */
    int rc;
    void *obj;
    size_t obj_size;
    uint64_t cycles;
    char cpu[48], features[96];
    char err[200];
};
static struct job jobs[BF_MAX_JIT_RECORDS];
static int queue[BF_MAX_JIT_RECORDS], q_head, q_tail;
static int in_flight = -1;           /* record being compiled on the compiling core */
static int abandoned;                /* ... whose result will be thrown away (timed out) */
int bf_jit_busy;                     /* a compile is queued or in flight: poll after each layer call */

static void update_busy(void)
{
    bf_jit_busy = in_flight >= 0 || q_head != q_tail;
}

static void compile_on_stack(void *arg)
{
    struct job *j = arg;
    int kind = j->code >> 4;
    const char *cpu, *features;
    j->rc = -1;
    int started = start_backend(j->core, j->err, sizeof j->err);
    uint64_t t0 = platform_cycles();      /* the backend's start-up is init_cycles, not this compile's */
    if (started < 0)
        goto out;
    if (kind == 1) {
        cpu = cpu_override[0] ? cpu_override : host_cpu;
        features = cpu_override[0] ? "" : host_features;
    } else {
        cpu = bf_jit_kind_names[kind];     /* kind 2 = x86-64-v3, 3 = x86-64-v4 */
        features = "+sse,+sse2";
    }
    snprintf(j->cpu, sizeof j->cpu, "%s", cpu);
    summarise(features, j->features, sizeof j->features);
    j->rc = bf_jit_compile(j->core, j->bc, j->bc_size, bf_layer_names[j->layer], j->code & 3, cpu, features, &j->obj,
                           &j->obj_size, j->err, sizeof j->err);
out:
    j->cycles = platform_cycles() - t0;
}

static void compile_job(void *arg, int core)
{
    (void)core;
    call_on_stack(compile_on_stack, arg, compile_stack_top);
}

static struct bf_jit_record *new_record(int layer, int code, uint64_t call, int *index)
{
    static struct bf_jit_record scratch;
    struct bf_jit_record *r = n_records < BF_MAX_JIT_RECORDS ? &records[n_records++] : &scratch;
    memset(r, 0, sizeof *r);
    r->layer = layer;
    r->code = code;
    r->core = compile_core;
    r->is_inline = compile_core == 0;
    r->request_call = call;
    *index = r == &scratch ? -1 : (int)(r - records);
    return r;
}

int bf_jit_reserve(void)
{
    static int failed;
    if (heap_memory || failed)
        return failed ? -1 : 0;
    heap_memory = platform_alloc((size_t)heap_kib << 10, 4096);
    uint8_t *stack = heap_memory ? platform_alloc(COMPILE_STACK, 4096) : NULL;
    if (!heap_memory || !stack) {
        heap_memory = NULL;
        failed = 1;
        return -1;
    }
    compile_stack_top = stack + COMPILE_STACK;
    return 0;
}

/* Core 0: everything that can be refused before the compiler sees the request. */
static int prepare(struct job *j, char *err, size_t errlen)
{
    int kind = j->code >> 4;
    if (!bf_jit_backend()) {
        snprintf(err, errlen, "this kernel was built with JIT=none");
        return -1;
    }
    if (kind > 1) {
        const char *missing;
        int level = platform_cpu_isa_level(&missing);
        if (kind > level) {
            snprintf(err, errlen, "code for %s asked for, but this CPU runs up to %s (no %s)", bf_isa_names[kind],
                     bf_isa_names[level], missing);
            return -1;
        }
    }
    if (bf_jit_reserve() < 0) {
        snprintf(err, errlen, "no arena memory for the %llu KiB JIT heap and its 1 MiB stack",
                 (unsigned long long)heap_kib);
        return -1;
    }
    const char *path = bf_bitcode_path(j->layer);
    if (!bf_file_exists(path)) {
        snprintf(err, errlen, "bitcode %s is not on the image", path);
        return -1;
    }
    size_t size;
    const uint8_t *f = bf_read_file(path, &size);
    j->bc = check_bitcode(j->layer, f, size, &j->bc_size, err, errlen);
    return j->bc ? 0 : -1;
}

/* Core 0, after the job: the object becomes a module image, checked and placed by the loader. */
static bf_layer_fn finish(struct job *j, struct bf_jit_record *r)
{
    uint64_t t0 = platform_cycles();
    bf_layer_fn fn = NULL;
    snprintf(r->cpu, sizeof r->cpu, "%s", j->cpu);
    snprintf(r->features, sizeof r->features, "%s", j->features);
    r->cycles = j->cycles;
    if (j->rc == 0) {
        r->object_size = j->obj_size;
        size_t bfmd_size;
        void *bfmd = bf_object_to_bfmd(j->obj, j->obj_size, j->layer, j->code & 3, &bfmd_size, j->err, sizeof j->err);
        bf_jit_release(j->obj);
        j->obj = NULL;
        if (bfmd)
            fn = bf_load_module_image(bf_tier_name(j->code), bfmd, bfmd_size, j->layer, j->code & 3, j->err,
                                      sizeof j->err);
    }
    r->load_cycles += platform_cycles() - t0;
    r->ok = fn != NULL;
    if (!fn)
        snprintf(r->error, sizeof r->error, "%s", j->err);
    return fn;
}

void bf_jit_configure(const struct bf_run_config *rc)
{
    memcpy(cpu_override, rc->jit_cpu, sizeof cpu_override);
    heap_kib = rc->jit_heap_kib;
    timeout_ms = rc->jit_timeout_ms;
}

int bf_jit_compiling_core(void)
{
    return bf_cores()->used >= 2 ? 1 : 0;
}

/* Core 0: start the next queued compile when the compiling core is free. */
static void kick(void)
{
    if (in_flight >= 0 || q_head == q_tail) {
        update_busy();
        return;
    }
    int rec = queue[q_head++ % BF_MAX_JIT_RECORDS];
    struct job *j = &jobs[rec];
    j->posted_at = platform_cycles();
    if (bf_service_post(j->core, compile_job, j) < 0)
        bf_panic("jit: core %d refused a compile job it should be free for", j->core);
    in_flight = rec;
    abandoned = 0;
    update_busy();
}

int bf_jit_request(int layer, int code, uint64_t call, bf_layer_fn *fn, int *record)
{
    if (compile_core < 0) {
        compile_core = bf_jit_compiling_core();
        uint64_t cps = platform_cycles_per_second();
        timeout_cycles = cps / 1000 * timeout_ms;
    }
    int rec;
    struct bf_jit_record *r = new_record(layer, code, call, &rec);
    *record = rec;
    *fn = NULL;
    static struct job spare;
    struct job *j = rec >= 0 ? &jobs[rec] : &spare;
    memset(j, 0, sizeof *j);
    j->record = rec;
    j->layer = layer;
    j->code = code;
    j->core = compile_core;
    j->call = call;
    uint64_t t0 = platform_cycles();
    int refused = rec < 0 ? (snprintf(j->err, sizeof j->err, "more than %d run-time compiles", BF_MAX_JIT_RECORDS), -1)
                          : prepare(j, j->err, sizeof j->err);
    r->load_cycles = platform_cycles() - t0;
    if (refused < 0) {
        r->ok = 0;
        snprintf(r->error, sizeof r->error, "%s", j->err);
        return BF_JIT_DONE;
    }
    if (compile_core == 0) {
        call_on_stack(compile_on_stack, j, compile_stack_top);
        *fn = finish(j, r);
        return BF_JIT_DONE;
    }
    queue[q_tail++ % BF_MAX_JIT_RECORDS] = rec;
    kick();
    return BF_JIT_PENDING;
}

int bf_jit_poll(int *layer, bf_layer_fn *fn, int *record)
{
    while (in_flight >= 0) {
        struct job *j = &jobs[in_flight];
        struct bf_jit_record *r = &records[in_flight];
        if (bf_service_collect(j->core)) {
            int rec = in_flight, dropped = abandoned;
            in_flight = -1;
            if (dropped) {                 /* reported already: free what it made, nothing more */
                r->cycles = j->cycles;
                r->late = 1;
                if (j->rc == 0)
                    bf_jit_release(j->obj);
                j->obj = NULL;
                kick();
                continue;
            }
            *fn = finish(j, r);
            *layer = j->layer;
            *record = rec;
            kick();
            return 1;
        }
        if (abandoned || !timeout_cycles || platform_cycles() - j->posted_at < timeout_cycles)
            return 0;
        abandoned = 1;                     /* the core stays busy until the job ends */
        r->timed_out = 1;
        r->ok = 0;
        r->cycles = platform_cycles() - j->posted_at;
        snprintf(r->error, sizeof r->error,
                 "compile on core %d did not finish within jit_timeout_ms = %llu; its result will be discarded",
                 j->core, (unsigned long long)timeout_ms);
        *fn = NULL;
        *layer = j->layer;
        *record = in_flight;
        return 1;
    }
    return 0;
}

void bf_jit_end(void)
{
    if (in_flight >= 0 && !abandoned) {
        struct job *j = &jobs[in_flight];
        struct bf_jit_record *r = &records[in_flight];
        r->ok = 0;
        if (bf_service_collect(j->core)) {     /* done, but after the last layer call */
            r->cycles = j->cycles;
            snprintf(r->cpu, sizeof r->cpu, "%s", j->cpu);
            snprintf(r->features, sizeof r->features, "%s", j->features);
            r->object_size = j->rc == 0 ? j->obj_size : 0;
            snprintf(r->error, sizeof r->error, "finished on core %d after the last layer call; not swapped in",
                     j->core);
        } else {
            r->cycles = platform_cycles() - j->posted_at;
            snprintf(r->error, sizeof r->error, "still compiling on core %d when generation ended", j->core);
        }
    }
    for (int q = q_head; q != q_tail; q++) {
        struct bf_jit_record *r = &records[queue[q % BF_MAX_JIT_RECORDS]];
        r->ok = 0;
        snprintf(r->error, sizeof r->error, "queued behind another compile when generation ended");
    }
    q_head = q_tail;
    update_busy();
}

uint64_t bf_jit_timeout_ms(void)
{
    return timeout_ms;
}
