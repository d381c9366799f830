"""Step 2 of the pipeline: JIT policies decide each layer's tier ladder; written to /POLICY.TBL; fed by /PROFILE.BIN."""
