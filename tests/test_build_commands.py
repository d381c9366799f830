"""`scons run`, `scons hosted` and `scons flash` as a user types them."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from buildutil import PARTITION_OFFSET, ROOT, need, scons, tool


def test_scons_run_streams_the_serial_console_and_succeeds(default_build, tmp_path):
    image = tmp_path / "run.img"
    image.write_bytes(default_build.image.read_bytes())
    out = scons(default_build.dir, "run", f"IMAGE={image}", timeout=600).stdout
    assert "BAREFLOW-RESULT" in out and "Once upon a time" in out


def test_a_usb_run_does_not_claim_a_profile(default_build):
    # The kernel has no USB storage driver: it said "/PROFILE.BIN not written", and scons then
    # said the run's profile was in build/run/bareflow.img.
    need("qemu-system-x86_64")
    out = scons(default_build.dir, "run", "DISK=usb", timeout=600).stdout
    assert "BAREFLOW-RESULT" in out and "/PROFILE.BIN not written" in out, out[-3000:]
    assert "a DISK=usb run writes no /PROFILE.BIN" in out and "this run's /PROFILE.BIN is in" not in out


def test_scons_run_fails_when_the_kernel_panics(default_build, tmp_path):
    need("qemu-system-x86_64")
    from test_build_corruption import _patch
    image = tmp_path / "bad.img"
    image.write_bytes(default_build.image.read_bytes())
    _patch(image, "/BAREFLOW.CFG", 0, b"bogus = 1\n#")      # the kernel refuses its config
    proc = scons(default_build.dir, "run", f"IMAGE={image}", "QEMU_TIMEOUT=120", check=False, timeout=300)
    assert proc.returncode != 0
    assert "bareflow: error:" in proc.stdout
    assert "BAREFLOW-PANIC" in proc.stdout                    # the serial console was streamed
    assert "the kernel failed: QEMU exit status 3 (kernel code 1)" in proc.stdout, proc.stdout[-2000:]


def test_scons_run_gives_up_on_a_hung_boot(default_build, tmp_path):
    need("qemu-system-x86_64")
    image = tmp_path / "hang.img"
    data = bytearray(default_build.image.read_bytes())
    # wipe the partition's boot sector: the MBR code finds nothing to start and waits forever
    data[PARTITION_OFFSET:PARTITION_OFFSET + 512] = bytes(512)
    image.write_bytes(bytes(data))
    proc = scons(default_build.dir, "run", f"IMAGE={image}", "QEMU_TIMEOUT=5", check=False, timeout=120)
    assert proc.returncode != 0
    assert "bareflow: error: QEMU did not finish within 5 s (QEMU_TIMEOUT)" in proc.stdout
    assert "the serial console stayed silent: the image may not be bootable" in proc.stdout


def test_scons_flash_to_a_file_target(default_build, tmp_path):
    need("fsck.fat", "mcopy")
    target = tmp_path / "stick.img"
    out = scons(default_build.dir, "flash", f"DEVICE={target}", "FLASH_TARGET=file", "YES=1").stdout
    assert "verif" in out.lower()
    flashed = target.read_bytes()
    image = default_build.image.read_bytes()
    assert len(flashed) >= len(image) and flashed[:512] == image[:512]
    part = tmp_path / "part.img"
    part.write_bytes(flashed[PARTITION_OFFSET:len(image)])
    proc = subprocess.run([tool("fsck.fat"), "-n", str(part)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_scons_flash_refuses_the_system_disk(default_build):
    import os
    root_dev = None
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            dev, mnt = line.split()[:2]
            if mnt == "/" and dev.startswith("/dev/"):
                root_dev = dev
    if root_dev is None or not os.path.exists(root_dev):
        import pytest
        pytest.skip("the root filesystem is not on a /dev block device here")
    proc = scons(default_build.dir, "flash", f"DEVICE={root_dev}", "YES=1", "FORCE_NON_REMOVABLE=1", check=False)
    assert proc.returncode != 0 and "bareflow: error:" in proc.stdout


def test_scons_run_names_a_bad_qemu_timeout(tmp_path):
    image = tmp_path / "any.img"
    image.write_bytes(bytes(512))
    proc = scons(tmp_path / "b", "run", f"IMAGE={image}", "QEMU_TIMEOUT=soon", check=False)
    assert proc.returncode != 0 and "QEMU_TIMEOUT='soon'" in proc.stdout, proc.stdout[-2000:]
    assert "Traceback" not in proc.stdout


def test_scons_run_of_a_missing_image_says_what_to_do(tmp_path):
    # Was SCons's own "Source `/x.img' not found, needed by target `run'."
    missing = tmp_path / "nope.img"
    proc = scons(tmp_path / "b", "run", f"IMAGE={missing}", check=False)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert f"error: IMAGE={missing}: no such image file; name a built image, or leave IMAGE out" \
        in proc.stdout and "Source `" not in proc.stdout


def test_a_bare_flash_flashes_the_image_as_it_was_built(tmp_path):
    """`scons image STEPS=7` then `scons flash DEVICE=…`: the image built with STEPS=7 is flashed,
    not a rebuild with the defaults; naming an image variable builds that image instead."""
    build = tmp_path / "build"
    scons(build, "image", "STEPS=7", "PROMPT=remembered")
    built = (build / "bareflow.img").read_bytes()
    assert json.loads((build / "image-settings.json").read_text()) == {"PROMPT": "remembered", "STEPS": "7"}
    out = scons(build, "flash", f"DEVICE={tmp_path / 'a.img'}", "FLASH_TARGET=file", "YES=1").stdout
    assert "flash uses the variables the image in" in out and "PROMPT=remembered STEPS=7" in out, out
    assert (build / "bareflow.img").read_bytes() == built == (tmp_path / "a.img").read_bytes()
    # IMAGE= naming the build's own image is that image too (it was rebuilt with the defaults).
    out = scons(build, "flash", f"IMAGE={build / 'bareflow.img'}", f"DEVICE={tmp_path / 'c.img'}",
                "FLASH_TARGET=file", "YES=1").stdout
    assert "PROMPT=remembered STEPS=7" in out, out
    assert (build / "bareflow.img").read_bytes() == built == (tmp_path / "c.img").read_bytes()
    out = scons(build, "flash", "STEPS=9", f"DEVICE={tmp_path / 'b.img'}", "FLASH_TARGET=file", "YES=1").stdout
    assert "uses the variables" not in out, out
    assert (tmp_path / "b.img").read_bytes() != built
    assert json.loads((build / "image-settings.json").read_text()) == {"STEPS": "9"}


def _qemu_running_on(image):
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"qemu-system-x86_64") and any(str(image).encode() in a for a in args):
            return True
    return False


def test_a_signal_to_scons_run_stops_qemu(default_build, tmp_path):
    """A job killer that signals only scons must not leave QEMU running until QEMU_TIMEOUT."""
    need("qemu-system-x86_64")
    image = tmp_path / "silent.img"
    image.write_bytes(bytes(4 << 20))                      # nothing to boot: QEMU would wait
    proc = subprocess.Popen([sys.executable, "-m", "SCons", f"BUILD_DIR={default_build.dir}", "run",
                             f"IMAGE={image}", "QEMU_TIMEOUT=300"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120                     # wait until QEMU runs (a loaded machine is slow)
    while not _qemu_running_on(image) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert _qemu_running_on(image), "QEMU never started"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "bareflow: error: interrupted by SIGTERM: QEMU was stopped" in out, out[-2000:]
    assert not _qemu_running_on(image)
