/* result.c - the run's last console line: `BAREFLOW-RESULT {json}` (docs/result-line.md).
 *
 * Promise: one line of valid JSON with exactly the documented keys, in the documented order.
 * Strings are escaped so any byte sequence survives: quote, backslash and control bytes as JSON
 * escapes, every byte >= 0x7f as \u00XX (so a reader recovers the bytes with latin-1).
 * Numbers are integers or fixed-point decimals; nothing depends on the libc's %f.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "bareflow/jit.h"
#include "bareflow/platform.h"
#include "rt.h"

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

static void put_string(struct out *o, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    put(o, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[7] = {'\\', 0};
        size_t n = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            if (c >= 0x20 && c < 0x7F) {
                put(o, (const char *)&c, 1);
                continue;
            }
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        put(o, esc, n);
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
 * as 0.8 and the config value the user wrote comes back unchanged. */
static void put_float(struct out *o, float f)
{
    double scale = 1.0;
    for (int places = 0; places <= 9; places++, scale *= 10.0) {
        if ((float)((double)(uint64_t)((double)f * scale + 0.5) / scale) == f) {
            put_decimal(o, f, places);
            return;
        }
    }
    put_decimal(o, f, 9);
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

static void put_layers(struct out *o)
{
    puts_(o, "{");
    for (int id = 0; id < BF_N_LAYERS; id++) {
        const struct bf_layer_stats *st = bf_layer_stats(id);
        putf(o, "%s\"%s\":{\"calls\":", id ? "," : "", bf_layer_names[id]);
        put_u64s(o, st->calls, BF_N_TIERS);
        puts_(o, ",\"cycles\":");
        put_u64s(o, st->cycles, BF_N_TIERS);
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
        putf(o, ",\"cycles\":%llu,\"object_bytes\":%llu,\"core\":%d,\"inline\":true,\"ok\":%s",
             (unsigned long long)r[i].cycles, (unsigned long long)r[i].object_size, r[i].core, r[i].ok ? "true" : "false");
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
         bf_module_isa >= 0 ? bf_isa_names[bf_module_isa] : "none");
    put_layers(&o);
    put_jit(&o);
    putf(&o, ",\"profiling_overhead_cycles\":%llu,\"boot_cycles\":%llu}\n",
         (unsigned long long)bf_profiling_overhead(),
         (unsigned long long)(run->first_token_at ? run->first_token_at - start_cycles : 0));
    bf_write(o.buf, o.n);
}
