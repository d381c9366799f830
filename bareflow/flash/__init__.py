"""Step 10 of the pipeline: writing an image onto sticks, files and network-boot directories.

Engine: bareflow.flash.api (flash_image, available_targets); the built-in targets are plugins in
bareflow.flash.builtin (raw, file, tftp); docs/flashing.md documents the flow and the block map.
The plugin-facing types are exported from the top-level package (`from bareflow import FlashTarget`).
"""
