"""Command targets (plugins, run, profile, flash) and the C environment for kernel objects."""
import os
import shutil

import SCons.Script as S

from bareflow.bitcode import toolchain
from bareflow.core.atomicfile import replace_atomically
from bareflow.boot import qemu
from bareflow.errors import BareflowError
from bareflow.tiers.levels import parse_isa_list

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


# Images this big get a note before the boot: syslinux's "Loading /MODEL.BIN..." then sits silent.
LOAD_NOTE_MIB = 32


def run_target(env, v, image):
    image_path = v["IMAGE"]
    verbose = env["BF_VERBOSE"]
    builds_own = os.path.abspath(image_path) == image[0].abspath

    def run(target, source, _env):
        from bareflow.flash.bmap import default_bmap_path
        from bareflow.image import blockmap
        timeout = qemu.parse_timeout(v.get("QEMU_TIMEOUT", "600"))
        boot = image_path
        if not builds_own and not os.path.isfile(image_path):
            raise BareflowError(f"IMAGE={image_path}: no such image file; name a built image, or leave "
                                f"IMAGE out to boot the build's own (scons run builds it)")
        if builds_own:
            boot = run_copy_path(env)
            with open(image_path, "rb") as src, replace_atomically(boot) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            print(f"bareflow: booting a copy of {image_path}: {boot}")
        cpu = v.get("QEMU_CPU") or None
        if cpu is None and builds_own and parse_isa_list(v["ISA"])[0] != "x86-64":
            cpu = "max"                       # QEMU's default CPU (qemu64) has no SSE4.2, AVX2, ...
            print(f"bareflow: ISA={v['ISA']} needs more than QEMU's default CPU: -cpu max (QEMU_CPU= to choose)")
        size_mib = os.path.getsize(boot) / 2**20
        if size_mib >= LOAD_NOTE_MIB:
            print(f"bareflow: the boot loader reads the image's files ({size_mib:.0f} MiB) before the kernel "
                  f"starts, with no progress shown: under QEMU's TCG that takes a while (SmolLM2's 95 MiB: "
                  f"about 40 s on a busy 2-core VM, then ~7 s per position); QEMU_TIMEOUT={timeout:g} s "
                  f"bounds the whole run")
        cmd = qemu.qemu_command(image=boot, firmware=v.get("FIRMWARE", "bios"), disk=v.get("DISK", "ide"),
                                smp=v.get("SMP", "2"), cpu=cpu)
        if verbose:
            print(" ".join(cmd))
        try:
            status = qemu.run_qemu(cmd, timeout=timeout, capture=False).status
        except qemu.QemuTimeout as exc:
            hint = ("; the serial console stayed silent: the image may not be bootable (no bootloader, "
                    "or not a disk image) or this firmware cannot start it (try FIRMWARE=uefi or bios)"
                    if exc.silent else "")
            raise BareflowError(f"QEMU did not finish within {timeout:g} s (QEMU_TIMEOUT){hint}") from None
        if not builds_own:
            # The kernel may have written /PROFILE.BIN into the user's image: keep a block map beside it true.
            bmap_path = default_bmap_path(image_path)
            if os.path.exists(bmap_path):
                blockmap.write_bmap(blockmap.block_map_from_image(image_path), bmap_path)
                print(f"bareflow: {image_path} may now hold this run's /PROFILE.BIN; {bmap_path} was updated to match")
        if status != qemu.EXIT_SUCCESS:
            raise BareflowError(f"the kernel failed: QEMU exit status {status} (kernel code {status >> 1})")
        if builds_own and v.get("DISK", "ide") == "usb":
            # The kernel drives ATA disks only: it read the files the boot loader handed over.
            print(f"bareflow: a DISK=usb run writes no /PROFILE.BIN (the kernel has no USB storage "
                  f"driver; boot with DISK=ide to profile); {image_path} and its block map are "
                  f"unchanged, ready for scons flash")
        elif builds_own:
            print(f"bareflow: this run's /PROFILE.BIN is in {boot} (scons profile reads it); "
                  f"{image_path} and its block map are unchanged, ready for scons flash")
    # Another image is checked when the run starts (SCons's "Source not found" says not what to do).
    deps = image if builds_own else []
    S.Alias("run", deps, S.Action(report_errors(run), None))
    S.AlwaysBuild("run")


def _pgo_command(env, profile_path):
    """`scons image ... PROFILE=... POLICY=pgo` with the variables the build's image was made
    with (BUILD_DIR/image-settings.json): a profile fits only the model it was measured on, and
    a bare `scons image` builds the synthetic model."""
    import json
    import shlex
    from .settings import SETTINGS_FILE
    remembered = {}
    if env.get("BF_IMAGE_DEFAULTED"):
        try:
            with open(os.path.join(env.Dir("$BF_BUILD").abspath, SETTINGS_FILE), encoding="utf-8") as fh:
                remembered = json.load(fh)
        except (OSError, ValueError):
            pass
    if not isinstance(remembered, dict):
        remembered = {}
    words = [f"{k}={v}" for k, v in sorted(remembered.items()) if k not in ("PROFILE", "POLICY")]
    words += [f"PROFILE={profile_path}", "POLICY=pgo"]
    return "scons image " + " ".join(shlex.quote(w) for w in words)


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
        decoded = profile.decode_profile(data)
        if not decoded.layers:      # the image's placeholder: no run wrote it back
            raise BareflowError(f"{source}: /PROFILE.BIN is empty: no run has written it back (scons run "
                                f"first; a run with DISK=usb or one that failed writes none); {out} was left "
                                f"as it was")
        write_atomic(out, data)
        print(profile.describe(decoded))
        print(f"profile written to {out}; use: {_pgo_command(env, out)}")
    S.Alias("profile", [], S.Action(report_errors(extract), None))
    S.AlwaysBuild("profile")


def flash_target(env, v, image, pm):
    def flash(target, source, env):
        from bareflow.flash import api
        api.flash_from_variables(pm, v)
    deps = image if os.path.abspath(v["IMAGE"]) == image[0].abspath else []
    S.Alias("flash", deps, S.Action(report_errors(flash), None))
    S.AlwaysBuild("flash")
