"""The bare-metal platform (src/kernel/) really boots and keeps its promises.

Each test links the real kernel objects with a tiny test-only runtime written into tmp_path
(it defines bf_runtime_main and reports failed checks on the console, returning 5), boots the
flat KERNEL.BIN in QEMU (TCG) and reads the serial console and QEMU's exit status:
33 = platform_exit(0), 2n+1 = platform_exit(n).  One test boots through syslinux mboot.c32
from a FAT16 disk image built by hand, as the real image is.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from bareflow.boot import qemu as qemu_runner
from bareflow.kernel import recipe as kernel_recipe
from bareflow.errors import BareflowError

REPO = Path(__file__).resolve().parents[1]
QEMU = shutil.which(qemu_runner.QEMU)
QEMU_TIMEOUT = 20
SYSLINUX_BIOS = Path("/usr/lib/syslinux/modules/bios")
SYSLINUX_MBR = Path("/usr/lib/syslinux/mbr/mbr.bin")

needs_qemu = pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed")

RUNTIME_PRELUDE = r"""
#include <bareflow/platform.h>
#include <bareflow/runtime.h>
#include <stdint.h>

static void say(const char *s) { size_t n = 0; while (s[n]) n++; platform_console_write(s, n); }
static void say_hex(uint64_t v)
{
    char b[19]; int i = 19;
    do { b[--i] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v);
    b[--i] = 'x'; b[--i] = '0';
    platform_console_write(b + i, 19 - i);
}
static int failures;
#define CHECK(c) do { if (!(c)) { say("check failed: " #c "\n"); failures++; } } while (0)

void bf_panic(const char *fmt, ...) { say("BAREFLOW-PANIC: "); say(fmt); say("\n"); platform_exit(1); }

static void body(void);
int bf_runtime_main(void) { body(); say(failures ? "checks failed\n" : "checks passed\n"); return failures ? 5 : 0; }
"""


@pytest.fixture(scope="module")
def kernel_objects(tmp_path_factory):
    """The real kernel sources, compiled once for this file."""
    from kernel_testkit import compile_kernel_and_libc
    return compile_kernel_and_libc(tmp_path_factory.mktemp("kobj"))


def build(tmp_path: Path, kernel_objects, body: str, name: str = "KERNEL.BIN",
          helpers: str = "") -> Path:
    """Link the kernel with a test runtime whose body() is `body` (after `helpers`)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    src = tmp_path / (name + ".rt.c")
    src.write_text(RUNTIME_PRELUDE + helpers + "\nstatic void body(void)\n{\n" + body + "\n}\n")
    obj = tmp_path / (name + ".rt.o")
    kernel_recipe.compile_object(str(src), str(obj), str(REPO))
    out = tmp_path / name
    kernel_recipe.link_kernel(kernel_objects + [str(obj)], str(tmp_path / (name + ".elf")),
                              str(out), str(REPO / kernel_recipe.KERNEL_LINKER_SCRIPT))
    return out


def qemu(args, timeout=QEMU_TIMEOUT):
    """Run QEMU headless; returns (exit status, serial output with CR removed)."""
    try:
        run = qemu_runner.run_qemu(qemu_runner.qemu_command(extra=args), timeout=timeout)
    except BareflowError as exc:
        pytest.fail(f"the kernel hung: {exc}")
    return run.status, run.output


def boot(kernel: Path, *extra, cpu=None):
    args = ["-kernel", str(kernel)] + list(extra)
    if cpu:
        args = ["-cpu", cpu] + args
    return qemu(args)


# --------------------------------------------------------------------------- build recipe

def test_sources_exist_and_each_promises_something():
    for src in kernel_recipe.KERNEL_SOURCES + [kernel_recipe.KERNEL_LINKER_SCRIPT]:
        text = (REPO / src).read_text()
        assert text.lstrip().startswith("/*"), f"{src} lacks its header comment"


def test_build_is_deterministic(tmp_path, kernel_objects):
    a = build(tmp_path / "a", kernel_objects, 'say("x\\n");')
    b = build(tmp_path / "b", kernel_objects, 'say("x\\n");')
    assert a.read_bytes() == b.read_bytes()
    again = tmp_path / "again.o"
    kernel_recipe.compile_object(str(REPO / "src/kernel/memory.c"), str(again), str(REPO))
    first = [o for o in kernel_objects if o.endswith("memory_c.o")][0]
    assert Path(first).read_bytes() == again.read_bytes()


def test_multiboot_header_fields(tmp_path, kernel_objects):
    kernel = build(tmp_path, kernel_objects, "")
    h = kernel_recipe.check_multiboot(str(kernel))
    assert h["offset"] < 8192 and h["load_addr"] == 0x100000
    assert h["flags"] & (1 << 16) and h["flags"] & (1 << 1)
    assert h["load_end_addr"] - h["load_addr"] == kernel.stat().st_size
    assert h["bss_end_addr"] > h["load_end_addr"]


def test_check_multiboot_rejects_bad_images(tmp_path, kernel_objects):
    good = build(tmp_path, kernel_objects, "").read_bytes()
    off = good.index(struct.pack("<I", kernel_recipe.MULTIBOOT_MAGIC))

    bad_sum = bytearray(good)
    bad_sum[off + 8] ^= 1
    (tmp_path / "sum.bin").write_bytes(bad_sum)
    with pytest.raises(BareflowError, match="checksum"):
        kernel_recipe.check_multiboot(str(tmp_path / "sum.bin"))

    (tmp_path / "none.bin").write_bytes(b"\0" * 9000)
    with pytest.raises(BareflowError, match="none.bin: no multiboot magic"):
        kernel_recipe.check_multiboot(str(tmp_path / "none.bin"))

    (tmp_path / "short.bin").write_bytes(good[:-16])
    with pytest.raises(BareflowError, match="short.bin: .*load"):
        kernel_recipe.check_multiboot(str(tmp_path / "short.bin"))

    with pytest.raises(BareflowError, match="cannot read"):
        kernel_recipe.check_multiboot(str(tmp_path / "missing.bin"))


def test_link_error_names_the_missing_symbol(tmp_path, kernel_objects):
    with pytest.raises(BareflowError, match="bf_runtime_main"):
        kernel_recipe.link_kernel(kernel_objects, str(tmp_path / "k.elf"), str(tmp_path / "k.bin"),
                                  str(REPO / kernel_recipe.KERNEL_LINKER_SCRIPT))


def test_unplaced_section_is_a_link_error(tmp_path, kernel_objects):
    # A section kernel.ld does not place could land outside the flat file: refuse it.
    with pytest.raises(BareflowError, match=r"\.weird"):
        build(tmp_path, kernel_objects, "say_hex(odd);",
              helpers='__attribute__((section(".weird"))) static volatile int odd = 1;\n')


def test_compile_error_names_the_file(tmp_path):
    bad = tmp_path / "broken.c"
    bad.write_text("int f(void) { return ; }\n")
    with pytest.raises(BareflowError, match="broken.c"):
        kernel_recipe.compile_object(str(bad), str(tmp_path / "broken.o"), str(REPO))


# --------------------------------------------------------------------------- booting

BASIC_CHECKS = r"""
    say("hello from runtime\n");
    CHECK(platform_arena_size() > 16u * 1024 * 1024);
    CHECK(platform_arena_used() == 0);
    CHECK(platform_cycles_per_second() > 100000000ull);
    uint64_t t0 = platform_cycles();
    CHECK(platform_cycles() > t0);
    unsigned char *a = platform_alloc(1000, 64);
    CHECK(a && ((uintptr_t)a & 63) == 0);
    for (int i = 0; i < 1000; i++) { CHECK(a[i] == 0); a[i] = 0xEE; }
    unsigned char *b = platform_alloc(5000, 4096);
    CHECK(b && ((uintptr_t)b & 4095) == 0 && b >= a + 1000);
    for (int i = 0; i < 5000; i++) CHECK(b[i] == 0);
    CHECK(platform_arena_used() >= 6000);
    CHECK(platform_alloc(platform_arena_size(), 1) == 0);   /* exhausted: NULL, not a crash */
    volatile float x = 1.5f; x = x * x + 0.25f;            /* SSE is on */
    CHECK(x == 2.5f);
    CHECK(platform_handed_file("/MODULES/RMSNORM.O2", 0) == 0);
"""


@needs_qemu
def test_boot_reaches_runtime_and_exits_33(tmp_path, kernel_objects):
    # A runtime with a large bss pushes the kernel's end past 2 MiB; the boot stack, its
    # guard page and the arena must still be placed right.
    kernel = build(tmp_path, kernel_objects, BASIC_CHECKS + r"""
    big[sizeof big - 1] = 1;
    CHECK((uintptr_t)a >= (uintptr_t)big + sizeof big);
    CHECK(platform_cpu_isa_level(0) == 0);                  /* QEMU's default qemu64 CPU */
""", helpers="static volatile unsigned char big[6u << 20];\n")
    rc, out = boot(kernel)
    assert "hello from runtime" in out
    assert "check failed" not in out, out
    assert "checks passed" in out
    assert rc == 33, out
    assert out.startswith("bareflow-kernel: arena"), out


@needs_qemu
def test_no_disk_gives_errors_not_a_hang(tmp_path, kernel_objects):
    kernel = build(tmp_path, kernel_objects, r"""
    static char sector[512];
    CHECK(platform_disk_sectors() == 0);                    /* no -drive given */
    CHECK(platform_disk_read(0, 1, sector) < 0);
    CHECK(platform_disk_write(0, 1, sector) < 0);
""")
    rc, out = boot(kernel)
    assert "check failed" not in out and "checks passed" in out, out
    assert rc == 33, out


@needs_qemu
def test_avx_enabled_on_a_v3_cpu(tmp_path, kernel_objects):
    kernel = build(tmp_path, kernel_objects, r"""
    const char *missing;
    CHECK(platform_cpu_isa_level(&missing) == 2);           /* TCG's max: AVX2 and FMA, no AVX-512 */
    CHECK(missing[0] == 'A' && missing[6] == 'F');          /* "AVX512F" */
    if (platform_cpu_isa_level(0) >= 2) {
        float in[8] = {1, 2, 3, 4, 5, 6, 7, 8}, out[8];
        __asm__ volatile("vmovups %1, %%ymm0\n vaddps %%ymm0, %%ymm0, %%ymm1\n vmovups %%ymm1, %0"
                         : "=m"(out) : "m"(in) : "xmm0", "xmm1");
        CHECK(out[7] == 16.0f);
    }
""")
    rc, out = boot(kernel, cpu="max")
    assert "checks passed" in out and rc == 33, out
    assert "cpu isa x86-64-v3 (no AVX512F)" in out


@needs_qemu
def test_runtime_exit_code_reaches_qemu(tmp_path, kernel_objects):
    kernel = build(tmp_path, kernel_objects, "platform_exit(7);")
    rc, out = boot(kernel)
    assert rc == 2 * 7 + 1, out


@needs_qemu
@pytest.mark.parametrize("code,expect", [
    ('__asm__ volatile("ud2");', r"CPU exception #UD invalid opcode \(vector 6\) error=0x0 rip=0x[0-9a-f]+ cr2=0x"),
    ("say_hex(*(volatile int *)0);", r"CPU exception #PF page fault \(vector 14\) error=0x0 rip=0x[0-9a-f]+ cr2=0x0 cpu 0\n"),
    ("volatile int z = 0; say_hex(10 / z);", r"CPU exception #DE divide error \(vector 0\)"),
    ('__asm__ volatile("int $0x40");', r"CPU exception #GP general protection \(vector 13\) error=0x[0-9a-f]*[2367abef] "),
    ("say_hex(deep(0));", r"CPU exception #PF page fault \(vector 14\) error=0x2 rip=0x[0-9a-f]+ cr2=0x(?P<cr2>[0-9a-f]+)"),
], ids=["ud2", "null", "divide", "no-gate", "stack-overflow"])
def test_cpu_exception_panics_and_fails(tmp_path, kernel_objects, code, expect):
    helpers = ("static int deep(int n)\n"
               "{ volatile char pad[512]; pad[0] = (char)n; return deep(n + 1) + pad[0]; }\n")
    kernel = build(tmp_path, kernel_objects, code, name="F.BIN", helpers=helpers)
    rc, out = boot(kernel)
    m = re.search("BAREFLOW-PANIC: " + expect, out)
    assert m, out
    assert rc == 3, out                       # BF_EXIT_PANIC
    assert "checks passed" not in out
    if "cr2" in m.groupdict():                # the overflow hit the guard page below the stack
        guard = symbol(tmp_path / "F.BIN.elf", "boot_stack_guard")
        assert guard <= int(m["cr2"], 16) < guard + 4096, out


def symbol(elf: Path, name: str) -> int:
    from elftools.elf.elffile import ELFFile
    with open(elf, "rb") as f:
        sym = ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)
        return sym[0]["st_value"]


@needs_qemu
def test_cpu_without_long_mode_is_refused(tmp_path, kernel_objects):
    kernel = build(tmp_path, kernel_objects, 'say("should not run\\n");')
    rc, out = boot(kernel, cpu="qemu32")
    assert "BAREFLOW-PANIC: this CPU lacks 64-bit long mode" in out, out
    assert "should not run" not in out
    assert rc == 3


def pattern_sector(lba: int) -> bytes:
    return bytes(((lba * 31 + i * 7) ^ (i >> 3)) & 0xFF for i in range(512))


@needs_qemu
def test_ata_reads_and_writes_the_attached_disk(tmp_path, kernel_objects):
    n_sectors = 700
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"".join(pattern_sector(s) for s in range(n_sectors)))
    first = ", ".join(str(b) for b in pattern_sector(0)[:32])
    s600 = ", ".join(str(b) for b in pattern_sector(600)[:32])
    kernel = build(tmp_path, kernel_objects, r"""
    static const unsigned char want0[32] = { %s };
    static const unsigned char want600[32] = { %s };
    static unsigned char buf[650 * 512];
    CHECK(platform_disk_sectors() == %d);
    CHECK(platform_disk_read(0, 1, buf) == 0);
    for (int i = 0; i < 32; i++) CHECK(buf[i] == want0[i]);
    /* more than one 256-sector command */
    CHECK(platform_disk_read(1, 650, buf) == 0);
    for (int i = 0; i < 32; i++) CHECK(buf[599 * 512 + i] == want600[i]);
    CHECK(platform_disk_read(%d, 1, buf) < 0);               /* past the end */
    CHECK(platform_disk_read(%d, 2, buf) < 0);               /* straddles the end */
    for (int i = 0; i < 1024; i++) buf[i] = (unsigned char)(i * 3 + 1);
    CHECK(platform_disk_write(10, 2, buf) == 0);
    static unsigned char back[1024];
    CHECK(platform_disk_read(10, 2, back) == 0);
    for (int i = 0; i < 1024; i++) CHECK(back[i] == (unsigned char)(i * 3 + 1));
""" % (first, s600, n_sectors, n_sectors, n_sectors - 1))
    rc, out = boot(kernel, "-drive", f"file={disk},format=raw,if=ide")
    assert "check failed" not in out and "checks passed" in out, out
    assert rc == 33, out
    data = disk.read_bytes()
    assert data[10 * 512:12 * 512] == bytes((i * 3 + 1) & 0xFF for i in range(1024))
    assert data[12 * 512:13 * 512] == pattern_sector(12)          # neighbours untouched


@needs_qemu
def test_ata_lba48_beyond_128_gib(tmp_path, kernel_objects):
    lba = (1 << 28) + 5                     # first sectors LBA28 cannot address
    disk = tmp_path / "big.raw"
    with open(disk, "wb") as f:             # sparse: costs a few KiB of real disk
        f.truncate((lba + 64) * 512)
        f.seek(lba * 512)
        f.write(pattern_sector(lba))
    want = ", ".join(str(b) for b in pattern_sector(lba)[:32])
    kernel = build(tmp_path, kernel_objects, r"""
    static const unsigned char want[32] = { %s };
    static unsigned char buf[1024];
    CHECK(platform_disk_sectors() == %du);
    CHECK(platform_disk_read(%du, 1, buf) == 0);
    for (int i = 0; i < 32; i++) CHECK(buf[i] == want[i]);
    /* a range that starts below the LBA28 limit and ends above it */
    CHECK(platform_disk_read((1u << 28) - 1, 2, buf) == 0);
    for (int i = 0; i < 512; i++) buf[i] = 0x5A;
    CHECK(platform_disk_write(%du, 1, buf) == 0);
""" % (want, lba + 64, lba, lba + 1))
    rc, out = boot(kernel, "-drive", f"file={disk},format=raw,if=ide")
    assert "check failed" not in out and "checks passed" in out, out
    assert rc == 33, out
    with open(disk, "rb") as f:
        f.seek((lba + 1) * 512)
        assert f.read(512) == b"\x5a" * 512


@needs_qemu
def test_handed_files_from_multiboot_modules(tmp_path, kernel_objects):
    mods = tmp_path / "deep" / "MODULES"
    mods.mkdir(parents=True)
    (mods / "RMSNORM.O2").write_bytes(b"BFMD-test-module")
    (tmp_path / "deep" / "bareflow.cfg").write_bytes(b"steps=4\n")
    kernel = build(tmp_path, kernel_objects, r"""
    size_t n = 0;
    const char *m = platform_handed_file("/MODULES/RMSNORM.O2", &n);
    CHECK(m && n == 16 && m[0] == 'B' && m[15] == 'e');
    CHECK(((uintptr_t)m & 4095) == 0);                      /* page-aligned, as requested */
    CHECK(platform_handed_file("/modules/rmsnorm.o2", &n) == m);
    const char *c = platform_handed_file("/BAREFLOW.CFG", &n);
    CHECK(c && n == 8 && c[0] == 's');
    CHECK(platform_handed_file("/MODULES/QKV.O2", &n) == 0);
    CHECK(platform_handed_file("/RMSNORM.O2", &n) == 0);   /* the directory is part of the name */
    /* the arena never overlaps what the loader handed over */
    char *a = platform_alloc(64, 16);
    CHECK(a && (a + 64 <= m || a >= m + 16) && (a + 64 <= c || a >= c + 8));
    CHECK(m[0] == 'B');
""")
    initrd = f"{mods / 'RMSNORM.O2'} some args,{tmp_path / 'deep' / 'bareflow.cfg'}"
    rc, out = boot(kernel, "-initrd", initrd)
    assert "check failed" not in out and "checks passed" in out, out
    assert "handed files 2" in out
    assert rc == 33, out


# --------------------------------------------------------------------------- syslinux

SYSLINUX_TOOLS = ["syslinux", "mkfs.fat", "mcopy", "mmd"]
missing = [t for t in SYSLINUX_TOOLS if shutil.which(t) is None]
needs_syslinux = pytest.mark.skipif(
    bool(missing) or not SYSLINUX_MBR.exists() or not (SYSLINUX_BIOS / "mboot.c32").exists(),
    reason=f"syslinux boot needs {', '.join(SYSLINUX_TOOLS)}, {SYSLINUX_MBR} and mboot.c32 "
           f"(missing: {', '.join(missing) or 'syslinux data files'})")

PART_START = 2048          # sectors: the partition starts at 1 MiB
PART_SECTORS = 32768       # 16 MiB: enough clusters for FAT16 with 1-sector clusters


def make_fat16_disk(path: Path, files: dict, cfg: str):
    """An MBR disk with one bootable FAT16 partition carrying syslinux and `files`."""
    total = PART_START + PART_SECTORS
    with open(path, "wb") as f:
        f.truncate(total * 512)
    subprocess.run(["mkfs.fat", "-F", "16", "-s", "1", "-n", "BAREFLOW", "-i", "12345678",
                    "--invariant", "-h", str(PART_START), f"--offset={PART_START}",
                    str(path), str(PART_SECTORS // 2)], check=True, capture_output=True)
    mbr = bytearray(SYSLINUX_MBR.read_bytes()[:440].ljust(512, b"\0"))
    entry = struct.pack("<B3sB3sII", 0x80, b"\xfe\xff\xff", 0x06, b"\xfe\xff\xff",
                        PART_START, PART_SECTORS)
    mbr[446:462] = entry
    mbr[510:512] = b"\x55\xaa"
    with open(path, "r+b") as f:
        f.write(mbr)
    subprocess.run(["syslinux", "--install", "--offset", str(PART_START * 512), str(path)],
                   check=True, capture_output=True)
    image = f"{path}@@{PART_START * 512}"
    (path.parent / "syslinux.cfg").write_text(cfg)
    files = dict(files, **{"SYSLINUX.CFG": path.parent / "syslinux.cfg"})
    for name, src in sorted(files.items()):
        if "/" in name:
            subprocess.run(["mmd", "-D", "s", "-i", image, "::" + name.rsplit("/", 1)[0]],
                           capture_output=True)
        subprocess.run(["mcopy", "-o", "-i", image, str(src), "::" + name],
                       check=True, capture_output=True)


@needs_qemu
@needs_syslinux
def test_boots_through_syslinux_mboot(tmp_path, kernel_objects):
    kernel = build(tmp_path, kernel_objects, r"""
    say("hello from runtime\n");
    static unsigned char mbr[512];
    CHECK(platform_disk_sectors() == %d);
    CHECK(platform_disk_read(0, 1, mbr) == 0);
    CHECK(mbr[510] == 0x55 && mbr[511] == 0xAA && mbr[450] == 0x06);
    size_t n = 0;
    const char *m = platform_handed_file("/MODULES/RMSNORM.O2", &n);
    CHECK(m && n == 11 && m[0] == 'm' && m[10] == '!');
    CHECK(platform_arena_size() > 16u * 1024 * 1024);
    CHECK(platform_cycles_per_second() > 100000000ull);
""" % (PART_START + PART_SECTORS))
    module = tmp_path / "RMSNORM.O2"
    module.write_bytes(b"mod-payloa!")
    cfg = ("SERIAL 0 115200\nDEFAULT bareflow\nPROMPT 0\nTIMEOUT 0\nLABEL bareflow\n"
           "  KERNEL mboot.c32\n  APPEND KERNEL.BIN --- /MODULES/RMSNORM.O2\n")
    disk = tmp_path / "bareflow.img"
    make_fat16_disk(disk, {
        "KERNEL.BIN": kernel,
        "MBOOT.C32": SYSLINUX_BIOS / "mboot.c32",
        "LIBCOM32.C32": SYSLINUX_BIOS / "libcom32.c32",
        "MODULES/RMSNORM.O2": module,
    }, cfg)
    rc, out = qemu(["-drive", f"file={disk},format=raw"])
    assert "SYSLINUX" in out and "Loading KERNEL.BIN... ok" in out, out
    assert "hello from runtime" in out, out
    assert "check failed" not in out and "checks passed" in out, out
    assert "handed files 1" in out
    assert rc == 33, out


# --------------------------------------------------------------------------- hand-over checks
# multiboot.c and memory.c compiled for Linux (raw syscalls, no libc) and fed crafted
# Multiboot info blocks placed at fixed low addresses with mmap, so every validation path
# runs without a loader that could produce such bad input.

FAKE = 0x20000000                 # where the harness maps "physical" memory
FAKE_SIZE = 32 << 20
KERNEL_LO, KERNEL_HI = FAKE + 0x100000, FAKE + 0x180000

HARNESS = r"""
#include <stddef.h>
#include <stdint.h>
#include <bareflow/platform.h>
#include "kernel.h"

static long sys(long n, long a, long b, long c, long d, long e, long f)
{
    long r;
    register long r10 __asm__("r10") = d, r8 __asm__("r8") = e, r9 __asm__("r9") = f;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return r;
}
static void out(const char *s) { size_t n = 0; while (s[n]) n++; sys(1, 1, (long)s, n, 0, 0, 0); }
static void out_hex(uint64_t v)
{
    char b[19]; int i = 19;
    do { b[--i] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v);
    b[--i] = 'x'; b[--i] = '0';
    sys(1, 1, (long)(b + i), 19 - i, 0, 0, 0);
}
static void quit(int code) { sys(231, code, 0, 0, 0, 0, 0); for (;;) ; }
void kernel_fail(const char *msg) { out("FAIL: "); out(msg); out("\n"); quit(3); }
void kernel_fail2(const char *msg, uint64_t v) { out("FAIL: "); out(msg); out_hex(v); out("\n"); quit(3); }
static int streq(const char *a, const char *b) { while (*a && *a == *b) { a++; b++; } return *a == *b; }

#define R 0x20000000u
#define W32(a, v) (*(volatile uint32_t *)(uintptr_t)(a) = (v))
static uint32_t str_at = R + 0x4000;
static uint32_t put_str(const char *s)
{
    uint32_t a = str_at;
    size_t n = 0;
    do { *(volatile char *)(uintptr_t)(str_at++) = s[n]; } while (s[n++]);
    return a;
}
static uint32_t mm = R + 0x2000;
static void ram(uint64_t base, uint64_t len, uint32_t type)
{
    W32(mm, 20); W32(mm + 4, (uint32_t)base); W32(mm + 8, (uint32_t)(base >> 32));
    W32(mm + 12, (uint32_t)len); W32(mm + 16, (uint32_t)(len >> 32)); W32(mm + 20, type);
    mm += 24;
}

static void scenario(const char *s)
{
    uint32_t info = R + 0x1000, mods = R + 0x3000, magic = 0x2BADB002;
    uint32_t flags = (1u << 0) | (1u << 3) | (1u << 6), n_mods = 2;
    ram(R, 32u << 20, 1);                       /* the big region */
    ram(R + (40u << 20), 1u << 20, 2);          /* reserved: ignored */
    ram(0x30000000u, 8u << 20, 1);              /* smaller region, never touched */
    ram(0x100000000ull, 0x100000000ull, 1);     /* above 4 GiB: ignored */
    W32(mods + 0, R + 0x1F00000); W32(mods + 4, R + 0x1F00010);
    W32(mods + 8, put_str("(hd0,1)/boot/modules/qkv.o1 tier=1"));
    W32(mods + 16, R + 0x1E00000); W32(mods + 20, R + 0x1E00004);
    W32(mods + 24, put_str("BAREFLOW.CFG"));
    if (streq(s, "bad-magic")) magic = 0x1BADB002;
    if (streq(s, "no-memory")) flags = 1u << 3;
    if (streq(s, "bad-mmap")) W32(R + 0x2000 + 24, 4);            /* second entry size 4 */
    if (streq(s, "module-backwards")) W32(mods + 4, R + 0x1000);
    if (streq(s, "module-page0")) { W32(mods + 0, 0); W32(mods + 4, 16); }
    if (streq(s, "too-many-modules")) n_mods = 161;
    if (streq(s, "info-page0")) info = 16;
    if (streq(s, "unterminated")) {
        uint32_t a = R + 0x10000;                                 /* 8 KiB without a NUL */
        for (int i = 0; i < 8192; i++) *(volatile char *)(uintptr_t)(a + i) = 'A';
        W32(mods + 8, a);
    }
    if (info != 16) {
        W32(info + 0, flags); W32(info + 8, 31u * 1024);
        W32(info + 20, n_mods); W32(info + 24, mods);
        W32(info + 44, mm - (R + 0x2000)); W32(info + 48, R + 0x2000);
    }
    multiboot_init(magic, info);
    memory_init();
}

void hmain(long *sp)
{
    char **argv = (char **)(sp + 1);
    void *m = (void *)sys(9, R, FAKE_SIZE_BYTES, 3, 0x22 | 0x100000, -1, 0);   /* FIXED_NOREPLACE */
    if ((uintptr_t)m != R) { out("FAIL: cannot map the fake physical memory\n"); quit(4); }
    for (uint32_t a = R; a < R + FAKE_SIZE_BYTES; a += 4) W32(a, 0xFFFFFFFF);
    for (uint32_t a = R; a < R + 0x10000; a += 4) W32(a, 0);
    scenario(argv[1]);
    size_t n = 0;
    out("modules="); out_hex(multiboot_module_count()); out("\n");
    const void *q = platform_handed_file("/MODULES/QKV.O1", &n);
    out("qkv="); out_hex((uintptr_t)q); out(" "); out_hex(n); out("\n");
    q = platform_handed_file("bareflow.cfg", &n);
    out("cfg="); out_hex((uintptr_t)q); out(" "); out_hex(n); out("\n");
    out("arena="); out_hex(platform_arena_size()); out("\n");
    unsigned char *a = platform_alloc(100, 16), *b = platform_alloc(3, 4096);
    out("alloc="); out_hex((uintptr_t)a); out(" "); out_hex((uintptr_t)b); out("\n");
    int zero = 1;
    for (int i = 0; i < 100; i++) zero &= a[i] == 0;
    out("zeroed="); out_hex(zero); out("\n");
    out("used="); out_hex(platform_arena_used()); out("\n");
    out("huge="); out_hex((uintptr_t)platform_alloc((size_t)-4096, 8)); out("\n");
    if (streq(argv[1], "bad-align")) platform_alloc(8, 24);
    quit(0);
}
/* The "kernel image" the arena must avoid, as absolute symbols like the linker script's. */
__asm__(".globl __kernel_start, __kernel_end\n.set __kernel_start, KERNEL_LO\n.set __kernel_end, KERNEL_HI\n");
__asm__(".globl _start\n_start:\n mov %rsp, %rdi\n and $-16, %rsp\n call hmain\n ud2\n");
"""


@pytest.fixture(scope="module")
def handover_harness(tmp_path_factory):
    out = tmp_path_factory.mktemp("harness")
    src = out / "harness.c"
    src.write_text(HARNESS.replace("FAKE_SIZE_BYTES", str(FAKE_SIZE))
                   .replace("KERNEL_LO", hex(KERNEL_LO)).replace("KERNEL_HI", hex(KERNEL_HI)))
    exe = out / "harness"
    cmd = kernel_recipe.zig_command("cc") + [
        "-target", "x86_64-linux-none", "-ffreestanding", "-nostdlib", "-static", "-O2",
        "-fno-sanitize=all", "-fno-stack-protector", "-fno-pie", "-no-pie",
        "-I", str(REPO / "src/include"), "-I", str(REPO / "src/kernel"),
        str(src), str(REPO / "src/kernel/multiboot.c"), str(REPO / "src/kernel/memory.c"),
        "-o", str(exe)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return exe


def run_harness(exe, scenario):
    p = subprocess.run([str(exe), scenario], capture_output=True, text=True, timeout=20)
    values = dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line
                  and not line.startswith("FAIL"))
    return p.returncode, p.stdout, values


def test_handover_carves_arena_around_kernel_and_modules(handover_harness):
    rc, out, v = run_harness(handover_harness, "ok")
    assert rc == 0, out
    assert v["modules"] == "0x2"
    assert v["qkv"] == f"{FAKE + 0x1F00000:#x} 0x10"          # "(hd0,1)/boot/modules/qkv.o1 x"
    assert v["cfg"] == f"{FAKE + 0x1E00000:#x} 0x4"           # "BAREFLOW.CFG", any case, no '/'
    # Largest free stretch: from the kernel's end to the lower module, page-trimmed.
    assert v["arena"] == f"{FAKE + 0x1E00000 - KERNEL_HI:#x}"
    a, b = (int(x, 16) for x in v["alloc"].split())
    assert a == KERNEL_HI and b == KERNEL_HI + 4096
    assert v["zeroed"] == "0x1"                                # the memory was 0xFF before
    assert v["used"] == f"{4096 + 3:#x}"
    assert v["huge"] == "0x0"


@pytest.mark.parametrize("scenario,message", [
    ("bad-magic", "not started by a Multiboot-1 loader: EAX=0x1badb002"),
    ("no-memory", "reported no memory size or map"),
    ("bad-mmap", "malformed memory map entry at 0x20002018"),
    ("module-backwards", "module outside memory, start 0x21f00000"),
    ("module-page0", "module outside memory, start 0x0"),
    ("too-many-modules", "too many modules (limit 160): 0xa1"),
    ("info-page0", "info block outside memory at 0x10"),
    ("unterminated", "unterminated module string at 0x20010000"),
    ("bad-align", "platform_alloc: alignment must be a power of two up to 4096, got 0x18"),
])
def test_handover_rejects_bad_input(handover_harness, scenario, message):
    rc, out, _ = run_harness(handover_harness, scenario)
    assert rc == 3, out
    last = out.splitlines()[-1]
    assert last.startswith("FAIL: ") and last.endswith(message), out
