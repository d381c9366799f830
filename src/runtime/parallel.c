/* parallel.c - the matrix work of one layer call, split across the cores.
 *
 * Promises: core 0 runs the generate loop and every layer; a layer of a split kind (layer ABI 3:
 * qkv, attn, attnout, ffn, classify) called with more than one core has each phase cut into
 * fixed chunks - core c of n gets the c-th contiguous share, boundaries on whole blocks of 16
 * rows (1 head for attn) - and each worker's chunk into at most PIECES fixed pieces on the same
 * block boundaries.  A worker finds its chunk in its own mailbox and runs its pieces front to
 * back with the very module function core 0 runs; core 0 runs its own chunk whole, then takes
 * the workers' pieces nobody has started from the back (one CAS on the chunk's piece range
 * decides who runs each piece), so a core the host has descheduled, before or during its chunk,
 * holds the call up by one piece at most.  The next phase, and the return to the caller, come
 * only after every piece is done, so no core is inside the layer when bf_parallel_call returns.
 * Every output unit is computed by the same code on the same inputs whichever core does it, so
 * results are bit-identical for any core count.  Lock-free: a mailbox is written by core 0 and
 * published by a release store of its sequence word; a worker claims pieces by CAS on a word
 * holding (sequence, next piece, end) and counts the pieces it finished (release).
 * Waits spin (platform_spin); an idle worker spins a while, then may park until core 0 posts
 * (platform_wait/platform_wake).  Core 0 waits for a piece a worker took at most BARRIER_SECONDS,
 * then ends the run naming the layer (a core that faults is reported as a CPU exception).
 * Service jobs: core 0 may hand one worker core a function to run outside the work split (the
 * JIT's compiles, jit.c).  From the post until core 0 has collected the finished job that core
 * is busy: the split leaves it out and cuts each phase over the remaining cores, in core order
 * (the chunking for k cores is the same whichever cores they are, and results are identical for
 * any k).  The worker takes a job only while it waits for a chunk, i.e. between layer calls; the
 * post also advances the worker's mailbox word with a NOTICE, so a parked worker wakes for it.
 */
#include <string.h>

#include "bareflow/platform.h"
#include "bareflow/runtime.h"
#include "bareflow/tcb.h"
#include "rt.h"

/* A mailbox word is (sequence << 2) | status: core 0 posts a chunk by writing the mailbox and
 * its piece range, then the word with the next sequence and POSTED (release); NOTICE: no
 * chunk, look at the service job. */
enum { NOTICE = 0, POSTED = 1 };
#define BARRIER_SECONDS 60      /* far above any piece: the 42M shape's classify under TCG takes < 1 s */
/* Pieces per worker chunk: enough that core 0, done with its own chunk, can take over most of a
 * worker's chunk the host has descheduled; few enough that claiming them (one CAS each, a few
 * hundred cycles when the line moves between cores) costs nothing next to a piece's rows. */
#define PIECES 8

/* The piece range word: sequence of the post (32 bits) | next piece (16) | end piece (16).  The
 * worker claims `next` (CAS next+1), core 0 claims end-1 (CAS end-1); the sequence makes a
 * claim for an older post fail. */
#define RANGE(seq, next, end) ((uint64_t)(seq) << 32 | (uint64_t)(next) << 16 | (uint64_t)(end))
#define R_SEQ(r) ((uint32_t)((r) >> 32))
#define R_NEXT(r) ((unsigned)((r) >> 16) & 0xFFFFu)
#define R_END(r) ((unsigned)(r) & 0xFFFFu)

struct mailbox {
    uint32_t word;
    bf_layer_fn fn;
    struct bf_layer_call call;          /* split = 1, the phase and the worker's whole chunk */
    int align, pieces;                  /* the chunk is cut into `pieces` on multiples of `align` */
    uint64_t posted_at;                 /* core 0's clock when it posted the chunk */
    /* Written per piece, on their own line: */
    uint64_t range __attribute__((aligned(64)));
    uint32_t done;                      /* pieces of this post the worker finished (release) */
    uint64_t cycles;                    /* the worker's cycles in them (before `done`) */
} __attribute__((aligned(64)));

static struct mailbox boxes[BF_MAX_CORES];

/* Each worker's own counts (the result line's cores object), copied out by bf_cores(). */
static struct wstats {
    uint64_t pieces, parks, joined, claim_cycles, wake_cycles, woken;
} __attribute__((aligned(64))) wstats[BF_MAX_CORES];

/* A service job's state: core 0 posts (IDLE -> POSTED, release, after writing fn and arg), the
 * worker runs it and publishes its results with DONE (release); core 0 sees DONE (acquire),
 * reads the results and frees the core (-> IDLE).  Only core 0 leaves IDLE and returns to it. */
enum { S_IDLE, S_POSTED, S_RUNNING, S_DONE };
static struct service {
    uint32_t state;
    void (*fn)(void *arg, int core);
    void *arg;
} __attribute__((aligned(64))) services[BF_MAX_CORES];
static int n_busy;                      /* cores with a job not yet collected (core 0's count) */
static struct bf_cores cores = {1, 1, 1, {0}};

/* Piece i of the chunk in mb: the chunk's blocks cut like bf_chunk cuts a phase over cores. */
static void piece_call(const struct mailbox *mb, unsigned i, struct bf_layer_call *out)
{
    int b, e;
    *out = mb->call;
    bf_chunk(mb->call.end - mb->call.begin, mb->align, (int)i, mb->pieces, &b, &e);
    out->begin = mb->call.begin + b;
    out->end = mb->call.begin + e;
}

static void worker(int core)
{
    bf_tcb_enter(core, 0);          /* this core's TCB at FS_BASE (tcb.c) before any libc call */
    struct mailbox *mb = &boxes[core];
    struct service *sv = &services[core];
    struct wstats *st = &wstats[core];
    uint32_t seen = 0;
    for (;;) {
        unsigned spins = 0;
        int parked = 0;
        uint32_t w;
        while (((w = __atomic_load_n(&mb->word, __ATOMIC_ACQUIRE)) >> 2) == seen) {
            if (__atomic_load_n(&sv->state, __ATOMIC_ACQUIRE) == S_POSTED) {
                __atomic_store_n(&sv->state, S_RUNNING, __ATOMIC_RELAXED);
                sv->fn(sv->arg, core);
                __atomic_store_n(&sv->state, S_DONE, __ATOMIC_RELEASE);
                spins = 0;
                continue;
            }
            if (platform_wait(core, &mb->word, w, spins++) && !parked) {   /* spins, then may park */
                parked = 1;
                st->parks++;
            }
        }
        seen = w >> 2;
        if ((w & 3) != POSTED)
            continue;
        int first = 1;
        for (;;) {
            uint64_t r = __atomic_load_n(&mb->range, __ATOMIC_ACQUIRE);
            if (R_SEQ(r) != seen || R_NEXT(r) >= R_END(r))
                break;                  /* every piece is taken (core 0 took the rest) */
            if (!__atomic_compare_exchange_n(&mb->range, &r, r + (1u << 16), 0, __ATOMIC_ACQ_REL,
                                             __ATOMIC_ACQUIRE))
                continue;
            /* Core 0 waits for this piece, so the mailbox stays as posted until `done` moves. */
            uint64_t t0 = platform_cycles();
            if (first) {
                uint64_t claim = t0 > mb->posted_at ? t0 - mb->posted_at : 0;   /* clocks of two cores */
                st->joined++;
                st->claim_cycles += claim;
                if (parked) {
                    st->woken++;
                    st->wake_cycles += claim;
                }
                first = 0;
            }
            struct bf_layer_call piece;
            piece_call(mb, R_NEXT(r), &piece);
            if (piece.begin < piece.end)
                mb->fn(&piece);
            st->pieces++;
            mb->cycles += platform_cycles() - t0;
            __atomic_add_fetch(&mb->done, 1, __ATOMIC_RELEASE);
        }
    }
}

void bf_parallel_init(const struct bf_run_config *rc)
{
    int found = 1;
    int wanted = rc->cores;
    int started = platform_cores_start(wanted, rc->smp_test, worker, &found);
    if (started < 1)
        started = 1;
    if (started > BF_MAX_CORES)
        bf_panic("platform started %d cores, the runtime splits over at most %d", started, BF_MAX_CORES);
    cores.found = found;
    cores.started = started;
    cores.used = wanted && wanted < started ? wanted : started;
    bf_printf("bareflow: cores found %d, started %d, used %d (cores=%s%.0d)\n", found, started, cores.used,
              wanted ? "" : "all", wanted);
}

const struct bf_cores *bf_cores(void)
{
    for (int c = 1; c < cores.started && c < BF_MAX_CORES; c++) {
        const struct wstats *st = &wstats[c];
        cores.pieces[c] = st->pieces;
        cores.parks[c] = st->parks;
        cores.joined[c] = st->joined;
        cores.claim_cycles[c] = st->claim_cycles;
        cores.wake_cycles[c] = st->wake_cycles;
        cores.woken[c] = st->woken;
    }
    return &cores;
}

int bf_service_post(int core, void (*fn)(void *arg, int core), void *arg)
{
    if (core < 1 || core >= cores.started || __atomic_load_n(&services[core].state, __ATOMIC_RELAXED) != S_IDLE)
        return -1;
    services[core].fn = fn;
    services[core].arg = arg;
    n_busy++;
    __atomic_store_n(&services[core].state, S_POSTED, __ATOMIC_RELEASE);
    /* A parked worker sleeps until its mailbox word changes: advance it (no chunk is outstanding
     * between layer calls, so nothing else writes the word now) and wake the core. */
    struct mailbox *mb = &boxes[core];
    uint32_t seq = (__atomic_load_n(&mb->word, __ATOMIC_RELAXED) >> 2) + 1;
    __atomic_store_n(&mb->word, seq << 2 | NOTICE, __ATOMIC_RELEASE);
    platform_wake(core, &mb->word);
    return 0;
}

int bf_service_collect(int core)
{
    if (__atomic_load_n(&services[core].state, __ATOMIC_ACQUIRE) != S_DONE)
        return 0;
    __atomic_store_n(&services[core].state, S_IDLE, __ATOMIC_RELAXED);   /* the worker waits for POSTED only */
    n_busy--;
    return 1;
}

int bf_service_busy(int core)
{
    return __atomic_load_n(&services[core].state, __ATOMIC_RELAXED) != S_IDLE;
}

int bf_layer_phases(int layer)
{
    switch (layer) {
    case BF_QKV: case BF_ATTN: case BF_ATTNOUT: case BF_CLASSIFY:
        return 1;
    case BF_FFN:
        return 2;
    default:
        return 0;
    }
}

int bf_layer_units(int layer, int phase, const struct bf_config *c)
{
    int kv_dim = c->dim * c->n_kv_heads / c->n_heads;
    switch (layer) {
    case BF_QKV: return c->dim + 2 * kv_dim;
    case BF_ATTN: return c->n_heads;
    case BF_ATTNOUT: return c->dim;
    case BF_FFN: return phase == 0 ? c->hidden_dim : c->dim;
    case BF_CLASSIFY: return c->vocab_size;
    default: return 0;
    }
}

void bf_chunk(int units, int align, int core, int n, int *begin, int *end)
{
    int blocks = (units + align - 1) / align;
    int b = (int)((long long)blocks * core / n) * align;
    int e = (int)((long long)blocks * (core + 1) / n) * align;
    *begin = b < units ? b : units;
    *end = e < units ? e : units;
}

void bf_parallel_call(int layer, bf_layer_fn fn, struct bf_layer_call *call, int n, uint64_t *core_cycles)
{
    int phases = bf_layer_phases(layer);
    if (phases == 0) {
        fn(call);                         /* a kind that is never split */
        return;
    }
    /* Cores with a service job sit this call out: the chunks go to the others, in core order. */
    int who[BF_MAX_CORES], k = 0;
    for (int c = 0; c < n; c++)
        if (!n_busy || c == 0 || __atomic_load_n(&services[c].state, __ATOMIC_RELAXED) == S_IDLE)
            who[k++] = c;
    n = k;
    if (n <= 1) {                         /* the whole layer on this core: split = 0 */
        uint64_t t0 = platform_cycles();
        fn(call);
        uint64_t spent = platform_cycles() - t0;
        cores.busy_cycles[0] += spent;
        if (core_cycles)
            core_cycles[0] += spent;
        return;
    }
    int align = layer == BF_ATTN ? 1 : BF_CHUNK_ALIGN;
    for (int phase = 0; phase < phases; phase++) {
        int units = bf_layer_units(layer, phase, call->cfg);
        for (int c = 1; c < n; c++) {
            struct mailbox *mb = &boxes[who[c]];
            mb->fn = fn;
            mb->call = *call;
            mb->call.split = 1;
            mb->call.phase = phase;
            bf_chunk(units, align, c, n, &mb->call.begin, &mb->call.end);
            int blocks = (mb->call.end - mb->call.begin + align - 1) / align;
            mb->align = align;
            mb->pieces = blocks < PIECES ? blocks : PIECES;
            mb->cycles = 0;
            mb->done = 0;
            uint32_t seq = ((__atomic_load_n(&mb->word, __ATOMIC_RELAXED) >> 2) + 1) & 0x3FFFFFFFu;
            __atomic_store_n(&mb->range, RANGE(seq, 0, mb->pieces), __ATOMIC_RELAXED);
            mb->posted_at = platform_cycles();
            __atomic_store_n(&mb->word, seq << 2 | POSTED, __ATOMIC_RELEASE);
            platform_wake(who[c], &mb->word);
        }
        struct bf_layer_call own = *call;
        own.split = 1;
        own.phase = phase;
        bf_chunk(units, align, 0, n, &own.begin, &own.end);
        uint64_t t0 = platform_cycles();
        if (own.begin < own.end)
            fn(&own);
        cores.pieces[0]++;
        /* The workers' pieces nobody has started (their core busy elsewhere, e.g. descheduled by
         * the host OS or the hypervisor) are run here, from the back, rather than waited for. */
        unsigned stolen[BF_MAX_CORES];
        for (int c = 1; c < n; c++) {
            struct mailbox *mb = &boxes[who[c]];
            stolen[c] = 0;
            for (;;) {
                uint64_t r = __atomic_load_n(&mb->range, __ATOMIC_ACQUIRE);
                if (R_NEXT(r) >= R_END(r))
                    break;
                if (!__atomic_compare_exchange_n(&mb->range, &r, r - 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                    continue;
                struct bf_layer_call piece;
                piece_call(mb, R_END(r) - 1, &piece);
                if (piece.begin < piece.end)
                    fn(&piece);
                stolen[c]++;
            }
            cores.pieces[0] += stolen[c];
            cores.stolen += stolen[c];
        }
        uint64_t mine = platform_cycles() - t0, waited = platform_cycles();
        uint64_t deadline = waited + BARRIER_SECONDS * platform_cycles_per_second();
        for (int c = 1; c < n; c++) {
            struct mailbox *mb = &boxes[who[c]];
            unsigned want = (unsigned)mb->pieces - stolen[c], spins = 0;
            while (__atomic_load_n(&mb->done, __ATOMIC_ACQUIRE) != want) {
                platform_spin(spins++);
                if ((spins & 1023) == 0 && platform_cycles() > deadline)
                    bf_panic("layer %s: core %d did not finish %u of the pieces it took within %d s",
                             bf_layer_names[layer], who[c], want - __atomic_load_n(&mb->done, __ATOMIC_ACQUIRE),
                             BARRIER_SECONDS);
            }
            cores.busy_cycles[who[c]] += mb->cycles;
            if (core_cycles)
                core_cycles[who[c]] += mb->cycles;
        }
        cores.wait_cycles += platform_cycles() - waited;
        cores.busy_cycles[0] += mine;
        if (core_cycles)
            core_cycles[0] += mine;
    }
}
