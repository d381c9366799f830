"""Step 4 of the pipeline: bitcode to one relocatable object per tier (O0..O3) and ISA level, with llvmlite."""
