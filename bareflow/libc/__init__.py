"""Step 5 of the pipeline: the libc subset the modules and the kernel need, from the registered providers."""
