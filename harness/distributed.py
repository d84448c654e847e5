"""Several processes, one run: the process group comes from accelerate (`accelerate launch` on GPUs, `torchrun`
on CPUs, which gives a gloo group), and this module is the little the harness needs from it.

One process (no launcher) is world size 1: every helper is then the identity, and nothing here initialises a
process group. Ranks train data-parallel (their gradients averaged), draw the data schedule on rank 0 and
share it, reduce SIMU's attribution scores, and only rank 0 evaluates and writes.
"""

from __future__ import annotations

import functools
import os

import torch


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


@functools.cache
def state():
    """accelerate's process state, created once per process when a launcher started several (its `cpu=True`
    when `--device cpu`, which `configure` set)."""
    from datetime import timedelta

    from accelerate import PartialState

    # the other ranks wait while rank 0 evaluates a model, which on a 7B model takes far longer than the
    # default 30 minutes a collective may wait
    return PartialState(cpu=os.environ.get("HARNESS_DEVICE", "") == "cpu", timeout=timedelta(days=7))


def rank() -> int:
    return state().process_index if world_size() > 1 else 0


def is_main() -> bool:
    return rank() == 0


def configure(device: str) -> None:
    """Before any work: join the process group, and share the cores among the processes of this machine so
    that N CPU processes do not each start one thread per core (tens of times slower)."""
    for engine in ("FSDP", "DEEPSPEED"):
        if os.environ.get(f"ACCELERATE_USE_{engine}", "").lower() in ("1", "true"):
            raise ValueError(
                f"accelerate config: {engine.lower()} sharding is not supported yet (SIMU's masks and "
                f"Sophia address whole parameters); use distributed_type MULTI_GPU, or check the memory "
                f"with --dry-run"
            )
    if world_size() == 1:
        return
    os.environ["HARNESS_DEVICE"] = device
    state()
    if device == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size()))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))


def device_for(device: str) -> str:
    """The device this rank uses: `cuda` becomes `cuda:LOCAL_RANK` when several processes share a machine."""
    if world_size() > 1 and device == "cuda":
        return f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return device


def share(value, source: int = 0):
    """`value` as rank `source` has it, on every rank (any picklable object)."""
    if world_size() == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value], from_process=source)[0]


def all_reduce(tensor: torch.Tensor, op: str = "mean") -> torch.Tensor:
    """In place: the mean (or sum) of `tensor` over the ranks."""
    if world_size() > 1:
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        if op == "mean":
            tensor /= world_size()
    return tensor


def average_gradients(params) -> None:
    """What DistributedDataParallel does after backward: every rank's gradients become their mean."""
    if world_size() > 1:
        for p in params:
            if p.grad is not None:
                all_reduce(p.grad)


def barrier() -> None:
    if world_size() > 1:
        state().wait_for_everyone()


def main_first(fn, *args):
    """`fn(*args)` on rank 0, then on the other ranks (which find what rank 0 cached)."""
    if not is_main():
        barrier()
    value = fn(*args)
    if is_main():
        barrier()
    return value


def check_same(tensors: list[torch.Tensor], what: str) -> None:
    """Raise unless every rank holds bit-identical `tensors` (e.g. SIMU's masks, which must agree)."""
    if world_size() == 1:
        return
    mine = [t.cpu() for t in tensors]
    if not all(torch.equal(a, b) for a, b in zip(mine, share(mine))):
        raise RuntimeError(f"rank {rank()}: its {what} differs from rank 0's")
