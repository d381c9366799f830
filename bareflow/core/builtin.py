"""The plugins BareFlow ships with, registered before any third-party plugin.

Each entry is an importable module implementing hooks from bareflow.hookspecs.
They are ordinary plugins: BLOCK_PLUGINS=<module name> removes one so that a third-party
plugin can replace it.  Order matters only for display and for hooks whose implementations
run in registration order.
"""

# Registered before everything and never blocked: the variables every pipeline step reads.
CORE_PLUGIN = "bareflow.core.build"

BUILTIN_PLUGINS = [
    "bareflow.bitcode.cflags",
    "bareflow.policy.builtin",
    "bareflow.image.payload",
    "bareflow.image.bootconfig",
    "bareflow.image.syslinux",
    "bareflow.image.uefi",
    "bareflow.libc.project",
    "bareflow.libc.llvm_libc",
    "bareflow.boot.qemu",
    "bareflow.flash.builtin",
]
