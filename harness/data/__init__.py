"""Benchmark data: the embedded world generator and the TOFU-schema loaders."""
