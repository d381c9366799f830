"""JIT=llvm: run-time tiers compiled by LLVM 22 inside bareflow-hosted (docs/jit.md).

One JIT=llvm build (image + hosted program) serves every test here; bad input is made by
editing copies of its image with mtools (an independent FAT16 writer).  Every test checks that
the run finishes with the same tokens as the numpy reference, whatever the JIT did.
Skipped, saying why, when LLVM 22's static archives are absent (tools/setup.sh fetches them).
"""
import re
import subprocess

import pytest

from bareflow.bitcode import bitcodefile
from bareflow.kernel import llvmjit
from buildutil import ROOT, hosted, image_file, image_with_files, module_bitcode, need, reference_tokens, result, \
    scons, tool

pytestmark = pytest.mark.skipif(llvmjit.find_llvm() is None,
                                reason=f"LLVM 22 static archives ({llvmjit.DEB_PACKAGE}) not found in "
                                       f"{' or '.join(llvmjit.candidates())}; run tools/setup.sh")
LAYERS = ["embed", "rmsnorm", "qkv", "rope", "attn", "attnout", "ffn", "classify", "sampler"]
# cores = 1: compiles run inline, so every compile here finishes within the short run (the
# spare-core path, where a run may end before its compiles do, is tests/test_jit_spare_core.py).
JIT_BUILD_ARGS = ("JIT=llvm", "JIT_COMPILE_CYCLES=1", "CORES=1")


@pytest.fixture(scope="module")
def jit_build(tmp_path_factory):
    """A JIT=llvm image whose every layer reaches O3@host after its first cycle at its last AOT tier."""
    need("mcopy", "mtype")
    build = tmp_path_factory.mktemp("jit-build")
    scons(build, "image", "hosted", *JIT_BUILD_ARGS, timeout=1200)
    expected = reference_tokens(build / "model/SYNTH.BIN", build / "model/SYNTHTOK.BIN")
    return build, expected


def _run(jit_build, tmp_path, files=None):
    """Run a copy of the image with `files` ({image path: bytes}) replaced; (result, output, image)."""
    build, expected = jit_build
    image = image_with_files(build / "bareflow.img", tmp_path, files)
    status, out = hosted(build / "bareflow-hosted", image)
    assert status == 0, out[-3000:]
    res = result(out)
    assert res["tokens"] == expected["tokens"], "the JIT changed the generated tokens"
    return res, out, image


def _config(extra, cores=1):
    return f"prompt = Once upon a time\nsteps = 32\ncores = {cores}\n{extra}\n".encode()


def test_every_layer_compiled_for_the_host_and_swapped_in(jit_build, tmp_path):
    res, out, image = _run(jit_build, tmp_path)
    jit = res["jit"]
    assert jit["backend"].startswith("LLVM 22")
    assert jit["stubs_reached"] == 0 and jit["allocations_refused"] == 0
    assert sorted(c["layer"] for c in jit["compiles"]) == sorted(LAYERS)
    for c in jit["compiles"]:
        assert c["ok"], c
        assert c["tier"] == "O3@host" and c["core"] == 0 and c["inline"] is True
        assert c["object_bytes"] > 0 and c["cycles"] > 0 and c["cpu"] and c["load_cycles"] > 0
        assert c["swap_call"] == c["request_call"]          # inline: swapped right after the request
        layer = res["layers"][c["layer"]]
        assert layer["tier"] == "O3@host"
        assert layer["changes"][-1] == {"call": c["swap_call"], "from": layer["changes"][-1]["from"],
                                        "to": "O3@host"}
        assert layer["calls"][3] > 0           # the compiled code ran (O3-level calls)
    assert "compiles run inline on core 0" in out
    # /PROFILE.BIN (version 2) records the same compiles.
    from bareflow.policy import profile
    prof = profile.decode_profile(image_file(image, "/PROFILE.BIN"))
    assert [(r.layer, r.tier, r.ok, r.swap_call, r.core, r.inline, r.cycles) for r in prof.compiles] == \
        [(c["layer"], c["tier"], c["ok"], c["swap_call"], 0, True, c["cycles"]) for c in jit["compiles"]]
    assert prof.layers["ffn"].final_tier == "O3@host"


def _failed(res, layer):
    compiles = [c for c in res["jit"]["compiles"] if c["layer"] == layer]
    assert compiles and not compiles[0]["ok"], res["jit"]
    assert res["layers"][layer]["tier"] != "O3@host"
    return compiles[0]["error"]


def test_corrupt_bitcode_is_refused_before_llvm_and_the_layer_stays(jit_build, tmp_path):
    build, _ = jit_build
    data = bytearray((build / "image/FFN.BC").read_bytes())
    data[200] ^= 0xFF
    res, out, _ = _run(jit_build, tmp_path, {"/MODULES/FFN.BC": bytes(data)})
    error = _failed(res, "ffn")
    assert error.startswith("bitcode /MODULES/FFN.BC: crc32"), error
    assert "layer ffn: O3@host failed" in out and "stays at O3" in out
    assert all(c["ok"] for c in res["jit"]["compiles"] if c["layer"] != "ffn")


def test_bitcode_with_an_unresolvable_import(jit_build, tmp_path):
    bc = module_bitcode(tmp_path, "ffn", "float bf_test_not_exported(float);\n"
                        "void bf_layer_entry(struct bf_layer_call *c) { c->s->x[0] = bf_test_not_exported(c->s->x[0]); }\n")
    res, _, _ = _run(jit_build, tmp_path, {"/MODULES/FFN.BC": bitcodefile.pack(bc.read_bytes(), layer="ffn")})
    error = _failed(res, "ffn")
    assert "imports 'bf_test_not_exported', which the kernel does not export" in error, error


def test_heap_exhausted_by_a_compile(jit_build, tmp_path):
    res, out, _ = _run(jit_build, tmp_path, {"/BAREFLOW.CFG": _config("jit_heap_kib = 2048")})
    first = res["jit"]["compiles"][0]
    assert not first["ok"] and "LLVM heap exhausted" in first["error"], first
    assert res["jit"]["allocations_refused"] > 0 and res["jit"]["stubs_reached"] == 0
    # LLVM may be half-way through an update when its allocation fails: no further compile runs.
    assert all(not c["ok"] and "disabled" in c["error"] for c in res["jit"]["compiles"][1:])
    assert all(layer["tier"] != "O3@host" for layer in res["layers"].values())


def test_compile_on_the_spare_core_that_times_out_is_reported_and_dropped(jit_build, tmp_path):
    """cores = 2: compiles go to core 1 while core 0 generates; with a 1 ms budget the first one
    times out - named on the console and in the result line, the layer keeps its tier, the run
    goes on with the same tokens - and the ones queued behind it never displace it."""
    res, out, image = _run(jit_build, tmp_path, {"/BAREFLOW.CFG": _config("jit_timeout_ms = 1", cores=2)})
    jit = res["jit"]
    assert jit["compiling_core"] == 1 and jit["timeout_ms"] == 1
    assert "compiles run on core 1 while core 0 generates (time-out 1 ms)" in out
    first, rest = jit["compiles"][0], jit["compiles"][1:]
    assert first["core"] == 1 and first["inline"] is False and first["timed_out"] is True, first
    assert not first["ok"] and "did not finish within jit_timeout_ms = 1" in first["error"], first
    assert f"layer {first['layer']}: O3@host timed out at call" in out
    kept = res["layers"][first["layer"]]
    assert kept["tier"] in ("O2", "O3") and kept["changes"][-1]["to"] == kept["tier"], kept
    # Nothing else was swapped in: the rest waited behind the late compile (or were themselves dropped).
    for c in rest:
        assert not c["ok"] and c["core"] == 1, c
        assert c.get("timed_out") or "when generation ended" in c["error"], c
    assert all(layer["tier"] != "O3@host" for layer in res["layers"].values())
    from bareflow.policy import profile
    prof = profile.decode_profile(image_file(image, "/PROFILE.BIN"))
    assert prof.compiles[0].timed_out and not prof.compiles[0].inline and prof.compiles[0].core == 1


def test_cpu_llvm_does_not_know(jit_build, tmp_path):
    res, _, _ = _run(jit_build, tmp_path, {"/BAREFLOW.CFG": _config("jit_cpu = bogus-cpu")})
    for c in res["jit"]["compiles"]:
        assert not c["ok"] and c["cpu"] == "bogus-cpu"
        assert "'bogus-cpu' is not a recognized processor" in c["error"], c


def _stub_names():
    text = (ROOT / "src/jit/llvm/stubs.c").read_text()
    return re.findall(r"STUB\((\w+)\)", text)


def test_llvm_version_mismatch_is_a_clear_error():
    llvm = llvmjit.find_llvm()
    with pytest.raises(Exception, match="LLVM version mismatch: the JIT's LLVM .* is 22.1.8 but zig's clang is 23.0.0"):
        llvmjit.check_versions(llvmjit.Llvm(llvm.prefix, (22, 1, 8)), clang=(23, 0, 0), llvmlite=(22, 1, 0))
    with pytest.raises(Exception, match="llvmlite is built on LLVM 21.1.0"):
        llvmjit.check_versions(llvmjit.Llvm(llvm.prefix, (22, 1, 8)), clang=(22, 1, 8), llvmlite=(21, 1, 0))
    llvmjit.check_versions(llvm)          # the installed set agrees


def _defined_symbols(program):
    """Names the program defines, from binutils' nm (pyelftools takes minutes on 60 MB)."""
    need("nm")
    out = subprocess.run([tool("nm"), "--defined-only", str(program)], capture_output=True, text=True, check=True)
    return {line.split()[-1] for line in out.stdout.splitlines() if line.strip()}


def test_stubs_are_listed_linked_and_never_reached(jit_build, tmp_path):
    """Every stub LLVM still references after --gc-sections is in the program, and compiling all
    nine layers at O3 (the tiered rung) and at O0, O1, O2 (the fixed policy) reaches none of them:
    a reached stub fails its compile naming the function and counts in stubs_reached."""
    build, _ = jit_build
    names = _stub_names()
    assert len(names) > 100 and len(set(names)) == len(names)
    linked = [n for n in names if n in _defined_symbols(build / "bareflow-hosted")]
    assert len(linked) > 50, f"only {linked} of the stubs are linked: are LLVM's references resolved elsewhere?"
    res, _, _ = _run(jit_build, tmp_path)
    assert res["jit"]["stubs_reached"] == 0
    try:
        for level in ("O0", "O1", "O2"):      # same build dir: only the policy table and image change
            scons(build, "image", "JIT=llvm", "CORES=1", "POLICY=fixed", f"TIER={level}@host", timeout=600)
            res, _, _ = _run(jit_build, tmp_path)
            assert [c["tier"] for c in res["jit"]["compiles"]] == [f"{level}@host"] * len(LAYERS)
            assert all(c["ok"] for c in res["jit"]["compiles"]), res["jit"]
            assert res["jit"]["stubs_reached"] == 0
    finally:                              # the other tests expect the module's tiered image back
        scons(build, "image", "hosted", *JIT_BUILD_ARGS, timeout=1200)


# ---------------------------------------------------------------- the kernel, under QEMU (TCG)

def _boot(jit_build, tmp_path, firmware, files=None):
    from buildutil import QEMU_SUCCESS, qemu
    build, expected = jit_build
    image = image_with_files(build / "bareflow.img", tmp_path, files, name="boot.img")
    status, out = qemu(image, firmware=firmware, cpu="max", timeout=600)
    assert status == QEMU_SUCCESS, out[-3000:]
    res = result(out)
    assert res["tokens"] == expected["tokens"], "the JIT changed the generated tokens"
    return res, out


@pytest.mark.qemu
def test_kernel_compiles_every_layer_for_the_cpu_it_boots_on(jit_build, tmp_path):
    """SeaBIOS + syslinux load the 36 MB kernel; with one CPU (-smp 1) LLVM runs in ring 0 inline
    on core 0 and compiles all nine layers for QEMU's `max` CPU, using AVX2; the tokens are the
    reference's.  (-smp 2, BIOS and UEFI, compiling on core 1: tests/test_jit_spare_core.py.)"""
    res, out = _boot(jit_build, tmp_path, "bios")
    jit = res["jit"]
    assert jit["backend"].startswith("LLVM 22") and jit["stubs_reached"] == 0
    assert sorted(c["layer"] for c in jit["compiles"]) == sorted(LAYERS)
    for c in jit["compiles"]:
        assert c["ok"] and c["core"] == 0 and c["inline"] is True, c
        assert "avx2" in c["features"].split(","), c
        assert c["tier"] == "O3@host" and res["layers"][c["layer"]]["tier"] == "O3@host"
    assert res["cores"]["started"] == 1 and res["jit"]["compiling_core"] == 0
    assert "compiles run inline on core 0" in out
