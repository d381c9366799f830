"""Step 8 of the pipeline: the FAT16 disk image, its payload, the boot configuration, bootloaders, the block map."""
