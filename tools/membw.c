/* membw.c - the machine's read bandwidth with 1 and with N threads (tools/bench_smp.py builds and
 * runs it, so the figures come from the same minutes as the tokens/s they are compared with).
 *
 *     membw MIB_PER_THREAD MAX_THREADS REPEATS
 *
 * For t = 1 .. MAX_THREADS: t threads, each with its own MIB_PER_THREAD MiB buffer (written once
 * beforehand, so the pages exist), start together and each sums its whole buffer with 32-byte
 * vector loads and four independent accumulators (so the loop waits on memory, not on the
 * adds); the time is from the common start to the last thread's end.  Best of REPEATS.  Prints
 * one line per t: "threads T GBPS" (10^9 bytes per second, all threads' bytes together).
 * A buffer far larger than the last-level cache measures DRAM, as the layers' weights do.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef uint64_t v4 __attribute__((vector_size(32)));

struct job {
    const v4 *buf;
    size_t n;                      /* vectors */
    uint64_t sum;
    pthread_barrier_t *start;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *reader(void *arg)
{
    struct job *j = arg;
    pthread_barrier_wait(j->start);
    v4 a = {0}, b = {0}, c = {0}, d = {0};
    for (size_t i = 0; i + 4 <= j->n; i += 4) {
        a += j->buf[i];
        b += j->buf[i + 1];
        c += j->buf[i + 2];
        d += j->buf[i + 3];
    }
    v4 s = a + b + c + d;
    j->sum = s[0] + s[1] + s[2] + s[3];
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: membw MIB_PER_THREAD MAX_THREADS REPEATS\n");
        return 2;
    }
    size_t bytes = (size_t)atol(argv[1]) << 20;
    int max_threads = atoi(argv[2]), repeats = atoi(argv[3]);
    if (bytes == 0 || max_threads < 1 || max_threads > 64 || repeats < 1) {
        fprintf(stderr, "membw: bad arguments\n");
        return 2;
    }
    v4 *bufs[64];
    for (int t = 0; t < max_threads; t++) {
        bufs[t] = aligned_alloc(64, bytes);
        if (!bufs[t]) {
            fprintf(stderr, "membw: cannot allocate %zu MiB\n", bytes >> 20);
            return 1;
        }
        memset(bufs[t], t + 1, bytes);
    }
    uint64_t check = 0;
    for (int threads = 1; threads <= max_threads; threads++) {
        double best = 1e30;
        for (int r = 0; r < repeats; r++) {
            pthread_barrier_t start;
            pthread_barrier_init(&start, NULL, threads + 1);
            pthread_t tid[64];
            struct job jobs[64];
            for (int t = 0; t < threads; t++) {
                jobs[t] = (struct job){bufs[t], bytes / sizeof(v4), 0, &start};
                pthread_create(&tid[t], NULL, reader, &jobs[t]);
            }
            double t0 = now();
            pthread_barrier_wait(&start);
            for (int t = 0; t < threads; t++) {
                pthread_join(tid[t], NULL);
                check += jobs[t].sum;
            }
            double dt = now() - t0;
            if (dt < best)
                best = dt;
            pthread_barrier_destroy(&start);
        }
        printf("threads %d %.3f\n", threads, (double)bytes * threads / best / 1e9);
    }
    fprintf(stderr, "membw: checksum %llu\n", (unsigned long long)check);
    return 0;
}
