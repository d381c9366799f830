"""The writer, through the file and raw targets: sparse, MBR last, verified, bmap checked first."""
import io
import os
import shutil
import stat
import subprocess

import pytest

from bareflow.image import blockmap as shared
from bareflow.errors import BareflowError
from bareflow import FlashContext
from bareflow.flash.api import flash_image
from bareflow.flash.bmap import load_blockmap
from bareflow.image.blockmap import BlockMap, Range
from bareflow.flash.filetarget import FileTarget
from test_flash_support import (FakeSys, fsck_partition, make_image, random_file, read_with_mtools,
                                sample_files)

MiB = 1 << 20


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return make_image(tmp_path_factory.mktemp("img") / "bareflow.img")


def ctx(**kw):
    kw.setdefault("assume_yes", True)
    kw.setdefault("quiet", True)
    return FlashContext(**kw)


def read(path, start=0, n=None):
    with open(path, "rb") as f:
        f.seek(start)
        return f.read() if n is None else f.read(n)


def unmapped_spans(bm):
    spans, pos = [], 0
    for start, length, _ in bm.extents():
        if start > pos:
            spans.append((pos, start - pos))
        pos = start + length
    if pos < bm.image_size:
        spans.append((pos, bm.image_size - pos))
    return spans


def test_file_target_over_random_bytes(image, tmp_path):
    size = os.path.getsize(image)
    target = random_file(tmp_path / "stick.img", size + MiB)
    before = read(target)
    report = flash_image(image, str(target), "file", ctx=ctx())
    bm = load_blockmap(image)

    assert report.verified and report.image_size == size
    assert report.bytes_written == bm.mapped_bytes + 512          # sector 0 twice: zeros, then MBR
    assert report.bytes_written < size / 4, (report.bytes_written, size)
    # The file system is whole and every file reads back identically through outside tools.
    rc, out = fsck_partition(str(target), tmp_path / "part.bin")
    assert rc == 0, out
    for path, data in sample_files().items():
        assert read_with_mtools(str(target), path) == data, path
    # Sparse: bytes outside the map still hold the old random content.
    after = read(target)
    spans = unmapped_spans(bm)
    assert sum(n for _, n in spans) > size / 2
    for start, n in spans:
        assert after[start:start + n] == before[start:start + n]
    assert after[size:] == before[size:]                           # beyond the image too


def test_new_file_is_created_sparse(image, tmp_path):
    target = tmp_path / "new.img"
    report = flash_image(image, str(target), "file", ctx=ctx(assume_yes=False, interactive=False))
    assert os.path.getsize(target) == os.path.getsize(image)
    assert report.verified
    assert os.stat(target).st_blocks * 512 < os.path.getsize(image) / 2     # holes were left
    for path, data in sample_files().items():
        assert read_with_mtools(str(target), path) == data


def test_write_order_mbr_last(image, tmp_path):
    target = random_file(tmp_path / "stick.img", os.path.getsize(image), seed=9)
    mbr = read(image, 0, 512)
    seen = []

    def watch(name, **info):
        seen.append((name, read(target, 0, 512)))

    flash_image(image, str(target), "file", ctx=ctx(on_event=watch))
    names = [n for n, _ in seen]
    assert names[0] == "sector0-zeroed" and names[-2:] == ["sector0-written", "before-verify"]
    assert names[-3] == "ranges-synced" and set(names[1:-3]) == {"range-written"}
    for name, sector0 in seen[:-2]:
        assert sector0 == bytes(512), f"sector 0 not zero at {name}"
    assert seen[-2][1] == mbr


def test_interrupted_flash_leaves_sector0_zeroed(image, tmp_path):
    size = os.path.getsize(image)
    target = random_file(tmp_path / "stick.img", size, seed=11)
    old = read(target)

    def pull_the_plug(name, **info):
        if name == "range-written":
            raise KeyboardInterrupt("stick pulled out")

    with pytest.raises(KeyboardInterrupt):
        flash_image(image, str(target), "file", ctx=ctx(on_event=pull_the_plug))
    now = read(target)
    assert now[:512] == bytes(512)               # not a valid MBR: no 55 AA, no partitions
    assert now[510:512] != b"\x55\xaa"
    assert now[512:] != old[512:]                # the first range did get written


def test_verification_catches_corruption_and_names_offset(image, tmp_path):
    target = random_file(tmp_path / "stick.img", os.path.getsize(image))
    bm = load_blockmap(image)
    start, length, _ = bm.extents()[-1]
    bad = start + length // 2

    def corrupt(name, **info):
        if name == "before-verify":
            with open(target, "r+b") as f:
                f.seek(bad)
                b = f.read(1)
                f.seek(bad)
                f.write(bytes([b[0] ^ 0x40]))

    with pytest.raises(BareflowError) as e:
        flash_image(image, str(target), "file", ctx=ctx(on_event=corrupt))
    msg = str(e.value)
    assert f"first bad byte at offset {bad} (0x{bad:x})" in msg and str(target) in msg


def test_stale_bmap_refused_before_writing(image, tmp_path):
    img = tmp_path / "copy.img"
    shutil.copy(image, img)
    shared.write_bmap(shared.block_map_from_image(str(img)), str(tmp_path / "other.bmap"))
    assert load_blockmap(img, tmp_path / "other.bmap").source == f"block map {tmp_path / 'other.bmap'}"
    with open(img, "r+b") as f:                   # rebuild "the image" without the bmap
        f.seek(0x1BE - 10)
        f.write(b"changed!!!")
    target = random_file(tmp_path / "stick.img", os.path.getsize(img))
    before = read(target)
    with pytest.raises(BareflowError, match=r"other\.bmap: range 0 .* stale"):
        flash_image(img, str(target), "file", bmap=tmp_path / "other.bmap", ctx=ctx())
    assert read(target) == before


def test_image_changed_after_its_bmap_is_flashed_as_it_is_now(image, tmp_path):
    # The map beside the image is the build's; a hosted run (its /PROFILE.BIN) or an edit with
    # mtools changes the image afterwards.  "Rebuild the image" was no help (SCons saw the
    # image up to date): the image is flashed as it is, from a map computed from it, with a note.
    img = tmp_path / "copy.img"
    shutil.copy(image, img)
    shared.write_bmap(shared.block_map_from_image(str(img)), str(tmp_path / "copy.bmap"))
    assert load_blockmap(img).source == f"block map {tmp_path / 'copy.bmap'}"
    cfg = tmp_path / "cfg"
    cfg.write_bytes(b"prompt = edited\n")
    subprocess.run(["mcopy", "-o", "-i", f"{img}@@1M", str(cfg), "::/BAREFLOW.CFG"], check=True,
                   env=dict(os.environ, MTOOLSRC="/dev/null"))
    bm = load_blockmap(img)
    assert bm.source == f"block map computed from {img}" and "changed after" in bm.note
    target = random_file(tmp_path / "stick.img", os.path.getsize(img))
    report = flash_image(img, str(target), "file", ctx=ctx())
    assert report.verified and any("flashed the image as it is now" in n for n in report.notes)
    assert read_with_mtools(target, "/BAREFLOW.CFG") == b"prompt = edited\n"
    with open(img, "r+b") as f:                   # not an image any more: the map's error stands
        f.write(bytes(512))
    with pytest.raises(BareflowError, match=r"copy\.bmap: range 0 .* stale"):
        load_blockmap(img)


def test_bmap_for_other_size_refused(image, tmp_path):
    img = tmp_path / "copy.img"
    shutil.copy(image, img)
    shared.write_bmap(shared.block_map_from_image(str(img)), str(tmp_path / "copy.bmap"))
    with open(img, "ab") as f:
        f.write(bytes(4096))
    with pytest.raises(BareflowError, match=r"bytes; the bmap is stale"):
        load_blockmap(img, tmp_path / "copy.bmap")
    assert "changed after" in load_blockmap(img).note      # the map beside it: computed instead
    with pytest.raises(BareflowError, match=r"missing\.bmap does not exist"):
        load_blockmap(img, tmp_path / "missing.bmap")


def test_block_map_must_map_sector0():
    with pytest.raises(BareflowError, match="first sector"):
        BlockMap(8192, 4096, "", (Range(1, 1, "0" * 64),), "test map").check()
    with pytest.raises(BareflowError, match="overlaps"):
        BlockMap(8192, 512, "", (Range(0, 8, "0" * 64), (Range(4, 8, "0" * 64))), "test map").check()


def test_progress_only_on_a_terminal(image, tmp_path):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    for stream, quiet, shown in ((Tty(), False, True), (io.StringIO(), False, False), (Tty(), True, False)):
        target = tmp_path / "p.img"
        flash_image(image, str(target), "file", ctx=ctx(out=stream, quiet=quiet))
        text = stream.getvalue()
        assert ("MB/s" in text and "ETA" in text and "\r" in text) == shown, text
        os.unlink(target)


# -- file target refusals -----------------------------------------------------------------------
def test_file_target_refusals(image, tmp_path):
    t = FileTarget()
    with pytest.raises(BareflowError, match=r"\[directory\]"):
        t.check(str(tmp_path), image, ctx())
    with pytest.raises(BareflowError, match=r"\[same-as-image\]"):
        t.check(image, image, ctx())
    with pytest.raises(BareflowError, match=r"\[no-directory\]"):
        t.check(str(tmp_path / "nope" / "x.img"), image, ctx())
    blockdev = next((os.path.join("/dev", n) for n in sorted(os.listdir("/dev"))
                     if stat.S_ISBLK(os.stat(os.path.join("/dev", n)).st_mode)), None)
    if blockdev is None:
        pytest.skip("no block device node to test the block-device refusal with")
    link = tmp_path / "disk-link"
    os.symlink(blockdev, link)                    # a symlink does not hide a block device
    with pytest.raises(BareflowError, match=r"\[block-device\].*FLASH_TARGET=raw"):
        flash_image(image, str(link), "file", ctx=ctx())


def test_existing_file_needs_confirmation(image, tmp_path):
    target = random_file(tmp_path / "old.img", 4096)
    before = read(target)
    with pytest.raises(BareflowError, match=r"\[no-confirmation\]"):
        flash_image(image, str(target), "file", ctx=ctx(assume_yes=False, interactive=False))
    assert read(target) == before


# -- raw target on a fake tree: the whole flow with a regular file standing in for /dev/sdb ---------
def test_raw_target_on_fake_tree(image, tmp_path):
    fake = FakeSys(tmp_path / "root")
    node = fake.add_disk("sdb", "8:16", 64 * MiB, fill=5)
    report = flash_image(image, "/dev/sdb", ctx=ctx(sysroot=fake.root))
    assert report.target == "raw" and report.verified
    for path, data in sample_files().items():
        assert read_with_mtools(node, path) == data


def test_raw_target_wipes_stale_backup_gpt(image, tmp_path):
    fake = FakeSys(tmp_path / "root")
    node = fake.add_disk("sdb", "8:16", 64 * MiB, fill=5)
    with open(node, "r+b") as f:
        f.seek(64 * MiB - 512)
        f.write(b"EFI PART" + bytes(504))
    report = flash_image(image, "/dev/sdb", ctx=ctx(sysroot=fake.root))
    assert read(node, 64 * MiB - 512, 512) == bytes(512)
    assert any("backup GPT" in n for n in report.notes)


# -- a real block device: a loop device over a file (opt-in, needs root) --------------------------
@pytest.mark.skipif(os.environ.get("BAREFLOW_FLASH_LOOP_TEST") != "1",
                    reason="set BAREFLOW_FLASH_LOOP_TEST=1 (root, losetup) to flash a real loop device")
def test_raw_target_on_loop_device(image, tmp_path):
    backing = random_file(tmp_path / "loop.img", 32 * MiB, seed=21)
    r = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"losetup failed: {r.stderr.strip()}")
    loop = r.stdout.strip()
    try:
        with pytest.raises(BareflowError, match=r"\[non-removable\]"):
            flash_image(image, loop, ctx=ctx())
        report = flash_image(image, loop, ctx=ctx(force_non_removable=True))
        assert report.verified
    finally:
        subprocess.run(["losetup", "-d", loop], check=True)
    for path, data in sample_files().items():
        assert read_with_mtools(str(backing), path) == data
