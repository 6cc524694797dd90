"""Small helpers every layer may use: atomic writes, seeds, text input, bundled data, progress."""
