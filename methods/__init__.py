"""Unlearning methods, one per module, each registered by one line in pyproject.toml's `harness.methods`
entry points (as a plugin's would be).

The columns a method adds to its rows are declared here, where `harness table` and `harness check` read them
without importing torch (harness/metrics.py); SIMU's are diagnostics: shown, never ranked or checked.
"""

from harness.metrics import Metric

METRICS = [Metric("simu_critical_neurons", "none", "SIMU: critical MLP neurons"),
           Metric("simu_critical_fraction", "none", "SIMU: fraction of MLP neurons critical"),
           Metric("simu_shared_neurons", "none", "SIMU: neurons critical for forget and retain"),
           Metric("simu_attribution_reused", "none", "SIMU: stage-1 scores reused in this process")]
