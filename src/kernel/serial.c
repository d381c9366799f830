/* serial.c - the kernel console on COM1 (16550 UART, 115200 baud, 8N1, no interrupts).
 *
 * Promises: platform_console_write() sends every byte, turning "\n" into "\r\n" so a raw
 * terminal shows lines; each byte waits for the transmitter at most a bounded number of
 * status reads, so a machine without a UART still runs (silently) instead of hanging.
 */
#include <bareflow/platform.h>
#include "io.h"
#include "kernel.h"

#define COM1 0x3F8
#define LSR_THR_EMPTY 0x20
#define TX_SPIN_LIMIT 100000

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

void platform_console_write(const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (buf[i] == '\n')
            put_raw('\r');
        put_raw(buf[i]);
    }
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
