"""Safety rules of the raw flash target, each against a fake sysfs/procfs tree, plus confirmation."""
import errno
import io
import os

import pytest

from bareflow.errors import BareflowError
from bareflow import FlashContext
from bareflow.flash.api import flash_image
from bareflow.flash.raw import RawTarget
from bareflow.flash.safety import DeviceFacts, gather_facts, refusals
from test_flash_support import FakeSys, make_image

MiB = 1 << 20
STICK = 64 * MiB


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return make_image(tmp_path_factory.mktemp("img") / "bareflow.img")


@pytest.fixture
def fake(tmp_path):
    fs = FakeSys(tmp_path / "root")
    fs.add_disk("sdb", "8:16", STICK, partitions=[("sdb1", "8:17", STICK - MiB)])
    fs.add_disk("sda", "8:0", 512 * 1024 * MiB, removable=False, model="Samsung SSD",
                vendor="ATA", partitions=[("sda1", "8:1", 512 * MiB), ("sda2", "8:2", 100 * 1024 * MiB)],
                parent_dir="sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block")
    return fs


def check(fake, image, device="/dev/sdb", **kw):
    ctx = FlashContext(sysroot=fake.root, **kw)
    return RawTarget().check(device, image, ctx)


def refused(fake, image, rule, device="/dev/sdb", **kw):
    with pytest.raises(BareflowError) as e:
        check(fake, image, device, **kw)
    msg = str(e.value)
    assert f"[{rule}]" in msg, msg
    assert device in msg
    return msg


def test_clean_removable_stick_passes(fake, image):
    info = check(fake, image)
    assert info.size == STICK and info.removable is True
    assert info.model == "SanDisk Ultra"
    assert info.partitions == ["sdb1 63.0 MiB"]
    assert info.facts.name == "sdb" and info.facts.devnum == "8:16"


def test_mounted_disk_refused(fake, image):
    fake.mount("/dev/sdb", "/media/stick")
    assert "/media/stick" in refused(fake, image, "mounted")


def test_mounted_partition_refused(fake, image):
    fake.mount("/dev/sdb1", "/media/my stick")
    msg = refused(fake, image, "mounted")
    assert "/dev/sdb1 is mounted on /media/my stick" in msg      # octal-escaped space decoded


def test_mount_through_device_mapper_refused(fake, image):
    fake.add_dm("dm-3", "254:3", ["sdb1"])
    fake.mount("/dev/dm-3", "/mnt/crypt")
    msg = refused(fake, image, "mounted")
    assert "[in-use]" in msg and "dm-3" in msg


def test_proc_mounts_fallback_and_missing_mount_table(fake, image):
    fake.mount("/dev/sdb1", "/media/stick")
    os.rename(os.path.join(fake.root, "proc/self/mounts"), os.path.join(fake.root, "proc/mounts"))
    refused(fake, image, "mounted")
    os.unlink(os.path.join(fake.root, "proc/mounts"))
    with pytest.raises(BareflowError, match=r"cannot read .*mounts: refusing to flash without knowing"):
        check(fake, image)


def test_disk_holding_root_refused(fake, image):
    fake.mount("/dev/sda2", "/", "ext4")
    msg = refused(fake, image, "system-disk", device="/dev/sda", force_non_removable=True)
    assert "/ is mounted from it" in msg


def test_disk_holding_boot_refused(fake, image):
    fake.mount("/dev/sda1", "/boot", "ext4")
    msg = refused(fake, image, "system-disk", device="/dev/sda", force_non_removable=True)
    assert "/boot" in msg
    fake.mounts.clear()
    fake.mount("/dev/sda1", "/boot/efi")
    assert "/boot/efi" in refused(fake, image, "system-disk", device="/dev/sda", force_non_removable=True)


def test_root_on_lvm_found_through_slaves(fake, image):
    fake.add_dm("dm-0", "254:0", ["sda2"])
    fake.mount("/dev/mapper/vg-root", "/", "ext4")      # name unknown to sysfs: found by devnum
    fake.write_mountinfo([("254:0", "/", "/dev/mapper/vg-root")])
    msg = refused(fake, image, "system-disk", device="/dev/sda", force_non_removable=True)
    assert "[in-use]" in msg


def test_mountinfo_dev_root_found_by_device_number(fake, image):
    # Embedded systems list the root as /dev/root, which names no device: the number does.
    fake.write_mountinfo([("8:17", "/", "/dev/root")])
    msg = refused(fake, image, "system-disk")
    assert "[mounted]" in msg


def test_too_small_refused(fake, image):
    fake.add_disk("sdc", "8:32", 8 * MiB)
    msg = refused(fake, image, "too-small", device="/dev/sdc")
    assert str(8 * MiB) in msg and str(os.path.getsize(image)) in msg


def test_no_medium_refused(fake, image):
    fake.add_disk("sdd", "8:48", 0)
    refused(fake, image, "no-medium", device="/dev/sdd")


def test_non_removable_refused_without_override(fake, image):
    fake.add_disk("sde", "8:64", STICK, removable=False, model="Portable HDD")
    msg = refused(fake, image, "non-removable", device="/dev/sde")
    assert "FORCE_NON_REMOVABLE=1" in msg


def test_non_removable_passes_with_override(fake, image):
    fake.add_disk("sde", "8:64", STICK, removable=False, model="Portable HDD")
    info = check(fake, image, "/dev/sde", force_non_removable=True)
    assert info.removable is False
    assert any("FORCE_NON_REMOVABLE" in n for n in info.notes)


def test_holders_mean_in_use(fake, image):
    fake.add_dm("md0", "9:0", ["sdb"])
    msg = refused(fake, image, "in-use")
    assert "/dev/sdb is held by md0" in msg


def test_partition_given_instead_of_disk(fake, image):
    msg = refused(fake, image, "partition", device="/dev/sdb1")
    assert "/dev/sdb" in msg


def test_read_only_refused(fake, image):
    fake.add_disk("sdf", "8:80", STICK, ro=True)
    refused(fake, image, "read-only", device="/dev/sdf")


def test_unknown_path_is_not_a_block_device(fake, image):
    open(os.path.join(fake.root, "dev", "notes.txt"), "w").close()
    refused(fake, image, "not-block-device", device="/dev/notes.txt")
    with pytest.raises(BareflowError, match=r"\[missing\]"):
        check(fake, image, "/dev/sdz")


def test_by_id_symlink_resolves_to_disk(fake, image):
    os.makedirs(os.path.join(fake.root, "dev/disk/by-id"))
    os.symlink("../../sdb", os.path.join(fake.root, "dev/disk/by-id/usb-SanDisk_Ultra"))
    fake.mount("/dev/sdb1", "/media/x")
    msg = refused(fake, image, "mounted", device="/dev/disk/by-id/usb-SanDisk_Ultra")
    assert "/dev/sdb1" in msg


def test_every_broken_rule_is_listed(fake, image):
    fake.add_disk("sdg", "8:96", 4 * MiB, removable=False)
    fake.mount("/dev/sdg", "/srv")
    msg = refused(fake, image, "mounted", device="/dev/sdg")
    for rule in ("too-small", "non-removable"):
        assert f"[{rule}]" in msg


# -- the pure rule function, including what a fake tree cannot show ----------------------------
def facts(**kw):
    base = dict(device="/dev/sdx", name="sdx", is_block_node=True, size=STICK, removable=True)
    base.update(kw)
    return DeviceFacts(**base)


def rules(f, image_size=MiB, force=False):
    return [r.rule for r in refusals(f, image_size, force)]


def test_pure_rules():
    assert rules(facts()) == []
    assert rules(facts(exclusive_errno=errno.EBUSY)) == ["busy"]
    assert "EBUSY" in refusals(facts(exclusive_errno=errno.EBUSY), MiB)[0].message
    assert rules(facts(is_block_node=False)) == ["not-block-device"]
    assert rules(facts(is_block_node=False, simulated=True)) == []
    assert rules(facts(name=None)) == ["not-block-device"]
    assert rules(facts(size=MiB - 512)) == ["too-small"]
    assert rules(facts(size=MiB)) == []
    assert rules(facts(removable=False)) == ["non-removable"]
    assert rules(facts(removable=False), force=True) == []
    assert rules(facts(system_mounts=["/"], mounts=[("sdx", "/")])) == ["system-disk", "mounted"]
    assert rules(facts(holders={"sdx1": ["dm-0"]})) == ["in-use"]
    assert rules(facts(is_partition=True, parent="sdx")) == ["partition"]


# -- the real machine ---------------------------------------------------------------------------
def test_real_system_disk_is_refused(image):
    """The disk backing this machine's "/" (when it is a block device) must be refused."""
    root_dev = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if parts[4] == "/":
                root_dev = parts[2]
    link = f"/sys/dev/block/{root_dev}"
    if not root_dev or not os.path.exists(link):
        pytest.skip(f"/ is not on a block device here (device {root_dev})")
    sysdir = os.path.realpath(link)
    name = os.path.basename(sysdir)
    if os.path.exists(os.path.join(sysdir, "partition")):
        name = os.path.basename(os.path.dirname(sysdir))
    node = f"/dev/{name}"
    if not os.path.exists(node):
        pytest.skip(f"{node} has no device node in this container")
    f = gather_facts(node)
    found = rules(f, os.path.getsize(image), force=True)
    assert "system-disk" in found, (node, found)
    assert not os.access(node, os.W_OK) or "busy" in found or "mounted" in found


# -- confirmation -------------------------------------------------------------------------------
class Tty(io.StringIO):
    def isatty(self):
        return True


def flash_fake(fake, image, answer, interactive=True, assume_yes=False):
    out = Tty()
    asked = []

    def ask(prompt):
        asked.append(prompt)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    ctx = FlashContext(sysroot=fake.root, input_fn=ask, interactive=interactive, out=out,
                       assume_yes=assume_yes, quiet=True)
    return flash_image(image, "/dev/sdb", "raw", ctx=ctx), out.getvalue(), asked


def stick_bytes(fake):
    with open(os.path.join(fake.root, "dev", "sdb"), "rb") as f:
        return f.read()


@pytest.fixture
def filled(fake):
    path = os.path.join(fake.root, "dev", "sdb")
    with open(path, "r+b") as f:
        f.write(os.urandom(4096))
    return fake


def test_confirmation_yes_writes(filled, image):
    report, shown, asked = flash_fake(filled, image, "YES")
    assert report.verified and report.target == "raw"
    assert "SanDisk Ultra" in shown and "sdb1" in shown and "64.0 MiB" in shown
    assert len(asked) == 1 and "Type YES to write bareflow.img to /dev/sdb" in asked[0]
    with open(image, "rb") as f:
        assert stick_bytes(filled)[:512] == f.read(512)


@pytest.mark.parametrize("answer", ["yes", "", "YES please", EOFError()])
def test_confirmation_declined_writes_nothing(filled, image, answer):
    before = stick_bytes(filled)
    with pytest.raises(BareflowError, match=r"cancelled: \[declined\]"):
        flash_fake(filled, image, answer)
    assert stick_bytes(filled) == before


def test_no_tty_and_no_yes_refused(filled, image):
    before = stick_bytes(filled)
    with pytest.raises(BareflowError, match=r"\[no-confirmation\].*YES=1"):
        flash_fake(filled, image, "YES", interactive=False)
    assert stick_bytes(filled) == before


def test_assume_yes_skips_the_question(filled, image):
    report, shown, asked = flash_fake(filled, image, "no", interactive=False, assume_yes=True)
    assert asked == [] and report.verified


def test_refusal_happens_before_any_byte(filled, image):
    filled.mount("/dev/sdb1", "/media/stick")
    before = stick_bytes(filled)
    with pytest.raises(BareflowError, match=r"\[mounted\]"):
        flash_fake(filled, image, "YES")
    assert stick_bytes(filled) == before
