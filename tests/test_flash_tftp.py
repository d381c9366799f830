"""The tftp flash target: a PXE boot directory made from the image's FAT16 files."""
import os
import shutil
import subprocess
import sys

import pytest

from bareflow.errors import BareflowError
from bareflow import FlashContext
from bareflow.boot import qemu as qemu_runner
from bareflow.flash.api import flash_image
from bareflow.flash.tftp import PXELINUX, SYSLINUX_BIOS, TftpTarget
from test_flash_support import make_image, read_with_mtools, sample_files


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return make_image(tmp_path_factory.mktemp("img") / "bareflow.img")


@pytest.fixture
def host_syslinux(tmp_path):
    """A stand-in pxelinux.0 + module directory, so the test does not depend on the host."""
    d = tmp_path / "host"
    (d / "bios").mkdir(parents=True)
    (d / "pxelinux.0").write_bytes(b"host-pxelinux")
    for n in ("ldlinux.c32", "mboot.c32", "libcom32.c32"):
        (d / "bios" / n).write_bytes(b"host-" + n.encode())
    return {"pxelinux": str(d / "pxelinux.0"), "syslinux_modules": str(d / "bios")}


def ctx(**kw):
    kw.setdefault("assume_yes", True)
    kw.setdefault("quiet", True)
    return FlashContext(**kw)


def parse_append(root):
    text = (root / "pxelinux.cfg" / "default").read_text()
    lines = [l.strip() for l in text.splitlines()]
    assert "KERNEL mboot.c32" in lines and "DEFAULT bareflow" in lines and "SERIAL 0 115200" in lines
    append = next(l for l in lines if l.startswith("APPEND ")).split()[1:]
    groups, cur = [], []
    for w in append:
        if w == "---":
            groups.append(cur)
            cur = []
        else:
            cur.append(w)
    return groups + [cur]


def test_directory_boots_kernel_with_files_as_modules(image, tmp_path, host_syslinux):
    root = tmp_path / "tftp"
    report = flash_image(image, str(root), "tftp", ctx=ctx(options=host_syslinux))
    assert report.verified and report.target == "tftp"
    files = sample_files()
    payload = {p: d for p, d in files.items() if p not in ("/LDLINUX.SYS", "/SYSLINUX.CFG")
               and not p.endswith(".C32")}
    for path, data in payload.items():
        assert (root / path.lstrip("/")).read_bytes() == data == read_with_mtools(image, path)
    assert not (root / "LDLINUX.SYS").exists() and not (root / "SYSLINUX.CFG").exists()
    # pxelinux.0 and the modules that must match it come from the same syslinux install.
    assert (root / "pxelinux.0").read_bytes() == b"host-pxelinux"
    assert (root / "ldlinux.c32").read_bytes() == b"host-ldlinux.c32"
    groups = parse_append(root)
    assert groups[0] == ["KERNEL.BIN", "quiet=1"]              # kernel args kept from SYSLINUX.CFG
    modules = groups[1:]
    assert sorted(m[-1] for m in modules) == sorted(p for p in payload if p != "/KERNEL.BIN")
    for rel, fat_path in modules:
        assert fat_path == "/" + rel and (root / rel).is_file()   # every module resolves in the dir
    assert report.bytes_written == sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def test_without_pxelinux_uses_image_modules_and_notes_it(image, tmp_path):
    root = tmp_path / "tftp"
    opts = {"pxelinux": str(tmp_path / "absent" / "pxelinux.0")}
    report = flash_image(image, str(root), "tftp", ctx=ctx(options=opts))
    assert not (root / "pxelinux.0").exists()
    assert any("not found" in n and "pxelinux" in n for n in report.notes)
    assert (root / "mboot.c32").read_bytes() == sample_files()["/MBOOT.C32"]


def test_verification_names_the_bad_file(image, tmp_path, host_syslinux):
    root = tmp_path / "tftp"

    def tamper(name, **info):
        if name == "before-verify":
            (root / "MODULES" / "FFN.O2").write_bytes(b"tampered")

    with pytest.raises(BareflowError, match=r"verification of .* failed: MODULES/FFN\.O2 differs"):
        flash_image(image, str(root), "tftp", ctx=ctx(options=host_syslinux, on_event=tamper))


def test_interrupted_copy_leaves_no_config(image, tmp_path, host_syslinux):
    root = tmp_path / "tftp"
    flash_image(image, str(root), "tftp", ctx=ctx(options=host_syslinux))
    assert (root / "pxelinux.cfg" / "default").exists()

    def fail(name, **info):
        if name == "file-written" and info["path"] == "MODEL.BIN":
            raise OSError("disk full")

    with pytest.raises(OSError):
        flash_image(image, str(root), "tftp", ctx=ctx(options=host_syslinux, on_event=fail))
    assert not (root / "pxelinux.cfg" / "default").exists()      # old config removed first
    assert not list(root.rglob("*.bareflow-tmp"))


def test_refusals_and_confirmation(image, tmp_path, host_syslinux):
    t = TftpTarget()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(BareflowError, match=r"\[not-directory\]"):
        t.check(str(tmp_path / "afile"), image, ctx(options=host_syslinux))
    with pytest.raises(BareflowError, match=r"\[no-directory\]"):
        t.check(str(tmp_path / "no" / "such"), image, ctx(options=host_syslinux))
    root = tmp_path / "tftp"
    assert t.check(str(root), image, ctx(options=host_syslinux)).needs_confirmation is False
    flash_image(image, str(root), "tftp", ctx=ctx(options=host_syslinux))
    assert t.check(str(root), image, ctx(options=host_syslinux)).needs_confirmation is False  # same bytes
    (root / "KERNEL.BIN").write_bytes(b"someone else's kernel")
    info = t.check(str(root), image, ctx(options=host_syslinux))
    assert info.needs_confirmation and "KERNEL.BIN" in " ".join(info.notes)
    with pytest.raises(BareflowError, match=r"\[no-confirmation\]"):
        flash_image(image, str(root), "tftp",
                    ctx=ctx(options=host_syslinux, assume_yes=False, interactive=False))


def test_image_without_kernel_refused(tmp_path, host_syslinux):
    img = make_image(tmp_path / "nokernel.img", {"/MODEL.BIN": b"m" * 100})
    with pytest.raises(BareflowError, match=r"no /KERNEL\.BIN"):
        flash_image(img, str(tmp_path / "tftp"), "tftp", ctx=ctx(options=host_syslinux))


def test_unknown_option_named(image, tmp_path):
    with pytest.raises(BareflowError, match=r"'tftp' has no option pxe_linux; its options: pxelinux"):
        flash_image(image, str(tmp_path / "t"), "tftp", ctx=ctx(options={"pxe_linux": "x"}))


# -- a real network boot: QEMU's PXE ROM -> pxelinux.0 -> mboot.c32 -> a probe kernel ------------
PROBE_C = r"""
/* Multiboot probe: prints each module's size, FNV-1a hash and command line on COM1, then
   leaves QEMU through isa-debug-exit. */
typedef unsigned int u32; typedef unsigned char u8;
__attribute__((section(".multiboot"), used, aligned(4)))
static const u32 header[3] = {0x1BADB002u, 0u, (u32)-0x1BADB002};
u8 probe_stack[16384] __attribute__((aligned(16), used));
static inline void outb(unsigned short p, u8 v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(p)); }
static inline u8 inb(unsigned short p) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static void putc(char c) { while (!(inb(0x3FD) & 0x20)) {} outb(0x3F8, (u8)c); }
static void puts(const char *s) { while (*s) putc(*s++); }
static void hex(u32 v) { for (int i = 28; i >= 0; i -= 4) putc("0123456789abcdef"[(v >> i) & 15]); }
struct mod { u32 start, end, cmdline, pad; };
void kmain(u32 magic, const u32 *info) {
    puts("\nPROBE magic="); hex(magic); putc('\n');
    if (info[0] & 4) { puts("CMDLINE "); puts((const char *)info[4]); putc('\n'); }
    if (info[0] & 8) {
        const struct mod *m = (const struct mod *)info[6];
        for (u32 i = 0; i < info[5]; i++) {
            u32 h = 2166136261u;
            for (const u8 *p = (const u8 *)m[i].start; p < (const u8 *)m[i].end; p++) { h ^= *p; h *= 16777619u; }
            puts("MOD "); hex(m[i].end - m[i].start); putc(' '); hex(h); putc(' ');
            puts((const char *)m[i].cmdline); putc('\n');
        }
    }
    puts("PROBE-END\n");
    outb(0xF4, 0x10);
    for (;;) __asm__ volatile("cli; hlt");
}
__asm__(".globl _start\n_start:\n  mov $probe_stack+16384, %esp\n  push %ebx\n  push %eax\n  call kmain\n");
"""
PROBE_LD = """ENTRY(_start)
SECTIONS { . = 0x100000; .text : { *(.multiboot) *(.text*) } .rodata : { *(.rodata*) }
           .data : { *(.data*) } .bss : { *(.bss*) *(COMMON) } }
"""
PXE_ROM = "/usr/lib/ipxe/qemu/pxe-e1000.rom"


def fnv1a(data):
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def build_probe(tmp):
    (tmp / "probe.c").write_text(PROBE_C)
    (tmp / "probe.ld").write_text(PROBE_LD)
    cc = [sys.executable, "-m", "ziglang", "cc", "-target", "x86-freestanding", "-ffreestanding",
          "-fno-sanitize=all", "-fno-stack-protector", "-O2", "-fno-pic", "-fno-pie",
          "-c", str(tmp / "probe.c"), "-o", str(tmp / "probe.o")]
    ld = [sys.executable, "-m", "ziglang", "ld.lld", "-m", "elf_i386", "-T", str(tmp / "probe.ld"),
          "-o", str(tmp / "KERNEL.BIN"), str(tmp / "probe.o")]
    for cmd in (cc, ld):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot build the probe kernel with zig: {r.stderr.strip()[:200]}")
    return (tmp / "KERNEL.BIN").read_bytes()


@pytest.mark.qemu
def test_pxe_boot_in_qemu(tmp_path):
    pxelinux = os.environ.get("BAREFLOW_PXELINUX", PXELINUX)
    for need, why in ((pxelinux, "pxelinux.0 (Debian package 'pxelinux'; or set BAREFLOW_PXELINUX)"),
                      (PXE_ROM, "QEMU's iPXE ROM (Debian package 'ipxe-qemu')"),
                      (os.path.join(SYSLINUX_BIOS, "mboot.c32"), "syslinux BIOS modules")):
        if not os.path.isfile(need):
            pytest.skip(f"needs {why}: {need} missing")
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("needs qemu-system-x86_64")
    files = sample_files()
    files["/KERNEL.BIN"] = build_probe(tmp_path)
    img = make_image(tmp_path / "probe.img", files)
    root = tmp_path / "tftp"
    flash_image(img, str(root), "tftp", ctx=ctx(options={"pxelinux": pxelinux}))
    r = qemu_runner.run_qemu(qemu_runner.qemu_command(
        memory="128M", extra=["-monitor", "none", "-boot", "n",
                              "-netdev", f"user,id=n0,tftp={root},bootfile=pxelinux.0",
                              "-device", f"e1000,netdev=n0,romfile={PXE_ROM}"]), timeout=180)
    log = r.output.replace("\r", "")
    assert r.status == qemu_runner.EXIT_SUCCESS and "PROBE-END" in log, log[-2000:]
    assert "CMDLINE KERNEL.BIN quiet=1" in log
    got = {}
    for line in log.splitlines():
        if line.startswith("MOD "):
            _, size, digest, *cmdline = line.split()
            got[cmdline[-1]] = (int(size, 16), int(digest, 16), cmdline[0])
    want = {p: d for p, d in files.items() if p != "/KERNEL.BIN" and p not in ("/LDLINUX.SYS", "/SYSLINUX.CFG")
            and not p.endswith(".C32")}
    assert sorted(got) == sorted(want)
    for path, data in want.items():
        assert got[path] == (len(data), fnv1a(data), path.lstrip("/")), path
