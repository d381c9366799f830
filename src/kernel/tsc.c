/* tsc.c - the cycle counter and its rate.
 *
 * Promises: platform_cycles() is rdtsc.  tsc_init() measures cycles per second against PIT
 * channel 2 (1.193182 MHz, independent of the CPU clock) over three ~10 ms one-shot counts
 * and keeps the median, which works under QEMU TCG as on hardware.  If the PIT never
 * signals (bounded wait), it falls back to CPUID leaf 0x16's base frequency, or 1 GHz, and
 * says so on the console.  tsc_ms_cycles() serves time-outs elsewhere in the kernel.
 */
#include <bareflow/platform.h>
#include "io.h"
#include "kernel.h"

#define PIT_HZ 1193182ull
#define PIT_COUNT 11932u                   /* ~10 ms */
#define PIT_CMD 0x43
#define PIT_CH2 0x42
#define PORT_B 0x61                        /* bit 0 gates channel 2, bit 5 reads its output */
#define SPIN_LIMIT 20000000u

static uint64_t cycles_per_second;

uint64_t platform_cycles(void)
{
    return rdtsc();
}

uint64_t platform_cycles_per_second(void)
{
    return cycles_per_second;
}

/* Cycles per second from one PIT count, or 0 if the PIT output never went high. */
static uint64_t measure_once(void)
{
    uint8_t saved = inb(PORT_B);
    outb(PORT_B, (uint8_t)((saved & ~0x02) | 0x01));    /* gate on, speaker off */
    outb(PIT_CMD, 0xB0);                                /* ch 2, lo/hi byte, mode 0, binary */
    outb(PIT_CH2, PIT_COUNT & 0xFF);
    outb(PIT_CH2, PIT_COUNT >> 8);
    uint64_t t0 = rdtsc();
    uint32_t spins = 0;
    while (!(inb(PORT_B) & 0x20) && ++spins < SPIN_LIMIT)
        ;
    uint64_t t1 = rdtsc();
    outb(PORT_B, saved);
    if (spins >= SPIN_LIMIT || t1 <= t0)
        return 0;
    return (t1 - t0) * PIT_HZ / PIT_COUNT;
}

static uint64_t cpuid_base_hz(void)
{
    uint32_t r[4];
    cpuid(0, 0, r);
    if (r[0] < 0x16)
        return 0;
    cpuid(0x16, 0, r);
    return (uint64_t)(r[0] & 0xFFFF) * 1000000ull;
}

void tsc_init(void)
{
    uint64_t m[3];
    for (int i = 0; i < 3; i++)
        m[i] = measure_once();
    for (int i = 0; i < 2; i++)                 /* sort three: median is m[1] */
        for (int j = 0; j < 2 - i; j++)
            if (m[j] > m[j + 1]) {
                uint64_t t = m[j];
                m[j] = m[j + 1];
                m[j + 1] = t;
            }
    if (m[0] != 0) {
        cycles_per_second = m[1];
        return;
    }
    cycles_per_second = cpuid_base_hz();
    if (!cycles_per_second)
        cycles_per_second = 1000000000ull;
    kputs("bareflow-kernel: warning: PIT did not answer; assuming ");
    kput_dec(cycles_per_second);
    kputs(" cycles/s\n");
}

uint64_t tsc_ms_cycles(uint32_t ms)
{
    return cycles_per_second / 1000 * ms;
}
