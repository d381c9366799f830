"""Command targets (plugins, run, profile, flash) and the C environment for kernel objects."""
import os
import shutil

import SCons.Script as S

from bareflow.bitcode import toolchain
from bareflow.core.atomicfile import replace_atomically
from bareflow.boot import qemu
from bareflow.errors import BareflowError

from .actions import report_errors, write_atomic


def action_print(text_fn):
    def show(target, source, env):
        print(text_fn())
        return 0
    return S.Action(show, None)


def plugins_target(pm):
    """`scons plugins`: what is loaded, each plugin's hooks, registrations and variables."""
    S.Alias("plugins", [], action_print(pm.describe))
    S.AlwaysBuild("plugins")


def c_env(env, cppath):
    """A clone that compiles freestanding C and assembly with zig's clang."""
    cenv = env.Clone(tools=["cc", "as"])
    from bareflow.kernel import recipe as kernel_recipe   # one definition of the kernel's flags
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


def run_copy_path(env):
    """Where `scons run` boots the build's image: a copy, so the kernel's write-back of
    /PROFILE.BIN never makes the build's image and its block map disagree."""
    return os.path.join(env.Dir("$BF_BUILD").abspath, "run", "bareflow.img")


def run_target(env, v, image):
    image_path = v["IMAGE"]
    verbose = env["BF_VERBOSE"]
    builds_own = os.path.abspath(image_path) == image[0].abspath

    def run(target, source, _env):
        from bareflow.flash.bmap import default_bmap_path
        from bareflow.image import blockmap
        timeout = qemu.parse_timeout(v.get("QEMU_TIMEOUT", "600"))
        boot = image_path
        if builds_own:
            boot = run_copy_path(env)
            with open(image_path, "rb") as src, replace_atomically(boot) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            print(f"bareflow: booting a copy of {image_path}: {boot}")
        cmd = qemu.qemu_command(image=boot, firmware=v.get("FIRMWARE", "bios"), disk=v.get("DISK", "ide"),
                                smp=v.get("SMP", "2"))
        if verbose:
            print(" ".join(cmd))
        try:
            status = qemu.run_qemu(cmd, timeout=timeout, capture=False).status
        except qemu.QemuTimeout:
            raise BareflowError(f"QEMU did not finish within {timeout:g} s (QEMU_TIMEOUT)") from None
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
        if status != qemu.EXIT_SUCCESS:
            raise BareflowError(f"the kernel failed: QEMU exit status {status} (kernel code {status >> 1})")
    deps = image if builds_own else [image_path]
    S.Alias("run", deps, S.Action(report_errors(run), None))
    S.AlwaysBuild("run")


def profile_target(env, v):
    out = env.File("$BF_BUILD/profile.bin").abspath

    def extract(target, source, _env):
        from bareflow.policy import profile
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
        from bareflow.flash import api
        api.flash_from_variables(pm, v)
    deps = image if os.path.abspath(v["IMAGE"]) == image[0].abspath else []
    S.Alias("flash", deps, S.Action(report_errors(flash), None))
    S.AlwaysBuild("flash")
