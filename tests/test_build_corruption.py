"""Corrupting the image's files in place (a bad stick, a careless edit) makes the kernel print a
clear reason on the serial console and exit with a failure code under QEMU — never hang."""
import pytest

from bareflow.image import fat16
from buildutil import PARTITION_OFFSET, QEMU_SUCCESS, qemu

QEMU_PANIC = (1 << 1) | 1          # BF_EXIT_PANIC through isa-debug-exit


def _patch(image, path, offset, data):
    """Overwrite bytes of one file in place, through the FAT16 layout (no size change)."""
    with open(image, "r+b") as fh:
        layout = fat16.read_fat16(fh, PARTITION_OFFSET)
        extent = layout.files[path]
        assert offset + len(data) <= extent.size
        cluster = extent.clusters[offset // layout.cluster_size]
        fh.seek(PARTITION_OFFSET + layout.cluster_offset(cluster) + offset % layout.cluster_size)
        fh.write(data)


def _panic(default_build, tmp_path, path, offset, data):
    image = tmp_path / "bad.img"
    image.write_bytes(default_build.image.read_bytes())
    _patch(image, path, offset, data)
    status, out = qemu(image, timeout=180)
    assert status == QEMU_PANIC, out[-2000:]
    assert "BAREFLOW-RESULT" not in out
    panic = [line for line in out.splitlines() if line.startswith("BAREFLOW-PANIC")]
    assert panic, out[-2000:]
    return panic[0]


def test_corrupt_module(default_build, tmp_path):
    line = _panic(default_build, tmp_path, "/MODULES/RMSNORM.O0", 100, b"\xde\xad\xbe\xef")
    assert "RMSNORM.O0" in line.upper() and "crc" in line.lower()


def test_corrupt_policy_table(default_build, tmp_path):
    line = _panic(default_build, tmp_path, "/POLICY.TBL", 16 + 20, b"\x03\x01")   # embed ladder O3, O1
    assert "POLICY.TBL" in line


def test_corrupt_config(default_build, tmp_path):
    line = _panic(default_build, tmp_path, "/BAREFLOW.CFG", 0, b"bogus = 1\n#")
    assert "BAREFLOW.CFG" in line and "bogus" in line


def test_corrupt_weights_header(default_build, tmp_path):
    line = _panic(default_build, tmp_path, "/MODEL.BIN", 0, (96).to_bytes(4, "little"))   # dim 64 -> 96
    assert "MODEL.BIN" in line


def test_corrupt_tokenizer(default_build, tmp_path):
    line = _panic(default_build, tmp_path, "/TOKENIZR.BIN", 200, b"\xde\xad\xbe\xef")
    assert "/TOKENIZR.BIN" in line and "checksum" in line


def test_the_uncorrupted_image_still_succeeds(default_build, tmp_path):
    """Control: the same procedure with a harmless patch (same bytes) boots fine."""
    image = tmp_path / "same.img"
    image.write_bytes(default_build.image.read_bytes())
    with open(image, "rb") as fh:
        layout = fat16.read_fat16(fh, PARTITION_OFFSET)
        first = fat16.read_file_bytes(fh, PARTITION_OFFSET, layout, "/BAREFLOW.CFG")[:4]
    _patch(image, "/BAREFLOW.CFG", 0, first)
    status, out = qemu(image)
    assert status == QEMU_SUCCESS, out[-2000:]
