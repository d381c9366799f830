"""Run-time compiles on the spare core, booted: QEMU `-cpu max -smp 2`, SeaBIOS and OVMF.

Core 0 generates while core 1 compiles layers' bitcode for the CPU (docs/jit.md, "Where compiles
run"); finished compiles are swapped in between layer calls.  The model is llama2.c's
stories260K, sampled (temperature 0.8, seed 5: 428 tokens, 15-150 s under TCG depending on the
machine's load); the tokens must equal those of the ahead-of-time-only (JIT=none) image of the
same model and settings.  Under TCG the first compile alone costs 5-20 s (QEMU translating
LLVM's code), and the ratio of compile to generation time moves with the host's load, so the
image uses a test policy (a plugin written by the fixture) that gives run-time rungs to two
cheap layers only (rmsnorm, rope: O0 > O2 > O1@host, one call each): their compiles finish well
within generation.  The tests ask for at least one compiled on core 1 and swapped in while core 0
went on, and for every other compile to be accounted for (swapped in, or still compiling /
queued when generation ended).
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
POLICY_PLUGIN = '''
from bareflow import hookimpl
from bareflow.policy.api import Decision, Policy


@hookimpl
def bareflow_register_policies():
    def decide(layer, variables):
        if layer.name in ("rmsnorm", "rope"):
            return Decision(ladder=["O0", "O2", "O1@host"], calls=[1, 1])
        return Decision(ladder=["O0", "O2"], calls=[1])
    return [Policy("spare-core-test", "two cheap layers compiled at run time on the spare core", decide)]
'''


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """(JIT=llvm image, tokens of the JIT=none build's run of its own image)."""
    model, tok = stories()
    need("qemu-system-x86_64")
    common = (f"MODEL={model}", f"TOKENIZER={tok}", *RUN)
    plugins = tmp_path_factory.mktemp("spare-plugin")
    (plugins / "sparecorepolicy.py").write_text(POLICY_PLUGIN)
    env = {"PYTHONPATH": str(plugins) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    jit = tmp_path_factory.mktemp("spare-jit")
    scons(jit, "image", "JIT=llvm", "PLUGINS=sparecorepolicy", "POLICY=spare-core-test", *common, timeout=1200,
          env=env)
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
            assert layer["tier"] == c["tier"] == "O1@host", (layer, c)
            assert layer["changes"][-1]["call"] == c["swap_call"] and layer["calls"][1] > 0, layer
        else:
            assert "when generation ended" in c["error"] and not c.get("timed_out"), c
    return res


def test_bios_smp2_compiles_on_core_1_while_core_0_generates(builds, tmp_path):
    _boot_smp2(builds, tmp_path, "bios")


def test_uefi_smp2_compiles_on_core_1_while_core_0_generates(builds, tmp_path):
    if not os.path.exists(qemu_runner.OVMF):
        pytest.skip(f"OVMF ({qemu_runner.OVMF}, Debian package ovmf) is not installed")
    _boot_smp2(builds, tmp_path, "uefi")
