/* tiering.c - the policy table, the dispatch slots and tier promotion.
 *
 * Promise: /POLICY.TBL is accepted only if every rule of docs/policy-table.md holds and it has
 * exactly one entry for each of the nine layers; otherwise the run stops naming the table, the
 * entry and the field.  Every layer is called only through its dispatch slot, an 8-byte-aligned
 * function pointer that promotion replaces with a single release store after the next tier's
 * module is fully loaded and relocated, always between two calls.  Calls are counted per tier
 * always; cycles (rdtsc through platform_cycles) until a STOP_PROFILING layer reaches its last
 * tier.  Every module file a ladder names is known to exist before the first call is made.
 * The table has one set of entries per ISA level the image carries; the best level this CPU
 * runs is chosen and printed, and when the CPU runs none of them the run stops with an
 * "isa:" panic before any module is read.
 * Table version 2 adds run-time tiers (compiled by jit.c when the layer gets there, inline or
 * on the compiling core); a failed or timed-out compile is reported and leaves the layer at its
 * current tier for good.  A compile on the compiling core is swapped in by core 0 between two
 * layer calls, the same single release store.
 */
#include <stdio.h>
#include <string.h>

#include "bareflow/jit.h"
#include "bareflow/platform.h"
#include "bareflow/runtime.h"
#include "bareflow/x86_isa.h"
#include "rt.h"

#define POLICY_PATH "/POLICY.TBL"
#define HDR 16
#define ENTRY 64
#define F_PRELOAD 1u
#define F_STOP_PROFILING 2u
#define NEVER UINT64_MAX

struct layer_rt {
    bf_layer_fn slot __attribute__((aligned(8)));   /* the dispatch slot */
    int timing;                   /* read the cycle counter around calls */
    uint64_t next_calls;          /* promote when calls at the current tier reach this */
    uint64_t next_cycles;         /* ... or when cycles at the current tier reach this */
    struct bf_layer_stats st;
    int id, step, n_tiers, flags;
    int cores;                    /* cores this layer's calls are split over (1 = not split) */
    uint8_t ladder[4];
    uint32_t calls_at[3];
    uint64_t cycles_at[3];
    bf_layer_fn ready[4];         /* per ladder step: loaded module, NULL until loaded */
};

static struct layer_rt layers[BF_N_LAYERS];
static uint64_t overhead_cycles;

static void set_triggers(struct layer_rt *L)
{
    int last = L->step == L->n_tiers - 1;
    L->next_calls = last || !L->calls_at[L->step] ? NEVER : L->calls_at[L->step];
    L->next_cycles = last || !L->cycles_at[L->step] ? NEVER : L->cycles_at[L->step];
    L->timing = !(last && (L->flags & F_STOP_PROFILING));
}

static uint64_t total_calls(const struct layer_rt *L)
{
    uint64_t calls = 0;
    for (int t = 0; t < BF_N_TIERS; t++)
        calls += L->st.calls[t];
    return calls;
}

/* The one swap: the next rung's code, already loaded and relocated, replaces the slot with a
 * single release store.  Only ever between two layer calls. */
static void swap_in(struct layer_rt *L, int next, uint64_t calls)
{
    int to = L->ladder[next];
    L->st.changes[L->st.n_changes++] = (struct bf_tier_change){calls, (uint8_t)L->st.tier, (uint8_t)to};
    __atomic_store_n(&L->slot, L->ready[next], __ATOMIC_RELEASE);
    L->st.tier = to;
    L->step = next;
    set_triggers(L);
}

static void jit_failed(struct layer_rt *L, int to, int record, uint64_t calls)
{
    int n;
    const struct bf_jit_record *r = bf_jit_records(&n);
    if (bf_console_mid_line())
        bf_write("\n", 1);
    bf_printf("bareflow: jit: layer %s: %s %s at call %llu, stays at %s: %s\n", bf_layer_names[L->id],
              bf_tier_name(to), record >= 0 && record < n && r[record].timed_out ? "timed out" : "failed",
              (unsigned long long)calls, bf_tier_name(L->st.tier), record >= 0 && record < n ? r[record].error : "");
    L->next_calls = L->next_cycles = NEVER;       /* for good: the layer keeps its tier */
}

/* Cold path: make the next tier of the ladder ready, then swap the slot in one store.  A
 * run-time tier is requested from jit.c: compiled inline (one core) and swapped at once, or
 * queued for the compiling core while the layer goes on at its tier (no further trigger until
 * the compile is settled, collect_compiles).  A failed compile is reported; the layer stays. */
__attribute__((noinline)) static void promote(struct layer_rt *L)
{
    int next = L->step + 1, to = L->ladder[next], record = -1;
    uint64_t calls = total_calls(L);
    if (!L->ready[next] && BF_TIER_KIND(to)) {
        if (bf_jit_request(L->id, to, calls, &L->ready[next], &record) == BF_JIT_PENDING) {
            L->next_calls = L->next_cycles = NEVER;
            return;
        }
        if (!L->ready[next]) {
            jit_failed(L, to, record, calls);
            return;
        }
        bf_jit_note_swap(record, calls);
    }
    if (!L->ready[next])
        L->ready[next] = bf_load_module(L->id, to);
    swap_in(L, next, calls);
}

/* Core 0, right after a layer call returned - every core of its split is past the barrier, and
 * no core is inside any layer - so a finished compile's code can be swapped into its layer's
 * slot exactly as promote() does. */
__attribute__((noinline)) static void collect_compiles(void)
{
    int id, record;
    bf_layer_fn fn;
    while (bf_jit_poll(&id, &fn, &record)) {
        struct layer_rt *L = &layers[id];
        int next = L->step + 1;
        uint64_t calls = total_calls(L);
        if (!fn) {
            jit_failed(L, L->ladder[next], record, calls);
            continue;
        }
        L->ready[next] = fn;
        bf_jit_note_swap(record, calls);
        swap_in(L, next, calls);
    }
}

/* The slot is read once per call and every core of the call gets that one function, and
 * promote() runs only after bf_parallel_call returned - after the barrier that every core of
 * the split passed - so a swap never happens while any core is inside the layer. */
static inline __attribute__((always_inline)) void dispatch(struct layer_rt *L, struct bf_layer_call *call)
{
    bf_layer_fn fn = __atomic_load_n(&L->slot, __ATOMIC_ACQUIRE);
    int t = L->st.tier & 3;       /* a run-time tier counts at its level */
    int n = L->cores;
    if (L->timing) {
        uint64_t t0 = platform_cycles();
        bf_parallel_call(L->id, fn, call, n, L->st.core_cycles);
        L->st.cycles[t] += platform_cycles() - t0;
    } else {
        bf_parallel_call(L->id, fn, call, n, L->st.core_cycles);
    }
    /* Tiers only climb, so the counts at the current tier are the counts of this ladder step. */
    if (++L->st.calls[t] >= L->next_calls || L->st.cycles[t] >= L->next_cycles)
        promote(L);
    if (__builtin_expect(bf_jit_busy != 0, 0))
        collect_compiles();
}

void bf_call(int layer, struct bf_layer_call *call)
{
    dispatch(&layers[layer], call);
}

const struct bf_layer_stats *bf_layer_stats(int layer)
{
    return &layers[layer].st;
}

uint64_t bf_profiling_overhead(void)
{
    return overhead_cycles;
}

/* ---- the table ---- */

static int layer_by_name(const uint8_t *field, char name[17])
{
    memcpy(name, field, 16);
    name[16] = 0;
    for (int i = 0; i < BF_N_LAYERS; i++)
        if (strcmp(name, bf_layer_names[i]) == 0)
            return i;
    return -1;
}

/* Entries are checked into cand[isa][layer]; the chosen level's row becomes `layers`. */
static struct layer_rt cand[BF_N_ISA][BF_N_LAYERS];

static void parse_entry(const uint8_t *e, int index, int seen[BF_N_ISA][BF_N_LAYERS], int version)
{
    char name[17];
    int id = layer_by_name(e, name);
    for (int i = 0; i < 16; i++) {
        char c = (char)e[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || (c == 0 && i > 0);
        if (!ok || (i > 0 && e[i - 1] == 0 && c) || e[15])
            bf_panic("policy %s: entry %d: layer field is not 1-15 characters [a-z0-9_] padded with NUL",
                     POLICY_PATH, index);
    }
    if (id < 0)
        bf_panic("policy %s: entry %d names unknown layer '%s' (known: embed, rmsnorm, qkv, rope, attn, attnout, "
                 "ffn, classify, sampler)", POLICY_PATH, index, name);
    int isa = e[18];
    if (isa >= BF_N_ISA)
        bf_panic("policy %s: entry %d (layer '%s'): isa code %d is not 0..3 (x86-64 .. x86-64-v4)", POLICY_PATH,
                 index, name, isa);
    if (seen[isa][id])
        bf_panic("policy %s: layer '%s' has two entries for %s (%d and %d)", POLICY_PATH, name, bf_isa_names[isa],
                 seen[isa][id] - 1, index);
    seen[isa][id] = index + 1;

    struct layer_rt *L = &cand[isa][id];
#define BAD(...) bf_panic("policy " POLICY_PATH ": layer '%s': " __VA_ARGS__)
    L->id = id;
    L->n_tiers = e[16];
    L->flags = e[17];
    if (L->n_tiers < 1 || L->n_tiers > 4)
        BAD("n_tiers %d, expected 1..4", name, L->n_tiers);
    if (L->flags & ~(F_PRELOAD | F_STOP_PROFILING))
        BAD("flags 0x%02x has bits other than PRELOAD (1) and STOP_PROFILING (2)", name, L->flags);
    L->st.max_cores = e[19];
    if (bf_le32(e + 36))
        BAD("reserved bytes are not zero", name);
    if (L->st.max_cores > BF_MAX_CORES)
        BAD("max_cores %d, expected 0..%d (0 = no limit)", name, L->st.max_cores, BF_MAX_CORES);
    for (int i = 0; i < 4; i++) {
        L->ladder[i] = e[20 + i];
        if (i >= L->n_tiers && L->ladder[i] != 0xFF)
            BAD("ladder[%d] = %u past n_tiers %d, expected 0xff", name, i, L->ladder[i], L->n_tiers);
        if (i < L->n_tiers && version == 1 && L->ladder[i] > 3)
            BAD("ladder[%d] = %u is not a tier code 0..3", name, i, L->ladder[i]);
        if (i < L->n_tiers && (L->ladder[i] > 0x33 || (L->ladder[i] & 0xC)))
            BAD("ladder[%d] = 0x%02x is not a tier code (0..3, or kind 1..3 << 4 | level 0..3)", name, i,
                L->ladder[i]);
        if (i == 0 && BF_TIER_KIND(L->ladder[0]))
            BAD("ladder[0] = %s is a run-time tier; a layer starts at a module file", name, bf_tier_name(L->ladder[0]));
        if (i > 0 && i < L->n_tiers && L->ladder[i] <= L->ladder[i - 1])
            BAD("ladder is not strictly increasing (ladder[%d] = %s after %s)", name, i, bf_tier_name(L->ladder[i]),
                bf_tier_name(L->ladder[i - 1]));
    }
    for (int i = 0; i < 3; i++) {
        L->calls_at[i] = bf_le32(e + 24 + 4 * i);
        L->cycles_at[i] = bf_le64(e + 40 + 8 * i);
        if (L->calls_at[i] > 1000000000u || L->cycles_at[i] > 1000000000000000ull)
            BAD("step %d thresholds calls %u, cycles %llu exceed 1e9 calls / 1e15 cycles", name, i,
                L->calls_at[i], (unsigned long long)L->cycles_at[i]);
        if (i < L->n_tiers - 1 && !L->calls_at[i] && !L->cycles_at[i])
            BAD("step %d (%s -> %s) has neither a call nor a cycle trigger", name, i, bf_tier_name(L->ladder[i]),
                bf_tier_name(L->ladder[i + 1]));
        if (i >= L->n_tiers - 1 && (L->calls_at[i] || L->cycles_at[i]))
            BAD("step %d has a trigger but the ladder has only %d tiers", name, i, L->n_tiers);
    }
#undef BAD
}

/* Reads the table and returns the chosen ISA level: the best one the table has entries for
 * that this CPU runs.  Every level present must name all nine layers. */
static int read_table(void)
{
    size_t size;
    const uint8_t *f = bf_read_file(POLICY_PATH, &size);
    static int seen[BF_N_ISA][BF_N_LAYERS];

    /* Each read starts from nothing (the hosted fuzz harness reads many tables in one process). */
    memset(seen, 0, sizeof seen);
    memset(cand, 0, sizeof cand);
    if (size < HDR)
        bf_panic("policy %s: %zu bytes, shorter than the %d-byte header", POLICY_PATH, size, HDR);
    if (memcmp(f, "BFPT", 4) != 0)
        bf_panic("policy %s: bad magic %02x %02x %02x %02x, expected \"BFPT\"", POLICY_PATH, f[0], f[1], f[2], f[3]);
    unsigned version = bf_le16(f + 4);
    if (version != 1 && version != 2)
        bf_panic("policy %s: version %u, this kernel reads versions 1 and 2", POLICY_PATH, version);
    if (bf_le16(f + 6) != HDR || bf_le16(f + 10) != ENTRY)
        bf_panic("policy %s: header_size %u and entry_size %u, expected %d and %d", POLICY_PATH, bf_le16(f + 6),
                 bf_le16(f + 10), HDR, ENTRY);
    unsigned n = bf_le16(f + 8);
    if (n < 1 || n > 64)
        bf_panic("policy %s: n_layers %u, expected 1..64", POLICY_PATH, n);
    if (size != HDR + (size_t)ENTRY * n)
        bf_panic("policy %s: file is %zu bytes, %u entries need %u", POLICY_PATH, size, n, HDR + ENTRY * n);
    static const uint8_t zero[4];
    uint32_t got = bf_crc32(bf_crc32(bf_crc32(0, f, 12), zero, 4), f + HDR, size - HDR);
    if (got != bf_le32(f + 12))
        bf_panic("policy %s: crc32 0x%08x in the header, the contents give 0x%08x", POLICY_PATH, bf_le32(f + 12), got);
    for (unsigned i = 0; i < n; i++)
        parse_entry(f + HDR + ENTRY * i, (int)i, seen, (int)version);

    char have[64];
    size_t used = 0;
    int best = -1;
    const char *missing;
    int cpu = platform_cpu_isa_level(&missing);
    for (int isa = 0; isa < BF_N_ISA; isa++) {
        int count = 0;
        for (int id = 0; id < BF_N_LAYERS; id++)
            count += seen[isa][id] != 0;
        if (!count)
            continue;
        for (int id = 0; id < BF_N_LAYERS; id++)
            if (!seen[isa][id])
                bf_panic("policy %s: layer '%s' has no entry for %s", POLICY_PATH, bf_layer_names[id],
                         bf_isa_names[isa]);
        used += (size_t)snprintf(have + used, sizeof have - used, "%s%s", used ? "," : "", bf_isa_names[isa]);
        if (isa <= cpu)
            best = isa;
    }
    if (best < 0)
        bf_panic("isa: the image carries modules for %s only; this CPU runs up to %s (no %s)", have,
                 bf_isa_names[cpu], missing);
    bf_printf("bareflow: isa %s chosen (image has %s; cpu runs up to %s%s%s)\n", bf_isa_names[best], have,
              bf_isa_names[cpu], *missing ? ", no " : "", missing);
    return best;
}

/* ---- start-up ---- */

static void empty_layer(struct bf_layer_call *call)
{
    __asm__ volatile("" : : "r"(call) : "memory");
}

/* A probe layer that never promotes runs through the very dispatch path bf_call uses. */
__attribute__((noinline)) static void probe_call(struct layer_rt *probe, struct bf_layer_call *call)
{
    dispatch(probe, call);
}

/* Median cycles a profiled call through the wrapper costs over a plain call through the slot. */
static uint64_t measure_overhead(void)
{
    enum { N = 2001 };
    static uint64_t wrapped[N], plain[N];
    static struct layer_rt probe;
    struct bf_layer_call call;
    memset(&call, 0, sizeof call);
    probe.slot = empty_layer;
    probe.timing = 1;
    probe.next_calls = probe.next_cycles = NEVER;
    for (int i = 0; i < N; i++) {
        uint64_t t0 = platform_cycles();
        probe_call(&probe, &call);
        uint64_t t1 = platform_cycles();
        bf_layer_fn fn = __atomic_load_n(&probe.slot, __ATOMIC_ACQUIRE);
        fn(&call);
        uint64_t t2 = platform_cycles();
        wrapped[i] = t1 - t0;
        plain[i] = t2 - t1;
    }
    bf_sort_u64(wrapped, N);
    bf_sort_u64(plain, N);
    return wrapped[N / 2] > plain[N / 2] ? wrapped[N / 2] - plain[N / 2] : 0;
}

void bf_tiering_init(void)
{
    char line[400];
    size_t used = 0;
    int preloaded = 0, on_demand = 0, run_time = 0;

    bf_isa = read_table();
    memcpy(layers, cand[bf_isa], sizeof layers);
    for (int id = 0; id < BF_N_LAYERS; id++) {
        struct layer_rt *L = &layers[id];
        L->st.tier = L->ladder[0];
        for (int s = 0; s < L->n_tiers; s++) {
            if (BF_TIER_KIND(L->ladder[s])) {
                run_time++;               /* compiled when the layer gets there (jit.c) */
            } else if (s == 0 || (L->flags & F_PRELOAD)) {
                L->ready[s] = bf_load_module(id, L->ladder[s]);
                preloaded++;
            } else if (!bf_file_exists(bf_module_path(id, L->ladder[s], bf_isa))) {
                bf_panic("policy %s: layer '%s' climbs to O%u but %s is missing", POLICY_PATH, bf_layer_names[id],
                         L->ladder[s], bf_module_path(id, L->ladder[s], bf_isa));
            } else {
                on_demand++;
            }
        }
        L->slot = L->ready[0];
        L->cores = bf_layer_phases(id) ? bf_cores()->used : 1;
        if (L->st.max_cores && L->cores > L->st.max_cores)
            L->cores = L->st.max_cores;
        set_triggers(L);
        used += (size_t)snprintf(line + used, sizeof line - used, " %s", bf_layer_names[id]);
        for (int s = 0; s < L->n_tiers && used < sizeof line; s++)
            used += (size_t)snprintf(line + used, sizeof line - used, "%s%s", s ? ">" : " ",
                                     bf_tier_name(L->ladder[s]));
        if (used >= sizeof line)
            used = sizeof line - 1;
    }
    overhead_cycles = measure_overhead();
    bf_printf("bareflow: policy%s\n", line);
    bf_printf("bareflow: modules %s, %d loaded at boot, %d on demand; profiling overhead %llu cycles/call\n",
              bf_isa_names[bf_isa], preloaded, on_demand, (unsigned long long)overhead_cycles);
    if (run_time && bf_jit_backend())
        bf_jit_reserve();
    if (run_time && bf_jit_compiling_core() == 0)
        bf_printf("bareflow: jit: %d run-time tiers in the ladders, compiler %s, compiles run inline on core 0\n",
                  run_time, bf_jit_backend() ? bf_jit_backend() : "none (JIT=none: they will be reported as failed)");
    else if (run_time)
        bf_printf("bareflow: jit: %d run-time tiers in the ladders, compiler %s, compiles run on core %d while core 0 "
                  "generates (time-out %llu ms)\n", run_time,
                  bf_jit_backend() ? bf_jit_backend() : "none (JIT=none: they will be reported as failed)",
                  bf_jit_compiling_core(), (unsigned long long)bf_jit_timeout_ms());
}
