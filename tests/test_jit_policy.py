"""Run-time tiers on the build side (no LLVM needed): policy validation, the version 2 policy
table, the tiered policy's JIT rung, and the BFBC bitcode file's rules."""
import re
import struct

import pytest

from bareflow.bitcode import bitcodefile
from bareflow.errors import BareflowError
from bareflow.policy import table as policytable
from bareflow.policy.api import Decision, LayerInfo, validate_decision
from bareflow.policy.builtin import fixed_decision, tiered_decision
from bareflow.tiers import runtime as runtiers

LAYERS = ["embed", "rmsnorm", "qkv", "rope", "attn", "attnout", "ffn", "classify", "sampler"]


def _info(jit="llvm", share=0.3):
    return LayerInfo("ffn", "matmul", 10**6, 10**6, 5, 64, None, share, jit=jit)


def test_tier_codes_round_trip():
    assert runtiers.tier_code("O2") == 2 and runtiers.tier_code("O3@host") == 0x13
    assert runtiers.tier_code("O1@x86-64-v3") == 0x21 and runtiers.tier_code("O0@x86-64-v4") == 0x30
    for name in runtiers.ALL_TIERS:
        assert runtiers.tier_name(runtiers.tier_code(name)) == name
    assert runtiers.tier_code("O4@host") is None and runtiers.tier_name(0x14) is None


def test_run_time_tiers_need_jit_and_an_aot_start():
    ok = Decision(["O0", "O3@host"], calls=[5])
    assert validate_decision(ok, _info()).ladder == ["O0", "O3@host"]
    with pytest.raises(BareflowError, match="names run-time tiers, but the image is built with JIT=none"):
        validate_decision(ok, _info(jit="none"))
    with pytest.raises(BareflowError, match=r"ladder\[0\]' is the run-time tier 'O3@host'"):
        validate_decision(Decision(["O3@host"]), _info())
    with pytest.raises(BareflowError, match="must climb strictly"):
        validate_decision(Decision(["O0", "O3@host", "O2"], calls=[1, 1]), _info())
    with pytest.raises(BareflowError, match=r"is 'O3@arm', not a tier"):
        validate_decision(Decision(["O0", "O3@arm"], calls=[1]), _info())


def test_tiered_adds_one_compile_on_a_cycle_budget_only_with_jit():
    assert "O3@host" not in tiered_decision(_info(jit="none"), {}).ladder
    d = tiered_decision(_info(), {"JIT_COMPILE_CYCLES": "12345"})
    assert d.ladder == ["O0", "O2", "O3", "O3@host"] and d.calls[-1] == 0 and d.cycles[-1] == 12345
    cheap = tiered_decision(_info(share=0.001), {})
    assert cheap.ladder == ["O0", "O2", "O3@host"] and cheap.cycles[-1] == 100_000_000
    validate_decision(cheap, _info(share=0.001))
    with pytest.raises(BareflowError, match="JIT_COMPILE_CYCLES='0'"):
        tiered_decision(_info(), {"JIT_COMPILE_CYCLES": "0"})
    assert fixed_decision(_info(), {"TIER": "O2@host"}).ladder == ["O0", "O2@host"]


def test_policy_table_version_2_only_with_run_time_tiers():
    plain = {name: Decision(["O0", "O2"], calls=[3]) for name in LAYERS}
    assert struct.unpack_from("<H", policytable.encode(plain, LAYERS), 4)[0] == 1
    jit = dict(plain, ffn=Decision(["O0", "O2", "O3@host"], calls=[3, 0], cycles=[0, 99]))
    data = policytable.encode(jit, LAYERS)
    assert struct.unpack_from("<H", data, 4)[0] == 2
    entry = 16 + 64 * LAYERS.index("ffn")
    assert data[entry + 20:entry + 24] == bytes([0, 2, 0x13, 0xFF])
    assert policytable.decode(data)["ffn"].ladder == ["O0", "O2", "O3@host"]
    # A run-time code in a version 1 table, or as the first rung, is refused.
    bad = bytearray(data)
    struct.pack_into("<H", bad, 4, 1)
    struct.pack_into("<I", bad, 12, policytable._crc(bytes(bad)))
    with pytest.raises(BareflowError, match=r"'ladder\[2\]' is 19, expected a tier code 0..3"):
        policytable.decode(bytes(bad))
    bad = bytearray(data)
    bad[entry + 20] = 0x10
    struct.pack_into("<I", bad, 12, policytable._crc(bytes(bad)))
    with pytest.raises(BareflowError, match=r"'ladder\[0\]' is a run-time tier"):
        policytable.decode(bytes(bad))


def test_policy_table_version_2_holds_isa_max_cores_and_run_time_tiers_together():
    """Byte 18 = isa, byte 19 = max_cores, ladder bytes = tier codes: one entry carries all three,
    per ISA level, and check_for_runtime (the kernel's rules) accepts it."""
    low = {name: Decision(["O0", "O2"], calls=[3]) for name in LAYERS}
    high = dict(low, ffn=Decision(["O0", "O3", "O3@host"], calls=[3, 0], cycles=[0, 99], max_cores=2))
    data = policytable.encode_levels({"x86-64": low, "x86-64-v3": high}, LAYERS)
    assert struct.unpack_from("<H", data, 4)[0] == 2
    entry = 16 + 64 * (len(LAYERS) + LAYERS.index("ffn"))
    assert data[entry:entry + 3] == b"ffn"
    assert (data[entry + 18], data[entry + 19]) == (2, 2)                 # x86-64-v3, max_cores 2
    assert data[entry + 20:entry + 24] == bytes([0, 3, 0x13, 0xFF])
    levels = policytable.check_for_runtime(data)
    assert levels["x86-64-v3"]["ffn"].ladder == ["O0", "O3", "O3@host"]
    assert levels["x86-64-v3"]["ffn"].max_cores == 2 and levels["x86-64"]["ffn"].ladder == ["O0", "O2"]
    bad = bytearray(data)
    bad[entry + 22] = 0x14                     # level 4 does not exist
    struct.pack_into("<I", bad, 12, policytable._crc(bytes(bad)))
    with pytest.raises(BareflowError, match=r"entry 15 \('ffn'\): field 'ladder\[2\]' is 0x14, not a tier code"):
        policytable.check_for_runtime(bytes(bad))


BITCODE = b"BC\xc0\xde" + bytes(60)


def test_bitcode_file_round_trip_and_rules():
    data = bitcodefile.pack(BITCODE, layer="ffn", made_by="LLVM22.1.8")
    assert len(data) == 48 + len(BITCODE) and data[:4] == b"BFBC"
    assert bitcodefile.parse(data) == ("ffn", "LLVM22.1.8", BITCODE)
    assert bitcodefile.file_name("ffn") == "/MODULES/FFN.BC"
    with pytest.raises(BareflowError, match="bitcode magic"):
        bitcodefile.pack(b"not bitcode", layer="ffn", made_by="LLVM22.1.8")
    with pytest.raises(BareflowError, match="layer name"):
        bitcodefile.pack(BITCODE, layer="feedforward", made_by="LLVM22.1.8")
    corrupt = bytearray(data)
    corrupt[60] ^= 1
    with pytest.raises(BareflowError, match="crc32"):
        bitcodefile.parse(bytes(corrupt))
    with pytest.raises(BareflowError, match="reads LLVM 22 bitcode"):
        bitcodefile.parse(bitcodefile.pack(BITCODE, layer="ffn", made_by="LLVM21.1.0"))
    with pytest.raises(BareflowError, match="bitcode_size"):
        bitcodefile.parse(data + b"x")


def test_boot_config_mirror_reads_the_jit_keys_as_config_c_does():
    """jit_cpu / jit_heap_kib next to the SMP and chat keys: the build's reader of /BAREFLOW.CFG
    (bareflow/image/bootconfig.parse) takes what src/runtime/config.c takes and refuses the rest."""
    from bareflow.image import bootconfig
    values = bootconfig.parse(b"cores = 2\nchat_after = \\n\njit_cpu = znver4\njit_heap_kib = 1024\n")
    assert (values["cores"], values["chat_after"], values["jit_cpu"], values["jit_heap_kib"]) == (2, "\n", "znver4", 1024)
    assert bootconfig.parse(b"")["jit_heap_kib"] == 65536 and bootconfig.parse(b"")["jit_cpu"] == ""
    for text, message in [(b"jit_heap_kib = 63\n", "jit_heap_kib = '63' is not an integer in 64..4194304"),
                          (b"jit_cpu = Zen4\n", "jit_cpu 'Zen4' is not a CPU name"),
                          (b"jit_cpu = " + b"a" * 64 + b"\n", "jit_cpu is 64 bytes, expected 1..63"),
                          (b"jit_cpu =\n", "jit_cpu is 0 bytes")]:
        with pytest.raises(BareflowError, match=r"BAREFLOW.CFG line 1: " + re.escape(message)):
            bootconfig.parse(text)


def test_jit_timeout_key_is_read_alike_and_written_only_for_jit_images():
    """jit_timeout_ms: 1..3600000, default 60000 in both readers; the build writes its
    JIT_TIMEOUT_MS into /BAREFLOW.CFG of JIT=llvm images only."""
    from bareflow.image import bootconfig
    assert bootconfig.parse(b"")["jit_timeout_ms"] == 60000
    assert bootconfig.parse(b"jit_timeout_ms = 1\n")["jit_timeout_ms"] == 1
    for value in (b"0", b"3600001", b"+5", b"5ms", b""):
        with pytest.raises(BareflowError, match=r"BAREFLOW.CFG line 1: jit_timeout_ms = .* is not an integer "
                                                r"in 1\.\.3600000"):
            bootconfig.parse(b"jit_timeout_ms = " + value + b"\n")
    plain = bootconfig.render({}, 256)
    assert b"jit_timeout_ms" not in plain
    jit = bootconfig.render({"jit_timeout_ms": "250"}, 256)
    assert jit.endswith(b"jit_timeout_ms = 250\n") and bootconfig.parse(jit)["jit_timeout_ms"] == 250
    from bareflow.kernel import jit as jit_plugin
    variable = [v for v in jit_plugin.bareflow_register_variables() if v.name == "JIT_TIMEOUT_MS"][0]
    assert variable.default == "60000"
    with pytest.raises(BareflowError, match=r"JIT_TIMEOUT_MS='0': expected an integer in 1\.\.3600000"):
        variable.convert("0")
