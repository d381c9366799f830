"""Issue 8, kind 5: FAT16 geometry at the cluster-count edges.

syslinux's installer counts 31 clusters too many at 512-byte clusters (it takes the root
directory as (entries + 15) / 512 sectors), so a payload of 65,494 clusters made a volume it
took for FAT32.  The writer now keeps the true count under fat16.max_clusters(spc) and moves to
the next cluster size instead.  The sweep checks every cluster size's boundary on the plan (each
reader's count within FAT16), then builds real images at the 512-byte boundary and around the
issue's size and asks syslinux, fsck.fat, mtools and the kernel (bareflow-hosted) about them.
"""
import shutil
import subprocess

import pytest

from bareflow.image import fat16
from bareflow.errors import BareflowError
from test_runtime_hosted import hosted_program, run_image

FSCK = shutil.which("fsck.fat") or "/usr/sbin/fsck.fat"
SPCS = [1, 2, 4, 8, 16, 32, 64]
FREE = 300_000            # room for what syslinux installs (LDLINUX.SYS, LDLINUX.C32)


class Sized(bytes):
    """A stand-in for a file's bytes of a given length (the planner only asks len())."""

    def __new__(cls, n):
        obj = super().__new__(cls)
        obj.n = n
        return obj

    def __len__(self):
        return self.n


def payload(clusters, spc):
    """One file that needs exactly `clusters` clusters of `spc` sectors (nothing else on the volume)."""
    return {"/BIG.BIN": Sized(clusters * spc * 512)}


def readers_agree(layout):
    n, spc = layout.cluster_count, layout.sectors_per_cluster
    counts = {"fatgen103 (fsck.fat, mtools, Windows, our kernel)": n,
              "syslinux": fat16.syslinux_cluster_count(n, spc)}
    return all(fat16.FAT16_MIN_CLUSTERS <= c <= fat16.FAT16_MAX_CLUSTERS for c in counts.values()), counts


@pytest.mark.parametrize("spc", SPCS)
def test_every_cluster_size_boundary_keeps_all_readers_on_fat16(spc):
    limit = fat16.max_clusters(spc)
    for clusters in (limit - 1, limit, limit + 1, fat16.MIN_CLUSTERS - 1, 1):
        try:
            layout = fat16.plan_fat16(payload(clusters, spc), volume_id=1)
        except BareflowError as e:
            assert spc == 64 and clusters == limit + 1, e
            assert f"payload does not fit FAT16: {clusters * spc * 512} bytes" in str(e)
            continue
        ok, counts = readers_agree(layout)
        assert ok, (clusters, spc, layout.sectors_per_cluster, counts)
        if clusters in (limit - 1, limit):
            assert layout.sectors_per_cluster <= spc
        if clusters == limit + 1 and spc < 64:
            assert layout.sectors_per_cluster > spc


def test_sweep_of_payload_sizes_never_leaves_fat16():
    """Payloads from tiny to the largest the writer takes, in steps that cross every boundary."""
    top = fat16.max_clusters(64) * 64 * 512
    sizes = sorted({int(top * k / 97) for k in range(1, 98)} |
                   {fat16.max_clusters(s) * s * 512 + d for s in SPCS for d in (-512, 0, 1, 512)})
    for size in sizes:
        try:
            layout = fat16.plan_fat16({"/BIG.BIN": Sized(size)}, volume_id=1)
        except BareflowError as e:
            assert size > top and "payload does not fit FAT16" in str(e) and str(size) in str(e)
            continue
        ok, counts = readers_agree(layout)
        assert ok, (size, layout.sectors_per_cluster, counts)


def _write(path, clusters):
    files = {"/BIG.BIN": bytes(clusters * 512)}
    layout = fat16.plan_fat16(files, volume_id=1, extra_free_bytes=FREE, extra_free_files=2,
                              extra_root_entries=2)
    with open(path, "w+b") as fh:
        fh.truncate(layout.size)
        fat16.write_fat16(fh, 0, files, layout)
    return layout



@pytest.mark.parametrize("case", ["largest-512-byte-clusters", "issue-65494-clusters"])
def test_real_images_at_the_512_byte_boundary(tmp_path, case):
    """The largest volume the writer makes with 512-byte clusters, and the issue's payload
    (65,494 clusters of 512 bytes in all, the bootloader's room included): syslinux installs
    (no "missing FAT32 signature"), mtools writes into it, fsck.fat finds FAT16 intact and the
    kernel mounts it."""
    if not shutil.which("syslinux") or not shutil.which("mcopy"):
        pytest.skip("needs syslinux and mtools (Debian: syslinux, mtools)")
    free = -(-FREE // 512) + 2          # the clusters the bootloader room and two entries take
    n = fat16.max_clusters(1) - free if case.startswith("largest") else 65494 - free
    image = tmp_path / "part.img"
    layout = _write(image, n)
    assert layout.sectors_per_cluster == (1 if case.startswith("largest") else 2)
    proc = subprocess.run(["syslinux", "--install", str(image)], capture_output=True, text=True)
    assert proc.returncode == 0 and "FAT32" not in proc.stderr, (layout.cluster_count, proc.stderr)
    # mtools writes a file into the free space; had it taken another FAT type, fsck would see damage.
    (tmp_path / "x.txt").write_bytes(b"x" * 3000)
    subprocess.run(["mcopy", "-i", str(image), str(tmp_path / "x.txt"), "::X.TXT"], check=True, capture_output=True)
    fsck = subprocess.run([FSCK, "-n", "-v", str(image)], capture_output=True, text=True)
    assert fsck.returncode == 0 and "16 bit entries" in fsck.stdout, fsck.stdout[-2000:]
    run = run_image(image)       # the kernel mounts it (then stops: the volume has no BAREFLOW.CFG)
    assert "disk not used" not in run.out and "file /BAREFLOW.CFG: not found" in run.out, run.out[-1000:]
