"""Build variables: owned by the plugins that declare them, read with SCons's semantics, and
written to the image exactly as typed."""
import os
import re
import subprocess

import pytest

from buildutil import PARTITION_OFFSET, image_file, need, scons, tool


def help_groups(build_dir, *args, text=None):
    """{plugin: [variable, ...]} from `scons -h` (its output or `text`)."""
    out = text if text is not None else scons(build_dir, "-h", *args).stdout
    groups, current = {}, None
    for line in out.splitlines():
        if re.fullmatch(r"[\w.]+:", line):
            current = groups.setdefault(line[:-1], [])
        elif current is not None and (m := re.match(r"  ([A-Z][A-Z0-9_]*): ", line)):
            current.append(m.group(1))
        elif line.startswith("Targets:"):
            current = None
    return groups


def test_help_shows_each_variable_under_the_plugin_that_declares_it(tmp_path):
    text = scons(tmp_path / "b", "-h").stdout
    groups = help_groups(tmp_path / "b", text=text)
    assert re.search(r"  SPLIT_CYCLES: .* \(integer 0\.\.10\^9\)\n    default: '1500'", text), text
    assert {"MODEL", "POLICY", "ISA", "BUILD_DIR", "CACHE_DIR"} <= set(groups["bareflow.core.build"])
    assert groups["bareflow.policy.builtin"] == ["TIER", "STOP_PROFILING", "PGO_HOT_CALLS", "JIT_COMPILE_CYCLES", "SPLIT_CYCLES"]
    assert groups["bareflow.kernel.jit"] == ["JIT", "JIT_TIMEOUT_MS"]
    assert set(groups["bareflow.image.bootconfig"]) == {"PROMPT", "STEPS", "TEMPERATURE", "TOPP", "SEED", "CHAT", "CORES"}
    assert "FIRMWARE" in groups["bareflow.boot.qemu"] and "DEVICE" in groups["bareflow.flash.builtin"]
    names = [name for group in groups.values() for name in group]
    assert len(names) == len(set(names))                    # each variable has exactly one owner


def test_blocking_a_builtin_removes_its_variables(tmp_path):
    groups = help_groups(tmp_path / "b", "BLOCK_PLUGINS=bareflow.boot.qemu,bareflow.flash.builtin")
    assert "bareflow.boot.qemu" not in groups and "bareflow.flash.builtin" not in groups
    names = {name for group in groups.values() for name in group}
    assert not names & {"FIRMWARE", "DISK", "QEMU_TIMEOUT", "DEVICE", "YES", "FLASH_TARGET"}
    assert "PROMPT" in names


def test_the_core_cannot_be_blocked(tmp_path):
    proc = scons(tmp_path / "b", "-h", "BLOCK_PLUGINS=bareflow.core.build", check=False)
    assert proc.returncode != 0 and "cannot be blocked" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["LIBC_INLINE=maybe"], r"LIBC_INLINE='maybe': expected a yes/no value: y, yes, true"),
    (["FIRMWARE=coreboot"], r"FIRMWARE='coreboot': expected one of bios, uefi"),
    (["TIER=O7", "POLICY=fixed"], r"TIER='O7': expected one of O0, O1, O2, O3"),
    (["PROMT=hello"], r"PROMT is not a build variable of any loaded plugin; did you mean PROMPT\?"),
    (["model=x.gguf"], r"model is not a build variable of any loaded plugin; did you mean MODEL\?"),
    (["PROMPT= leading blank"], r"PROMPT=' leading blank': a value cannot start or end with a blank"),
    (["STEPS=many"], r"STEPS='many': expected an integer in 1\.\.2147483647"),
    (["SPLIT_CYCLES=lots"], r"SPLIT_CYCLES='lots': expected an integer in 0\.\.10\^9"),
    (["PROFILE=/nonexistent/profile.bin"], r"PROFILE='/nonexistent/profile.bin': no such file"),
])
def test_bad_values_are_refused_naming_the_variable(tmp_path, args, message):
    proc = scons(tmp_path / "b", "image", *args, check=False)
    assert proc.returncode == 2, proc.stdout[-2000:]
    assert re.search(message, proc.stdout), proc.stdout[-2000:]
    assert "Traceback" not in proc.stdout
    assert not (tmp_path / "b" / "bareflow.img").exists()


@pytest.mark.parametrize("value", ["", "soon", "-5", "99999999999"])
def test_source_date_epoch_is_checked_once_with_a_message(tmp_path, value):
    proc = scons(tmp_path / "b", "-n", "image", env={"SOURCE_DATE_EPOCH": value}, check=False)
    if value == "":                                   # empty means unset (the documented default)
        assert proc.returncode == 0, proc.stdout[-2000:]
        return
    assert proc.returncode == 2, proc.stdout[-2000:]
    assert "SOURCE_DATE_EPOCH" in proc.stdout and "Traceback" not in proc.stdout


def test_values_reach_the_image_as_typed_and_the_default_epoch_is_documented(tmp_path):
    prompt = "Tom has $5 and   three   cats"
    scons(tmp_path / "b", "image", f"PROMPT={prompt}", "LIBC_INLINE=true", "BOOTLOADERS=syslinux",
          env={"SOURCE_DATE_EPOCH": ""})
    image = tmp_path / "b" / "bareflow.img"
    cfg = image_file(image, "/BAREFLOW.CFG").decode()
    assert f"prompt = {prompt}\n" in cfg
    need("mdir")
    listing = subprocess.run([tool("mdir"), "-i", f"{image}@@{PARTITION_OFFSET}", "::/"], capture_output=True,
                             text=True, env=dict(os.environ, MTOOLS_SKIP_CHECK="1")).stdout
    # README and docs/image-layout.md: builds without SOURCE_DATE_EPOCH are stamped 2024-01-01.
    assert re.search(r"BAREFLOW CFG .*2024-01-01", listing), listing
