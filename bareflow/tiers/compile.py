"""Optimisation tiers: one module's bitcode to a relocatable ELF object per tier and ISA level.

clang stamps "target-cpu" and "target-features" on every function, and those attributes win over
the CPU given to the target machine.  The tier step therefore owns them: it rewrites every
function's attributes to the ISA level asked for before any pass runs, so an x86-64-v3 object
really uses AVX and a baseline object never does.
"""
import re

from bareflow.errors import BareflowError
from bareflow.tiers.levels import check_isa, tier_level

TRIPLE = "x86_64-unknown-unknown-elf"

_CPU_ATTR = re.compile(r'"target-cpu"="[^"]*"')
_FEATURES_ATTR = re.compile(r'"target-features"="[^"]*"')
_TUNE_ATTR = re.compile(r'"tune-cpu"="[^"]*"')
# Features every ISA level keeps off in ring 0: no x87 long double tricks are needed, but
# soft-float must stay off and SSE must stay on; the CPU name carries the rest.
_BASE_FEATURES = "+sse,+sse2"


def _llvm():
    import llvmlite.binding as llvm
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    return llvm


def retarget_ir(ir_text, isa):
    """Point every function's target attributes at `isa`, whatever clang stamped."""
    ir_text = _CPU_ATTR.sub(f'"target-cpu"="{isa}"', ir_text)
    ir_text = _FEATURES_ATTR.sub(f'"target-features"="{_BASE_FEATURES}"', ir_text)
    return _TUNE_ATTR.sub('"tune-cpu"="generic"', ir_text)


def compile_tier(bitcode, tier, isa, *, module_name, link_bitcode=None):
    """Return ELF relocatable bytes for `bitcode` optimised at `tier` for `isa`.

    `link_bitcode(name)`, when given, returns the bitcode defining function `name` (a bitcode
    libc provider) or None.  The functions the module calls, and those they call, are linked in
    before optimisation and made internal, so they can inline and vanish.
    """
    level = tier_level(tier)
    check_isa(isa)
    llvm = _llvm()
    what = f"module {module_name} tier {tier}"
    try:
        mod = llvm.parse_bitcode(bitcode)
    except RuntimeError as exc:
        raise BareflowError(f"{what}: cannot parse bitcode: {exc}") from exc
    own_definitions = {f.name for f in mod.functions if not f.is_declaration}
    tried = set()
    while link_bitcode:     # link what the module calls, then what those call, and so on
        wanted = sorted(f.name for f in mod.functions if f.is_declaration and f.name not in tried)
        if not wanted:
            break
        for name in wanted:
            tried.add(name)
            code = link_bitcode(name)
            if code is None:
                continue        # stays an import, resolved by the libc selection
            try:
                mod.link_in(llvm.parse_bitcode(code))
            except RuntimeError as exc:
                raise BareflowError(f"{what}: cannot link bitcode of {name}: {exc}") from exc
    for func in mod.functions:
        if not func.is_declaration and func.name not in own_definitions:
            func.linkage = llvm.Linkage.internal
    mod, machine = _optimise(llvm, mod, level, isa, what)
    return machine.emit_object(mod)


def _optimise(llvm, mod, level, isa, what):
    """Retarget `mod` to `isa` and run the tier's pipeline; return it with its target machine."""
    try:
        mod = llvm.parse_assembly(retarget_ir(str(mod), isa))
        mod.triple = TRIPLE
        mod.verify()
    except RuntimeError as exc:
        raise BareflowError(f"{what}: invalid IR after retargeting to {isa}: {exc}") from exc

    target = llvm.Target.from_triple(TRIPLE)
    machine = target.create_target_machine(cpu=isa, features=_BASE_FEATURES, opt=level,
                                           reloc="pic", codemodel="small")
    mod.data_layout = str(machine.target_data)
    tuning = llvm.create_pipeline_tuning_options(speed_level=level)
    tuning.loop_vectorization = level >= 2
    tuning.slp_vectorization = level >= 2
    tuning.loop_unrolling = level >= 2
    builder = llvm.create_pass_builder(machine, tuning)
    builder.getModulePassManager().run(mod, builder)
    return mod, machine


_AVX_MNEMONIC = re.compile(r"^\s+(v[a-z0-9]+)\b")


def count_avx_instructions(asm_text):
    """Count VEX/EVEX-encoded (AVX and later) instructions in an assembly listing.

    In AT&T syntax every AVX instruction, scalar or packed, is spelled with a leading "v"
    (vmulss, vfmadd231ps, vmovups); no SSE or x87 mnemonic starts with "v" except verr/verw.
    """
    return sum(1 for line in asm_text.splitlines()
               if (m := _AVX_MNEMONIC.match(line)) and m.group(1) not in ("verr", "verw"))


def assembly(bitcode, tier, isa):
    """The assembly listing of a tier (the same pipeline as compile_tier, without libc
    linking), for inspection and ISA checks."""
    level = tier_level(tier)
    check_isa(isa)
    llvm = _llvm()
    mod, machine = _optimise(llvm, llvm.parse_bitcode(bitcode), level, isa, f"assembly listing at tier {tier}")
    return machine.emit_assembly(mod)
