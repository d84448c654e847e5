"""Result files, the leaderboard schema and CSV, config hashes, and the environment record.

No torch or transformers import here: `harness table` and `harness check` read results on any machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import pandas as pd

IDENTITY_COLUMNS = ["benchmark", "method", "variant", "kind", "seed", "model", "forget_split", "template",
                    "config_hash", "retain_reference", "environment", "steps", "trainable_params",
                    "unlearn_seconds", "eval_seconds", "lmeval_seconds", "wall_seconds"]
REFERENCE_ROWS = ("target", "retain")
ENVIRONMENT_FILE = "environment.json"
PACKAGES = ("torch", "transformers", "tokenizers", "datasets", "lm_eval", "accelerate", "numpy", "scipy",
            "scikit-learn", "rouge-score", "pandas")


def config_hash(*parts) -> str:
    """Short stable hash of dataclasses / dicts / strings, used for cache folders and result rows."""
    blob = json.dumps([asdict(p) if hasattr(p, "__dataclass_fields__") else p for p in parts], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file unique to this writer in the same folder, then rename over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_cell(results_dir: Path, cell: str, row: dict, items: list[dict]) -> None:
    """Items first, then the row: the row's JSON existing is what marks the cell done."""
    results_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(results_dir / f"{cell}.items.jsonl", "".join(json.dumps(i) + "\n" for i in items))
    write_atomically(results_dir / f"{cell}.json", json.dumps(row, indent=1) + "\n")


def cell_done(results_dir: Path, cell: str, cell_hash: str, reference_hash: str | None = None) -> bool:
    """The cell's row exists for this configuration and was scored against this retain reference."""
    path = results_dir / f"{cell}.json"
    if not path.exists():
        return False
    row = json.loads(path.read_text())
    return row["config_hash"] == cell_hash and row.get("retain_reference") == reference_hash


def swept_columns(frame: pd.DataFrame) -> list[str]:
    """A sweep's hyperparameter columns, named like the grid key (`simu.t`): the only names with a dot."""
    return [c for c in frame.columns if "." in c]


def build_leaderboard(out_dir: Path) -> pd.DataFrame:
    """One row per result file: the reference models first, then methods by name and seed."""
    rows = [json.loads(p.read_text()) for p in sorted((out_dir / "results").glob("*.json"))]
    frame = pd.DataFrame(rows)
    frame["_order"] = frame["method"].map(lambda m: REFERENCE_ROWS.index(m) if m in REFERENCE_ROWS else 9)
    swept = swept_columns(frame)
    frame = frame.sort_values(["_order", "method", *swept, "seed"], na_position="first").drop(columns="_order")
    frame["seed"] = frame["seed"].astype("Int64")  # integers, empty for the reference rows
    metrics = [c for c in frame.columns if c not in IDENTITY_COLUMNS and c not in swept]
    return frame[[c for c in IDENTITY_COLUMNS if c in frame.columns] + swept + metrics]


def write_leaderboard(out_dir: Path) -> Path:
    path = out_dir / "leaderboard.csv"
    write_atomically(path, build_leaderboard(out_dir).to_csv(index=False))
    return path


# --- the environment a run was made in ---------------------------------------------------------------------

def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str = "cpu", dtype: str = "float32") -> dict:
    """What can change a figure without a code change: package versions, the CPU and the ATen kernels it
    runs (PyTorch's `ATEN_CPU_CAPABILITY` switch), threads, device and dtype."""
    import torch   # only the runner calls this, and it has torch loaded already

    return {"python": platform.python_version(), **{p: _version(p) for p in PACKAGES},
            "harness": _version("unlearning-harness"), "platform": platform.platform(),
            "cpu": _cpu_model(), "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY"), "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "device": device, "dtype": dtype}


def record_environment(out_dir: Path, env: dict) -> str:
    """Add `env` to OUT/environment.json (hash -> record; a resumed run may add a second one); returns its
    hash, which every row made in it carries in its `environment` column."""
    key = config_hash(env)
    path = out_dir / ENVIRONMENT_FILE
    records = read_environments(path)
    if key not in records:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(records | {key: env}, indent=1) + "\n")
    return key


def read_environments(path: Path) -> dict[str, dict]:
    """The environment records of a run folder (OUT/environment.json) or of a committed reference
    (`NAME.environment.json` beside `NAME.csv`); empty when there is none."""
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err})") from None


def environment_path(leaderboard: str | Path) -> Path:
    """Where a leaderboard's environment record lives: beside a run's leaderboard.csv, or `NAME.environment.json`
    beside a committed `NAME.csv`."""
    path = Path(leaderboard)
    if path.is_dir():
        return path / ENVIRONMENT_FILE
    if path.name == "leaderboard.csv":
        return path.parent / ENVIRONMENT_FILE
    return path.with_name(path.stem + ".environment.json")


def environment_differences(run: dict[str, dict], reference: dict[str, dict]) -> list[str]:
    """`key: reference value -> run value` for every field in which the run's environments differ from the
    reference's (each side's records merged; a field with several values lists them)."""
    def merged(records: dict[str, dict]) -> dict[str, str]:
        keys = dict.fromkeys(k for r in records.values() for k in r)
        return {k: " | ".join(dict.fromkeys(str(r.get(k)) for r in records.values())) for k in keys}
    ours, theirs = merged(run), merged(reference)
    return [f"{k}: {theirs.get(k)} -> {ours.get(k)}" for k in dict.fromkeys([*theirs, *ours])
            if ours.get(k) != theirs.get(k)]

