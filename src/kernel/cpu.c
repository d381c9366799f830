/* cpu.c - which ISA level of module code may run here.
 *
 * Promise: platform_cpu_isa_level() is bf_x86_isa_level() (bareflow/x86_isa.h): the highest of
 * x86-64, -v2, -v3, -v4 whose features CPUID reports AND whose register state boot.S enabled
 * in XCR0 (it enables AVX and AVX-512 state whenever the CPU offers them).  A module of a
 * higher level would fault with #UD or touch disabled state, so the loader never runs one.
 */
#include <bareflow/platform.h>
#include <bareflow/x86_isa.h>

int platform_cpu_isa_level(const char **missing)
{
    return bf_x86_isa_level(missing);
}
