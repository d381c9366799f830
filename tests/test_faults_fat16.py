"""Issue 8, kind 1: the FAT16 reader proves every cluster chain before it reads or writes.

Each case damages one directory entry or FAT entry of an mkfs.fat + mtools image so that a
chain runs into another file, loops, is longer or shorter than the size needs, or leaves the
volume.  The hosted runtime must refuse the volume naming the file(s), and must not change
one byte of the image (before the fix, PROFILE.BIN was written over the tokenizer's clusters).
"""
import struct

import pytest

from test_runtime_hosted import PART_LBA, base_files, config, make_image, needs_mtools, run_image


class Volume:
    """Just enough of an image's FAT16 layout to find and patch entries (spc from the BPB)."""

    def __init__(self, image):
        self.image = image
        self.data = bytearray(image.read_bytes())
        base = PART_LBA * 512
        bs = self.data[base:base + 512]
        self.spc = bs[13]
        reserved, nfats = struct.unpack_from("<H", bs, 14)[0], bs[16]
        root_entries, fat_size = struct.unpack_from("<H", bs, 17)[0], struct.unpack_from("<H", bs, 22)[0]
        self.fat_at = [base + (reserved + i * fat_size) * 512 for i in range(nfats)]
        self.root_at = base + (reserved + nfats * fat_size) * 512
        self.root_entries = root_entries

    def entry(self, name83):
        for i in range(self.root_entries):
            at = self.root_at + 32 * i
            if self.data[at:at + 11] == name83.encode():
                return at
        raise KeyError(name83)

    def first_cluster(self, name83):
        return struct.unpack_from("<H", self.data, self.entry(name83) + 26)[0]

    def set_first_cluster(self, name83, cluster):
        struct.pack_into("<H", self.data, self.entry(name83) + 26, cluster)

    def fat(self, cluster):
        return struct.unpack_from("<H", self.data, self.fat_at[0] + 2 * cluster)[0]

    def set_fat(self, cluster, value):
        for at in self.fat_at:
            struct.pack_into("<H", self.data, at + 2 * cluster, value)

    def chain(self, name83):
        out, c = [], self.first_cluster(name83)
        while 2 <= c < 0xFFF8:
            out.append(c)
            c = self.fat(c)
        return out

    def save(self):
        self.image.write_bytes(bytes(self.data))
        return bytes(self.data)


@pytest.fixture
def volume(tmp_path):
    return Volume(make_image(tmp_path / "disk.img", base_files(cfg=config(steps=8))))


def refuse(volume, *fragments):
    before = volume.save()
    run = run_image(volume.image)
    assert run.code == 1, run.out[-2000:]
    for fragment in fragments:
        assert fragment in run.out, run.out[-2000:]
    assert volume.image.read_bytes() == before, "the runtime wrote to a volume it refused"
    return run


@needs_mtools
def test_profile_entry_pointing_into_another_file_is_not_written(volume):
    """The issue's example: PROFILE.BIN's first cluster moved onto the tokenizer's last 8
    clusters (a chain of exactly the right length that belongs to another file)."""
    need = len(volume.chain("PROFILE BIN"))
    tail = volume.chain("TOKENIZRBIN")[-need:]
    volume.set_first_cluster("PROFILE BIN", tail[0])
    refuse(volume, "/TOKENIZR.BIN", "/PROFILE.BIN", "share cluster", "cross-linked")


@needs_mtools
def test_fat_entry_linking_into_another_file_is_refused(volume):
    """The same kind through the FAT: the profile's chain jumps into the model's clusters."""
    chain = volume.chain("PROFILE BIN")
    model = volume.chain("MODEL   BIN")
    volume.set_fat(chain[-2], model[-1])
    refuse(volume, "share cluster", "/MODEL.BIN", "/PROFILE.BIN")


@needs_mtools
def test_chain_loop_is_refused(volume):
    chain = volume.chain("PROFILE BIN")
    volume.set_fat(chain[3], chain[1])
    refuse(volume, "/PROFILE.BIN: cluster chain loops back to cluster")


@needs_mtools
def test_chain_longer_than_size_is_refused(volume):
    volume.set_fat(volume.chain("PROFILE BIN")[-1], volume.chain("TOKENIZRBIN")[0])
    refuse(volume, "/PROFILE.BIN: cluster chain continues past the 8 clusters its size needs")


@needs_mtools
def test_chain_shorter_than_size_is_refused(volume):
    volume.set_fat(volume.chain("BAREFLOWCFG")[0], 0xFFFF)
    struct.pack_into("<I", volume.data, volume.entry("BAREFLOWCFG") + 28, 4000)
    refuse(volume, "/BAREFLOW.CFG: cluster chain ends after 1 clusters, its size needs 8")


@needs_mtools
def test_chain_leaving_the_volume_is_refused(volume):
    volume.set_fat(volume.chain("POLICY  TBL")[0], 0xFFF0)
    refuse(volume, "/POLICY.TBL", "out of range 2..")


@needs_mtools
def test_directory_cross_linked_with_a_file_is_refused(volume):
    """A file inside /MODULES whose chain starts in the directory's own cluster."""
    modules_dir = volume.first_cluster("MODULES    ")
    base = PART_LBA * 512
    bs = volume.data[base:base + 512]
    data_start = struct.unpack_from("<H", bs, 14)[0] + bs[16] * struct.unpack_from("<H", bs, 22)[0] + \
        volume.root_entries * 32 // 512
    at = base + (data_start + (modules_dir - 2) * volume.spc) * 512
    # entries 0 and 1 are "." and ".."; entry 2 is the first module file
    struct.pack_into("<H", volume.data, at + 64 + 26, modules_dir)
    refuse(volume, "share cluster", "/MODULES")


@needs_mtools
def test_empty_file_with_a_cluster_is_refused(volume):
    at = volume.entry("PROFILE BIN")
    struct.pack_into("<I", volume.data, at + 28, 0)
    refuse(volume, "/PROFILE.BIN: size 0 but first cluster")
