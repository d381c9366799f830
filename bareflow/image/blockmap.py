"""Block map: the parts of a disk image that must be written when flashing (docs/blockmap.md).

Everything is mapped except the clusters a FAT16 filesystem marks free (and bad): the MBR,
the gap before the partition, reserved sectors, both FATs, the root directory, every
allocated cluster, and anything the map cannot account for (other partitions, bytes past
the last cluster).  Free clusters are skipped because the filesystem never reads them.

    bmap = block_map_for_layout(image_path, partition_offset, layout)   # from a FatLayout
    bmap = block_map_from_image(image_path, strict=True)                # parse MBR + FAT16
    write_bmap(bmap, path); bmap = read_bmap(path); verify_image(bmap, image_path)
    bmap.byte_ranges() -> [(offset, length)] clipped to the image size
"""
import hashlib
import json
import os
from dataclasses import dataclass

from bareflow.core.atomicfile import replace_atomically
from bareflow.image import fat16, mbr
from bareflow.errors import BareflowError

FORMAT = "bareflow-bmap"
VERSION = 1
FAT16_PARTITION_TYPES = (0x04, 0x06, 0x0E)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Range:
    start: int       # first block
    count: int       # number of blocks
    sha256: str      # of the bytes of these blocks that lie inside the image


@dataclass(frozen=True)
class BlockMap:
    """The mapped blocks of one image: the build writes it, `scons flash` and flash targets read it."""
    image_size: int          # bytes
    block_size: int          # bytes: 512, 1024, 2048 or 4096
    image_sha256: str        # of the whole image
    ranges: tuple            # (Range, ...) sorted and disjoint, in blocks
    source: str = ""         # where it came from, for messages ("block map build/bareflow.bmap")
    note: str = ""           # why it was not the map beside the image (flash reports it)

    @property
    def mapped_blocks(self):
        return sum(r.count for r in self.ranges)

    def byte_ranges(self):
        out = []
        for r in self.ranges:
            start = r.start * self.block_size
            out.append((start, min(r.count * self.block_size, self.image_size - start)))
        return out

    @property
    def mapped_bytes(self):
        return sum(n for _, n in self.byte_ranges())

    def extents(self):
        """((start byte, length in bytes, sha256 hex), ...): what a flash target writes and verifies."""
        return tuple((start, length, r.sha256) for r, (start, length) in zip(self.ranges, self.byte_ranges()))

    def check(self):
        """The rules a flash writer relies on; BareflowError naming `source` otherwise. Returns self."""
        where = self.source or "block map"
        if self.block_size <= 0 or self.block_size % 512:
            raise BareflowError(f"{where}: block size {self.block_size} is not a multiple of 512")
        end = 0
        for i, (start, length, digest) in enumerate(self.extents()):
            if length <= 0 or start < end or start + length > self.image_size:
                raise BareflowError(f"{where}: range {i} (bytes {start}..{start + length}) is empty, "
                                    f"overlaps the previous one or passes the image end {self.image_size}")
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise BareflowError(f"{where}: range {i} has no sha256 checksum")
            end = start + length
        if not self.ranges or self.ranges[0].start != 0 or self.byte_ranges()[0][1] < 512:
            raise BareflowError(f"{where}: does not map the first sector (the MBR); refusing a map "
                                "that would leave the partition table unwritten")
        return self

    def to_json(self):
        head = {"format": FORMAT, "version": VERSION, "image_size": self.image_size,
                "block_size": self.block_size, "image_blocks": -(-self.image_size // self.block_size),
                "mapped_blocks": self.mapped_blocks, "image_sha256": self.image_sha256}
        lines = ["{"] + [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
        lines.append('  "ranges": [')
        rows = [json.dumps({"start": r.start, "count": r.count, "sha256": r.sha256}) for r in self.ranges]
        lines.append(",\n".join("    " + row for row in rows))
        lines += ["  ]", "}"]
        return "\n".join(lines) + "\n"


def _sha256(fh, offset, length):
    h = hashlib.sha256()
    fh.seek(offset)
    while length > 0:
        chunk = fh.read(min(_CHUNK, length))
        if not chunk:
            break
        h.update(chunk)
        length -= len(chunk)
    return h.hexdigest()


def _mapped_byte_ranges(image_size, partitions):
    """Complement of the free clusters of every (offset, FatLayout), as merged byte ranges."""
    holes = []
    for poff, layout in partitions:
        free = [c for c in range(2, layout.cluster_count + 2) if layout.fat[c] in (0, fat16.BAD_CLUSTER)]
        for c in free:
            start = poff + layout.cluster_offset(c)
            end = min(start + layout.cluster_size, image_size)
            if start >= end:
                continue
            if holes and holes[-1][1] == start:
                holes[-1][1] = end
            else:
                holes.append([start, end])
    holes.sort()
    mapped, pos = [], 0
    for start, end in holes:
        if start > pos:
            mapped.append((pos, start - pos))
        pos = max(pos, end)
    if pos < image_size:
        mapped.append((pos, image_size - pos))
    return mapped


def _block_size(ranges, image_size):
    """Largest power of two from 512 to 4096 on which every range boundary falls."""
    for bs in (4096, 2048, 1024, 512):
        if all(off % bs == 0 and ((off + n) % bs == 0 or off + n == image_size) for off, n in ranges):
            return bs
    raise BareflowError("block map: a mapped range is not 512-byte aligned")


def _build(image_path, partitions):
    size = os.path.getsize(image_path)
    spans = _mapped_byte_ranges(size, partitions)
    bs = _block_size(spans, size)
    with open(image_path, "rb") as fh:
        ranges = tuple(Range(off // bs, -(-n // bs), _sha256(fh, off, n)) for off, n in spans)
        whole = _sha256(fh, 0, size)
    return BlockMap(image_size=size, block_size=bs, image_sha256=whole, ranges=ranges)


def block_map_for_layout(image_path, partition_offset, layout):
    """Block map of an image whose one FAT16 volume at `partition_offset` has `layout`."""
    return _build(image_path, [(partition_offset, layout)])


def find_fat16_volumes(image_path, strict=True):
    """[(byte offset, FatLayout)] for a partitioned image or a bare ("superfloppy") volume.

    With strict=False a partition typed FAT16 that does not parse is left out (and so
    mapped in full) instead of raising.
    """
    with open(image_path, "rb") as fh:
        try:
            return [(0, fat16.read_fat16(fh, 0, source=image_path))]
        except BareflowError:
            pass
        fh.seek(0)
        try:
            table = mbr.partitions(fh.read(mbr.SECTOR), str(image_path))
        except BareflowError:
            raise BareflowError(f"{image_path}: neither an MBR nor a FAT16 volume at byte 0") from None
        found = []
        for part in table:
            if part.type not in FAT16_PARTITION_TYPES:
                continue
            try:
                found.append((part.offset, fat16.read_fat16(fh, part.offset,
                                                            source=f"{image_path} partition {part.index + 1}")))
            except BareflowError:
                if strict:
                    raise
        return found


def block_map_from_image(image_path, strict=True):
    """Block map of any image, found by parsing its MBR and FAT16 volumes."""
    return _build(image_path, find_fat16_volumes(image_path, strict=strict))


def write_bmap(bmap, path):
    """Write atomically: a reader never sees half a map."""
    with replace_atomically(path, "w") as fh:
        fh.write(bmap.to_json())


def read_bmap(path):
    """Parse and validate a block map file; errors name the file and the field."""
    try:
        with open(path, encoding="ascii") as fh:
            doc = json.load(fh)
    except (OSError, ValueError) as exc:
        raise BareflowError(f"block map {path}: cannot read: {exc}") from None

    def need(obj, key, kind, where):
        if not isinstance(obj, dict) or key not in obj or not isinstance(obj[key], kind) \
                or isinstance(obj[key], bool):
            raise BareflowError(f"block map {path}: {where}{key!r} missing or not {kind.__name__}")
        return obj[key]

    if need(doc, "format", str, "") != FORMAT or need(doc, "version", int, "") != VERSION:
        raise BareflowError(f"block map {path}: not a {FORMAT} version {VERSION} file")
    size, bs = need(doc, "image_size", int, ""), need(doc, "block_size", int, "")
    if bs not in (512, 1024, 2048, 4096) or size < 0:
        raise BareflowError(f"block map {path}: block_size {bs} / image_size {size} invalid")
    ranges, end = [], 0
    for i, r in enumerate(need(doc, "ranges", list, "")):
        where = f"ranges[{i}]."
        start, count, digest = need(r, "start", int, where), need(r, "count", int, where), need(r, "sha256", str, where)
        if start < end or count <= 0 or start * bs + count * bs - bs >= max(size, 1):
            raise BareflowError(f"block map {path}: ranges[{i}] (start {start}, count {count}) overlaps, "
                                "is out of order or lies outside the image")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise BareflowError(f"block map {path}: ranges[{i}].sha256 is not 64 lower-case hex digits")
        ranges.append(Range(start, count, digest))
        end = start + count
    digest = need(doc, "image_sha256", str, "")
    bmap = BlockMap(image_size=size, block_size=bs, image_sha256=digest, ranges=tuple(ranges))
    if doc.get("mapped_blocks") != bmap.mapped_blocks:
        raise BareflowError(f"block map {path}: mapped_blocks {doc.get('mapped_blocks')} does not match "
                            f"the ranges ({bmap.mapped_blocks})")
    return bmap


def verify_image(bmap, image_path, full=False):
    """Check the image against the map: size, each range, and with `full` the whole-image hash.

    Raises BareflowError naming the map, the range and its bytes, and saying the map is stale.
    """
    image_path = str(image_path)
    where = bmap.source or "block map"
    size = os.path.getsize(image_path)
    if size != bmap.image_size:
        raise BareflowError(f"{where} is for a {bmap.image_size}-byte image but {image_path} has "
                            f"{size} bytes; the bmap is stale: rebuild the image")
    with open(image_path, "rb") as fh:
        for i, (off, n, digest) in enumerate(bmap.extents()):
            if _sha256(fh, off, n) != digest:
                raise BareflowError(f"{where}: range {i} (bytes {off}..{off + n}) does not match "
                                    f"{image_path}; the bmap is stale: rebuild the image")
        if full and _sha256(fh, 0, size) != bmap.image_sha256:
            raise BareflowError(f"{image_path}: sha256 does not match the block map")
