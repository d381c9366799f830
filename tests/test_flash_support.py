"""Fixtures shared by the tests/test_flash_*.py files (no tests here).

make_image(): a realistic disk image built by independent tools (mkfs.fat + mtools), not by
the project's own FAT writer, so the flash code is checked against an outside oracle.
FakeSys: a fake sysfs/procfs/dev tree laid out like a real one (devices under
sys/devices, symlinks from sys/class/block, sys/block and sys/dev/block).
"""
import os
import random
import shutil
import struct
import subprocess

import pytest

PART_LBA = 2048
TOOLS = ("mkfs.fat", "mcopy", "mmd", "fsck.fat")


def need_tools():
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs dosfstools/mtools: {', '.join(missing)} not on PATH")


def sample_files(seed=1):
    rnd = random.Random(seed)
    files = {
        "/KERNEL.BIN": rnd.randbytes(70_001),
        "/BAREFLOW.CFG": b"prompt = Once upon a time\nsteps = 16\n",
        "/MODEL.BIN": rnd.randbytes(150_000),
        "/SYSLINUX.CFG": (b"SERIAL 0 115200\nPROMPT 0\nTIMEOUT 0\nDEFAULT bareflow\nLABEL bareflow\n"
                          b"  KERNEL mboot.c32\n  APPEND KERNEL.BIN quiet=1 --- EXTRA.BIN\n"),
        "/LDLINUX.SYS": rnd.randbytes(3000),
        "/LDLINUX.C32": b"image-ldlinux" + rnd.randbytes(500),
        "/MBOOT.C32": b"image-mboot" + rnd.randbytes(500),
        "/LIBCOM32.C32": b"image-libcom32" + rnd.randbytes(500),
    }
    for layer in ("EMBED", "RMSNORM", "FFN"):
        for tier in (0, 2):
            files[f"/MODULES/{layer}.O{tier}"] = rnd.randbytes(rnd.randrange(1000, 9000))
    return files


def make_image(path, files=None, part_mib=16):
    """MBR (one FAT16 LBA partition at 1 MiB) + a mkfs.fat volume holding `files`."""
    need_tools()
    files = sample_files() if files is None else files
    path = str(path)
    part = path + ".part"
    src = path + ".src"
    with open(part, "wb") as f:
        f.truncate(part_mib << 20)
    subprocess.run(["mkfs.fat", "-F", "16", "-s", "1", "-n", "BAREFLOW", "-i", "12345678",
                    "-h", str(PART_LBA), "--invariant", part], check=True, capture_output=True)
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    for d in sorted({p.rsplit("/", 1)[0] for p in files if p.count("/") > 1}):
        subprocess.run(["mmd", "-i", part, "::" + d], check=True, capture_output=True, env=env)
    for p, data in files.items():
        with open(src, "wb") as f:
            f.write(data)
        subprocess.run(["mcopy", "-i", part, src, "::" + p], check=True, capture_output=True, env=env)
    os.unlink(src)
    mbr = bytearray(512)
    mbr[0:5] = b"\xfa\xeb\xfe\x90\x90"          # some "boot code", so sector 0 is not mostly zero
    sectors = (part_mib << 20) // 512
    mbr[446:462] = bytes([0x80, 0, 0, 0, 0x0E, 0, 0, 0]) + struct.pack("<II", PART_LBA, sectors)
    mbr[510:512] = b"\x55\xaa"
    with open(path, "wb") as out, open(part, "rb") as f:
        out.write(bytes(mbr) + bytes((PART_LBA - 1) * 512))
        shutil.copyfileobj(f, out)
    os.unlink(part)
    return path


def partition_offset(path):
    with open(path, "rb") as f:
        mbr = f.read(512)
    return struct.unpack_from("<I", mbr, 446 + 8)[0] * 512


def read_with_mtools(path, fat_path):
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    r = subprocess.run(["mcopy", "-n", "-i", f"{path}@@{partition_offset(path)}", "::" + fat_path, "-"],
                       capture_output=True, env=env)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout


def fsck_partition(path, scratch):
    """Run fsck.fat -n on the partition the MBR of `path` points at; returns (rc, output)."""
    off = partition_offset(path)
    with open(path, "rb") as f:
        mbr = f.read(512)
        size = struct.unpack_from("<I", mbr, 446 + 12)[0] * 512
        f.seek(off)
        data = f.read(size)
    with open(scratch, "wb") as out:
        out.write(data)
    r = subprocess.run(["fsck.fat", "-n", str(scratch)], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def random_file(path, size, seed=7):
    rnd = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(rnd.randbytes(n))
            left -= n
    return path


class FakeSys:
    """A fake /sys, /proc and /dev below `root`, mirroring the real layout."""

    USB = "sys/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/host6/target6:0:0/6:0:0:0/block"

    def __init__(self, root):
        self.root = str(root)
        self.mounts = []
        for d in ("sys/class/block", "sys/block", "sys/dev/block", "dev", "proc/self"):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        self.write_mounts()

    def _put(self, rel, text):
        p = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text + "\n")

    def _link(self, rel, target_rel):
        p = os.path.join(self.root, rel)
        os.symlink(os.path.relpath(os.path.join(self.root, target_rel), os.path.dirname(p)), p)

    def _node(self, name, size, fill=None):
        p = os.path.join(self.root, "dev", name)
        if fill is not None:
            random_file(p, size, seed=fill)
        else:
            with open(p, "wb") as f:
                f.truncate(size)
        return p

    def add_disk(self, name, devnum, size, removable=True, model="Ultra", vendor="SanDisk",
                 partitions=(), ro=False, parent_dir=USB, fill=None):
        base = f"{parent_dir}/{name}"
        self._put(f"{base}/dev", devnum)
        self._put(f"{base}/size", str(size // 512))
        self._put(f"{base}/removable", "1" if removable else "0")
        self._put(f"{base}/ro", "1" if ro else "0")
        self._put(f"{base}/device/model", model)
        self._put(f"{base}/device/vendor", vendor)
        os.makedirs(os.path.join(self.root, base, "holders"), exist_ok=True)
        os.makedirs(os.path.join(self.root, base, "slaves"), exist_ok=True)
        self._link(f"sys/class/block/{name}", base)
        self._link(f"sys/block/{name}", base)
        self._link(f"sys/dev/block/{devnum}", base)
        self._node(name, size, fill)
        for i, (pname, pdev, psize) in enumerate(partitions, 1):
            pbase = f"{base}/{pname}"
            self._put(f"{pbase}/dev", pdev)
            self._put(f"{pbase}/size", str(psize // 512))
            self._put(f"{pbase}/partition", str(i))
            self._put(f"{pbase}/ro", "0")
            os.makedirs(os.path.join(self.root, pbase, "holders"), exist_ok=True)
            self._link(f"sys/class/block/{pname}", pbase)
            self._link(f"sys/dev/block/{pdev}", pbase)
            self._node(pname, psize)
        return os.path.join(self.root, "dev", name)

    def add_dm(self, name, devnum, slaves):
        base = f"sys/devices/virtual/block/{name}"
        self._put(f"{base}/dev", devnum)
        self._put(f"{base}/size", "2048")
        self._put(f"{base}/removable", "0")
        for s in slaves:
            os.makedirs(os.path.join(self.root, base, "slaves"), exist_ok=True)
            self._link(f"{base}/slaves/{s}", os.path.relpath(
                os.path.realpath(os.path.join(self.root, "sys/class/block", s)), self.root))
            holder = os.path.join(os.path.realpath(os.path.join(self.root, "sys/class/block", s)), "holders", name)
            os.symlink(os.path.join(self.root, base), holder)
        self._link(f"sys/class/block/{name}", base)
        self._link(f"sys/dev/block/{devnum}", base)
        self._node(name, 1 << 20)

    def mount(self, source, mountpoint, fstype="vfat"):
        self.mounts.append((source, mountpoint, fstype))
        self.write_mounts()

    def write_mounts(self):
        lines = ["proc /proc proc rw 0 0", "tmpfs /run tmpfs rw 0 0"]
        for source, mp, fstype in self.mounts:
            mp_esc = mp.replace("\\", "\\134").replace(" ", "\\040")
            lines.append(f"{source} {mp_esc} {fstype} rw 0 0")
        self._put("proc/self/mounts", "\n".join(lines))

    def write_mountinfo(self, entries):
        """entries: (devnum, mountpoint, source) -> a /proc/self/mountinfo (preferred when present)."""
        lines = [f"{20 + i} 1 {devnum} / {mp} rw,relatime shared:1 - ext4 {source} rw"
                 for i, (devnum, mp, source) in enumerate(entries)]
        self._put("proc/self/mountinfo", "\n".join(lines))
