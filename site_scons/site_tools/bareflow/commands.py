"""Command targets (run, profile, flash, plugins) and the C environment for kernel objects."""
import os
import subprocess
import sys

import SCons.Script as S

from bareflow_plugins import toolchain
from bareflow_plugins.errors import BareflowError

from .actions import report_errors, write_atomic

QEMU_SUCCESS = 33          # isa-debug-exit: the kernel writes 0x10 on success -> (0x10 << 1) | 1


def action_print(text_fn):
    def show(target, source, env):
        print(text_fn())
        return 0
    return S.Action(show, None)


def c_env(env, cppath):
    """A clone that compiles freestanding C and assembly with zig's clang."""
    cenv = env.Clone(tools=["cc", "as"])
    from bareflow_plugins import kernel_recipe   # one definition of the kernel's flags
    cenv.Replace(CC=" ".join(f'"{c}"' if " " in c else c for c in toolchain.CC),
                 AS="$CC", CCFLAGS=kernel_recipe.KERNEL_CFLAGS, CFLAGS=[], CPPPATH=cppath,
                 ASPPFLAGS=kernel_recipe.KERNEL_ASFLAGS, OBJSUFFIX=".o")
    if not env["BF_VERBOSE"]:
        cenv.Replace(CCCOMSTR="  CC       $SOURCE", ASPPCOMSTR="  AS       $SOURCE")
    return cenv


def objects(cenv, src_dir, obj_dir):
    sources = sorted(cenv.Glob(f"{src_dir}/*.c") + cenv.Glob(f"{src_dir}/*.S"), key=str)
    out = []
    for src in sources:
        stem = os.path.splitext(os.path.basename(str(src)))[0]
        suffix = "_S" if str(src).endswith(".S") else ""
        out += cenv.Object(f"{obj_dir}/{stem}{suffix}.o", src)
    return out


def qemu_smp_args(text):
    """-smp N, plus multi-threaded TCG (one host thread per virtual CPU) when this QEMU accepts it
    for x86 guests; SMP must be a whole number 1..64."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 64:
        raise BareflowError(f"SMP={text!r}: expected a number of virtual CPUs, 1..64")
    args = ["-smp", str(n)]
    if n > 1 and _qemu_has_mttcg():
        args += ["-accel", "tcg,thread=multi"]
    return args


_MTTCG = {}


def _qemu_has_mttcg():
    """Ask QEMU once: an empty machine with -accel tcg,thread=multi, told to quit at once."""
    if "ok" not in _MTTCG:
        try:
            proc = subprocess.run(["qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none",
                                   "-accel", "tcg,thread=multi", "-monitor", "stdio"], input=b"quit\n",
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
            _MTTCG["ok"] = proc.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _MTTCG["ok"] = False
    return _MTTCG["ok"]


def qemu_command(image, firmware="bios", disk="ide", memory="256M", smp="1"):
    cmd = ["qemu-system-x86_64", "-display", "none", "-serial", "stdio", "-no-reboot", "-m", memory,
           "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"] + qemu_smp_args(smp)
    if disk == "ide":
        cmd += ["-drive", f"file={image},format=raw,if=ide"]
    elif disk == "usb":     # no IDE controller sees it: the kernel runs from the handed-over files
        cmd += ["-drive", f"if=none,id=stick,file={image},format=raw",
                "-device", "qemu-xhci", "-device", "usb-storage,drive=stick"]
    else:
        raise BareflowError(f"DISK={disk!r}: expected ide or usb")
    if firmware == "uefi":
        cmd += ["-bios", "/usr/share/ovmf/OVMF.fd"]
    elif firmware != "bios":
        raise BareflowError(f"FIRMWARE={firmware!r}: expected bios or uefi")
    return cmd


def qemu_timeout(text):
    """QEMU_TIMEOUT in seconds; checked only when `scons run` runs, so it cannot break other targets."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is None or not 0 < seconds < float("inf"):
        raise BareflowError(f"QEMU_TIMEOUT={text!r}: expected a positive number of seconds")
    return seconds


def run_target(env, v, image):
    image_path = v["IMAGE"]
    verbose = env["BF_VERBOSE"]

    def run(target, source, _env):
        timeout = qemu_timeout(v["QEMU_TIMEOUT"])
        cmd = qemu_command(image_path, v["FIRMWARE"], v["DISK"], smp=v["SMP"])
        if verbose:
            print(" ".join(cmd))
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, timeout=timeout)
        except FileNotFoundError:
            raise BareflowError("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")
        except subprocess.TimeoutExpired:
            raise BareflowError(f"QEMU did not finish within {timeout:g} s (QEMU_TIMEOUT)")
        if proc.returncode != QEMU_SUCCESS:
            raise BareflowError(f"the kernel failed: QEMU exit status {proc.returncode} "
                                f"(kernel code {proc.returncode >> 1})")
    deps = image if os.path.abspath(image_path) == image[0].abspath else [image_path]
    S.Alias("run", deps, S.Action(report_errors(run), None))
    S.AlwaysBuild("run")


def profile_target(env, v):
    out = env.File("$BF_BUILD/profile.bin").abspath

    def extract(target, source, _env):
        from bareflow_plugins import profile
        source = v["IMAGE"]
        try:
            with open(source, "rb") as handle:
                head = handle.read(512)
        except OSError as exc:
            raise BareflowError(f"IMAGE={source}: {exc.strerror}") from None
        if len(head) == 512 and head[510:] == b"\x55\xaa":
            data = profile.extract_profile(source)          # a disk image the kernel wrote back to
        else:                                               # a PROFILE.BIN, or a serial log
            data = profile.encode_profile(profile.load_profile(source))
        write_atomic(out, data)
        print(profile.describe(profile.decode_profile(data)))
        print(f"profile written to {out}; use: scons image PROFILE={out}")
    S.Alias("profile", [], S.Action(report_errors(extract), None))
    S.AlwaysBuild("profile")


def flash_target(env, v, image, pm):
    def flash(target, source, env):
        from bareflow_plugins.flash import api
        api.flash_from_variables(pm, v)
    deps = image if os.path.abspath(v["IMAGE"]) == image[0].abspath else []
    S.Alias("flash", deps, S.Action(report_errors(flash), None))
    S.AlwaysBuild("flash")
