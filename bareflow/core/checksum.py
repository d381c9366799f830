"""The checksum every BareFlow file format uses (policy table, profile, module file).

CRC-32 as zlib computes it (IEEE 802.3 polynomial, the same as src/runtime/util.c's crc32), over
the whole record with its own 4-byte CRC field read as zero.
"""
import zlib


def crc32_with_field_zeroed(data: bytes, field_offset: int) -> int:
    """CRC-32 of `data` with the 4 bytes at `field_offset` taken as zero; an unsigned 32-bit int."""
    return zlib.crc32(bytes(data[:field_offset]) + b"\0\0\0\0" + bytes(data[field_offset + 4:])) & 0xFFFFFFFF
