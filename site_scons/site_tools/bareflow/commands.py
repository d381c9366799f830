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


def qemu_command(image, firmware="bios", disk="ide", memory="256M"):
    cmd = ["qemu-system-x86_64", "-display", "none", "-serial", "stdio", "-no-reboot", "-m", memory,
           "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
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


def run_copy_path(env):
    """Where `scons run` boots the build's image: a copy, so the kernel's write-back of
    /PROFILE.BIN never makes the build's image and its block map disagree (issue 8)."""
    return os.path.join(env.Dir("$BF_BUILD").abspath, "run", "bareflow.img")


def run_target(env, v, image):
    image_path = v["IMAGE"]
    verbose = env["BF_VERBOSE"]
    builds_own = os.path.abspath(image_path) == image[0].abspath

    def run(target, source, _env):
        from bareflow_plugins import blockmap
        from bareflow_plugins.flash.bmap import default_bmap_path
        timeout = qemu_timeout(v["QEMU_TIMEOUT"])
        boot = image_path
        if builds_own:
            boot = run_copy_path(env)
            os.makedirs(os.path.dirname(boot), exist_ok=True)
            tmp = boot + ".tmp"
            with open(image_path, "rb") as src, open(tmp, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            os.replace(tmp, boot)
            print(f"bareflow: booting a copy of {image_path}: {boot}")
        cmd = qemu_command(boot, v["FIRMWARE"], v["DISK"])
        if verbose:
            print(" ".join(cmd))
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, timeout=timeout)
        except FileNotFoundError:
            raise BareflowError("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")
        except subprocess.TimeoutExpired:
            raise BareflowError(f"QEMU did not finish within {timeout:g} s (QEMU_TIMEOUT)")
        if builds_own:
            print(f"bareflow: this run's /PROFILE.BIN is in {boot} (scons profile reads it); "
                  f"{image_path} and its block map are unchanged, ready for scons flash")
        else:
            # The kernel wrote /PROFILE.BIN into the user's image: keep a block map beside it true.
            bmap_path = default_bmap_path(image_path)
            if os.path.exists(bmap_path):
                blockmap.write_bmap(blockmap.block_map_from_image(image_path), bmap_path)
                print(f"bareflow: {image_path} now holds this run's /PROFILE.BIN; {bmap_path} was "
                      "updated to match")
        if proc.returncode != QEMU_SUCCESS:
            raise BareflowError(f"the kernel failed: QEMU exit status {proc.returncode} "
                                f"(kernel code {proc.returncode >> 1})")
    deps = image if builds_own else [image_path]
    S.Alias("run", deps, S.Action(report_errors(run), None))
    S.AlwaysBuild("run")


def profile_target(env, v):
    out = env.File("$BF_BUILD/profile.bin").abspath

    def extract(target, source, _env):
        from bareflow_plugins import profile
        source = v["IMAGE"]
        copy = run_copy_path(env)
        if env.get("BF_IMAGE_DEFAULTED") and os.path.exists(copy) and \
                (not os.path.exists(source) or os.path.getmtime(copy) >= os.path.getmtime(source)):
            source = copy                                   # where `scons run` left the profile
            print(f"bareflow: reading the profile of the last `scons run` from {copy}")
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
