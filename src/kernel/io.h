/* io.h - x86 port I/O and a few privileged instructions, as static inline helpers.
 *
 * Promise: every helper is a single instruction (or a rep string instruction) with the
 * compiler barriers needed so device accesses are neither reordered nor dropped.
 */
#ifndef BAREFLOW_KERNEL_IO_H
#define BAREFLOW_KERNEL_IO_H

#include <stddef.h>
#include <stdint.h>

static inline void outb(uint16_t port, uint8_t v)  { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port) : "memory"); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port) : "memory"); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port) : "memory"); }

static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port) : "memory");
    return v;
}

/* Block transfers of 16-bit words: the ATA data register moves one sector as 256 words. */
static inline void insw(uint16_t port, void *dst, size_t words)
{
    __asm__ volatile("rep insw" : "+D"(dst), "+c"(words) : "d"(port) : "memory");
}

static inline void outsw(uint16_t port, const void *src, size_t words)
{
    __asm__ volatile("rep outsw" : "+S"(src), "+c"(words) : "d"(port) : "memory");
}

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi) : : "memory");
    return ((uint64_t)hi << 32) | lo;
}

static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

static inline uint64_t read_cr2(void)
{
    uint64_t v;
    __asm__ volatile("mov %%cr2, %0" : "=r"(v));
    return v;
}

static inline void halt_forever(void)
{
    for (;;)
        __asm__ volatile("cli; hlt");
}

#endif
