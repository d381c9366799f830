"""Built-in plugin: the base clang flags of every layer module (freestanding x86-64, ring 0).

The bareflow_module_cflags list starts empty; this implementation runs first (tryfirst: pluggy
otherwise calls the plugin registered last first) and puts the freestanding flags in, so every
other plugin sees them and may add to, change or drop any of them (docs/hooks.md).
"""
from bareflow import hookimpl
from bareflow.bitcode.toolchain import FREESTANDING_CFLAGS


@hookimpl(tryfirst=True)
def bareflow_module_cflags(cflags):
    cflags[:0] = FREESTANDING_CFLAGS
