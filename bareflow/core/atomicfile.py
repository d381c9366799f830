"""Writing a build output so that it is either complete or absent.

Every file the build hands to a user or to SCons (the disk image, its block map, the weights
file, a file installed on a TFTP server) is written to a temporary file in the same directory
and renamed over the target only when it is complete: a reader never sees half a file, a
failed or interrupted write leaves the old file as it was, and no temporary file stays behind.
"""
import os
import tempfile
from contextlib import contextmanager


@contextmanager
def replace_atomically(path, mode="wb", *, permissions=0o644, fsync=False):
    """Yield a file object opened with `mode` ("wb", "w+b" or "w") on a temporary file beside
    `path` (its `.name` is that file's path, for tools that write to it by name); when the block
    ends normally the file gets `permissions` (mkstemp's 0600 would hide it from other users),
    is flushed to the disk when `fsync`, and replaces `path` with os.replace.  When the block
    raises, the temporary file is removed and the exception propagates.  Missing parent
    directories are created.  Raises OSError from the file system."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.chmod(tmp, permissions)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
