"""Run configuration: dataclasses, per-method defaults, and `--set key=value` overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from evaluators.base import EvalConfig
from harness import presets, rules
from harness.data.lume import LumeWorldConfig
from harness.data.tofu import retain_split_for
from harness.data.world import WorldConfig
from harness.embedded import EmbeddedModelConfig
from harness.registry import benchmarks, methods
from methods.base import MethodConfig

SECTIONS = ("world", "train", "eval", "lume", "compute")   # `--set SECTION.KEY=V`
SIZES = ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "batch_size", "base_epochs",
         "target_epochs", "max_new_tokens", "forget_docs", "retain_docs", "nonmember_docs", "epochs")
SECTION_RULES = {   # what a section's value may be (harness/rules.py); the world's sizes are checked on generation
    "world": {},
    "train": {"lr": rules.POSITIVE, "warmup_ratio": rules.FRACTION} | {k: rules.at_least(1) for k in SIZES},
    "eval": {"min_k": rules.SHARE} | {k: rules.at_least(1) for k in SIZES},
    "lume": {k: rules.at_least(1) for k in SIZES} | {"sum_operands": rules.at_least(2), "sum_probe": rules.SHARE},
    "compute": {"device": rules.DEVICE, "dtype": rules.one_of("float32", "bfloat16", "float16")}}


@dataclass(frozen=True)
class ComputeConfig:
    """Where and how a run computes (`--device`, `--dtype`, `--set compute.gradient_checkpointing=true`). The
    embedded models are always trained in float32 on the CPU and cached; this is what unlearning and
    evaluation use. Gradient checkpointing trades time for memory and changes no figure."""

    device: str = "auto"
    dtype: str = "float32"
    gradient_checkpointing: bool = False


@dataclass
class RunConfig:
    """Everything one `harness run` needs. Sections `world`, `train`, `eval` and `lume` take `--set section.key=v`;
    a method's hyperparameters take `--set METHOD.key=v` (e.g. `fo-graddiff.lr=3e-4`)."""

    benchmark: str = "tofu-mini"
    methods: list[str] = field(default_factory=lambda: ["fo-graddiff"])
    seeds: list[int] = field(default_factory=lambda: [0])
    out: str | None = None
    cache_dir: str | None = None
    forget_split: str = "forget10"
    data: str | None = None            # --benchmark tofu: a folder of official TOFU files, or a hub name
    model: str | None = None           # --benchmark tofu: the target model (any AutoModelForCausalLM)
    retain_model: str | None = None    # the retain-model reference, evaluated ...
    retain_eval: str | None = None     # ... or read from a saved evaluation JSON
    trust_remote_code: bool = False
    allow_pickle: bool = False         # load pickle checkpoints too (they can run code); safetensors only otherwise
    wait: bool = False                 # wait for another process holding the run folder instead of stopping
    preset_overrides: dict[str, dict] = field(default_factory=dict)   # a preset's METHOD.key values, under --set
    world: WorldConfig = field(default_factory=WorldConfig)
    train: EmbeddedModelConfig = field(default_factory=EmbeddedModelConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    lume: LumeWorldConfig = field(default_factory=LumeWorldConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    model_shape: str | None = None     # a preset's config.json of the target's architecture, for --dry-run offline
    lm_eval_tasks: list[str] = field(default_factory=list)   # --lm-eval-tasks: columns lmeval_<task>_<metric>
    method_overrides: dict[str, dict] = field(default_factory=dict)
    grid: dict[str, list[str]] = field(default_factory=dict)   # `harness sweep`: "METHOD.key" -> values

    @property
    def out_dir(self) -> str:
        return self.out or f"runs/{self.benchmark}"

    def overrides_for(self, method: str) -> dict:
        """The method's hyperparameter overrides: the preset's, then `--set METHOD.key=v`."""
        return self.preset_overrides.get(method, {}) | self.method_overrides.get(method, {})


def coerce(value: str, like, key: str):
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
        raise ValueError(f"--set {key}={value}: expected a {type(like).__name__}") from None
    return value


def method_config(name: str, overrides: dict | None = None) -> MethodConfig:
    """The method's `MethodConfig`: field defaults, then the method's `defaults`, then `overrides`."""
    cls = methods[name]
    values = {f.name: getattr(MethodConfig(), f.name) for f in dataclasses.fields(MethodConfig)}
    values["options"] = dict(cls.defaults.get("options", {}))
    values.update({k: v for k, v in cls.defaults.items() if k != "options"})
    for key, raw in (overrides or {}).items():
        if key in values and key != "options":
            values[key] = coerce(raw, values[key], f"{name}.{key}") if isinstance(raw, str) else raw
        elif key in values["options"]:
            like = values["options"][key]
            values["options"][key] = coerce(raw, like, f"{name}.{key}") if isinstance(raw, str) else raw
        else:
            known = sorted([k for k in values if k != "options"] + list(values["options"]))
            raise ValueError(f"--set {name}.{key}: unknown hyperparameter; {name} has: {', '.join(known)}")
    rules.check(cls.rules, {k: v for k, v in values.items() if k != "options"} | values["options"], name)
    return MethodConfig(**values)


def apply_override(cfg: RunConfig, assignment: str) -> None:
    """Apply one `key=value` to `cfg` in place; unknown keys are an error naming the valid ones."""
    if "=" not in assignment:
        raise ValueError(f"--set {assignment}: expected key=value")
    key, value = assignment.split("=", 1)
    head, _, rest = key.partition(".")
    if head in methods and rest:
        method_config(head, {rest: value})  # validates now rather than mid-run
        cfg.method_overrides.setdefault(head, {})[rest] = value
        return
    if head in SECTIONS and rest:
        section = getattr(cfg, head)
        names = [f.name for f in dataclasses.fields(section)]
        if rest not in names:
            raise ValueError(f"--set {key}: unknown key; {head} has: {', '.join(names)}")
        setattr(cfg, head, dataclasses.replace(section, **{rest: coerce(value, getattr(section, rest), key)}))
        rules.check(SECTION_RULES[head], {rest: getattr(getattr(cfg, head), rest)}, head)
        return
    if key == "forget_split":
        retain_split_for(value)  # validates the name
        cfg.forget_split = value
        return
    raise ValueError(f"--set {key}: unknown key; expected forget_split, world.*, train.*, eval.*, lume.*, compute.* or "
                     f"METHOD.* with METHOD one of {', '.join(methods.names())}")


def add_grid(cfg: RunConfig, assignment: str) -> None:
    """Add one `--grid METHOD.key=v1,v2,...` axis to `cfg`; every value is validated now, not mid-sweep."""
    key, sep, values = assignment.partition("=")
    head, _, rest = key.partition(".")
    if not sep or head not in methods or not rest:
        raise ValueError(f"--grid {assignment}: expected METHOD.key=v1,v2,... with METHOD one of "
                         f"{', '.join(methods.names())}")
    points = [v.strip() for v in values.split(",") if v.strip()]
    if not points or len(set(points)) != len(points):
        raise ValueError(f"--grid {assignment}: expected one or more distinct comma-separated values")
    if key in cfg.grid:
        raise ValueError(f"--grid {key}: given twice; put all its values in one --grid")
    for value in points:
        try:
            method_config(head, {rest: value})
        except ValueError as err:
            raise ValueError(str(err).replace("--set ", "--grid ", 1)) from None
    cfg.grid[key] = points


def apply_preset(cfg: RunConfig, name: str) -> None:
    """Fill `cfg` from a preset file (harness/presets/NAME.toml, or a path), every value validated now; flags
    and `--set` given on the command line are applied after it."""
    preset = presets.load(name)
    where = presets.path_of(name)
    try:
        if "benchmark" in preset and preset["benchmark"] not in benchmarks:
            raise ValueError(f"benchmark {preset['benchmark']}: unknown; registered: {', '.join(benchmarks.names())}")
        for key in ("benchmark", "data", "model", "retain_model"):
            if key in preset:
                setattr(cfg, key, preset[key])
        if "model_shape" in preset:
            cfg.model_shape = str(where.parent / preset["model_shape"])
        if "forget_split" in preset:
            apply_override(cfg, f"forget_split={preset['forget_split']}")
        for section in SECTIONS:
            for key, value in preset.get(section, {}).items():
                apply_override(cfg, f"{section}.{key}={value}")
        for method, values in preset.get("methods", {}).items():
            if method not in methods:
                raise ValueError(f"methods.{method}: unknown method; registered: {', '.join(methods.names())}")
            overrides = {key: str(value) for key, value in values.items()}
            method_config(method, overrides)
            cfg.preset_overrides[method] = overrides
        if preset.get("methods"):
            cfg.methods = list(preset["methods"])   # the preset's methods, unless --methods names others
    except ValueError as err:
        raise ValueError(f"{where}: {str(err).removeprefix('--set ')}") from None
