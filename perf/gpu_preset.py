"""The OLMo-1B-sized preset on a small TOFU-schema fixture, on this machine's device: per method, the step
time, the peak memory against `--dry-run`'s plan, and SIMU's attribution time (README, "Running on GPUs").

    python perf/gpu_preset.py [--device auto] [--layers N] [--out DIR]

The `--model` is a random-weight model of `tofu-olmo-1b`'s shape (harness/presets/shapes/olmo-1b-hf.json;
`--layers` shrinks it for a trial on a CPU) with a tokenizer trained on the fixture's text, saved as
safetensors; the fixture is a generated world written as TOFU's official files. Random weights make the
figures meaningless; only the times and memory are the point.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import pandas as pd
from transformers import AutoConfig, AutoModelForCausalLM

from harness.cli import build_parser, config_from_args
from harness.cli import main as harness
from harness.data.tofu import write_official
from harness.data.world import WorldConfig, generate_world
from harness.embedded import train_tokenizer
from harness.memory import plan
from harness.models import DTYPES
from harness.registry import benchmarks

SHAPE = Path(__file__).resolve().parents[1] / "harness" / "presets" / "shapes" / "olmo-1b-hf.json"
WORLD = WorldConfig(n_authors=20, n_countries=6, n_real_authors=6, retain_eval_authors=4)


def write_model(folder: Path, texts: list[str], layers: int | None, dtype: str) -> Path:
    """A random model of the preset's shape (fewer layers if asked), with a tokenizer of the fixture's text."""
    tokenizer = train_tokenizer(texts, vocab_size=2048)
    values = {k: v for k, v in json.loads(SHAPE.read_text()).items() if not k.startswith("_")}
    values |= {
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
    } | ({"num_hidden_layers": layers} if layers else {})
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**values), dtype=DTYPES[dtype])
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--layers", type=int, default=None, help="fewer layers than the preset's 16 (a CPU trial)")
    parser.add_argument("--out", default=None, help="where the fixture, model and run go (default: a temp folder)")
    args = parser.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="gpu-preset-"))
    world = generate_world(WORLD)
    data = write_official(world, root / "tofu", "forget10")
    texts = [r[k] for rows in world.values() for r in rows for k in ("question", "answer")]
    model = write_model(root / "model", texts, args.layers, "bfloat16")
    argv = [
        "run",
        "--preset",
        "tofu-olmo-1b",
        "--model",
        str(model),
        "--data",
        str(data),
        "--device",
        args.device,
        "--seeds",
        "0",
        "--out",
        str(root / "run"),
        "--set",
        "eval.max_new_tokens=32",
    ]
    cfg = config_from_args(build_parser().parse_args(argv))
    _, n_params, plans = plan(cfg, benchmarks[cfg.benchmark]())
    assert harness(argv) == 0
    board = pd.read_csv(root / "run" / "leaderboard.csv").set_index("method")
    env = json.loads((root / "run" / "environment.json").read_text())
    device = next(iter(env.values())).get("gpu") or next(iter(env.values()))["cpu"]
    print(
        f"\n{n_params / 1e9:.2f}B parameters, bf16, on {device} ({os.cpu_count()} CPU cores); peak memory on a "
        f"CPU is the process's RSS, evaluation included, which the plan leaves out:"
    )
    print(
        f"{'method':12} {'steps':>5} {'s/step':>7} {'attribution s':>13} {'eval s':>7} {'peak GiB':>8} "
        f"{'planned GiB':>11}"
    )
    for p in plans:
        row = board.loc[p.method]
        attribution = row.get("simu_attribution_seconds", float("nan"))
        attribution = 0.0 if pd.isna(attribution) else attribution
        step = (row["unlearn_seconds"] - attribution) / row["steps"]
        print(
            f"{p.method:12} {int(row['steps']):5d} {step:7.3f} {attribution:13.1f} {row['eval_seconds']:7.1f} "
            f"{row['peak_memory_gib']:8.2f} {p.total:11.2f}"
        )


if __name__ == "__main__":
    main()
