"""The master boot record: the one place BareFlow writes and reads a partition table.

Layout (the IBM PC convention every firmware and OS follows): boot code in bytes 0..439, the disk
signature (u32) at 440, four 16-byte partition entries from 446 (status, CHS start, type, CHS
end, LBA start u32, sector count u32), and 0x55 0xAA at 510.
"""
import struct
from dataclasses import dataclass

from bareflow.errors import BareflowError

SECTOR = 512
MBR_CODE_MAX = 440
PARTITION_TABLE = 446
SIGNATURE = b"\x55\xAA"


@dataclass(frozen=True)
class Partition:
    index: int           # 0..3, the slot in the table
    status: int          # 0x80 = bootable
    type: int            # partition type byte (0x0E: FAT16, LBA)
    start_lba: int
    sectors: int

    @property
    def offset(self) -> int:
        """Byte offset of the partition in the disk."""
        return self.start_lba * SECTOR


def partitions(sector0: bytes, source: str) -> list:
    """The used entries of the partition table in `sector0` (512 bytes, read from disk).

    Raises BareflowError naming `source` when the sector has no MBR signature.
    """
    if len(sector0) < SECTOR or sector0[510:512] != SIGNATURE:
        raise BareflowError(f"{source}: no MBR (missing 0x55AA signature)")
    found = []
    for index in range(4):
        status, ptype, lba, count = struct.unpack_from("<B3xB3xII", sector0, PARTITION_TABLE + 16 * index)
        if ptype and count:
            found.append(Partition(index, status, ptype, lba, count))
    return found


def _chs(lba):
    """CHS triple for an LBA on the usual 255-head, 63-sector translation; beyond it, the
    conventional 1023/254/63 "use LBA" marker."""
    c, rest = divmod(lba, 255 * 63)
    h, s = divmod(rest, 63)
    if c > 1023:
        c, h, s = 1023, 254, 62
    return bytes([h, ((s + 1) & 0x3F) | ((c >> 2) & 0xC0), c & 0xFF])


def mbr_sector(code, disk_signature, start_lba, sectors, ptype):
    """The 512-byte MBR with one bootable partition."""
    if len(code) > MBR_CODE_MAX:
        raise BareflowError(f"MBR boot code is {len(code)} bytes; at most {MBR_CODE_MAX} fit")
    mbr = bytearray(512)
    mbr[:len(code)] = code
    struct.pack_into("<I", mbr, 440, disk_signature)
    entry = b"\x80" + _chs(start_lba) + bytes([ptype]) + _chs(start_lba + sectors - 1) \
        + struct.pack("<II", start_lba, sectors)
    mbr[PARTITION_TABLE:PARTITION_TABLE + 16] = entry
    mbr[510:512] = SIGNATURE
    return bytes(mbr)


