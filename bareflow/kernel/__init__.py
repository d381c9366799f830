"""Step 7 of the pipeline: compiling and linking the multiboot kernel and the hosted program."""
