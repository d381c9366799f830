/* main.c - the runtime's one entry and its one way out.
 *
 * Promise: bf_runtime_main runs the whole job in a fixed order (disk, configuration, cores,
 * model, tokenizer, policy and first tiers, generation, profile, result line) and returns BF_EXIT_OK;
 * anything wrong on the way ends in bf_panic, which prints one "BAREFLOW-PANIC: <reason>" line
 * and exits with BF_EXIT_PANIC.  The result line is the last line a successful run prints.
 */
#include <stdarg.h>

#include "bareflow/platform.h"
#include "bareflow/runtime.h"
#include "bareflow/tcb.h"
#include "rt.h"

void bf_panic(const char *fmt, ...)
{
    va_list ap;
    /* A panic can interrupt a line of streamed text; start on a fresh line so it can be found. */
    if (bf_console_mid_line())
        bf_write("\n", 1);
    bf_write("BAREFLOW-PANIC: ", 16);
    va_start(ap, fmt);
    bf_vprintf(fmt, ap);
    va_end(ap);
    bf_write("\n", 1);
    platform_exit(BF_EXIT_PANIC);
}

int bf_runtime_main(void)
{
    static struct bf_run_config rc;
    static struct bf_model model;
    static struct bf_tokenizer tok;
    static struct bf_run run;
    uint64_t start = platform_cycles();

    bf_tcb_init();              /* before any libc call: llvm-libc's code reads FS_BASE */
    bf_files_init();
    bf_config_load(&rc);
    bf_parallel_init(&rc);
    bf_jit_configure(&rc);
    bf_model_load(&model);
    const struct bf_config *c = &model.cfg;
    bf_config_check_steps(&rc, c->seq_len);
    bf_printf("bareflow: model dim=%d hidden=%d layers=%d heads=%d kv_heads=%d vocab=%d seq_len=%d (%s classifier, %s)\n",
              c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size, c->seq_len,
              model.shared_classifier ? "shared" : "separate", model.format);
    /* The KV cache and attention scores hold this run's positions, not the model's whole context. */
    model.cfg.seq_len = rc.steps;
    bf_tokenizer_load(&tok, c->vocab_size);
    bf_tiering_init();
    bf_printf("bareflow: steps=%d seed=%llu, arena %zu of %zu bytes used; generating\n", rc.steps,
              (unsigned long long)rc.seed, platform_arena_used(), platform_arena_size());

    bf_generate(&model, &tok, &rc, &run);
    bf_jit_end();
    bf_write_profile(&run);
    bf_print_result(&rc, &run, start);
    return BF_EXIT_OK;
}
