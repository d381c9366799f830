"""Built-in plugin: the project's own freestanding libc as the default libc provider."""

from bareflow.core.paths import REPO_ROOT
from bareflow import hookimpl
from bareflow.libc.selection import ProjectLibc
from bareflow.bitcode.toolchain import FREESTANDING_CFLAGS

LIBC_ROOT = REPO_ROOT / "src" / "libc"


@hookimpl
def bareflow_register_libc_providers():
    return [ProjectLibc(LIBC_ROOT, FREESTANDING_CFLAGS)]
