"""Benchmarks, one per module, each registered by one line in pyproject.toml's `harness.benchmarks` entry
points (as a plugin's would be): tofu-mini, lume-mini and muse-mini (the embedded worlds), tofu, lume and muse (the official
files). `base.py` holds the interface the runner calls."""
