import os
import subprocess
import sys

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture
def figure_stats():
    """A PNG's width, height, share of inked (non-white) pixels and number of distinct colours."""

    def stats(path):
        pixels = matplotlib.image.imread(path)[..., :3]
        colours = len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0))
        return pixels.shape[1], pixels.shape[0], float((pixels < 0.9).any(axis=-1).mean()), colours

    return stats


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory):
    """CI's smoke run (the micro world, seeds 0, 1, 2), in a process of its own under the scalar kernels, its log
    (not a terminal) kept, each cell's model saved (`--save-models`). It trains the micro models every
    micro-world test then shares (`micro_cache`), so its log and models are the same whichever test asks
    first."""
    root = tmp_path_factory.mktemp("e2e")
    env = os.environ | {"ATEN_CPU_CAPABILITY": "default"}
    command = [
        sys.executable,
        "-m",
        "harness",
        "run",
        "--methods",
        "fo-graddiff,so-graddiff,simu",
        "--seeds",
        "0,1,2",
        "--out",
        str(root / "run"),
        "--cache-dir",
        str(root / "cache"),
        "--preset",
        "tofu-mini-smoke",
        "--save-models",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    (root / "log").write_text(done.stderr)
    assert done.returncode == 0, done.stderr[-2000:]
    return root


SMALL_LUME = ["lume.forget_docs=2", "lume.retain_docs=4", "lume.nonmember_docs=2", "lume.sum_operands=4"]
# the micro tokenizer (1,024 tokens, trained on the TOFU-style world) spends 60 to 80 tokens on a PII continuation
LONG_ENOUGH = ["--set", "eval.max_new_tokens=96"]
LUME_RUN = [
    "run",
    "--preset",
    "tofu-mini-smoke",
    "--benchmark",
    "lume-mini",
    "--methods",
    "fo-graddiff",
    "--lm-eval-tasks",
    "embedded_real_authors_loglik",
    *[a for s in SMALL_LUME for a in ("--set", s)],
    *LONG_ENOUGH,
]


@pytest.fixture(scope="session")
def lume_run(tmp_path_factory, micro_cache):
    """`harness run` on lume-mini at micro sizes through the CLI (`LUME_RUN`), once a session; it trains the
    micro LUME target into `micro_cache`."""
    from harness.cli import main

    out = tmp_path_factory.mktemp("lume") / "run"
    assert main([*LUME_RUN, "--out", str(out), "--cache-dir", str(micro_cache)]) == 0
    return out


@pytest.fixture(scope="session")
def task_index_cache(tmp_path_factory):
    """A harness cache shared by the tests that look up an unknown lm-eval task name: lm-eval's full task index,
    which takes seconds to build, is built there once a session."""
    return tmp_path_factory.mktemp("task-index")


@pytest.fixture(scope="session")
def micro_cache(micro_run):
    """The micro models' cache, trained once a session (by `micro_run`)."""
    return micro_run / "cache"


# A small synthetic leaderboard: two references, methods a and b over seeds 0 and 1.
ROWS = [
    {
        "method": "target",
        "kind": "reference",
        "seed": None,
        "forget_em_contains": 1.0,
        "retain_em_contains": 1.0,
        "mia_loss_auc": 1.0,
        "privleak_loss": -100.0,
        "wall_seconds": 5.0,
    },
    {
        "method": "retain",
        "kind": "reference",
        "seed": None,
        "forget_em_contains": 0.0,
        "retain_em_contains": 1.0,
        "mia_loss_auc": 0.5,
        "privleak_loss": 0.0,
        "wall_seconds": 5.0,
    },
    {
        "method": "a",
        "kind": "method",
        "seed": 0,
        "forget_em_contains": 0.2,
        "retain_em_contains": 0.8,
        "mia_loss_auc": 0.9,
        "privleak_loss": -80.0,
        "wall_seconds": 10.0,
    },
    {
        "method": "a",
        "kind": "method",
        "seed": 1,
        "forget_em_contains": 0.4,
        "retain_em_contains": 0.6,
        "mia_loss_auc": 0.7,
        "privleak_loss": -40.0,
        "wall_seconds": 12.0,
    },
    {
        "method": "b",
        "kind": "method",
        "seed": 0,
        "forget_em_contains": 0.1,
        "retain_em_contains": 0.9,
        "mia_loss_auc": 0.4,
        "privleak_loss": 20.0,
        "wall_seconds": 30.0,
    },
    {
        "method": "b",
        "kind": "method",
        "seed": 1,
        "forget_em_contains": 0.1,
        "retain_em_contains": 0.7,
        "mia_loss_auc": 0.4,
        "privleak_loss": 20.0,
        "wall_seconds": 30.0,
    },
]


@pytest.fixture
def board(tmp_path):
    """ROWS as a leaderboard frame, also written to tmp_path/leaderboard.csv."""
    frame = pd.DataFrame(ROWS)
    frame["seed"] = frame["seed"].astype("Int64")
    frame.to_csv(tmp_path / "leaderboard.csv", index=False)
    return frame


def context(cfg):
    """A run's context as far as its hashes need it: the benchmark's identity, nothing trained."""
    from pathlib import Path

    from harness.benchmarks.base import Prepared
    from harness.grid import Context
    from harness.registry import benchmarks

    bench = benchmarks[cfg.benchmark]()
    prepared = Prepared(
        splits=None, forget=[], retain=[], identity=bench.identity(cfg), model_name="", forget_split=cfg.forget_split
    )
    return Context(bench, prepared, cfg, Path("unused"), {})
