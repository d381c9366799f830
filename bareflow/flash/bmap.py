"""Finding the block map a flash writes from (the BlockMap itself: bareflow.image.blockmap).

Read from the .bmap file next to the image, or computed from the image's MBR and FAT16 when there
is none; every range is re-hashed against the image before any byte is written, so a stale bmap
(image rebuilt, bmap not) stops the flash instead of writing a mix of two builds.
"""
import os
from dataclasses import replace

from bareflow.image import blockmap as shared
from bareflow.errors import BareflowError


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
        bm = replace(shared.read_bmap(path), source=f"block map {path}")
    else:
        bm = replace(shared.block_map_from_image(image), source=f"block map computed from {image}")
    bm.check()
    shared.verify_image(bm, image)
    return bm
