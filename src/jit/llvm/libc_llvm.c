/* libc_llvm.c - the part of the C library LLVM and libstdc++ really use inside BareFlow.
 *
 * Promise: each function here does what the C standard (or glibc, for the __*_chk and
 * __errno_location ABI names LLVM's Debian build calls) says, for one thread.  Functions the
 * project libc also provides (memcpy, strlen, vsnprintf, ...) are weak here so the build's libc
 * selection wins.  LLVM's error stream (fd 2, stderr) is captured into a buffer that the driver
 * turns into a failed compile; nothing else is written anywhere.  Files and the environment do
 * not exist: opening fails, getenv returns NULL.  Everything else LLVM references is in
 * stubs.c.  docs/jit.md lists what is implemented and why.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "llvm_platform.h"

#define WEAK __attribute__((weak))

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);

/* ---- LLVM's error stream ---- */
static char diag[512];
static size_t diag_len;

void bf_llvm_diag_reset(void) { diag_len = 0; diag[0] = 0; }
const char *bf_llvm_diag_text(void) { return diag; }

/* Only LLVM's first message is kept: later ones usually repeat it (one per subtarget). */
static void diag_put(const void *p, size_t n)
{
    const char *s = p;
    for (size_t i = 0; i < n && diag_len + 1 < sizeof diag; i++) {
        if (diag_len && diag[diag_len - 1] == '\n')
            break;
        diag[diag_len++] = s[i];
    }
    diag[diag_len] = 0;
}

/* ---- errno, stdio handles, environment ---- */
/* errno is per core, in the core's TCB: __errno_location is src/runtime/tcb.c's. */
int *__errno_location(void);
#define errno_value (*__errno_location())
static int stdio_cookie[3];
void *stderr = &stdio_cookie[2];
static char *no_environment[1];
char **environ = no_environment;
char __libc_single_threaded = 1;
void *__dso_handle WEAK = &__dso_handle;

char *getenv(const char *name) { (void)name; return NULL; }
int isatty(int fd) { (void)fd; errno_value = 25; return 0; }                  /* ENOTTY */
long lseek(int fd, long off, int whence) { (void)fd; (void)off; (void)whence; errno_value = 29; return -1; }  /* ESPIPE */
int fstat(int fd, void *st) { (void)fd; (void)st; errno_value = 9; return -1; }  /* EBADF */
int close(int fd) { (void)fd; return 0; }

long write(int fd, const void *buf, size_t n)
{
    if (fd == 1 || fd == 2) {
        diag_put(buf, n);
        return (long)n;
    }
    errno_value = 9;
    return -1;
}

size_t fwrite(const void *p, size_t size, size_t n, void *f) { (void)f; diag_put(p, size * n); return n; }
int fputs(const char *s, void *f);
int fputc(int c, void *f) { char ch = (char)c; (void)f; diag_put(&ch, 1); return c & 0xff; }

/* ---- memory and strings ---- */
WEAK void *memcpy(void *d, const void *s, size_t n)
{
    unsigned char *dp = d;
    const unsigned char *sp = s;
    while (n--)
        *dp++ = *sp++;
    return d;
}

WEAK void *memmove(void *d, const void *s, size_t n)
{
    unsigned char *dp = d;
    const unsigned char *sp = s;
    if (dp < sp)
        while (n--)
            *dp++ = *sp++;
    else
        while (n--)
            dp[n] = sp[n];
    return d;
}

WEAK void *memset(void *d, int c, size_t n)
{
    unsigned char *p = d;
    while (n--)
        *p++ = (unsigned char)c;
    return d;
}

WEAK int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y)
            return *x - *y;
    return 0;
}

int bcmp(const void *a, const void *b, size_t n) { return memcmp(a, b, n); }

void *memchr(const void *s, int c, size_t n)
{
    const unsigned char *p = s;
    for (; n; n--, p++)
        if (*p == (unsigned char)c)
            return (void *)p;
    return NULL;
}

WEAK size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

WEAK int strcmp(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return (unsigned char)*a - (unsigned char)*b;
}

WEAK int strncmp(const char *a, const char *b, size_t n)
{
    for (; n; n--, a++, b++)
        if (*a != *b || !*a)
            return (unsigned char)*a - (unsigned char)*b;
    return 0;
}

WEAK char *strchr(const char *s, int c)
{
    for (;; s++) {
        if (*s == (char)c)
            return (char *)s;
        if (!*s)
            return NULL;
    }
}

char *strncpy(char *d, const char *s, size_t n)
{
    size_t i = 0;
    for (; i < n && s[i]; i++)
        d[i] = s[i];
    for (; i < n; i++)
        d[i] = 0;
    return d;
}

char *strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = bf_llvm_malloc(n);
    return d ? memcpy(d, s, n) : NULL;
}

int fputs(const char *s, void *f) { (void)f; diag_put(s, strlen(s)); return 0; }

void *__memcpy_chk(void *d, const void *s, size_t n, size_t dlen)
{
    if (n > dlen)
        bf_llvm_abort("__memcpy_chk: buffer overflow");
    return memcpy(d, s, n);
}

int __snprintf_chk(char *buf, size_t size, int flag, size_t blen, const char *fmt, ...)
{
    (void)flag;
    if (size > blen)
        bf_llvm_abort("__snprintf_chk: buffer overflow");
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

WEAK int snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

int sprintf(char *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, (size_t)1 << 30, fmt, ap);
    va_end(ap);
    return n;
}

/* ---- threads: one core runs LLVM at a time, so locks are no-ops; once is real ---- */
int pthread_mutex_lock(void *m) { (void)m; return 0; }
int pthread_mutex_unlock(void *m) { (void)m; return 0; }
int pthread_rwlock_rdlock(void *l) { (void)l; return 0; }
int pthread_rwlock_wrlock(void *l) { (void)l; return 0; }
int pthread_rwlock_unlock(void *l) { (void)l; return 0; }

int pthread_once(int *once, void (*fn)(void))
{
    if (*once == 0) {
        *once = 1;
        fn();
    }
    return 0;
}

/* Destructors of statics never run: the run ends with the machine, not with exit(). */
int __cxa_atexit(void (*fn)(void *), void *arg, void *dso) { (void)fn; (void)arg; (void)dso; return 0; }

/* Replaces the runtime's weak one (src/runtime/tcb.c): inside a compile it aborts the compile. */
void __stack_chk_fail(void) { bf_llvm_abort("__stack_chk_fail: stack-protector canary overwritten"); }
void abort(void) { bf_llvm_abort(diag_len ? diag : "abort() called"); }
void exit(int code) { (void)code; bf_llvm_abort(diag_len ? diag : "exit() called"); }
void _exit(int code) { (void)code; bf_llvm_abort("_exit() called"); }

/* ---- the few maths functions whose answer is exact without a maths library ---- */
double fabs(double x) { return __builtin_fabs(x); }
double sqrt(double x) { double r; __asm__("sqrtsd %1, %0" : "=x"(r) : "x"(x)); return r; }

static double trunc_small(double x)      /* |x| < 2^52 */
{
    return (double)(long long)x;
}

double floor(double x)
{
    if (!(__builtin_fabs(x) < 4503599627370496.0))
        return x;
    double t = trunc_small(x);
    return t > x ? t - 1.0 : t;
}

double ceil(double x)
{
    if (!(__builtin_fabs(x) < 4503599627370496.0))
        return x;
    double t = trunc_small(x);
    return t < x ? t + 1.0 : t;
}

double round(double x)
{
    if (!(__builtin_fabs(x) < 4503599627370496.0))
        return x;
    return x < 0 ? -floor(-x + 0.5) : floor(x + 0.5);
}

double rint(double x)              /* round half to even, the default rounding mode */
{
    if (!(__builtin_fabs(x) < 4503599627370496.0))
        return x;
    double f = floor(x), d = x - f;
    if (d > 0.5 || (d == 0.5 && (long long)f % 2 != 0))
        return f + 1.0;
    return f;
}
