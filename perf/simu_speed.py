"""SIMU's cost next to SO-GradDiff's, and exact attribution at its cost floor against the straightforward one,
measured side by side in one run on the embedded benchmarks.

Prints:
- SIMU step time / SO-GradDiff step time (goal <= 1.10);
- on tofu-mini's forget set: new exact / old exact attribution time (goal: >= 10x faster), with the scores'
  largest difference relative to each layer's largest score and whether the masks are identical; exact
  attribution / one unlearning epoch (goal <= 3), and fast mode's;
- the same on lume-mini's long rows (`--skip-lume` leaves them out);
- on muse-mini's forget set (its articles of about 160 tokens and its questions), exact attribution of the
  forget set and its retain sample (SIMU's stage 1) / one unlearning epoch, and fast mode's (`--skip-muse`);
- the time per layer, before and after, on a random 30-layer model with a 49,152-token vocabulary shaped like
  SmolLM2-135M (`--skip-random` leaves it out).

    python perf/simu_speed.py [--cache-dir DIR] [--steps 20] [--skip-lume] [--skip-muse] [--skip-random]
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from harness.config import RunConfig, method_config
from harness.data.collate import encode_qa, pad_batch
from harness.data.lume import as_qa, load_lume
from harness.data.tofu import load_splits
from harness.embedded import prepare_embedded, prepare_embedded_lume
from harness.models import load_model, seed_everything
from harness.registry import benchmarks, methods
from methods import attribution
from methods.precision import MasterWeights

SMOLLM2_135M = dict(
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    vocab_size=49152,
    max_position_embeddings=2048,
    tie_word_embeddings=True,
)


def step_seconds(name: str, model_dir, forget, retain, steps: int, neurons=None, template: str = "qa") -> float:
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
    encode = lambda rows: [encode_qa(tokenizer, r["question"], r["answer"], template) for r in rows]  # noqa: E731
    f_ex, r_ex = encode(forget), encode(retain)
    bs = method.cfg.batch_size
    start = time.perf_counter()
    for i in range(steps):
        fb = pad_batch(f_ex[(i * bs) % len(f_ex) :][:bs], tokenizer.pad_token_id)
        rb = pad_batch(r_ex[(i * bs) % len(r_ex) :][:bs], tokenizer.pad_token_id)
        loss, _, _ = method.loss(model, fb, rb)
        loss.backward()
        method.optimizer_step(model, optimizer, method.weights.params, [(fb, rb)])
    return (time.perf_counter() - start) / steps


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def old_and_new(model, tokenizer, rows, template: str = "qa") -> dict:
    """Exact attribution both ways, and fast mode, on the same rows and model: times, agreement, masks."""
    old, old_s = timed(lambda: reference_exact(model, tokenizer, rows, template))
    new, new_s = timed(lambda: attribution.attribute(model, tokenizer, rows, m=5, template=template))
    _, fast_s = timed(lambda: attribution.attribute(model, tokenizer, rows, m=5, mode="fast", template=template))
    error = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(new, old))
    same = all(
        torch.equal(a, b)
        for a, b in zip(attribution.critical_neurons(new, 0.3), attribution.critical_neurons(old, 0.3))
    )
    return {
        "old": old_s,
        "new": new_s,
        "fast": fast_s,
        "error": error,
        "same_masks": same,
        "masks": attribution.critical_neurons(new, 0.3),
    }


def reference_exact(model, tokenizer, rows, template: str = "qa"):
    """The straightforward exact attribution (every prefix through the whole model, per layer and step)."""
    return attribution.attribute_by_prefix(model, tokenizer, rows, 5, "exact", "prob", 64, template)


def report(where: str, timings: dict, epoch: float) -> None:
    print(
        f"{where}: exact attribution, new {timings['new']:.2f} s / old {timings['old']:.1f} s: "
        f"{timings['old'] / timings['new']:.1f}x faster (goal >= 10); scores within "
        f"{timings['error']:.1e} of each layer's largest, masks {'identical' if timings['same_masks'] else 'DIFFER'}"
    )
    print(
        f"{where}: one unlearning epoch {epoch:.2f} s; exact attribution / epoch: new "
        f"{timings['new'] / epoch:.2f} (goal <= 3), old {timings['old'] / epoch:.1f}; "
        f"fast {timings['fast'] / epoch:.2f}"
    )


def tofu_mini(args) -> None:
    cfg = RunConfig(cache_dir=args.cache_dir)
    bench = prepare_embedded(cfg.section("world"), cfg.section("train"), cfg.forget_split, cfg.cache_dir)
    splits = load_splits(bench.world_dir, cfg.forget_split)
    model, tokenizer = load_model(bench.target_dir)
    timings = old_and_new(model, tokenizer, splits.forget)
    so_step = step_seconds("so-graddiff", bench.target_dir, splits.forget, splits.retain, args.steps)
    simu_step = step_seconds("simu", bench.target_dir, splits.forget, splits.retain, args.steps, timings["masks"])
    print(
        f"tofu-mini: SO-GradDiff step {so_step * 1000:.1f} ms, SIMU step {simu_step * 1000:.1f} ms: "
        f"ratio {simu_step / so_step:.2f} (goal <= 1.10)"
    )
    epoch = simu_step * math.ceil(len(splits.forget) / method_config("simu").batch_size)
    report(f"tofu-mini ({len(splits.forget)} forget QA)", timings, epoch)


def lume_mini(args) -> None:
    cfg = RunConfig(benchmark="lume-mini", cache_dir=args.cache_dir)
    lume = prepare_embedded_lume(cfg.section("world"), cfg.section("lume"), cfg.section("train"), cfg.cache_dir)
    splits = load_lume(lume.data_dir)
    forget, retain = as_qa(splits.forget), as_qa(splits.retain)
    model, tokenizer = load_model(lume.target_dir)
    timings = old_and_new(model, tokenizer, forget, "raw")
    simu_step = step_seconds("simu", lume.target_dir, forget, retain, args.steps, timings["masks"], "raw")
    epoch = simu_step * math.ceil(len(forget) / method_config("simu").batch_size)
    report(f"lume-mini ({len(forget)} forget rows)", timings, epoch)


def muse_mini(args) -> None:
    """SIMU's stage 1 on muse-mini's forget set (articles and questions) and as many retain rows, against one
    unlearning epoch of SIMU. No straightforward reference here: it reruns every prefix of every article."""
    cfg = RunConfig(benchmark="muse-mini", cache_dir=args.cache_dir)
    prepared = benchmarks["muse-mini"]().prepare(cfg)
    forget, retain = prepared.forget, prepared.retain
    model, tokenizer = load_model(prepared.target_dir)
    rows = forget + retain[: len(forget)]
    scores, exact = timed(lambda: attribution.attribute(model, tokenizer, rows, m=5, template="raw"))
    _, fast = timed(lambda: attribution.attribute(model, tokenizer, rows, m=5, mode="fast", template="raw"))
    masks = attribution.critical_neurons(scores, 0.3)
    simu_step = step_seconds("simu", prepared.target_dir, forget, retain, args.steps, masks, "raw")
    epoch = simu_step * math.ceil(len(forget) / method_config("simu").batch_size)
    print(
        f"muse-mini ({len(forget)} forget rows and {len(rows) - len(forget)} retain rows attributed): exact "
        f"attribution {exact:.2f} s, one unlearning epoch {epoch:.2f} s: exact / epoch {exact / epoch:.2f} "
        f"(goal <= 3), fast / epoch {fast / epoch:.2f}"
    )


def random_smollm2(tokenizer, rows) -> None:
    """Per-layer attribution time on a random SmolLM2-135M-shaped model (30 layers, 49k vocabulary)."""
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            **SMOLLM2_135M,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.bos_token_id,
        )
    )
    layers, sampled = SMOLLM2_135M["num_hidden_layers"], [0, 14, 29]  # before: each layer reruns the whole model
    old, old_s = timed(
        lambda: attribution.attribute_by_prefix(model, tokenizer, rows, 5, "exact", "prob", 64, "qa", layers=sampled)
    )
    new, new_s = timed(lambda: attribution.attribute(model, tokenizer, rows, m=5))
    error = max(float((new[i] - b).abs().max() / b.abs().max()) for i, b in zip(sampled, old))
    before, after = old_s / len(sampled), new_s / layers
    print(
        f"random SmolLM2-135M shape ({layers} layers, 49,152 vocabulary), {len(rows)} QA: per layer "
        f"{before:.2f} s before (layers {sampled}), {after:.3f} s after ({before / after:.1f}x); scores within "
        f"{error:.1e} of each layer's largest"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--skip-lume", action="store_true")
    parser.add_argument("--skip-muse", action="store_true")
    parser.add_argument("--skip-random", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    tofu_mini(args)
    if not args.skip_lume:
        lume_mini(args)
    if not args.skip_muse:
        muse_mini(args)
    if not args.skip_random:
        cfg = RunConfig(cache_dir=args.cache_dir)
        bench = prepare_embedded(cfg.section("world"), cfg.section("train"), cfg.forget_split, cfg.cache_dir)
        _, tokenizer = load_model(bench.target_dir)
        random_smollm2(tokenizer, load_splits(bench.world_dir, cfg.forget_split).forget[:4])


if __name__ == "__main__":
    main()
