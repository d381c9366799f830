"""The block map a flash writes from: which byte ranges of the image matter, with their sha256.

`BlockMap` (byte ranges) is the interface the writers and third-party targets use.  It is
made from the image build's map (bareflow_plugins.blockmap, docs/blockmap.md): read from the
.bmap file next to the image, or computed from the image's MBR and FAT16 when there is none.
`validate` re-hashes every range against the image before any byte is written, so a stale
bmap (image rebuilt, bmap not) stops the flash instead of writing a mix of two builds.
"""
import hashlib
import os
import re
from dataclasses import dataclass

from bareflow_plugins import blockmap as shared
from bareflow_plugins.errors import BareflowError

SECTOR = 512


@dataclass(frozen=True)
class BlockMap:
    block_size: int
    image_size: int
    ranges: tuple            # ((start_byte, length_bytes, sha256_hex), ...) sorted, disjoint
    source: str = ""         # human-readable origin, shown in reports and errors

    @property
    def mapped_bytes(self):
        return sum(length for _, length, _ in self.ranges)

    def check(self):
        """Structural rules the writer relies on; raises BareflowError naming the source."""
        where = self.source or "block map"
        if self.block_size <= 0 or self.block_size % SECTOR:
            raise BareflowError(f"{where}: block size {self.block_size} is not a multiple of {SECTOR}")
        end = 0
        for i, (start, length, digest) in enumerate(self.ranges):
            if length <= 0 or start < end or start + length > self.image_size:
                raise BareflowError(f"{where}: range {i} (bytes {start}..{start + length}) is empty, "
                                    f"overlaps the previous one or passes the image end {self.image_size}")
            if not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise BareflowError(f"{where}: range {i} has no sha256 checksum")
            end = start + length
        if not self.ranges or self.ranges[0][0] != 0 or self.ranges[0][1] < SECTOR:
            raise BareflowError(f"{where}: does not map the first sector (the MBR); refusing a map "
                                "that would leave the partition table unwritten")
        return self


def from_shared(bm, source):
    """Convert a bareflow_plugins.blockmap.BlockMap (block ranges) to byte ranges."""
    ranges = tuple((start, length, r.sha256) for r, (start, length) in zip(bm.ranges, bm.byte_ranges()))
    return BlockMap(bm.block_size, bm.image_size, ranges, source).check()


def default_bmap_path(image):
    return os.path.splitext(str(image))[0] + ".bmap"


def load_blockmap(image, bmap=None):
    """The BlockMap for `image`, validated against it.

    `bmap` names a block map file; None means the .bmap next to the image if it exists, else
    a map computed from the image itself.
    """
    image = str(image)
    path = str(bmap) if bmap is not None else default_bmap_path(image)
    if bmap is not None and not os.path.exists(path):
        raise BareflowError(f"block map {path} does not exist")
    if os.path.exists(path):
        bm = from_shared(shared.read_bmap(path), f"block map {path}")
    else:
        bm = from_shared(shared.block_map_from_image(image), f"block map computed from {image}")
    validate(bm, image)
    return bm


def hash_range(f, start, length, chunk=1 << 20):
    f.seek(start)
    h, left = hashlib.sha256(), length
    while left:
        data = f.read(min(chunk, left))
        if not data:
            raise BareflowError(f"{getattr(f, 'name', 'image')}: ends inside bytes {start}..{start + length}")
        h.update(data)
        left -= len(data)
    return h.hexdigest()


def validate(bm, image):
    """Refuse a block map that does not describe `image` byte for byte (checked before writing)."""
    image = str(image)
    size = os.path.getsize(image)
    if size != bm.image_size:
        raise BareflowError(f"{bm.source} is for a {bm.image_size}-byte image but {image} has "
                            f"{size} bytes; the bmap is stale: rebuild the image")
    with open(image, "rb") as f:
        for i, (start, length, digest) in enumerate(bm.ranges):
            if hash_range(f, start, length) != digest:
                raise BareflowError(f"{bm.source}: range {i} (bytes {start}..{start + length}) does "
                                    f"not match {image}; the bmap is stale: rebuild the image")
