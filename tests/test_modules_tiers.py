"""Every tier of every layer module computes bit-identical results.

The modules are compiled to bitcode exactly as the build does (-O2 -Xclang -disable-llvm-passes),
then, for each tier O0..O3 and each ISA level the host can run (x86-64 .. x86-64-v4),
the target attributes are rewritten, the new-pass-manager pipeline runs at that
speed level with vectorisation as the tier step enables it, and the result is JIT-compiled
by llvmlite's MCJIT.  libc calls resolve to the real src/libc sources compiled natively.
Each tier runs the same inputs; all state arrays and the sampler result must equal the
native -O2 build bit for bit.  This is what lets tier switches leave the tokens unchanged.
"""
import ctypes
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_modules_layers as L  # noqa: E402  (ctypes mirror of layer_abi.h and the Model)

llvm = pytest.importorskip("llvmlite.binding")

REPO = L.REPO
CFLAGS = ["-target", "x86_64-freestanding", "-ffreestanding", "-fno-sanitize=all",
          "-fno-stack-protector", "-g0", "-fno-unwind-tables", "-fno-asynchronous-unwind-tables",
          "-mno-red-zone", "-fno-pic", "-fno-pie", f"-I{REPO / 'src' / 'include'}",
          f"-I{REPO / 'src' / 'libc' / 'include'}", f"-I{REPO / 'modules' / 'include'}",
          "-O2", "-Xclang", "-disable-llvm-passes", "-emit-llvm"]


def host_isas():
    from buildutil import host_isa_levels
    return host_isa_levels()


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    return L.build_libs(tmp_path_factory.mktemp("native"))


@pytest.fixture(scope="module")
def jit(tmp_path_factory, native):
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    # libc calls from JIT code go to the native renamed copies of the real sources
    any_lib = native["sampler"]
    for name in L.LIBC_NAMES:
        llvm.add_symbol(name, ctypes.cast(getattr(any_lib, "bft_" + name), ctypes.c_void_p).value)
    d = tmp_path_factory.mktemp("bitcode")
    engines = []
    entries = {}
    triple = llvm.get_process_triple()
    for m in L.MODULES:
        bc = d / f"{m}.bc"
        subprocess.run([sys.executable, "-m", "ziglang", "cc", *CFLAGS, "-c",
                        str(REPO / "modules" / f"{m}.c"), "-o", str(bc)], check=True)
        ir = str(llvm.parse_bitcode(bc.read_bytes()))
        for isa in host_isas():
            text = re.sub(r'"target-cpu"="[^"]*"', f'"target-cpu"="{isa}"', ir)
            text = re.sub(r'"target-features"="[^"]*"', '"target-features"="+sse,+sse2"', text)
            text = re.sub(r'"tune-cpu"="[^"]*"', '"tune-cpu"="generic"', text)
            for level in range(4):
                mod = llvm.parse_assembly(text)
                mod.triple = triple
                tm = llvm.Target.from_triple(triple).create_target_machine(
                    cpu=isa, features="+sse,+sse2", opt=level, reloc="pic", codemodel="jitdefault")
                mod.data_layout = str(tm.target_data)
                pto = llvm.create_pipeline_tuning_options(speed_level=level)
                pto.loop_vectorization = pto.slp_vectorization = pto.loop_unrolling = level >= 2
                pb = llvm.create_pass_builder(tm, pto)
                pb.getModulePassManager().run(mod, pb)
                ee = llvm.create_mcjit_compiler(mod, tm)
                ee.finalize_object()
                engines.append((ee, mod, tm, pb, pto))   # the pass builder must outlive the engine
                addr = ee.get_function_address("bf_layer_entry")
                assert addr
                fn = ctypes.CFUNCTYPE(None, ctypes.POINTER(L.Call))(addr)
                entries[(m, isa, level)] = fn
    yield entries
    engines.clear()


class Fn:
    """Adapter so Model.call can drive a JIT function like a ctypes library."""

    def __init__(self, f):
        self.bf_layer_entry = f


SCENARIOS = {
    "embed": [dict(token=17, weight="embedding")],
    "rmsnorm": [dict(out="xb", in_="x", weight="rms_att"), dict(out="x", in_="x", weight="rms_ffn")],
    "qkv": [dict(block=1, pos=9)],
    "rope": [dict(block=1, pos=0), dict(block=0, pos=15)],
    "attn": [dict(block=1, pos=0), dict(block=1, pos=15)],
    "attnout": [dict()],
    "ffn": [dict()],
    "classify": [dict(weight="embedding")],
    "sampler": [dict(temperature=0.0, coin=0.3)] +
               [dict(temperature=t, topp=p, coin=c) for t, p in ((1.0, 0.9), (0.7, 1.0))
                for c in (0.0, 0.25, 0.5, 0.75, 0.999)],
}


def run(entry, layer, scenario, seed):
    m = L.Model(dim=64, hidden=96, n_heads=8, n_kv_heads=2, vocab=128, seq=16, seed=seed)
    args = {}
    for k, v in scenario.items():
        if isinstance(v, str):
            v = m.embedding if v == "embedding" else (m.s[v] if v in m.s else m.w[v])
        args[k] = v
    c = m.call(entry, **args)
    return {k: v.copy() for k, v in m.s.items()}, c.result


@pytest.mark.parametrize("layer", L.MODULES)
def test_all_tiers_bit_identical(native, jit, layer):
    for i, scenario in enumerate(SCENARIOS[layer]):
        for seed in (1, 2):
            want_state, want_result = run(native[layer], layer, scenario, seed)
            for (m, isa, level), fn in jit.items():
                if m != layer:
                    continue
                state, result = run(Fn(fn), layer, scenario, seed)
                assert result == want_result, (layer, isa, level, scenario)
                for k in want_state:
                    assert np.array_equal(state[k].view(np.uint32), want_state[k].view(np.uint32)), \
                        (layer, isa, f"O{level}", k, scenario)


@pytest.mark.parametrize("name", ["F16", "Q4_0", "Q4_1", "Q8_0"])
def test_typed_weights_all_tiers_bit_identical(jit, name):
    """classify on GGUF blocks at every tier and ISA level: the documented order bit for bit
    (quant.h groups Q4_0/Q4_1 rows four per pass; 130 rows also leave two to the one-row path)."""
    m = L.Model(dim=64, vocab=130)
    data = L.quantised(np.random.default_rng(4).standard_normal((130, 64)).astype(np.float32), name)
    want = L.typed_matmul_replay(data, name, m.s["x"], 130, 64)
    for (layer, isa, level), fn in jit.items():
        if layer == "classify":
            m.call(Fn(fn), weight=data.ctypes.data, weight_type=L.TYPE_CODES[name])
            assert np.array_equal(m.s["logits"].view(np.uint32), want.view(np.uint32)), (name, isa, f"O{level}")


def scale_probe(name):
    """One 32-weight block per row, row i's scale (Q4_0, Q8_0: d; Q4_1: m, with d = 0) the binary16
    with bits i, and weight 0 the only nonzero quant (1): with x = e_0 each logit is that scale
    widened to float32 (+0.0 for -0.0: 0.0 + -0.0), or NaN for an infinite or NaN scale."""
    rows = 65536
    h = np.arange(rows, dtype=np.uint16)
    if name == "Q8_0":
        blk = np.zeros((rows, 34), np.uint8)
        blk[:, 0:2] = h.view(np.uint8).reshape(rows, 2)
        blk[:, 2] = 1
    elif name == "Q4_0":
        blk = np.zeros((rows, 18), np.uint8)
        blk[:, 0:2] = h.view(np.uint8).reshape(rows, 2)
        blk[:, 2:] = 0x88                                  # nibble 8 is the quant 0
        blk[:, 2] = 0x89                                   # weight 0: nibble 9, the quant 1
    else:
        blk = np.zeros((rows, 20), np.uint8)               # d = +0.0, the weights' nibbles 0
        blk[:, 2:4] = h.view(np.uint8).reshape(rows, 2)
    value = h.view(np.float16).astype(np.float32)
    want = np.where(value == 0, np.float32(0), np.where(np.isfinite(value), value, np.float32(np.nan)))
    return blk, want


@pytest.mark.parametrize("name", ["Q4_0", "Q4_1", "Q8_0"])
def test_block_scales_every_fp16_value_all_tiers(jit, name):
    """Every binary16 bit pattern as a block scale (the grouped rows' 4-wide conversion for Q4_0
    and Q4_1's d and m, the one-row scalar one for Q8_0), at every tier and ISA level."""
    blk, want = scale_probe(name)
    m = L.Model(dim=32, vocab=65536, n_heads=2, n_kv_heads=1, hidden=32, seq=1)
    m.s["x"][:] = 0
    m.s["x"][0] = 1
    nan = np.isnan(want)
    for (layer, isa, level), fn in jit.items():
        if layer == "classify":
            m.s["logits"][:] = 7
            m.call(Fn(fn), weight=blk.ctypes.data, weight_type=L.TYPE_CODES[name])
            got = m.s["logits"]
            assert np.array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32)), (name, isa, f"O{level}")
            assert np.all(np.isnan(got[nan])), (name, isa, f"O{level}")
