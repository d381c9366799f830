"""FAT16 writer/reader: checked against dosfstools (fsck.fat) and mtools as oracles."""
import io
import os
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bareflow.image import fat16  # noqa: E402
from bareflow.errors import BareflowError  # noqa: E402

EPOCH = 1700000000          # 2023-11-14 22:13:20 UTC


def need(tool):
    if not shutil.which(tool):
        pytest.skip(f"{tool} not installed (Debian: dosfstools / mtools)")


def mtools_env():
    return dict(os.environ, MTOOLSRC="/dev/null")


def mtype(image, offset, path):
    proc = subprocess.run(["mtype", "-i", f"{image}@@{offset}", "::" + path],
                          capture_output=True, env=mtools_env())
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def fsck(image):
    return subprocess.run(["fsck.fat", "-n", str(image)], capture_output=True, text=True)


def payload(seed=1):
    rnd = random.Random(seed)
    return {
        "/KERNEL.BIN": rnd.randbytes(70001),
        "/BAREFLOW.CFG": b"prompt = Once upon a time\nsteps = 16\n",
        "/PROFILE.BIN": bytes(4096),
        "/POLICY.TBL": rnd.randbytes(300),
        "/MODULES/EMBED.O0": rnd.randbytes(5000),
        "/MODULES/EMBED.O2": rnd.randbytes(4500),
        "/MODULES/RMSNORM.O3": b"",
        "/A/B/C/DEEP.TXT": b"deep\n",
    }


def write_partition(tmp_path, files, name="part.img", **kw):
    kw.setdefault("volume_id", 0xB4EF1001)
    kw.setdefault("epoch", EPOCH)
    layout = fat16.plan_fat16(files, **kw)
    path = tmp_path / name
    with open(path, "wb") as fh:
        fat16.write_fat16(fh, 0, files, layout)
    return path, layout


@pytest.mark.parametrize("files", [
    {},
    payload(),
    {"/MODEL.BIN": random.Random(7).randbytes(3 << 20), "/PROFILE.BIN": bytes(4096)},
    {f"/MODULES/F{i}.O{i % 4}": bytes([i % 256]) * (i * 37) for i in range(300)},
])
def test_fsck_and_mtools_read_back(tmp_path, files):
    need("fsck.fat")
    need("mtype")
    path, layout = write_partition(tmp_path, files, contiguous=[p for p in files if p == "/PROFILE.BIN"])
    proc = fsck(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert FAT16_CLUSTERS_OK(layout)
    for p, data in files.items():
        assert mtype(path, 0, p) == data, p
    with open(path, "rb") as fh:
        parsed = fat16.read_fat16(fh, 0)
        assert parsed == layout
        for p, data in files.items():
            assert fat16.read_file_bytes(fh, 0, parsed, p) == data


def FAT16_CLUSTERS_OK(layout):
    return fat16.MIN_CLUSTERS <= layout.cluster_count <= fat16.MAX_CLUSTERS


def test_mdir_sees_label_and_serial(tmp_path):
    need("mdir")
    path, _ = write_partition(tmp_path, payload(), label="MY DISK", volume_id=0x12AB34CD)
    out = subprocess.run(["mdir", "-i", str(path), "::/"], capture_output=True, text=True,
                         env=mtools_env()).stdout
    assert "MY DISK" in out and "12AB-34CD" in out


def test_boot_sector_fields(tmp_path):
    _, layout = write_partition(tmp_path, payload(), hidden_sectors=2048)
    data = (tmp_path / "part.img").read_bytes()
    assert data[0] == 0xEB and data[510:512] == b"\x55\xAA"
    assert data[3:11] == b"BAREFLOW"
    bps, spc, reserved, nfats, roots = struct.unpack_from("<HBHBH", data, 11)
    assert (bps, spc, nfats, roots) == (512, layout.sectors_per_cluster, 2, 512)
    assert data[21] == 0xF8
    assert struct.unpack_from("<I", data, 28)[0] == 2048
    assert data[38] == 0x29 and data[54:62] == b"FAT16   "
    assert struct.unpack_from("<HH", data, reserved * 512) == (0xFFF8, 0xFFFF)
    # The data area starts on a cluster boundary.
    assert layout.data_offset % layout.cluster_size == 0


def test_make_fat16_equals_write_fat16(tmp_path):
    files = payload()
    path, layout = write_partition(tmp_path, files)
    data, layout2 = fat16.make_fat16(files, volume_id=0xB4EF1001, epoch=EPOCH)
    assert layout == layout2 and path.read_bytes() == data


def test_write_at_offset(tmp_path):
    need("mtype")
    files = payload()
    layout = fat16.plan_fat16(files, volume_id=5, epoch=EPOCH)
    path = tmp_path / "disk.img"
    with open(path, "wb") as fh:
        fh.write(b"\xAA" * 4096)
        fat16.write_fat16(fh, 4096, files, layout)
    assert path.stat().st_size == 4096 + layout.size
    assert mtype(path, 4096, "/A/B/C/DEEP.TXT") == b"deep\n"


def test_deterministic():
    a = fat16.make_fat16(payload(), volume_id=1, epoch=EPOCH)[0]
    b = fat16.make_fat16(dict(reversed(list(payload().items()))), volume_id=1, epoch=EPOCH)[0]
    assert a == b


def test_epoch_changes_timestamps_only_in_directory_entries():
    a = fat16.make_fat16(payload(), volume_id=1, epoch=EPOCH)[0]
    b = fat16.make_fat16(payload(), volume_id=1, epoch=EPOCH + 86400 * 400 + 3)[0]
    assert a != b and len(a) == len(b)
    _, layout = fat16.make_fat16(payload(), volume_id=1, epoch=EPOCH)
    diffs = [i for i in range(len(a)) if a[i] != b[i]]
    dir_areas = [(layout.root_offset, layout.data_offset)] + [
        (layout.cluster_offset(c), layout.cluster_offset(c) + layout.cluster_size)
        for d in layout.directories.values() for c in d.clusters]
    assert all(any(lo <= i < hi and (i - lo) % 32 in range(13, 26) for lo, hi in dir_areas) for i in diffs)


def test_timestamp_encoding():
    date, time, tenths = fat16.fat_timestamp(EPOCH)          # 2023-11-14 22:13:20
    assert date == ((2023 - 1980) << 9) | (11 << 5) | 14
    assert time == (22 << 11) | (13 << 5) | 10 and tenths == 0
    assert fat16.fat_timestamp(EPOCH + 1)[2] == 100
    assert fat16.fat_timestamp(315532800) == ((0 << 9) | (1 << 5) | 1, 0, 0)


@pytest.mark.parametrize("value", ["315532799", "4354819200", "-5", "12abc", "1.5"])
def test_bad_source_date_epoch(value):
    with pytest.raises(BareflowError, match="SOURCE_DATE_EPOCH|FAT date range"):
        fat16.epoch_from_environ({"SOURCE_DATE_EPOCH": value})


def test_source_date_epoch_read():
    assert fat16.epoch_from_environ({"SOURCE_DATE_EPOCH": "1700000000"}) == EPOCH
    assert fat16.epoch_from_environ({}) == fat16.DEFAULT_EPOCH


@pytest.mark.parametrize("path, fragment", [
    ("/kernel.bin", "upper-case"),
    ("/TOOLONGNAME.BIN", "1-8 characters"),
    ("/KERNEL.BINX", "1-3 characters"),
    ("/A.B.C", "more than one"),
    ("/SP ACE.BIN", "not allowed"),
    ("/STAR*.BIN", "not allowed"),
    ("KERNEL.BIN", "absolute"),
    ("/MODULES/", "empty component"),
    ("//X.BIN", "empty component"),
    ("/MODULES/../X", "'..'"),
    ("/CON.TXT", "device"),
    ("/", "absolute"),
])
def test_bad_names_rejected(path, fragment):
    with pytest.raises(BareflowError) as err:
        fat16.plan_fat16({path: b"x"}, volume_id=1)
    assert fragment in str(err.value) and repr(path) in str(err.value)


def test_file_and_directory_clash():
    with pytest.raises(BareflowError, match="/MODULES is a file"):
        fat16.plan_fat16({"/MODULES": b"x", "/MODULES/A.O0": b"y"}, volume_id=1)


def test_non_bytes_content():
    with pytest.raises(BareflowError, match="/KERNEL.BIN: content must be bytes"):
        fat16.plan_fat16({"/KERNEL.BIN": "text"}, volume_id=1)


@pytest.mark.parametrize("label", ["", "lower", "TWELVECHARSX", " LEAD", "BAD*"])
def test_bad_label(label):
    with pytest.raises(BareflowError, match="volume label"):
        fat16.plan_fat16({}, volume_id=1, label=label)


def test_payload_too_big_for_fat16():
    with pytest.raises(BareflowError, match=r"too big by (\d+) bytes") as err:
        fat16.plan_fat16({"/MODEL.BIN": b"x"}, volume_id=1, extra_free_bytes=3 << 30)
    over = int(err.value.args[0].split("too big by ")[1].split()[0])
    limit = fat16.MAX_CLUSTERS * 32768
    assert over == (3 << 30) - limit + 32768          # the 1-byte file takes one more cluster


def test_payload_too_big_for_forced_cluster_size():
    model = bytes(40 << 20)
    with pytest.raises(BareflowError, match="too big by"):
        fat16.plan_fat16({"/MODEL.BIN": model}, volume_id=1, sectors_per_cluster=1)
    layout = fat16.plan_fat16({"/MODEL.BIN": model}, volume_id=1)
    assert layout.sectors_per_cluster == 2 and FAT16_CLUSTERS_OK(layout)


def test_too_many_root_entries():
    files = {f"/F{i}.BIN": b"" for i in range(510)}
    fat16.plan_fat16(files, volume_id=1, extra_root_entries=1)     # 510 + label + 1 = 512
    with pytest.raises(BareflowError, match="513 entries.*1 too many"):
        fat16.plan_fat16(files, volume_id=1, extra_root_entries=2)


def test_directory_too_big():
    files = {f"/D/F{i:05d}.X": b"" for i in range(65535)}
    with pytest.raises(BareflowError, match="directory /D has 65535 entries.*1 too many"):
        fat16.plan_fat16(files, volume_id=1)


def test_small_payload_padded_to_fat16_minimum():
    layout = fat16.plan_fat16({"/A.TXT": b"a"}, volume_id=1)
    assert layout.cluster_count == fat16.MIN_CLUSTERS and layout.sectors_per_cluster == 1


def test_geometry_grows_with_payload():
    sizes = []
    for mib in (1, 40, 200):
        layout = fat16.plan_fat16({"/MODEL.BIN": bytes(mib << 20)}, volume_id=1)
        assert FAT16_CLUSTERS_OK(layout)
        assert layout.cluster_count * layout.cluster_size >= mib << 20
        sizes.append(layout.sectors_per_cluster)
    assert sizes == [1, 2, 8]


def test_contiguous_file_placed_first_and_contiguous():
    files = payload()
    layout = fat16.plan_fat16(files, volume_id=1, contiguous=["/PROFILE.BIN"], sectors_per_cluster=1)
    ext = layout.files["/PROFILE.BIN"]
    assert ext.first_cluster == 2 and ext.contiguous and len(ext.clusters) == 8
    assert all(e.contiguous for e in layout.files.values())
    with pytest.raises(BareflowError, match="contiguous file /NOPE.BIN"):
        fat16.plan_fat16(files, volume_id=1, contiguous=["/NOPE.BIN"])


def test_extra_free_space_reserved():
    layout = fat16.plan_fat16({"/A.TXT": b"a"}, volume_id=1, extra_free_bytes=5 << 20, extra_free_files=2)
    free = layout.cluster_count - len(layout.used_clusters())
    assert free * layout.cluster_size >= (5 << 20) + 2 * layout.cluster_size


def test_parser_rejects_corruption(tmp_path):
    need("fsck.fat")
    files = payload()
    path, layout = write_partition(tmp_path, files)
    data = bytearray(path.read_bytes())
    ext = layout.files["/KERNEL.BIN"]
    # Make the kernel's chain loop back to its first cluster, in both FATs.
    for i in range(2):
        struct.pack_into("<H", data, layout.fat_offset(i) + 2 * ext.clusters[5], ext.clusters[0])
    bad = tmp_path / "bad.img"
    bad.write_bytes(bytes(data))
    with open(bad, "rb") as fh, pytest.raises(BareflowError, match="KERNEL.BIN"):
        fat16.read_fat16(fh, 0)
    assert fsck(bad).returncode != 0


def test_parser_rejects_non_fat16(tmp_path):
    need("mkfs.fat")
    img = tmp_path / "fat12.img"
    img.write_bytes(bytes(1 << 20))
    subprocess.run(["mkfs.fat", "-F", "12", str(img)], check=True, capture_output=True)
    with open(img, "rb") as fh, pytest.raises(BareflowError, match="FAT12"):
        fat16.read_fat16(fh, 0)


def test_parser_reads_mkfs_fat_image(tmp_path):
    need("mkfs.fat")
    need("mcopy")
    img = tmp_path / "mk.img"
    img.write_bytes(bytes(16 << 20))
    subprocess.run(["mkfs.fat", "-F", "16", "-n", "THIRD", str(img)], check=True, capture_output=True)
    src = tmp_path / "hello.txt"
    src.write_bytes(b"x" * 10000)
    subprocess.run(["mmd", "-i", str(img), "::/SUB"], check=True, env=mtools_env())
    subprocess.run(["mcopy", "-i", str(img), str(src), "::/SUB/HELLO.TXT"], check=True, env=mtools_env())
    with open(img, "rb") as fh:
        layout = fat16.read_fat16(fh, 0)
        assert layout.label == "THIRD"
        assert fat16.read_file_bytes(fh, 0, layout, "/SUB/HELLO.TXT") == b"x" * 10000


def test_normalize_timestamps():
    files = payload()
    data, layout = fat16.make_fat16(files, volume_id=1, epoch=EPOCH)
    other, _ = fat16.make_fat16(files, volume_id=1, epoch=EPOCH + 1000)
    fh = io.BytesIO(other)
    n = fat16.normalize_timestamps(fh, 0, fat16.read_fat16(fh, 0), EPOCH)
    assert fh.getvalue() == data
    # root: label + 6 items; /A, /A/B, /A/B/C: '.', '..' and one child each; /MODULES: 2 + 3
    assert n == 7 + 3 * 3 + 5
