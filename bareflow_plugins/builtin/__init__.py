"""The plugins BareFlow ships with, registered before any third-party plugin.

Each entry is an importable module implementing hooks from bareflow_plugins.hookspecs.
They are ordinary plugins: BLOCK_PLUGINS=<module name> removes one so that a third-party
plugin can replace it.  Order matters only for display and for hooks whose implementations
run in registration order.
"""

BUILTIN_PLUGINS = [
    "bareflow_plugins.builtin.policies",
    "bareflow_plugins.builtin.syslinux",
    "bareflow_plugins.builtin.uefi",
    "bareflow_plugins.builtin.libc_project",
    "bareflow_plugins.builtin.llvm_libc",
    "bareflow_plugins.builtin.flash_targets",
]

# Built-ins that may be absent from an installation (skipped silently when their module does
# not import); any other missing built-in is a broken installation and an error.
OPTIONAL_BUILTINS = set()
