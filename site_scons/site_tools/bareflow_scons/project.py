"""The BareFlow build, step by step: model, policy, bitcode, tiers, libc, module files, kernel, image.

Each step is one function below, in pipeline order; what a step decides is computed by the
`bareflow` package (docs/architecture.md) and this file only turns the answers into SCons nodes.
"""
import os
import sys

import SCons.Script as S

from bareflow.bitcode import toolchain
from bareflow.core.variables import flag
from bareflow.errors import BareflowError
from bareflow.image import bootconfig
from bareflow.image.payload import plugin_image_files
from bareflow.libc import selection as libc
from bareflow.model import checkpoint, layers
from bareflow.modules.modformat import LAYER_ABI_VERSION, file_name as module_path
from bareflow.policy import api as policy
from bareflow.policy import infos as layer_info
from bareflow.policy import profile
from bareflow.policy import table as policy_table

from . import commands, configure

# Every directory the build writes under BUILD_DIR: `scons -c` removes them whole.
WRITTEN_DIRECTORIES = ("bc", "tiers", "modules", "obj", "gen", "libc", "kernel", "image", "model",
                       "uefi", "zig-cache")


def setup(env):
    """Declare every target; a read-time error stops SCons with one clear line."""
    try:
        _setup(env)
    except BareflowError as exc:
        sys.stderr.write(f"bareflow: error: {exc}\n")
        S.Exit(2)


def _setup(env):
    pm, v = configure.load(env)
    configure.build_dir(env, v)
    commands.plugins_target(pm)
    if S.GetOption("help") or set(S.COMMAND_LINE_TARGETS) == {"plugins"}:
        return
    if not S.GetOption("clean"):
        toolchain.check_llvm_versions()
    pm.hook.bareflow_configure(variables=dict(v))

    model = _model(env, v)                                             # 1. model
    decisions, summary = _policy(env, pm, v, model["config"])          # 2. policy
    providers = _libc_providers(pm, v)
    cppath = [env.Dir(d).abspath for d in ("#src/include", "#src/libc/include", "#modules/include")]
    tier_objs = _tiers(env, pm, v, decisions, providers, cppath)       # 3. bitcode, 4. tiers
    kernel, hosted, manifest_json, manifest_text = _kernel(env, providers, cppath, tier_objs)  # 5. libc, 7.
    modules = _module_files(env, v, tier_objs, manifest_json)          # 6. module files
    products = {"kernel": kernel, "libc_manifest": manifest_text, "model": model["model"],
                "tokenizer": model["tokenizer"], "modules": modules, "model_config": model["config"],
                "policy_table": env.BfWriteBytes("$BF_BUILD/image/POLICY.TBL", env.Value(
                    policy_table.encode(decisions, layers.LAYER_NAMES)))[0],
                "profile": env.BfWriteBytes("$BF_BUILD/image/PROFILE.BIN",
                                            env.Value(profile.empty_profile()))[0]}
    env.AddPostAction(products["policy_table"], commands.action_print(lambda: summary))
    image = _image(env, pm, v, products)                               # 8. image

    S.Alias("image", image)
    S.Alias("hosted", hosted)
    S.Default("image")
    commands.run_target(env, v, image)                                 # 9. boot
    commands.profile_target(env, v)
    commands.flash_target(env, v, image, pm)                           # 10. flash


def _model(env, v):
    """The checkpoint and tokenizer nodes and the model's config (the synthetic model by default)."""
    from bareflow.model import tokenizer
    if v["MODEL"]:
        if not v["TOKENIZER"]:
            raise BareflowError("MODEL is set but TOKENIZER is not: give both (MODEL=path TOKENIZER=path)")
        config = checkpoint.read_config(v["MODEL"])
        tokenizer.read_tokenizer(v["TOKENIZER"], config.vocab_size)
        from bareflow.image import fat16
        fat16.check_payload_fits({"/MODEL.BIN": v["MODEL"], "/TOKENIZR.BIN": v["TOKENIZER"]})
        return {"model": env.File(os.path.abspath(v["MODEL"])),
                "tokenizer": env.File(os.path.abspath(v["TOKENIZER"])), "config": config}
    if v["TOKENIZER"]:      # else the synthetic tokenizer would silently replace the one given
        raise BareflowError("TOKENIZER is set but MODEL is not: give both (MODEL=path TOKENIZER=path)")
    from bareflow.model import synthetic
    gen = env.Command(["$BF_BUILD/model/SYNTH.BIN", "$BF_BUILD/model/SYNTHTOK.BIN"],
                      ["#tools/gen_synthetic_model.py", "#bareflow/model/synthetic.py"],
                      S.Action(f'"{sys.executable}" ${{SOURCES[0]}} --out-model ${{TARGETS[0]}} '
                               '--out-tokenizer ${TARGETS[1]}', "  GEN      $TARGETS"))
    return {"model": gen[0], "tokenizer": gen[1], "config": synthetic.CONFIG}


def _policy(env, pm, v, config):
    """The policy's validated decision for every layer; its summary is printed with the table."""
    prof = profile.load_profile(v["PROFILE"]) if v["PROFILE"] else None
    steps = bootconfig.check_steps(v.get("STEPS", bootconfig.DEFAULTS["steps"]), config.seq_len)
    # Attention's work grows with the position: cost it at the mean context of this run.
    cores = bootconfig.check_cores(v.get("CORES", bootconfig.DEFAULTS["cores"]))
    infos = layer_info.layer_infos(config, checkpoint.layer_costs(config, (steps + 1) // 2), steps, prof,
                                   cores=0 if cores == "all" else int(cores))
    decisions = policy.decide_all(pm, v["POLICY"], infos, v)
    summary = policy.summary(decisions, infos)
    text = f"policy {v['POLICY']} ({v['ISA']}):\n{summary}"
    return decisions, text


def _libc_providers(pm, v):
    providers = libc.ordered_providers(pm)
    if v["LIBC_PREFER"] and v["LIBC_PREFER"] not in {p.name for p in providers}:
        raise BareflowError(f"LIBC_PREFER={v['LIBC_PREFER']!r} names no registered libc provider "
                            f"(registered: {', '.join(p.name for p in providers)})")
    return providers


def _tiers(env, pm, v, decisions, providers, cppath):
    """Bitcode for every layer, then one object per tier some ladder uses: {(layer, tier): node}."""
    inline = flag(v, "LIBC_INLINE")
    objects = {}
    for layer, tiers in policy.tiers_needed(decisions).items():
        flags = []
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


def _module_files(env, v, tier_objs, manifest_json):
    """One BFMD module file per tier object: {image path: node}."""
    return {module_path(layer, tier): env.BfModuleFile(
                f"$BF_BUILD/modules/{v['ISA']}/{layer.upper()}.{tier}",
                [obj, manifest_json, env.Value(f"layer ABI {LAYER_ABI_VERSION}")],
                BF_LAYER=layer, BF_TIER=tier, BF_ISA=v["ISA"])[0]
            for (layer, tier), obj in sorted(tier_objs.items())}


def _kernel(env, providers, cppath, tier_objs):
    """The libc selection over modules and kernel, the export table, and both kernel links."""
    kernel_env = commands.c_env(env, cppath)
    runtime_objs = commands.objects(kernel_env, "#src/runtime", "$BF_BUILD/obj/runtime")
    kernel_objs = commands.objects(kernel_env, "#src/kernel", "$BF_BUILD/obj/kernel")
    hosted_objs = commands.objects(kernel_env, "#src/hosted", "$BF_BUILD/obj/hosted")
    requirers = {node.abspath: f"{libc.MODULE_REQUIRER}{layer}" for (layer, _), node in tier_objs.items()}
    requirers.update({node.abspath: "kernel" for node in runtime_objs + kernel_objs + hosted_objs})
    env["BF_REQUIRERS"] = requirers
    env["BF_LIBC_PROVIDERS"] = providers
    with open(env.File("#src/kernel/kernel.ld").abspath) as script:
        env["BF_LINK_PROVIDED"] = sorted(libc.linker_script_symbols(script.read()) | libc.EXPORT_TABLE_SYMBOLS)
    libc_out = env.BfLibcSelect(
        ["$BF_BUILD/libc/libc_subset.o", "$BF_BUILD/libc/manifest.json", "$BF_BUILD/libc/LIBC.MAN",
         "$BF_BUILD/gen/exports.c"],
        [tier_objs[key] for key in sorted(tier_objs)] + runtime_objs + kernel_objs + hosted_objs)
    env.Depends(libc_out, "#src/kernel/kernel.ld")
    for provider in providers:
        env.Depends(libc_out, [str(p) for p in provider.dependencies()])
    # Which provider wins is part of the selection, not only what the providers contain.
    env.Depends(libc_out, env.Value([(p.name, p.priority) for p in providers]))
    subset, manifest_json, manifest_text, exports_c = libc_out
    exports_o = kernel_env.Object("$BF_BUILD/obj/gen/exports.o", exports_c)
    kernel = env.BfLinkKernel(["$BF_BUILD/kernel/KERNEL.BIN", "$BF_BUILD/kernel/KERNEL.BIN.elf"],
                              kernel_objs + runtime_objs + exports_o + [subset])[0]
    hosted = env.BfLinkHosted("$BF_BUILD/bareflow-hosted", hosted_objs + runtime_objs + exports_o + [subset])
    return kernel, hosted, manifest_json, manifest_text


def _image(env, pm, v, products):
    """BUILD_DIR/bareflow.img (+ .bmap) from the files the plugins put on it and the bootloaders."""
    loaders = [name.strip() for name in v["BOOTLOADERS"].split(",") if name.strip()]
    nodes = {}
    for key, value in products.items():
        if key != "modules" and key != "model_config":
            nodes[value.abspath] = value
    nodes.update({node.abspath: node for node in products["modules"].values()})
    plugin_products = {key: (value.abspath if hasattr(value, "abspath") else
                             {p: n.abspath for p, n in value.items()} if key == "modules" else value)
                       for key, value in products.items()}
    files = plugin_image_files(pm, v, plugin_products)
    sources, data = {}, {}
    for path in sorted(files):
        content = files[path]
        if isinstance(content, bytes):
            data[path] = content
        else:
            sources[path] = nodes.get(os.fspath(content)) or env.File(os.fspath(content))
    paths = sorted(sources)
    spec = {"paths": paths, "extra": data,
            "settings": {"bootloaders": loaders, "epoch": env["BF_EPOCH"],
                         "variables": {"BOOTLOADERS": v["BOOTLOADERS"],
                                       "BUILD_DIR": env.Dir("$BF_BUILD").abspath}}}
    env["BF_PLUGIN_MANAGER"] = pm
    image = env.BfDiskImage(["$BF_BUILD/bareflow.img", "$BF_BUILD/bareflow.bmap"],
                            [env.Value(spec)] + [sources[p] for p in paths])
    # Bootloader plugins build their own files (BOOTX64.EFI) inside the image step.
    env.Depends(image, env.Glob("#src/uefi/*.c") + env.Glob("#src/uefi/*.h"))
    # What build steps write beside their declared targets (caches, the UEFI loader, objects).
    env.Clean(image, [env.Dir(f"$BF_BUILD/{d}") for d in WRITTEN_DIRECTORIES])
    return image
