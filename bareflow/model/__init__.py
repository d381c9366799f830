"""Step 1 of the pipeline: the model (llama2.c checkpoint or the synthetic one), its tokenizer, the layer names, the numpy reference."""
