"""Test disk images made by outside tools: mkfs.fat (dosfstools) formats a FAT16 volume and
mtools (mmd, mcopy) fills it, so the kernel's FAT16 reader is exercised on volumes BareFlow's own
writer (bareflow/image/fat16.py) did not make.  Used by the hosted runtime tests and the fuzz
campaign's seeds.
"""
import os
import shutil
import struct
import subprocess
from pathlib import Path


def _tool(name):
    return shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)


def write_image(path, files, *, part_lba, part_kib, cluster_sectors=1):
    """Write `path`: an MBR disk with one FAT16 partition (type 0x06, active) at sector `part_lba`,
    or, with part_lba=0, a superfloppy (the volume from sector 0).

    files: {"/DIR/NAME.EXT": bytes} (8.3 paths; directories are made as needed).  part_kib: the
    volume's size in KiB; cluster_sectors: sectors per cluster.  The volume id and timestamps are
    fixed (--invariant), so the same files give the same bytes.  Raises subprocess.CalledProcessError
    when a tool refuses (e.g. a volume too small for the files).  Returns `path` as a Path."""
    path = Path(path)
    part = path.with_suffix(".part")
    part.unlink(missing_ok=True)
    subprocess.run([_tool("mkfs.fat") or "mkfs.fat", "-F", "16", "-s", str(cluster_sectors), "-C", "--invariant",
                    "-i", "0badf00d", str(part), str(part_kib)], check=True, capture_output=True)
    for d in sorted({os.path.dirname(p) for p in files if os.path.dirname(p) != "/"}):
        subprocess.run(["mmd", "-i", str(part), "::" + d], check=True, capture_output=True)
    staging = path.with_suffix(".staging")
    for name, data in sorted(files.items()):
        staging.write_bytes(data)
        subprocess.run(["mcopy", "-i", str(part), str(staging), "::" + name], check=True, capture_output=True)
    staging.unlink(missing_ok=True)
    with open(path, "wb") as out:
        if part_lba:
            sectors = part.stat().st_size // 512
            table = bytearray(512)
            table[446:462] = struct.pack("<BBBBBBBBII", 0x80, 0, 0, 0, 0x06, 0, 0, 0, part_lba, sectors)
            table[510:512] = b"\x55\xaa"
            out.write(bytes(table) + bytes(512 * (part_lba - 1)))
        out.write(part.read_bytes())
    part.unlink()
    return path
