"""Benchmarks, one per module, each registered by one line in pyproject.toml's `harness.benchmarks` entry
points (as a plugin's would be): tofu-mini and lume-mini (the embedded worlds), tofu and lume (the official
files). `base.py` holds the interface the runner calls."""
