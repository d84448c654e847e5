"""Unlearning methods, one per module, each registered by one line in pyproject.toml's `harness.methods`
entry points (as a plugin's would be). `base.py` is the interface and the training loop, `settings.py` the
typed settings every method declares. What a method reports beside the model (its columns, files and figures)
is declared in a module that imports without torch (SIMU's: `simu_report.py`), so `harness table`, `check`
and `plot` read it on any machine."""
