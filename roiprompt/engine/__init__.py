"""Engine: embedding cache, CPU runtime settings, benchmark records."""
