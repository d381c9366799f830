"""Bitcode, tiers, ISA levels and BFMD packing, exercised on real compiler output.

Packed modules are run natively through tests/bfmd_loader.py (a twin of the kernel loader), so
a packing bug shows up as a wrong number, not just as a different byte.
"""
import ctypes
import subprocess
import struct

import numpy as np
import pytest

from bareflow.bitcode import compile as bitcode

from bareflow.modules import modformat

from bareflow.tiers import compile as tiers
from bareflow.tiers.levels import TIERS

from bareflow.bitcode import toolchain
from bareflow.errors import BareflowError
from bfmd_loader import LoadedModule, libm_resolver

LAYER_SOURCE = r"""
float expf(float);
static const float bias[4] = {0.5f, -1.0f, 2.0f, 0.25f};
static float *last_out;          /* bss: exercises the zero-filled tail */
static void matmul(float *o, const float *x, const float *w, int n) {
    for (int i = 0; i < n; i++) {
        float v = 0.0f;
        for (int j = 0; j < n; j++) v += w[i * n + j] * x[j];
        o[i] = v;
    }
}
void bf_layer_entry(float *o, const float *x, const float *w, int n) {
    matmul(o, x, w, n);
    for (int i = 0; i < n; i++) o[i] = expf(o[i]) * 0.5f + bias[i & 3];
    last_out = o;
}
"""

LAYER_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)


@pytest.fixture(scope="module")
def layer_bitcode(tmp_path_factory):
    d = tmp_path_factory.mktemp("layer")
    (d / "layer.c").write_text(LAYER_SOURCE)
    bitcode.compile_bitcode(d / "layer.c", d / "layer.bc", cflags=toolchain.FREESTANDING_CFLAGS,
                            include_dirs=[], what="module testlayer")
    return (d / "layer.bc").read_bytes()


def _reference(x, w, n):
    o = (w.reshape(n, n).astype(np.float64) @ x.astype(np.float64))
    return np.exp(o) * 0.5 + np.array([0.5, -1.0, 2.0, 0.25] * (n // 4))


@pytest.mark.parametrize("tier", TIERS)
def test_every_tier_packs_and_computes_the_same_layer(layer_bitcode, tier):
    obj = tiers.compile_tier(layer_bitcode, tier, "x86-64", module_name="testlayer")
    data = modformat.pack(obj, layer="testlay", tier=tier, isa="x86-64", exports={"expf"})
    info = modformat.parse(data)
    assert (info.layer, info.tier, info.isa, info.imports) == ("testlay", tier, "x86-64", ["expf"])
    module = LoadedModule(data, libm_resolver())
    n = 16
    rng = np.random.default_rng(7)
    x = rng.standard_normal(n).astype(np.float32)
    w = (rng.standard_normal(n * n) * 0.1).astype(np.float32)
    out = np.zeros(n, np.float32)
    LAYER_FN(module.entry_address)(out.ctypes.data, x.ctypes.data, w.ctypes.data, n)
    np.testing.assert_allclose(out, _reference(x, w, n), rtol=1e-5)


def test_plain_O0_would_stamp_optnone_but_our_bitcode_does_not(tmp_path):
    src = tmp_path / "f.c"
    src.write_text("float f(float *a, int n) { float s = 0; for (int i = 0; i < n; i++) s += a[i]; return s; }")
    ours = tmp_path / "ours.bc"
    bitcode.compile_bitcode(src, ours, cflags=toolchain.FREESTANDING_CFLAGS, include_dirs=[], what="f")
    plain = tmp_path / "plain.ll"
    subprocess.run(toolchain.CC + toolchain.FREESTANDING_CFLAGS + ["-O0", "-S", "-emit-llvm", str(src),
                                                                   "-o", str(plain)], check=True)
    import llvmlite.binding as llvm
    assert "optnone" in plain.read_text()
    assert "optnone" not in str(llvm.parse_bitcode(ours.read_bytes()))


def test_isa_level_is_the_one_compiled(layer_bitcode):
    """clang stamped x86-64 on every function; the tier step must override it."""
    for tier in ("O0", "O3"):
        base = tiers.assembly(layer_bitcode, tier, "x86-64")
        v3 = tiers.assembly(layer_bitcode, tier, "x86-64-v3")
        assert tiers.count_avx_instructions(base) == 0
        assert tiers.count_avx_instructions(v3) > 0
    assert "x86-64-v3" in tiers.retarget_ir('attributes #0 = { "target-cpu"="x86-64" }', "x86-64-v3")


def test_tiers_really_differ(layer_bitcode):
    o0 = tiers.assembly(layer_bitcode, "O0", "x86-64")
    o2 = tiers.assembly(layer_bitcode, "O2", "x86-64")
    assert o0 != o2
    # O0 keeps the helper as a real call; O2 inlines it.
    assert "matmul" in o0 and "call" in o0
    assert "callq\tmatmul" not in o2


def test_unresolved_symbol_names_module_symbol_and_tier(layer_bitcode):
    obj = tiers.compile_tier(layer_bitcode, "O1", "x86-64", module_name="testlayer")
    with pytest.raises(BareflowError, match=r"module testlay tier O1: unresolved symbol 'expf'"):
        modformat.pack(obj, layer="testlay", tier="O1", isa="x86-64", exports=set())


def test_unsupported_relocation_is_a_build_error(tmp_path):
    src = tmp_path / "abs.c"
    # A 32-bit absolute address (R_X86_64_32) cannot be relocated anywhere in 64-bit space.
    src.write_text('int counter;\n'
                   'void bf_layer_entry(void) { __asm__ volatile("movl $counter, %%eax" ::: "eax"); }\n')
    obj = tmp_path / "abs.o"
    subprocess.run(toolchain.CC + toolchain.FREESTANDING_CFLAGS + ["-O2", "-c", str(src), "-o", str(obj)],
                   check=True)
    with pytest.raises(BareflowError, match=r"module abs tier O2: unsupported relocation R_X86_64_32 "
                                            r"against symbol 'counter'"):
        modformat.pack(obj.read_bytes(), layer="abs", tier="O2", isa="x86-64", exports=set())


def test_missing_entry_point(tmp_path):
    src = tmp_path / "noentry.c"
    src.write_text("int helper(int x) { return x + 1; }")
    bitcode.compile_bitcode(src, tmp_path / "n.bc", cflags=toolchain.FREESTANDING_CFLAGS, include_dirs=[],
                            what="module noentry")
    obj = tiers.compile_tier((tmp_path / "n.bc").read_bytes(), "O2", "x86-64", module_name="noentry")
    with pytest.raises(BareflowError, match="does not define the function bf_layer_entry"):
        modformat.pack(obj, layer="noentry", tier="O2", isa="x86-64", exports=set())


def test_c_that_does_not_compile_names_the_file(tmp_path):
    src = tmp_path / "broken.c"
    src.write_text("void bf_layer_entry(void) { this is not C; }\n")
    out = tmp_path / "broken.bc"
    with pytest.raises(BareflowError, match=r"compiling module broken \(.*broken.c\) to bitcode failed"):
        bitcode.compile_bitcode(src, out, cflags=toolchain.FREESTANDING_CFLAGS, include_dirs=[],
                                what="module broken")
    assert not out.exists() and not (tmp_path / "broken.bc.tmp").exists()


def test_corrupt_module_files_are_rejected(layer_bitcode):
    obj = tiers.compile_tier(layer_bitcode, "O2", "x86-64", module_name="testlayer")
    good = modformat.pack(obj, layer="testlay", tier="O2", isa="x86-64", exports={"expf"})
    flipped = bytearray(good)
    flipped[100] ^= 0x40
    with pytest.raises(BareflowError, match="crc32 mismatch"):
        modformat.parse(bytes(flipped))
    with pytest.raises(BareflowError, match="bad magic"):
        modformat.parse(b"XXXX" + good[4:])
    with pytest.raises(BareflowError, match="file_size"):
        modformat.parse(good[:-1])
    wrong_abi = bytearray(good)
    struct.pack_into("<H", wrong_abi, 26, 99)
    with pytest.raises(BareflowError, match="abi_version 99"):
        modformat.parse(bytes(wrong_abi))


def test_packing_is_deterministic(layer_bitcode):
    a = modformat.pack(tiers.compile_tier(layer_bitcode, "O3", "x86-64-v3", module_name="t"),
                       layer="t", tier="O3", isa="x86-64-v3", exports={"expf"})
    b = modformat.pack(tiers.compile_tier(layer_bitcode, "O3", "x86-64-v3", module_name="t"),
                       layer="t", tier="O3", isa="x86-64-v3", exports={"expf"})
    assert a == b


def test_llvm_version_mismatch_stops_the_build(monkeypatch):
    monkeypatch.setattr(toolchain, "clang_version", lambda: (23, 0, 0))
    with pytest.raises(BareflowError, match="LLVM version mismatch: zig's clang is 23.0.0 but llvmlite"):
        toolchain.check_llvm_versions()
    monkeypatch.undo()          # the real versions must agree
    clang, lite = toolchain.check_llvm_versions()
    assert clang[0] == lite[0]


@pytest.mark.parametrize("layer", ["ffn", "attn", "rmsnorm"])
def test_real_layer_modules_get_the_isa_asked_for(tmp_path, layer):
    from conftest import ROOT
    out = tmp_path / f"{layer}.bc"
    bitcode.compile_bitcode(ROOT / "modules" / f"{layer}.c", out, cflags=toolchain.FREESTANDING_CFLAGS,
                            include_dirs=[ROOT / "src" / "include", ROOT / "src" / "libc" / "include",
                                          ROOT / "modules" / "include"], what=f"module {layer}")
    for tier in ("O0", "O3"):
        assert tiers.count_avx_instructions(tiers.assembly(out.read_bytes(), tier, "x86-64")) == 0
        assert tiers.count_avx_instructions(tiers.assembly(out.read_bytes(), tier, "x86-64-v3")) > 0


def test_alignment_the_loader_cannot_give_is_a_build_error(tmp_path):
    src = tmp_path / "aligned.c"
    src.write_text("static float table[16] __attribute__((aligned(8192)));\n"
                   "float *bf_layer_entry(void) { table[0] = 1.0f; return table; }\n")
    bitcode.compile_bitcode(src, tmp_path / "a.bc", cflags=toolchain.FREESTANDING_CFLAGS, include_dirs=[],
                            what="module aligned")
    obj = tiers.compile_tier((tmp_path / "a.bc").read_bytes(), "O2", "x86-64", module_name="aligned")
    with pytest.raises(BareflowError, match=r"module aligned tier O2: section \.bss\S* needs 8192-byte alignment"):
        modformat.pack(obj, layer="aligned", tier="O2", isa="x86-64", exports=set())
