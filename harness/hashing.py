"""What names a cell: the hash of everything that was asked (data, models, evaluation, lm-eval tasks, how it
computes, the method's settings), never a measured value, so the same command has the same hash on every
machine. Result rows, saved models and the retain reference carry it; a resumed run skips a cell whose row
has it. Which of a method's settings enter it is declared on the settings (methods/settings.py)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

DEFAULT_COMPUTE = {"device": "cpu", "dtype": "float32", "world_size": 1, "shard": "none"}


def config_hash(*parts) -> str:
    """Short stable hash of dataclasses / dicts / strings, used for cache folders and result rows."""
    blob = json.dumps([asdict(p) if hasattr(p, "__dataclass_fields__") else p for p in parts], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def cell_hash(
    identity: dict, target: dict | None, forget_split: str, evaluation, tasks: list[str], compute: dict, *parts
) -> str:
    """A row's hash: the benchmark's `identity`, the target model's (None for rows that do not depend on it:
    the retain row, `harness eval`'s), the forget split, the evaluation settings, the lm-eval tasks, how it
    computes, then the row's own parts (its name, the method's hashed settings). Compute values at their
    defaults, like an absent target or an empty task list, add nothing, so hashes made before those settings
    existed stay valid; for the same reason `forget_split` is the run's setting (default "forget10") on every
    benchmark, LUME's too, whose rows say "forget" (it has one)."""
    compute = {k: v for k, v in compute.items() if v != DEFAULT_COMPUTE.get(k)}
    return config_hash(
        identity,
        *([target] if target else []),
        forget_split,
        evaluation,
        *([tasks] if tasks else []),
        *([compute] if compute else []),
        *parts,
    )
