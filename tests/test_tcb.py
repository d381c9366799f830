"""src/runtime/tcb.c on its own: the per-core TCB at FS_BASE, errno per core, __stack_chk_fail.

tcb.c is compiled with a small freestanding Linux harness (no C library: raw system calls, so
nothing else owns FS_BASE) that supplies the platform functions it calls; the program then
checks from the outside what llvm-libc's code will read: %fs:0, %fs:0x28, __errno_location per
core, and a stack overrun in a stack-protected function ending in a panic that names
__stack_chk_fail.  The booted and hosted runs with llvm-libc are in tests/test_llvm_libc.py.
"""
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

HARNESS = r"""
#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include "bareflow/tcb.h"

static long sys3(long n, long a, long b, long c)
{
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}
static void out(const char *s) { size_t n = 0; while (s[n]) n++; sys3(1, 1, (long)s, (long)n); }
static void out_hex(uint64_t v) { char b[19] = "0x"; for (int i = 0; i < 16; i++) b[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 15]; b[18] = 0; out(b); }
__attribute__((noreturn)) static void quit(int code) { sys3(231, code, 0, 0); __builtin_unreachable(); }

void *memset(void *d, int c, size_t n) { unsigned char *p = d; while (n--) *p++ = (unsigned char)c; return d; }
void *memcpy(void *d, const void *s, size_t n) { unsigned char *p = d; const unsigned char *q = s; while (n--) *p++ = *q++; return d; }
void platform_set_thread_pointer(void *tp) { sys3(158, 0x1002, (long)tp, 0); }      /* arch_prctl(ARCH_SET_FS) */
int platform_tls_template(const void **i, size_t *s, size_t *m, size_t *a) { (void)i; (void)s; (void)m; (void)a; return -1; }
uint64_t platform_cycles(void) { uint32_t lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((uint64_t)hi << 32) | lo; }
static unsigned char arena[1 << 20] __attribute__((aligned(64)));
static size_t used;
void *bf_alloc(size_t size, size_t align, const char *what) { (void)what; used = (used + align - 1) & ~(align - 1); void *p = arena + used; used += size; return p; }
__attribute__((noreturn)) void bf_panic(const char *fmt, ...) { out("PANIC "); out(fmt); out("\n"); quit(3); }

int *__errno_location(void);
static uint64_t fs(long off) { uint64_t v; __asm__ volatile("movq %%fs:(%1), %0" : "=r"(v) : "r"(off)); return v; }

/* the one function with a canary (-fstack-protector-explicit): everything else runs before the TCB */
__attribute__((noinline, stack_protect)) static void overrun(volatile char *p, int n) { char buf[16]; for (int i = 0; i < n; i++) buf[i] = p[i]; p[0] = buf[3]; }

void start(void)
{
    bf_tcb_init();
    uint64_t self0 = fs(0), canary0 = fs(0x28);
    out("core0 self "); out_hex(self0); out(" canary "); out_hex(canary0); out("\n");
    *__errno_location() = 11;
    uint64_t c1;
    void *tp1 = bf_tcb_enter(1, &c1);
    out("core1 self "); out_hex(fs(0)); out(" tp "); out_hex((uint64_t)(uintptr_t)tp1); out(" canary "); out_hex(fs(0x28)); out(" reported "); out_hex(c1); out("\n");
    out("core1 errno "); out_hex((uint64_t)*__errno_location()); out("\n");
    *__errno_location() = 22;
    bf_tcb_enter(0, 0);
    out("core0 errno "); out_hex((uint64_t)*__errno_location()); out("\n");
    out("bad core "); out_hex((uint64_t)(uintptr_t)bf_tcb_enter(64, 0)); out("\n");
    static char src[64] = "0123456789abcdef0123456789abcdef0123456789abcdef";
    overrun(src, 8);
    out("in bounds ok\n");
    overrun(src, 48);
    out("overrun not caught\n");
    quit(0);
}
__asm__(".globl _start\n_start:\n andq $-16, %rsp\n call start\n hlt\n");
"""


def test_tcb_self_pointer_canary_errno_and_stack_protector(tmp_path):
    src = tmp_path / "harness.c"
    src.write_text(HARNESS)
    exe = tmp_path / "tcb-harness"
    # tcb.c as the runtime compiles it (zig's clang, no stack protector); the harness with it
    common = [sys.executable, "-m", "ziglang", "cc", "-target", "x86_64-linux-musl", "-O1", "-ffreestanding",
              "-fno-builtin", "-nostdlib", "-static", f"-I{ROOT / 'src' / 'include'}",
              f"-I{ROOT / 'src' / 'runtime'}", f"-I{ROOT / 'src' / 'libc' / 'include'}"]
    obj = tmp_path / "tcb.o"
    subprocess.run(common + ["-fno-stack-protector", "-c", str(ROOT / "src" / "runtime" / "tcb.c"),
                             "-o", str(obj)], check=True)
    # zig's clang refuses -fstack-protector without a libc; gcc's emits the same %fs:0x28 code
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("needs gcc (Debian package; tools/setup.sh installs it) for -fstack-protector")
    subprocess.run([gcc, "-O1", "-ffreestanding", "-fno-builtin", "-nostdlib", "-static", "-fno-pie", "-no-pie",
                    "-fstack-protector-explicit", f"-I{ROOT / 'src' / 'include'}", str(src), str(obj), "-o", str(exe)],
                   check=True)
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30)
    out = run.stdout
    assert run.returncode == 3, out
    line = lambda prefix: next(l for l in out.splitlines() if l.startswith(prefix)).split()
    self0, canary0 = line("core0 self")[2], line("core0 self")[4]
    assert int(self0, 16) != 0
    assert int(canary0, 16) != 0 and int(canary0, 16) & 0xFF == 0          # glibc-style: low byte zero
    words = line("core1 self")
    assert words[2] == words[4] != self0                                  # its own TCB, self-pointing
    assert words[6] == words[8] != canary0                                # its own canary, reported
    assert "core1 errno 0x0000000000000000" in out                         # errno is per core ...
    assert "core0 errno 0x000000000000000b" in out                         # ... core 0's kept its 11
    assert "bad core 0x0000000000000000" in out
    assert "in bounds ok" in out and "overrun not caught" not in out
    assert "PANIC __stack_chk_fail: a stack-protector canary was overwritten" in out


def test_every_core_enters_its_tcb_before_running_work():
    """The runtime's entry points make a TCB current before any libc call (the booted proof is
    the -smp 2 llvm-libc run in tests/test_llvm_libc.py, where core 1 runs llvm-libc's expf)."""
    main = (ROOT / "src" / "runtime" / "main.c").read_text()
    body = main[main.index("int bf_runtime_main(void)"):]
    assert body.index("bf_tcb_init();") < body.index("bf_files_init();")
    worker = (ROOT / "src" / "runtime" / "parallel.c").read_text()
    worker = worker[worker.index("static void worker(int core)"):]
    assert worker.index("bf_tcb_enter(core, 0);") < worker.index("for (;;)")
    tok = (ROOT / "src" / "runtime" / "tokenize_main.c").read_text()
    assert tok.index("bf_tcb_init();") < tok.index("bf_files_init();")
