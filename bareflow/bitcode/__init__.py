"""Step 3 of the pipeline: C layer modules to LLVM bitcode with zig's clang (the toolchain and the module cflags)."""
