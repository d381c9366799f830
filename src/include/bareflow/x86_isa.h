/* x86_isa.h - which x86-64 micro-architecture level this CPU, with the state the OS enabled,
 * can run: the one definition both platforms (kernel, hosted) use.
 *
 * Promise: bf_x86_isa_level() returns the highest level L in 0..3 (0 = x86-64, 1 = x86-64-v2,
 * 2 = x86-64-v3, 3 = x86-64-v4) for which CPUID reports every feature of L and of the levels
 * below, and XCR0 enables the register state L uses (SSE|AVX for v3, plus opmask, ZMM_Hi256
 * and Hi16_ZMM for v4).  When L < 3, *missing (if not NULL) names the first feature of level
 * L + 1 that is absent ("AVX2", "XCR0 AVX-512 state", ...); otherwise it is set to "".
 * Feature lists: the x86-64 psABI's micro-architecture levels (x86-64-ABI 1.0, section 3.1.1).
 * CPUID bits: Intel SDM vol. 2A, CPUID; XCR0 bits: SDM vol. 1, 13.3.
 * Works in ring 0 and ring 3: cpuid always, xgetbv only after CPUID reports OSXSAVE.
 */
#ifndef BAREFLOW_X86_ISA_H
#define BAREFLOW_X86_ISA_H

#include <stdint.h>

#define BF_ISA_X86_64 0
#define BF_ISA_V2 1
#define BF_ISA_V3 2
#define BF_ISA_V4 3
#define BF_N_ISA 4

static inline void bf_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

struct bf_isa_feature {
    uint8_t level;      /* the level that first needs it */
    uint8_t word;       /* 0 = CPUID.1:ECX, 1 = CPUID.7.0:EBX, 2 = CPUID.80000001h:ECX, 3 = XCR0 */
    uint32_t mask;
    const char *name;
};

static inline int bf_x86_isa_level(const char **missing)
{
    static const struct bf_isa_feature need[] = {
        {1, 0, 1u << 0, "SSE3"}, {1, 0, 1u << 9, "SSSE3"}, {1, 0, 1u << 13, "CMPXCHG16B"},
        {1, 0, 1u << 19, "SSE4.1"}, {1, 0, 1u << 20, "SSE4.2"}, {1, 0, 1u << 23, "POPCNT"},
        {1, 2, 1u << 0, "LAHF/SAHF"},
        {2, 0, 1u << 12, "FMA"}, {2, 0, 1u << 22, "MOVBE"}, {2, 0, 1u << 27, "OSXSAVE"},
        {2, 0, 1u << 28, "AVX"}, {2, 0, 1u << 29, "F16C"}, {2, 1, 1u << 3, "BMI1"},
        {2, 1, 1u << 5, "AVX2"}, {2, 1, 1u << 8, "BMI2"}, {2, 2, 1u << 5, "LZCNT"},
        {2, 3, 0x6, "XCR0 SSE/AVX state"},
        {3, 1, 1u << 16, "AVX512F"}, {3, 1, 1u << 17, "AVX512DQ"}, {3, 1, 1u << 28, "AVX512CD"},
        {3, 1, 1u << 30, "AVX512BW"}, {3, 1, 1u << 31, "AVX512VL"},
        {3, 3, 0xE0, "XCR0 AVX-512 state"},
    };
    uint32_t r[4], words[4] = {0, 0, 0, 0};
    bf_cpuid(0, 0, r);
    uint32_t max_leaf = r[0];
    if (max_leaf >= 1) {
        bf_cpuid(1, 0, r);
        words[0] = r[2];
    }
    if (max_leaf >= 7) {
        bf_cpuid(7, 0, r);
        words[1] = r[1];
    }
    bf_cpuid(0x80000000u, 0, r);
    if (r[0] >= 0x80000001u) {
        bf_cpuid(0x80000001u, 0, r);
        words[2] = r[2];
    }
    if (words[0] & (1u << 27)) {          /* OSXSAVE: xgetbv is allowed */
        uint32_t lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        words[3] = lo;
    }
    for (unsigned i = 0; i < sizeof need / sizeof need[0]; i++) {
        if ((words[need[i].word] & need[i].mask) != need[i].mask) {
            if (missing)
                *missing = need[i].name;
            return need[i].level - 1;
        }
    }
    if (missing)
        *missing = "";
    return BF_ISA_V4;
}

#endif
