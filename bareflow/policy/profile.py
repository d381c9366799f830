"""Runtime profiles: the BFPR file the kernel writes (docs/profile-file.md) and the result line.

A profile says, per layer, how often it ran and how many cycles it spent at each tier (version 3
also: per core, the cycles inside the chunks of the split layers, profile_cores.py).  It
reaches the build either as /PROFILE.BIN extracted from an image or as a serial/console log
whose last `BAREFLOW-RESULT {json}` line carries the same numbers; both become a Profile.
"""
from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass, field

from bareflow.core.checksum import crc32_with_field_zeroed
from bareflow.errors import BareflowError
from bareflow.model.layers import LAYER_NAME, decode_layer_name
from bareflow.tiers import runtime as runtiers
from bareflow.tiers.levels import TIERS

MAGIC = b"BFPR"
VERSION = 1
VERSION_RUN_TIME = 2                         # compile records follow the layers (profile_jit.py)
VERSION_CORES = 3                            # [compile records,] then the cores section (profile_cores.py)
VERSIONS = (VERSION, VERSION_RUN_TIME, VERSION_CORES)
FILE_SIZE = 4096
HEADER_SIZE = 32
ENTRY_SIZE = 96
MAX_LAYERS = 40
_HEADER = struct.Struct("<4sHHIIQQ")        # magic version n_layers tokens crc cps total
_ENTRY = struct.Struct("<16s4Q4QBB14s")      # name calls[4] cycles[4] final changes reserved
_RESULT_LINE = re.compile(r"BAREFLOW-RESULT (\{.*)$")
U32 = 2**32 - 1
U64 = 2**64 - 1


@dataclass(frozen=True)
class LayerProfile:
    """One layer's measured run: calls and cycles per tier O0..O3."""
    name: str
    calls: tuple[int, int, int, int]
    cycles: tuple[int, int, int, int]
    final_tier: str = "O0"
    changes: int = 0
    core_cycles: tuple[int, ...] = ()    # split layers, version 3: cycles in its chunks per core

    @property
    def total_calls(self) -> int:
        return sum(self.calls)

    def cycles_per_call(self, tier: str) -> float | None:
        """Mean cycles per call at `tier`, or None where it did not run or was not timed."""
        index = TIERS.index(tier)
        if self.calls[index] == 0 or self.cycles[index] == 0:
            return None
        return self.cycles[index] / self.calls[index]


@dataclass(frozen=True)
class Profile:
    tokens: int                      # tokens generated in the run
    cycles_per_second: int
    total_cycles: int                # cycles of the generation loop
    layers: dict[str, LayerProfile] = field(default_factory=dict)
    compiles: tuple = ()             # profile_jit.CompileRecord per run-time compile (versions 2, 3)
    cores: object = None             # profile_cores.CoresProfile (version 3 and result lines), else None

    def layer(self, name: str) -> LayerProfile | None:
        return self.layers.get(name)


def _crc(data: bytes) -> int:
    return crc32_with_field_zeroed(data, 12)


def _check_int(value, limit, what) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise BareflowError(f"{what} must be an integer in 0..{limit}, not {value!r}")
    return value


def encode_profile(profile: Profile) -> bytes:
    """The 4096-byte BFPR file for `profile` (the kernel writes the same layout)."""
    layers = list(profile.layers.values())
    if len(layers) > MAX_LAYERS:
        raise BareflowError(f"profile: {len(layers)} layers, at most {MAX_LAYERS} fit")
    body = bytearray()
    for lp in layers:
        if not isinstance(lp.name, str) or not LAYER_NAME.match(lp.name):
            raise BareflowError(f"profile: layer name {lp.name!r} must be 1-15 of [a-z0-9_]")
        if len(lp.calls) != 4 or len(lp.cycles) != 4:
            raise BareflowError(f"profile: layer {lp.name!r} needs 4 calls and 4 cycles values")
        calls = [_check_int(v, U64, f"profile: layer {lp.name!r} calls") for v in lp.calls]
        cycles = [_check_int(v, U64, f"profile: layer {lp.name!r} cycles") for v in lp.cycles]
        if lp.final_tier not in TIERS:
            raise BareflowError(f"profile: layer {lp.name!r} final tier {lp.final_tier!r} "
                                f"is not one of {', '.join(TIERS)}")
        changes = _check_int(lp.changes, 255, f"profile: layer {lp.name!r} changes")
        body += _ENTRY.pack(lp.name.encode("ascii"), *calls, *cycles,
                            TIERS.index(lp.final_tier), changes, bytes(14))
    tokens = _check_int(profile.tokens, U32, "profile: tokens")
    cps = _check_int(profile.cycles_per_second, U64, "profile: cycles_per_second")
    total = _check_int(profile.total_cycles, U64, "profile: total_cycles")
    version = VERSION
    if profile.compiles:
        raise BareflowError("profile: writing compile records is the kernel's job (src/runtime/profile.c)")
    if profile.cores is not None:              # version 3: the cores section follows the entries
        from bareflow.policy import profile_cores
        for lp in layers:
            for v in lp.core_cycles:
                _check_int(v, U64, f"profile: layer {lp.name!r} core_cycles")
        rows = [(i, tuple(lp.core_cycles)) for i, lp in enumerate(layers) if lp.core_cycles]
        body += profile_cores.encode(profile.cores, rows)
        version = VERSION_CORES
    if len(body) > FILE_SIZE - HEADER_SIZE:
        raise BareflowError(f"profile: {HEADER_SIZE + len(body)} bytes do not fit the {FILE_SIZE}-byte file")
    header = _HEADER.pack(MAGIC, version, len(layers), tokens, 0, cps, total)
    data = bytearray(header + body + bytes(FILE_SIZE - HEADER_SIZE - len(body)))
    used = HEADER_SIZE + len(body)
    struct.pack_into("<I", data, 12, _crc(bytes(data[:used])))
    return bytes(data)


def empty_profile() -> bytes:
    """What the build pre-allocates as /PROFILE.BIN: a valid profile with no layers."""
    return encode_profile(Profile(tokens=0, cycles_per_second=0, total_cycles=0))


def decode_profile(data: bytes, source: str = "PROFILE.BIN") -> Profile:
    """Parse and fully check a BFPR file; errors name `source` and the field."""
    def fail(problem):
        raise BareflowError(f"{source}: {problem}")

    if len(data) != FILE_SIZE:
        fail(f"file size is {len(data)} bytes; a profile is exactly {FILE_SIZE}")
    magic, version, n_layers, tokens, crc, cps, total = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        fail(f"field 'magic' is {magic!r}, expected {MAGIC!r}")
    if version not in VERSIONS:
        fail(f"field 'version' is {version}, this build reads versions {', '.join(map(str, VERSIONS))}")
    if n_layers > MAX_LAYERS:
        fail(f"field 'n_layers' is {n_layers}, at most {MAX_LAYERS}")
    used = HEADER_SIZE + ENTRY_SIZE * n_layers
    compiles = []
    cores, core_rows = None, {}
    names = [data[HEADER_SIZE + ENTRY_SIZE * i:HEADER_SIZE + ENTRY_SIZE * i + 16].rstrip(b"\0")
             .decode("ascii", "replace") for i in range(n_layers)]
    if version == VERSION_RUN_TIME or (version == VERSION_CORES and data[used:used + 4] == b"BFJC"):
        from bareflow.policy import profile_jit
        compiles, used = profile_jit.decode(data, used, source)
    if version == VERSION_CORES:
        from bareflow.policy import profile_cores
        cores, core_rows, used = profile_cores.decode(data, used, names, source)
    if crc != _crc(data[:used]):
        fail(f"field 'crc32' is {crc:#010x}, but the data gives {_crc(data[:used]):#010x} "
             f"(corrupt or partly written profile)")
    if any(data[used:]):
        fail(f"bytes after the {n_layers} entries and the sections (offset {used}..{FILE_SIZE}) "
             "must be zero")
    layers: dict[str, LayerProfile] = {}
    for index in range(n_layers):
        raw = _ENTRY.unpack_from(data, HEADER_SIZE + ENTRY_SIZE * index)
        raw_name, calls, cycles = raw[0], raw[1:5], raw[5:9]
        final, changes, reserved = raw[9], raw[10], raw[11]
        text, where = decode_layer_name(raw_name, index, layers, fail)
        if final > 3 and (version == VERSION or runtiers.tier_name(final) is None):
            fail(f"{where}: field 'final tier' is {final}, expected 0..3"
                 + (" or a run-time tier code" if version != VERSION else ""))
        if any(reserved):
            fail(f"{where}: field 'reserved' must be zero")
        layers[text] = LayerProfile(text, tuple(calls), tuple(cycles), runtiers.tier_name(final), changes,
                                    core_rows.get(text, ()))
    return Profile(tokens, cps, total, layers, tuple(compiles), cores)


def _json_int(value, what: str, limit: int = U64) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise BareflowError(f"{what} must be a number, not {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise BareflowError(f"{what} must be a whole number, not {value!r}")
    if not 0 <= value <= limit:
        raise BareflowError(f"{what} is {value!r}, outside 0..{limit}")
    return int(value)


def profile_from_result_json(result: dict, source: str = "BAREFLOW-RESULT") -> Profile:
    """Build a Profile from the parsed JSON of a `BAREFLOW-RESULT` line."""
    if not isinstance(result, dict):
        raise BareflowError(f"{source}: expected a JSON object, got {type(result).__name__}")
    for key in ("layers", "tokens", "cycles_per_second", "tokens_per_second"):
        if key not in result:
            raise BareflowError(f"{source}: key {key!r} is missing")
    if not isinstance(result["tokens"], list):
        raise BareflowError(f"{source}: key 'tokens' must be a list of token ids")
    tokens = len(result["tokens"])
    cps = result["cycles_per_second"]
    tps = result["tokens_per_second"]
    for key, value in (("cycles_per_second", cps), ("tokens_per_second", tps)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e300:
            raise BareflowError(f"{source}: key {key!r} must be a non-negative number, not {value!r}")
    # The result line has no loop-cycle total; derive it from the two rates it does give.
    total = round(tokens / tps * cps) if tps > 0 else 0
    layers_json = result["layers"]
    if not isinstance(layers_json, dict):
        raise BareflowError(f"{source}: key 'layers' must be an object of layer name -> stats")
    if len(layers_json) > MAX_LAYERS:
        raise BareflowError(f"{source}: 'layers' has {len(layers_json)} entries, at most {MAX_LAYERS}")
    layers = {}
    for name, stats in layers_json.items():
        where = f"{source}: layers.{name}"
        if not LAYER_NAME.match(name):
            raise BareflowError(f"{where}: layer name must be 1-15 of [a-z0-9_]")
        if not isinstance(stats, dict):
            raise BareflowError(f"{where} must be an object")
        values = {}
        for key in ("calls", "cycles"):
            seq = stats.get(key)
            if not isinstance(seq, list) or len(seq) != 4:
                raise BareflowError(f"{where}.{key} must be a list of 4 numbers (O0..O3), not {seq!r}")
            values[key] = tuple(_json_int(v, f"{where}.{key}[{i}]") for i, v in enumerate(seq))
        tier = stats.get("tier")
        if tier not in runtiers.ALL_TIERS:
            raise BareflowError(f"{where}.tier is {tier!r}, not one of {', '.join(TIERS)} or a run-time tier")
        changes = stats.get("changes", [])
        if not isinstance(changes, list) or len(changes) > 255:
            raise BareflowError(f"{where}.changes must be a list of at most 255 tier changes")
        per_core = stats.get("core_cycles", [])
        if not isinstance(per_core, list) or len(per_core) > 64:
            raise BareflowError(f"{where}.core_cycles must be a list of at most 64 numbers, not {per_core!r}")
        per_core = tuple(_json_int(v, f"{where}.core_cycles[{i}]") for i, v in enumerate(per_core))
        layers[name] = LayerProfile(name, values["calls"], values["cycles"], tier, len(changes), per_core)
    return Profile(_json_int(tokens, f"{source}: tokens", U32), _json_int(round(cps), f"{source}: "
                   f"cycles_per_second"), _json_int(total, f"{source}: total cycles"), layers,
                   cores=_cores_from_result(result.get("cores"), cps, source))


def _cores_from_result(cores, cps, source: str):
    """The result line's `cores` object as a CoresProfile (busy_ms turned back into cycles at the
    line's cycles_per_second, so within a cycle per microsecond of the kernel's count); None when
    the line has no `cores` (runs before the work split)."""
    if cores is None:
        return None
    from bareflow.policy.profile_cores import MAX_CORES, CoresProfile
    where = f"{source}: cores"
    if not isinstance(cores, dict):
        raise BareflowError(f"{where} must be an object")
    found, started, used = (_json_int(cores.get(k), f"{where}.{k}", 65535) for k in ("found", "started", "used"))
    busy = cores.get("busy_ms")
    if not 1 <= used <= started <= MAX_CORES or not isinstance(busy, list) or len(busy) != used:
        raise BareflowError(f"{where}: expected 1 <= used <= started <= {MAX_CORES} and busy_ms with "
                            f"`used` entries, got {cores!r}")
    for i, ms in enumerate(busy):
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not 0 <= ms < 1e15:
            raise BareflowError(f"{where}.busy_ms[{i}] must be a non-negative number, not {ms!r}")
    return CoresProfile(found, started, used, tuple(round(ms * cps / 1000) for ms in busy))


def find_result_line(text: str, source: str = "serial log") -> tuple[int, dict]:
    """(line number, parsed JSON) of the last `BAREFLOW-RESULT {json}` line in `text`."""
    found = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = _RESULT_LINE.search(line)
        if match:
            found = (number, match.group(1))
    if found is None:
        raise BareflowError(f"{source}: no 'BAREFLOW-RESULT {{json}}' line found")
    number, payload = found
    try:
        return number, json.loads(payload)
    except json.JSONDecodeError as exc:
        raise BareflowError(f"{source}: line {number}: the BAREFLOW-RESULT JSON is malformed "
                            f"({exc.msg} at column {exc.colno})") from exc


def profile_from_serial_log(text: str, source: str = "serial log") -> Profile:
    number, result = find_result_line(text, source)
    return profile_from_result_json(result, f"{source}: line {number}")


def load_profile(path) -> Profile:
    """A Profile from a BFPR file or from a log/text file holding a BAREFLOW-RESULT line."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise BareflowError(f"profile {name}: cannot read it: {exc.strerror or exc}") from exc
    if data[:4] == MAGIC:
        return decode_profile(data, name)
    text = data.decode("utf-8", errors="replace")
    if "BAREFLOW-RESULT" not in text:
        raise BareflowError(f"profile {name}: neither a BFPR profile (magic {data[:4]!r}) nor a "
                            f"log containing a BAREFLOW-RESULT line")
    return profile_from_serial_log(text, name)


def describe(profile: Profile) -> str:
    """A readable report of a profile (printed by `scons profile`)."""
    seconds = profile.total_cycles / profile.cycles_per_second if profile.cycles_per_second else 0
    lines = [f"profile: {profile.tokens} tokens, {profile.total_cycles} cycles in the generation "
             f"loop ({seconds:.3f} s at {profile.cycles_per_second} cycles/s), "
             f"{len(profile.layers)} layers"]
    if not profile.layers:
        lines.append("(empty: the kernel has not written this profile yet)")
        return "\n".join(lines) + "\n"
    width = max(len(name) for name in profile.layers)
    header = "  ".join(f"{t:>18}" for t in TIERS)
    lines.append(f"{'layer':<{width}}  {header}  final  changes")
    lines.append(f"{'':<{width}}  " + "  ".join(f"{'calls @ cyc/call':>18}" for _ in TIERS))
    for name, lp in profile.layers.items():
        cells = []
        for tier in TIERS:
            calls = lp.calls[TIERS.index(tier)]
            per_call = lp.cycles_per_call(tier)
            cells.append(f"{calls:>9} @ {_short(per_call):>6}" if per_call is not None
                         else f"{calls:>9} @ {'-':>6}")
        lines.append(f"{name:<{width}}  " + "  ".join(f"{c:>18}" for c in cells)
                     + f"  {lp.final_tier:>5}  {lp.changes:>7}")
    lines += _describe_cores(profile, width)
    return "\n".join(lines) + "\n"


def _short(cycles: float) -> str:
    """Cycles per call in at most 6 characters, so the columns stay aligned: 123456, 1234k, 4870M
    (a QEMU run of SmolLM2 has classify calls of 4.9e9 cycles)."""
    for scale, suffix in ((1, ""), (1e3, "k"), (1e6, "M"), (1e9, "G")):
        if cycles / scale < 999999.5:
            return f"{cycles / scale:.0f}{suffix}"
    return f"{cycles / 1e12:.0f}T"


def _describe_cores(profile: Profile, width: int) -> list[str]:
    """Per-core lines: busy cycles and each split layer's share per core (version 3)."""
    k = profile.cores
    if k is None:
        return []
    cps = profile.cycles_per_second
    part = "" if k.recorded == k.used else f" (the first {k.recorded} recorded: the file was full)"
    lines = [f"cores: found {k.found}, started {k.started}, used {k.used}{part}",
             f"{'busy ms':<{width}}  " + "  ".join(f"{c * 1000 / cps if cps else 0:>10.3f}" for c in k.busy_cycles)]
    for name, lp in profile.layers.items():
        if lp.core_cycles:
            total = sum(lp.core_cycles) or 1
            lines.append(f"{name:<{width}}  " + "  ".join(f"{100 * c / total:>9.1f}%" for c in lp.core_cycles))
    return lines


def extract_profile(image_path) -> bytes:
    """The raw /PROFILE.BIN of a BareFlow disk image (MBR, first partition, FAT16)."""
    from bareflow.image import fat16, mbr      # only `scons profile` reads images
    name = os.fspath(image_path)
    try:
        handle = open(name, "rb")
    except OSError as exc:
        raise BareflowError(f"image {name}: cannot read it: {exc.strerror or exc}") from exc
    with handle:
        table = mbr.partitions(handle.read(mbr.SECTOR), f"image {name}")
        if not table:
            raise BareflowError(f"image {name}: the MBR has no partition")
        offset = table[0].offset
        layout = fat16.read_fat16(handle, offset, source=name)
        if "/PROFILE.BIN" not in layout.files:
            raise BareflowError(f"image {name}: no /PROFILE.BIN on the FAT16 partition")
        return fat16.read_file_bytes(handle, offset, layout, "/PROFILE.BIN")
