"""Writer and checker of /POLICY.TBL (the BFPT format, docs/policy-table.md).

encode() turns validated decisions into the bytes the kernel's tiering code reads; decode()
checks a table with every rule the kernel applies, so tests and `scons plugins` can read one
back and a corrupt table is caught on the host with a precise message.
"""
from __future__ import annotations

import struct
from typing import Mapping, Sequence

from bareflow.core.checksum import crc32_with_field_zeroed
from bareflow.errors import BareflowError
from bareflow.model.layers import LAYER_NAME, decode_layer_name
from bareflow.policy.api import MAX_CALLS, MAX_CORES, MAX_CYCLES, Decision, validate_decision
from bareflow.tiers.levels import TIERS

MAGIC = b"BFPT"
VERSION = 1
HEADER_SIZE = 16
ENTRY_SIZE = 64
MAX_LAYERS = 64
FLAG_PRELOAD = 0x01
FLAG_STOP_PROFILING = 0x02
NO_TIER = 0xFF
_HEADER = struct.Struct("<4sHHHHI")                   # magic version hsize n esize crc
_ENTRY = struct.Struct("<16sBBBB4B3I4s3Q")             # name n flags max_cores rsv ladder calls rsv cycles
assert _HEADER.size == HEADER_SIZE and _ENTRY.size == ENTRY_SIZE


def _crc(data: bytes) -> int:
    return crc32_with_field_zeroed(data, 12)


def encode(decisions: Mapping[str, Decision], layer_order: Sequence[str]) -> bytes:
    """The table for `decisions`, one entry per layer of `layer_order`, in that order."""
    order = list(layer_order)
    if not 1 <= len(order) <= MAX_LAYERS:
        raise BareflowError(f"policy table: {len(order)} layers; it holds 1..{MAX_LAYERS}")
    if len(set(order)) != len(order):
        raise BareflowError(f"policy table: layer order {order} repeats a layer")
    missing = [name for name in order if name not in decisions]
    extra = [name for name in decisions if name not in order]
    if missing or extra:
        raise BareflowError(f"policy table: no decision for layers {missing}" if missing else
                            f"policy table: decisions for unknown layers {extra}")
    body = bytearray()
    for name in order:
        if not isinstance(name, str) or not LAYER_NAME.match(name):
            raise BareflowError(f"policy table: layer name {name!r} must be 1-15 of [a-z0-9_]")
        try:
            d = validate_decision(decisions[name], name)
        except BareflowError as exc:
            raise BareflowError(f"policy table: {exc}") from exc
        steps = len(d.ladder) - 1
        ladder = [TIERS.index(t) for t in d.ladder] + [NO_TIER] * (4 - len(d.ladder))
        calls = d.calls + [0] * (3 - steps)
        cycles = d.cycles + [0] * (3 - steps)
        flags = (FLAG_PRELOAD if d.preload else 0) | (FLAG_STOP_PROFILING if d.stop_profiling else 0)
        body += _ENTRY.pack(name.encode("ascii"), len(d.ladder), flags, d.max_cores, 0, *ladder, *calls,
                            bytes(4), *cycles)
    header = _HEADER.pack(MAGIC, VERSION, HEADER_SIZE, len(order), ENTRY_SIZE, 0)
    data = bytearray(header + body)
    struct.pack_into("<I", data, 12, _crc(bytes(data)))
    return bytes(data)


def decode(data: bytes, source: str = "POLICY.TBL") -> dict[str, Decision]:
    """Check a table completely and return layer -> Decision in table order."""
    def fail(problem):
        raise BareflowError(f"{source}: {problem}")

    if len(data) < HEADER_SIZE:
        fail(f"{len(data)} bytes is shorter than the {HEADER_SIZE}-byte header")
    magic, version, header_size, n_layers, entry_size, crc = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        fail(f"field 'magic' is {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        fail(f"field 'version' is {version}, this build reads version {VERSION}")
    if header_size != HEADER_SIZE:
        fail(f"field 'header_size' is {header_size}, expected {HEADER_SIZE}")
    if not 1 <= n_layers <= MAX_LAYERS:
        fail(f"field 'n_layers' is {n_layers}, expected 1..{MAX_LAYERS}")
    if entry_size != ENTRY_SIZE:
        fail(f"field 'entry_size' is {entry_size}, expected {ENTRY_SIZE}")
    expected = HEADER_SIZE + ENTRY_SIZE * n_layers
    if len(data) != expected:
        fail(f"file size is {len(data)} bytes; {n_layers} layers need exactly {expected}")
    if crc != _crc(data):
        fail(f"field 'crc32' is {crc:#010x}, but the data gives {_crc(data):#010x}")

    decisions: dict[str, Decision] = {}
    for index in range(n_layers):
        raw = _ENTRY.unpack_from(data, HEADER_SIZE + ENTRY_SIZE * index)
        raw_name, n_tiers, flags, max_cores, reserved1 = raw[0], raw[1], raw[2], raw[3], raw[4]
        ladder, calls, reserved2, cycles = raw[5:9], raw[9:12], raw[12], raw[13:16]
        text, where = decode_layer_name(raw_name, index, decisions, fail)
        if not 1 <= n_tiers <= 4:
            fail(f"{where}: field 'n_tiers' is {n_tiers}, expected 1..4")
        if flags & ~(FLAG_PRELOAD | FLAG_STOP_PROFILING):
            fail(f"{where}: field 'flags' is {flags:#04x}; only bits 0 and 1 are defined")
        if reserved1 or any(reserved2):
            fail(f"{where}: a 'reserved' field is not zero")
        if max_cores > MAX_CORES:
            fail(f"{where}: field 'max_cores' is {max_cores}, expected 0..{MAX_CORES}")
        for i in range(4):
            if i < n_tiers and ladder[i] > 3:
                fail(f"{where}: field 'ladder[{i}]' is {ladder[i]}, expected a tier code 0..3")
            if i >= n_tiers and ladder[i] != NO_TIER:
                fail(f"{where}: field 'ladder[{i}]' is {ladder[i]}, expected 0xFF after "
                     f"{n_tiers} tiers")
            if 0 < i < n_tiers and ladder[i] <= ladder[i - 1]:
                fail(f"{where}: field 'ladder' {list(ladder[:n_tiers])} does not climb strictly")
        for i in range(3):
            if i >= n_tiers - 1:
                if calls[i] or cycles[i]:
                    fail(f"{where}: fields 'calls[{i}]'/'cycles[{i}]' must be 0 beyond the last step")
                continue
            if calls[i] > MAX_CALLS:
                fail(f"{where}: field 'calls[{i}]' is {calls[i]}, above {MAX_CALLS}")
            if cycles[i] > MAX_CYCLES:
                fail(f"{where}: field 'cycles[{i}]' is {cycles[i]}, above {MAX_CYCLES}")
            if not calls[i] and not cycles[i]:
                fail(f"{where}: step {i} has neither a calls nor a cycles trigger")
        steps = n_tiers - 1
        decisions[text] = Decision(
            ladder=[TIERS[c] for c in ladder[:n_tiers]], calls=list(calls[:steps]),
            cycles=list(cycles[:steps]), preload=bool(flags & FLAG_PRELOAD),
            stop_profiling=bool(flags & FLAG_STOP_PROFILING), max_cores=max_cores)
    return decisions

