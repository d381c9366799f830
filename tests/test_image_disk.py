"""Disk image assembly and the syslinux bootloader plugin (no boot test: that is the kernel's)."""
import hashlib
import os
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pluggy
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bareflow import hookspecs  # noqa: E402

from bareflow.image import diskimage, mbr

from bareflow.image import fat16
from bareflow.image.bootloader import Bootloader, check_bootloader, select_bootloaders  # noqa: E402
from bareflow.image import syslinux as syslinux_plugin  # noqa: E402
from bareflow.errors import BareflowError  # noqa: E402

EPOCH = 1700000000
OFF = diskimage.PARTITION_OFFSET


def need(tool):
    if not shutil.which(tool):
        pytest.skip(f"{tool} not installed (Debian: syslinux / mtools / dosfstools)")


def need_syslinux():
    ok, why = syslinux_plugin.SyslinuxBootloader().available()
    if not ok:
        pytest.skip(why)


def payload(seed=3, model_size=300_000):
    rnd = random.Random(seed)
    files = {
        "/BAREFLOW.CFG": b"prompt = Once upon a time\n",
        "/KERNEL.BIN": rnd.randbytes(50_000),
        "/POLICY.TBL": rnd.randbytes(512),
        "/LIBC.MAN": b"memcpy\nexpf\n",
        "/MODEL.BIN": rnd.randbytes(model_size),
        "/TOKENIZR.BIN": rnd.randbytes(6000),
        "/PROFILE.BIN": bytes(4096),
    }
    for i, layer in enumerate(["EMBED", "RMSNORM", "QKV", "ROPE", "ATTN", "ATTNOUT", "FFN", "CLASSIFY", "SAMPLER"]):
        for tier in range(4):
            files[f"/MODULES/{layer}.O{tier}"] = rnd.randbytes(1000 + 97 * i + tier)
    return files


def build(tmp_path, files=None, name="bareflow.img", **kw):
    kw.setdefault("volume_id", 0x0BAF1016)
    kw.setdefault("disk_signature", 0xB4EF1000)
    kw.setdefault("epoch", EPOCH)
    return diskimage.build_disk_image(tmp_path / name, payload() if files is None else files, **kw)


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def extract_partition(image, dest):
    with open(image, "rb") as src, open(dest, "wb") as out:
        src.seek(OFF)
        while chunk := src.read(1 << 20):
            out.write(chunk)


def mtype(image, path):
    proc = subprocess.run(["mtype", "-i", f"{image}@@{OFF}", "::" + path], capture_output=True,
                          env=dict(os.environ, MTOOLSRC="/dev/null"))
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def root_entry(image, name11):
    with open(image, "rb") as fh:
        layout = fat16.read_fat16(fh, OFF)
        fh.seek(OFF + layout.root_offset)
        root = fh.read(512 * 32)
    for i in range(0, len(root), 32):
        if root[i:i + 11] == name11:
            return root[i:i + 32]
    raise AssertionError(f"{name11!r} not in the root directory")


# ------------------------------------------------------------------ without a bootloader
def test_mbr_and_partition_entry(tmp_path):
    result = build(tmp_path)
    img = Path(result.path)
    mbr = img.read_bytes()[:512]
    assert mbr[510:512] == b"\x55\xAA"
    assert struct.unpack_from("<I", mbr, 440)[0] == 0xB4EF1000
    status, ptype = mbr[446], mbr[450]
    lba, sectors = struct.unpack_from("<II", mbr, 454)
    assert (status, ptype, lba) == (0x80, 0x0E, 2048)
    assert sectors == result.layout.total_sectors
    assert img.stat().st_size == OFF + sectors * 512 == result.size
    assert mbr[447:450] == bytes([32, 33, 0])           # LBA 2048 = C0 H32 S33 on 255/63
    assert mbr[462:510] == bytes(48)
    assert result.layout.hidden_sectors == 2048
    assert img.read_bytes()[512:OFF] == bytes(OFF - 512)


def test_chs_marker_beyond_1024_cylinders():
    assert mbr._chs(2048) == bytes([32, 33, 0])
    assert mbr._chs(1024 * 255 * 63) == b"\xFE\xFF\xFF"


def test_plain_image_reads_back_and_fscks(tmp_path):
    need("fsck.fat")
    need("mtype")
    files = payload()
    result = build(tmp_path, files)
    part = tmp_path / "part.img"
    extract_partition(result.path, part)
    proc = subprocess.run(["fsck.fat", "-n", str(part)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    for p, data in files.items():
        assert mtype(result.path, p) == data, p


def test_bad_inputs(tmp_path):
    with pytest.raises(BareflowError, match="disk signature"):
        build(tmp_path, disk_signature=1 << 32)
    with pytest.raises(BareflowError, match="component 'model.bin'"):
        build(tmp_path, files={"/model.bin": b""})
    with pytest.raises(BareflowError, match="FAT date range"):
        build(tmp_path, epoch=100)
    assert not list(tmp_path.iterdir())


def test_epoch_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    a = build(tmp_path, name="a.img", epoch=None)
    b = build(tmp_path, name="b.img", epoch=EPOCH)
    assert a.sha256 == b.sha256
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH + 7200))
    c = build(tmp_path, name="c.img", epoch=None)
    assert c.sha256 != a.sha256


class Recorder(Bootloader):
    """A test bootloader whose install step can misbehave on purpose."""
    def __init__(self, name="recorder", action=None, mbr=None, files=None):
        self.name, self.action, self.mbr, self.extra = name, action, mbr, files or {}

    def files(self, variables):
        return dict(self.extra)

    def mbr_code(self):
        return self.mbr

    def install(self, image_path, partition_offset, layout):
        if self.action:
            self.action(image_path, partition_offset, layout)


def poke(offset, data=b"\x01"):
    def action(image_path, partition_offset, layout):
        with open(image_path, "r+b") as fh:
            fh.seek(offset if offset >= 0 else partition_offset + layout.cluster_offset(
                layout.files["/KERNEL.BIN"].first_cluster))
            fh.write(data)
    return action


@pytest.mark.parametrize("action, message", [
    (poke(1000), "wrote outside the partition"),
    (poke(-1), "moved or modified /KERNEL.BIN"),
    (lambda *a: (_ for _ in ()).throw(BareflowError("boom")), "boom"),
])
def test_failed_install_leaves_no_image(tmp_path, action, message):
    good = build(tmp_path)                                   # an older good image stays
    before = sha(good.path)
    with pytest.raises(BareflowError, match=message):
        build(tmp_path, bootloaders=[Recorder(action=action)], epoch=EPOCH + 2)
    assert sha(good.path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bareflow.bmap", "bareflow.img"]


def test_bootloader_conflicts(tmp_path):
    with pytest.raises(BareflowError, match="'b' adds file /KERNEL.BIN, which collides with the image payload"):
        build(tmp_path, bootloaders=[Recorder("b", files={"/KERNEL.BIN": b""})])
    with pytest.raises(BareflowError, match="'b' adds file /X.CFG, which collides with bootloader 'a'"):
        build(tmp_path, bootloaders=[Recorder("a", files={"/X.CFG": b""}), Recorder("b", files={"/X.CFG": b""})])
    with pytest.raises(BareflowError, match="'a' and 'b' both provide MBR code"):
        build(tmp_path, bootloaders=[Recorder("a", mbr=b"\x90"), Recorder("b", mbr=b"\x90")])
    with pytest.raises(BareflowError, match="at most 32 characters"):
        check_bootloader(Recorder("Bad Name"))
    with pytest.raises(BareflowError, match="missing method"):
        check_bootloader(type("X", (), {"name": "x"})())
    with pytest.raises(BareflowError, match="'grub' is not registered.*syslinux"):
        select_bootloaders([syslinux_plugin.SyslinuxBootloader()], ["grub"])
    with pytest.raises(BareflowError, match="BOOTLOADERS is empty: the image could not boot.*syslinux"):
        select_bootloaders([syslinux_plugin.SyslinuxBootloader()], [])


def test_custom_mbr_code(tmp_path):
    result = build(tmp_path, bootloaders=[Recorder(mbr=b"\xFA" * 440)])
    assert Path(result.path).read_bytes()[:440] == b"\xFA" * 440


# ------------------------------------------------------------------ syslinux
def test_syslinux_unavailable_is_a_clear_error(tmp_path):
    loader = syslinux_plugin.SyslinuxBootloader(installer="no-such-syslinux-installer")
    ok, why = loader.available()
    assert not ok and "no-such-syslinux-installer" in why and "syslinux" in why
    with pytest.raises(BareflowError, match="bootloader 'syslinux' is not available"):
        build(tmp_path, bootloaders=[loader])
    assert not list(tmp_path.iterdir())


def test_syslinux_config_text():
    cfg = syslinux_plugin.syslinux_cfg().decode()
    assert cfg.splitlines()[0] == "SERIAL 0 115200"
    for line in ("PROMPT 0", "TIMEOUT 0", "DEFAULT bareflow", "LABEL bareflow", "KERNEL mboot.c32",
                 "APPEND KERNEL.BIN"):
        assert line in [x.strip() for x in cfg.splitlines()]
    assert syslinux_plugin.append_line("KERNEL.BIN", ["/MODEL.BIN", "/TOKENIZR.BIN"]) == \
        "KERNEL.BIN --- /MODEL.BIN --- /TOKENIZR.BIN"
    with pytest.raises(BareflowError, match="multiboot file name"):
        syslinux_plugin.append_line("KERNEL.BIN", ["A B"])


def test_syslinux_registered_through_hook():
    pm = pluggy.PluginManager("bareflow")
    pm.add_hookspecs(hookspecs)
    pm.register(syslinux_plugin)
    loaders = [b for group in pm.hook.bareflow_register_bootloaders() for b in group]
    assert [b.name for b in loaders] == ["syslinux"]
    check_bootloader(loaders[0])


def test_syslinux_image(tmp_path):
    need_syslinux()
    need("fsck.fat")
    need("mtype")
    files = payload()
    loader = syslinux_plugin.SyslinuxBootloader()
    result = build(tmp_path, files, bootloaders=[loader])
    img = Path(result.path)
    data = img.read_bytes()
    assert data[:440] == Path(syslinux_plugin.MBR_BIN).read_bytes()[:440]
    assert data[OFF + 3:OFF + 11] == b"SYSLINUX"             # installer's boot code is in place
    assert data[OFF + 54:OFF + 62] == b"FAT16   "
    part = tmp_path / "part.img"
    extract_partition(img, part)
    proc = subprocess.run(["fsck.fat", "-n", str(part)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    for p, content in files.items():
        assert mtype(img, p) == content, p
    assert mtype(img, "/SYSLINUX.CFG") == syslinux_plugin.syslinux_cfg()
    for module in ("MBOOT.C32", "LIBCOM32.C32"):
        assert mtype(img, "/" + module) == (Path(syslinux_plugin.MODULES_DIR) / module.lower()).read_bytes()
    installed = {p: e.size for p, e in result.layout.files.items() if p.startswith("/LDLINUX.")}
    assert sorted(installed) == ["/LDLINUX.C32", "/LDLINUX.SYS"] and all(installed.values())
    assert loader.free_space_needed() == sum(installed.values())
    profile = result.layout.files["/PROFILE.BIN"]
    assert profile.contiguous and profile.size == 4096
    # The timestamps mtools wrote for the installer's files were reset to the epoch.
    ent = root_entry(img, b"LDLINUX SYS")
    date, time, tenths = fat16.fat_timestamp(EPOCH)
    assert struct.unpack_from("<BHHH", ent, 13) == (tenths, time, date, date)
    assert struct.unpack_from("<HH", ent, 22) == (time, date)


def test_syslinux_build_is_reproducible(tmp_path, monkeypatch):
    need_syslinux()
    files = payload()
    a = build(tmp_path, files, name="a.img", bootloaders=[syslinux_plugin.SyslinuxBootloader()])
    # A different local time zone and a stray SOURCE_DATE_EPOCH must not leak into the image.
    monkeypatch.setenv("TZ", "America/New_York")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000000000")
    b = build(tmp_path, files, name="b.img", bootloaders=[syslinux_plugin.SyslinuxBootloader()])
    assert sha(a.path) == sha(b.path) == a.sha256
    assert Path(a.bmap_path).read_text() == Path(b.bmap_path).read_text()
    c = build(tmp_path, files, name="c.img", bootloaders=[syslinux_plugin.SyslinuxBootloader()],
              epoch=EPOCH + 3600)
    diff = [i for i, (x, y) in enumerate(zip(Path(a.path).read_bytes(), Path(c.path).read_bytes())) if x != y]
    assert diff and all(i >= OFF + a.layout.root_offset for i in diff)


def test_syslinux_with_larger_clusters(tmp_path):
    need_syslinux()
    need("mtype")
    files = payload(model_size=40 << 20)
    result = build(tmp_path, files, bootloaders=[syslinux_plugin.SyslinuxBootloader(modules=["/MODEL.BIN"])])
    assert result.layout.sectors_per_cluster == 2
    assert mtype(result.path, "/MODEL.BIN") == files["/MODEL.BIN"]
    assert b"APPEND KERNEL.BIN --- /MODEL.BIN" in mtype(result.path, "/SYSLINUX.CFG")


def test_existing_ldlinux_in_payload_is_refused(tmp_path):
    need_syslinux()
    files = payload()
    files["/LDLINUX.SYS"] = b"not really"
    with pytest.raises(BareflowError, match="'syslinux' installs /LDLINUX.SYS, which collides with the image payload"):
        build(tmp_path, files, bootloaders=[syslinux_plugin.SyslinuxBootloader()])
    assert not list(tmp_path.iterdir())


def _mcopy_over(image, local, path):
    return subprocess.run(["mcopy", "-o", "-i", f"{image}@@{OFF}", str(local), "::" + path],
                          capture_output=True, text=True, env=dict(os.environ, MTOOLSRC="/dev/null"))


def test_a_full_size_boot_config_fits_on_a_full_image(tmp_path):
    # A payload well above the FAT16 minimum leaves no free clusters but what the build keeps:
    # an edited /BAREFLOW.CFG at the kernel's 8192-byte maximum must still fit.  mtools frees
    # the old file first, editors often write the new one beside it: room for a whole copy.
    need("mcopy")
    need("fsck.fat")
    files = payload(model_size=3_000_000)
    cfg = b"prompt = edited on the stick\n" + b"# " + b"x" * 8000 + b"\n"
    cfg += b"#" * (8192 - len(cfg) - 1) + b"\n"
    assert len(cfg) == 8192
    (tmp_path / "cfg").write_bytes(cfg)
    tight = build(tmp_path, files, name="tight.img", editable={})
    assert tight.layout.cluster_count > fat16.MIN_CLUSTERS          # not padded: really full
    proc = _mcopy_over(tight.path, tmp_path / "cfg", "/BAREFLOW.CFG")
    assert proc.returncode != 0 and "full" in proc.stderr.lower()   # the trap, without the room
    result = build(tmp_path, files)
    free = result.layout.cluster_count - len(result.layout.used_clusters())
    assert free * result.layout.cluster_size >= 8192
    proc = _mcopy_over(result.path, tmp_path / "cfg", "/BAREFLOW.CFG")
    assert proc.returncode == 0, proc.stderr
    assert mtype(result.path, "/BAREFLOW.CFG") == cfg
    part = tmp_path / "part.img"
    extract_partition(result.path, part)
    proc = subprocess.run(["fsck.fat", "-n", str(part)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
