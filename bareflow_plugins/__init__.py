"""BareFlow build system: plugin API entry point.

Third-party plugins import `hookimpl` from here to mark their hook implementations
(docs/hooks.md).  This module stays import-light on purpose: `scons plugins` and every
plugin import it, so nothing heavy (numpy, llvmlite) may be pulled in at import time.
"""
import pluggy

from bareflow_plugins.errors import BareflowError
from bareflow_plugins.hookspecs import PROJECT, hookspec

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["BareflowError", "hookimpl", "hookspec", "__version__"]
