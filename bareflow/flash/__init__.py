"""Step 10 of the pipeline: writing an image onto sticks, files and network-boot directories.

Engine: bareflow.flash.api (flash_image, available_targets); the built-in targets are plugins in
bareflow.flash.builtin (raw, file, tftp); docs/flashing.md documents the flow and the block map.
The names below are loaded on first use (PEP 562), so importing a submodule never runs the engine.
"""
import importlib

_LAZY = {
    "flash_image": "bareflow.flash.api", "available_targets": "bareflow.flash.api",
    "load_blockmap": "bareflow.flash.bmap", "BlockMap": "bareflow.image.blockmap",
    "Capabilities": "bareflow.flash.target", "DeviceInfo": "bareflow.flash.target",
    "FlashContext": "bareflow.flash.target", "FlashReport": "bareflow.flash.target",
    "FlashTarget": "bareflow.flash.target",
}
__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bareflow.flash' has no attribute {name!r}")
