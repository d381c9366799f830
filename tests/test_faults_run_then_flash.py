"""Issue 8, kind 7: a user's ordinary sequence of commands works.

`scons image`, `scons run`, then `scons flash DEVICE=...` failed with "the bmap is stale":
the booted kernel wrote /PROFILE.BIN into build/bareflow.img.  Now `scons run` boots a copy
(BUILD_DIR/run/bareflow.img) and says so, `scons profile` reads the profile from that copy, and
the build's image and block map stay as built.  A user's own image (IMAGE=...) is booted in
place and the block map beside it is rewritten to match.  The sequence is tested as typed,
not on copies prepared by the test.
"""
import shutil

from bareflow.image import blockmap

from bareflow.policy import profile
from buildutil import need, scons


def test_image_run_flash_sequence(default_build, tmp_path):
    need("qemu-system-x86_64")
    build = default_build.dir
    before = default_build.image.read_bytes()
    bmap_before = (build / "bareflow.bmap").read_bytes()
    scons(build, "image")
    run = scons(build, "run", timeout=900).stdout
    assert "BAREFLOW-RESULT" in run
    copy = build / "run" / "bareflow.img"
    assert f"this run's /PROFILE.BIN is in {copy}" in run
    # The build's image and its block map are as built; the copy holds the run's profile.
    assert default_build.image.read_bytes() == before and (build / "bareflow.bmap").read_bytes() == bmap_before
    blockmap.verify_image(blockmap.read_bmap(build / "bareflow.bmap"), default_build.image, full=True)
    prof = profile.decode_profile(profile.extract_profile(copy))
    assert prof.tokens > 0
    stick = tmp_path / "stick.img"
    out = scons(build, "flash", f"DEVICE={stick}", "FLASH_TARGET=file", "YES=1").stdout
    assert "verif" in out.lower() and "stale" not in out
    assert stick.read_bytes()[:len(before)] == before
    out = scons(build, "profile").stdout
    assert f"reading the profile of the last `scons run` from {copy}" in out


def test_run_of_a_users_image_keeps_its_block_map_true(default_build, tmp_path):
    need("qemu-system-x86_64")
    image, bmap = tmp_path / "mine.img", tmp_path / "mine.bmap"
    shutil.copy(default_build.image, image)
    shutil.copy(default_build.dir / "bareflow.bmap", bmap)
    out = scons(default_build.dir, "run", f"IMAGE={image}", timeout=900).stdout
    assert "BAREFLOW-RESULT" in out and f"{bmap} was updated to match" in out
    assert profile.decode_profile(profile.extract_profile(image)).tokens > 0
    blockmap.verify_image(blockmap.read_bmap(bmap), image, full=True)
    stick = tmp_path / "stick.img"
    scons(default_build.dir, "flash", f"IMAGE={image}", f"DEVICE={stick}", "FLASH_TARGET=file", "YES=1")
