"""Team scale: CACHE_DIR shares built files between checkouts; `scons -c` leaves BUILD_DIR empty."""
import re
import shutil
import subprocess

from buildutil import ROOT, scons


def checkout(dest):
    """A copy of the working tree's tracked and new files, as a fresh clone would have them."""
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split("\n")
    for name in filter(None, names):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def test_a_second_checkout_fetches_every_tier_from_the_cache(tmp_path):
    cache = tmp_path / "cache"
    first = checkout(tmp_path / "first")
    built = scons(first / "build", "image", f"CACHE_DIR={cache}", cwd=first).stdout
    tiers = sorted(set(re.findall(r"TIER\s+\S*/tiers/\S+\.o", built)))
    assert len(tiers) >= 9, built[-2000:]                  # the first build compiled every tier

    second = checkout(tmp_path / "second")
    out = scons(second / "build", "image", f"CACHE_DIR={cache}", cwd=second).stdout
    assert not re.search(r"^\s*TIER\s", out, re.M), out[-3000:]      # nothing was compiled again
    retrieved = set(re.findall(r"Retrieved `([^']*/tiers/[^']*\.o)' from cache", out))
    assert len(retrieved) == len(tiers), out[-3000:]
    assert (first / "build" / "bareflow.img").read_bytes() == (second / "build" / "bareflow.img").read_bytes()


def test_clean_removes_everything_the_build_wrote(tmp_path):
    build = tmp_path / "b"
    scons(build, "image", "hosted")
    assert (build / "kernel" / "KERNEL.BIN.elf").exists() and (build / "uefi").exists()
    scons(build, "-c", "image", "hosted")
    left = sorted(str(p.relative_to(build)) for p in build.rglob("*"))
    assert left == [".sconsign.dblite"], left                         # SCons's own database only
