"""Run configuration: dataclasses, per-method defaults, and `--set key=value` overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from evaluators.tofu import EvalConfig
from harness.data.tofu import retain_split_for
from harness.data.world import WorldConfig
from harness.models import EmbeddedModelConfig
from harness.registry import load_builtin_methods, methods
from methods.base import MethodConfig

BENCHMARKS = ("tofu-mini",)


@dataclass
class RunConfig:
    """Everything one `harness run` needs. Sections `world`, `train` and `eval` take `--set section.key=v`;
    a method's hyperparameters take `--set METHOD.key=v` (e.g. `fo-graddiff.lr=3e-4`)."""

    benchmark: str = "tofu-mini"
    methods: list[str] = field(default_factory=lambda: ["fo-graddiff"])
    seeds: list[int] = field(default_factory=lambda: [0])
    out: str | None = None
    cache_dir: str | None = None
    forget_split: str = "forget10"
    world: WorldConfig = field(default_factory=WorldConfig)
    train: EmbeddedModelConfig = field(default_factory=EmbeddedModelConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    method_overrides: dict[str, dict] = field(default_factory=dict)

    @property
    def out_dir(self) -> str:
        return self.out or f"runs/{self.benchmark}"


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
    load_builtin_methods()
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
    return MethodConfig(**values)


def apply_override(cfg: RunConfig, assignment: str) -> None:
    """Apply one `key=value` to `cfg` in place; unknown keys are an error naming the valid ones."""
    if "=" not in assignment:
        raise ValueError(f"--set {assignment}: expected key=value")
    key, value = assignment.split("=", 1)
    head, _, rest = key.partition(".")
    load_builtin_methods()
    if head in methods and rest:
        method_config(head, {rest: value})  # validates now rather than mid-run
        cfg.method_overrides.setdefault(head, {})[rest] = value
        return
    if head in ("world", "train", "eval") and rest:
        section = getattr(cfg, head)
        names = [f.name for f in dataclasses.fields(section)]
        if rest not in names:
            raise ValueError(f"--set {key}: unknown key; {head} has: {', '.join(names)}")
        setattr(cfg, head, dataclasses.replace(section, **{rest: coerce(value, getattr(section, rest), key)}))
        return
    if key == "forget_split":
        retain_split_for(value)  # validates the name
        cfg.forget_split = value
        return
    raise ValueError(f"--set {key}: unknown key; expected forget_split, world.*, train.*, eval.* or METHOD.* "
                     f"with METHOD one of {', '.join(methods.names())}")
