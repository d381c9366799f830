"""BareFlow build system: the public plugin API.

Everything a third-party plugin needs is importable from here (docs/hooks.md):

  hookimpl, hookspec        pluggy markers for the hooks in bareflow.hookspecs
  BareflowError             raise it to stop the build with a message naming the culprit
  Variable                  a build variable a plugin declares (bareflow_add_variables)
  LayerInfo, Decision, Policy, Profile, LayerProfile     JIT policies (docs/policies.md)
  LibcProvider              libc providers (docs/libc.md)
  Bootloader                bootloaders that go on the image (docs/image-layout.md)
  FlashTarget, Capabilities, DeviceInfo, FlashReport, FlashContext   flash targets (docs/flashing.md)

The sub-packages behind it follow the build's steps (docs/architecture.md) and are private:
their names may change between releases.  This module stays import-light: the public types are
loaded on first use, so `import bareflow` in a plugin pulls in neither numpy nor llvmlite.
"""
import importlib

import pluggy

from bareflow.errors import BareflowError
from bareflow.hookspecs import PROJECT, hookspec

__version__ = "0.2.0"

hookimpl = pluggy.HookimplMarker(PROJECT)

# Public name -> the private module that defines it (loaded on first access, PEP 562).
_LAZY = {
    "Variable": "bareflow.core.variables",
    "LayerInfo": "bareflow.policy.api",
    "Decision": "bareflow.policy.api",
    "Policy": "bareflow.policy.api",
    "Profile": "bareflow.policy.profile",
    "LayerProfile": "bareflow.policy.profile",
    "LibcProvider": "bareflow.libc.selection",
    "Bootloader": "bareflow.image.bootloader",
    "FlashTarget": "bareflow.flash.target",
    "Capabilities": "bareflow.flash.target",
    "DeviceInfo": "bareflow.flash.target",
    "FlashReport": "bareflow.flash.target",
    "FlashContext": "bareflow.flash.target",
}

__all__ = ["BareflowError", "hookimpl", "hookspec", "__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bareflow' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
