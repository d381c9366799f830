"""PROFILE.BIN (BFPR) encode/decode, the BAREFLOW-RESULT line, load_profile."""
import json
import struct
import zlib

import pytest

from bareflow.policy import profile as pf
from bareflow.errors import BareflowError
from bareflow.policy.profile import LayerProfile, Profile

SAMPLE = Profile(tokens=31, cycles_per_second=2_500_000_000, total_cycles=9_000_000_000, layers={
    "qkv": LayerProfile("qkv", (8, 0, 40, 107), (80000, 0, 200000, 400000), "O3", 2),
    "rmsnorm": LayerProfile("rmsnorm", (30, 0, 322, 0), (6000, 0, 30000, 0), "O2", 1),
})


def test_empty_profile():
    data = pf.empty_profile()
    assert len(data) == 4096
    assert data[:4] == b"BFPR" and struct.unpack_from("<HH", data, 4) == (1, 0)
    assert struct.unpack_from("<I", data, 12)[0] == zlib.crc32(data[:12] + bytes(20))
    assert not any(data[32:])
    empty = pf.decode_profile(data)
    assert empty == Profile(0, 0, 0, {})


def test_layout_and_round_trip():
    data = pf.encode_profile(SAMPLE)
    assert len(data) == 4096
    magic, version, n, tokens, crc, cps, total = struct.unpack_from("<4sHHIIQQ", data)
    assert (magic, version, n, tokens, cps, total) == (b"BFPR", 1, 2, 31, 2_500_000_000, 9 * 10**9)
    assert crc == zlib.crc32(data[:12] + bytes(4) + data[16:32 + 2 * 96])
    entry = data[32:128]
    assert entry[:16] == b"qkv".ljust(16, b"\0")
    assert struct.unpack_from("<4Q", entry, 16) == (8, 0, 40, 107)
    assert struct.unpack_from("<4Q", entry, 48) == (80000, 0, 200000, 400000)
    assert (entry[80], entry[81]) == (3, 2) and entry[82:96] == bytes(14)
    assert pf.decode_profile(data) == SAMPLE
    assert pf.encode_profile(pf.decode_profile(data)) == data
    assert SAMPLE.layers["qkv"].cycles_per_call("O2") == 5000
    assert SAMPLE.layers["qkv"].cycles_per_call("O1") is None
    assert SAMPLE.layers["rmsnorm"].total_calls == 352


def seal(data: bytearray, n_layers=None) -> bytes:
    n = struct.unpack_from("<H", data, 6)[0] if n_layers is None else n_layers
    used = 32 + 96 * min(n, 40)
    struct.pack_into("<I", data, 12, 0)
    struct.pack_into("<I", data, 12, zlib.crc32(bytes(data[:used])))
    return bytes(data)


def patched(fmt, offset, *values, crc=True):
    data = bytearray(pf.encode_profile(SAMPLE))
    struct.pack_into(fmt, data, offset, *values)
    return seal(data) if crc else bytes(data)


DECODE_ERRORS = [
    (pf.empty_profile()[:4095], "file size is 4095 bytes"),
    (patched("<4s", 0, b"BFPT"), "field 'magic' is b'BFPT'"),
    (patched("<H", 4, 9), "field 'version' is 9"),
    (patched("<H", 6, 41), "field 'n_layers' is 41, at most 40"),
    (patched("<Q", 32 + 16, 5, crc=False), "field 'crc32'"),
    (patched("<B", 4000, 1), "bytes after the 2 entries .* must be zero"),
    (patched("<16s", 32, b"Q-K"), r"entry 0 \('Q-K'\): field 'layer' must be"),
    (patched("<16s", 128, b"qkv"), r"entry 1 \('qkv'\): field 'layer' repeats"),
    (patched("<B", 32 + 80, 4), r"entry 0 \('qkv'\): field 'final tier' is 4"),
    (patched("<B", 32 + 90, 1), r"entry 0 \('qkv'\): field 'reserved' must be zero"),
]


@pytest.mark.parametrize("data, message", DECODE_ERRORS, ids=[m for _, m in DECODE_ERRORS])
def test_every_decode_error(data, message):
    with pytest.raises(BareflowError, match=r"^PROFILE\.BIN: " + message):
        pf.decode_profile(data)


@pytest.mark.parametrize("bad, message", [
    (Profile(0, 0, 0, {"BAD": LayerProfile("BAD", (0,) * 4, (0,) * 4)}), "layer name 'BAD'"),
    (Profile(0, 0, 0, {"a": LayerProfile("a", (0,) * 3, (0,) * 4)}), "needs 4 calls"),
    (Profile(0, 0, 0, {"a": LayerProfile("a", (-1, 0, 0, 0), (0,) * 4)}), "calls must be"),
    (Profile(0, 0, 0, {"a": LayerProfile("a", (0,) * 4, (0,) * 4, "O9")}), "final tier 'O9'"),
    (Profile(0, 0, 0, {"a": LayerProfile("a", (0,) * 4, (0,) * 4, "O0", 256)}), "changes must"),
    (Profile(2**32, 0, 0), "tokens must be"),
    (Profile(0, 0, 0, {f"l{i}": LayerProfile(f"l{i}", (0,) * 4, (0,) * 4) for i in range(41)}),
     "41 layers, at most 40"),
])
def test_encode_errors(bad, message):
    with pytest.raises(BareflowError, match=message):
        pf.encode_profile(bad)


def result_json(**overrides):
    result = {
        "prompt": "Once", "prompt_tokens": [1, 403], "tokens": [407, 261, 1],
        "text": " upon a", "steps": 5, "temperature": 0, "seed": 42,
        "tokens_per_second": 3.0, "cycles_per_second": 3_000_000_000, "isa": "x86-64",
        "layers": {
            "qkv": {"calls": [8, 0, 12, 5], "cycles": [800, 0, 600, 200], "tier": "O3",
                    "changes": [{"call": 8, "from": "O0", "to": "O2"},
                                {"call": 20, "from": "O2", "to": "O3"}]},
            "embed": {"calls": [5, 0, 0, 0], "cycles": [50, 0, 0, 0], "tier": "O0", "changes": []},
        },
        "profiling_overhead_cycles": 24, "boot_cycles": 123456,
    }
    result.update(overrides)
    return result


def test_profile_from_result_json():
    profile = pf.profile_from_result_json(result_json())
    assert profile.tokens == 3
    assert profile.cycles_per_second == 3_000_000_000
    assert profile.total_cycles == 3_000_000_000          # 3 tokens at 3 tokens/s
    assert profile.layers["qkv"] == LayerProfile("qkv", (8, 0, 12, 5), (800, 0, 600, 200), "O3", 2)
    assert pf.decode_profile(pf.encode_profile(profile)) == profile


@pytest.mark.parametrize("result, message", [
    ([], "expected a JSON object"),
    ({k: v for k, v in result_json().items() if k != "layers"}, "key 'layers' is missing"),
    (result_json(tokens=3), "key 'tokens' must be a list"),
    (result_json(cycles_per_second=-1), "key 'cycles_per_second' must be a non-negative number"),
    (result_json(tokens_per_second="fast"), "key 'tokens_per_second' must be"),
    (result_json(layers=[]), "key 'layers' must be an object"),
    (result_json(layers={"QKV": {}}), "layers.QKV: layer name"),
    (result_json(layers={"qkv": 5}), "layers.qkv must be an object"),
    (result_json(layers={"qkv": {"calls": [1, 2, 3], "cycles": [0] * 4, "tier": "O0"}}),
     r"layers.qkv.calls must be a list of 4 numbers"),
    (result_json(layers={"qkv": {"calls": [1, 2, 3, -4], "cycles": [0] * 4, "tier": "O0"}}),
     r"layers.qkv.calls\[3\] is -4"),
    (result_json(layers={"qkv": {"calls": [0] * 4, "cycles": [0.5, 0, 0, 0], "tier": "O0"}}),
     r"layers.qkv.cycles\[0\] must be a whole number"),
    (result_json(layers={"qkv": {"calls": [0] * 4, "cycles": [0] * 4, "tier": "O5"}}),
     "layers.qkv.tier is 'O5'"),
    (result_json(layers={"qkv": {"calls": [0] * 4, "cycles": [0] * 4, "tier": "O1",
                                 "changes": {}}}), "layers.qkv.changes must be a list"),
])
def test_result_json_errors(result, message):
    with pytest.raises(BareflowError, match=r"^BAREFLOW-RESULT: .*" + message):
        pf.profile_from_result_json(result)


def test_serial_log_uses_the_last_result_line():
    first = result_json(tokens=[1])
    last = result_json()
    log = ("SeaBIOS (version 1.16)\r\nbooting BareFlow\n"
           f"BAREFLOW-RESULT {json.dumps(first)}\n"
           "noise\n"
           f"\x1b[0mBAREFLOW-RESULT {json.dumps(last)}\r\n")
    profile = pf.profile_from_serial_log(log)
    assert profile.tokens == 3


def test_serial_log_errors():
    with pytest.raises(BareflowError, match=r"^serial log: no 'BAREFLOW-RESULT \{json\}' line"):
        pf.profile_from_serial_log("BAREFLOW-PANIC: out of memory\n")
    with pytest.raises(BareflowError, match=r"^serial log: line 2: the BAREFLOW-RESULT JSON is "
                                            r"malformed"):
        pf.profile_from_serial_log('boot\nBAREFLOW-RESULT {"tokens": [1, 2\n')
    with pytest.raises(BareflowError, match=r"^serial log: line 1: key 'layers' is missing"):
        pf.profile_from_serial_log('BAREFLOW-RESULT {"tokens": []}')


def test_load_profile(tmp_path):
    binary = tmp_path / "PROFILE.BIN"
    binary.write_bytes(pf.encode_profile(SAMPLE))
    assert pf.load_profile(binary) == SAMPLE
    log = tmp_path / "run.log"
    log.write_bytes(b"\xff\xfe garbage\nBAREFLOW-RESULT " + json.dumps(result_json()).encode())
    assert pf.load_profile(str(log)).layers["embed"].calls == (5, 0, 0, 0)
    with pytest.raises(BareflowError, match=f"profile {tmp_path / 'nope.bin'}: cannot read it"):
        pf.load_profile(tmp_path / "nope.bin")
    other = tmp_path / "other.bin"
    other.write_bytes(b"BFMD" + bytes(60))
    with pytest.raises(BareflowError, match="neither a BFPR profile"):
        pf.load_profile(other)
    corrupt = tmp_path / "corrupt.bin"
    corrupt.write_bytes(pf.encode_profile(SAMPLE)[:100])
    with pytest.raises(BareflowError, match=f"^{corrupt}: file size is 100 bytes"):
        pf.load_profile(corrupt)


def test_describe():
    text = pf.describe(SAMPLE)
    assert text.splitlines()[0] == ("profile: 31 tokens, 9000000000 cycles in the generation loop "
                                    "(3.600 s at 2500000000 cycles/s), 2 layers")
    qkv = next(line for line in text.splitlines() if line.startswith("qkv"))
    assert "8 @  10000" in qkv and "40 @   5000" in qkv and qkv.split()[-2:] == ["O3", "2"]
    assert "empty" in pf.describe(pf.decode_profile(pf.empty_profile()))


def test_extract_profile_from_a_disk_image(tmp_path):
    fat16 = pytest.importorskip("bareflow.image.fat16")
    written = pf.encode_profile(SAMPLE)
    volume, _ = fat16.make_fat16({"/PROFILE.BIN": written, "/KERNEL.BIN": b"k" * 3000},
                                 volume_id=0x1234, hidden_sectors=2048)
    mbr = bytearray(512)
    struct.pack_into("<B3sB3sII", mbr, 446, 0x80, bytes(3), 0x0E, bytes(3), 2048,
                     len(volume) // 512)
    mbr[510:512] = b"\x55\xaa"
    image = tmp_path / "bareflow.img"
    image.write_bytes(bytes(mbr) + bytes(2047 * 512) + volume)
    assert pf.extract_profile(image) == written
    no_mbr = tmp_path / "blank.img"
    no_mbr.write_bytes(bytes(4096))
    with pytest.raises(BareflowError, match="no MBR"):
        pf.extract_profile(no_mbr)
    other, _ = fat16.make_fat16({"/KERNEL.BIN": b"k"}, volume_id=1, hidden_sectors=2048)
    image.write_bytes(bytes(mbr) + bytes(2047 * 512) + other)
    with pytest.raises(BareflowError, match="no /PROFILE.BIN on the FAT16 partition"):
        pf.extract_profile(image)
