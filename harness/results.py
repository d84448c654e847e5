"""Result files, the leaderboard schema and CSV, config hashes, and the environment record.

No torch or transformers import here: `harness table` and `harness check` read results on any machine.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import platform
import signal
import socket
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import pandas as pd

from harness.files import write_atomically
from harness.progress import warn

IDENTITY_COLUMNS = ["benchmark", "method", "variant", "kind", "seed", "model", "weights_digest", "forget_split",
                    "template", "config_hash", "retain_reference", "environment", "device", "dtype", "world_size",
                    "per_device_batch", "effective_batch", "unchanged", "steps", "trainable_params",
                    "unlearn_seconds", "eval_seconds", "lmeval_seconds", "wall_seconds", "peak_memory_gib"]
REFERENCE_ROWS = ("target", "retain")
KINDS = ("reference", "method", "model")   # a row's `kind`: the target and retain models, a cell, harness eval's
ENVIRONMENT_FILE = "environment.json"
PACKAGES = ("torch", "transformers", "tokenizers", "datasets", "lm_eval", "accelerate", "numpy", "scipy",
            "scikit-learn", "rouge-score", "pandas")


def config_hash(*parts) -> str:
    """Short stable hash of dataclasses / dicts / strings, used for cache folders and result rows."""
    blob = json.dumps([asdict(p) if hasattr(p, "__dataclass_fields__") else p for p in parts], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@contextmanager
def uninterrupted():
    """Hold Ctrl-C and SIGTERM until the block is done, then raise KeyboardInterrupt: a cell's files are written
    whole before the run stops (main thread only; elsewhere the atomic renames still leave no partial file)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if caught:
            raise KeyboardInterrupt


def write_cell(results_dir: Path, cell: str, row: dict, items: list[dict]) -> None:
    """Items first, then the row: the row's JSON existing is what marks the cell done."""
    results_dir.mkdir(parents=True, exist_ok=True)
    with uninterrupted():
        write_atomically(results_dir / f"{cell}.items.jsonl", "".join(json.dumps(i) + "\n" for i in items))
        write_atomically(results_dir / f"{cell}.json", json.dumps(row, indent=1) + "\n")


def read_row(path: Path) -> dict:
    """One result row; a truncated or corrupt file is an error naming it."""
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a result row ({err}); rerun `harness run` to redo its cell") from None
    if not isinstance(row, dict) or not isinstance(row.get("method"), str):
        raise ValueError(f"{path}: not a result row (expected a JSON object with a 'method', found "
                         f"{type(row).__name__ if not isinstance(row, dict) else 'none'}); rerun `harness run` to "
                         f"redo its cell")
    return row


def items_complete(path: Path) -> bool:
    """A cell's per-item file is whole: every line one JSON record, the last one ended (an items file cut short
    would otherwise be kept beside its row on resume)."""
    try:
        text = path.read_text(encoding="utf-8")
        if text and not text.endswith("\n"):
            return False
        return all(isinstance(json.loads(line), dict) for line in text.splitlines())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False


def cell_done(results_dir: Path, cell: str, cell_hash: str, reference_hash: str | None = None) -> bool:
    """The cell's row exists for this configuration and was scored against this retain reference. A corrupt
    row (a disk that filled up, a copy cut short) is reported by name, and its cell runs again."""
    path = results_dir / f"{cell}.json"
    if not path.exists():
        return False
    try:
        row = read_row(path)
    except ValueError as err:
        warn(f"{str(err).split(';')[0]}; running its cell again")
        return False
    if row.get("config_hash") != cell_hash or row.get("retain_reference") != reference_hash:
        return False
    items = results_dir / f"{cell}.items.jsonl"
    if not items_complete(items):
        warn(f"{items}: missing or cut short; running its cell again")
        return False
    return True


def is_model(frame: pd.DataFrame) -> pd.Series:
    """Which rows are `harness eval`'s (kind `model`): one model each, with no seeds."""
    return frame["kind"].eq("model") if "kind" in frame else pd.Series(False, index=frame.index)


def swept_columns(frame: pd.DataFrame) -> list[str]:
    """A sweep's hyperparameter columns, named like the grid key (`simu.t`): the only names with a dot."""
    return [c for c in frame.columns if "." in c]


def build_leaderboard(out_dir: Path, methods: list[str] = (), models: list[str] = ()) -> pd.DataFrame:
    """One row per result file: the reference models first, then the methods' cells in `methods`' order, then
    `harness eval`'s models; rows of earlier commands into the same folder keep the order the folder's
    leaderboard had them in (new models are added after them), the rest by name, each by grid point and seed."""
    rows = [read_row(p) for p in sorted((out_dir / "results").glob("*.json"))]
    frame = pd.DataFrame(rows)
    kinds = frame["kind"].map(lambda k: KINDS.index(k) if k in KINDS else len(KINDS)) if "kind" in frame else 0
    order = list(dict.fromkeys([*REFERENCE_ROWS, *methods, *_previous_order(out_dir), *models]))
    frame["_kind"], frame["_order"] = kinds, frame["method"].map(lambda m: order.index(m) if m in order else len(order))
    swept = swept_columns(frame)
    frame = frame.sort_values(["_kind", "_order", "method", *swept, "seed"], na_position="first").drop(
        columns=["_kind", "_order"])
    frame["seed"] = frame["seed"].astype("Int64")  # integers, empty for the reference rows
    metrics = [c for c in frame.columns if c not in IDENTITY_COLUMNS and c not in swept]
    return frame[[c for c in IDENTITY_COLUMNS if c in frame.columns] + swept + metrics]


def _previous_order(out_dir: Path) -> list[str]:
    """The row names of the folder's leaderboard as it was (an unreadable one gives none)."""
    try:
        return list(dict.fromkeys(pd.read_csv(out_dir / "leaderboard.csv", usecols=["method"])["method"]))
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError):
        return []


def write_leaderboard(out_dir: Path, methods: list[str] = (), models: list[str] = ()) -> Path:
    path = out_dir / "leaderboard.csv"
    with uninterrupted():
        write_atomically(path, build_leaderboard(out_dir, methods, models).to_csv(index=False))
    return path


def write_artifacts(folder: Path, artifacts: dict) -> None:
    """A method's extra files (e.g. SIMU's masks) as `artifacts/<cell>/<name>`, before the row marks it done:
    `.pt` with torch (loaded only here, by the runner), anything else as JSON."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in artifacts.items():
        if name.endswith(".pt"):
            import torch
            buffer = io.BytesIO()   # torch.save reports a full disk as a RuntimeError naming no file
            torch.save(value, buffer)
            write_atomically(folder / name, buffer.getvalue())
        else:
            write_atomically(folder / name, json.dumps(value, indent=1) + "\n")


class CellsFailed(RuntimeError):
    """Some cells of a run failed (their rows are not written); the leaderboard holds the others."""

    def __init__(self, leaderboard: Path, cells: list[str]):
        super().__init__(f"{len(cells)} cell(s) failed and wrote no row: {', '.join(cells)} (the warnings above say "
                         f"why; the leaderboard {leaderboard} holds the others)")
        self.leaderboard, self.cells = leaderboard, cells


def check_writable(folder: Path) -> None:
    """Fail before any work when the run folder cannot be written (tried with a temporary file in it or in
    its nearest existing parent); nothing is left behind."""
    existing = next(p for p in [folder, *folder.parents] if p.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is a file")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise OSError(f"--out {folder}: cannot write there ({err.strerror or err})") from None


@contextmanager
def locked(out_dir: Path, wait: bool = False):
    """Hold an advisory lock on the run folder (`OUT/.lock`, naming its holder), so two processes never run
    the same cells; a second one says who holds it and stops, or waits with `wait`. A folder this created
    and left with nothing but the lock is removed again."""
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ".lock"
    try:
        with open(path, "a+", encoding="utf-8") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise RuntimeError(f"--out {out_dir}: in use by {holder}; wait for it to finish, or pass "
                                   f"--wait") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            handle.flush()
            try:
                yield
            finally:
                handle.seek(0)
                handle.truncate()
                fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        if created and [p.name for p in out_dir.iterdir()] == [".lock"]:
            path.unlink()
            out_dir.rmdir()


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


def environment(device: str = "cpu", dtype: str = "float32", world_size: int = 1) -> dict:
    """What can change a figure without a code change: package versions, the CPU and the ATen kernels it
    runs (PyTorch's `ATEN_CPU_CAPABILITY` switch), threads, device (its name on CUDA), dtype and processes."""
    import torch   # only the runner calls this, and it has torch loaded already

    return {"python": platform.python_version(), **{p: _version(p) for p in PACKAGES},
            "harness": _version("unlearning-harness"), "platform": platform.platform(),
            "cpu": _cpu_model(), "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY"), "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "device": device, "dtype": dtype,
            **({"gpu": torch.cuda.get_device_name(device)} if device.startswith("cuda") else {}),
            **({"world_size": world_size} if world_size > 1 else {})}


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

