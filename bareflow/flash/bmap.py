"""Finding the block map a flash writes from (the BlockMap itself: bareflow.image.blockmap).

Read from the .bmap file next to the image, or computed from the image's MBR and FAT16 when there
is none; every range is re-hashed against the image before any byte is written, so a stale bmap
never makes the flash write a mix of two builds.  A map the user named (BMAP=) that does not
match stops the flash.  The map beside the image that does not match means the image changed
after the build wrote both (a hosted run writes its /PROFILE.BIN back, a user edits
/BAREFLOW.CFG with mtools): the user asked to flash that image, so the map is computed from it
as it is now and the report says so.
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
    if not os.path.exists(path):
        return _computed(image, f"block map computed from {image}")
    bm = replace(shared.read_bmap(path), source=f"block map {path}")
    bm.check()
    try:
        shared.verify_image(bm, image)
    except BareflowError as stale:
        if bmap is not None:
            raise
        try:
            bm = _computed(image, f"block map computed from {image}")
        except BareflowError:
            raise stale from None
        bm = replace(bm, note=f"{image} changed after {path} was written (a run wrote its "
                              f"/PROFILE.BIN back, or a file was edited): flashed the image as it is "
                              f"now, with a block map computed from it")
    return bm


def _computed(image, source):
    bm = replace(shared.block_map_from_image(image), source=source)
    bm.check()
    shared.verify_image(bm, image)
    return bm
