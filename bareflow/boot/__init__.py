"""Step 9 of the pipeline: booting an image in QEMU (`scons run`, the tests, the benchmarks)."""
