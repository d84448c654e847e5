"""Benchmarks, one per module, each registered by one line in pyproject.toml's `harness.benchmarks` entry
points (as a plugin's would be): tofu-mini, lume-mini, muse-mini and wmdp-mini (the embedded worlds), tofu,
lume, muse and wmdp (the official files). `base.py` holds the interface the runner calls."""
