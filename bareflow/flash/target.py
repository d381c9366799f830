"""The flash-target plugin interface: what a back-end declares and the two calls it answers.

A target is a back-end that puts an image somewhere (a block device, a file, a TFTP directory).
The flow is always: check (all refusals, nothing written) -> confirmation -> write (which
verifies if the target declares `verify`).  Plugins register instances through the
`bareflow_register_flash_targets` hook.
"""
import sys
from dataclasses import dataclass, field
from typing import Callable, Optional

from bareflow.errors import BareflowError

NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True)
class Capabilities:
    erase: bool              # clears the whole destination before writing
    verify: bool             # reads back and compares what it wrote
    sparse_write: bool       # writes only the block map's ranges
    needs_root: bool         # normally needs root (or disk-group) rights
    accepts: str             # what DEVICE may be, in words, for `--list` and docs


@dataclass
class DeviceInfo:
    """What `check` found; shown to the user before the confirmation question."""
    device: str              # DEVICE as the user gave it
    path: str                # what will actually be opened
    kind: str                # "block device", "file", "directory", ...
    size: int = 0            # bytes available (0 = not applicable)
    model: str = ""
    removable: Optional[bool] = None
    partitions: list = field(default_factory=list)   # human-readable lines
    needs_confirmation: bool = True
    notes: list = field(default_factory=list)
    facts: object = None     # target-specific detail (safety.DeviceFacts for raw)

    def describe(self):
        lines = [f"  device:     {self.device}" + (f" ({self.path})" if self.path != self.device else ""),
                 f"  kind:       {self.kind}"]
        if self.model:
            lines.append(f"  model:      {self.model}")
        if self.size:
            lines.append(f"  size:       {human_size(self.size)} ({self.size} bytes)")
        if self.removable is not None:
            lines.append(f"  removable:  {'yes' if self.removable else 'NO'}")
        if self.partitions:
            lines.append("  partitions: " + "; ".join(self.partitions))
        elif self.kind == "block device":
            lines.append("  partitions: none")
        lines += [f"  note:       {n}" for n in self.notes]
        return "\n".join(lines)


@dataclass
class FlashReport:
    target: str
    device: str
    image: str
    image_size: int
    bytes_written: int
    seconds: float
    verified: bool
    mapped_bytes: int = 0
    blockmap_source: str = ""
    notes: list = field(default_factory=list)

    @property
    def throughput(self):
        """Bytes per second over the write+verify time."""
        return self.bytes_written / self.seconds if self.seconds > 0 else 0.0

    def summary(self):
        text = (f"flashed {self.image} -> {self.device} [{self.target}]: wrote "
                f"{human_size(self.bytes_written)} of a {human_size(self.image_size)} image in "
                f"{self.seconds:.2f} s ({self.throughput / 1e6:.1f} MB/s), "
                f"{'verified' if self.verified else 'NOT verified'}")
        return "\n".join([text] + [f"  note: {n}" for n in self.notes])


@dataclass
class FlashContext:
    """Everything a target may consult besides device and image.  Tests replace the seams."""
    sysroot: str = "/"                     # raw: /dev, /sys and /proc are read below this
    assume_yes: bool = False               # YES=1: skip the question
    force_non_removable: bool = False      # FORCE_NON_REMOVABLE=1
    quiet: bool = False                    # no progress line
    options: dict = field(default_factory=dict)          # target-specific, validated by name
    input_fn: Callable = input                           # asks the confirmation question
    interactive: Optional[bool] = None                   # None: ask sys.stdin.isatty()
    out: object = None                                   # prompt/progress stream (stderr)
    on_event: Optional[Callable] = None                  # on_event(name, **info) at each write stage

    def stream(self):
        return self.out if self.out is not None else sys.stderr

    def is_interactive(self):
        if self.interactive is not None:
            return self.interactive
        try:
            return sys.stdin.isatty()
        except (AttributeError, ValueError):
            return False

    def emit(self, name, **info):
        if self.on_event is not None:
            self.on_event(name, **info)


class FlashTarget:
    """Base class of a flash back-end.  Subclasses set the class attributes and both methods."""
    name = ""
    description = ""
    capabilities = Capabilities(erase=False, verify=False, sparse_write=False,
                                needs_root=False, accepts="")
    options = {}             # option name -> one-line help

    def check(self, device, image, ctx):
        """Inspect DEVICE and refuse (raise BareflowError naming device and rule) before any
        byte is written.  Returns a DeviceInfo."""
        raise NotImplementedError(f"flash target {self.name!r} does not implement check()")

    def write(self, device, image, blockmap, ctx):
        """Write `image` (using `blockmap` if sparse) and verify; returns a FlashReport."""
        raise NotImplementedError(f"flash target {self.name!r} does not implement write()")

    def __repr__(self):
        return f"<FlashTarget {self.name}>"


def refusal(device, rule, why) -> BareflowError:
    """The error every target raises when a check refuses `device`: names the device and the rule."""
    return BareflowError(f"refusing to flash {device}: [{rule}] {why}")


def human_size(n):
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
