/* config.c - reads /BAREFLOW.CFG exactly as docs/boot-config.md describes it.
 *
 * Promise: the run configuration is either every key's default or a value the file set on one
 * line and that passed its range check; anything else (unknown or repeated key, bad number,
 * out of range, control byte, text that is not UTF-8, bad escape, line without '=') stops the
 * run naming BAREFLOW.CFG, the line and the key.  `steps` can only be checked against the model's seq_len once the model is
 * read, so its line is kept for that later message.
 */
#include <string.h>

#include "bareflow/platform.h"
#include "bareflow/runtime.h"
#include "rt.h"

#define CFG_PATH "/BAREFLOW.CFG"
#define CFG_MAX 8192
/* FLT_MIN: below it a float32 is denormal or zero, so a positive value would not survive. */
#define FLOAT32_MIN_NORMAL 1.17549435e-38f
#define FLOAT32_MIN_TEXT "1.17549435e-38"

enum { K_PROMPT, K_STEPS, K_TEMPERATURE, K_TOPP, K_SEED, K_CORES, K_SMP_TEST, K_CHAT_BEFORE, K_CHAT_AFTER,
       K_JIT_CPU, K_JIT_HEAP_KIB, K_JIT_TIMEOUT_MS, N_KEYS };
static const char *const key_names[N_KEYS] = {"prompt", "steps", "temperature", "topp", "seed", "cores",
                                              "smp_test", "chat_before", "chat_after", "jit_cpu",
                                              "jit_heap_kib", "jit_timeout_ms"};
/* The default time-out of a compile on the compiling core; the build writes its JIT_TIMEOUT_MS. */
#define JIT_TIMEOUT_MS_DEFAULT 60000
#define JIT_TIMEOUT_MS_MAX 3600000

#define MAX_TEXT 1023

/* chat_before / chat_after: \n \r \t \s (space) \\ escapes, so line breaks and edge spaces of a
 * template fit on one line. */
static void unescape(char *out, const char *value, int line, const char *key)
{
    size_t n = 0;
    for (const char *p = value; *p; p++) {
        char c = *p;
        if (c == '\\') {
            switch (*++p) {
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 's': c = ' '; break;
            case '\\': c = '\\'; break;
            default:
                bf_panic("BAREFLOW.CFG line %d: %s has an unknown escape '\\%c' (known: \\n \\r \\t \\s \\\\)", line,
                         key, *p ? *p : '0');
            }
        }
        if (n == MAX_TEXT)
            bf_panic("BAREFLOW.CFG line %d: %s is longer than %d bytes", line, key, MAX_TEXT);
        out[n++] = c;
    }
    out[n] = 0;
}

static int is_blank(char c) { return c == ' ' || c == '\t'; }

/* Unsigned decimal integer, no sign, no spaces; returns 0 on success. */
static int parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* [-]digits[.digits][e[-]digits] (the build writes Python's %g): an exact mantissa of at most
 * 18 digits scaled by exact powers of ten, so the double is correctly rounded for every value
 * the build can write before it becomes the float the layers use. */
static int parse_decimal(const char *s, double *out)
{
    int neg = 0, digits = 0, frac = 0, dot = 0, exp = 0, eneg = 0;
    uint64_t mant = 0;
    if (*s == '-' || *s == '+')
        neg = *s++ == '-';
    for (; *s && *s != 'e' && *s != 'E'; s++) {
        if (*s == '.' && !dot) {
            dot = 1;
            continue;
        }
        if (*s < '0' || *s > '9' || ++digits > 18)
            return -1;
        mant = mant * 10 + (uint64_t)(*s - '0');
        frac += dot;
    }
    if (!digits)
        return -1;
    if (*s) {
        s++;
        if (*s == '-' || *s == '+')
            eneg = *s++ == '-';
        if (!*s)
            return -1;
        for (; *s; s++) {
            if (*s < '0' || *s > '9' || exp > 99)
                return -1;
            exp = exp * 10 + (*s - '0');
        }
    }
    int scale10 = (eneg ? -exp : exp) - frac;
    double scale = 1.0, v = neg ? -(double)mant : (double)mant;
    for (int i = scale10 < 0 ? -scale10 : scale10; i > 0; i--)
        scale *= 10.0;
    *out = scale10 < 0 ? v / scale : v * scale;
    return 0;
}

static void set_value(struct bf_run_config *rc, int key, const char *value, int line)
{
    uint64_t u;
    double d;
    switch (key) {
    case K_PROMPT:
        if (strlen(value) > MAX_TEXT)
            bf_panic("BAREFLOW.CFG line %d: prompt is %zu bytes, at most %d", line, strlen(value), MAX_TEXT);
        for (const char *p = value; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7F)
                bf_panic("BAREFLOW.CFG line %d: prompt holds control byte 0x%02x", line, (unsigned char)*p);
        memcpy(rc->prompt, value, strlen(value) + 1);
        return;
    case K_CHAT_BEFORE:
        unescape(rc->chat_before, value, line, "chat_before");
        return;
    case K_CHAT_AFTER:
        unescape(rc->chat_after, value, line, "chat_after");
        return;
    case K_STEPS:
        if (parse_u64(value, &u))
            bf_panic("BAREFLOW.CFG line %d: steps = '%s' is not an integer", line, value);
        if (u < 1 || u > 1000000000)
            bf_panic("BAREFLOW.CFG line %d: steps = %s out of range 1..seq_len", line, value);
        rc->steps = (int)u;
        rc->steps_line = line;
        return;
    case K_SEED:
        if (parse_u64(value, &u))
            bf_panic("BAREFLOW.CFG line %d: seed = '%s' is not an integer in 0..2^64-1", line, value);
        rc->seed = u;
        return;
    case K_TEMPERATURE:
        if (parse_decimal(value, &d))
            bf_panic("BAREFLOW.CFG line %d: temperature = '%s' is not a decimal number", line, value);
        if (!(d >= 0.0 && d <= 2.0))
            bf_panic("BAREFLOW.CFG line %d: temperature = %s out of range 0..2", line, value);
        if (d > 0.0 && !((float)d >= FLOAT32_MIN_NORMAL))
            bf_panic("BAREFLOW.CFG line %d: temperature = %s is below %s, the smallest normal float32 (the "
                     "sampler divides by it); use 0 for greedy", line, value, FLOAT32_MIN_TEXT);
        rc->temperature = (float)d;
        return;
    case K_JIT_CPU:
        if (strlen(value) < 1 || strlen(value) >= sizeof rc->jit_cpu)
            bf_panic("BAREFLOW.CFG line %d: jit_cpu is %zu bytes, expected 1..%zu", line, strlen(value),
                     sizeof rc->jit_cpu - 1);
        for (const char *p = value; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
                bf_panic("BAREFLOW.CFG line %d: jit_cpu '%s' is not a CPU name of [a-z0-9._-]", line, value);
        memcpy(rc->jit_cpu, value, strlen(value) + 1);
        return;
    case K_JIT_HEAP_KIB:
        if (parse_u64(value, &u) || u < 64 || u > 4194304)
            bf_panic("BAREFLOW.CFG line %d: jit_heap_kib = '%s' is not an integer in 64..4194304", line, value);
        rc->jit_heap_kib = u;
        return;
    case K_JIT_TIMEOUT_MS:
        if (parse_u64(value, &u) || u < 1 || u > JIT_TIMEOUT_MS_MAX)
            bf_panic("BAREFLOW.CFG line %d: jit_timeout_ms = '%s' is not an integer in 1..%d", line, value,
                     JIT_TIMEOUT_MS_MAX);
        rc->jit_timeout_ms = u;
        return;
    case K_TOPP:
        if (parse_decimal(value, &d))
            bf_panic("BAREFLOW.CFG line %d: topp = '%s' is not a decimal number", line, value);
        if (!(d > 0.0 && d <= 1.0))
            bf_panic("BAREFLOW.CFG line %d: topp = %s out of range (0, 1]", line, value);
        if (!((float)d >= FLOAT32_MIN_NORMAL))
            bf_panic("BAREFLOW.CFG line %d: topp = %s is below %s, the smallest normal float32", line, value,
                     FLOAT32_MIN_TEXT);
        rc->topp = (float)d;
        return;
    case K_CORES:
        if (strcmp(value, "all") == 0) {
            rc->cores = 0;
            return;
        }
        if (parse_u64(value, &u) || u < 1 || u > BF_MAX_CORES)
            bf_panic("BAREFLOW.CFG line %d: cores = '%s' is neither 'all' nor an integer in 1..%d", line, value,
                     BF_MAX_CORES);
        rc->cores = (int)u;
        return;
    case K_SMP_TEST:
        if (strcmp(value, "none") == 0)
            rc->smp_test = PLATFORM_SMP_TEST_NONE;
        else if (strcmp(value, "phantom-cpu") == 0)
            rc->smp_test = PLATFORM_SMP_TEST_PHANTOM_CPU;
        else if (strcmp(value, "corrupt-madt") == 0)
            rc->smp_test = PLATFORM_SMP_TEST_CORRUPT_MADT;
        else if (strcmp(value, "ap-stack-overflow") == 0)
            rc->smp_test = PLATFORM_SMP_TEST_AP_STACK_OVERFLOW;
        else
            bf_panic("BAREFLOW.CFG line %d: smp_test = '%s' is not none, phantom-cpu, corrupt-madt or ap-stack-overflow",
                     line, value);
        return;
    }
}

static void parse_line(struct bf_run_config *rc, char *s, int line, int seen[N_KEYS])
{
    size_t len = strlen(s);
    while (len && is_blank(s[len - 1]))
        s[--len] = 0;
    while (is_blank(*s))
        s++;
    if (!*s || *s == '#')
        return;
    char *eq = strchr(s, '=');
    if (!eq)
        bf_panic("BAREFLOW.CFG line %d: expected 'key = value', got '%.60s'", line, s);
    char *value = eq + 1, *end = eq;
    while (end > s && is_blank(end[-1]))
        end--;
    *end = 0;
    while (is_blank(*value))
        value++;
    for (int k = 0; k < N_KEYS; k++) {
        if (strcmp(s, key_names[k]) != 0)
            continue;
        if (seen[k])
            bf_panic("BAREFLOW.CFG line %d: key '%s' repeated (first set on line %d)", line, s, seen[k]);
        seen[k] = line;
        set_value(rc, k, value, line);
        return;
    }
    bf_panic("BAREFLOW.CFG line %d: unknown key '%.40s' (known: prompt, steps, temperature, topp, seed, cores, "
             "smp_test, chat_before, chat_after, jit_cpu, jit_heap_kib, jit_timeout_ms)", line, s);
}

void bf_config_load(struct bf_run_config *rc)
{
    static char text[CFG_MAX + 1];
    int seen[N_KEYS] = {0};
    size_t size;
    const char *data = bf_read_file(CFG_PATH, &size);

    memset(rc, 0, sizeof *rc);
    memcpy(rc->prompt, "Once upon a time", 17);
    rc->steps = 32;
    rc->temperature = 0.0f;
    rc->topp = 0.9f;
    rc->seed = 42;
    rc->jit_heap_kib = 65536;
    rc->jit_timeout_ms = JIT_TIMEOUT_MS_DEFAULT;
    if (size > CFG_MAX)
        bf_panic("BAREFLOW.CFG: %zu bytes, at most %d", size, CFG_MAX);
    memcpy(text, data, size);
    text[size] = 0;
    long bad = bf_utf8_invalid_at(text, size);
    if (bad >= 0) {
        int bad_line = 1;
        for (long i = 0; i < bad; i++)
            bad_line += text[i] == '\n';
        bf_panic("BAREFLOW.CFG line %d: byte 0x%02x is not valid UTF-8 (the file must be UTF-8 text)", bad_line,
                 (unsigned char)text[bad]);
    }

    int line = 1;
    char *start = text;
    for (size_t i = 0; i <= size; i++) {
        char c = text[i];
        if (i < size && c != '\n') {
            int crlf = c == '\r' && i + 1 < size && text[i + 1] == '\n';
            if (!crlf && ((unsigned char)c < 0x20 || c == 0x7F) && c != '\t')
                bf_panic("BAREFLOW.CFG line %d: control byte 0x%02x (only text, tabs and line ends)", line,
                         (unsigned char)c);
            if (crlf)
                text[i] = 0;
            continue;
        }
        text[i] = 0;
        parse_line(rc, start, line, seen);
        start = text + i + 1;
        line++;
    }
}

void bf_config_check_steps(const struct bf_run_config *rc, int seq_len)
{
    if (rc->steps > seq_len && rc->steps_line == 0)
        bf_panic("BAREFLOW.CFG: the default steps = %d exceeds the model's seq_len %d; set steps", rc->steps,
                 seq_len);
    if (rc->steps > seq_len)
        bf_panic("BAREFLOW.CFG line %d: steps = %d out of range 1..%d (the model's seq_len)", rc->steps_line,
                 rc->steps, seq_len);
}
