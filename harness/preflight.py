"""Everything a command was given, checked before torch, a model or any data beyond the given files is loaded,
and before anything is written: the settings and the names they refer to, the prompt template, the lm-eval
task names, the benchmark's paths and data files, the model folders and the run folder. A bad input is one line
and exit 2 within seconds (perf/bad_input.py measures it), not a traceback or a half-written --out after
minutes of training. Both doors run it before they import the runner: the command line (harness/cli.py) and
the Python API (harness/__init__.py), so a run defined in Python is checked the same way, and once."""

from __future__ import annotations

from pathlib import Path

from evaluators import lm_eval_bridge
from harness.config import RunConfig, check_method_settings, validate
from harness.data.templates import check_template
from harness.files import check_writable
from harness.registry import benchmarks


def check(cfg: RunConfig, command: str = "run") -> None:
    validate(cfg, command)
    bench = benchmarks[cfg.benchmark]()
    check_template(cfg.eval.template)
    tasks, offline = bench.lm_eval_tasks(cfg), [task.name for task in bench.offline_tasks(cfg)]
    lm_eval_bridge.check_template(tasks, offline, cfg.eval.template)
    lm_eval_bridge.check_tasks(tasks, offline, cfg.cache_dir)
    lm_eval_bridge.check_task_data(tasks, offline)
    check_device(cfg.compute.device)
    check_models(cfg.models, cfg, ["--model"] * len(cfg.models))
    bench.check(cfg)  # the data before the target and retain models, as a user reads the command
    check_models([cfg.model, cfg.retain_model], cfg, ["--target" if command == "eval" else "--model", "--retain-model"])
    check_writable(Path(cfg.out_dir))
    check_method_settings(cfg)  # last: it imports the methods' code, and torch with it


def check_device(device: str) -> None:
    """An explicit accelerator is one this machine has (`auto` and `cpu` always are; torch only for the others)."""
    if device not in ("auto", "cpu"):
        from harness.models import resolve_device

        resolve_device(device)


def check_models(paths, cfg: RunConfig, flags: list[str]) -> None:
    """Each model folder (or hub name) is one a causal LM loads from, as the run's flags allow (harness/model_check.py
    `check_model`: config, weights, tokenizer, adapter, without reading a weight)."""
    given = [(path, flag) for path, flag in zip(paths, flags) if path]
    if not given:
        return
    from harness.model_check import check_model

    for path, flag in given:
        check_model(path, trust_remote_code=cfg.trust_remote_code, allow_pickle=cfg.allow_pickle, flag=flag)
