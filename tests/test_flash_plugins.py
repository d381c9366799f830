"""Flash targets as plugins: registration through the hook, validation, a third-party target."""
import os
import subprocess
import sys

import pluggy
import pytest

from bareflow import hookspecs
from bareflow.flash import builtin as flash_targets
from bareflow.errors import BareflowError
from bareflow import Capabilities, DeviceInfo, FlashContext, FlashReport, FlashTarget
from bareflow.flash.api import available_targets, flash_image
from bareflow.flash.bmap import load_blockmap
from test_flash_support import make_image

hookimpl = pluggy.HookimplMarker("bareflow")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return make_image(tmp_path_factory.mktemp("img") / "bareflow.img")


def manager(*plugins):
    pm = pluggy.PluginManager("bareflow")
    pm.add_hookspecs(hookspecs)
    pm.register(flash_targets, name="builtin-flash")
    for name, p in plugins:
        pm.register(p, name=name)
    return pm


class Recorder(FlashTarget):
    """Counts what it is asked to write; refuses devices named 'forbidden'."""
    name = "recorder"
    description = "test target"
    capabilities = Capabilities(erase=False, verify=False, sparse_write=True, needs_root=False,
                                accepts="any name except 'forbidden'")
    options = {"label": "a label to record"}

    def __init__(self):
        self.calls = []

    def check(self, device, image, ctx):
        self.calls.append("check")
        if device == "forbidden":
            raise BareflowError(f"refusing to flash {device}: [forbidden] test rule")
        return DeviceInfo(device, device, "test", needs_confirmation=True)

    def write(self, device, image, blockmap, ctx):
        self.calls.append(("write", len(blockmap.ranges), ctx.options.get("label")))
        return FlashReport(self.name, device, image, blockmap.image_size, blockmap.mapped_bytes,
                           0.01, False, blockmap.mapped_bytes, blockmap.source)


def test_builtin_targets_and_capabilities():
    targets = available_targets(manager())
    assert list(targets) == ["file", "raw", "tftp"]
    assert targets["raw"].capabilities.needs_root and targets["raw"].capabilities.sparse_write
    assert not targets["tftp"].capabilities.sparse_write
    assert all(t.capabilities.verify for t in targets.values())
    assert list(available_targets()) == ["file", "raw", "tftp"]        # without a manager


def test_third_party_target_goes_through_check_confirm_write(image):
    rec = Recorder()

    class Plugin:
        @hookimpl
        def bareflow_register_flash_targets(self):
            return [rec]

    pm = manager(("recorder-plugin", Plugin()))
    ctx = FlashContext(assume_yes=True, options={"label": "L"})
    report = flash_image(image, "somewhere", "recorder", plugin_manager=pm, ctx=ctx)
    assert rec.calls == ["check", ("write", len(load_blockmap(image).ranges), "L")]
    assert report.target == "recorder" and report.image_size == os.path.getsize(image)
    with pytest.raises(BareflowError, match=r"\[forbidden\]"):
        flash_image(image, "forbidden", "recorder", plugin_manager=pm, ctx=ctx)
    assert rec.calls[-1] == "check"                                   # no write after a refusal
    with pytest.raises(BareflowError, match=r"\[no-confirmation\]"):
        flash_image(image, "x", "recorder", plugin_manager=pm,
                    ctx=FlashContext(interactive=False))
    assert rec.calls[-1] == "check"


def test_duplicate_name_names_both_plugins():
    class Dup:
        @hookimpl
        def bareflow_register_flash_targets(self):
            t = Recorder()
            t.name = "raw"
            return [t]

    with pytest.raises(BareflowError, match=r"'raw' is registered twice: by plugin builtin-flash and by plugin dup"):
        available_targets(manager(("dup", Dup())))


@pytest.mark.parametrize("bad, why", [
    (object(), "not a bareflow.flash.FlashTarget"),
    ("NAME", "name must be"),
    ("caps", "capabilities must be"),
    ("nocheck", "does not implement check"),
])
def test_invalid_targets_named(bad, why):
    if bad == "NAME":
        bad = Recorder()
        bad.name = "Bad Name"
    elif bad == "caps":
        bad = Recorder()
        bad.capabilities = {"verify": True}
    elif bad == "nocheck":
        class NoCheck(FlashTarget):
            name = "nocheck"

            def write(self, device, image, blockmap, ctx):
                pass
        bad = NoCheck()

    class Plugin:
        @hookimpl
        def bareflow_register_flash_targets(self):
            return [bad]

    with pytest.raises(BareflowError, match=f"from plugin broken: .*{why}"):
        available_targets(manager(("broken", Plugin())))


def test_unknown_target_and_missing_inputs(image, tmp_path):
    with pytest.raises(BareflowError, match=r"unknown FLASH_TARGET 'usb'; available: file, raw, tftp"):
        flash_image(image, "/dev/sdb", "usb")
    with pytest.raises(BareflowError, match=r"no DEVICE given"):
        flash_image(image, "", "raw")
    with pytest.raises(BareflowError, match=r"image .*nothing\.img does not exist"):
        flash_image(tmp_path / "nothing.img", str(tmp_path / "out"), "file")


def test_command_line(image, tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    run = lambda *a: subprocess.run([sys.executable, "-m", "bareflow.flash", *a],
                                    capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    r = run("--list")
    assert r.returncode == 0 and "raw:" in r.stdout and "option pxelinux" in r.stdout
    out = tmp_path / "cli.img"
    r = run("--target", "file", str(out), str(image))
    assert r.returncode == 0, r.stderr
    assert "verified" in r.stdout and out.stat().st_size == os.path.getsize(image)
    r = run("--target", "file", str(out), str(image))                # exists now: needs YES
    assert r.returncode == 1 and "[no-confirmation]" in r.stderr
    r = run("--target", "file", "--yes", str(out), str(image))
    assert r.returncode == 0, r.stderr


def test_scons_entry_point_with_the_build_plugin_manager(image, tmp_path):
    from bareflow.core import manager
    from bareflow.flash.api import flash_from_variables
    pm = manager.load_plugins({}, entry_points=False, environ={})
    assert list(available_targets(pm)) == ["file", "raw", "tftp"]
    out = tmp_path / "scons.img"
    v = {"IMAGE": str(image), "DEVICE": str(out), "FLASH_TARGET": "file", "YES": "0",
         "FORCE_NON_REMOVABLE": ""}
    report = flash_from_variables(pm, v)                  # new file: no question needed
    assert report.verified and out.stat().st_size == os.path.getsize(image)
    with pytest.raises(BareflowError, match=r"YES='maybe': expected a yes/no value"):
        flash_from_variables(pm, dict(v, YES="maybe"))
    with pytest.raises(BareflowError, match=r"FLASH_OPTIONS: 'pxelinux' is not NAME=VALUE"):
        flash_from_variables(pm, dict(v, FLASH_TARGET="tftp", FLASH_OPTIONS="pxelinux"))
    blocked = manager.load_plugins({"BLOCK_PLUGINS": "bareflow.flash.builtin"},
                                   entry_points=False, environ={})
    with pytest.raises(BareflowError, match=r"unknown FLASH_TARGET 'file'; available: none"):
        flash_from_variables(blocked, v)
