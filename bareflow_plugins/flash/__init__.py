"""Flashing build/bareflow.img onto sticks, files and network-boot directories.

Public API (see docs/flashing.md):
  flash_image(image, device, target="raw", *, bmap=None, assume_yes=False,
              force_non_removable=False, options=None, quiet=False, plugin_manager=None, ctx=None)
      -> FlashReport
  available_targets(plugin_manager=None) -> {name: FlashTarget}
  load_blockmap(image, bmap=None) -> BlockMap
Plugin interface: FlashTarget, Capabilities, DeviceInfo, FlashReport, FlashContext.
"""
from bareflow_plugins.flash.bmap import BlockMap, load_blockmap
from bareflow_plugins.flash.target import (Capabilities, DeviceInfo, FlashContext, FlashReport,
                                           FlashTarget)
from bareflow_plugins.flash.api import available_targets, flash_image

__all__ = ["BlockMap", "Capabilities", "DeviceInfo", "FlashContext", "FlashReport", "FlashTarget",
           "available_targets", "flash_image", "load_blockmap"]
