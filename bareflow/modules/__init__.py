"""Step 6 of the pipeline: tier objects to BFMD module files the kernel loader relocates (docs/module-format.md)."""
