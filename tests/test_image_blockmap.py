"""Block map: covers the metadata and every used cluster, skips free ones, round-trips."""
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bareflow.image import fat16  # noqa: E402

from bareflow.image import blockmap

from bareflow.image import diskimage
from bareflow.image import syslinux as syslinux_plugin  # noqa: E402
from bareflow.errors import BareflowError  # noqa: E402

EPOCH = 1700000000
OFF = diskimage.PARTITION_OFFSET


def payload(seed=5):
    rnd = random.Random(seed)
    return {"/KERNEL.BIN": rnd.randbytes(40_000), "/PROFILE.BIN": bytes(4096),
            "/MODEL.BIN": rnd.randbytes(700_000), "/MODULES/FFN.O2": rnd.randbytes(3000),
            "/EMPTY.TXT": b""}


def build(tmp_path, files=None, name="bareflow.img", **kw):
    return diskimage.build_disk_image(tmp_path / name, payload() if files is None else files,
                                      volume_id=7, disk_signature=9, epoch=EPOCH, **kw)


def covered(bmap, start, length):
    return any(off <= start and start + length <= off + n for off, n in bmap.byte_ranges())


def check_map(result):
    bmap, layout = result.block_map, result.layout
    assert covered(bmap, 0, OFF + layout.data_offset)                 # MBR .. root directory
    for c in layout.used_clusters():
        assert covered(bmap, OFF + layout.cluster_offset(c), layout.cluster_size), c
    free = [c for c in range(2, layout.cluster_count + 2) if layout.fat[c] == 0]
    assert free
    for c in free:
        start = OFF + layout.cluster_offset(c)
        assert not any(off < start + layout.cluster_size and start < off + n for off, n in bmap.byte_ranges())
    assert bmap.mapped_bytes < bmap.image_size
    assert bmap.mapped_bytes == OFF + layout.data_offset + len(layout.used_clusters()) * layout.cluster_size


def test_block_map_of_plain_image(tmp_path):
    result = build(tmp_path)
    check_map(result)
    assert blockmap.block_map_for_layout(result.path, OFF, result.layout) == result.block_map
    assert blockmap.block_map_from_image(result.path) == result.block_map
    assert blockmap.read_bmap(result.bmap_path) == result.block_map
    blockmap.verify_image(result.block_map, result.path, full=True)


def test_written_layout_equals_parsed_layout(tmp_path):
    files = payload()
    layout = fat16.plan_fat16(files, volume_id=7, epoch=EPOCH, contiguous=["/PROFILE.BIN"],
                              hidden_sectors=2048)
    result = build(tmp_path, files)
    assert result.layout == layout


def test_block_map_of_syslinux_image(tmp_path):
    ok, why = syslinux_plugin.SyslinuxBootloader().available()
    if not ok:
        pytest.skip(why)
    result = build(tmp_path, bootloaders=[syslinux_plugin.SyslinuxBootloader()])
    check_map(result)
    assert "/LDLINUX.SYS" in result.layout.files
    assert blockmap.block_map_from_image(result.path) == result.block_map
    blockmap.verify_image(blockmap.read_bmap(result.bmap_path), result.path, full=True)


def test_bmap_file_format(tmp_path):
    result = build(tmp_path)
    doc = json.loads(Path(result.bmap_path).read_text())
    assert Path(result.bmap_path).name == "bareflow.bmap"
    assert doc["format"] == "bareflow-bmap" and doc["version"] == 1
    assert doc["image_size"] == Path(result.path).stat().st_size
    assert doc["image_blocks"] * doc["block_size"] == doc["image_size"]
    assert doc["mapped_blocks"] == sum(r["count"] for r in doc["ranges"])
    assert list(doc) == ["format", "version", "image_size", "block_size", "image_blocks",
                         "mapped_blocks", "image_sha256", "ranges"]


def test_flashing_only_mapped_ranges_gives_an_equivalent_disk(tmp_path):
    """Write the mapped ranges over a disk full of garbage: the filesystem must read the same."""
    need_tools = [t for t in ("fsck.fat", "mtype") if not shutil.which(t)]
    if need_tools:
        pytest.skip(f"{', '.join(need_tools)} not installed")
    files = payload()
    result = build(tmp_path, files)
    disk = tmp_path / "stick.img"
    disk.write_bytes(random.Random(1).randbytes(result.size))
    with open(result.path, "rb") as src, open(disk, "r+b") as dst:
        for off, n in result.block_map.byte_ranges():
            src.seek(off)
            dst.seek(off)
            dst.write(src.read(n))
    part = tmp_path / "part.img"
    part.write_bytes(disk.read_bytes()[OFF:])
    assert subprocess.run(["fsck.fat", "-n", str(part)], capture_output=True).returncode == 0
    for p, data in files.items():
        out = subprocess.run(["mtype", "-i", f"{disk}@@{OFF}", "::" + p], capture_output=True).stdout
        assert out == data, p


def test_verify_detects_changes(tmp_path):
    result = build(tmp_path)
    with open(result.path, "r+b") as fh:
        fh.seek(OFF + result.layout.cluster_offset(result.layout.files["/MODEL.BIN"].clusters[3]))
        fh.write(b"X")
    with pytest.raises(BareflowError, match="does not match .*the bmap is stale"):
        blockmap.verify_image(result.block_map, result.path)


def test_changes_in_free_clusters_do_not_matter(tmp_path):
    result = build(tmp_path)
    layout = result.layout
    free = next(c for c in range(2, layout.cluster_count + 2) if layout.fat[c] == 0)
    with open(result.path, "r+b") as fh:
        fh.seek(OFF + layout.cluster_offset(free))
        fh.write(b"junk")
    blockmap.verify_image(result.block_map, result.path)
    with pytest.raises(BareflowError, match="sha256 does not match"):
        blockmap.verify_image(result.block_map, result.path, full=True)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(format="other"), "not a bareflow-bmap"),
    (lambda d: d.update(block_size=3), "block_size"),
    (lambda d: d["ranges"][0].update(sha256="XYZ"), r"ranges\[0\].sha256"),
    (lambda d: d["ranges"][0].pop("count"), r"ranges\[0\].'count'"),
    (lambda d: d["ranges"].append(dict(d["ranges"][0])), "overlaps"),
    (lambda d: d.update(mapped_blocks=1), "mapped_blocks"),
])
def test_bad_bmap_rejected(tmp_path, edit, message):
    result = build(tmp_path, bmap_path=tmp_path / "x.bmap")
    doc = json.loads(Path(result.bmap_path).read_text())
    edit(doc)
    Path(result.bmap_path).write_text(json.dumps(doc))
    with pytest.raises(BareflowError, match=message) as err:
        blockmap.read_bmap(result.bmap_path)
    assert "x.bmap" in str(err.value)


def test_superfloppy_and_third_party_images(tmp_path):
    files = payload()
    data, layout = fat16.make_fat16(files, volume_id=1, epoch=EPOCH)
    bare = tmp_path / "bare.img"
    bare.write_bytes(data)
    bmap = blockmap.block_map_from_image(bare)
    assert bmap == blockmap.block_map_for_layout(bare, 0, layout)
    assert bmap.mapped_bytes == layout.data_offset + len(layout.used_clusters()) * layout.cluster_size
    if shutil.which("mkfs.fat"):
        mk = tmp_path / "mk.img"
        mk.write_bytes(bytes(16 << 20))
        subprocess.run(["mkfs.fat", "-F", "16", str(mk)], check=True, capture_output=True)
        assert blockmap.block_map_from_image(mk).mapped_bytes < (1 << 20)


def test_unparseable_partition(tmp_path):
    result = build(tmp_path)
    with open(result.path, "r+b") as fh:                      # break the FAT16 boot sector
        fh.seek(OFF + 22)
        fh.write(b"\0\0")
    with pytest.raises(BareflowError, match="FAT32"):
        blockmap.block_map_from_image(result.path)
    assert blockmap.block_map_from_image(result.path, strict=False).mapped_bytes == result.size


def test_no_bmap_written_when_disabled(tmp_path):
    result = build(tmp_path, bmap_path=False)
    assert result.bmap_path is None and [p.name for p in tmp_path.iterdir()] == ["bareflow.img"]
