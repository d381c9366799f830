"""Helpers for tests that drive the real build (`scons`) and boot the real image."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bareflow.boot import qemu as qemu_runner
from bareflow.errors import BareflowError

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
QEMU_SUCCESS = qemu_runner.EXIT_SUCCESS
PARTITION_OFFSET = 2048 * 512
SBIN_PATH = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin" + os.pathsep + "/sbin"


def tool(name):
    return shutil.which(name, path=SBIN_PATH)


def need(*names):
    missing = [n for n in names if tool(n) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (install with tools/setup.sh)")


def stories():
    model, tok = SHARED_DATA / "stories260K.bin", SHARED_DATA / "tok512.bin"
    if not (model.exists() and tok.exists()):
        pytest.skip(f"reference checkpoint not found in {SHARED_DATA} (stories260K.bin, tok512.bin)")
    return model, tok


def scons(build_dir, *args, cwd=ROOT, check=True, env=None, timeout=900):
    """Run SCons like a user would; return the CompletedProcess (stdout+stderr merged).

    Building an image needs syslinux (the default BIOS bootloader): skip, saying so, without it."""
    if any(a in ("image", "run", "flash") for a in args) and tool("syslinux") is None:
        pytest.skip("building the image needs syslinux (Debian package; tools/setup.sh installs it)")
    cmd = [sys.executable, "-m", "SCons", f"BUILD_DIR={build_dir}", *args]
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"scons {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}")
    return proc


def qemu(image=None, *, kernel=None, usb=False, firmware="bios", timeout=300, cpu=None, extra=(), memory="256M",
         smp=None):
    """Boot `image` (and/or a -kernel) with the build's QEMU runner; return (exit status, serial output)."""
    need(qemu_runner.QEMU)
    cmd = qemu_runner.qemu_command(image=image, kernel=kernel, firmware=firmware, disk="usb" if usb else "ide",
                                   cpu=cpu, extra=extra, memory=memory, smp=smp)
    try:
        run = qemu_runner.run_qemu(cmd, timeout=timeout)
    except BareflowError as exc:
        raise AssertionError(f"QEMU hung: {exc}") from None
    return run.status, run.output


def hosted(program, image, timeout=120):
    proc = subprocess.run([str(program), str(image)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=timeout)
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def result(output):
    """The JSON of the last BAREFLOW-RESULT line."""
    lines = [l for l in output.splitlines() if l.startswith("BAREFLOW-RESULT ")]
    assert lines, f"no BAREFLOW-RESULT line in output:\n{output[-3000:]}"
    return json.loads(lines[-1][len("BAREFLOW-RESULT "):])


def image_file(image, path):
    """Read one file out of the image's FAT16 partition with mtools (an independent reader)."""
    need("mtype")
    proc = subprocess.run([tool("mtype"), "-i", f"{image}@@{PARTITION_OFFSET}", f"::{path}"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=MTOOLS_ENV)
    assert proc.returncode == 0, f"mtype {path}: {proc.stderr.decode()}"
    return proc.stdout


MTOOLS_ENV = dict(os.environ, MTOOLS_SKIP_CHECK="1")


def image_with_files(image, directory, files=None, name="run.img"):
    """A copy of `image` as directory/name with `files` ({FAT16 path: bytes}) written into its
    partition by mtools' mcopy (an independent FAT16 writer); returns the copy's path."""
    directory = Path(directory)
    copy = directory / name
    copy.write_bytes(Path(image).read_bytes())
    if files:
        need("mcopy")
    for path, data in (files or {}).items():
        local = directory / Path(path).name
        local.write_bytes(data)
        proc = subprocess.run([tool("mcopy"), "-o", "-i", f"{copy}@@{PARTITION_OFFSET}", str(local), f"::{path}"],
                              capture_output=True, env=MTOOLS_ENV)
        assert proc.returncode == 0, f"mcopy {path}: {proc.stderr.decode()}"
    return copy


def module_bitcode(directory, name, source):
    """directory/name.bc: the layer-module C `source` (after `#include "bareflow/layer_abi.h"`)
    compiled to bitcode with the build's freestanding flags, as test modules need."""
    from bareflow.bitcode import compile as bitcode
    from bareflow.bitcode import toolchain
    src, bc = Path(directory) / f"{name}.c", Path(directory) / f"{name}.bc"
    src.write_text('#include "bareflow/layer_abi.h"\n' + source)
    bitcode.compile_bitcode(src, bc, cflags=toolchain.FREESTANDING_CFLAGS, include_dirs=[ROOT / "src/include"],
                            what=f"test module {name}")
    return bc


def reference_tokens(model, tokenizer, prompt="Once upon a time", steps=32, temperature=0.0, topp=0.9, seed=42):
    from bareflow.model import reference
    return reference.generate(str(model), str(tokenizer), prompt, steps, temperature, topp, seed)


# /proc/cpuinfo flag names of each level's features (x86-64 psABI levels; the kernel's own
# check is src/include/bareflow/x86_isa.h, which also looks at XCR0 - Linux enables it all).
_LEVEL_FLAGS = {
    "x86-64-v2": {"pni", "ssse3", "cx16", "sse4_1", "sse4_2", "popcnt", "lahf_lm"},
    "x86-64-v3": {"avx", "avx2", "fma", "bmi1", "bmi2", "movbe", "f16c", "abm", "xsave"},
    "x86-64-v4": {"avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl"},
}


def host_isa_levels():
    """The ISA levels this machine runs, lowest first (x86-64 always)."""
    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    levels = ["x86-64"]
    for level, need in _LEVEL_FLAGS.items():
        if not need <= flags:
            break
        levels.append(level)
    return levels
