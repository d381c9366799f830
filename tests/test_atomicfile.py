"""bareflow.core.atomicfile: a build output is complete or absent, never half-written."""
import os
import stat

import pytest

from bareflow.core.atomicfile import replace_atomically


def test_the_file_appears_whole_with_its_permissions(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    with replace_atomically(target, permissions=0o640) as fh:
        fh.write(b"first half ")
        assert not target.exists()                # nobody sees it before the block ends
        assert os.path.dirname(fh.name) == str(target.parent)
        fh.write(b"second half")
    assert target.read_bytes() == b"first half second half"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert os.listdir(target.parent) == ["out.bin"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old contents")
    with pytest.raises(RuntimeError, match="disk full"):
        with replace_atomically(target, "w") as fh:
            fh.write("new contents, half of them")
            raise RuntimeError("disk full")
    assert target.read_text() == "old contents"
    assert os.listdir(tmp_path) == ["out.txt"]
