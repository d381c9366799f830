"""Built-in plugin: the project's own freestanding libc as the default libc provider."""
from pathlib import Path

from bareflow_plugins import hookimpl
from bareflow_plugins.libc import ProjectLibc
from bareflow_plugins.toolchain import FREESTANDING_CFLAGS

LIBC_ROOT = Path(__file__).resolve().parents[2] / "src" / "libc"


@hookimpl
def bareflow_register_libc_providers():
    return [ProjectLibc(LIBC_ROOT, FREESTANDING_CFLAGS)]
