/* console.c - the runtime's only path to the platform console.
 *
 * Promise: bf_printf and bf_vprintf format with the libc's vsnprintf into a bounded buffer and
 * write it in one platform_console_write call (longer output is cut, never overrun); every write
 * remembers whether the console is left in the middle of a line, so a panic can start its
 * own line without printing a blank one.
 */
#include <stdarg.h>
#include <stdio.h>

#include "bareflow/platform.h"
#include "rt.h"

static int mid_line;

void bf_write(const char *buf, size_t len)
{
    if (!len)
        return;
    platform_console_write(buf, len);
    mid_line = buf[len - 1] != '\n';
}

int bf_console_mid_line(void)
{
    return mid_line;
}

void bf_vprintf(const char *fmt, va_list ap)
{
    char buf[512];
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    if (n < 0)
        return;
    bf_write(buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

void bf_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bf_vprintf(fmt, ap);
    va_end(ap);
}
