"""Run-time compiles on the spare core, booted: QEMU `-cpu max -smp 2`, SeaBIOS and OVMF.

Core 0 generates while core 1 compiles each layer's bitcode for the CPU (docs/jit.md, "Where
compiles run"); finished compiles are swapped in between layer calls.  The model is llama2.c's
stories260K, sampled (temperature 0.8, seed 5: 428 tokens) so that generation outlasts the first
compiles under TCG; the tokens must equal those of the ahead-of-time-only (JIT=none) image of
the same model and settings.  Under TCG an optimising compile takes 5-20 s, so which compiles
finish before generation ends depends on the machine: the tests ask for at least one compiled
on core 1 and swapped in, and for every other one to be accounted for (swapped in, or still
compiling / queued when generation ended).
Skipped, saying why, without LLVM 22's static archives, the checkpoint, QEMU or OVMF.
"""
import os
import subprocess

import pytest

from bareflow.boot import qemu as qemu_runner
from bareflow.kernel import llvmjit
from buildutil import QEMU_SUCCESS, hosted, need, qemu, result, scons, stories

pytestmark = [pytest.mark.qemu,
              pytest.mark.skipif(llvmjit.find_llvm() is None,
                                 reason=f"LLVM 22 static archives ({llvmjit.DEB_PACKAGE}) not found in "
                                        f"{' or '.join(llvmjit.candidates())}; run tools/setup.sh")]

RUN = ("STEPS=512", "TEMPERATURE=0.8", "SEED=5")


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """(JIT=llvm image, tokens of the JIT=none build's run of its own image)."""
    model, tok = stories()
    need("qemu-system-x86_64")
    common = (f"MODEL={model}", f"TOKENIZER={tok}", *RUN)
    jit = tmp_path_factory.mktemp("spare-jit")
    scons(jit, "image", "JIT=llvm", "JIT_COMPILE_CYCLES=1", *common, timeout=1200)
    aot = tmp_path_factory.mktemp("spare-aot")
    scons(aot, "image", "hosted", "JIT=none", *common, timeout=900)
    status, out = hosted(aot / "bareflow-hosted", aot / "bareflow.img")
    assert status == 0, out[-3000:]
    tokens = result(out)["tokens"]
    assert len(tokens) > 300
    return jit / "bareflow.img", tokens


def _boot_smp2(builds, tmp_path, firmware):
    image, aot_tokens = builds
    run = tmp_path / "run.img"
    run.write_bytes(image.read_bytes())
    status, out = qemu(run, firmware=firmware, cpu="max", timeout=900, extra=qemu_runner.smp_args("2"))
    assert status == QEMU_SUCCESS, out[-3000:]
    res = result(out)
    assert res["tokens"] == aot_tokens, "compiling on core 1 changed the generated tokens"
    assert res["cores"]["started"] == 2 and res["cores"]["used"] == 2
    jit = res["jit"]
    assert jit["compiling_core"] == 1 and jit["stubs_reached"] == 0
    assert "compiles run on core 1 while core 0 generates" in out
    swapped = [c for c in jit["compiles"] if c["ok"]]
    assert swapped, f"no compile finished on core 1 before generation ended: {jit['compiles']}"
    for c in jit["compiles"]:
        assert c["core"] == 1 and c["inline"] is False, c
        if c["ok"]:
            layer = res["layers"][c["layer"]]
            assert "avx2" in c["features"].split(",") and c["cycles"] > 0 and c["object_bytes"] > 0, c
            # Requested at one call, compiled while the layer kept running, swapped in later.
            assert c["swap_call"] > c["request_call"], c
            assert layer["tier"] == "O3@host" and layer["changes"][-1]["call"] == c["swap_call"], layer
            assert layer["calls"][3] > 0, layer
        else:
            assert "when generation ended" in c["error"] and not c.get("timed_out"), c
    return res


def test_bios_smp2_compiles_on_core_1_while_core_0_generates(builds, tmp_path):
    _boot_smp2(builds, tmp_path, "bios")


def test_uefi_smp2_compiles_on_core_1_while_core_0_generates(builds, tmp_path):
    if not os.path.exists(qemu_runner.OVMF):
        pytest.skip(f"OVMF ({qemu_runner.OVMF}, Debian package ovmf) is not installed")
    _boot_smp2(builds, tmp_path, "uefi")
