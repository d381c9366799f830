"""Built-in flash targets, registered through the same hook third-party plugins use."""
import pluggy

from bareflow_plugins.flash.filetarget import FileTarget
from bareflow_plugins.flash.raw import RawTarget
from bareflow_plugins.flash.tftp import TftpTarget

# Same marker as `from bareflow_plugins import hookimpl`; created here so this module does not
# depend on the package initialiser.
hookimpl = pluggy.HookimplMarker("bareflow")


@hookimpl
def bareflow_register_flash_targets():
    return [RawTarget(), FileTarget(), TftpTarget()]
