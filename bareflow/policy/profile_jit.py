"""The run-time compile records of a BFPR version 2 profile (docs/profile-file.md).

A profile written by a run that compiled run-time tiers (JIT=llvm) carries, right after its
layer entries, a `BFJC` section: one 64-byte record per compile attempt.  profile.py reads
the layers (bareflow/policy/profile.py); this module reads and writes the records.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from bareflow.errors import BareflowError
from bareflow.tiers import runtime as runtiers

MAGIC = b"BFJC"
RECORD_SIZE = 64
MAX_RECORDS = 32
_SECTION = struct.Struct("<4sHH")
_RECORD = struct.Struct("<16sBBBBIQQ24s")
assert _RECORD.size == RECORD_SIZE
_NAME = re.compile(r"[a-z0-9_]{1,15}\Z")
_CPU = re.compile(r"[A-Za-z0-9._-]{0,23}\Z")


@dataclass(frozen=True)
class CompileRecord:
    layer: str
    tier: str                  # "O3@host"
    ok: bool
    core: int
    object_bytes: int
    cycles: int                # cycles on the compiling core from bitcode to object
    swap_call: int             # calls of the layer before the compiled code took over (ok only)
    cpu: str
    inline: bool = False       # compiled on core 0 with nothing else running (one core in use)
    timed_out: bool = False    # no result within jit_timeout_ms; reported, the layer kept its tier
    late: bool = False         # timed out, finished later; its result was freed unused


FLAG_INLINE, FLAG_TIMED_OUT, FLAG_LATE = 1, 2, 4


def decode(data: bytes, offset: int, source: str) -> tuple[list[CompileRecord], int]:
    """(records, end offset) of the BFJC section at `offset`; BareflowError naming the field."""
    def fail(problem):
        raise BareflowError(f"{source}: compile section: {problem}")

    if offset + _SECTION.size > len(data):
        fail("does not fit the file")
    magic, n, size = _SECTION.unpack_from(data, offset)
    if magic != MAGIC:
        fail(f"field 'magic' is {magic!r}, expected {MAGIC!r}")
    if size != RECORD_SIZE or not 1 <= n <= MAX_RECORDS:
        fail(f"{n} records of {size} bytes, expected 1..{MAX_RECORDS} of {RECORD_SIZE}")
    records = []
    for i in range(n):
        name, code, ok, core, flags, obj, cycles, swap, cpu = _RECORD.unpack_from(
            data, offset + _SECTION.size + RECORD_SIZE * i)
        layer = name.rstrip(b"\0").decode("ascii", "replace")
        cpu_text = cpu.rstrip(b"\0").decode("ascii", "replace")
        where = f"record {i}"
        if b"\0" in name.rstrip(b"\0") or not _NAME.match(layer):
            fail(f"{where}: field 'layer' must be 1-15 of [a-z0-9_], NUL-padded")
        tier = runtiers.tier_name(code)
        if tier is None or not runtiers.is_run_time(tier):
            fail(f"{where}: field 'tier' {code:#04x} is not a run-time tier code")
        if ok > 1:
            fail(f"{where}: field 'ok' must be 0 or 1")
        if flags & ~(FLAG_INLINE | FLAG_TIMED_OUT | FLAG_LATE) or (ok and flags & FLAG_TIMED_OUT) \
                or (flags & FLAG_LATE and not flags & FLAG_TIMED_OUT):
            fail(f"{where}: field 'flags' {flags:#04x} is not a combination of inline (1), timed_out (2) "
                 "and late (4, only with timed_out) that a run can write")
        if b"\0" in cpu.rstrip(b"\0") or not _CPU.match(cpu_text):
            fail(f"{where}: field 'cpu' is not a NUL-padded CPU name")
        records.append(CompileRecord(layer, tier, bool(ok), core, obj, cycles, swap, cpu_text,
                                     inline=bool(flags & FLAG_INLINE), timed_out=bool(flags & FLAG_TIMED_OUT),
                                     late=bool(flags & FLAG_LATE)))
    return records, offset + _SECTION.size + RECORD_SIZE * n
