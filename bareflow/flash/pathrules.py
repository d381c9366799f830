"""Rules every flash target applies to the path it is given, before the first byte is written.

A path can be wrong in more ways than "missing": empty, with a NUL byte, ending in '/' while the
target writes a file, running through a component that is a file, too long, a symlink loop or a
dangling symlink, in a directory without write permission.  Left to the write itself these came
out as raw OSErrors ("Is a directory", issue 8); here each is a BareflowError
"refusing to flash DEVICE: [rule] why", raised by the target's check().
"""
import errno
import os
import stat

from bareflow.errors import BareflowError

_ERRNO_RULES = {
    errno.ENOTDIR: ("component-not-directory", "a component of the path is not a directory"),
    errno.ENAMETOOLONG: ("name-too-long", "the path or one of its names is too long"),
    errno.ELOOP: ("symlink-loop", "the path runs into a loop of symbolic links"),
    errno.EACCES: ("no-access", "a directory on the path cannot be searched (permission denied)"),
}


def refuse(device, rule, why):
    return BareflowError(f"refusing to flash {device}: [{rule}] {why}")


def check_syntax(device):
    """The rules that need no file system: a non-empty str without NUL bytes."""
    path = os.fspath(device) if not isinstance(device, str) else device
    if not isinstance(path, str) or not path:
        raise refuse(device, "empty-path", "no path given")
    if "\0" in path:
        raise refuse(device, "nul-byte", "the path contains a NUL byte")
    return path


def _stat(device, path):
    """os.stat, or None when nothing is there; other failures become named refusals."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        rule, why = _ERRNO_RULES.get(e.errno, ("unusable-path", e.strerror or str(e)))
        raise refuse(device, rule, why) from None


def check_file_path(device):
    """A path the file target may write: an existing regular file it can write, or a new name
    in an existing, writable directory.  Returns (path, os.stat_result or None)."""
    path = check_syntax(device)
    if os.path.isdir(path):
        raise refuse(device, "directory", "is a directory, not a file")
    if path.endswith(os.sep) or path.endswith(os.sep + ".") or os.path.basename(path) in (".", ".."):
        raise refuse(device, "trailing-slash", "ends with '/' (a directory name) but the file target writes a file")
    st = _stat(device, path)
    if st is None:
        if os.path.islink(path):
            raise refuse(device, "dangling-symlink", f"is a symbolic link to {os.readlink(path)!r}, which does "
                         "not exist; name the file itself")
        parent = os.path.dirname(os.path.abspath(path))
        pst = _stat(device, parent)
        if pst is None or not stat.S_ISDIR(pst.st_mode):
            raise refuse(device, "no-directory", f"directory {parent} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise refuse(device, "not-writable", f"directory {parent} is not writable")
        return path, None
    if stat.S_ISREG(st.st_mode) and not os.access(path, os.W_OK):
        raise refuse(device, "not-writable", "the file is not writable")
    return path, st


def check_directory_path(device):
    """A path the tftp target may fill: an existing writable directory, or a new name in one.
    Returns (path, os.stat_result or None)."""
    path = check_syntax(device)
    st = _stat(device, path)
    if st is None and os.path.islink(path):
        raise refuse(device, "dangling-symlink", f"is a symbolic link to {os.readlink(path)!r}, which does not exist")
    if st is None:
        parent = os.path.dirname(os.path.abspath(path))
        pst = _stat(device, parent)
        if pst is None or not stat.S_ISDIR(pst.st_mode):
            raise refuse(device, "no-directory", f"neither it nor its parent {parent} exists")
    return path, st
