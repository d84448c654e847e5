"""The environment a row was made in, recorded beside it: what can change a figure without a code change
(package versions, the CPU and its ATen kernels, threads, device, dtype, processes). Two leaderboards are
comparable only when their records say so (`harness check` prints the differences)."""

from __future__ import annotations

import ctypes
import json
import os
import platform
from importlib import metadata
from pathlib import Path

from harness.files import write_atomically
from harness.hashing import config_hash

ENVIRONMENT_FILE = "environment.json"
PACKAGES = (
    "torch",
    "transformers",
    "tokenizers",
    "datasets",
    "lm_eval",
    "accelerate",
    "numpy",
    "scipy",
    "scikit-learn",
    "rouge-score",
    "pandas",
)


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


def _mkl_kernels() -> str | None:
    """Which of oneMKL's GEMM code paths this process runs, "intel" or "non-intel": MKL picks them by CPU vendor,
    not by `ATEN_CPU_CAPABILITY`, so one kernel set rounds differently on an Intel and an AMD CPU. Asked the
    way MKL asks (its vendor check, looked up globally first, where perf/mkl_intel_path.c answers when
    preloaded); None when torch has no MKL."""
    import torch

    if not torch.backends.mkl.is_available():
        return None
    for library in (None, Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"):
        try:
            return "intel" if ctypes.CDLL(library and str(library)).mkl_serv_intel_cpu_true() else "non-intel"
        except (OSError, AttributeError):
            continue
    return None


def environment(device: str = "cpu", dtype: str = "float32", world_size: int = 1, shard: str = "none") -> dict:
    """What can change a figure without a code change: package versions, the CPU, the ATen kernels it runs
    (PyTorch's `ATEN_CPU_CAPABILITY` switch) and MKL's (by CPU vendor), threads, device (its name on CUDA), dtype, processes and sharding."""
    import torch  # only the runner calls this, and it has torch loaded already

    return {
        "python": platform.python_version(),
        **{p: _version(p) for p in PACKAGES},
        "harness": _version("unlearning-harness"),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY"),
        "mkl_kernels": _mkl_kernels(),
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "device": device,
        "dtype": dtype,
        **({"gpu": torch.cuda.get_device_name(device)} if device.startswith("cuda") else {}),
        **({"world_size": world_size} if world_size > 1 else {}),
        **({"shard": shard} if shard != "none" else {}),
    }


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
    return [
        f"{k}: {theirs.get(k)} -> {ours.get(k)}"
        for k in dict.fromkeys([*theirs, *ours])
        if ours.get(k) != theirs.get(k)
    ]
