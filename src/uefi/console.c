/* console.c - BOOTX64.EFI's progress and error lines, on screen and on COM1.
 *
 * Promises: say() prints one formatted line (ASCII, at most 255 characters, "\n" becomes
 * "\r\n") on the firmware console (ConOut) while boot services last, and on COM1 - written
 * directly, unless the firmware's ConOut already drives a UART (the ConOut variable's device
 * path has a UART node, as on OVMF), so a serial log does not show every line twice.  After
 * con_boot_services_gone() only COM1 is used.  COM1 waits are bounded: a machine without a
 * UART boots silently instead of hanging.  fail() never returns.
 */
#include <stdarg.h>

#include "loader.h"

#define COM1 0x3F8
#define DEBUG_EXIT_PORT 0xF4
#define TX_SPIN_LIMIT 100000
#define LINE_MAX 256

EFI_SYSTEM_TABLE *g_st;
EFI_HANDLE g_image;
static int boot_services_on;
static int com1_direct;                     /* write COM1 ourselves (see the header comment) */

static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static void com1_init(void)
{
    outb(COM1 + 1, 0x00);                   /* no interrupts */
    outb(COM1 + 3, 0x80);                   /* DLAB on */
    outb(COM1 + 0, 0x01);                   /* 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);                   /* 8N1 */
    outb(COM1 + 2, 0xC7);                   /* FIFO on and cleared */
    outb(COM1 + 4, 0x03);                   /* DTR + RTS */
}

static void com1_put(char c)
{
    for (int i = 0; i < TX_SPIN_LIMIT; i++)
        if (inb(COM1 + 5) & 0x20)
            break;
    outb(COM1, (uint8_t)c);
}

/* Does the device path list in the ConOut variable contain a UART node? */
static int conout_has_uart(void)
{
    static const EFI_GUID global = EFI_GLOBAL_VARIABLE_GUID;
    static uint8_t buf[2048];
    uint64_t size = sizeof buf;
    uint32_t attributes;
    if (g_st->runtime_services->get_variable(L"ConOut", &global, &attributes, &size, buf) != EFI_SUCCESS)
        return 0;
    for (uint64_t off = 0; off + 4 <= size;) {
        const EFI_DEVICE_PATH_PROTOCOL *node = (const void *)(buf + off);
        uint16_t len = (uint16_t)(node->length[0] | (node->length[1] << 8));
        if (node->type == DEVICE_PATH_MESSAGING && node->sub_type == DEVICE_PATH_MSG_UART)
            return 1;
        if (len < 4)
            break;                          /* malformed: stop rather than loop */
        off += len;
    }
    return 0;
}

void con_init(EFI_HANDLE image, EFI_SYSTEM_TABLE *st)
{
    g_image = image;
    g_st = st;
    boot_services_on = 1;
    com1_direct = !conout_has_uart();
    if (com1_direct)
        com1_init();
}

void con_boot_services_gone(void)
{
    if (!com1_direct)
        com1_init();                        /* the firmware's serial driver is gone now */
    boot_services_on = 0;
    com1_direct = 1;
}

static void emit(const char *line, size_t n)
{
    if (boot_services_on && g_st->con_out) {
        CHAR16 wide[2 * LINE_MAX + 1];
        size_t w = 0;
        for (size_t i = 0; i < n; i++) {
            if (line[i] == '\n')
                wide[w++] = '\r';
            wide[w++] = (unsigned char)line[i];
        }
        wide[w] = 0;
        g_st->con_out->output_string(g_st->con_out, wide);
    }
    if (com1_direct) {
        for (size_t i = 0; i < n; i++) {
            if (line[i] == '\n')
                com1_put('\r');
            com1_put(line[i]);
        }
    }
}

/* Appends to `out` while room is left for the terminating NUL (`end` = capacity - 1). */
static size_t put_num(char *out, size_t pos, size_t end, uint64_t v, unsigned base)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    while (n && pos < end)
        out[pos++] = tmp[--n];
    return pos;
}

static size_t format(char *out, size_t cap, const char *fmt, va_list ap)
{
    size_t pos = 0, end = cap - 1;
    for (const char *f = fmt; *f && pos < end; f++) {
        if (*f != '%' || !f[1]) {
            out[pos++] = *f;
            continue;
        }
        switch (*++f) {
        case 's':
            for (const char *s = va_arg(ap, const char *); *s && pos < end; s++)
                out[pos++] = *s;
            break;
        case 'u':
            pos = put_num(out, pos, end, va_arg(ap, uint64_t), 10);
            break;
        case 'x':
            for (const char *p = "0x"; *p && pos < end; p++)
                out[pos++] = *p;
            pos = put_num(out, pos, end, va_arg(ap, uint64_t), 16);
            break;
        case 'c':
            out[pos++] = (char)va_arg(ap, int);
            break;
        default:
            out[pos++] = *f;
        }
    }
    out[pos] = 0;
    return pos;
}

void say(const char *fmt, ...)
{
    char line[LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    size_t n = format(line, sizeof line, fmt, ap);
    va_end(ap);
    emit(line, n);
}

const char *status_name(EFI_STATUS s)
{
    switch (s) {
    case EFI_SUCCESS: return "EFI_SUCCESS";
    case EFI_LOAD_ERROR: return "EFI_LOAD_ERROR";
    case EFI_INVALID_PARAMETER: return "EFI_INVALID_PARAMETER";
    case EFI_UNSUPPORTED: return "EFI_UNSUPPORTED";
    case EFI_BAD_BUFFER_SIZE: return "EFI_BAD_BUFFER_SIZE";
    case EFI_BUFFER_TOO_SMALL: return "EFI_BUFFER_TOO_SMALL";
    case EFI_NOT_READY: return "EFI_NOT_READY";
    case EFI_DEVICE_ERROR: return "EFI_DEVICE_ERROR";
    case EFI_OUT_OF_RESOURCES: return "EFI_OUT_OF_RESOURCES";
    case EFI_VOLUME_CORRUPTED: return "EFI_VOLUME_CORRUPTED";
    case EFI_NO_MEDIA: return "EFI_NO_MEDIA";
    case EFI_NOT_FOUND: return "EFI_NOT_FOUND";
    case EFI_ACCESS_DENIED: return "EFI_ACCESS_DENIED";
    case EFI_ABORTED: return "EFI_ABORTED";
    default: {
        static char unknown[40];
        char *p = unknown;
        for (const char *t = "EFI status "; *t; t++)
            *p++ = *t;
        for (int shift = 60; shift >= 0; shift -= 4)
            *p++ = "0123456789abcdef"[(s >> shift) & 15];
        *p = 0;
        return unknown;
    }
    }
}

void fail(EFI_STATUS status, const char *fmt, ...)
{
    char line[LINE_MAX];
    static const char prefix[] = "BAREFLOW-PANIC: uefi: ";
    size_t n = sizeof prefix - 1;
    memcpy(line, prefix, n);
    va_list ap;
    va_start(ap, fmt);
    n += format(line + n, sizeof line - n - 1, fmt, ap);   /* room for the newline */
    va_end(ap);
    line[n++] = '\n';
    emit(line, n);
    outb(DEBUG_EXIT_PORT, 1);               /* QEMU: exit status 3, as a kernel panic */
    if (boot_services_on) {
        say("bareflow-uefi: returning to the firmware in 10 s\n");
        g_st->boot_services->stall(10u * 1000 * 1000);
        g_st->boot_services->exit(g_image, status ? status : EFI_LOAD_ERROR, 0, 0);
    }
    say("BAREFLOW-HALT code=1\n");
    for (;;)
        __asm__ volatile("cli; hlt");
}
