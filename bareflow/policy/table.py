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
from bareflow.tiers import runtime as runtiers
from bareflow.tiers.levels import ISA_LEVELS

ISA_NAMES = {code: name for name, code in ISA_LEVELS.items()}

MAGIC = b"BFPT"
VERSION = 1
VERSION_RUN_TIME = 2          # same layout; ladders may name run-time tiers (bareflow.tiers.runtime)
HEADER_SIZE = 16
ENTRY_SIZE = 64
MAX_LAYERS = 64
FLAG_PRELOAD = 0x01
FLAG_STOP_PROFILING = 0x02
NO_TIER = 0xFF
_HEADER = struct.Struct("<4sHHHHI")                   # magic version hsize n esize crc
_ENTRY = struct.Struct("<16sBBBB4B3I4s3Q")             # name n flags isa max_cores ladder calls rsv cycles
assert _HEADER.size == HEADER_SIZE and _ENTRY.size == ENTRY_SIZE


def _crc(data: bytes) -> int:
    return crc32_with_field_zeroed(data, 12)


def encode(decisions: Mapping[str, Decision], layer_order: Sequence[str], isa: str = "x86-64") -> bytes:
    """The table for `decisions`, one entry per layer of `layer_order`, in that order, all for
    ISA level `isa`."""
    return encode_levels({isa: decisions}, layer_order)


def encode_levels(by_isa: Mapping[str, Mapping[str, Decision]], layer_order: Sequence[str]) -> bytes:
    """The table for several ISA levels: {isa: {layer: Decision}}; for each level (lowest
    first) one entry per layer of `layer_order`.  The kernel uses the entries of the best
    level the CPU runs (docs/policy-table.md)."""
    order = list(layer_order)
    levels = sorted(by_isa, key=lambda name: ISA_LEVELS.get(name, -1))
    for name in levels:
        if name not in ISA_LEVELS:
            raise BareflowError(f"policy table: unknown ISA level {name!r}; known: {', '.join(ISA_LEVELS)}")
    if not levels:
        raise BareflowError("policy table: no ISA level given")
    if not 1 <= len(order) * len(levels) <= MAX_LAYERS:
        raise BareflowError(f"policy table: {len(order)} layers x {len(levels)} ISA levels; "
                            f"it holds 1..{MAX_LAYERS} entries")
    if len(set(order)) != len(order):
        raise BareflowError(f"policy table: layer order {order} repeats a layer")
    body = bytearray()
    for isa in levels:
        body += _entries(by_isa[isa], order, isa)
    # Version 1 unless some ladder names a run-time tier: JIT=none tables stay byte-identical.
    run_time = any(runtiers.is_run_time(t) for isa in levels for d in by_isa[isa].values() for t in d.ladder)
    header = _HEADER.pack(MAGIC, VERSION_RUN_TIME if run_time else VERSION, HEADER_SIZE,
                          len(order) * len(levels), ENTRY_SIZE, 0)
    data = bytearray(header + body)
    struct.pack_into("<I", data, 12, _crc(bytes(data)))
    return bytes(data)


def _entries(decisions, order, isa):
    where = "policy table" + (f" ({isa})" if isa != "x86-64" else "")
    missing = [name for name in order if name not in decisions]
    extra = [name for name in decisions if name not in order]
    if missing or extra:
        raise BareflowError(f"{where}: no decision for layers {missing}" if missing else
                            f"{where}: decisions for unknown layers {extra}")
    body = bytearray()
    for name in order:
        if not isinstance(name, str) or not LAYER_NAME.match(name):
            raise BareflowError(f"policy table: layer name {name!r} must be 1-15 of [a-z0-9_]")
        try:
            d = validate_decision(decisions[name], name)
        except BareflowError as exc:
            raise BareflowError(f"policy table: {exc}") from exc
        steps = len(d.ladder) - 1
        ladder = [runtiers.tier_code(t) for t in d.ladder] + [NO_TIER] * (4 - len(d.ladder))
        calls = d.calls + [0] * (3 - steps)
        cycles = d.cycles + [0] * (3 - steps)
        flags = (FLAG_PRELOAD if d.preload else 0) | (FLAG_STOP_PROFILING if d.stop_profiling else 0)
        body += _ENTRY.pack(name.encode("ascii"), len(d.ladder), flags, ISA_LEVELS[isa], d.max_cores, *ladder, *calls,
                            bytes(4), *cycles)
    return bytes(body)


def decode(data: bytes, source: str = "POLICY.TBL") -> dict[str, Decision]:
    """Check a table completely and return layer -> Decision in table order, for a table
    holding one ISA level (decode_levels reads any table)."""
    levels = decode_levels(data, source)
    if len(levels) != 1:
        raise BareflowError(f"{source}: holds ISA levels {', '.join(levels)}; read it with decode_levels")
    return next(iter(levels.values()))


def decode_levels(data: bytes, source: str = "POLICY.TBL") -> dict[str, dict[str, Decision]]:
    """Check a table completely and return {isa: {layer: Decision}}, levels and layers in
    table order; every level present must name the same layers."""
    def fail(problem):
        raise BareflowError(f"{source}: {problem}")

    if len(data) < HEADER_SIZE:
        fail(f"{len(data)} bytes is shorter than the {HEADER_SIZE}-byte header")
    magic, version, header_size, n_layers, entry_size, crc = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        fail(f"field 'magic' is {magic!r}, expected {MAGIC!r}")
    if version not in (VERSION, VERSION_RUN_TIME):
        fail(f"field 'version' is {version}, this build reads versions {VERSION} and {VERSION_RUN_TIME}")
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

    levels: dict[str, dict[str, Decision]] = {}
    for index in range(n_layers):
        raw = _ENTRY.unpack_from(data, HEADER_SIZE + ENTRY_SIZE * index)
        raw_name, n_tiers, flags, isa_code, max_cores = raw[0], raw[1], raw[2], raw[3], raw[4]
        ladder, calls, reserved2, cycles = raw[5:9], raw[9:12], raw[12], raw[13:16]
        text, where = decode_layer_name(raw_name, index, (), fail)
        if isa_code not in ISA_NAMES:
            fail(f"{where}: field 'isa' is {isa_code}, expected 0..{len(ISA_NAMES) - 1}")
        decisions = levels.setdefault(ISA_NAMES[isa_code], {})
        if text in decisions:
            fail(f"{where}: field 'layer' repeats layer {text!r} for {ISA_NAMES[isa_code]}")
        if not 1 <= n_tiers <= 4:
            fail(f"{where}: field 'n_tiers' is {n_tiers}, expected 1..4")
        if flags & ~(FLAG_PRELOAD | FLAG_STOP_PROFILING):
            fail(f"{where}: field 'flags' is {flags:#04x}; only bits 0 and 1 are defined")
        if any(reserved2):
            fail(f"{where}: a 'reserved' field is not zero")
        if max_cores > MAX_CORES:
            fail(f"{where}: field 'max_cores' is {max_cores}, expected 0..{MAX_CORES}")
        for i in range(4):
            if i < n_tiers and version == VERSION and ladder[i] > 3:
                fail(f"{where}: field 'ladder[{i}]' is {ladder[i]}, expected a tier code 0..3")
            if i < n_tiers and runtiers.tier_name(ladder[i]) is None:
                fail(f"{where}: field 'ladder[{i}]' is {ladder[i]:#04x}, not a tier code (0..3, or "
                     "kind 1..3 << 4 | level 0..3)")
            if i == 0 and ladder[0] > 3:
                fail(f"{where}: field 'ladder[0]' is a run-time tier; a layer starts at a module file")
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
            ladder=[runtiers.tier_name(c) for c in ladder[:n_tiers]], calls=list(calls[:steps]),
            cycles=list(cycles[:steps]), preload=bool(flags & FLAG_PRELOAD),
            stop_profiling=bool(flags & FLAG_STOP_PROFILING), max_cores=max_cores)
    first = next(iter(levels))
    for isa, decisions in levels.items():
        if set(decisions) != set(levels[first]):
            fail(f"ISA level {isa} has entries for {sorted(decisions)}, {first} for {sorted(levels[first])}")
    return levels



def check_for_runtime(data: bytes, source: str = "POLICY.TBL") -> dict[str, dict[str, Decision]]:
    """decode_levels() plus the runtime's own rule: every ISA level has exactly one entry for each
    of the nine layers (src/runtime/tiering.c).  Accepts exactly the tables the kernel accepts, as
    far as the table alone decides (the module files a ladder names are checked at boot)."""
    from bareflow.model.layers import LAYER_NAMES
    levels = decode_levels(data, source)
    for decisions in levels.values():
        missing = [name for name in LAYER_NAMES if name not in decisions]
        unknown = [name for name in decisions if name not in LAYER_NAMES]
        if unknown:
            raise BareflowError(f"{source}: unknown layer {unknown[0]!r} (known: {', '.join(LAYER_NAMES)})")
        if missing:
            raise BareflowError(f"{source}: layer {missing[0]!r} has no entry")
    return levels
