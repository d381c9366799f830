/* runtime.h - the entry into the portable runtime and its way out.
 *
 * The platform (kernel or hosted) initialises itself, then calls bf_runtime_main() once and
 * passes its return value to platform_exit().  bf_panic() is the only other way out: it prints
 * "BAREFLOW-PANIC: <reason>" on the console and ends the run with BF_EXIT_PANIC.
 */
#ifndef BAREFLOW_RUNTIME_H
#define BAREFLOW_RUNTIME_H

#define BF_EXIT_OK 0
#define BF_EXIT_PANIC 1

int bf_runtime_main(void);
/* Hosted test mode (bareflow-hosted IMAGE --tokenize): tokenizes the texts in /TOKTEST.BIN with
 * /TOKENIZR.BIN and prints one "ids: ..." line each (src/runtime/tokenize_main.c). */
int bf_tokenize_main(void);
void bf_panic(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

#endif
