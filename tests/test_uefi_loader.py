"""The UEFI loader's build and its rules, without booting (tests/test_uefi_boot.py boots).

* BOOTX64.EFI compiles to a PE32+ EFI application whose bytes do not depend on where or when
  it was built;
* the BFU64 entry header is in the real kernel and check_multiboot validates it;
* src/uefi/kernel_image.c (compiled for Linux with a stub fail()) accepts and refuses exactly
  the kernels kernel_recipe.check_multiboot(require_uefi_entry=True) does;
* the `uefi` bootloader plugin adds /EFI/BOOT/BOOTX64.EFI, refuses a kernel without the UEFI
  entry, and syslinux/uefi hand over the same file list.
"""
from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pluggy
import pytest

from bareflow.image import bootloader

from bareflow import hookspecs

from bareflow.kernel import recipe as kernel_recipe
from bareflow.core.builtin import BUILTIN_PLUGINS
from bareflow.image import syslinux as syslinux_plugin
from bareflow.image import uefi as uefi_plugin
from bareflow.errors import BareflowError

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- BOOTX64.EFI

def test_bootx64_is_a_reproducible_efi_application(tmp_path):
    # Two copies of the sources in different directories, built into different caches: the
    # same bytes (no time stamp, no path), an x86-64 PE32+ EFI application.
    a_src, b_src = tmp_path / "a" / "uefi", tmp_path / "b" / "deeper" / "uefi"
    shutil.copytree(REPO / "src/uefi", a_src)
    shutil.copytree(REPO / "src/uefi", b_src)
    a = uefi_plugin.build_bootx64(tmp_path / "cache-a", a_src)
    b = uefi_plugin.build_bootx64(tmp_path / "cache-b", b_src)
    assert a == b
    uefi_plugin.check_pe(a)
    pe = struct.unpack_from("<I", a, 0x3C)[0]
    assert struct.unpack_from("<H", a, pe + 24 + 68)[0] == 10          # EFI application
    assert b"bareflow-uefi: loading KERNEL.BIN" in a
    # A changed source is rebuilt (new cache entry), not served stale; the old entry goes.
    (b_src / "main.c").write_text((b_src / "main.c").read_text().replace(
        "BareFlow UEFI loader", "BareFlow UEFI loader (changed)"))
    c = uefi_plugin.build_bootx64(tmp_path / "cache-b", b_src)
    assert c != b and b"(changed)" in c
    assert len(list((tmp_path / "cache-b").glob("BOOTX64-*.EFI"))) == 1


def test_bootx64_compile_error_names_the_file(tmp_path):
    src = tmp_path / "uefi"
    shutil.copytree(REPO / "src/uefi", src)
    (src / "main.c").write_text((src / "main.c").read_text() + "\nint broken(void) { return ; }\n")
    with pytest.raises(BareflowError, match=r"(?s)UEFI loader.*main\.c:\d+"):
        uefi_plugin.build_bootx64(tmp_path / "cache", src)


def test_check_pe_rejects_other_files():
    with pytest.raises(BareflowError, match="no MZ header"):
        uefi_plugin.check_pe(b"\x7fELF" + bytes(100), "x.efi")
    fake = bytearray(512)
    fake[:2] = b"MZ"
    struct.pack_into("<I", fake, 0x3C, 0x80)
    fake[0x80:0x84] = b"PE\0\0"
    struct.pack_into("<H", fake, 0x84, 0x14C)                               # i386
    struct.pack_into("<H", fake, 0x98, 0x10B)
    with pytest.raises(BareflowError, match="expected x86-64 PE32\\+"):
        uefi_plugin.check_pe(bytes(fake), "x.efi")
    struct.pack_into("<H", fake, 0x84, 0x8664)
    struct.pack_into("<H", fake, 0x98, 0x20B)
    struct.pack_into("<H", fake, 0x98 + 68, 3)                              # console app
    with pytest.raises(BareflowError, match="subsystem 3, expected 10"):
        uefi_plugin.check_pe(bytes(fake), "x.efi")


# --------------------------------------------------------------------------- KERNEL.BIN

@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """The real kernel linked with a trivial runtime: the headers are what matters here."""
    out = tmp_path_factory.mktemp("kernel")
    rt = out / "rt.c"
    rt.write_text(r"""
typedef unsigned long size_t;
int bf_runtime_main(void) { return 0; }
void bf_panic(const char *f, ...) { (void)f; for (;;) ; }
""")
    from kernel_testkit import compile_kernel_and_libc
    objs = compile_kernel_and_libc(out)
    kernel_recipe.compile_object(str(rt), str(out / "rt.o"), str(REPO))
    objs.append(str(out / "rt.o"))
    kernel_recipe.link_kernel(objs, str(out / "K.elf"), str(out / "KERNEL.BIN"),
                              str(REPO / kernel_recipe.KERNEL_LINKER_SCRIPT))
    return (out / "KERNEL.BIN").read_bytes(), out / "K.elf"


def test_kernel_has_the_bfu64_header(kernel):
    data, elf = kernel
    h = kernel_recipe.check_multiboot_bytes(data, "K", require_uefi_entry=True)
    from elftools.elf.elffile import ELFFile
    with open(elf, "rb") as f:
        start64 = ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name("_start64")[0]["st_value"]
    assert h["entry64_addr"] == start64 and h["entry64_addr"] != h["entry_addr"]
    off = h["offset"] + 32
    assert data[off:off + 8] == b"BFU64\0\0\0"
    assert sum(struct.unpack_from("<4I", data, off)) % 2**32 == 0


def mutate(data, how):
    """A kernel image broken (or not) in one way; returns bytes."""
    d = bytearray(data)
    mb = d.index(struct.pack("<I", kernel_recipe.MULTIBOOT_MAGIC))
    b = mb + 32

    def fix_bfu64():
        w = struct.unpack_from("<3I", d, b)
        struct.pack_into("<I", d, b + 12, (-sum(w)) % 2**32)

    if how == "good":
        pass
    elif how == "mb-checksum":
        d[mb + 8] ^= 1
    elif how == "no-magic":
        d[mb:mb + 4] = b"\0\0\0\0"
    elif how == "video-flag":                    # required feature bit 2: nobody provides it
        flags = struct.unpack_from("<I", d, mb + 4)[0] | 4
        struct.pack_into("<II", d, mb + 4, flags, (-(kernel_recipe.MULTIBOOT_MAGIC + flags)) % 2**32)
    elif how == "truncated":
        del d[-16:]
    elif how == "no-bfu64":
        d[b] = ord("X")
    elif how == "bfu64-checksum":
        d[b + 12] ^= 0x40
    elif how == "bfu64-entry-outside":
        struct.pack_into("<I", d, b + 8, 0x100000 + len(d) + 64)
        fix_bfu64()
    elif how == "bfu64-entry-below":
        struct.pack_into("<I", d, b + 8, 0xFFFF0)
        fix_bfu64()
    elif how == "entry-outside":
        struct.pack_into("<I", d, mb + 28, 0x100000 + len(d))
    elif how == "header-addr":
        struct.pack_into("<I", d, mb + 12, 0x100004)
    else:
        raise AssertionError(how)
    return bytes(d)


CASES = {
    "good": None,
    "mb-checksum": "checksum",
    "no-magic": "no multiboot magic",
    "video-flag": "require",
    "truncated": "load",
    "no-bfu64": "no BFU64",
    "bfu64-checksum": "BFU64 header checksum",
    "bfu64-entry-outside": "BFU64 entry",
    "bfu64-entry-below": "BFU64 entry",
    "entry-outside": "entry_addr",
    "header-addr": "header_addr",
}

HARNESS = r"""
#include <stdarg.h>
#include "loader.h"

EFI_SYSTEM_TABLE *g_st;
static long sys(long n, long a, long b, long c)
{
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}
static void out(const char *s) { sys(1, 1, (long)s, (long)ascii_len(s)); }
static void out_hex(uint64_t v)
{
    char b[19]; int i = 19;
    do { b[--i] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v);
    b[--i] = 'x'; b[--i] = '0';
    sys(1, 1, (long)(b + i), 19 - i);
}
const char *status_name(EFI_STATUS status) { (void)status; return "EFI_STATUS"; }
void fail(EFI_STATUS status, const char *fmt, ...)
{
    (void)status;
    out("FAIL: "); out(fmt); out("\n");
    sys(231, 3, 0, 0);
    for (;;) ;
}
static uint8_t image[4 << 20];
void hmain(long *sp)
{
    char **argv = (char **)(sp + 1);
    long fd = sys(2, (long)argv[1], 0, 0), n = 0, r;
    while ((r = sys(0, fd, (long)(image + n), (long)(sizeof image - n))) > 0)
        n += r;
    struct kernel_image k;
    kernel_check(image, (uint64_t)n, &k);
    out("ok entry64="); out_hex(k.entry64); out(" load="); out_hex(k.load_addr);
    out(" end="); out_hex(k.load_end); out(" bss_end="); out_hex(k.bss_end); out("\n");
    sys(231, 0, 0, 0);
}
__asm__(".globl _start\n_start:\n mov %rsp, %rdi\n and $-16, %rsp\n call hmain\n ud2\n");
"""


@pytest.fixture(scope="module")
def c_checker(tmp_path_factory):
    """kernel_image.c + util.c built as a Linux program around a stub fail()."""
    out = tmp_path_factory.mktemp("kcheck")
    src = out / "harness.c"
    src.write_text(HARNESS)
    exe = out / "kcheck"
    cmd = kernel_recipe.zig_command("cc") + [
        "-target", "x86_64-linux-none", "-ffreestanding", "-nostdlib", "-static", "-O2",
        "-fno-sanitize=all", "-fno-stack-protector", "-fno-pie", "-no-pie", "-fshort-wchar",
        "-I", str(REPO / "src/uefi"), str(src), str(REPO / "src/uefi/kernel_image.c"),
        str(REPO / "src/uefi/util.c"), "-o", str(exe)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return exe


@pytest.mark.parametrize("how", sorted(CASES))
def test_python_and_c_checks_agree(how, kernel, c_checker, tmp_path):
    data = mutate(kernel[0], how)
    path = tmp_path / "KERNEL.BIN"
    path.write_bytes(data)
    p = subprocess.run([str(c_checker), str(path)], capture_output=True, text=True, timeout=20)
    message = CASES[how]
    if message is None:
        fields = kernel_recipe.check_multiboot(str(path), require_uefi_entry=True)
        assert p.returncode == 0, p.stdout
        assert p.stdout.split() == ["ok", f"entry64={fields['entry64_addr']:#x}",
                                    f"load={fields['load_addr']:#x}", f"end={fields['load_end_addr']:#x}",
                                    f"bss_end={fields['bss_end_addr']:#x}"]
    else:
        with pytest.raises(BareflowError, match=message):
            kernel_recipe.check_multiboot(str(path), require_uefi_entry=True)
        assert p.returncode == 3, p.stdout
        assert p.stdout.startswith("FAIL: /KERNEL.BIN: ") and message.split()[0] in p.stdout, p.stdout


def test_bfu64_is_optional_unless_required(kernel):
    plain = mutate(kernel[0], "no-bfu64")
    assert kernel_recipe.check_multiboot_bytes(plain, "K")["entry64_addr"] is None
    with pytest.raises(BareflowError, match="K: no BFU64 UEFI entry header at offset 32"):
        kernel_recipe.check_multiboot_bytes(plain, "K", require_uefi_entry=True)
    # A present but broken header is an error even when not required.
    with pytest.raises(BareflowError, match="BFU64 header checksum"):
        kernel_recipe.check_multiboot_bytes(mutate(kernel[0], "bfu64-checksum"), "K")


# --------------------------------------------------------------------------- the plugins

def payload(kernel_bytes, n_modules=3):
    files = {"/KERNEL.BIN": kernel_bytes, "/BAREFLOW.CFG": b"steps = 4\n", "/MODEL.BIN": b"m" * 100,
             "/TOKENIZR.BIN": b"t", "/LIBC.MAN": b"memcpy\n", "/EXTRA.TXT": b"not handed"}
    for i in range(n_modules):
        files[f"/MODULES/L{i:02d}.O2"] = bytes([i])
    return files


def test_handed_files_order_and_limit(kernel):
    files = payload(kernel[0], 3)
    files["/MODULES/SUB/DEEP.O2"] = b"x"                   # only files directly in /MODULES/
    assert bootloader.handed_files(files) == [
        "/BAREFLOW.CFG", "/MODEL.BIN", "/TOKENIZR.BIN", "/LIBC.MAN",
        "/MODULES/L00.O2", "/MODULES/L01.O2", "/MODULES/L02.O2"]
    with pytest.raises(BareflowError, match="65 files to hand the kernel.*at most 64"):
        bootloader.handed_files(payload(kernel[0], 61))


def test_uefi_plugin_files_and_kernel_check(kernel, tmp_path):
    loader = uefi_plugin.UefiBootloader(cache_dir=tmp_path / "cache")
    assert loader.available() == (True, "")
    assert loader.mbr_code() is None and loader.installed_files() == ()
    out = loader.image_files({}, payload(kernel[0]))
    assert list(out) == ["/EFI/BOOT/BOOTX64.EFI"]
    uefi_plugin.check_pe(out["/EFI/BOOT/BOOTX64.EFI"])
    with pytest.raises(BareflowError, match="bootloader 'uefi': /KERNEL.BIN: no BFU64"):
        loader.image_files({}, payload(mutate(kernel[0], "no-bfu64")))
    with pytest.raises(BareflowError, match="at most 64"):
        loader.image_files({}, payload(kernel[0], 70))
    missing = uefi_plugin.UefiBootloader(source_dir=tmp_path / "nowhere")
    ok, why = missing.available()
    assert not ok and "nowhere" in why


def test_syslinux_appends_the_handed_files(kernel):
    files = payload(kernel[0])
    cfg = syslinux_plugin.SyslinuxBootloader(hand_payload=True).image_files({}, files)["/SYSLINUX.CFG"]
    append = [line.strip() for line in cfg.decode().splitlines() if line.strip().startswith("APPEND")]
    assert append == ["APPEND KERNEL.BIN --- /BAREFLOW.CFG --- /MODEL.BIN --- /TOKENIZR.BIN --- "
                      "/LIBC.MAN --- /MODULES/L00.O2 --- /MODULES/L01.O2 --- /MODULES/L02.O2"]
    # Without hand_payload (and through the old files() call) nothing is handed.
    assert b"APPEND KERNEL.BIN\n" in syslinux_plugin.SyslinuxBootloader().image_files({}, files)["/SYSLINUX.CFG"]


def test_both_bootloaders_registered_as_builtins():
    assert "bareflow.image.uefi" in BUILTIN_PLUGINS
    pm = pluggy.PluginManager("bareflow")
    pm.add_hookspecs(hookspecs)
    pm.register(syslinux_plugin)
    pm.register(uefi_plugin)
    loaders = {b.name: b for group in pm.hook.bareflow_register_bootloaders() for b in group}
    assert sorted(loaders) == ["syslinux", "uefi"]
    for b in loaders.values():
        bootloader.check_bootloader(b)
    assert loaders["syslinux"].hand_payload                 # the registered one hands the files
