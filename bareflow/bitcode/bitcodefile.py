"""The BFBC bitcode file: one layer's tier-neutral LLVM bitcode on the image (docs/bitcode-file.md).

With JIT=llvm the run-time compiler reads /MODULES/<LAYER>.BC.  The header names the layer and
the LLVM release that wrote the bitcode and carries a CRC-32, so the kernel can refuse a
damaged or foreign file before LLVM sees a byte of it (src/runtime/jit.c applies the same rules
as parse() here).
"""
from __future__ import annotations

import re
import struct
import zlib

from bareflow.errors import BareflowError

MAGIC = b"BFBC"
VERSION = 1
HEADER = struct.Struct("<4sHH16sII16s")      # magic version header_size layer size crc producer
assert HEADER.size == 48
MAX_BITCODE = 8 << 20
BITCODE_MAGIC = b"BC\xc0\xde"
_LAYER = re.compile(r"[a-z0-9_]{1,8}\Z")
_PRODUCER = re.compile(rb"LLVM(\d+)\.(\d+)\.(\d+)")


def file_name(layer: str) -> str:
    """The file's path on the FAT16 partition: /MODULES/<LAYER>.BC."""
    return f"/MODULES/{layer.upper()}.BC"


def producer() -> str:
    """"LLVM22.1.8": the release of zig's clang, which wrote the build's bitcode.  (LLVM keeps
    the same string in the bitcode's identification block, char6-encoded.)"""
    from bareflow.bitcode import toolchain
    return "LLVM" + ".".join(map(str, toolchain.clang_version()))


def _crc(data: bytes) -> int:
    return zlib.crc32(data[:28] + b"\0\0\0\0" + data[32:]) & 0xFFFFFFFF


def pack(bitcode: bytes, *, layer: str, made_by: str | None = None) -> bytes:
    """BFBC bytes for `bitcode` of `layer`; raises BareflowError naming the layer."""
    what = f"bitcode file for layer {layer!r}"
    if not _LAYER.match(layer):
        raise BareflowError(f"{what}: layer name must be 1-8 characters [a-z0-9_]")
    if not bitcode.startswith(BITCODE_MAGIC):
        raise BareflowError(f"{what}: input does not start with the bitcode magic 'BC' 0xC0DE")
    if len(bitcode) > MAX_BITCODE:
        raise BareflowError(f"{what}: {len(bitcode)} bytes of bitcode, at most {MAX_BITCODE}")
    made_by = made_by or producer()
    if not _PRODUCER.fullmatch(made_by.encode()):
        raise BareflowError(f"{what}: producer {made_by!r} is not of the form LLVM<major>.<minor>.<patch>")
    data = bytearray(HEADER.pack(MAGIC, VERSION, HEADER.size, layer.encode(), len(bitcode), 0,
                                 made_by.encode()) + bitcode)
    struct.pack_into("<I", data, 28, _crc(bytes(data)))
    return bytes(data)


def parse(data: bytes, what: str = "bitcode file") -> tuple[str, str, bytes]:
    """(layer, producer, bitcode) after every rule the kernel checks; BareflowError otherwise."""
    if len(data) < HEADER.size:
        raise BareflowError(f"{what}: {len(data)} bytes, shorter than the {HEADER.size}-byte header")
    magic, version, hsize, layer, size, crc, made_by = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BareflowError(f"{what}: bad magic {magic!r}, expected {MAGIC!r}")
    if version != VERSION or hsize != HEADER.size:
        raise BareflowError(f"{what}: version {version} header_size {hsize}, expected {VERSION} and {HEADER.size}")
    if size > MAX_BITCODE or HEADER.size + size != len(data):
        raise BareflowError(f"{what}: bitcode_size {size} but the file is {len(data)} bytes")
    if _crc(data) != crc:
        raise BareflowError(f"{what}: crc32 {crc:#010x} in the header, the contents give {_crc(data):#010x}")
    name = layer.rstrip(b"\0")
    if b"\0" in name or not _LAYER.match(name.decode("ascii", "replace")):
        raise BareflowError(f"{what}: layer field {layer!r} is not 1-8 of [a-z0-9_] padded with NUL")
    text = made_by.rstrip(b"\0")
    if b"\0" in text or not text.startswith(b"LLVM22."):
        raise BareflowError(f"{what}: producer {made_by!r}, the run-time compiler reads LLVM 22 bitcode")
    body = bytes(data[HEADER.size:])
    if not body.startswith(BITCODE_MAGIC):
        raise BareflowError(f"{what}: payload does not start with the bitcode magic 'BC' 0xC0DE")
    return name.decode(), text.decode(), body
