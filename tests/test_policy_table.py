"""POLICY.TBL (BFPT): exact layout, round trip, and every check decode() makes."""
import struct
import zlib

import pytest

from bareflow.policy import table as pt
from bareflow.errors import BareflowError
from bareflow.model.layers import LAYER_NAMES
from bareflow.policy.api import Decision, summary

DECISIONS = {
    "embed": Decision(["O1"]),
    "rmsnorm": Decision(["O0", "O2"], [30]),
    "qkv": Decision(["O0", "O2", "O3"], [8, 40], [400000, 10**7], True, False, max_cores=3),
    "rope": Decision(["O0", "O1", "O2", "O3"], [1, 0, 10**9], [0, 5, 10**15], False, True),
}
ORDER = ["embed", "rmsnorm", "qkv", "rope"]


def table(decisions=DECISIONS, order=ORDER):
    return pt.encode(decisions, order)


def test_layout_is_exactly_as_documented():
    data = table()
    assert len(data) == 16 + 64 * 4
    magic, version, hsize, n, esize, crc = struct.unpack_from("<4sHHHHI", data)
    assert (magic, version, hsize, n, esize) == (b"BFPT", 1, 16, 4, 64)
    assert crc == zlib.crc32(data[:12] + bytes(4) + data[16:])
    qkv = data[16 + 2 * 64: 16 + 3 * 64]
    assert qkv[:16] == b"qkv" + bytes(13)
    assert qkv[16] == 3 and qkv[17] == 0x01 and qkv[18] == 0 and qkv[19] == 3      # isa x86-64, max_cores
    assert qkv[20:24] == bytes([0, 2, 3, 0xFF])
    assert struct.unpack_from("<3I", qkv, 24) == (8, 40, 0)
    assert qkv[36:40] == bytes(4)
    assert struct.unpack_from("<3Q", qkv, 40) == (400000, 10**7, 0)
    rope = data[16 + 3 * 64:]
    assert rope[17] == 0x02 and rope[20:24] == bytes([0, 1, 2, 3])
    embed = data[16:80]
    assert embed[16] == 1 and embed[20:24] == bytes([1, 0xFF, 0xFF, 0xFF])


def test_round_trip_and_determinism():
    data = table()
    decoded = pt.decode(data)
    assert list(decoded) == ORDER
    for name in ORDER:
        want = DECISIONS[name]
        got = decoded[name]
        assert got.ladder == want.ladder and got.calls == want.calls
        assert got.cycles == (want.cycles or [0] * len(want.calls))
        assert (got.preload, got.stop_profiling) == (want.preload, want.stop_profiling)
        assert got.max_cores == want.max_cores
    assert pt.encode(decoded, ORDER) == data
    assert table() == data
    full = {name: Decision(["O0", "O3"], [i + 1]) for i, name in enumerate(LAYER_NAMES)}
    assert list(pt.decode(pt.encode(full, LAYER_NAMES))) == list(LAYER_NAMES)


def test_decoded_table_reads_back_in_the_summary():
    text = summary(pt.decode(table()), ORDER)
    assert ("qkv      O0 -(8 calls or 400000 cycles)-> O2 -(40 calls or 10000000 cycles)-> O3  [preload, at most 3 cores]"
            in text)


@pytest.mark.parametrize("decisions, order, message", [
    (DECISIONS, ORDER + ["ffn"], r"no decision for layers \['ffn'\]"),
    (DECISIONS, ORDER[:3], r"decisions for unknown layers \['rope'\]"),
    (DECISIONS, ORDER + ["qkv"], "repeats a layer"),
    ({}, [], "0 layers"),
    ({"Bad": Decision(["O0"])}, ["Bad"], "layer name 'Bad' must be"),
    ({"a" * 16: Decision(["O0"])}, ["a" * 16], "must be 1-15"),
    ({"x": Decision(["O0", "O1"], [0])}, ["x"], r"policy table: layer 'x': decision field 'calls\[0\]'"),
])
def test_encode_errors(decisions, order, message):
    with pytest.raises(BareflowError, match=message):
        pt.encode(decisions, order)


def resealed(data: bytearray) -> bytes:
    struct.pack_into("<I", data, 12, 0)
    struct.pack_into("<I", data, 12, zlib.crc32(bytes(data)))
    return bytes(data)


def entry_offset(index):
    return 16 + 64 * index


def patch(fmt, offset, *values, crc=True):
    data = bytearray(table())
    struct.pack_into(fmt, data, offset, *values)
    return resealed(data) if crc else bytes(data)


def patch_many(*edits):
    data = bytearray(table())
    for fmt, offset, *values in edits:
        struct.pack_into(fmt, data, offset, *values)
    return resealed(data)


QKV = entry_offset(2)
EMBED = entry_offset(0)

DECODE_ERRORS = [
    (table()[:10], "shorter than the 16-byte header"),
    (patch("<4s", 0, b"BFPX"), "field 'magic' is b'BFPX'"),
    (patch("<H", 4, 3), "field 'version' is 3"),
    (patch("<H", 6, 20), "field 'header_size' is 20"),
    (patch("<H", 8, 0), "field 'n_layers' is 0"),
    (patch("<H", 8, 65), "field 'n_layers' is 65"),
    (patch("<H", 10, 32), "field 'entry_size' is 32"),
    (patch("<H", 8, 3), "file size is 272 bytes; 3 layers need exactly 208"),
    (table() + bytes(1), "file size is 273 bytes"),
    (patch("<B", QKV + 40, 1, crc=False), "field 'crc32' is 0x"),
    (patch("<16s", QKV, b"QKV"), r"entry 2 \('QKV'\): field 'layer' must be"),
    (patch("<16s", QKV, b""), r"entry 2 \(''\): field 'layer' must be"),
    (patch("<16s", QKV, b"qk\0v"), "field 'layer' must be 1-15 of"),
    (patch("<16s", QKV, b"embed"), "field 'layer' repeats layer 'embed'"),
    (patch("<B", QKV + 16, 0), "field 'n_tiers' is 0"),
    (patch("<B", QKV + 16, 5), "field 'n_tiers' is 5"),
    (patch("<B", QKV + 17, 0x05), "field 'flags' is 0x05"),
    (patch("<B", QKV + 18, 4), r"entry 2 \('qkv'\): field 'isa' is 4, expected 0..3"),
    (patch("<B", QKV + 18, 2), r"ISA level x86-64-v3 has entries for \['qkv'\], x86-64 for"),
    (patch("<B", QKV + 19, 65), "field 'max_cores' is 65, expected 0..64"),
    (patch("<I", QKV + 36, 7), "a 'reserved' field is not zero"),
    (patch("<B", QKV + 21, 4), r"field 'ladder\[1\]' is 4, expected a tier code"),
    (patch("<B", QKV + 23, 3), r"field 'ladder\[3\]' is 3, expected 0xFF after 3 tiers"),
    (patch("<B", QKV + 21, 0), r"field 'ladder' \[0, 0, 3\] does not climb strictly"),
    (patch("<B", EMBED + 16, 2), r"entry 0 \('embed'\): field 'ladder\[1\]' is 255"),
    (patch("<I", QKV + 32, 9), r"fields 'calls\[2\]'/'cycles\[2\]' must be 0 beyond the last step"),
    (patch("<Q", QKV + 56, 9), r"fields 'calls\[2\]'/'cycles\[2\]' must be 0"),
    (patch("<I", QKV + 24, 10**9 + 1), r"field 'calls\[0\]' is 1000000001, above 1000000000"),
    (patch("<Q", QKV + 40, 10**15 + 1), r"field 'cycles\[0\]' is 1000000000000001, above"),
    (patch_many(("<I", QKV + 28, 0), ("<Q", QKV + 48, 0)),
     r"entry 2 \('qkv'\): step 1 has neither a calls nor a cycles trigger"),
]


@pytest.mark.parametrize("data, message", DECODE_ERRORS, ids=[m for _, m in DECODE_ERRORS])
def test_every_decode_error(data, message):
    with pytest.raises(BareflowError, match=r"^POLICY\.TBL: " + "(.*)" + message):
        pt.decode(data)


def test_levels_round_trip_and_per_level_decisions():
    names = ["embed", "qkv"]
    low = {"embed": pt.Decision(["O0"]), "qkv": pt.Decision(["O0", "O2"], calls=[5])}
    high = {"embed": pt.Decision(["O1"]), "qkv": pt.Decision(["O3"])}
    data = pt.encode_levels({"x86-64-v4": high, "x86-64": low}, names)
    levels = pt.decode_levels(data)
    assert list(levels) == ["x86-64", "x86-64-v4"]      # lowest level first
    assert levels["x86-64"]["qkv"].ladder == ["O0", "O2"] and levels["x86-64-v4"]["qkv"].ladder == ["O3"]
    assert data[16 + 18] == 0 and data[16 + 2 * 64 + 18] == 3    # the entries' isa bytes
    with pytest.raises(BareflowError, match="holds ISA levels x86-64, x86-64-v4; read it with decode_levels"):
        pt.decode(data)
    assert "qkv    O3\n" in summary(levels["x86-64-v4"], names)
    with pytest.raises(BareflowError, match="unknown ISA level 'x86-64-v9'"):
        pt.encode_levels({"x86-64-v9": low}, names)
    with pytest.raises(BareflowError, match=r"policy table \(x86-64-v4\): no decision for layers \['qkv'\]"):
        pt.encode_levels({"x86-64": low, "x86-64-v4": {"embed": pt.Decision(["O1"])}}, names)
