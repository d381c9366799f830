"""Wire the BareFlow targets: image, hosted, run, profile, flash, plugins.

Everything decided at read time (model shape, policy decisions, tiers to build) is computed by
bareflow_plugins; this file only turns those answers into SCons nodes.
"""
import json
import os
import sys

import SCons.Script as S

from bareflow_plugins import libc as libc_mod
from bareflow_plugins import bootconfig, layers, manager, policy, policytable, profile, toolchain
from bareflow_plugins.errors import BareflowError
from bareflow_plugins.modformat import file_name as module_path
from bareflow_plugins.tiers import check_isa

from . import commands
from . import jit as jit_wiring

DEFAULT_EPOCH = 1704067200          # 2024-01-01: used when SOURCE_DATE_EPOCH is not set


def variables():
    vs = S.Variables(None, S.ARGUMENTS)
    vs.AddVariables(
        ("MODEL", "llama2.c checkpoint (default: the generated synthetic model)", ""),
        ("TOKENIZER", "llama2.c tokenizer for MODEL", ""),
        ("POLICY", "JIT policy name (see `scons plugins`)", "tiered"),
        ("TIER", "tier for POLICY=fixed (O0..O3)", "O2"),
        ("ISA", "ISA level the tiers are compiled for: x86-64 or x86-64-v3", "x86-64"),
        ("PROFILE", "runtime profile (PROFILE.BIN or a serial log) handed to the policy", ""),
        ("PROMPT", "prompt written to /BAREFLOW.CFG", bootconfig.DEFAULTS["prompt"]),
        ("STEPS", "positions to run, prompt included", bootconfig.DEFAULTS["steps"]),
        ("TEMPERATURE", "sampling temperature, 0 = greedy", bootconfig.DEFAULTS["temperature"]),
        ("TOPP", "top-p nucleus mass", bootconfig.DEFAULTS["topp"]),
        ("SEED", "sampling seed", bootconfig.DEFAULTS["seed"]),
        ("PLUGINS", "extra plugin modules to load, comma-separated", ""),
        ("BLOCK_PLUGINS", "plugin names not to load, comma-separated", ""),
        ("BOOTLOADERS", "bootloader plugins that go on the image, comma-separated", "syslinux,uefi"),
        ("LIBC_INLINE", "link bitcode libc into modules before tiering (yes/no)", "no"),
        ("LIBC_PREFER", "libc provider asked first, by name (see `scons plugins`)", ""),
        ("JIT", "run-time compiler: none (ahead-of-time tiers only) or llvm (docs/jit.md)", "none"),
        ("BUILD_DIR", "where every output goes", "build"),
        ("IMAGE", "image for `scons run`/`scons profile`/`scons flash` (default: BUILD_DIR/bareflow.img)", ""),
        ("FIRMWARE", "firmware for `scons run`: bios or uefi", "bios"),
        ("DISK", "how `scons run` attaches the image: ide or usb (usb-storage on xHCI)", "ide"),
        ("QEMU_TIMEOUT", "seconds before `scons run` gives up on QEMU", "600"),
        ("DEVICE", "device or path for `scons flash`", ""),
        ("FLASH_TARGET", "flash target plugin for `scons flash`", "raw"),
        ("FLASH_OPTIONS", "flash target options, name=value,... (see `scons plugins`)", ""),
        ("BMAP", "block map for `scons flash` (default: next to IMAGE)", ""),
        ("YES", "flash without asking for confirmation (1)", "0"),
        ("FORCE_NON_REMOVABLE", "allow flashing a non-removable disk (1)", "0"),
        ("VERBOSE", "print full commands (1)", "0"),
    )
    return vs


def _fail(exc):
    sys.stderr.write(f"bareflow: error: {exc}\n")
    S.Exit(2)


def setup(env):
    """Declare every target; read-time errors stop SCons with one clear message."""
    try:
        _setup(env)
    except BareflowError as exc:
        _fail(exc)


def _vars(env):
    names = [opt.key for opt in variables().options]
    return {name: env.subst(f"${name}") for name in names}


def _setup(env):
    v = _vars(env)
    _build_dir(env, v)
    pm = manager.load_plugins(v)
    # Options that policies document (STOP_PROFILING, PGO_HOT_CALLS, ...) pass straight through.
    v.update({name: S.ARGUMENTS[name] for name in pm.option_variables() if name in S.ARGUMENTS})
    S.Alias("plugins", [], commands.action_print(pm.describe))
    S.AlwaysBuild("plugins")
    if S.GetOption("help") or set(S.COMMAND_LINE_TARGETS) == {"plugins"}:
        return
    if not S.GetOption("clean"):
        toolchain.check_llvm_versions()
    check_isa(v["ISA"])
    pm.hook.bareflow_configure(variables=dict(v))

    jit = jit_wiring.mode(v)
    model_node, tok_node, config = _model(env, v)
    decisions, infos = _decide(pm, v, config, jit)
    providers = _libc_providers(pm, v)
    cppath = [env.Dir("#src/include").abspath, env.Dir("#src/libc/include").abspath,
              env.Dir("#modules/include").abspath]
    tier_objs = _module_tiers(env, pm, v, decisions, providers, cppath)
    kernel_bin, hosted_bin, manifest_json, manifest_text = _kernel(env, providers, cppath, tier_objs, jit)

    files = {"/KERNEL.BIN": kernel_bin[0], "/LIBC.MAN": manifest_text,
             "/MODEL.BIN": model_node, "/TOKENIZR.BIN": tok_node}
    for (layer, tier), obj in sorted(tier_objs.items()):
        files[module_path(layer, tier)] = env.BfModuleFile(
            f"$BF_BUILD/modules/{v['ISA']}/{layer.upper()}.{tier}", [obj, manifest_json],
            BF_LAYER=layer, BF_TIER=tier, BF_ISA=v["ISA"])[0]
    if jit != "none":
        files.update(jit_wiring.bitcode_files(env, layers.LAYER_NAMES))
    table = policytable.encode(decisions, layers.LAYER_NAMES)
    files["/POLICY.TBL"] = env.BfWriteBytes("$BF_BUILD/image/POLICY.TBL", env.Value(table))[0]
    cfg = bootconfig.render({k.lower(): v[k] for k in ("PROMPT", "STEPS", "TEMPERATURE", "TOPP", "SEED")},
                            config.seq_len)
    files["/BAREFLOW.CFG"] = env.BfWriteBytes("$BF_BUILD/image/BAREFLOW.CFG", env.Value(cfg))[0]
    files["/PROFILE.BIN"] = env.BfWriteBytes("$BF_BUILD/image/PROFILE.BIN",
                                             env.Value(profile.empty_profile()))[0]
    summary = policy.summary(decisions, infos)
    env.AddPostAction(files["/POLICY.TBL"], commands.action_print(
        lambda: f"policy {v['POLICY']} ({v['ISA']}):\n{summary}"))
    image = _image(env, pm, v, files)

    S.Alias("image", image)
    S.Alias("hosted", hosted_bin)
    S.Default("image")
    commands.run_target(env, v, image)
    commands.profile_target(env, v)
    commands.flash_target(env, v, image, pm)


def _build_dir(env, v):
    """Every output, SCons's own database and zig's cache live under BUILD_DIR."""
    build_dir = v["BUILD_DIR"] or "build"
    env["BF_VERBOSE"] = v["VERBOSE"] not in ("", "0", "no")
    env["BF_BUILD"] = build_dir if os.path.isabs(build_dir) else "#" + build_dir
    root = env.Dir("$BF_BUILD").abspath
    os.makedirs(root, exist_ok=True)
    env.SConsignFile(os.path.join(root, ".sconsign"))
    v["IMAGE"] = v["IMAGE"] or os.path.join(root, "bareflow.img")
    # zig needs a cache directory; SCons runs tools with a clean ENV, so say where explicitly.
    for key in ("ZIG_GLOBAL_CACHE_DIR", "ZIG_LOCAL_CACHE_DIR"):
        env["ENV"][key] = os.environ[key] = os.path.join(root, "zig-cache")
    env.SetDefault(BF_EPOCH=int(os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_EPOCH)))


def _decide(pm, v, config, jit="none"):
    """The policy's validated decisions for every layer, and the LayerInfos it was shown."""
    from bareflow_plugins import model as model_mod
    prof = profile.load_profile(v["PROFILE"]) if v["PROFILE"] else None
    steps = bootconfig.check_steps(v["STEPS"], config.seq_len)
    # Attention's work grows with the position: cost it at the mean context of this run.
    infos = layers.layer_infos(config, model_mod.layer_costs(config, (steps + 1) // 2), steps, prof)
    if jit != "none":
        import dataclasses
        infos = [dataclasses.replace(info, jit=jit) for info in infos]
    return policy.decide_all(pm, v["POLICY"], infos, v), infos


def _libc_providers(pm, v):
    providers = pm.libc_providers()
    if v["LIBC_PREFER"] and v["LIBC_PREFER"] not in {p.name for p in providers}:
        raise BareflowError(f"LIBC_PREFER={v['LIBC_PREFER']!r} names no registered libc provider "
                            f"(registered: {', '.join(p.name for p in providers)})")
    return providers


def _module_tiers(env, pm, v, decisions, providers, cppath):
    """Bitcode for every layer, then one object per tier some ladder uses: {(layer, tier): node}."""
    inline = v["LIBC_INLINE"] in ("1", "yes")
    objects = {}
    for layer, tiers in policy.tiers_needed(decisions).items():
        flags = list(toolchain.FREESTANDING_CFLAGS)
        pm.hook.bareflow_module_cflags(module=layer, cflags=flags, variables=dict(v))
        bc = env.BfBitcode(f"$BF_BUILD/bc/{layer}.bc", f"#modules/{layer}.c",
                           BF_MODULE_CFLAGS=flags, BF_CPPPATH=cppath, CPPPATH=cppath, BF_LAYER=layer)
        for tier in tiers:
            objects[(layer, tier)] = env.BfTier(f"$BF_BUILD/tiers/{v['ISA']}/{layer}.{tier}.o", bc,
                                                BF_TIER=tier, BF_ISA=v["ISA"], BF_LAYER=layer,
                                                BF_LIBC_INLINE=inline, BF_LIBC_PROVIDERS=providers)[0]
            if inline:      # the linked-in libc is part of the tier
                for provider in providers:
                    env.Depends(objects[(layer, tier)], [str(p) for p in provider.dependencies()])
    return objects


def _kernel(env, providers, cppath, tier_objs, jit="none"):
    """The libc selection over modules and kernel, the export table, and both kernel links."""
    kernel_env = commands.c_env(env, cppath)
    runtime_objs = commands.objects(kernel_env, "#src/runtime", "$BF_BUILD/obj/runtime")
    kernel_objs = commands.objects(kernel_env, "#src/kernel", "$BF_BUILD/obj/kernel")
    hosted_objs = commands.objects(kernel_env, "#src/hosted", "$BF_BUILD/obj/hosted")
    # The run-time compiler's backend: both programs link the same one (docs/jit.md).
    jit_objs, jit_link = jit_wiring.backend_objects(env, jit, kernel_env)
    none_objs = jit_objs if jit == "none" else []      # requirers of the libc selection
    requirers = {node.abspath: f"{libc_mod.MODULE_REQUIRER}{layer}" for (layer, _), node in tier_objs.items()}
    requirers.update({node.abspath: "kernel" for node in runtime_objs + kernel_objs + hosted_objs + none_objs})
    env["BF_REQUIRERS"] = requirers
    env["BF_LIBC_PROVIDERS"] = providers
    with open(env.File("#src/kernel/kernel.ld").abspath) as script:
        env["BF_LINK_PROVIDED"] = sorted(libc_mod.linker_script_symbols(script.read())
                                         | libc_mod.EXPORT_TABLE_SYMBOLS
                                         | {"__ehdr_start"}    # lld's, for the hosted TLS template
                                         | {"__tdata_start", "__tdata_end", "__tls_end"})  # kernel_llvm.ld
    if jit != "none":
        env["BF_LINK_PROVIDED"] = sorted(set(env["BF_LINK_PROVIDED"]) | jit_wiring.BACKEND_SYMBOLS)
    libc_out = env.BfLibcSelect(
        ["$BF_BUILD/libc/libc_subset.o", "$BF_BUILD/libc/manifest.json", "$BF_BUILD/libc/LIBC.MAN",
         "$BF_BUILD/gen/exports.c"],
        [tier_objs[key] for key in sorted(tier_objs)] + runtime_objs + kernel_objs + hosted_objs + none_objs)
    env.Depends(libc_out, "#src/kernel/kernel.ld")
    for provider in providers:
        env.Depends(libc_out, [str(p) for p in provider.dependencies()])
    # Which provider wins is part of the selection, not only what the providers contain.
    env.Depends(libc_out, env.Value([(p.name, p.priority) for p in providers]))
    subset, manifest_json, manifest_text, exports_c = libc_out
    exports_o = kernel_env.Object("$BF_BUILD/obj/gen/exports.o", exports_c)
    kernel_bin = env.BfLinkKernel("$BF_BUILD/kernel/KERNEL.BIN",
                                  kernel_objs + runtime_objs + exports_o + [subset] + jit_objs,
                                  BF_LINK_EXTRA=jit_link)
    if jit_link:
        env.Depends(kernel_bin, "#src/jit/llvm/kernel_llvm.ld")
    hosted_bin = env.BfLinkHosted("$BF_BUILD/bareflow-hosted",
                                  hosted_objs + runtime_objs + exports_o + [subset] + jit_objs,
                                  BF_LINK_EXTRA=jit_link)
    return kernel_bin, hosted_bin, manifest_json, manifest_text


def _image(env, pm, v, files):
    """build/bareflow.img (+ .bmap) from the built files, plugin files and bootloaders."""
    loaders = [name.strip() for name in v["BOOTLOADERS"].split(",") if name.strip()]
    extra = pm.image_files(v)
    paths = sorted(files)
    spec = {"paths": paths, "extra": {k: extra[k] for k in sorted(extra)},
            "settings": {"bootloaders": loaders, "epoch": env["BF_EPOCH"],
                         "variables": {"BOOTLOADERS": v["BOOTLOADERS"],
                                       "BUILD_DIR": env.Dir("$BF_BUILD").abspath}}}
    env["BF_PLUGIN_MANAGER"] = pm
    image = env.BfDiskImage(["$BF_BUILD/bareflow.img", "$BF_BUILD/bareflow.bmap"],
                            [env.Value(spec)] + [files[p] for p in paths])
    # Bootloader plugins build their own files (BOOTX64.EFI) inside the image step.
    env.Depends(image, env.Glob("#src/uefi/*.c") + env.Glob("#src/uefi/*.h"))
    return image


def _check_fat16_capacity(files):
    """Fail before building anything when the model alone cannot fit a FAT16 partition."""
    from bareflow_plugins import fat16
    capacity = fat16.MAX_CLUSTERS * fat16.MAX_SECTORS_PER_CLUSTER * 512
    sizes = {path: os.path.getsize(src) for path, src in files.items()}
    if sum(sizes.values()) > capacity:
        listed = ", ".join(f"{p} ({n} bytes, from {files[p]})" for p, n in sizes.items())
        raise BareflowError(f"payload too big for FAT16: {listed} add up to {sum(sizes.values())} bytes, "
                            f"over the {capacity} bytes a FAT16 partition holds "
                            f"({fat16.MAX_CLUSTERS} clusters of 32 KiB)")


def _model(env, v):
    from bareflow_plugins import model as model_mod
    from bareflow_plugins import tokenizer as tok_mod
    if v["MODEL"]:
        if not v["TOKENIZER"]:
            raise BareflowError("MODEL is set but TOKENIZER is not: give both (MODEL=path TOKENIZER=path)")
        config = model_mod.read_config(v["MODEL"])
        tok_mod.read_tokenizer(v["TOKENIZER"], config.vocab_size)
        _check_fat16_capacity({"/MODEL.BIN": v["MODEL"], "/TOKENIZR.BIN": v["TOKENIZER"]})
        return env.File(os.path.abspath(v["MODEL"])), env.File(os.path.abspath(v["TOKENIZER"])), config
    if v["TOKENIZER"]:      # else the synthetic tokenizer would silently replace the one given
        raise BareflowError("TOKENIZER is set but MODEL is not: give both (MODEL=path TOKENIZER=path)")
    from bareflow_plugins import synthetic
    config = synthetic.CONFIG
    gen = env.Command(["$BF_BUILD/model/SYNTH.BIN", "$BF_BUILD/model/SYNTHTOK.BIN"],
                      ["#tools/gen_synthetic_model.py", "#bareflow_plugins/synthetic.py"],
                      S.Action(f'"{sys.executable}" ${{SOURCES[0]}} --out-model ${{TARGETS[0]}} '
                               '--out-tokenizer ${TARGETS[1]}', "  GEN      $TARGETS"))
    return gen[0], gen[1], config
