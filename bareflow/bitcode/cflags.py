"""Built-in plugin: the base clang flags of every layer module (freestanding x86-64, ring 0).

The bareflow_module_cflags list starts empty; this plugin, registered before any third-party
plugin, puts the freestanding flags in first, so a later plugin sees them and may add to, change
or drop any of them (docs/hooks.md).
"""
from bareflow import hookimpl
from bareflow.bitcode.toolchain import FREESTANDING_CFLAGS


@hookimpl
def bareflow_module_cflags(cflags):
    cflags[:0] = FREESTANDING_CFLAGS
