"""Presets: paper and CI configurations as TOML files in this folder (or any `--preset path/to/file.toml`).

A preset sets what a command line would: `benchmark`, `data`, `model`, `retain_model`, `forget_split`, any
section of its benchmark (`[eval]`, `[compute]`, `[save]`, and the benchmark's own, tofu-mini's `[world]` and
`[train]`: as `--set SECTION.KEY=V`), and each method's hyperparameters under `[methods.NAME]` (its methods
are the run's unless `--methods` names others).
`model_shape` names a config.json (relative to the preset) of the target's architecture, which `--dry-run`
reads when the model's own config cannot be read (offline). `description` (required) is what `harness run
--help` lists. The shape is checked here on load; every value is checked when it is applied
(harness/config.py), before any run.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from harness.rules import SettingError

FOLDER = Path(__file__).parent
STRINGS = ("description", "benchmark", "data", "model", "retain_model", "forget_split", "model_shape")


def names() -> list[str]:
    return sorted(p.stem for p in FOLDER.glob("*.toml"))


def path_of(name: str) -> Path:
    """A built-in preset's file, or the TOML file `name` points to."""
    if name.endswith(".toml"):
        return Path(name)
    if name not in names():
        raise SettingError("preset", name, f"unknown; expected one of {', '.join(names())} or a .toml file", "flag")
    return FOLDER / f"{name}.toml"


def load(name: str) -> dict:
    """The preset as a dict, its shape checked: one SettingError naming the file and the key."""
    path = path_of(name)
    try:
        preset = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise SettingError("preset", str(path), f"cannot read it ({err.strerror})", "flag") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise SettingError("", None, f"not TOML ({err})", file=str(path)) from None
    for key, value in preset.items():  # any other key is a section: the benchmark's are checked when applied
        if key in STRINGS and not isinstance(value, str):
            raise SettingError("", None, f"'{key}' must be a string", file=str(path))
        if key not in STRINGS and not isinstance(value, dict):
            raise SettingError(
                "",
                None,
                f"unknown key '{key}'; expected {', '.join(STRINGS)}, or a section table ([{key}])",
                file=str(path),
            )
    for method, values in preset.get("methods", {}).items():
        if not isinstance(values, dict):
            raise SettingError("", None, f"methods.{method} must be a table ([methods.{method}])", file=str(path))
    if "description" not in preset:
        raise SettingError("", None, "missing 'description' (one line for `harness run --help`)", file=str(path))
    return preset


def listing() -> str:
    """One line per built-in preset: its name and description, for `harness run --help`."""
    return "\n".join(f"  {name:17} {load(name)['description']}" for name in names())
