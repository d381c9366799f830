"""Refuse to flash a disk that is in use, holds the running system, or is the wrong size.

Two halves, so every rule is testable without real disks:
  gather_facts()  reads sysfs/procfs below a root directory (the real "/" or a fake test tree)
                  and one exclusive open, and returns a DeviceFacts;
  refusals()      is a pure function from DeviceFacts to the list of broken rules.
`check_device` combines them; `confirm` asks the human.  Rule names appear in every message so
a user (or a test) can tell which rule fired.
"""
import errno
import os
import stat
from dataclasses import dataclass, field
from typing import Optional

from bareflow.errors import BareflowError
from bareflow.flash.target import human_size

SYSTEM_MOUNTPOINTS = ("/", "/boot", "/boot/efi")


@dataclass(frozen=True)
class Partition:
    name: str
    size: int


@dataclass(frozen=True)
class Refusal:
    rule: str
    message: str


@dataclass
class DeviceFacts:
    device: str                        # as the user gave it
    node: str = ""                     # the path that would be opened
    name: Optional[str] = None         # kernel name (sdb); None: not a block device sysfs knows
    devnum: str = ""                   # "major:minor"
    is_block_node: bool = False        # os.stat says block special file
    simulated: bool = False            # facts come from a test tree: node may be a plain file
    is_partition: bool = False
    parent: str = ""                   # whole-disk name when is_partition
    size: int = 0                      # bytes
    removable: bool = False
    read_only: bool = False
    model: str = ""
    partitions: list = field(default_factory=list)      # [Partition]
    mounts: list = field(default_factory=list)          # [(name, mountpoint)] on this disk
    system_mounts: list = field(default_factory=list)   # system mountpoints on this disk
    holders: dict = field(default_factory=dict)         # name -> [holder names], non-empty only
    exclusive_errno: Optional[int] = None               # errno of the O_EXCL open, None if fine


def refusals(facts, image_size, force_non_removable=False):
    """Every safety rule `facts` breaks, in order of importance (pure: no I/O)."""
    dev, out = facts.device, []

    def refuse(rule, message):
        out.append(Refusal(rule, f"{dev}: {message}"))

    if facts.name is None or not (facts.is_block_node or facts.simulated):
        refuse("not-block-device", "is not a block device known to the kernel "
               "(use FLASH_TARGET=file for a plain file)")
        return out
    if facts.is_partition:
        refuse("partition", f"is a partition of /dev/{facts.parent}; give the whole disk "
               f"(/dev/{facts.parent}), the image carries its own partition table")
    if facts.system_mounts:
        refuse("system-disk", "holds the running system (" + ", ".join(facts.system_mounts) +
               " is mounted from it)")
    for name, mountpoint in facts.mounts:
        refuse("mounted", f"/dev/{name} is mounted on {mountpoint}; unmount it first")
    for name, holders in sorted(facts.holders.items()):
        refuse("in-use", f"/dev/{name} is held by {', '.join(holders)} (device-mapper, RAID, "
               "LVM or swap); release it first")
    if facts.exclusive_errno is not None:
        e = facts.exclusive_errno
        why = ("something is using it" if e == errno.EBUSY else
               "permission denied (not root / disk group, or a container or security policy forbids it)" if e in (errno.EACCES, errno.EPERM)
               else "the device cannot be opened")
        refuse("busy", f"cannot be opened exclusively ({errno.errorcode.get(e, '?')}: {os.strerror(e)}); {why}")
    if facts.read_only:
        refuse("read-only", "is read-only (write-protect switch?)")
    if facts.size == 0:
        refuse("no-medium", "reports size 0 (no medium in the reader?)")
    elif facts.size < image_size:
        refuse("too-small", f"holds {facts.size} bytes ({human_size(facts.size)}), "
               f"smaller than the {image_size}-byte image")
    if not facts.removable and not force_non_removable:
        refuse("non-removable", "is not a removable disk; if you are sure it is the right one, "
               "pass FORCE_NON_REMOVABLE=1")
    return out


def check_device(facts, image_size, force_non_removable=False):
    found = refusals(facts, image_size, force_non_removable)
    if found:
        lines = [f"refusing to flash {facts.device}:"]
        lines += [f"  [{r.rule}] {r.message}" for r in found]
        raise BareflowError("\n".join(lines))


# -- reading the facts --------------------------------------------------------------------------
def _read(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def _listdir(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


class _Sysfs:
    def __init__(self, sysroot):
        self.root = sysroot or "/"
        self.sys = os.path.join(self.root, "sys")
        self.by_devnum = {}
        for name in _listdir(os.path.join(self.sys, "class", "block")):
            num = _read(self.block_dir(name, "dev"))
            if num:
                self.by_devnum[num] = name

    def block_dir(self, name, *more):
        return os.path.join(self.sys, "class", "block", name, *more)

    def exists(self, name):
        return os.path.isdir(self.block_dir(name))

    def is_partition(self, name):
        return os.path.exists(self.block_dir(name, "partition"))

    def disk_of(self, name):
        if self.is_partition(name):
            return os.path.basename(os.path.dirname(os.path.realpath(self.block_dir(name))))
        return name

    def leaves(self, name, depth=0):
        """The devices at the bottom of a device-mapper/RAID stack (a partition stays itself)."""
        slaves = _listdir(self.block_dir(name, "slaves"))
        if not slaves or depth > 16:
            return {name}
        out = set()
        for s in slaves:
            out |= self.leaves(s, depth + 1)
        return out

    def name_for_node(self, node):
        try:
            st = os.stat(node)
        except OSError:
            return None
        if stat.S_ISBLK(st.st_mode):
            return self.by_devnum.get(f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
        name = os.path.basename(os.path.realpath(node))
        return name if self.exists(name) else None


def _unescape(s):
    # /proc/mounts writes space, tab, newline and backslash as \ooo octal escapes.
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and len(s[i + 1:i + 4]) == 3 and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def read_mounts(sysroot):
    """[(source, mountpoint, devnum or "")] from mountinfo (has device numbers) or mounts."""
    proc = os.path.join(sysroot or "/", "proc")
    info = _read(os.path.join(proc, "self", "mountinfo"), None)
    mounts = []
    if info is not None:
        for line in info.splitlines():
            parts = line.split()
            if "-" not in parts[6:]:
                continue
            sep = parts.index("-", 6)
            source = parts[sep + 2] if len(parts) > sep + 2 else ""
            mounts.append((_unescape(source), _unescape(parts[4]), parts[2]))
        return mounts
    text = _read(os.path.join(proc, "self", "mounts"), None)
    if text is None:
        text = _read(os.path.join(proc, "mounts"), None)
    if text is None:
        raise BareflowError(f"cannot read {proc}/self/mounts or {proc}/mounts: refusing to flash "
                            "without knowing what is mounted")
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            mounts.append((_unescape(parts[0]), _unescape(parts[1]), ""))
    return mounts


def gather_facts(device, sysroot="/", try_exclusive=True):
    simulated = sysroot not in ("", "/")
    node = os.path.join(sysroot, device.lstrip("/")) if simulated and os.path.isabs(device) else device
    facts = DeviceFacts(device=device, node=node, simulated=simulated)
    try:
        st = os.stat(node)
    except FileNotFoundError:
        raise BareflowError(f"refusing to flash {device}: [missing] no such device") from None
    except OSError as e:
        raise BareflowError(f"refusing to flash {device}: [missing] cannot stat it: {e.strerror}") from e
    facts.is_block_node = stat.S_ISBLK(st.st_mode)
    sysfs = _Sysfs(sysroot)
    facts.name = sysfs.name_for_node(node)
    if facts.name is None:
        return facts
    name = facts.name
    facts.devnum = _read(sysfs.block_dir(name, "dev"))
    facts.is_partition = sysfs.is_partition(name)
    disk = sysfs.disk_of(name)
    facts.parent = disk if facts.is_partition else ""
    facts.size = int(_read(sysfs.block_dir(name, "size"), "0") or 0) * 512
    facts.read_only = _read(sysfs.block_dir(name, "ro"), "0") == "1"
    blockdir = os.path.join(sysfs.sys, "block", disk)
    facts.removable = _read(os.path.join(blockdir, "removable"), "0") == "1"
    vendor = _read(os.path.join(blockdir, "device", "vendor"))
    model = _read(os.path.join(blockdir, "device", "model"))
    facts.model = " ".join(x for x in (vendor, model) if x)
    for child in _listdir(sysfs.block_dir(name)):
        if os.path.exists(sysfs.block_dir(name, child, "partition")):
            facts.partitions.append(Partition(child, int(_read(sysfs.block_dir(name, child, "size"), "0") or 0) * 512))
    ours = {name} | {p.name for p in facts.partitions}

    for source, mountpoint, devnum in read_mounts(sysroot):
        names = set()
        if devnum in sysfs.by_devnum:
            names.add(sysfs.by_devnum[devnum])
        if source.startswith("/dev/"):
            src = sysfs.name_for_node(os.path.join(sysroot, source.lstrip("/")) if simulated else source)
            if src:
                names.add(src)
        leaves = set().union(*(sysfs.leaves(n) for n in names)) if names else set()
        hit = sorted((names | leaves) & ours)
        if not hit:
            continue
        facts.mounts.append((hit[0], mountpoint))
        if mountpoint in SYSTEM_MOUNTPOINTS:
            facts.system_mounts.append(mountpoint)
    for n in sorted(ours):
        held = _listdir(sysfs.block_dir(n, "holders"))
        if held:
            facts.holders[n] = held
    if try_exclusive and facts.is_block_node:
        try:
            os.close(os.open(node, os.O_RDONLY | os.O_EXCL))
        except OSError as e:
            facts.exclusive_errno = e.errno
    return facts


# -- asking the human ---------------------------------------------------------------------------
def confirm(info, image, image_size, ctx):
    """Show what is about to be overwritten and require the literal answer YES."""
    if ctx.assume_yes or not info.needs_confirmation:
        return
    if not ctx.is_interactive():
        raise BareflowError(f"refusing to flash {info.device}: [no-confirmation] no terminal to ask "
                            "on; check the device and pass YES=1 to confirm")
    out = ctx.stream()
    print(f"About to write {image} ({human_size(image_size)}) to:", file=out)
    print(info.describe(), file=out)
    out.flush()
    try:
        answer = ctx.input_fn(f"Type YES to write {os.path.basename(str(image))} to {info.device} "
                              "(everything on it will be lost): ")
    except EOFError:
        answer = None
    if (answer or "").strip() != "YES":
        raise BareflowError(f"flash of {info.device} cancelled: [declined] the answer was "
                            f"{answer!r}, not YES; nothing was written")
