"""`--shard fsdp`: the model trained sharded N ways with PyTorch FSDP2 (`torch.distributed.fsdp.fully_shard`),
and the little the methods need to work on its sharded parameters.

Each decoder layer (the classes in the model's `_no_split_modules`, as accelerate's FSDP auto-wrap takes them)
and then the root are `fully_shard`ed over every process of the run. The trained model's parameters become
float32 `Shard(0)` DTensors, the masters the optimizer steps (each rank holds 1/N of every weight, gradient
and optimizer state); a `MixedPrecisionPolicy` all-gathers them in the run's dtype for compute and
reduce-scatters gradients in float32, averaged over the ranks, so a sharded step sees what the unsharded
one does up to the order of the sums. A frozen copy (NPO's reference) is sharded in its own dtype.

After training, `gathered` copies the full weights, one parameter at a time, into a fresh unsharded model in
the run's dtype on every rank: the replicated copy that evaluation (data-parallel, evaluators) and
`--save-models` use.
"""

from __future__ import annotations

import os

import torch

from harness import distributed

MODES = ("none", "fsdp")


def mode(shard: str) -> str:
    """The run's sharding: `--shard`, or fsdp when `accelerate launch` was given an FSDP config (it sets
    ACCELERATE_USE_FSDP), so that config is honoured rather than refused."""
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true"):
        return "fsdp"
    return shard


def is_sharded(tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's part of a sharded tensor (a view: writing it writes the shard), or the tensor itself."""
    return tensor.to_local() if is_sharded(tensor) else tensor


def block_modules(model) -> list[torch.nn.Module]:
    """The model's repeated blocks (its decoder layers), each one FSDP unit."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    blocks = [m for m in model.modules() if type(m).__name__ in names]
    if not blocks:
        raise ValueError(
            f"--shard fsdp: {type(model).__name__} declares no decoder-layer class (_no_split_modules), so "
            f"there is nothing to shard layer by layer"
        )
    return blocks


def shard_model(model, dtype: torch.dtype, trained: bool = True) -> None:
    """`fully_shard` every block, then the root, in place. A `trained` model's parameters are cast to float32
    first, one block at a time (its masters: never a whole float32 copy before it is split), and computed in
    `dtype`; a frozen one stays in its dtype."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
    for module in [*block_modules(model), model]:
        if trained:
            for p in module.parameters():
                if not is_sharded(p) and p.dtype != torch.float32:
                    p.data = p.data.float()
        fully_shard(module, mp_policy=policy)


def local_mask(param, mask: torch.Tensor) -> torch.Tensor:
    """A mask over the whole parameter (or one that broadcasts to it) as this rank's part of it: a sharded
    parameter's rows are split across ranks, so a row mask (a Conv1D's neurons) must be split the same way."""
    if not is_sharded(param):
        return mask
    from torch.distributed.tensor import distribute_tensor

    whole = mask.expand(param.shape).contiguous()
    return distribute_tensor(whole, param.device_mesh, param.placements, src_data_rank=None).to_local()


def all_finite(params) -> bool:
    """Every element of every parameter is finite, on every rank."""
    mine = all(bool(torch.isfinite(local(p)).all()) for p in params)
    return bool(distributed.all_reduce(torch.tensor(float(mine)), "sum") == distributed.world_size())


def clip_gradients(params, max_norm: float) -> None:
    """Clip to the global gradient norm: over every rank's shards when sharded (as torchtitan computes it)."""
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads)
    if is_sharded(norm):
        norm = norm.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)


@torch.no_grad()
def gathered(sharded, fresh) -> torch.nn.Module:
    """`fresh` (an unsharded copy of the model before training, in the run's dtype) with the sharded model's
    trained weights, gathered one parameter at a time and rounded to its dtype, on every rank; the sharded
    model is then released."""
    weights = dict(sharded.named_parameters())
    for name, p in fresh.named_parameters():
        value = weights[name]
        p.copy_(value.full_tensor() if is_sharded(value) else value)
    del weights
    return fresh
