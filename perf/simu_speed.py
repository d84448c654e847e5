"""SIMU's cost next to SO-GradDiff's, measured side by side in one run on the default embedded benchmark.

Prints: SIMU step time / SO-GradDiff step time (goal <= 1.10), SIMU attribution time / one unlearning epoch
(goal <= 0.5), and exact- against fast-mode attribution (time ratio and mask Jaccard).

    python perf/simu_speed.py [--cache-dir DIR] [--steps 20]
"""

from __future__ import annotations

import argparse
import time

import torch

from harness.config import RunConfig, method_config
from harness.data.collate import encode_qa, pad_batch
from harness.data.tofu import load_splits
from harness.embedded import prepare_embedded
from harness.models import load_model, seed_everything
from harness.registry import methods
from methods import attribution
from methods.precision import MasterWeights


def step_seconds(name: str, model_dir, forget, retain, steps: int, neurons=None) -> float:
    """Mean wall time of one optimizer step (forward, backward, Sophia step) over `steps` steps."""
    model, tokenizer = load_model(model_dir)
    seed_everything(0)
    method = methods[name](method_config(name))
    params = method.trainable_parameters(model)
    if neurons is not None:
        method.neurons = neurons
    for p in model.parameters():
        p.requires_grad_(any(p is q for q in params))
    method.weights = MasterWeights(params)
    optimizer = method.make_optimizer(method.weights.params)
    encode = lambda rows: [encode_qa(tokenizer, r["question"], r["answer"]) for r in rows]  # noqa: E731
    f_ex, r_ex = encode(forget), encode(retain)
    bs = method.cfg.batch_size
    start = time.perf_counter()
    for i in range(steps):
        fb = pad_batch(f_ex[(i * bs) % len(f_ex):][:bs], tokenizer.pad_token_id)
        rb = pad_batch(r_ex[(i * bs) % len(r_ex):][:bs], tokenizer.pad_token_id)
        loss, _, _ = method.loss(model, fb, rb)
        loss.backward()
        method.optimizer_step(model, optimizer, method.weights.params, [(fb, rb)])
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg = RunConfig(cache_dir=args.cache_dir)
    bench = prepare_embedded(cfg.world, cfg.train, cfg.forget_split, cfg.cache_dir)
    splits = load_splits(bench.world_dir, cfg.forget_split)
    model, tokenizer = load_model(bench.target_dir)
    timings, masks = {}, {}
    for mode in ("fast", "exact"):
        start = time.perf_counter()
        scores = attribution.attribute(model, tokenizer, splits.forget, m=5, mode=mode)
        timings[mode] = time.perf_counter() - start
        masks[mode] = attribution.critical_neurons(scores, 0.3)
    so_step = step_seconds("so-graddiff", bench.target_dir, splits.forget, splits.retain, args.steps)
    simu_step = step_seconds("simu", bench.target_dir, splits.forget, splits.retain, args.steps, masks["exact"])
    epoch = simu_step * -(-len(splits.forget) // method_config("simu").batch_size)
    print(f"SO-GradDiff step {so_step * 1000:.1f} ms, SIMU step {simu_step * 1000:.1f} ms: "
          f"ratio {simu_step / so_step:.2f} (goal <= 1.10)")
    for mode in ("exact", "fast"):
        print(f"attribution ({mode}, forget set) {timings[mode]:.1f} s / one unlearning epoch {epoch:.2f} s: "
              f"ratio {timings[mode] / epoch:.1f} (goal <= 0.5)")
    print(f"exact / fast attribution time: {timings['exact'] / timings['fast']:.1f}x, "
          f"mask Jaccard {attribution.jaccard(masks['exact'], masks['fast']):.3f}")


if __name__ == "__main__":
    main()
