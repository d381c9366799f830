"""Before any step: load the plugins, gather their variables, read the command line, set up BUILD_DIR.

Plugins are loaded first (PLUGINS and BLOCK_PLUGINS are read raw from the command line for that),
because the variables themselves come from the plugins (bareflow_register_variables).  Values are
kept as the text the user typed (no SCons substitution) and each is checked once by the variable
that declares it; `scons -h` prints the table grouped by plugin.
"""
import os

import SCons.Errors
import SCons.Script as S

from bareflow.core import build as core_build
from bareflow.core import manager
from bareflow.core.variables import flag, span, unknown_variables
from bareflow.errors import BareflowError
from bareflow.image import fat16

from . import settings

TARGETS_HELP = """
Targets:
  scons image      build BUILD_DIR/bareflow.img (default)
  scons hosted     build BUILD_DIR/bareflow-hosted (runs an image natively: bareflow-hosted IMAGE)
  scons run        boot IMAGE in QEMU and stream its serial console (FIRMWARE=bios|uefi)
  scons profile    extract the runtime profile from IMAGE into BUILD_DIR/profile.bin
  scons flash      write IMAGE to DEVICE (FLASH_TARGET=raw|file|tftp, YES=1)
  scons plugins    list the loaded plugins, their hooks, policies, providers and targets
  scons -c         remove everything the build wrote under BUILD_DIR
"""


def load(env):
    """(plugin manager, {variable: text as typed or its default}) for this invocation.

    Raises BareflowError for a plugin that cannot load, a malformed declaration, an unknown
    variable on the command line, or a value its variable refuses.
    """
    arguments = settings.reuse(dict(S.ARGUMENTS))        # a bare `scons run`/`flash`: the image's own
    env["BF_TYPED_VARIABLES"] = arguments
    pm = manager.load_plugins({k: arguments.get(k, "") for k in ("PLUGINS", "BLOCK_PLUGINS")})
    declared = core_build.declared_variables(pm)
    S.Help(help_text(declared, arguments), append=False)
    known = {var.name: var for group in declared.values() for var in group}
    unknown_variables(arguments, known)
    values = {name: arguments.get(name, var.default) for name, var in known.items()}
    if not S.GetOption("help"):
        for name, var in known.items():
            var.convert(values[name])
    return pm, values


TARGETS = ("image", "hosted", "run", "profile", "flash", "plugins")


def check_targets():
    """Refuse a command-line target that is neither one of TARGETS nor a file path (a typo such as
    `scons imgae` otherwise gets SCons's bare "Do not know how to make File target")."""
    import difflib
    for target in S.COMMAND_LINE_TARGETS:
        if target in TARGETS or "/" in target or "." in target:
            continue
        close = difflib.get_close_matches(target, TARGETS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise BareflowError(f"unknown target {target!r}: {hint}the targets are {', '.join(TARGETS)} "
                            f"(scons -h lists them)")


def help_text(declared, arguments) -> str:
    """The variable table of `scons -h`: one block per plugin, each variable with its kind."""
    lines = ["BareFlow build variables (NAME=value on the command line), by the plugin that declares them:"]
    for plugin, variables in declared.items():
        lines.append("")
        lines.append(f"{plugin}:")
        for var in variables:
            allowed = ""
            if var.kind == "bool":
                allowed = " (yes|no)"
            elif var.kind == "enum":
                allowed = f" ({'|'.join(var.allowed)})"
            elif var.kind == "list":
                allowed = f" (comma-separated: {', '.join(var.allowed)}; all, none)"
            elif var.kind == "int":
                allowed = f" (integer {span(var.low)}..{span(var.high)})"
            lines.append(f"  {var.name}: {var.help}{allowed}")
            shown = f"    default: {var.default!r}"
            if var.name in arguments:
                shown += f"   given: {arguments[var.name]!r}"
            lines.append(shown)
    return "\n".join(lines) + "\n" + TARGETS_HELP


def build_dir(env, v):
    """Every output, SCons's own database, zig's cache and the optional CacheDir set up."""
    directory = v["BUILD_DIR"] or "build"
    env["BF_VERBOSE"] = flag(v, "VERBOSE")
    env["BF_BUILD"] = directory if os.path.isabs(directory) else "#" + directory
    try:
        root = env.Dir("$BF_BUILD").abspath
        os.makedirs(root, exist_ok=True)
    except (OSError, TypeError) as exc:        # SCons: TypeError when a file stands on the path
        raise BareflowError(f"BUILD_DIR={directory}: cannot create the build directory "
                            f"({getattr(exc, 'strerror', None) or exc}); choose a writable directory") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise BareflowError(f"BUILD_DIR={directory}: the build directory {root} is not writable; "
                            f"choose a writable directory")
    env.SConsignFile(os.path.join(root, ".sconsign"))
    env["BF_IMAGE_DEFAULTED"] = not v["IMAGE"]
    v["IMAGE"] = v["IMAGE"] or os.path.join(root, "bareflow.img")
    # zig needs a cache directory; SCons runs tools with a clean ENV, so say where explicitly.
    for key in ("ZIG_GLOBAL_CACHE_DIR", "ZIG_LOCAL_CACHE_DIR"):
        env["ENV"][key] = os.environ[key] = os.path.join(root, "zig-cache")
    # SOURCE_DATE_EPOCH is checked once, here; the tools the steps run (clang, syslinux) then see
    # the checked value, so none of them reads an empty or different one.
    env["BF_EPOCH"] = fat16.epoch_from_environ()
    os.environ["SOURCE_DATE_EPOCH"] = str(env["BF_EPOCH"])
    if v["CACHE_DIR"]:
        try:
            env.CacheDir(os.path.abspath(v["CACHE_DIR"]))
        except (OSError, SCons.Errors.SConsEnvironmentError) as exc:
            raise BareflowError(f"CACHE_DIR={v['CACHE_DIR']}: cannot use it as the build cache ({exc}); "
                                f"choose a writable directory") from None
    return root
