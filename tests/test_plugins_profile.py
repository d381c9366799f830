"""PROFILE.BIN (BFPR) encode/decode, the BAREFLOW-RESULT line, load_profile."""
import json
import struct
import zlib

import pytest

from bareflow.policy import profile as pf
from bareflow.errors import BareflowError
from bareflow.policy.profile import LayerProfile, Profile
from bareflow.policy.profile_cores import CoresProfile

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


SAMPLE_CORES = Profile(tokens=31, cycles_per_second=2_500_000_000, total_cycles=9_000_000_000, layers={
    "qkv": LayerProfile("qkv", (8, 0, 40, 107), (80000, 0, 200000, 400000), "O3", 2, (300000, 280000)),
    "rmsnorm": LayerProfile("rmsnorm", (30, 0, 322, 0), (6000, 0, 30000, 0), "O2", 1),
}, cores=CoresProfile(found=4, started=2, used=2, busy_cycles=(300000, 280000)))
CORES_AT = 32 + 2 * 96


def test_version_3_cores_section_layout_and_round_trip():
    data = pf.encode_profile(SAMPLE_CORES)
    assert struct.unpack_from("<HH", data, 4) == (3, 2)
    assert data[32:CORES_AT] == pf.encode_profile(SAMPLE)[32:CORES_AT]      # entries as in version 1
    assert struct.unpack_from("<4sHBBBB6s", data, CORES_AT) == (b"BFCC", 4, 2, 2, 2, 1, bytes(6))
    assert struct.unpack_from("<2Q", data, CORES_AT + 16) == (300000, 280000)
    row = CORES_AT + 32
    assert data[row:row + 8] == bytes(8)                                    # entry 0 (qkv), reserved
    assert struct.unpack_from("<2Q", data, row + 8) == (300000, 280000)
    end = row + 24
    assert struct.unpack_from("<I", data, 12)[0] == zlib.crc32(data[:12] + bytes(4) + data[16:end])
    assert not any(data[end:])
    assert pf.decode_profile(data) == SAMPLE_CORES
    assert pf.encode_profile(pf.decode_profile(data)) == data
    text = pf.describe(SAMPLE_CORES)
    assert "cores: found 4, started 2, used 2" in text and "51.7%" in text and "48.3%" in text


def test_versions_1_and_2_still_read():
    v1 = pf.decode_profile(pf.encode_profile(SAMPLE))
    assert v1.cores is None and v1.layers["qkv"].core_cycles == ()
    # A version 2 file as the JIT kernel wrote it: the compile section right after the entries.
    data = bytearray(pf.encode_profile(SAMPLE))
    struct.pack_into("<H", data, 4, 2)
    record = struct.pack("<16sBBBBIQQ24s", b"qkv", 0x13, 1, 0, 0, 4096, 123456, 20, b"znver3")
    data[CORES_AT:CORES_AT + 8 + 64] = struct.pack("<4sHH", b"BFJC", 1, 64) + record
    struct.pack_into("<I", data, 12, 0)
    struct.pack_into("<I", data, 12, zlib.crc32(bytes(data[:CORES_AT + 72])))
    v2 = pf.decode_profile(bytes(data))
    assert v2.cores is None and v2.compiles[0].cpu == "znver3"
    # Version 3 with compile records: the cores section follows them.
    section = bytes(pf.encode_profile(SAMPLE_CORES)[CORES_AT:CORES_AT + 56])
    data[CORES_AT + 72:CORES_AT + 72 + 56] = section
    struct.pack_into("<H", data, 4, 3)
    struct.pack_into("<I", data, 12, 0)
    struct.pack_into("<I", data, 12, zlib.crc32(bytes(data[:CORES_AT + 128])))
    v3 = pf.decode_profile(bytes(data))
    assert v3.compiles == v2.compiles and v3.cores == SAMPLE_CORES.cores
    assert v3.layers["qkv"].core_cycles == (300000, 280000)


def cores_patched(fmt, offset, *values):
    data = bytearray(pf.encode_profile(SAMPLE_CORES))
    struct.pack_into(fmt, data, CORES_AT + offset, *values)
    struct.pack_into("<I", data, 12, 0)
    struct.pack_into("<I", data, 12, zlib.crc32(bytes(data[:CORES_AT + 56])))
    return bytes(data)


@pytest.mark.parametrize("data, message", [
    (cores_patched("<4s", 0, b"BFCX"), "cores section: field 'magic' is b'BFCX'"),
    (cores_patched("<B", 7, 3), "cores started 2, used 3"),
    (cores_patched("<B", 8, 0), "field 'recorded' is 0, expected 1..used"),
    (cores_patched("<B", 9, 3), "field 'n_rows' is 3, but the file has 2 layer entries"),
    (cores_patched("<B", 32, 7), "row 0: field 'layer' is entry 7"),
    (cores_patched("<B", 33, 1), "row 0: reserved bytes must be zero"),
    (cores_patched("<B", 12, 1), "cores section: field 'reserved' must be zero"),
], ids=range(7))
def test_cores_section_errors(data, message):
    with pytest.raises(BareflowError, match=r"^PROFILE\.BIN: cores section: " + message.removeprefix("cores section: ")):
        pf.decode_profile(data)


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
    cores = {"found": 2, "started": 2, "used": 2, "busy_ms": [1.5, 0.25]}
    layers = result_json()["layers"]
    layers["qkv"]["core_cycles"] = [4_500_000, 750_000]
    split = pf.profile_from_result_json(result_json(cores=cores, layers=layers))
    assert split.cores == CoresProfile(2, 2, 2, (4_500_000, 750_000))     # ms at 3e9 cycles/s
    assert split.layers["qkv"].core_cycles == (4_500_000, 750_000)
    assert pf.decode_profile(pf.encode_profile(split)) == split


@pytest.mark.parametrize("result, message", [
    (result_json(cores={"found": 2, "started": 1, "used": 2, "busy_ms": [1, 1]}), "cores: expected 1 <= used"),
    (result_json(cores={"found": 2, "started": 2, "used": 2, "busy_ms": [1, -1]}), r"cores.busy_ms\[1\] must be"),
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
    # Calls of billions of cycles (SmolLM2 under QEMU) keep the columns aligned.
    big = pf.Profile(1, 1, 1, {"classify": pf.LayerProfile("classify", (1, 0, 1, 14),
                                                            (4870350468, 0, 3992951248, 33360856158), "O3", 2)})
    header, _, row = pf.describe(big).splitlines()[1:4]
    assert "1 @  4870M" in row and "14 @  2383M" in row
    assert len(row) == len(header)                      # "changes" ends where the row ends


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
