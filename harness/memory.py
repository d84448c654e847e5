"""`harness run --dry-run`: the memory each process needs, planned from the model's shape on the meta device
(no weights are loaded and nothing is written), per method, for the run's dtype and number of processes.

What is counted, per process (data parallel: every process holds all of it):
- weights: every parameter in the run's dtype, once per copy the method holds (`model_copies`: NPO's frozen
  reference makes two; with LoRA one, its reference being the base with the adapter off), plus LoRA's
  adapters in float32 (their own masters; a LoRA cell's gradients and optimizer states are the adapters');
- gradients: the trainable parameters' in float32 (a bf16 gradient becomes a float32 master gradient, one
  parameter at a time, so float32 is the peak either way);
- master weights: float32 copies of the trainable parameters when the model is not float32 (methods/precision.py);
- optimizer states: float32 tensors per trainable parameter, as many as the method declares
  (`optimizer_states`: two for AdamW's moments and Sophia's momentum and Hessian);
- activations: one micro-batch of forget and one of retain rows, `SEQUENCE` tokens each, kept for backward
  (Korthikanti et al. 2022: (34h + 5as) bytes per token and layer in 16 bits, scaled to the dtype; with
  gradient checkpointing, each layer's input plus one layer's full set);
- logits: those micro-batches' logits in the dtype, plus the float32 copy and gradient the loss makes.

With `--shard fsdp` over N processes (harness/sharding.py), per process:
- weights: 1/N of every parameter in float32 (the sharded masters, so no separate master column), 1/N of each
  frozen copy in the dtype, and the unsharded weights FSDP2 all-gathers in the dtype: the root's (embeddings,
  final norm, output layer: kept through the step) and two decoder layers' (the one computing, the prefetched);
- gradients and optimizer states: 1/N of the float32 ones;
- `load`: before sharding, the model as loaded (and any frozen copy made from it) whole in the dtype, where
  SIMU's attribution runs;
- `eval`: after training, the gathered evaluation copy, whole in the dtype, beside the float32 shards it is
  gathered from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from harness import distributed
from harness.models import DTYPES
from methods import lora

SEQUENCE = 512  # tokens per row for the activation estimate: open-unlearning's TOFU max_length
GIB = 2**30


@dataclass
class Plan:
    method: str
    setup: tuple[float, str] | None  # what the method's setup needs beyond the weights (bytes, what for)
    trainable: int
    weights: float
    gradients: float
    master: float
    optimizer: float
    activations: float
    logits: float
    load: float = 0.0  # sharded: the whole model(s) before sharding
    evaluation: float = 0.0  # sharded: the gathered evaluation copy and the shards

    @property
    def total(self) -> float:
        """While training."""
        return self.weights + self.gradients + self.master + self.optimizer + self.activations + self.logits

    @property
    def peak(self) -> float:
        return max(self.total, self.load, self.evaluation)


def model_shape(cfg, bench):
    """The target's config, and where it was read: the model's own (a folder, or the hub when online), else the
    preset's bundled shape (`model_shape`), else the embedded model's; one error line when none can be read."""
    if cfg.model or not cfg.model_shape:
        try:
            return bench.model_config(cfg), cfg.model or "the embedded model"
        except (OSError, ValueError) as err:
            if not cfg.model:
                raise
            if not cfg.model_shape:
                raise ValueError(
                    f"--model {cfg.model}: cannot read its config for --dry-run ({str(err).strip().splitlines()[0]})"
                ) from None
    from transformers import AutoConfig

    values = {k: v for k, v in json.loads(open(cfg.model_shape).read()).items() if not k.startswith("_")}
    unread = f", as {cfg.model} cannot be read here" if cfg.model else ""
    return AutoConfig.for_model(**values), f"the preset's shape {Path(cfg.model_shape).name}{unread}"


def meta_model(config, dtype: str):
    """The model on the meta device: every parameter's shape and dtype, no memory."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, dtype=DTYPES[dtype])


def activations_gib(config, tokens: int, dtype: str, checkpointing: bool) -> float:
    h, layers = config.hidden_size, config.num_hidden_layers
    heads, scale = config.num_attention_heads, DTYPES[dtype].itemsize / 2
    per_layer = tokens * (34 * h + 5 * heads * SEQUENCE) * scale
    if checkpointing:
        return (layers * tokens * h * DTYPES[dtype].itemsize + per_layer) / GIB
    return layers * per_layer / GIB


def plan(cfg, bench, processes: int = 1, shard: str = "none") -> tuple[str, int, list[Plan]]:
    """Where the shape came from, the parameter count, and each method's plan per process."""
    from harness.grid import Cell, cell_config
    from harness.registry import methods

    config, source = model_shape(cfg, bench)
    dtype = cfg.compute.dtype
    model = meta_model(config, dtype)
    size = DTYPES[dtype].itemsize
    n_params = sum(p.numel() for p in model.parameters())
    plans = []
    for name in cfg.methods:
        mcfg = cell_config(cfg, Cell(name, 0))
        method = methods[name](mcfg)
        adapter = lora.count_parameters(model, mcfg) if lora.enabled(mcfg) else 0  # float32: their own masters
        trainable = adapter or sum(p.numel() for p in method.trainable_parameters(model))
        tokens = 2 * mcfg.batch_size * SEQUENCE
        activations = activations_gib(config, tokens, dtype, cfg.compute.gradient_checkpointing)
        logits = tokens * config.vocab_size * (size + 8) / GIB
        copies, n = method.model_copies(), processes if shard == "fsdp" else 1
        if shard == "fsdp":  # float32 shards are the masters; the frozen copies sharded in the dtype
            weights = n_params * 4 / n + (copies - 1) * n_params * size / n + gathered_params(model) * size
            master, load, evaluation = 0.0, copies * n_params * size, n_params * size + n_params * 4 / n
        else:
            weights = copies * n_params * size + adapter * 4
            master = trainable * 4 if dtype != "float32" and not adapter else 0.0
            load, evaluation = 0.0, 0.0
        plans.append(
            Plan(
                name,
                method.setup_memory(),
                trainable,
                weights / GIB,
                trainable * 4 / n / GIB,
                master / GIB,
                method.optimizer_states * trainable * 4 / n / GIB,
                activations,
                logits,
                load=load / GIB,
                evaluation=evaluation / GIB,
            )
        )
    return source, n_params, plans


def gathered_params(model) -> int:
    """Parameters FSDP2 holds unsharded at once while training: the root's (kept from forward to backward) and
    two decoder layers' (the one computing and the one prefetched)."""
    from harness.sharding import block_modules

    blocks = block_modules(model)
    in_blocks = {id(p) for b in blocks for p in b.parameters()}
    root = sum(p.numel() for p in model.parameters() if id(p) not in in_blocks)
    return root + 2 * max(sum(p.numel() for p in b.parameters()) for b in blocks)


def count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def print_plan(cfg, bench, device: str, processes: int | None = None) -> None:
    """The plan as a table, and whether it fits this machine's accelerator. `processes`: plan for that many
    (default: this command's)."""
    from harness.sharding import mode

    world, shard = processes or distributed.world_size(), mode(cfg.compute.shard)
    source, n_params, plans = plan(cfg, bench, world, shard)
    print(
        f"dry run: {cfg.benchmark}, model {source}: {count(n_params)} parameters, {cfg.compute.dtype} on "
        f"{device}, {world} process{'es' if world > 1 else ''}, shard {shard}, gradient checkpointing "
        f"{'on' if cfg.compute.gradient_checkpointing else 'off'}; nothing loaded, nothing written"
    )
    header = ["method", "trainable", "weights", "gradients", "master", "optimizer", "activations", "logits"]
    header += ["total GiB"] if shard == "none" else ["train", "load", "eval", "peak GiB"]
    rows = []
    for p in plans:
        figures = [p.weights, p.gradients, p.master, p.optimizer, p.activations, p.logits, p.total]
        figures += [] if shard == "none" else [p.load, p.evaluation, p.peak]
        rows.append((p.method, count(p.trainable), *(f"{v:.2f}" for v in figures)))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
    needs: dict[tuple, list[str]] = {}
    for p in plans:
        if p.setup:
            needs.setdefault(p.setup, []).append(p.method)
    setups = "".join(
        f"; before training, {' and '.join(names)}: {what} needs up to {size / GIB:.0f} GiB beyond the weights"
        for (size, what), names in needs.items()
    )
    if shard == "none":
        print(
            f"per process; activations for 2 x batch_size rows of {SEQUENCE} tokens (forget and retain); "
            f"evaluation is not counted{setups}"
        )
        if world > 1:
            print(f"data parallel: each of the {world} processes holds all of the above (nothing is sharded)")
    else:
        print(
            f"per process, sharded {world} ways (FSDP2): float32 weights (the masters), gradients and optimizer "
            f"states divided by {world}, plus the layers all-gathered in {cfg.compute.dtype}; activations for "
            f"2 x batch_size rows of {SEQUENCE} tokens; load: the whole model(s) before sharding; eval: the "
            f"gathered evaluation copy in {cfg.compute.dtype} beside the shards{setups}"
        )
    if device.startswith("cuda"):
        capacity = torch.cuda.get_device_properties(device).total_memory / GIB
        for p in plans:
            print(
                f"{p.method}: {'fits' if p.peak < capacity else 'does not fit'} on "
                f"{torch.cuda.get_device_name(device)} ({capacity:.0f} GiB)"
            )
