"""The BareFlow build, step by step: model, policy, bitcode, tiers, libc, module files, kernel, image.

Each step is one function below, in pipeline order; what a step decides is computed by the
`bareflow` package (docs/architecture.md) and this file only turns the answers into SCons nodes.
"""
import dataclasses
import os
import sys

import SCons.Script as S

from bareflow.bitcode import toolchain
from bareflow.core.variables import flag
from bareflow.errors import BareflowError
from bareflow.image import bootconfig
from bareflow.image.payload import plugin_image_files
from bareflow.kernel import jit as jit_plugin
from bareflow.libc import selection as libc
from bareflow.model import checkpoint, layers
from bareflow.modules.modformat import LAYER_ABI_VERSION, file_name as module_path
from bareflow.policy import api as policy
from bareflow.policy import infos as layer_info
from bareflow.policy import profile
from bareflow.policy import table as policy_table
from bareflow.tiers.levels import parse_isa_list

from . import commands, configure, settings
from . import jit as jit_wiring

# Every directory the build writes under BUILD_DIR: `scons -c` removes them whole.
WRITTEN_DIRECTORIES = ("bc", "tiers", "modules", "obj", "gen", "libc", "kernel", "image", "model",
                       "uefi", "zig-cache", "run")


def setup(env):
    """Declare every target; a read-time error stops SCons with one clear line."""
    try:
        _setup(env)
    except BareflowError as exc:
        sys.stderr.write(f"bareflow: error: {exc}\n")
        S.Exit(2)


def _setup(env):
    pm, v = configure.load(env)
    configure.check_targets()
    configure.build_dir(env, v)
    commands.plugins_target(pm)
    if S.GetOption("help") or set(S.COMMAND_LINE_TARGETS) == {"plugins"}:
        return
    if not S.GetOption("clean"):
        toolchain.check_llvm_versions()
    pm.hook.bareflow_configure(variables=dict(v))

    isas = parse_isa_list(v["ISA"])
    jit = jit_plugin.mode(v)
    model = _model(env, v)                                             # 1. model
    by_isa, summary = _policy(env, pm, v, model, isas, jit)            # 2. policy
    providers = _libc_providers(pm, v)
    cppath = [env.Dir(d).abspath for d in ("#src/include", "#src/libc/include", "#modules/include")]
    tier_objs, bitcode = _tiers(env, pm, v, by_isa, providers, cppath)  # 3. bitcode, 4. tiers
    kernel, hosted, manifest_json, manifest_text = _kernel(env, providers, cppath, tier_objs, jit)  # 5., 7.
    modules = _module_files(env, v, tier_objs, manifest_json)          # 6. module files
    products = {"kernel": kernel, "libc_manifest": manifest_text, "model": model["model"],
                "tokenizer": model["tokenizer"], "modules": modules, "model_config": model["config"],
                "policy_table": env.BfWriteBytes("$BF_BUILD/gen/POLICY.TBL", env.Value(
                    policy_table.encode_levels(by_isa, layers.LAYER_NAMES)))[0],
                "profile": env.BfWriteBytes("$BF_BUILD/gen/PROFILE.BIN",
                                            env.Value(profile.empty_profile()))[0]}
    if jit != "none":           # the run-time compiler reads each layer's bitcode from the image
        products["bitcode"] = jit_wiring.bitcode_files(env, bitcode)
    env.AddPostAction(products["policy_table"], commands.action_print(lambda: summary))
    image = _image(env, pm, v, products)                               # 8. image
    settings.remember_after_build(env, image, env["BF_TYPED_VARIABLES"])

    S.Alias("image", image)
    S.Alias("hosted", hosted)
    S.Default("image")
    commands.run_target(env, v, image)                                 # 9. boot
    commands.profile_target(env, v)
    commands.flash_target(env, v, image, pm)                           # 10. flash


def _model(env, v):
    """The checkpoint and tokenizer nodes and the model's config (the synthetic model by default)."""
    from bareflow.model import inputs, tokenizer_v2
    if v["MODEL"] and (inputs.model_kind(v["MODEL"], bool(v["TOKENIZER"])) == "gguf" or v["WEIGHTS"] or v["SEQ_LEN"]):
        return _weights(env, v)
    if v["WEIGHTS"] or v["SEQ_LEN"]:
        raise BareflowError("WEIGHTS and SEQ_LEN apply to a MODEL=; the synthetic model is always f32")
    if v["MODEL"]:
        if not v["TOKENIZER"]:
            raise BareflowError(f"MODEL {v['MODEL']} is a llama2.c checkpoint, which holds no vocabulary: "
                                "give its tokenizer too (TOKENIZER=path)")
        config = checkpoint.read_config(v["MODEL"])
        vocab = tokenizer_v2.load_any(v["TOKENIZER"], config.vocab_size)
        from bareflow.image import fat16
        fat16.check_payload_fits({"/MODEL.BIN": v["MODEL"], "/TOKENIZR.BIN": v["TOKENIZER"]})
        _check_prompt(v, vocab, config.seq_len)
        return {"model": env.File(os.path.abspath(v["MODEL"])),
                "tokenizer": _tokenizer_file(env, v["TOKENIZER"], config.vocab_size), "config": config}
    if v["TOKENIZER"]:      # else the synthetic tokenizer would silently replace the one given
        raise BareflowError("TOKENIZER is set but MODEL is not: give both (MODEL=path TOKENIZER=path)")
    from bareflow.model import synthetic
    gen = env.Command(["$BF_BUILD/model/SYNTH.BIN", "$BF_BUILD/model/SYNTHTOK.BIN"],
                      ["#tools/gen_synthetic_model.py", "#bareflow/model/synthetic.py"],
                      S.Action(f'"{sys.executable}" ${{SOURCES[0]}} --out-model ${{TARGETS[0]}} '
                               '--out-tokenizer ${TARGETS[1]}', "  GEN      $TARGETS"))
    # The synthetic tokenizer's vocabulary sizes the synthetic model: no size to check against here.
    # The policy's costs need the real vocabulary (classify, sampler), so size the config with it.
    config = dataclasses.replace(synthetic.CONFIG, vocab_size=synthetic.build_tokenizer().vocab_size)
    return {"model": gen[0], "tokenizer": _tokenizer_file(env, gen[1], None), "config": config}


def _weights(env, v):
    """MODEL as a BareFlow weights file (GGUF, or llama2.c with WEIGHTS/SEQ_LEN): checked, sized and
    refused if too big now; converted by a build step (docs/weights-format.md)."""
    from bareflow.image import fat16
    from bareflow.model import gguf_model, tokenizer_v2, weights_build
    plan = weights_build.plan(v["MODEL"], v["WEIGHTS"], v["SEQ_LEN"])
    # A GGUF carries its vocabulary; TOKENIZER, when given, overrides it.
    tok_source = os.path.abspath(v["TOKENIZER"] or v["MODEL"])
    if not v["TOKENIZER"] and not gguf_model.is_gguf(v["MODEL"]):
        raise BareflowError(f"MODEL {v['MODEL']} is a llama2.c checkpoint, which holds no vocabulary: "
                            "give its tokenizer too (TOKENIZER=path)")
    vocab = tokenizer_v2.load_any(tok_source, plan.config.vocab_size)
    fat16.check_payload_sizes({"/MODEL.BIN": (plan.size, v["MODEL"]),
                               "/TOKENIZR.BIN": (os.path.getsize(tok_source), tok_source)})
    _check_prompt(v, vocab, plan.config.seq_len)
    config = weights_build.model_config(plan.config)
    per_weight = weights_build.weight_bytes_per_value(plan)

    # The plan reaches the action through the environment, not a closure: SCons signs a Python
    # action by its code and closure contents, and the plan's pickled form differs from run to run,
    # which rewrote the weights file on every no-op build.  The Value source carries the plan.
    node = env.Command("$BF_BUILD/model/WEIGHTS.BIN", [env.File(plan.source), env.Value(repr(plan))],
                       S.Action(_write_weights, "  WEIGHTS  $TARGET"), BF_WEIGHTS_PLAN=plan)
    env.Depends(node, ["#bareflow/model/gguf_model.py", "#bareflow/model/weightsfile.py",
                       "#bareflow/model/weights_build.py"])
    return {"model": node[0], "tokenizer": _tokenizer_file(env, tok_source, plan.config.vocab_size),
            "config": config, "bytes_per_weight": per_weight}


def _write_weights(target, source, env):
    from bareflow.model import weights_build
    print(weights_build.write(env["BF_WEIGHTS_PLAN"], str(target[0])))


def _tokenizer_file(env, source, vocab_size):
    """/TOKENIZR.BIN v2, converted from the model's tokenizer (docs/tokenizer-format.md);
    vocab_size: the model's, checked again when the file is written (None: not known here)."""
    node = env.BfTokenizerFile("$BF_BUILD/image/TOKENIZR.BIN", source, BF_VOCAB_SIZE=vocab_size or "")
    env.Depends(node, ["#bareflow/model/tokenizer_v2.py", "#bareflow/model/tokenizer.py"])
    return node[0]


def _check_prompt(v, vocab, seq_len):
    """The prompt (chat-wrapped with CHAT=1) must tokenize within the kernel's limits with this
    vocabulary, and STEPS must leave positions to generate after it (bareflow/model/prompt.py)."""
    from bareflow.model import prompt
    prompt.check(v, vocab, seq_len)


def _policy(env, pm, v, model, isas, jit="none"):
    """{isa: the policy's validated decision for every layer}, asked once per ISA level the image
    carries, and the summary printed with the table.  `model` is _model()'s answer (its config,
    and the bytes per weight of a quantised weights file); `jit` ("none"/"llvm") tells the policy
    whether it may ask for run-time tiers (LayerInfo.jit)."""
    config = model["config"]
    for note in policy.ignored_options(pm, v["POLICY"], env.get("BF_TYPED_VARIABLES") or {}):
        print(f"bareflow: note: {note}")
    prof = profile.load_profile(v["PROFILE"]) if v["PROFILE"] else None
    steps = bootconfig.check_steps(v.get("STEPS", bootconfig.DEFAULTS["steps"]), config.seq_len)
    # Attention's work grows with the position: cost it at the mean context of this run.
    cores = bootconfig.check_cores(v.get("CORES", "all"), "CORES")
    infos = layer_info.layer_infos(config, checkpoint.layer_costs(config, (steps + 1) // 2, model.get("bytes_per_weight")), steps, prof,
                                   cores=0 if cores == "all" else int(cores),
                                   profile_source=f"PROFILE={v['PROFILE']}")
    by_isa = {}
    for isa in isas:
        level_infos = [dataclasses.replace(i, isa=isa, isa_levels=tuple(isas), jit=jit) for i in infos]
        by_isa[isa] = policy.decide_all(pm, v["POLICY"], level_infos, v)
    text = "".join(f"policy {v['POLICY']} ({isa}):\n{policy.summary(by_isa[isa], infos)}" for isa in isas)
    return by_isa, text.rstrip("\n")


def _libc_providers(pm, v):
    providers = libc.ordered_providers(pm)
    if v["LIBC_PREFER"] and v["LIBC_PREFER"] not in {p.name for p in providers}:
        raise BareflowError(f"LIBC_PREFER={v['LIBC_PREFER']!r} names no registered libc provider "
                            f"(registered: {', '.join(p.name for p in providers)})")
    return providers


def _tiers(env, pm, v, by_isa, providers, cppath):
    """Bitcode for every layer, then one object per tier some ladder of each ISA level uses:
    ({(layer, tier, isa): node}, {layer: bitcode node})."""
    inline = flag(v, "LIBC_INLINE")
    needed = {}
    for isa, decisions in by_isa.items():
        for layer, tiers in policy.tiers_needed(decisions).items():
            needed.setdefault(layer, []).extend((tier, isa) for tier in tiers)
    objects, bitcode = {}, {}
    for layer, wanted in needed.items():
        flags = []
        pm.hook.bareflow_module_cflags(module=layer, cflags=flags, variables=dict(v))
        bc = env.BfBitcode(f"$BF_BUILD/bc/{layer}.bc", f"#modules/{layer}.c",
                           BF_MODULE_CFLAGS=flags, BF_CPPPATH=cppath, CPPPATH=cppath, BF_LAYER=layer)
        bitcode[layer] = bc[0]
        for tier, isa in wanted:
            key = (layer, tier, isa)
            objects[key] = env.BfTier(f"$BF_BUILD/tiers/{isa}/{layer}.{tier}.o", bc,
                                      BF_TIER=tier, BF_ISA=isa, BF_LAYER=layer,
                                      BF_LIBC_INLINE=inline, BF_LIBC_PROVIDERS=providers)[0]
            if inline:      # the linked-in libc is part of the tier
                for provider in providers:
                    env.Depends(objects[key], [str(p) for p in provider.dependencies()])
    return objects, bitcode


def _module_files(env, v, tier_objs, manifest_json):
    """One BFMD module file per tier object: {image path: node}."""
    return {module_path(layer, tier, isa): env.BfModuleFile(
                f"$BF_BUILD/modules/{isa}/{layer.upper()}.{tier}",
                [obj, manifest_json, env.Value(f"layer ABI {LAYER_ABI_VERSION}")],
                BF_LAYER=layer, BF_TIER=tier, BF_ISA=isa)[0]
            for (layer, tier, isa), obj in sorted(tier_objs.items())}


def _kernel(env, providers, cppath, tier_objs, jit="none"):
    """The libc selection over modules and kernel, the export table, and both kernel links
    (with JIT=llvm both link LLVM and the platform layer for it; docs/jit.md)."""
    kernel_env = commands.c_env(env, cppath)
    runtime_objs = commands.objects(kernel_env, "#src/runtime", "$BF_BUILD/obj/runtime")
    kernel_objs = commands.objects(kernel_env, "#src/kernel", "$BF_BUILD/obj/kernel")
    hosted_objs = commands.objects(kernel_env, "#src/hosted", "$BF_BUILD/obj/hosted")
    # The run-time compiler's backend: both programs link the same one.  JIT=none's stub backend
    # needs libc like the runtime does; LLVM's backend brings its own (src/jit/llvm/libc_llvm.c).
    jit_objs, jit_link = jit_wiring.backend_objects(env, jit, kernel_env)
    none_objs = jit_objs if jit == "none" else []
    requirers = {node.abspath: f"{libc.MODULE_REQUIRER}{layer}" for (layer, _, _), node in tier_objs.items()}
    requirers.update({node.abspath: "kernel" for node in runtime_objs + kernel_objs + hosted_objs + none_objs})
    env["BF_REQUIRERS"] = requirers
    env["BF_LIBC_PROVIDERS"] = providers
    with open(env.File("#src/kernel/kernel.ld").abspath) as script:
        provided = (libc.linker_script_symbols(script.read()) | libc.EXPORT_TABLE_SYMBOLS
                    | {"__ehdr_start"}                                   # lld's, for the hosted TLS template
                    | {"__tdata_start", "__tdata_end", "__tls_end"})     # src/jit/llvm/kernel_llvm.ld's
        if jit != "none":
            provided |= jit_wiring.BACKEND_SYMBOLS
        env["BF_LINK_PROVIDED"] = sorted(provided)
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
    kernel = env.BfLinkKernel(["$BF_BUILD/kernel/KERNEL.BIN", "$BF_BUILD/kernel/KERNEL.BIN.elf"],
                              kernel_objs + runtime_objs + exports_o + [subset] + jit_objs,
                              BF_LINK_EXTRA=jit_link)[0]
    if jit_link:
        env.Depends(kernel, "#src/jit/llvm/kernel_llvm.ld")
    hosted = env.BfLinkHosted("$BF_BUILD/bareflow-hosted", hosted_objs + runtime_objs + exports_o + [subset]
                              + jit_objs, BF_LINK_EXTRA=jit_link)
    return kernel, hosted, manifest_json, manifest_text


def _image(env, pm, v, products):
    """BUILD_DIR/bareflow.img (+ .bmap) from the files the plugins put on it and the bootloaders."""
    loaders = [name.strip() for name in v["BOOTLOADERS"].split(",") if name.strip()]
    from bareflow.image import bootloader
    bootloader.select_bootloaders(pm.registered("bootloaders").values(), loaders)   # refused before building
    nodes = {}
    for key, value in products.items():
        if key not in ("modules", "bitcode", "model_config"):
            nodes[value.abspath] = value
    for key in ("modules", "bitcode"):
        nodes.update({node.abspath: node for node in products.get(key, {}).values()})
    plugin_products = {key: (value.abspath if hasattr(value, "abspath") else
                             {p: n.abspath for p, n in value.items()} if key in ("modules", "bitcode")
                             else value)
                       for key, value in products.items()}
    files = plugin_image_files(pm, v, plugin_products)
    sources = {}
    for path in sorted(files):
        content = files[path]
        if isinstance(content, bytes):      # written under BUILD_DIR/image, as it goes on the image
            sources[path] = env.BfWriteBytes(f"$BF_BUILD/image{path}", env.Value(content))[0]
        else:
            sources[path] = nodes.get(os.fspath(content)) or env.File(os.fspath(content))
    paths = sorted(sources)
    spec = {"paths": paths,
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
