"""Presets: paper and CI configurations as TOML files in this folder (or any `--preset path/to/file.toml`).

A preset sets what a command line would: `benchmark`, `data`, `model`, `retain_model`, `forget_split`, the
sections `[world]`, `[train]`, `[eval]`, `[lume]` and `[compute]` (as `--set SECTION.KEY=V`), and each method's
hyperparameters under `[methods.NAME]` (its methods are the run's unless `--methods` names others).
`model_shape` names a config.json (relative to the preset) of the target's architecture, which `--dry-run`
reads when the model's own config cannot be read (offline). `description` (required) is what `harness run
--help` lists. The shape is checked here on load; every value is checked when it is applied
(harness/config.py), before any run.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

FOLDER = Path(__file__).parent
STRINGS = ("description", "benchmark", "data", "model", "retain_model", "forget_split", "model_shape")
SECTIONS = ("world", "train", "eval", "lume", "compute", "methods")


def names() -> list[str]:
    return sorted(p.stem for p in FOLDER.glob("*.toml"))


def path_of(name: str) -> Path:
    """A built-in preset's file, or the TOML file `name` points to."""
    if name.endswith(".toml"):
        return Path(name)
    if name not in names():
        raise ValueError(f"--preset {name}: unknown; expected one of {', '.join(names())} or a .toml file")
    return FOLDER / f"{name}.toml"


def load(name: str) -> dict:
    """The preset as a dict, its shape checked: one clear error naming the file and the key."""
    path = path_of(name)
    try:
        preset = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ValueError(f"--preset {path}: cannot read it ({err.strerror})") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not TOML ({err})") from None
    for key, value in preset.items():
        if key not in STRINGS + SECTIONS:
            raise ValueError(f"{path}: unknown key '{key}'; expected {', '.join(STRINGS + SECTIONS)}")
        if key in STRINGS and not isinstance(value, str):
            raise ValueError(f"{path}: '{key}' must be a string")
        if key in SECTIONS and not isinstance(value, dict):
            raise ValueError(f"{path}: '{key}' must be a table ([{key}])")
    for method, values in preset.get("methods", {}).items():
        if not isinstance(values, dict):
            raise ValueError(f"{path}: methods.{method} must be a table ([methods.{method}])")
    if "description" not in preset:
        raise ValueError(f"{path}: missing 'description' (one line for `harness run --help`)")
    return preset


def listing() -> str:
    """One line per built-in preset: its name and description, for `harness run --help`."""
    return "\n".join(f"  {name:17} {load(name)['description']}" for name in names())
