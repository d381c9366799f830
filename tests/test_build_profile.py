"""Profile persistence: a run writes /PROFILE.BIN in place, `scons profile` extracts it, and
`scons image PROFILE=... POLICY=pgo` hands it to the policy — from one boot to the next build."""
import pytest

from bareflow.policy import table as policytable

from bareflow.policy import profile
from buildutil import QEMU_SUCCESS, hosted, image_file, qemu, result, scons


def _assert_profile_matches_run(prof, run):
    assert prof.tokens == len(run["tokens"])
    for name, layer in run["layers"].items():
        assert list(prof.layer(name).calls) == layer["calls"], name
        assert prof.layer(name).final_tier == layer["tier"], name


def test_qemu_run_writes_profile_in_place_and_pgo_uses_it(default_build, tmp_path):
    image = tmp_path / "run.img"
    image.write_bytes(default_build.image.read_bytes())
    status, out = qemu(image)
    assert status == QEMU_SUCCESS, out[-3000:]
    run = result(out)
    prof = profile.decode_profile(image_file(image, "/PROFILE.BIN"))
    _assert_profile_matches_run(prof, run)

    build = tmp_path / "b"
    extracted = scons(build, "profile", f"IMAGE={image}").stdout
    assert "profile written to" in extracted
    assert (build / "profile.bin").read_bytes() == image_file(image, "/PROFILE.BIN")

    scons(build, "image", "POLICY=pgo", f"PROFILE={build / 'profile.bin'}")
    pgo = policytable.decode(image_file(build / "bareflow.img", "/POLICY.TBL"))
    tiered = policytable.decode(image_file(default_build.image, "/POLICY.TBL"))
    assert pgo != tiered
    # a layer that was hot in the profiled run starts at a tier it was measured at, not at O0
    hot = [name for name, layer in run["layers"].items() if sum(layer["calls"]) >= 30
           and sum(1 for c in layer["calls"] if c) >= 2]
    assert hot and any(pgo[name].ladder[0] != "O0" for name in hot)


def test_profile_from_a_serial_log(default_build, tmp_path):
    """Where the profile cannot be written back (USB boot), the serial result line carries it."""
    image = tmp_path / "h.img"
    image.write_bytes(default_build.image.read_bytes())
    status, out = hosted(default_build.hosted, image)
    assert status == 0, out
    log = tmp_path / "serial.log"
    log.write_text("noise before\n" + out + "noise after\n")
    build = tmp_path / "b"
    scons(build, "profile", f"IMAGE={log}")
    _assert_profile_matches_run(profile.decode_profile((build / "profile.bin").read_bytes()), result(out))
    scons(build, "image", "POLICY=pgo", f"PROFILE={log}")


def test_profile_of_a_garbage_file_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00garbage" * 100)
    proc = scons(tmp_path / "b", "profile", f"IMAGE={junk}", check=False)
    assert proc.returncode != 0 and "junk.bin" in proc.stdout


def test_profile_of_an_unrun_image_is_refused_and_keeps_the_last_one(default_build, tmp_path):
    build = tmp_path / "b"
    build.mkdir()
    kept = build / "profile.bin"
    kept.write_bytes(b"an earlier, good profile")
    proc = scons(build, "profile", f"IMAGE={default_build.image}", check=False)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert f"{default_build.image}: /PROFILE.BIN is empty: no run has written it back" in proc.stdout
    assert kept.read_bytes() == b"an earlier, good profile"
