/* fuzz_main.c - the driver of BareFlow's fuzzing harness (tools/fuzz_campaign.py builds it).
 *
 * Promise: `bf-fuzz TARGET SEEDS N RNGSEED` runs N mutated inputs through one parser of the
 * portable runtime (config, tokenizer, model, policy, module, fat16; `image` = the whole run on
 * a disk image, in the binary built with the real files.c) and prints one summary line
 * `FUZZ {"target":..,"execs":..,"accepted":..,"refused":..,"seconds":..}`.  A refusal is the
 * runtime's own BAREFLOW-PANIC path (platform_exit(1)); anything else is a bug: a sanitizer
 * report (AddressSanitizer, UndefinedBehaviorSanitizer) ends the process after the input is
 * saved as SEEDS/../findings/crash-TARGET-PID.bin, an execution longer than the time limit
 * saves hang-TARGET-PID.bin and exits 3.  `bf-fuzz TARGET SEEDS --replay FILE...` runs the
 * given inputs once each.  The mutator is blind (no coverage feedback) but format-aware:
 * module files and policy tables get their CRC-32 recomputed most of the time so the
 * structural rules behind the checksum are reached, and large inputs are mutated mostly
 * where their headers and metadata are.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "bareflow/fat16.h"
#include "bareflow/runtime.h"
#include "../../src/runtime/rt.h"
#include "fuzz.h"

void __sanitizer_set_death_callback(void (*callback)(void));

struct blob {
    char name[256];
    uint8_t *data;
    size_t size;
};

#define MAX_SEEDS 256
static struct blob seeds[MAX_SEEDS];
static int n_seeds;
static struct blob base_cfg, base_tok, base_model, base_policy;
static struct blob modules[64];
static int n_modules;
static const char *target, *seed_dir;
static uint8_t *cur;              /* the input being run, for the death callback */
static size_t cur_size, cur_cap;
static uint64_t rng = 0x9E3779B97F4A7C15ull;
static int timeout_seconds = 5;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int read_blob(const char *path, struct blob *b)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    b->data = malloc(n ? (size_t)n : 1);
    b->size = fread(b->data, 1, (size_t)n, f);
    fclose(f);
    snprintf(b->name, sizeof b->name, "%s", path);
    return 0;
}

static void need_blob(const char *name, struct blob *b)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", seed_dir, name);
    if (read_blob(path, b)) {
        fprintf(stderr, "bf-fuzz: missing seed file %s\n", path);
        exit(2);
    }
}

static void save_finding(const char *kind)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/../findings", seed_dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/../findings/%s-%s-%d.bin", seed_dir, kind, target, (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, cur, cur_size);
        (void)w;
        close(fd);
    }
    fprintf(stderr, "bf-fuzz: %s input saved as %s\n", kind, path);
}

static void on_death(void)
{
    save_finding("crash");
}

static void on_alarm(int sig)
{
    (void)sig;
    save_finding("hang");
    _exit(3);
}

/* ---- mutation ---- */

static const int64_t interesting[] = {0, 1, -1, 2, 3, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 255, 256, 511, 512,
                                      1023, 1024, 1025, 4095, 4096, 4097, 32767, 32768, 65535, 65536, 65537,
                                      0x7fffffff, -0x80000000ll, 0xfff7, 0xfff8, 0xffff, 4084, 4085, 65524, 65525,
                                      1000000000, 1000000001, 0x7fffffffffffffffll};
static const char *const words[] = {"=", "\n", "\r\n", "\r", " ", "\t", "#", "e", "E", "-", "+", ".", "0", "1",
                                    "9", "nan", "inf", "prompt", "steps", "temperature", "topp", "seed",
                                    "1e-38", "2e-38", "0e999", "18446744073709551616", "\x80", "\0"};

static size_t pick_offset(size_t size, size_t hot)
{
    if (!size)
        return 0;
    if (hot && hot < size && rnd() % 4)
        return rnd() % hot;
    return rnd() % size;
}

static void ensure(size_t cap)
{
    if (cap > cur_cap) {
        cur_cap = cap * 2;
        cur = realloc(cur, cur_cap);
    }
}

static void mutate_one(size_t hot, int text)
{
    size_t at = pick_offset(cur_size, hot);
    int64_t v = interesting[rnd() % (sizeof interesting / sizeof interesting[0])];
    switch (rnd() % (text ? 14 : 12)) {
    case 0:
        if (cur_size)
            cur[at] ^= (uint8_t)(1u << (rnd() % 8));
        break;
    case 1:
        if (cur_size)
            cur[at] = (uint8_t)rnd();
        break;
    case 2:
        if (cur_size)
            cur[at] = (uint8_t)v;
        break;
    case 3:
        if (at + 2 <= cur_size)
            memcpy(cur + at, &v, 2);
        break;
    case 4:
        if (at + 4 <= cur_size) {
            int32_t w = rnd() % 3 ? (int32_t)v : (int32_t)(cur_size + (rnd() % 9) - 4);
            memcpy(cur + at, &w, 4);
        }
        break;
    case 5:
        if (at + 8 <= cur_size)
            memcpy(cur + at, &v, 8);
        break;
    case 6: {                         /* delete */
        size_t n = 1 + rnd() % 64;
        if (at + n <= cur_size) {
            memmove(cur + at, cur + at + n, cur_size - at - n);
            cur_size -= n;
        }
        break;
    }
    case 7: {                         /* insert random bytes */
        size_t n = 1 + rnd() % 64;
        ensure(cur_size + n);
        memmove(cur + at + n, cur + at, cur_size - at);
        for (size_t i = 0; i < n; i++)
            cur[at + i] = (uint8_t)rnd();
        cur_size += n;
        break;
    }
    case 8: {                         /* copy a range over another */
        size_t n = 1 + rnd() % 64, from = pick_offset(cur_size, 0);
        if (at + n <= cur_size && from + n <= cur_size)
            memmove(cur + at, cur + from, n);
        break;
    }
    case 9:                           /* truncate */
        if (cur_size && rnd() % 4 == 0)
            cur_size = at;
        break;
    case 10: {                        /* append */
        size_t n = 1 + rnd() % 16;
        ensure(cur_size + n);
        for (size_t i = 0; i < n; i++)
            cur[cur_size++] = (uint8_t)rnd();
        break;
    }
    case 11: {                        /* splice from another seed */
        const struct blob *o = &seeds[rnd() % n_seeds];
        size_t n = 1 + rnd() % 256, from = o->size ? rnd() % o->size : 0;
        if (from + n <= o->size && at + n <= cur_size)
            memcpy(cur + at, o->data + from, n);
        break;
    }
    default: {                        /* text: insert a word */
        const char *w = words[rnd() % (sizeof words / sizeof words[0])];
        size_t n = strlen(w) ? strlen(w) : 1;
        ensure(cur_size + n);
        memmove(cur + at + n, cur + at, cur_size - at);
        memcpy(cur + at, w, n);
        cur_size += n;
        break;
    }
    }
}

static void recrc(size_t field, size_t zero_from)
{
    if (cur_size < field + 4 || rnd() % 10 == 0)
        return;
    memset(cur + field, 0, 4);
    uint32_t c = bf_crc32(0, cur, cur_size);
    (void)zero_from;
    memcpy(cur + field, &c, 4);
}

/* ---- targets ---- */

static const char *const disk_paths[] = {"/BAREFLOW.CFG", "/POLICY.TBL", "/MODEL.BIN", "/TOKENIZR.BIN", "/PROFILE.BIN",
                                         "/MODULES/EMBED.O0", "/MODULES/SAMPLER.O2", "/KERNEL.BIN", "/modules/ffn.o1",
                                         "/MODULES", "/NOPE/X.Y"};

static void run_fat16(void)
{
    static struct bf_fat16 v;
    static uint8_t profile[4096];
    fuzz_disk = cur;
    fuzz_disk_sectors = cur_size / 512;
    if (bf_fat16_mount(&v) != BF_FAT_OK)
        platform_exit(BF_EXIT_PANIC);      /* refused: counted like a runtime refusal */
    for (size_t i = 0; i < sizeof disk_paths / sizeof disk_paths[0]; i++) {
        uint32_t size;
        void *data;
        bf_fat16_stat(&v, disk_paths[i], &size);
        bf_fat16_read(&v, disk_paths[i], &data, &size);
    }
    memset(profile, 0xA5, sizeof profile);
    bf_fat16_overwrite(&v, "/PROFILE.BIN", profile, sizeof profile);
}

#ifdef FUZZ_IMAGE
static void run_target(void)
{
    if (strcmp(target, "image") == 0) {
        fuzz_disk = cur;
        fuzz_disk_sectors = cur_size / 512;
        platform_exit(bf_runtime_main());
    }
    run_fat16();
}
#else
static void register_base(void)
{
    fuzz_files_clear();
    fuzz_files_add("/BAREFLOW.CFG", base_cfg.data, base_cfg.size);
    fuzz_files_add("/TOKENIZR.BIN", base_tok.data, base_tok.size);
    fuzz_files_add("/MODEL.BIN", base_model.data, base_model.size);
    fuzz_files_add("/POLICY.TBL", base_policy.data, base_policy.size);
    for (int i = 0; i < n_modules; i++)
        fuzz_files_add(modules[i].name, modules[i].data, modules[i].size);
}

static void run_target(void)
{
    static struct bf_run_config rc;
    static struct bf_tokenizer tok;
    static struct bf_model model;
    static struct bf_state state;
    static int ids[300];
    register_base();
    bf_isa = 0;                  /* x86-64 modules, as tiering.c picks for a one-level table */
    if (strcmp(target, "config") == 0) {
        fuzz_files_add("/BAREFLOW.CFG", cur, cur_size);
        bf_config_load(&rc);
        bf_config_check_steps(&rc, 256);
    } else if (strcmp(target, "tokenizer") == 0) {
        fuzz_files_add("/TOKENIZR.BIN", cur, cur_size);
        int vocab = (int)bf_le32(base_model.data + 20);
        bf_tokenizer_load(&tok, vocab < 0 ? -vocab : vocab);
        const char *prompts[] = {"Once upon a time", "", "x\x7e~ 0", "\xc3\xa9t\xe2\x82\xac\xf0\x9f\x98\x80"};
        const char *p = prompts[rnd() % 4];
        int n = bf_encode(&tok, p, 1, ids, (int)(sizeof ids / sizeof ids[0]));
        for (int i = 1; i < n; i++) {
            size_t len;
            bf_decode(&tok, ids[i - 1], ids[i], &len);
        }
    } else if (strcmp(target, "model") == 0) {
        fuzz_files_add("/MODEL.BIN", cur, cur_size);
        bf_model_load(&model);
        bf_state_alloc(&state, &model.cfg);
    } else if (strcmp(target, "policy") == 0) {
        fuzz_files_add("/POLICY.TBL", cur, cur_size);
        bf_tiering_init();
    } else if (strcmp(target, "module") == 0) {
        int layer = 0, tier = cur_size > 24 ? cur[24] & 3 : 0;
        for (int i = 0; i < BF_N_LAYERS && cur_size >= 24; i++)
            if (strncmp((const char *)cur + 8, bf_layer_names[i], 16) == 0)
                layer = i;
        fuzz_files_add(bf_module_path(layer, tier, bf_isa), cur, cur_size);
        bf_load_module(layer, tier);
    } else if (strcmp(target, "fat16") == 0) {
        run_fat16();
    } else {
        fprintf(stderr, "bf-fuzz: unknown target %s\n", target);
        exit(2);
    }
}
#endif

/* One execution; returns 1 if the runtime accepted the input, 0 if it refused it. */
static int execute(void)
{
    struct itimerval t = {{0, 0}, {timeout_seconds, 0}};
    setitimer(ITIMER_REAL, &t, NULL);
    int accepted;
    fuzz_console_len = 0;
    if (setjmp(fuzz_exit_jmp) == 0) {
        run_target();
        accepted = 1;
    } else {
        accepted = fuzz_exit_code == BF_EXIT_OK;
        if (fuzz_exit_code != BF_EXIT_OK && fuzz_exit_code != BF_EXIT_PANIC) {
            fprintf(stderr, "bf-fuzz: exit code %d\n", fuzz_exit_code);
            abort();
        }
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    fuzz_reset();
    fuzz_disk = NULL;
    fuzz_n_dirty = 0;
    return accepted;
}

static void load_seeds(void)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", seed_dir, target);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) && n_seeds < MAX_SEEDS) {
        if (e->d_name[0] == '.')
            continue;
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (read_blob(path, &seeds[n_seeds]) == 0)
            n_seeds++;
    }
    if (d)
        closedir(d);
    if (!n_seeds) {
        fprintf(stderr, "bf-fuzz: no seeds in %s\n", dir);
        exit(2);
    }
    d = NULL;
    snprintf(dir, sizeof dir, "%s/modules", seed_dir);
    d = opendir(dir);
    while (d && (e = readdir(d)) && n_modules < 64) {
        if (e->d_name[0] == '.')
            continue;
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (read_blob(path, &modules[n_modules]) == 0) {
            snprintf(modules[n_modules].name, sizeof modules[0].name, "/MODULES/%s", e->d_name);
            n_modules++;
        }
    }
    if (d)
        closedir(d);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: bf-fuzz TARGET SEEDS N RNGSEED | bf-fuzz TARGET SEEDS --replay FILE...\n");
        return 2;
    }
    target = argv[1];
    seed_dir = argv[2];
    setvbuf(stdout, NULL, _IOLBF, 0);
    __sanitizer_set_death_callback(on_death);
    signal(SIGALRM, on_alarm);
    if (getenv("BF_FUZZ_TIMEOUT"))
        timeout_seconds = atoi(getenv("BF_FUZZ_TIMEOUT"));
    fuzz_exec_arena = strcmp(target, "image") == 0;
    need_blob("config.bin", &base_cfg);
    need_blob("tokenizer.bin", &base_tok);
    need_blob("model.bin", &base_model);
    need_blob("policy.bin", &base_policy);
    if (strcmp(argv[3], "--replay") == 0) {
        load_seeds();
        for (int i = 4; i < argc; i++) {
            struct blob b;
            if (read_blob(argv[i], &b))
                continue;
            ensure(b.size + 1);
            memcpy(cur, b.data, b.size);
            cur_size = b.size;
            free(b.data);
            int ok = execute();
            size_t shown = fuzz_console_len < 300 ? fuzz_console_len : 300;
            printf("REPLAY %s %s: %.*s\n", argv[i], ok ? "accepted" : "refused", (int)shown,
                   fuzz_console + fuzz_console_len - shown);
        }
        return 0;
    }
    load_seeds();
    uint64_t n = strtoull(argv[3], NULL, 10), accepted = 0;
    rng ^= strtoull(argc > 4 ? argv[4] : "1", NULL, 10) * 0x2545F4914F6CDD1Dull;
    int is_disk = strcmp(target, "fat16") == 0 || strcmp(target, "image") == 0;
    int text = strcmp(target, "config") == 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (uint64_t i = 0; i < n; i++) {
        const struct blob *s = &seeds[rnd() % n_seeds];
        ensure(s->size + 4096);
        memcpy(cur, s->data, s->size);
        cur_size = s->size;
        /* Disks: metadata (boot sector, FATs, root and the first directory clusters) is hot. */
        size_t hot = is_disk ? 96 * 1024 : strcmp(target, "model") == 0 ? 28 : strcmp(target, "module") == 0 ? 64 : 0;
        int ops = 1 + (int)(rnd() % (rnd() % 8 == 0 ? 16 : 4));
        for (int k = 0; k < ops; k++) {
            if (is_disk) {            /* a disk keeps its size (mostly): byte and word writes only */
                size_t at = pick_offset(cur_size, hot);
                int64_t v = interesting[rnd() % (sizeof interesting / sizeof interesting[0])];
                switch (rnd() % 4) {
                case 0: cur[at] ^= (uint8_t)(1u << (rnd() % 8)); break;
                case 1: cur[at] = (uint8_t)rnd(); break;
                case 2: if (at + 2 <= cur_size) memcpy(cur + at, &v, 2); break;
                default: if (at + 4 <= cur_size) memcpy(cur + at, &v, 4); break;
                }
                if (rnd() % 64 == 0)
                    cur_size -= (rnd() % 64) * 512 < cur_size ? (rnd() % 64) * 512 : 0;
            } else {
                mutate_one(hot, text);
            }
        }
        if (strcmp(target, "module") == 0)
            recrc(60, 0);
        if (strcmp(target, "policy") == 0)
            recrc(12, 0);
        accepted += (uint64_t)execute();
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("FUZZ {\"target\":\"%s\",\"execs\":%llu,\"accepted\":%llu,\"refused\":%llu,\"seconds\":%.3f}\n", target,
           (unsigned long long)n, (unsigned long long)accepted, (unsigned long long)(n - accepted), secs);
    return 0;
}
