"""The cores section of a BFPR version 3 profile (docs/profile-file.md).

A version 3 profile ends (after the layer entries and any compile records) with a `BFCC`
section: the cores the run found, started and split over, each recorded core's cycles inside
layer chunks, and per split layer each recorded core's cycles in that layer's chunks — the
numbers the result line gives as `cores` and `layers.<name>.core_cycles`.  profile.py reads the
rest of the file; this module reads and writes the section.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from bareflow.errors import BareflowError

MAGIC = b"BFCC"
HEADER_SIZE = 16
ROW_HEADER = 8
MAX_CORES = 64                      # BF_MAX_CORES in src/runtime/rt.h
_HEADER = struct.Struct("<4sHBBBB6s")   # magic found started used recorded n_rows reserved
assert _HEADER.size == HEADER_SIZE


@dataclass(frozen=True)
class CoresProfile:
    """Cores of a run: `busy_cycles[c]` = cycles core c spent inside layer chunks (core 0: also the
    whole calls of split layers when `used` is 1).  Only the first `recorded` cores are kept when
    the 4096-byte file had no room for all `used` ones."""
    found: int
    started: int
    used: int
    busy_cycles: tuple[int, ...]

    @property
    def recorded(self) -> int:
        return len(self.busy_cycles)


def size(n_rows: int, recorded: int) -> int:
    """Bytes of a section with `n_rows` layer rows and `recorded` cores."""
    return HEADER_SIZE + 8 * recorded + n_rows * (ROW_HEADER + 8 * recorded)


def decode(data: bytes, offset: int, layer_names: list[str], source: str):
    """(CoresProfile, {layer name: per-core cycles}, end offset) of the section at `offset`.

    `layer_names` are the file's entries in order (a row names its layer by entry index).
    Raises BareflowError naming `source` and the field."""
    def fail(problem):
        raise BareflowError(f"{source}: cores section: {problem}")

    if offset + HEADER_SIZE > len(data):
        fail("does not fit the file")
    magic, found, started, used, recorded, n_rows, reserved = _HEADER.unpack_from(data, offset)
    if magic != MAGIC:
        fail(f"field 'magic' is {magic!r}, expected {MAGIC!r}")
    if any(reserved):
        fail("field 'reserved' must be zero")
    if not 1 <= used <= started <= MAX_CORES:
        fail(f"cores started {started}, used {used}: expected 1 <= used <= started <= {MAX_CORES}")
    if not 1 <= recorded <= used:
        fail(f"field 'recorded' is {recorded}, expected 1..used ({used})")
    if n_rows > len(layer_names):
        fail(f"field 'n_rows' is {n_rows}, but the file has {len(layer_names)} layer entries")
    end = offset + size(n_rows, recorded)
    if end > len(data):
        fail(f"{n_rows} rows of {recorded} cores run past the end of the file")
    pos = offset + HEADER_SIZE
    busy = struct.unpack_from(f"<{recorded}Q", data, pos)
    pos += 8 * recorded
    rows: dict[str, tuple[int, ...]] = {}
    for i in range(n_rows):
        index = data[pos]
        if any(data[pos + 1:pos + ROW_HEADER]):
            fail(f"row {i}: reserved bytes must be zero")
        if index >= len(layer_names):
            fail(f"row {i}: field 'layer' is entry {index}, but the file has {len(layer_names)} entries")
        name = layer_names[index]
        if name in rows:
            fail(f"row {i}: layer {name!r} has a row already")
        rows[name] = struct.unpack_from(f"<{recorded}Q", data, pos + ROW_HEADER)
        pos += ROW_HEADER + 8 * recorded
    return CoresProfile(found, started, used, tuple(busy)), rows, end


def encode(cores: CoresProfile, rows: list[tuple[int, tuple[int, ...]]]) -> bytes:
    """The section for `cores` and `rows` = [(entry index, per-core cycles), ...]."""
    recorded = cores.recorded
    if not 1 <= recorded <= cores.used <= cores.started <= MAX_CORES or cores.found > 65535:
        raise BareflowError(f"profile: cores found {cores.found}, started {cores.started}, used "
                            f"{cores.used}, recorded {recorded} are not consistent")
    out = bytearray(_HEADER.pack(MAGIC, cores.found, cores.started, cores.used, recorded, len(rows), bytes(6)))
    out += struct.pack(f"<{recorded}Q", *cores.busy_cycles)
    for index, cycles in rows:
        if len(cycles) != recorded:
            raise BareflowError(f"profile: entry {index}: {len(cycles)} per-core cycles, expected {recorded}")
        out += bytes([index]) + bytes(ROW_HEADER - 1) + struct.pack(f"<{recorded}Q", *cycles)
    return bytes(out)
