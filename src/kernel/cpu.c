/* cpu.c - may x86-64-v3 module code run here?
 *
 * Promise: platform_cpu_has_x86_64_v3() is 1 only when the CPU reports every x86-64-v2 and
 * -v3 feature (SSE3..SSE4.2, POPCNT, CX16, LAHF, AVX, AVX2, FMA, BMI1/2, LZCNT, MOVBE, F16C)
 * AND the OS side is on: CR4.OSXSAVE set and XCR0 enabling SSE and AVX state (boot.S does
 * that when it can).  Otherwise 0; a v3 instruction would then fault with #UD.
 */
#include <bareflow/platform.h>
#include "io.h"

#define BIT(n) (1u << (n))

int platform_cpu_has_x86_64_v3(void)
{
    uint32_t r[4];

    cpuid(0, 0, r);
    uint32_t max_leaf = r[0];
    cpuid(0x80000000, 0, r);
    uint32_t max_ext = r[0];
    if (max_leaf < 7 || max_ext < 0x80000001)
        return 0;

    cpuid(1, 0, r);
    const uint32_t leaf1_ecx = BIT(0) | BIT(9) | BIT(12) | BIT(13) | BIT(19) | BIT(20) |
                               BIT(22) | BIT(23) | BIT(27) | BIT(28) | BIT(29);
    /* SSE3 SSSE3 FMA CX16 SSE4.1 SSE4.2 MOVBE POPCNT OSXSAVE AVX F16C */
    if ((r[2] & leaf1_ecx) != leaf1_ecx)
        return 0;

    cpuid(7, 0, r);
    const uint32_t leaf7_ebx = BIT(3) | BIT(5) | BIT(8);   /* BMI1 AVX2 BMI2 */
    if ((r[1] & leaf7_ebx) != leaf7_ebx)
        return 0;

    cpuid(0x80000001, 0, r);
    const uint32_t ext_ecx = BIT(0) | BIT(5);              /* LAHF/SAHF, LZCNT */
    if ((r[2] & ext_ecx) != ext_ecx)
        return 0;

    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 6) == 6;                                  /* SSE and AVX state enabled */
}
