"""FAT16 filesystem writer and reader for the boot partition (docs/image-layout.md).

Pure Python, no root, no loop devices, deterministic: the same files, label, volume id and
epoch always give the same bytes.

Writer:
    layout = plan_fat16(files, *, volume_id, label="BAREFLOW", epoch=DEFAULT_EPOCH,
                        contiguous=(), min_reserved_sectors=1, hidden_sectors=0,
                        extra_free_bytes=0, extra_free_files=0, extra_root_entries=0,
                        sectors_per_cluster=None) -> FatLayout
    write_fat16(fh, offset, files, layout)   # into a binary file whose bytes from
                                             # `offset` on are still unwritten (read as 0)
    data, layout = make_fat16(files, **same keywords as plan_fat16)   # in memory

`files` maps absolute upper-case 8.3 paths ("/MODULES/EMBED.O2") to bytes.  Every file
is laid out as one run of clusters (so the `contiguous` paths, placed first, are
guaranteed contiguous); `extra_free_*` reserve room for files a bootloader installer adds
later (each extra file may waste up to one cluster, hence `extra_free_files`).

Reader (for any FAT16 volume, e.g. a flashed stick or a third-party image):
    layout = read_fat16(fh, offset=0, source="image") -> FatLayout
    read_file_bytes(fh, offset, layout, path) -> bytes
    normalize_timestamps(fh, offset, layout, epoch) -> number of entries rewritten

Helpers: split_path(path), fat_timestamp(epoch), epoch_from_environ(environ=None).
"""
import datetime
import os
import re
import struct
from dataclasses import dataclass, field

from bareflow.errors import BareflowError

SECTOR = 512
ROOT_ENTRIES = 512
NUM_FATS = 2
MEDIA = 0xF8
# fatgen103 defines the FAT type by cluster count alone: FAT16 is 4085..65524.  Readers
# differ by a cluster or two at the edges (some count the two reserved FAT entries), so
# the writer keeps a margin from both.
FAT16_MIN_CLUSTERS = 4085
FAT16_MAX_CLUSTERS = 65524
EDGE_MARGIN = 16
MIN_CLUSTERS = FAT16_MIN_CLUSTERS + EDGE_MARGIN
MAX_CLUSTERS = FAT16_MAX_CLUSTERS - EDGE_MARGIN
# syslinux's installer (libinstaller/fs.c, syslinux_check_bootsect) takes the root directory
# as (root_entries + 15) / 512 sectors instead of root_entries * 32 / 512, so it counts
# root_sectors - 1 data sectors too many: 31 clusters at 512-byte clusters, and a volume of
# 65494 true clusters looks like FAT32 to it ("missing FAT32 signature").  Every consumer
# (fatgen103 counting: fsck.fat, mtools, Windows; Linux, which trusts fat_size_16; our kernel;
# syslinux with its overcount) agrees on FAT16 when the true count stays below
# max_clusters(spc).
SYSLINUX_ROOT_OVERCOUNT_SECTORS = ROOT_ENTRIES * 32 // 512 - (ROOT_ENTRIES + 15) // 512


def syslinux_cluster_count(cluster_count, sectors_per_cluster):
    """The cluster count syslinux's installer derives for one of our layouts (see above)."""
    return (cluster_count * sectors_per_cluster + SYSLINUX_ROOT_OVERCOUNT_SECTORS) // sectors_per_cluster


def max_clusters(sectors_per_cluster):
    """Largest true cluster count this writer uses at `sectors_per_cluster`: every reader,
    syslinux's overcount included, still sees FAT16, with EDGE_MARGIN to spare."""
    return FAT16_MAX_CLUSTERS - EDGE_MARGIN - SYSLINUX_ROOT_OVERCOUNT_SECTORS // sectors_per_cluster


# 64 KiB clusters exist but many FAT drivers (and syslinux' own checks) reject them.
MAX_SECTORS_PER_CLUSTER = 64
MAX_DIR_ENTRIES = 65536          # a directory's entry index is 16 bits
DEFAULT_EPOCH = 1704067200       # 2024-01-01T00:00:00Z: the stamp of every build without SOURCE_DATE_EPOCH
EOC = 0xFFFF
BAD_CLUSTER = 0xFFF7
ATTR_READ_ONLY, ATTR_HIDDEN, ATTR_SYSTEM = 0x01, 0x02, 0x04
ATTR_VOLUME, ATTR_DIRECTORY, ATTR_ARCHIVE = 0x08, 0x10, 0x20
ATTR_LFN = 0x0F
OEM_NAME = b"BAREFLOW"

_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'()-@^_`{}~"
_COMPONENT = re.compile(r"([%s]{1,8})(?:\.([%s]{1,3}))?\Z" % ((re.escape(_CHARS),) * 2))
# DOS and Windows open these as devices whatever the extension, so a file so named
# would be unreachable from a flashed stick.
_DEVICES = {"CON", "PRN", "AUX", "NUL"} | {f"{d}{i}" for d in ("COM", "LPT") for i in range(1, 10)}


# --------------------------------------------------------------------------- names, time
def _component_problem(part):
    if part in (".", ".."):
        return "'.' and '..' are not allowed"
    if part != part.upper():
        return "must be upper-case (8.3 names are stored upper-case)"
    name, dot, ext = part.partition(".")
    if "." in ext:
        return "has more than one '.'"
    if not 1 <= len(name) <= 8:
        return f"name part {name!r} must be 1-8 characters"
    if dot and not 1 <= len(ext) <= 3:
        return f"extension {ext!r} must be 1-3 characters"
    bad = sorted({c for c in name + ext if c not in _CHARS})
    return "contains characters not allowed in 8.3 names: " + " ".join(repr(c) for c in bad)


def split_path(path):
    """Validate an absolute 8.3 path and return its components."""
    if not isinstance(path, str):
        raise BareflowError(f"image file path {path!r}: must be a string")
    if not path.startswith("/") or path == "/":
        raise BareflowError(f"image file path {path!r}: must be absolute, like /KERNEL.BIN")
    parts = tuple(path[1:].split("/"))
    for part in parts:
        if not part:
            raise BareflowError(f"image file path {path!r}: empty component (doubled or trailing '/')")
        m = _COMPONENT.match(part)
        if not m:
            raise BareflowError(f"image file path {path!r}: component {part!r} is not a valid 8.3 "
                                f"name: {_component_problem(part)}")
        if m.group(1) in _DEVICES:
            raise BareflowError(f"image file path {path!r}: {m.group(1)!r} is a reserved DOS device name")
    return parts


def _short_name(part):
    name, _, ext = part.partition(".")
    return name.ljust(8).encode("ascii") + ext.ljust(3).encode("ascii")


def fat_timestamp(epoch):
    """Return (date, time, creation 10 ms units) for a Unix time, in UTC."""
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        raise BareflowError(f"timestamp {epoch!r}: must be an integer number of seconds")
    try:
        t = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        t = None
    if t is None or not 1980 <= t.year <= 2107:
        shown = f" ({t:%Y-%m-%d})" if t else ""
        raise BareflowError(f"timestamp {epoch}{shown} is outside the FAT date range "
                            "1980-01-01..2107-12-31 (check SOURCE_DATE_EPOCH)")
    date = ((t.year - 1980) << 9) | (t.month << 5) | t.day
    time = (t.hour << 11) | (t.minute << 5) | (t.second // 2)
    return date, time, (t.second % 2) * 100


def epoch_from_environ(environ=None, default=DEFAULT_EPOCH):
    """SOURCE_DATE_EPOCH as an int (validated for FAT), or `default` when unset."""
    env = os.environ if environ is None else environ
    raw = env.get("SOURCE_DATE_EPOCH", "")
    if raw.strip() == "":
        return default
    if not re.fullmatch(r"\s*\d+\s*", raw):
        raise BareflowError(f"SOURCE_DATE_EPOCH={raw!r} is not a whole number of seconds")
    epoch = int(raw)
    fat_timestamp(epoch)
    return epoch


def check_payload_fits(files) -> None:
    """Refuse, before anything is built, payload files that alone exceed a FAT16 partition.

    `files` maps an image path to the file on disk; BareflowError lists each file and its size.
    """
    check_payload_sizes({path: (os.path.getsize(src), src) for path, src in files.items()})


def check_payload_sizes(files) -> None:
    """check_payload_fits for files not written yet: {image path: (size in bytes, source named)}."""
    capacity = MAX_CLUSTERS * MAX_SECTORS_PER_CLUSTER * SECTOR
    sizes = {path: size for path, (size, _) in files.items()}
    if sum(sizes.values()) > capacity:
        listed = ", ".join(f"{p} ({n} bytes, from {files[p][1]})" for p, n in sizes.items())
        raise BareflowError(f"payload too big for FAT16: {listed} add up to {sum(sizes.values())} bytes, "
                            f"over the {capacity} bytes a FAT16 partition holds "
                            f"({MAX_CLUSTERS} clusters of {MAX_SECTORS_PER_CLUSTER * SECTOR // 1024} KiB)")


# --------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class Extent:
    """One file or directory: its cluster chain in order and its size in bytes."""
    path: str
    size: int
    clusters: tuple

    @property
    def first_cluster(self):
        return self.clusters[0] if self.clusters else 0

    @property
    def contiguous(self):
        return all(b == a + 1 for a, b in zip(self.clusters, self.clusters[1:]))


@dataclass
class FatLayout:
    """Where everything of one FAT16 volume is; byte offsets are relative to its first byte."""
    sectors_per_cluster: int
    reserved_sectors: int
    fat_sectors: int
    total_sectors: int
    hidden_sectors: int
    cluster_count: int
    volume_id: int
    label: str
    fat: tuple                 # FAT entries 0 .. cluster_count + 1
    files: dict                # path -> Extent
    directories: dict          # path -> Extent (sub-directories; the root is fixed)
    bytes_per_sector: int = SECTOR
    num_fats: int = NUM_FATS
    root_entries: int = ROOT_ENTRIES
    epoch: object = field(default=None, compare=False)

    @property
    def cluster_size(self):
        return self.sectors_per_cluster * self.bytes_per_sector

    def fat_offset(self, index=0):
        return (self.reserved_sectors + index * self.fat_sectors) * self.bytes_per_sector

    @property
    def root_offset(self):
        return self.fat_offset(self.num_fats)

    @property
    def root_dir_sectors(self):
        return -(-self.root_entries * 32 // self.bytes_per_sector)

    @property
    def data_offset(self):
        return self.root_offset + self.root_dir_sectors * self.bytes_per_sector

    @property
    def size(self):
        return self.total_sectors * self.bytes_per_sector

    def cluster_offset(self, cluster):
        return self.data_offset + (cluster - 2) * self.cluster_size

    def used_clusters(self):
        """Clusters the FAT marks as allocated (bad clusters hold nothing worth copying)."""
        return [c for c in range(2, self.cluster_count + 2) if self.fat[c] not in (0, BAD_CLUSTER)]

    def used_runs(self):
        """Allocated clusters as (first cluster, count) runs, ascending."""
        runs = []
        for c in self.used_clusters():
            if runs and runs[-1][0] + runs[-1][1] == c:
                runs[-1][1] += 1
            else:
                runs.append([c, 1])
        return [tuple(r) for r in runs]


# --------------------------------------------------------------------------- planning
def _tree(files):
    """Validate every path and value; return {dir path: sorted [(component, path, is_dir)]}."""
    dirs = {"/": {}}
    for path in sorted(files, key=str):
        parts = split_path(path)
        data = files[path]
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise BareflowError(f"image file {path}: content must be bytes, not {type(data).__name__}")
        parent = "/"
        for i, part in enumerate(parts[:-1]):
            sub = "/" + "/".join(parts[:i + 1])
            if sub in files:
                raise BareflowError(f"image file {sub} is a file, but {path} needs it to be a directory")
            dirs[parent][part] = (sub, True)
            dirs.setdefault(sub, {})
            parent = sub
        dirs[parent][parts[-1]] = (path, False)
    return {d: [(name, p, isdir) for name, (p, isdir) in sorted(kids.items())] for d, kids in dirs.items()}


def _check_int(what, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise BareflowError(f"FAT16 {what} {value!r}: must be an integer in {lo}..{hi}")


def check_label(label):
    if not isinstance(label, str) or not 1 <= len(label) <= 11 or label[0] == " " \
            or any(c not in _CHARS + " " for c in label):
        raise BareflowError(f"volume label {label!r}: must be 1-11 characters from A-Z 0-9 "
                            f"{_CHARS[36:]} or space, not starting with a space")


def plan_fat16(files, *, volume_id, label="BAREFLOW", epoch=DEFAULT_EPOCH, contiguous=(),
               min_reserved_sectors=1, hidden_sectors=0, extra_free_bytes=0,
               extra_free_files=0, extra_root_entries=0, sectors_per_cluster=None, spare_files=()):
    """Choose the geometry and allocate clusters; raise BareflowError if it cannot fit FAT16.

    Free space is kept for `extra_free_bytes` (one run) plus `extra_free_files` one-cluster
    files (what bootloader install steps add) and one file of each size in `spare_files`
    (bytes; each rounded up to whole clusters on its own), e.g. room for an editor to write a
    full-size copy of /BAREFLOW.CFG beside the old one (docs/image-layout.md).
    """
    check_label(label)
    _check_int("volume id", volume_id, 0, 0xFFFFFFFF)
    fat_timestamp(epoch)
    _check_int("reserved sector count", min_reserved_sectors, 1, 0xFF00)
    _check_int("hidden sector count", hidden_sectors, 0, 0xFFFFFFFF)
    for what, v in (("extra free bytes", extra_free_bytes), ("extra free files", extra_free_files),
                    ("extra root entries", extra_root_entries)):
        _check_int(what, v, 0, 1 << 40)
    spare_files = tuple(spare_files)
    for v in spare_files:
        _check_int("spare file size", v, 0, 1 << 40)
    tree = _tree(files)
    for path in contiguous:
        if path not in files:
            raise BareflowError(f"contiguous file {path} is not among the image files")

    root_needed = 1 + len(tree["/"]) + extra_root_entries      # 1 = the volume label entry
    if root_needed > ROOT_ENTRIES:
        raise BareflowError(
            f"FAT16 root directory needs {root_needed} entries ({len(tree['/'])} files/directories, "
            f"the volume label, {extra_root_entries} for bootloader files) but holds {ROOT_ENTRIES}: "
            f"{root_needed - ROOT_ENTRIES} too many; move files into a sub-directory")
    for d, kids in tree.items():
        if d != "/" and len(kids) + 2 > MAX_DIR_ENTRIES:
            raise BareflowError(f"image directory {d} has {len(kids)} entries; a FAT directory "
                                f"holds at most {MAX_DIR_ENTRIES - 2}: {len(kids) + 2 - MAX_DIR_ENTRIES} too many")

    def clusters_for(nbytes, cs):
        return -(-nbytes // cs)

    def needed(spc):
        cs = spc * SECTOR
        n = sum(clusters_for(len(files[p]), cs) for p in files)
        n += sum(clusters_for((len(kids) + 2) * 32, cs) for d, kids in tree.items() if d != "/")
        n += sum(clusters_for(v, cs) for v in spare_files)
        return n + clusters_for(extra_free_bytes, cs) + extra_free_files

    if sectors_per_cluster is not None:
        if sectors_per_cluster not in (1, 2, 4, 8, 16, 32, 64):
            raise BareflowError(f"FAT16 sectors per cluster {sectors_per_cluster!r}: must be 1, 2, 4, ..., 64")
        candidates = [sectors_per_cluster]
    else:
        candidates = [1 << i for i in range(7)]
    for spc in candidates:           # smallest cluster that fits wastes least space
        if needed(spc) <= max_clusters(spc):
            break
    else:
        spc = candidates[-1]
        cs = spc * SECTOR
        limit = max_clusters(spc)
        over = (needed(spc) - limit) * cs
        payload = sum(len(v) for v in files.values())
        raise BareflowError(
            f"payload does not fit FAT16: {payload} bytes of files plus {extra_free_bytes} bytes for "
            f"bootloader files need {needed(spc)} clusters of {cs / 1024:g} KiB, this FAT16 layout allows "
            f"{limit} ({limit * cs / 2**30:.2f} GiB) so that every reader agrees on the FAT type: too big "
            f"by {over} bytes ({over / 2**20:.1f} MiB)")
    count = max(needed(spc), MIN_CLUSTERS)
    cs = spc * SECTOR

    fat = [0] * (count + 2)
    fat[0], fat[1] = 0xFF00 | MEDIA, EOC
    cursor = 2

    def allocate(path, nbytes, alloc_bytes):
        nonlocal cursor
        n = clusters_for(alloc_bytes, cs)
        chain = tuple(range(cursor, cursor + n))
        for a, b in zip(chain, chain[1:] + (None,)):
            fat[a] = EOC if b is None else b
        cursor += n
        return Extent(path, nbytes, chain)

    extents, dir_extents = {}, {}
    for path in dict.fromkeys(contiguous):
        extents[path] = allocate(path, len(files[path]), len(files[path]))
    for d in sorted(tree):
        if d != "/":
            dir_extents[d] = allocate(d, 0, (len(tree[d]) + 2) * 32)
    for path in sorted(files):
        if path not in extents:
            extents[path] = allocate(path, len(files[path]), len(files[path]))

    fat_sectors = -(-(count + 2) * 2 // SECTOR)
    root_sectors = ROOT_ENTRIES * 32 // SECTOR
    reserved = min_reserved_sectors
    # Start the data area on a cluster boundary (the partition itself is 1 MiB aligned), so
    # clusters never straddle flash pages; the padding goes into the reserved sectors.
    reserved += -(reserved + NUM_FATS * fat_sectors + root_sectors) % spc
    total = reserved + NUM_FATS * fat_sectors + root_sectors + count * spc
    return FatLayout(sectors_per_cluster=spc, reserved_sectors=reserved, fat_sectors=fat_sectors,
                     total_sectors=total, hidden_sectors=hidden_sectors, cluster_count=count,
                     volume_id=volume_id, label=label, fat=tuple(fat), files=extents,
                     directories=dir_extents, epoch=epoch)


# --------------------------------------------------------------------------- writing
def _dirent(short11, attr, cluster, size, stamp):
    date, time, tenths = stamp
    return struct.pack("<11sBBBHHHHHHHI", short11, attr, 0, tenths, time, date, date, 0,
                       time, date, cluster, size)


def _boot_sector(layout):
    bs = bytearray(SECTOR)
    bs[0:3] = b"\xEB\x3C\x90"                     # jmp short 0x3E; nop
    bs[3:11] = OEM_NAME
    small = layout.total_sectors if layout.total_sectors < 0x10000 else 0
    struct.pack_into("<HBHBHHBHHHII", bs, 11, layout.bytes_per_sector, layout.sectors_per_cluster,
                     layout.reserved_sectors, layout.num_fats, layout.root_entries, small, MEDIA,
                     layout.fat_sectors, 63, 255, layout.hidden_sectors,
                     0 if small else layout.total_sectors)
    struct.pack_into("<BBBI11s8s", bs, 36, 0x80, 0, 0x29, layout.volume_id,
                     layout.label.ljust(11).encode("ascii"), b"FAT16   ")
    # Until a bootloader replaces it: "int 18h" asks the BIOS for the next boot device,
    # then halt forever should it return.
    bs[0x3E:0x43] = b"\xCD\x18\xF4\xEB\xFD"
    bs[510:512] = b"\x55\xAA"
    return bytes(bs)


def fat16_regions(files, layout):
    """Yield (offset, bytes) pieces that make up the volume; all other bytes are zero."""
    stamp = fat_timestamp(layout.epoch if layout.epoch is not None else DEFAULT_EPOCH)
    yield 0, _boot_sector(layout)
    fat_bytes = struct.pack(f"<{len(layout.fat)}H", *layout.fat)
    for i in range(layout.num_fats):
        yield layout.fat_offset(i), fat_bytes
    tree = _tree(files)
    root = [_dirent(layout.label.ljust(11).encode("ascii"), ATTR_VOLUME, 0, 0, stamp)]
    for d, kids in sorted(tree.items()):
        entries = root if d == "/" else [
            _dirent(b".          ", ATTR_DIRECTORY, layout.directories[d].first_cluster, 0, stamp),
            _dirent(b"..         ", ATTR_DIRECTORY, _parent_cluster(layout, d), 0, stamp)]
        for name, path, isdir in kids:
            if isdir:
                entries.append(_dirent(_short_name(name), ATTR_DIRECTORY,
                                       layout.directories[path].first_cluster, 0, stamp))
            else:
                ext = layout.files[path]
                entries.append(_dirent(_short_name(name), ATTR_ARCHIVE, ext.first_cluster, ext.size, stamp))
        if d != "/":
            yield layout.cluster_offset(layout.directories[d].first_cluster), b"".join(entries)
    yield layout.root_offset, b"".join(root)
    for path, ext in layout.files.items():
        if ext.size:
            yield layout.cluster_offset(ext.first_cluster), files[path]


def _parent_cluster(layout, d):
    parent = d.rsplit("/", 1)[0]
    return layout.directories[parent].first_cluster if parent else 0   # 0 means the root


def write_fat16(fh, offset, files, layout):
    """Write the volume into binary file `fh` at `offset`; bytes not written stay holes."""
    for at, data in fat16_regions(files, layout):
        fh.seek(offset + at)
        fh.write(data)
    end = offset + layout.size
    fh.seek(0, os.SEEK_END)
    if fh.tell() < end:
        fh.truncate(end)


def make_fat16(files, **kwargs):
    """Plan and build a volume in memory: return (bytes, FatLayout)."""
    layout = plan_fat16(files, **kwargs)
    buf = bytearray(layout.size)
    for at, data in fat16_regions(files, layout):
        buf[at:at + len(data)] = data
    return bytes(buf), layout


# --------------------------------------------------------------------------- reading
def _read(fh, pos, n):
    fh.seek(pos)
    data = fh.read(n)
    if len(data) != n:
        raise BareflowError(f"image ends at byte {pos + len(data)}, expected {n} bytes at {pos}")
    return data


def read_fat16(fh, offset=0, *, source="image"):
    """Parse a FAT16 volume starting at byte `offset` of `fh`; return its FatLayout."""
    where = f"{source}: FAT volume at byte {offset}"
    bs = _read(fh, offset, SECTOR)
    (bps, spc, reserved, nfats, root_entries, small, _media, fat_sectors, _spt, _heads,
     hidden, large) = struct.unpack_from("<HBHBHHBHHHII", bs, 11)
    if bs[510:512] != b"\x55\xAA":
        raise BareflowError(f"{where}: boot sector has no 0x55AA signature")
    if bps not in (512, 1024, 2048, 4096) or spc not in (1, 2, 4, 8, 16, 32, 64, 128):
        raise BareflowError(f"{where}: bytes per sector {bps} / sectors per cluster {spc} invalid")
    if reserved == 0 or nfats == 0 or root_entries == 0:
        raise BareflowError(f"{where}: reserved sectors, FAT count and root entries must be non-zero "
                            f"(got {reserved}, {nfats}, {root_entries}); FAT32 is not supported")
    if fat_sectors == 0:
        raise BareflowError(f"{where}: 16-bit FAT size is 0: this is FAT32, not FAT16")
    total = small or large
    root_sectors = -(-root_entries * 32 // bps)
    meta = reserved + nfats * fat_sectors + root_sectors
    count = (total - meta) // spc if total > meta else 0
    if not FAT16_MIN_CLUSTERS <= count <= FAT16_MAX_CLUSTERS:
        kind = "FAT12" if count < FAT16_MIN_CLUSTERS else "FAT32-sized"
        raise BareflowError(f"{where}: {count} clusters means {kind}, not FAT16")
    if fat_sectors * bps < (count + 2) * 2:
        raise BareflowError(f"{where}: FAT of {fat_sectors} sectors is too small for {count} clusters")
    volume_id, label = 0, ""
    if bs[38] == 0x29:
        volume_id = struct.unpack_from("<I", bs, 39)[0]
        label = bs[43:54].decode("cp437").rstrip(" ")
    raw = _read(fh, offset + reserved * bps, (count + 2) * 2)
    fat = struct.unpack(f"<{count + 2}H", raw)
    layout = FatLayout(sectors_per_cluster=spc, reserved_sectors=reserved, fat_sectors=fat_sectors,
                       total_sectors=total, hidden_sectors=hidden, cluster_count=count,
                       volume_id=volume_id, label=label, fat=fat, files={}, directories={},
                       bytes_per_sector=bps, num_fats=nfats, root_entries=root_entries)
    todo = [("", _read(fh, offset + layout.root_offset, root_entries * 32))]
    seen_dirs = set()
    while todo:
        parent, blob = todo.pop()
        for _pos, ent in _entries(blob):
            attr = ent[11]
            name = _entry_name(ent)
            if attr & ATTR_VOLUME or name in (".", ".."):
                continue
            path = f"{parent}/{name}"
            cluster, size = struct.unpack_from("<H", ent, 26)[0], struct.unpack_from("<I", ent, 28)[0]
            if struct.unpack_from("<H", ent, 20)[0]:
                raise BareflowError(f"{where}: {path} has a FAT32 high cluster number")
            if attr & ATTR_DIRECTORY:
                chain = _chain(layout, cluster, f"{where}: directory {path}")
                if not chain or chain[0] in seen_dirs:
                    raise BareflowError(f"{where}: directory {path} is empty or loops back")
                seen_dirs.add(chain[0])
                layout.directories[path] = Extent(path, 0, chain)
                todo.append((path, b"".join(_read(fh, offset + layout.cluster_offset(c), layout.cluster_size)
                                            for c in chain)))
            else:
                chain = _chain(layout, cluster, f"{where}: file {path}") if cluster else ()
                if len(chain) != -(-size // layout.cluster_size):
                    raise BareflowError(f"{where}: file {path} is {size} bytes but its cluster chain "
                                        f"has {len(chain)} clusters")
                layout.files[path] = Extent(path, size, chain)
    layout.files = dict(sorted(layout.files.items()))
    layout.directories = dict(sorted(layout.directories.items()))
    return layout


def _entries(blob):
    """Yield (byte position, 32-byte entry) for live short-name entries of a directory."""
    for pos in range(0, len(blob) - 31, 32):
        ent = blob[pos:pos + 32]
        if ent[0] == 0:
            return
        if ent[0] != 0xE5 and ent[11] & 0x3F != ATTR_LFN:
            yield pos, ent


def _entry_name(ent):
    base = bytes([0xE5 if ent[0] == 0x05 else ent[0]]) + ent[1:8]
    name, ext = base.rstrip(b" ").decode("cp437"), ent[8:11].rstrip(b" ").decode("cp437")
    return f"{name}.{ext}".upper() if ext else name.upper()


def _chain(layout, first, what):
    chain, seen, c = [], set(), first
    while True:
        if not 2 <= c <= layout.cluster_count + 1:
            raise BareflowError(f"{what}: cluster chain reaches {c:#06x}, outside the data area")
        if c in seen:
            raise BareflowError(f"{what}: cluster chain loops at cluster {c}")
        seen.add(c)
        chain.append(c)
        nxt = layout.fat[c]
        if nxt >= 0xFFF8:
            return tuple(chain)
        if nxt in (0, 1, BAD_CLUSTER):
            raise BareflowError(f"{what}: cluster {c} is followed by FAT value {nxt:#06x}")
        c = nxt


def read_file_bytes(fh, offset, layout, path):
    """Return the content of file `path` of a parsed volume."""
    ext = layout.files.get(path)
    if ext is None:
        raise BareflowError(f"{path}: no such file on the FAT16 volume")
    data = b"".join(_read(fh, offset + layout.cluster_offset(c), layout.cluster_size) for c in ext.clusters)
    return data[:ext.size]


def _directory_slots(fh, offset, layout):
    """Yield absolute byte offsets of every live short-name entry of every directory."""
    yield from (offset + layout.root_offset + pos
                for pos, _ in _entries(_read(fh, offset + layout.root_offset, layout.root_entries * 32)))
    cs = layout.cluster_size
    for ext in layout.directories.values():
        blob = b"".join(_read(fh, offset + layout.cluster_offset(c), cs) for c in ext.clusters)
        for pos, _ in _entries(blob):
            yield offset + layout.cluster_offset(ext.clusters[pos // cs]) + pos % cs


def normalize_timestamps(fh, offset, layout, epoch):
    """Set every directory entry's creation, access and write time to `epoch`.

    Used after a bootloader installer (syslinux drives mtools) has added files stamped
    with its own idea of "now".  Returns how many entries changed.
    """
    date, time, tenths = fat_timestamp(epoch)
    changed = 0
    for pos in list(_directory_slots(fh, offset, layout)):
        ent = bytearray(_read(fh, pos, 32))
        old = bytes(ent)
        struct.pack_into("<BHHH", ent, 13, tenths, time, date, date)
        struct.pack_into("<HH", ent, 22, time, date)
        if bytes(ent) != old:
            fh.seek(pos)
            fh.write(ent)
            changed += 1
    return changed
