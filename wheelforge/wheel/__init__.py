"""Layer 2: the wheel archive (filenames, RECORD, raw-copy zip rewriting)."""
