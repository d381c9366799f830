/* serial.c - the kernel console on COM1 (16550 UART, 115200 baud, 8N1, no interrupts).
 *
 * Promises: platform_console_write() sends every byte, turning "\n" into "\r\n" so a raw
 * terminal shows lines; each byte waits for the transmitter at most a bounded number of
 * status reads, so a machine without a UART still runs (silently) instead of hanging.
 *
 * Several cores share the UART.  Each platform_console_write call is written whole, and
 * console_hold()/console_release() let a core keep the console across several calls (a line
 * built from kputs pieces, a panic report), so another core's line never lands inside it.
 * The hold is recursive per core and bounded: a core that waits longer than HOLD_SPIN_LIMIT
 * pauses (the holder died in the middle of a write) takes the console over instead of hanging.
 */
#include <bareflow/platform.h>
#include "io.h"
#include "kernel.h"

#define COM1 0x3F8
#define LSR_THR_EMPTY 0x20
#define TX_SPIN_LIMIT 100000
#define HOLD_SPIN_LIMIT (1L << 26)
#define MSR_GS_BASE 0xC0000101

static uint64_t holder;      /* console_self() of the holding core, 0 when free */
static int hold_depth;       /* written only by the holder */
static int mid_line;         /* the last byte written was not "\n" */

void serial_init(void)
{
    outb(COM1 + 1, 0x00);   /* no interrupts: the kernel polls */
    outb(COM1 + 3, 0x80);   /* DLAB on to reach the divisor */
    outb(COM1 + 0, 0x01);   /* 115200 / 1 */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);   /* 8 data bits, no parity, 1 stop bit */
    outb(COM1 + 2, 0xC7);   /* FIFO on and cleared */
    outb(COM1 + 4, 0x03);   /* DTR + RTS: some terminals wait for them */
}

static void put_raw(char c)
{
    for (int i = 0; i < TX_SPIN_LIMIT; i++)
        if (inb(COM1 + 5) & LSR_THR_EMPTY)
            break;
    outb(COM1, (uint8_t)c);
}

/* A core's identity before and after percpu set-up: its GS base (0 on the BSP until
 * percpu_init_bsp, when no AP runs yet), plus one so that no core is 0. */
static uint64_t console_self(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(MSR_GS_BASE));
    return ((uint64_t)hi << 32 | lo) + 1;
}

void console_hold(void)
{
    uint64_t me = console_self();
    if (__atomic_load_n(&holder, __ATOMIC_ACQUIRE) == me) {
        hold_depth++;
        return;
    }
    for (long i = 0; i < HOLD_SPIN_LIMIT; i++) {
        uint64_t free_word = 0;
        if (__atomic_compare_exchange_n(&holder, &free_word, me, 0, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED)) {
            hold_depth = 1;
            return;
        }
        __asm__ volatile("pause");
    }
    __atomic_store_n(&holder, me, __ATOMIC_SEQ_CST);   /* the holder never let go */
    hold_depth = 1;
}

void console_release(void)
{
    if (__atomic_load_n(&holder, __ATOMIC_RELAXED) != console_self())
        return;
    if (--hold_depth == 0)
        __atomic_store_n(&holder, 0, __ATOMIC_RELEASE);
}

void console_hold_new_line(void)
{
    console_hold();
    if (mid_line)
        platform_console_write("\n", 1);
}

void platform_console_write(const char *buf, size_t len)
{
    if (!len)
        return;
    console_hold();
    for (size_t i = 0; i < len; i++) {
        if (buf[i] == '\n')
            put_raw('\r');
        put_raw(buf[i]);
    }
    mid_line = buf[len - 1] != '\n';
    console_release();
}

void kputs(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    platform_console_write(s, n);
}

void kput_hex(uint64_t v)
{
    char tmp[19];
    int i = sizeof tmp;
    do {
        tmp[--i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    tmp[--i] = 'x';
    tmp[--i] = '0';
    platform_console_write(tmp + i, sizeof tmp - i);
}

void kput_dec(uint64_t v)
{
    char tmp[20];
    int i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    platform_console_write(tmp + i, sizeof tmp - i);
}
