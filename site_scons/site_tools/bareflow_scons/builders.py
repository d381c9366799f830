"""SCons builders for the BareFlow pipeline, each a thin shell over bareflow.

Bitcode     modules/<layer>.c         -> build/bc/<layer>.bc          (C scanner tracks headers)
Tier        build/bc/<layer>.bc       -> build/tiers/<isa>/<layer>.<tier>.o
LibcSelect  tier objects + kernel objs -> libc_subset.o, manifest.json, LIBC.MAN, exports.c
ModuleFile  tier object + manifest    -> build/modules/<isa>/<LAYER>.<tier>  (BFMD)
LinkKernel  kernel objects            -> build/kernel/KERNEL.BIN
LinkHosted  runtime + hosted objects  -> build/bareflow-hosted
WriteBytes  Value(bytes)              -> file
TokenizerFile tokenizer.bin / GGUF    -> TOKENIZR.BIN v2 (docs/tokenizer-format.md)
DiskImage   image files               -> build/bareflow.img + build/bareflow.bmap
"""
import json
import os

import SCons.Action
import SCons.Builder
import SCons.Node.Python
import SCons.Scanner.C

from bareflow.libc import selection as libc_mod
from bareflow.bitcode import compile as bitcode
from bareflow.kernel import recipe
from bareflow.modules import modformat
from bareflow.tiers import compile as tiers

from .actions import LLVM_LOCK, read, report_errors, write_atomic


def _bitcode(target, source, env):
    bitcode.compile_bitcode(str(source[0]), str(target[0]), cflags=env["BF_MODULE_CFLAGS"],
                            include_dirs=env["BF_CPPPATH"], what=f"module {env['BF_LAYER']}",
                            verbose=env.get("BF_VERBOSE"))


def _tier(target, source, env):
    link = None
    if env.get("BF_LIBC_INLINE"):
        link = libc_mod.bitcode_resolver(env["BF_LIBC_PROVIDERS"], env.Dir("$BF_BUILD/libc/cache").abspath,
                                         verbose=env.get("BF_VERBOSE"))
    with LLVM_LOCK:
        obj = tiers.compile_tier(read(source[0]), env["BF_TIER"], env["BF_ISA"],
                                 module_name=env["BF_LAYER"], link_bitcode=link)
    write_atomic(target[0], obj)


def _libc_select(target, source, env):
    providers = env["BF_LIBC_PROVIDERS"]
    named = [(env["BF_REQUIRERS"].get(s.abspath, str(s)), read(s)) for s in source]
    requirements = libc_mod.undefined_requirements(named, env["BF_LINK_PROVIDED"])
    program = libc_mod.definitions([(r, data) for r, data in named
                                    if not r.startswith(libc_mod.MODULE_REQUIRER)], env["BF_LINK_PROVIDED"])
    selection = libc_mod.select(requirements, providers, env.Dir("$BF_BUILD/libc/cache").abspath,
                                verbose=env.get("BF_VERBOSE"), program_defines=program)
    objs_dir = env.Dir("$BF_BUILD/libc/subset").abspath
    os.makedirs(objs_dir, exist_ok=True)
    paths = []
    for key, data in sorted(selection.objects.items()):
        path = os.path.join(objs_dir, key.replace(":", "_") + ".o")
        write_atomic(path, data)
        paths.append(path)
    subset, manifest_json, manifest_text, exports_c = (str(t) for t in target)
    module_imports = libc_mod.module_imports(selection)
    libc_mod.combine_objects(paths, subset, verbose=env.get("BF_VERBOSE"))
    write_atomic(manifest_json, json.dumps({"symbols": selection.manifest(),
                                            "module_imports": sorted(module_imports)},
                                           indent=1, sort_keys=True).encode())
    write_atomic(manifest_text, selection.manifest_text().encode())
    write_atomic(exports_c, libc_mod.exports_source(module_imports).encode())


def _module_file(target, source, env):
    manifest = json.loads(read(source[1]))
    data = modformat.pack(read(source[0]), layer=env["BF_LAYER"], tier=env["BF_TIER"],
                          isa=env["BF_ISA"], exports=set(manifest["module_imports"]))
    write_atomic(target[0], data)


def _tokenizer_file(target, source, env):
    from bareflow.model import tokenizer_v2
    vocab_size = env.get("BF_VOCAB_SIZE")
    tokenizer_v2.convert_file(str(source[0]), str(target[0]), int(vocab_size) if vocab_size else None)


def _write_bytes(target, source, env):
    write_atomic(target[0], source[0].read())


def _bitcode_file(target, source, env):
    from bareflow.bitcode import bitcodefile
    write_atomic(target[0], bitcodefile.pack(read(source[0]), layer=env["BF_LAYER"]))


def _link_kernel(target, source, env):
    objs = [str(s) for s in source if os.path.getsize(str(s)) > 0]
    if env.get("BF_LINK_EXTRA"):        # JIT=llvm: LLVM inside the kernel (docs/jit.md)
        from bareflow.kernel import jit_recipe
        jit_recipe.link_kernel(objs, str(target[1]), str(target[0]), env["BF_LINK_EXTRA"],
                               verbose=env.get("BF_VERBOSE"))
        return
    recipe.link_kernel(objs, str(target[1]), str(target[0]), env.File("#src/kernel/kernel.ld").abspath,
                       verbose=env.get("BF_VERBOSE"))


def _link_hosted(target, source, env):
    objs = [str(s) for s in source if os.path.getsize(str(s)) > 0]
    recipe.link_hosted(objs, str(target[0]), verbose=env.get("BF_VERBOSE"),
                       extra=env.get("BF_LINK_EXTRA") or ())     # JIT=llvm: LLVM's archives (docs/jit.md)


# A fixed volume id and disk signature: the image must not depend on when or where it was built.
# ("BAREFLOW" in hex-speak, more or less.)
VOLUME_ID = 0xBA4EF10A
DISK_SIGNATURE = 0xBA4EF10B


def _disk_image(target, source, env):
    from bareflow.image import bootloader
    from bareflow.image import diskimage
    spec = source[0].read()             # Value: {"paths": [...], "settings": {...}}
    settings = spec["settings"]
    files = {path: read(node) for path, node in zip(spec["paths"], source[1:])}
    loaders = bootloader.select_bootloaders(env["BF_PLUGIN_MANAGER"].registered("bootloaders").values(), settings["bootloaders"])
    diskimage.build_disk_image(str(target[0]), files, volume_id=VOLUME_ID, disk_signature=DISK_SIGNATURE,
                               bootloaders=loaders, epoch=settings["epoch"],
                               variables=settings["variables"], bmap_path=str(target[1]))


def _str(label, runs_command):
    def describe(target, source, env):
        if not env.get("BF_VERBOSE"):
            return f"  {label:<8} {target[0]}"
        if runs_command:
            return None                     # toolchain.run prints the full command line
        settings = " ".join(f"{k}={env[k]}" for k in ("BF_LAYER", "BF_TIER", "BF_ISA") if env.get(k))
        names = ["<generated>" if isinstance(s, SCons.Node.Python.Value) else str(s) for s in source]
        return (f"{label.lower()}({settings}) " + " ".join(names)
                + " -> " + " ".join(str(t) for t in target))
    return describe


def _action(func, label, varlist=(), runs_command=False):
    return SCons.Action.Action(report_errors(func), strfunction=_str(label, runs_command),
                               varlist=list(varlist))


def add_builders(env):
    c_scanner = SCons.Scanner.C.CScanner()
    env["BUILDERS"].update({
        "BfBitcode": SCons.Builder.Builder(
            action=_action(_bitcode, "BC", ["BF_MODULE_CFLAGS", "BF_CPPPATH"], runs_command=True),
            suffix=".bc", source_scanner=c_scanner),
        "BfTier": SCons.Builder.Builder(action=_action(_tier, "TIER", ["BF_TIER", "BF_ISA", "BF_LIBC_INLINE"])),
        "BfLibcSelect": SCons.Builder.Builder(action=_action(_libc_select, "LIBC")),
        "BfModuleFile": SCons.Builder.Builder(action=_action(_module_file, "MODULE", ["BF_TIER", "BF_ISA"])),
        "BfWriteBytes": SCons.Builder.Builder(action=_action(_write_bytes, "GEN")),
        "BfBitcodeFile": SCons.Builder.Builder(action=_action(_bitcode_file, "BCFILE", ["BF_LAYER"])),
        "BfTokenizerFile": SCons.Builder.Builder(action=_action(_tokenizer_file, "TOKENIZE", ["BF_VOCAB_SIZE"])),
        "BfLinkKernel": SCons.Builder.Builder(action=_action(_link_kernel, "LINK", ["BF_LINK_EXTRA"],
                                                             runs_command=True)),
        "BfLinkHosted": SCons.Builder.Builder(action=_action(_link_hosted, "LINK", ["BF_LINK_EXTRA"],
                                                             runs_command=True)),
        "BfDiskImage": SCons.Builder.Builder(action=_action(_disk_image, "IMAGE")),
    })
