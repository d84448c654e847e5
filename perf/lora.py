"""LoRA against full updates for the same method, measured side by side in one run.

For each model (the tofu-mini target, and a randomly initialised model of SmolLM2-135M's shape: 30 layers,
hidden 576, 9 heads with 3 KV heads, vocabulary 49,152, tied embeddings) and each method (SO-GradDiff, NPO),
the full-update method and its LoRA variant (r 8 on q_proj and v_proj) each unlearn the same forget rows in a
fresh process, alternating, `--rounds` times. Prints per pair the median seconds per optimizer step (the
method's `setup` included, so NPO's frozen copy counts) and the process's peak RSS above what it held with the
model loaded (gradients, optimizer states, masters, copies, activations), and the LoRA/full ratios.

    python perf/lora.py [--rounds 3] [--rows 16] [--models tofu-mini,smollm2-135m-shape] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from simu_speed import SMOLLM2_135M  # HuggingFaceTB/SmolLM2-135M's shape (perf/ is on the path of a script)

PAIRS = [("so-graddiff", "so-graddiff-lora"), ("npo", "npo-lora")]


def one(model_name: str, method: str, rows: int, cache_dir: str | None) -> dict:
    """In this process: load the model, unlearn `rows` forget rows with `method` (1 epoch, batch 4), report."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    import harness
    from harness.config import method_config
    from harness.models import load_model, peak_memory_gib, reset_peak_memory
    from harness.registry import methods

    prepared = harness.prepare(cache_dir=cache_dir)
    model, tokenizer = load_model(prepared.target_dir)
    if model_name == "smollm2-135m-shape":
        torch.manual_seed(0)
        ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
        model = LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M, **ids, pad_token_id=tokenizer.pad_token_id))
    model.eval()
    reset_peak_memory("cpu")
    loaded = peak_memory_gib("cpu")
    cfg = method_config(method, {"epochs": 1, "batch_size": 4})
    report = methods[method](cfg).unlearn(model, tokenizer, prepared.forget[:rows], prepared.retain)
    return {
        "seconds_per_step": report.unlearn_seconds / report.steps,
        "memory_gib": peak_memory_gib("cpu") - loaded,
        "trainable": report.trainable_params,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def measure(model_name: str, method: str, rows: int, cache_dir: str | None) -> dict:
    """`one` in a fresh process (its own peak RSS), one thread per core this machine has."""
    args = [sys.executable, __file__, "--one", model_name, method, "--rows", str(rows)]
    args += ["--cache-dir", cache_dir] if cache_dir else []
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{model_name} {method}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=16, help="forget rows unlearned (4 steps at batch 4)")
    parser.add_argument("--models", default="tofu-mini,smollm2-135m-shape")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(*args.one, args.rows, args.cache_dir)))
        return
    for model_name in args.models.split(","):
        for full, lora in PAIRS:
            runs = {full: [], lora: []}
            for _ in range(args.rounds):
                for method in (full, lora):
                    runs[method].append(measure(model_name, method, args.rows, args.cache_dir))
            step = {m: statistics.median(r["seconds_per_step"] for r in rs) for m, rs in runs.items()}
            memory = {m: statistics.median(r["memory_gib"] for r in rs) for m, rs in runs.items()}
            first = runs[full][0]
            print(
                f"{model_name} ({first['parameters'] / 1e6:.1f}M parameters), {full} vs {lora} "
                f"({runs[lora][0]['trainable']:,} trainable), {args.rounds} rounds: "
                f"step {step[full]:.3f} s vs {step[lora]:.3f} s ({step[lora] / step[full]:.2f}x), "
                f"memory above the loaded model {memory[full]:.3f} GiB vs {memory[lora]:.3f} GiB "
                f"({memory[lora] / memory[full]:.2f}x)"
            )


if __name__ == "__main__":
    main()
