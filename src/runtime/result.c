/* result.c - the run's last console line: `BAREFLOW-RESULT {json}` (docs/result-line.md).
 *
 * Promise: one line of valid JSON with exactly the documented keys, in the documented order.
 * Strings are text: quote, backslash and control bytes as JSON escapes, every character
 * beyond ASCII as \uXXXX escapes of its code point, malformed UTF-8 as U+FFFD; the line is ASCII.
 * Numbers are integers or fixed-point decimals; nothing depends on the libc's %f.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "bareflow/jit.h"
#include "bareflow/platform.h"
#include "rt.h"
#include "tokenizer.h"

struct out {
    char buf[1024];
    size_t n;
};

static void put(struct out *o, const char *s, size_t len)
{
    while (len) {
        if (o->n == sizeof o->buf) {
            bf_write(o->buf, o->n);
            o->n = 0;
        }
        size_t k = sizeof o->buf - o->n < len ? sizeof o->buf - o->n : len;
        memcpy(o->buf + o->n, s, k);
        o->n += k;
        s += k;
        len -= k;
    }
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

__attribute__((format(printf, 2, 3)))
static void putf(struct out *o, const char *fmt, ...)
{
    char tmp[96];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        put(o, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void put_u16(struct out *o, unsigned v)
{
    static const char hex[] = "0123456789abcdef";
    char esc[6] = {'\\', 'u', hex[v >> 12 & 15], hex[v >> 8 & 15], hex[v >> 4 & 15], hex[v & 15]};
    put(o, esc, 6);
}

/* Text as a JSON string of characters: ASCII as itself (or its short escape), every other
 * character as \uXXXX (a surrogate pair above U+FFFF), malformed UTF-8 as \ufffd, so the line
 * stays ASCII and a character split across tokens appears whole. */
static void put_string(struct out *o, const char *s, size_t len)
{
    const uint8_t *p = (const uint8_t *)s;
    put(o, "\"", 1);
    for (size_t i = 0; i < len;) {
        uint8_t c = p[i];
        char esc[2] = {'\\', 0};
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        }
        if (esc[1]) {
            put(o, esc, 2);
            i++;
            continue;
        }
        if (c >= 0x20 && c < 0x7F) {
            put(o, (const char *)&c, 1);
            i++;
            continue;
        }
        uint32_t cp;
        size_t n = bf_utf8_char(p + i, len - i, &cp);
        if (!n) {
            put_u16(o, 0xFFFD);        /* as Python's errors="replace" */
            i += bf_utf8_bad_len(p + i, len - i);
            continue;
        }
        if (cp >= 0x10000) {
            put_u16(o, 0xD800 + ((cp - 0x10000) >> 10));
            put_u16(o, 0xDC00 + ((cp - 0x10000) & 0x3FF));
        } else {
            put_u16(o, cp);
        }
        i += n;
    }
    put(o, "\"", 1);
}

/* Non-negative decimal with at most `places` fraction digits, trailing zeros dropped. */
static void put_decimal(struct out *o, double v, int places)
{
    uint64_t scale = 1;
    for (int i = 0; i < places; i++)
        scale *= 10;
    if (!(v >= 0.0) || v >= 1e12) {          /* NaN, negative or absurd: still valid JSON */
        puts_(o, v >= 1e12 ? "1e12" : "0");
        return;
    }
    uint64_t q = (uint64_t)(v * (double)scale + 0.5), whole = q / scale, frac = q % scale;
    putf(o, "%llu", (unsigned long long)whole);
    if (!frac)
        return;
    char digits[24];
    int n = places;
    digits[n] = 0;
    for (int i = n - 1; i >= 0; i--, frac /= 10)
        digits[i] = (char)('0' + frac % 10);
    while (n > 0 && digits[n - 1] == '0')
        digits[--n] = 0;
    putf(o, ".%s", digits);
}

/* The fewest fraction digits (at most 9) that read back as the same float, so 0.8f prints
 * as 0.8 and the config value the user wrote comes back unchanged; a float that needs more
 * (a tiny temperature such as 2e-38) prints as the fewest significant digits with an
 * exponent, so the line always reports the value actually used. */
static void put_float(struct out *o, float f)
{
    double scale = 1.0;
    for (int places = 0; places <= 9; places++, scale *= 10.0) {
        if ((float)((double)(uint64_t)((double)f * scale + 0.5) / scale) == f) {
            put_decimal(o, f, places);
            return;
        }
    }
    if (!(f > 0.0f)) {
        put_decimal(o, f, 9);
        return;
    }
    int exp10 = 0;                                   /* f = m * 10^exp10 with 1 <= m < 10 */
    double m = f;
    while (m >= 10.0) { m /= 10.0; exp10++; }
    while (m < 1.0) { m *= 10.0; exp10--; }
    for (int digits = 1; digits <= 9; digits++) {
        double pow10 = 1.0;
        for (int i = 1; i < digits; i++)
            pow10 *= 10.0;
        uint64_t q = (uint64_t)(m * pow10 + 0.5);
        double back = (double)q / pow10;
        for (int i = 0; i < (exp10 < 0 ? -exp10 : exp10); i++)
            back = exp10 < 0 ? back / 10.0 : back * 10.0;
        if ((float)back == f || digits == 9) {
            int e = exp10 - (digits - 1);
            putf(o, "%llue%d", (unsigned long long)q, e);
            return;
        }
    }
}

static void put_ids(struct out *o, const int *ids, int n)
{
    put(o, "[", 1);
    for (int i = 0; i < n; i++)
        putf(o, i ? ",%d" : "%d", ids[i]);
    put(o, "]", 1);
}

static void put_u64s(struct out *o, const uint64_t *v, int n)
{
    put(o, "[", 1);
    for (int i = 0; i < n; i++)
        putf(o, i ? ",%llu" : "%llu", (unsigned long long)v[i]);
    put(o, "]", 1);
}

/* ,"name":[ms, ...] for n cycle counts at cps cycles per second. */
static void put_ms_list(struct out *o, const char *name, const uint64_t *cycles, int n, uint64_t cps)
{
    putf(o, ",\"%s\":[", name);
    for (int i = 0; i < n; i++) {
        if (i)
            puts_(o, ",");
        put_decimal(o, cps ? (double)cycles[i] * 1000.0 / (double)cps : 0.0, 3);
    }
    puts_(o, "]");
}

static void put_layers(struct out *o)
{
    puts_(o, "{");
    for (int id = 0; id < BF_N_LAYERS; id++) {
        const struct bf_layer_stats *st = bf_layer_stats(id);
        putf(o, "%s\"%s\":{\"calls\":", id ? "," : "", bf_layer_names[id]);
        put_u64s(o, st->calls, BF_N_TIERS);
        puts_(o, ",\"cycles\":");
        put_u64s(o, st->cycles, BF_N_TIERS);
        puts_(o, ",\"core_cycles\":");
        put_u64s(o, st->core_cycles, bf_layer_phases(id) ? bf_cores()->used : 0);
        putf(o, ",\"tier\":\"%s\",\"changes\":[", bf_tier_name(st->tier));
        for (int i = 0; i < st->n_changes; i++)
            putf(o, "%s{\"call\":%llu,\"from\":\"%s\",\"to\":\"%s\"}", i ? "," : "",
                 (unsigned long long)st->changes[i].call, bf_tier_name(st->changes[i].from),
                 bf_tier_name(st->changes[i].to));
        puts_(o, "]}");
    }
    puts_(o, "}");
}

/* "jit": present only when some run-time compile was attempted (docs/result-line.md). */
static void put_jit(struct out *o)
{
    int n;
    const struct bf_jit_record *r = bf_jit_records(&n);
    if (!n)
        return;
    size_t used, peak, allocs, failed, size;
    bf_jit_heap(&used, &peak, &allocs, &failed, &size);
    puts_(o, ",\"jit\":{\"backend\":");
    const char *backend = bf_jit_backend() ? bf_jit_backend() : "none";
    put_string(o, backend, strlen(backend));
    putf(o, ",\"compiling_core\":%d,\"timeout_ms\":%llu", bf_jit_compiling_core(),
         (unsigned long long)bf_jit_timeout_ms());
    putf(o, ",\"init_cycles\":%llu,\"heap_bytes\":%zu,\"heap_used\":%zu,\"heap_peak_live\":%zu",
         (unsigned long long)bf_jit_init_cycles(), size, used, peak);
    putf(o, ",\"allocations\":%zu,\"allocations_refused\":%zu,\"stubs_reached\":%u,\"compiles\":[", allocs, failed,
         bf_jit_stubs_reached());
    for (int i = 0; i < n; i++) {
        putf(o, "%s{\"layer\":\"%s\",\"tier\":\"%s\",\"level\":\"O%d\",\"cpu\":", i ? "," : "",
             bf_layer_names[r[i].layer], bf_tier_name(r[i].code), r[i].code & 3);
        put_string(o, r[i].cpu, strlen(r[i].cpu));
        puts_(o, ",\"features\":");
        put_string(o, r[i].features, strlen(r[i].features));
        putf(o, ",\"cycles\":%llu,\"load_cycles\":%llu,\"object_bytes\":%llu,\"core\":%d,\"inline\":%s",
             (unsigned long long)r[i].cycles, (unsigned long long)r[i].load_cycles,
             (unsigned long long)r[i].object_size, r[i].core, r[i].is_inline ? "true" : "false");
        putf(o, ",\"request_call\":%llu,\"ok\":%s", (unsigned long long)r[i].request_call,
             r[i].ok ? "true" : "false");
        if (r[i].timed_out)
            putf(o, ",\"timed_out\":true,\"late\":%s", r[i].late ? "true" : "false");
        if (r[i].ok)
            putf(o, ",\"swap_call\":%llu}", (unsigned long long)r[i].swap_call);
        else {
            puts_(o, ",\"error\":");
            put_string(o, r[i].error, strlen(r[i].error));
            puts_(o, "}");
        }
    }
    puts_(o, "]}");
}

void bf_print_result(const struct bf_run_config *rc, const struct bf_run *run, uint64_t start_cycles)
{
    static struct out o;
    uint64_t cps = platform_cycles_per_second();
    double seconds = cps ? (double)run->loop_cycles / (double)cps : 0.0;

    o.n = 0;
    puts_(&o, "BAREFLOW-RESULT {\"prompt\":");
    put_string(&o, rc->prompt, strlen(rc->prompt));
    puts_(&o, ",\"prompt_tokens\":");
    put_ids(&o, run->prompt_tokens, run->n_prompt);
    puts_(&o, ",\"tokens\":");
    put_ids(&o, run->tokens, run->n_tokens);
    puts_(&o, ",\"text\":");
    put_string(&o, run->text, run->text_len);
    putf(&o, ",\"steps\":%d,\"temperature\":", rc->steps);
    put_float(&o, rc->temperature);
    putf(&o, ",\"seed\":%llu,\"tokens_per_second\":", (unsigned long long)rc->seed);
    put_decimal(&o, seconds > 0.0 ? run->n_tokens / seconds : 0.0, 3);
    putf(&o, ",\"cycles_per_second\":%llu,\"isa\":\"%s\",\"layers\":", (unsigned long long)cps,
         bf_isa >= 0 ? bf_isa_names[bf_isa] : "none");
    put_layers(&o);
    const struct bf_cores *k = bf_cores();
    putf(&o, ",\"cores\":{\"found\":%d,\"started\":%d,\"used\":%d", k->found, k->started, k->used);
    put_ms_list(&o, "busy_ms", k->busy_cycles, k->used, cps);
    puts_(&o, ",\"pieces\":");
    put_u64s(&o, k->pieces, k->used);
    putf(&o, ",\"stolen\":%llu,\"wait_ms\":", (unsigned long long)k->stolen);
    put_decimal(&o, cps ? (double)k->wait_cycles * 1000.0 / (double)cps : 0.0, 3);
    puts_(&o, ",\"parks\":");
    put_u64s(&o, k->parks, k->used);
    puts_(&o, ",\"joined\":");
    put_u64s(&o, k->joined, k->used);
    puts_(&o, ",\"woken\":");
    put_u64s(&o, k->woken, k->used);
    put_ms_list(&o, "claim_ms", k->claim_cycles, k->used, cps);
    put_ms_list(&o, "wake_ms", k->wake_cycles, k->used, cps);
    puts_(&o, "}");
    put_jit(&o);
    putf(&o, ",\"profiling_overhead_cycles\":%llu,\"boot_cycles\":%llu}\n",
         (unsigned long long)bf_profiling_overhead(),
         (unsigned long long)(run->first_token_at ? run->first_token_at - start_cycles : 0));
    bf_write(o.buf, o.n);
}
