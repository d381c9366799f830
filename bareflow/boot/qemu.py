"""Step 9 of the pipeline: booting an image in QEMU, and the built-in plugin behind `scons run`.

The one place the QEMU command line is put together: `scons run`, the tests and the benchmarks
all use `qemu_command` / `run_qemu`, so a change (firmware path, exit device, storage wiring)
reaches every boot at once.  The kernel leaves QEMU through the isa-debug-exit device: status
(code << 1) | 1, so EXIT_SUCCESS (33) is the kernel's code 0x10 (docs/kernel-boot.md).
"""
from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass

from bareflow import hookimpl
from bareflow.core.variables import Variable, parse_int
from bareflow.errors import BareflowError

QEMU = "qemu-system-x86_64"
OVMF = "/usr/share/ovmf/OVMF.fd"              # Debian package ovmf
EXIT_SUCCESS = 33                             # the kernel wrote 0x10 to the exit port
EXIT_PANIC = (1 << 1) | 1                     # BF_EXIT_PANIC (code 1)
FIRMWARES = ("bios", "uefi")
DISKS = ("ide", "usb")
MAX_SMP = 64                                  # BF_MAX_CORES (src/runtime/rt.h)


@hookimpl
def bareflow_register_variables():
    return [
        Variable("SMP", "virtual CPUs `scons run` gives QEMU (-smp), with multi-threaded TCG when QEMU "
                 "has it", "2", kind="int", low=1, high=MAX_SMP),
        Variable("FIRMWARE", "firmware for `scons run`", "bios", kind="enum", allowed=FIRMWARES),
        Variable("DISK", "how `scons run` attaches the image (usb: usb-storage on xHCI)", "ide",
                 kind="enum", allowed=DISKS),
        Variable("QEMU_TIMEOUT", "seconds before `scons run` gives up on QEMU", "600"),
        Variable("QEMU_CPU", "CPU model `scons run` gives QEMU (-cpu); empty: `max` when every ISA level of "
                 "the build's image needs more than QEMU's default CPU (x86-64-v2 and up), else QEMU's default",
                 ""),
    ]


def smp_args(text, name="SMP") -> list[str]:
    """-smp N, plus multi-threaded TCG (one host thread per virtual CPU) when this QEMU accepts it
    for x86 guests; N must be a whole number 1..64 (BareflowError naming `name` otherwise)."""
    n = parse_int(text, name, 1, MAX_SMP, "virtual CPUs")
    args = ["-smp", str(n)]
    if n > 1 and _has_mttcg():
        args += ["-accel", "tcg,thread=multi"]
    return args


@functools.lru_cache(maxsize=None)
def _has_mttcg() -> bool:
    """Ask QEMU once: an empty machine with -accel tcg,thread=multi, told to quit at once."""
    try:
        proc = subprocess.run([QEMU, "-machine", "none", "-nodefaults", "-display", "none",
                               "-accel", "tcg,thread=multi", "-monitor", "stdio"], input=b"quit\n",
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        return proc.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def qemu_command(*, image=None, kernel=None, firmware="bios", disk="ide", memory="256M", cpu=None,
                 smp=None, extra=()) -> list[str]:
    """The qemu-system-x86_64 argument list: headless, serial on stdout, exit device, no reboot.

    image: raw disk image attached as `disk` ("ide" or "usb": usb-storage on xHCI, which the
    kernel sees only through the files the loader handed over); kernel: a multiboot kernel for
    QEMU's -kernel; firmware "bios" (SeaBIOS) or "uefi" (OVMF); cpu: a -cpu model; extra: more
    arguments, appended last; smp: virtual CPUs (-smp, multi-threaded TCG where QEMU has it).  BareflowError names FIRMWARE or DISK for an unknown value.
    """
    cmd = [QEMU, "-display", "none", "-serial", "stdio", "-no-reboot", "-m", memory,
           "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
    if cpu:
        cmd += ["-cpu", cpu]
    if smp is not None:
        cmd += smp_args(smp)
    if firmware == "uefi":
        cmd += ["-bios", OVMF]
    elif firmware != "bios":
        raise BareflowError(f"FIRMWARE={firmware!r}: expected one of {', '.join(FIRMWARES)}")
    if image is not None:
        if disk == "ide":
            cmd += ["-drive", f"file={image},format=raw,if=ide"]
        elif disk == "usb":
            cmd += ["-drive", f"if=none,id=stick,file={image},format=raw",
                    "-device", "qemu-xhci", "-device", "usb-storage,drive=stick"]
        else:
            raise BareflowError(f"DISK={disk!r}: expected one of {', '.join(DISKS)}")
    if kernel is not None:
        cmd += ["-kernel", str(kernel)]
    return cmd + [str(a) for a in extra]


class QemuTimeout(BareflowError):
    """QEMU ran past its time limit; `serial` holds what the console printed until then."""

    def __init__(self, seconds: float, serial: str, silent: bool = False):
        self.seconds, self.serial, self.silent = seconds, serial, silent
        tail = f"; serial so far:\n{serial[-3000:]}" if serial else ""
        super().__init__(f"QEMU did not finish within {seconds:g} s{tail}")


class ConsoleFilter:
    """Drops terminal control sequences from a serial console byte stream, fed in chunks.

    OVMF drives its console as a VT100 terminal (ECMA-48 CSI sequences such as ESC [2J to clear
    the screen, ESC [01;01H to move the cursor, ESC [=3h, SGR colours); copied to a user's
    terminal they wipe the screen, in a log or a pipe they are noise around the kernel's lines.
    The kernel itself prints plain text.  A sequence cut by a chunk boundary is held back until
    the next chunk completes it; an ESC that starts no sequence within 32 bytes passes through."""

    _SEQUENCE = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")
    _HOLD = 32

    def __init__(self):
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        """The text of `chunk` (bytes) without complete control sequences."""
        data = self._pending + chunk
        self._pending = b""
        cut = data.rfind(b"\x1b")
        if cut != -1 and len(data) - cut < self._HOLD and not self._SEQUENCE.match(data, cut):
            data, self._pending = data[:cut], data[cut:]
        return self._SEQUENCE.sub(b"", data)

    def flush(self) -> bytes:
        """Whatever was held back (an unfinished sequence at the end of the stream)."""
        rest, self._pending = self._pending, b""
        return rest


def console_text(raw: bytes) -> str:
    """A whole captured console as text: control sequences dropped, CR LF turned into LF."""
    f = ConsoleFilter()
    return (f.feed(raw) + f.flush()).decode("utf-8", "replace").replace("\r\n", "\n")


@dataclass(frozen=True)
class QemuRun:
    status: int          # QEMU's exit status (EXIT_SUCCESS when the kernel finished its run)
    output: str          # the serial console, CR LF turned into LF ("" when streamed)


def run_qemu(cmd, *, timeout: float, capture: bool = True) -> QemuRun:
    """Run `cmd` (from qemu_command) to its end; the serial output is returned or, with
    capture=False, streamed to this process's stdout.

    Raises BareflowError when QEMU is not installed or runs past `timeout` seconds (the message
    carries the last serial output, so a hung kernel shows where it stopped), and, when streaming
    in the main thread, when SIGINT or SIGTERM arrives (QEMU is stopped first, not left running).
    """
    if not capture:
        return _run_streaming(cmd, timeout)
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, timeout=timeout,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except FileNotFoundError:
        raise BareflowError(f"{QEMU} is not installed (Debian package qemu-system-x86)") from None
    except subprocess.TimeoutExpired as exc:
        raise QemuTimeout(timeout, console_text(exc.stdout or b"")) from None
    return QemuRun(proc.returncode, console_text(proc.stdout))


def _run_streaming(cmd, timeout: float) -> QemuRun:
    """run_qemu(capture=False): copy QEMU's output to stdout as it comes (one reader thread), so
    a silent console can be told apart from a slow kernel, and stop QEMU on SIGINT/SIGTERM
    (SCons's own handlers only mark the build interrupted and would wait for QEMU to end)."""
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
    except FileNotFoundError:
        raise BareflowError(f"{QEMU} is not installed (Debian package qemu-system-x86)") from None
    seen = bytearray()                    # the last few KB, for the time-out message
    console = ConsoleFilter()

    def show(text):
        sys.stdout.buffer.write(text)
        sys.stdout.buffer.flush()
        seen.extend(text)
        del seen[:-4096]

    def copy():
        while chunk := os.read(proc.stdout.fileno(), 65536):
            show(console.feed(chunk))
        show(console.flush())
    reader = threading.Thread(target=copy, daemon=True)
    reader.start()
    caught = []

    def stop(signum, _frame):
        caught.append(signal.Signals(signum).name)
        proc.terminate()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        reader.join(5)
        raise QemuTimeout(timeout, bytes(seen).decode("utf-8", "replace").replace("\r\n", "\n"),
                          silent=not seen) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    if caught:
        raise BareflowError(f"interrupted by {caught[0]}: QEMU was stopped")
    return QemuRun(proc.returncode, "")


def parse_timeout(text) -> float:
    """QEMU_TIMEOUT in seconds (a positive number); BareflowError naming the variable otherwise."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is None or not 0 < seconds < float("inf"):
        raise BareflowError(f"QEMU_TIMEOUT={text!r}: expected a positive number of seconds")
    return seconds
