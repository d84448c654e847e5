"""Run configuration: everything that defines a run, in one place.

`build` is the one way in: the command line's flags (`harness run|sweep|eval`) and the Python API's keywords
(`harness.run(...)`, `harness.evaluate(...)`) both land here, so the same settings give the same configuration
and the same hashes whichever door is used. Precedence: the defaults (the benchmark's own evaluation
defaults among them), then the preset, then each argument given, then the grid, then `settings` (`--set`) in
order. Every value is checked as it is applied (a method's hyperparameters, whose check imports the method's
code and torch, can be left to `check_method_settings`); a bad one raises `rules.SettingError`, which each door
words as it was given.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from evaluators.base import MUSE_RULE, EvalConfig
from harness import presets, rules
from harness.registry import benchmarks, methods
from harness.rules import SettingError
from methods.settings import MethodConfig

COMMANDS = ("run", "sweep", "eval")
RESERVED_NAMES = ("target", "retain")  # the reference rows' names
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]*")


@dataclass(frozen=True)
class ComputeConfig:
    """Where and how a run computes (`--device`, `--dtype`, `--shard`, `--set compute.gradient_checkpointing=true`).
    The embedded models are always trained in float32 on the CPU and cached; this is what unlearning and
    evaluation use. Gradient checkpointing trades time for memory and changes no figure. `shard=fsdp` trains
    the model sharded over the run's processes (harness/sharding.py)."""

    RULES: ClassVar[dict] = {
        "device": rules.DEVICE,
        "dtype": rules.one_of("float32", "bfloat16", "float16"),
        "shard": rules.one_of("none", "fsdp"),
    }

    device: str = "auto"
    dtype: str = "float32"
    gradient_checkpointing: bool = False
    shard: str = "none"


@dataclass(frozen=True)
class SaveConfig:
    """What a run keeps besides its rows (`--save-models`, `--set save.models=true`): each cell's unlearned
    model as a Hugging Face folder, `OUT/models/<cell>/`. Off by default (a 7B cell is 13 GB); it changes no
    figure, so it is in no hash."""

    RULES: ClassVar[dict] = {}

    models: bool = False


CORE_SECTIONS = {"eval": EvalConfig, "compute": ComputeConfig, "save": SaveConfig}  # every run's; a benchmark
#                adds its own (`Benchmark.sections`), all set as `--set SECTION.KEY=V` or a preset's [SECTION]


@dataclass
class RunConfig:
    """Everything one run needs. Sections (`eval`, `compute`, `save`, and the benchmark's own, such as
    tofu-mini's `world` and `train`) take `--set SECTION.KEY=V`; a method's hyperparameters take `--set
    METHOD.KEY=V` (e.g. `fo-graddiff.lr=3e-4`). Build one with `build` (every value checked); constructing it
    directly skips the checks, not the defaults."""

    benchmark: str = "tofu-mini"
    methods: list[str] = field(default_factory=lambda: ["fo-graddiff"])
    seeds: list[int] = field(default_factory=lambda: [0])
    out: str | None = None
    cache_dir: str | None = None
    forget_split: str = "forget10"
    data: str | None = None  # --benchmark tofu: a folder of official TOFU files, or a hub name
    model: str | None = None  # --benchmark tofu: the target model (any AutoModelForCausalLM)
    retain_model: str | None = None  # the retain-model reference, evaluated ...
    retain_eval: str | None = None  # ... or read from a saved evaluation JSON
    trust_remote_code: bool = False
    allow_pickle: bool = False  # load pickle checkpoints too (they can run code); safetensors only otherwise
    wait: bool = False  # wait for another process holding the run folder instead of stopping
    preset_file: str | None = None  # the preset applied, if any (its errors name it)
    preset_overrides: dict[str, dict] = field(default_factory=dict)  # a preset's METHOD.key values, under --set
    sections: dict = field(default_factory=dict)  # the benchmark's sections that were set: name -> dataclass
    eval_settings: dict = field(default_factory=dict)  # EvalConfig values set by a preset, a flag or --set
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    save: SaveConfig = field(default_factory=SaveConfig)
    model_shape: str | None = None  # a preset's config.json of the target's architecture, for --dry-run offline
    lm_eval_tasks: list[str] = field(default_factory=list)  # --lm-eval-tasks: columns lmeval_<task>_<metric>
    method_overrides: dict[str, dict] = field(default_factory=dict)
    grid: dict[str, list[str]] = field(default_factory=dict)  # `harness sweep`: "METHOD.key" -> values
    models: list[str] = field(default_factory=list)  # `harness eval`: the models to score, folders or hub names
    names: list[str] = field(default_factory=list)  # ... and their rows' names (default: the folders' names)

    @property
    def eval(self) -> EvalConfig:
        """The evaluation settings: EvalConfig's defaults, then the benchmark's own (LUME: the raw prompt, 256
        new tokens), then what was set. Derived, so a run defined in Python gets the CLI's defaults."""
        return EvalConfig(**benchmarks[self.benchmark].eval_defaults | self.eval_settings)

    def section(self, name: str):
        """A section's settings: the core ones (`eval`, `compute`, `save`), or one the benchmark declares, as set
        (a preset, `--set`) or at its defaults."""
        if name == "eval":
            return self.eval
        if name in CORE_SECTIONS:
            return getattr(self, name)
        declared = sections_of(self.benchmark)
        if name not in declared:
            raise KeyError(f"--benchmark {self.benchmark} has no section '{name}'")
        return self.sections.get(name) or declared[name]()

    @property
    def sweep(self) -> bool:
        return bool(self.grid)

    @property
    def out_dir(self) -> str:
        return self.out or f"runs/{self.benchmark}" + ("-sweep" if self.sweep else "")

    @property
    def model_names(self) -> list[str]:
        """`harness eval`'s row names: `names`, else each model's folder (or hub repository) name."""
        return list(self.names) or [default_name(m) for m in self.models]

    def overrides_for(self, method: str) -> dict:
        """The method's hyperparameter overrides: in a sweep, the values its settings declare for sweeps (SIMU
        reuses stage-1 scores across grid points: the same results, less time), then the preset's, then `--set
        METHOD.key=v`."""
        sweep = methods[method].settings.sweep_defaults() if self.sweep else {}
        return sweep | self.preset_overrides.get(method, {}) | self.method_overrides.get(method, {})


def default_name(model: str) -> str:
    """A model's row name: its folder's (or hub repository's) last part, in the characters a file name takes."""
    return re.sub(r"[^A-Za-z0-9._+=-]", "_", Path(str(model).rstrip("/")).name) or "model"


def cache_root(override: str | os.PathLike | None = None) -> Path:
    """The model cache: `--cache-dir`, else $HARNESS_CACHE, else ~/.cache/unlearning-harness."""
    if override:
        return Path(override)
    return Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "unlearning-harness"))


def coerce(value: str, like, key: str, via: str = "set"):
    """Parse `value` to the type of the default `like` (bool, int, float or str)."""
    try:
        if isinstance(like, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return value.lower() in ("true", "1")
        if isinstance(like, int):
            return int(value)
        if isinstance(like, float):
            return float(value)
    except ValueError:
        raise SettingError(key, value, f"expected a {type(like).__name__}", via) from None
    return value


def method_config(name: str, overrides: dict | None = None) -> MethodConfig:
    """The method's settings (its `settings` dataclass): their defaults, then `overrides`, each typed like its
    default and checked by its rule."""
    settings = methods[name].settings  # the method's class, which imports torch: only when asked
    values = {}
    for key, raw in (overrides or {}).items():
        if key == "template":
            raise SettingError(f"{name}.{key}", raw, "the prompt template is the run's: --template or eval.template")
        if key not in settings.keys():
            raise SettingError(
                f"{name}.{key}", None, f"unknown hyperparameter; {name} has: {', '.join(sorted(settings.keys()))}"
            )
        like = getattr(settings, key, None)
        values[key] = coerce(raw, like, f"{name}.{key}") if isinstance(raw, str) else raw
    cfg = settings(**values)
    rules.check(settings.rules(), dataclasses.asdict(cfg), name)
    return cfg


def sections_of(benchmark: str) -> dict[str, type]:
    """The sections a run of `benchmark` takes: the core ones and the benchmark's own, name -> dataclass. A
    benchmark's section may not take a core section's or a method's name (`--set NAME.KEY` would be ambiguous)."""
    own = benchmarks[benchmark].sections
    for name, kind in own.items():
        if name in CORE_SECTIONS or name in methods:
            raise ValueError(f"benchmark {benchmark}: section '{name}' is a core section's or a method's name")
        if not dataclasses.is_dataclass(kind) or not hasattr(kind, "RULES"):
            raise TypeError(f"benchmark {benchmark}: section '{name}' must be a dataclass with RULES")
    return CORE_SECTIONS | own


def _set_section(cfg: RunConfig, head: str, rest: str, value: str, key: str) -> None:
    """One `--set SECTION.KEY=V`, typed like the section's default and checked by its rules."""
    kind = sections_of(cfg.benchmark)[head]
    section = kind() if head == "eval" else cfg.section(head)
    names = [f.name for f in dataclasses.fields(section)]
    if rest not in names:
        raise SettingError(key, None, f"unknown key; {head} has: {', '.join(names)}")
    typed = coerce(value, getattr(section, rest), key)
    rules.check(kind.RULES, {rest: typed}, head)
    if head == "eval":
        cfg.eval_settings[rest] = typed
    elif head in CORE_SECTIONS:
        setattr(cfg, head, dataclasses.replace(section, **{rest: typed}))
    else:
        cfg.sections[head] = dataclasses.replace(section, **{rest: typed})


def set_value(cfg: RunConfig, key: str, value, check_methods: bool = True) -> None:
    """Apply one setting (`--set key=value`, `settings={key: value}`) to `cfg` in place; an unknown key is a
    SettingError naming the valid ones. A method's hyperparameter is checked now unless `check_methods` is off
    (then `check_method_settings` checks it later)."""
    value = _text(value)
    head, _, rest = key.partition(".")
    if head in methods and rest:
        if check_methods:
            method_config(head, {rest: value})  # validates now rather than mid-run
        cfg.method_overrides.setdefault(head, {})[rest] = value
    elif head in sections_of(cfg.benchmark) and rest:
        _set_section(cfg, head, rest, value, key)
    elif key == "forget_split":
        offered = benchmarks[cfg.benchmark].forget_splits
        if not offered:
            raise SettingError(key, value, f"--benchmark {cfg.benchmark} has one forget split; drop it")
        if value not in offered:
            choices = f"{', '.join(offered[:-1])} or {offered[-1]}" if len(offered) > 1 else offered[0]
            raise SettingError(key, value, f"expected {choices}")
        cfg.forget_split = value
    else:
        sections = ", ".join(f"{s}.*" for s in sections_of(cfg.benchmark))
        raise SettingError(
            key,
            None,
            f"unknown key; expected forget_split, {sections} (the sections of --benchmark "
            f"{cfg.benchmark}) or METHOD.* with METHOD one of {', '.join(methods.names())}",
        )


def apply_override(cfg: RunConfig, assignment: str) -> None:
    """Apply one `key=value` string (the CLI's `--set`) to `cfg` in place."""
    for key, value in _pairs([assignment]):
        set_value(cfg, key, value)


def _text(value) -> str:
    """A Python value as the command line would give it (`True` -> "true", 3e-4 -> "0.0003")."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def add_grid(cfg: RunConfig, assignment: str) -> None:
    """Add one `--grid METHOD.key=v1,v2,...` axis to `cfg`."""
    for key, values in _axes([assignment]):
        add_axis(cfg, key, values)


def add_axis(cfg: RunConfig, key: str, values: Iterable, check_methods: bool = True) -> None:
    """Add one grid axis (`--grid KEY=V1,V2`, `grid={KEY: [V1, V2]}`); every value is validated now (or, without
    `check_methods`, by `check_method_settings`), not mid-sweep."""
    head, _, rest = key.partition(".")
    points = [_text(v) for v in values]
    if head not in methods or not rest:
        raise SettingError(
            key, None, f"expected METHOD.key=v1,v2,... with METHOD one of {', '.join(methods.names())}", "grid"
        )
    if not points or len(set(points)) != len(points):
        raise SettingError(key, ",".join(points), "expected one or more distinct comma-separated values", "grid")
    if key in cfg.grid:
        raise SettingError(key, None, "given twice; put all its values in one axis", "grid")
    cfg.grid[key] = points
    if check_methods:
        _check_axis(key, points)


def _check_axis(key: str, points: list[str]) -> None:
    head, _, rest = key.partition(".")
    for value in points:
        try:
            method_config(head, {rest: value})
        except SettingError as err:
            raise SettingError(err.setting, err.value, err.problem, "grid") from None


def apply_preset(cfg: RunConfig, name: str, check_methods: bool = True, benchmark: str | None = None) -> None:
    """Fill `cfg` from a preset file (harness/presets/NAME.toml, or a path), every value validated now (its
    methods' hyperparameters later without `check_methods`); flags and `--set` given on the command line are
    applied after it. `benchmark` (the `--benchmark` flag) wins over the preset's, so its sections are read as
    that benchmark's."""
    preset = presets.load(name)
    where = presets.path_of(name)
    cfg.preset_file = str(where)
    try:
        if "benchmark" in preset and preset["benchmark"] not in benchmarks:
            raise SettingError(
                "benchmark", preset["benchmark"], f"unknown; registered: {', '.join(benchmarks.names())}"
            )
        cfg.benchmark = benchmark or preset.get("benchmark", cfg.benchmark)
        for key in ("data", "model", "retain_model"):
            if key in preset:
                setattr(cfg, key, preset[key])
        if "model_shape" in preset:
            cfg.model_shape = str(where.parent / preset["model_shape"])
        if "forget_split" in preset:
            set_value(cfg, "forget_split", preset["forget_split"])
        for section, values in preset.items():
            if section in presets.STRINGS or section == "methods":
                continue
            if section not in sections_of(cfg.benchmark):
                raise SettingError(
                    f"[{section}]",
                    None,
                    f"not a section of --benchmark {cfg.benchmark} (it has {', '.join(sections_of(cfg.benchmark))})",
                )
            for key, value in values.items():
                set_value(cfg, f"{section}.{key}", value)
        for method, values in preset.get("methods", {}).items():
            if method not in methods:
                raise SettingError(
                    f"methods.{method}", None, f"unknown method; registered: {', '.join(methods.names())}"
                )
            overrides = {key: _text(value) for key, value in values.items()}
            if check_methods:
                method_config(method, overrides)
            cfg.preset_overrides[method] = overrides
        if preset.get("methods"):
            cfg.methods = list(preset["methods"])  # the preset's methods, unless --methods names others
    except SettingError as err:
        raise err.in_file(where) from None


def check_method_settings(cfg: RunConfig) -> None:
    """Every method hyperparameter a run was given (its preset's, `--set METHOD.*`, `--grid`) against the
    method's defaults and rules, each error worded as it was given. Apart from applying them because it
    imports the methods' code, and with it torch: the command line applies them unchecked and its pre-flight
    runs this last, after every check that needs no torch (harness/preflight.py)."""
    for method, overrides in cfg.preset_overrides.items():
        try:
            method_config(method, overrides)
        except SettingError as err:
            raise err.in_file(cfg.preset_file) from None
    for method, overrides in cfg.method_overrides.items():
        for key, value in overrides.items():
            method_config(method, {key: value})
    for key, points in cfg.grid.items():
        _check_axis(key, points)
    _check_unsharded(cfg)


def _check_unsharded(cfg: RunConfig) -> None:
    """What trains unsharded, so that `--shard fsdp` with it is one line, not a failure after the reference
    rows: curve points (`eval.every`), and LoRA cells (their frozen base in the run's dtype plus float32 adapters
    fit where full updates would not)."""
    from harness.sharding import mode

    if mode(cfg.compute.shard) != "fsdp":
        return
    if cfg.eval.every:
        raise SettingError(
            "shard", "fsdp", "curve points (eval.every) are taken on an unsharded model: drop --shard fsdp", "flag"
        )
    for name in cfg.methods:
        overrides = cfg.overrides_for(name)
        points = [overrides | {"lora_r": v} for v in cfg.grid.get(f"{name}.lora_r", [])] or [overrides]
        lora_r = max(getattr(method_config(name, point), "lora_r", 0) for point in points)
        if lora_r:
            raise SettingError(
                "shard",
                "fsdp",
                f"{name} trains LoRA adapters (lora_r={lora_r}), which train unsharded: drop --shard fsdp "
                f"(the frozen base in --dtype plus the adapters is what one device must hold; --dry-run plans it)",
                via="flag",
            )


# --- build: the one way a run is defined -------------------------------------------------------------------


def build(
    command: str = "run",
    *,
    preset: str | None = None,
    benchmark: str | None = None,
    methods: Iterable[str] | None = None,
    seeds: Iterable[int] | None = None,
    out: str | None = None,
    cache_dir: str | None = None,
    data: str | None = None,
    model: str | None = None,
    retain_model: str | None = None,
    retain_eval: str | None = None,
    template: str | None = None,
    lm_eval_tasks: Iterable[str] | None = None,
    device: str | None = None,
    dtype: str | None = None,
    shard: str | None = None,
    trust_remote_code: bool | None = None,
    allow_pickle: bool | None = None,
    wait: bool | None = None,
    save_models: bool | None = None,
    grid: Mapping | Iterable[str] | None = None,
    settings: Mapping | Iterable[str] | None = None,
    models: Iterable[str] | None = None,
    names: Iterable[str] | None = None,
    check_methods: bool = True,
) -> RunConfig:
    """The configuration of `harness run`, `sweep` or `eval`, from the same arguments as their flags (`None`:
    not given). `grid` and `settings` take a mapping (`{"simu.lr": 3e-4}`, `{"simu.t": [0.1, 0.3]}`) or the
    CLI's `KEY=VALUE` strings. For `eval`, `models` are the models to score and `model` the target (real
    benchmarks; the embedded ones bring their own). `check_methods=False` leaves the methods' hyperparameters to
    `check_method_settings` (the command line's pre-flight runs it last: it imports torch)."""
    if command not in COMMANDS:
        raise SettingError("command", command, f"expected one of {', '.join(COMMANDS)}", "flag")
    _only_for(
        command,
        methods=methods,
        seeds=seeds,
        save_models=save_models,
        shard=shard,
        grid=grid,
        models=models,
        names=names,
    )
    preset, data, model, retain_model, retain_eval, cache_dir = (
        None if v is None else str(v) for v in (preset, data, model, retain_model, retain_eval, cache_dir)
    )
    cfg = RunConfig(out=_out(out), cache_dir=cache_dir)
    if seeds is not None:
        cfg.seeds = _seeds(seeds)
    methods = None if methods is None else _names(methods, "methods")  # before a preset's methods import torch
    if benchmark is not None and benchmark not in benchmarks:
        raise SettingError("benchmark", benchmark, f"unknown; registered: {', '.join(benchmarks.names())}", "flag")
    if preset:
        apply_preset(cfg, preset, check_methods, benchmark)
    given = {
        "benchmark": benchmark,
        "data": data,
        "model": model,
        "retain_model": retain_model,
        "retain_eval": retain_eval,
        "trust_remote_code": trust_remote_code,
        "allow_pickle": allow_pickle,
        "wait": wait,
    }
    for key, value in given.items():
        if value is not None:
            setattr(cfg, key, value)
    if cfg.benchmark not in benchmarks:
        raise SettingError("benchmark", cfg.benchmark, f"unknown; registered: {', '.join(benchmarks.names())}", "flag")
    _flag(cfg, "compute.device", "device", device)
    _flag(cfg, "compute.dtype", "dtype", dtype)
    _flag(cfg, "compute.shard", "shard", shard)
    _flag(cfg, "eval.template", "template", template)
    if save_models is not None:
        cfg.save = SaveConfig(models=bool(save_models))
    if lm_eval_tasks is not None:
        cfg.lm_eval_tasks = _names(lm_eval_tasks, "lm_eval_tasks", allow_empty=True)
    for key, values in _axes(grid):
        add_axis(cfg, key, values, check_methods)
    if methods is not None:
        cfg.methods = methods
    elif cfg.grid:
        cfg.methods = list(dict.fromkeys(key.split(".")[0] for key in cfg.grid))
    if command == "eval":
        models = [models] if isinstance(models, (str, Path)) else models
        cfg.methods, cfg.models = [], _names([str(m) for m in models or []], "model", allow_empty=True)
        cfg.names = _names(names or [], "name", allow_empty=True)
    for key, value in _pairs(settings):
        set_value(cfg, key, value, check_methods)
    validate(cfg, command)
    return cfg


USED_BY = {
    "methods": ("run", "sweep"),
    "seeds": ("run", "sweep"),
    "save_models": ("run", "sweep"),
    "shard": ("run", "sweep"),  # eval trains nothing: it is data-parallel over the processes as they are
    "grid": ("sweep",),
    "models": ("eval",),
    "names": ("eval",),
}


def _only_for(command: str, **given) -> None:
    """An argument the command does not take is an error, not silently ignored (`harness.evaluate(seeds=...)`)."""
    for key, value in given.items():
        if value is not None and command not in USED_BY[key]:
            raise SettingError(
                key, None, f"not an argument of {command} (only of {' and '.join(USED_BY[key])})", "flag"
            )


def _out(out: str | None) -> str | None:
    if out is not None and not str(out).strip():
        raise SettingError("out", out, "expected a folder, not an empty name", "flag")
    return None if out is None else str(out)


def _seeds(seeds) -> list[int]:
    import numbers

    values = [seeds] if isinstance(seeds, numbers.Integral) else list(seeds)
    integers = all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in values)
    if not values or not integers or min(values) < 0 or len(set(values)) != len(values):
        raise SettingError("seeds", ",".join(map(str, values)), "expected one or more distinct integers >= 0", "flag")
    return [int(s) for s in values]


def _names(values: Iterable[str], flag: str, allow_empty: bool = False) -> list[str]:
    """A list of names (methods, tasks, models): strings, none empty, none twice, at least one. A string is
    taken as the command line's comma-separated list."""
    values = [v.strip() for v in values.split(",") if v.strip()] if isinstance(values, str) else list(values)
    if (not values and not allow_empty) or not all(isinstance(v, str) and v.strip() for v in values):
        raise SettingError(flag, ",".join(map(str, values)), "expected one or more names", "flag")
    twice = [v for v in dict.fromkeys(values) if values.count(v) > 1]
    if twice:
        raise SettingError(flag, ",".join(values), f"{twice[0]} is given twice", "flag")
    return values


def _flag(cfg: RunConfig, key: str, flag: str, value) -> None:
    """A flag that is a setting (`--device` is `compute.device`): checked by the setting's rule, named as the
    flag."""
    if value is None:
        return
    try:
        set_value(cfg, key, value)
    except SettingError as err:
        raise SettingError(flag, value, err.problem, "flag") from None


def _pairs(settings) -> list[tuple[str, object]]:
    if settings is None:
        return []
    if isinstance(settings, Mapping):
        return list(settings.items())
    pairs = []
    for assignment in [settings] if isinstance(settings, str) else settings:
        if "=" not in assignment:
            raise SettingError(assignment, None, "expected key=value")
        pairs.append(tuple(assignment.split("=", 1)))
    return pairs


def _axes(grid) -> list[tuple[str, list]]:
    if grid is None:
        return []
    if isinstance(grid, Mapping):
        return [
            (key, [values] if isinstance(values, (str, int, float)) else list(values)) for key, values in grid.items()
        ]
    axes = []
    for assignment in [grid] if isinstance(grid, str) else grid:
        key, sep, values = assignment.partition("=")
        if not sep:
            raise SettingError(assignment, None, "expected METHOD.key=v1,v2,...", "grid")
        axes.append((key, [v.strip() for v in values.split(",") if v.strip()]))
    return axes


def validate(cfg: RunConfig, command: str = "run") -> None:
    """What no single value shows: the names a run's settings refer to. Every method, `--set METHOD.*` and
    `--grid METHOD.*` names a method of the run; `harness eval` names each row once, and not like a
    reference row or a method (a table groups rows by name)."""
    sections_of(cfg.benchmark)  # its declarations are sound
    for name in cfg.methods:
        if name not in methods:
            raise SettingError(
                "methods", name, f"unknown method '{name}'; registered: {', '.join(methods.names())}", "flag"
            )
    for name in cfg.method_overrides:
        if command == "eval":
            raise SettingError(f"{name}.*", None, "harness eval runs no method, so takes no METHOD.* setting")
        if name not in cfg.methods:
            raise SettingError(f"{name}.*", None, f"method '{name}' is not in --methods ({', '.join(cfg.methods)})")
    for key in cfg.grid:
        if key.split(".")[0] not in cfg.methods:
            raise SettingError(
                key, None, f"method '{key.split('.')[0]}' is not in --methods ({', '.join(cfg.methods)})", "grid"
            )
    if command == "eval":
        _check_eval_names(cfg)
    elif not cfg.methods:
        raise SettingError("methods", "", "expected one or more method names", "flag")
    if command == "sweep" and not cfg.grid:
        raise SettingError("grid", None, "expected one or more axes (METHOD.key=v1,v2,...)", "flag")
    _check_curves(cfg, command)


def _check_curves(cfg: RunConfig, command: str) -> None:
    """The curves' settings fit the run: points are taken while a cell unlearns (not in `harness eval`) on an
    unsharded model (checked with the methods' settings: `_check_unsharded`); a stop rule needs points, a
    declared column and (muse) a retain reference."""
    from harness.metrics import metrics

    settings = cfg.eval
    if settings.every and command == "eval":
        raise SettingError("eval.every", settings.every, "harness eval unlearns nothing, so draws no curve")
    if not settings.stop_at:
        return
    if not settings.every:
        raise SettingError("eval.stop_at", settings.stop_at, "a stop rule is checked at curve points: set eval.every")
    privleak = benchmarks[cfg.benchmark].privleak_column
    if settings.stop_at == MUSE_RULE and not privleak:
        raise SettingError(
            "eval.stop_at",
            MUSE_RULE,
            f"MUSE's rule compares with the retain model; --benchmark {cfg.benchmark} has none",
        )
    metric = settings.stop_rule(privleak).split("<")[0].split(">")[0]
    if not metrics.declared(metric):
        raise SettingError(
            "eval.stop_at", settings.stop_at, f"{metric} is no declared column (`harness metrics` lists them)"
        )


def _check_eval_names(cfg: RunConfig) -> None:
    if not cfg.models:
        raise SettingError("model", None, "expected one or more models to score (a folder or a hub name)", "flag")
    if cfg.names and len(cfg.names) != len(cfg.models):
        raise SettingError("name", ",".join(cfg.names), f"expected one --name per --model ({len(cfg.models)})", "flag")
    names = cfg.model_names
    for name in names:
        if not NAME.fullmatch(name):
            raise SettingError(
                "name",
                name,
                "expected letters, digits and ._+=- (it names the row's file), starting with a letter or digit",
                "flag",
            )
        if name in RESERVED_NAMES or name in methods:
            raise SettingError(
                "name",
                name,
                "the name of a reference row or a method; a table groups rows by "
                "name, so pick another (e.g. " + f"{name}-outside)",
                "flag",
            )
        if names.count(name) > 1:
            raise SettingError("name", name, "two models would share this row; give each its own --name", "flag")
