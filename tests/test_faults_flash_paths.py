"""Issue 8, kind 6: every flash target refuses a bad path before the first byte is written.

The example: `python -m bareflow.flash --target file --yes OUT/` passed the checks and
then raised IsADirectoryError while writing.  Each kind of bad path below must end in
"refusing to flash PATH: [rule] ..." from the target's checks, with nothing created or changed
on disk, for the file target and (where the kind applies) the tftp and raw targets.
"""
import os
import subprocess
import sys

import pytest

from bareflow.errors import BareflowError
from bareflow.flash import FlashContext, flash_image
from test_flash_support import make_image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return make_image(tmp_path_factory.mktemp("img") / "bareflow.img")


def snapshot(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            out[p] = None if os.path.isdir(p) or os.path.islink(p) else open(p, "rb").read()
    return out


def bad_file_paths(tmp):
    """(kind, path, rule) for the file target; every path is built inside `tmp`."""
    (tmp / "afile").write_bytes(b"keep")
    (tmp / "adir").mkdir()
    (tmp / "locked").mkdir()
    os.chmod(tmp / "locked", 0o555)
    os.symlink(tmp / "nowhere" / "x.img", tmp / "dangling")
    os.symlink(tmp / "loop2", tmp / "loop1")
    os.symlink(tmp / "loop1", tmp / "loop2")
    return [
        ("trailing slash on a new name (the issue's example)", f"{tmp}/OUT/", "trailing-slash"),
        ("trailing slash on an existing file", f"{tmp}/afile/", "trailing-slash"),
        ("trailing /. on a new name", f"{tmp}/OUT/.", "trailing-slash"),
        ("an existing directory", f"{tmp}/adir", "directory"),
        ("an existing directory with a slash", f"{tmp}/adir/", "directory"),
        ("a file used as a directory", f"{tmp}/afile/x.img", "component-not-directory"),
        ("a missing parent directory", f"{tmp}/missing/x.img", "no-directory"),
        ("a name too long", f"{tmp}/{'n' * 300}.img", "name-too-long"),
        ("a dangling symlink", f"{tmp}/dangling", "dangling-symlink"),
        ("a symlink loop", f"{tmp}/loop1", "symlink-loop"),
        ("an empty path", "", None),
        ("a NUL byte", f"{tmp}/a\0b.img", "nul-byte"),
        ("a character device", "/dev/null", "not-regular"),
    ] + ([("a directory without write permission", f"{tmp}/locked/x.img", "not-writable")]
         if os.geteuid() != 0 else [])


def test_file_target_refuses_every_kind_of_bad_path(image, tmp_path):
    cases = bad_file_paths(tmp_path)
    before = snapshot(tmp_path)
    for kind, path, rule in cases:
        with pytest.raises(BareflowError) as e:
            flash_image(image, path, "file", ctx=FlashContext(assume_yes=True, quiet=True))
        expect = f"[{rule}]" if rule else "no DEVICE given"     # an empty path is caught before the target
        assert expect in str(e.value), (kind, str(e.value))
        assert snapshot(tmp_path) == before, f"{kind}: something was written"


def test_the_issues_command_line_names_the_rule(image, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bareflow.flash", "--target", "file", "--yes",
                           f"{tmp_path}/OUT/", str(image)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1, proc.stderr
    assert "[trailing-slash]" in proc.stderr and "Traceback" not in proc.stderr and \
        "Is a directory" not in proc.stderr, proc.stderr
    assert not os.path.exists(tmp_path / "OUT")


@pytest.mark.parametrize("kind, make, rule", [
    ("a file used as a directory", lambda t: (t / "f").write_bytes(b"") or f"{t}/f/tftp", "component-not-directory"),
    ("an existing file", lambda t: (t / "g").write_bytes(b"") or f"{t}/g", "not-directory"),
    ("a NUL byte", lambda t: f"{t}/a\0b", "nul-byte"),
    ("a missing parent", lambda t: f"{t}/no/such/dir", "no-directory"),
])
def test_tftp_target_refuses_bad_paths(image, tmp_path, kind, make, rule):
    path = make(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(BareflowError) as e:
        flash_image(image, path, "tftp", ctx=FlashContext(assume_yes=True, quiet=True))
    assert f"[{rule}]" in str(e.value), (kind, str(e.value))
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("path, rule", [("/dev/sd\0a", "nul-byte")])
def test_raw_target_refuses_bad_paths(image, path, rule):
    with pytest.raises(BareflowError) as e:
        flash_image(image, path, "raw", ctx=FlashContext(assume_yes=True, quiet=True))
    assert f"[{rule}]" in str(e.value), str(e.value)
