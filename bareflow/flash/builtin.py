"""Built-in plugin: the raw, file and tftp flash targets and the variables of `scons flash`.

Registered through the same hooks a third-party flash target uses (docs/flashing.md).
"""
from bareflow import hookimpl
from bareflow.core.variables import Variable
from bareflow.flash.filetarget import FileTarget
from bareflow.flash.raw import RawTarget
from bareflow.flash.tftp import TftpTarget


@hookimpl
def bareflow_register_flash_targets():
    return [RawTarget(), FileTarget(), TftpTarget()]


@hookimpl
def bareflow_register_variables():
    return [
        Variable("DEVICE", "device or path for `scons flash`", ""),
        Variable("FLASH_TARGET", "flash target plugin for `scons flash` (see `scons plugins`)", "raw"),
        Variable("FLASH_OPTIONS", "flash target options, name=value,... (see `scons plugins`)", ""),
        Variable("BMAP", "block map for `scons flash` (default: next to IMAGE)", "", kind="path"),
        Variable("YES", "flash without asking for confirmation", "no", kind="bool"),
        Variable("FORCE_NON_REMOVABLE", "allow flashing a non-removable disk", "no", kind="bool"),
    ]
