"""Several processes, one run: the process group comes from accelerate (`accelerate launch` on GPUs, `torchrun`
on CPUs, which gives a gloo group), and this module is the little the harness needs from it.

One process (no launcher) is world size 1: every helper is then the identity, and nothing here initialises a
process group. Ranks train data-parallel (their gradients averaged), draw the data schedule on rank 0 and
share it, reduce SIMU's attribution scores, evaluate their share of a model's batches (`run_jobs`, gathered in
order on every rank), and only rank 0 writes. With `--shard fsdp` the model is sharded over them (harness/sharding.py).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


@functools.cache
def state():
    """accelerate's process state, created once per process when a launcher started several (its `cpu=True`
    when `--device cpu`, which `configure` set)."""
    from datetime import timedelta

    from accelerate import PartialState

    # the other ranks wait while rank 0 writes, or while one rank finishes a model's attribution or its
    # share of an evaluation, which on a 7B model may take longer than the default 30 minutes a collective waits
    return PartialState(cpu=os.environ.get("HARNESS_DEVICE", "") == "cpu", timeout=timedelta(days=7))


def rank() -> int:
    return state().process_index if world_size() > 1 else 0


def is_main() -> bool:
    return rank() == 0


def configure(device: str, shard: str = "none") -> None:
    """Before any work: join the process group, and share the cores among the processes of this machine so
    that N CPU processes do not each start one thread per core (tens of times slower). A sharded run in one
    process makes a group of one (FSDP2 needs a group even then)."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true"):
        raise ValueError(
            "accelerate config: DeepSpeed is not supported (ZeRO-3 hands the optimizer flat partitions, which "
            "SIMU's per-parameter masks cannot address); use harness/presets/accelerate/fsdp.yaml (FSDP2) or "
            "--shard fsdp, or check the memory with --dry-run"
        )
    if world_size() == 1:
        if shard == "fsdp" and not torch.distributed.is_initialized():
            backend = "cuda:nccl,cpu:gloo" if device.startswith("cuda") else "gloo"
            torch.distributed.init_process_group(backend, store=torch.distributed.HashStore(), rank=0, world_size=1)
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
    """What DistributedDataParallel does after backward: every rank's gradients become their mean (a sharded
    parameter's gradient is already the mean: FSDP reduce-scatters it)."""
    from torch.distributed.tensor import DTensor

    if world_size() > 1:
        for p in params:
            if p.grad is not None and not isinstance(p.grad, DTensor):
                all_reduce(p.grad)


@dataclass
class Job:
    """Work over `items` in consecutive batches of `batch_size`: `fn` maps one batch (a list) to a list of as
    many results."""

    fn: Callable[[list], list]
    items: list
    batch_size: int


def run_jobs(jobs: list[Job], desc: str = "") -> list[list]:
    """Every job's results, in order, on every rank. All the jobs' batches are pooled and dealt round-robin to
    the ranks, so that N ranks share even a model's many small evaluations (a split of one batch), and each
    rank gets about 1/N of every job's batches, whatever a job's batch costs (a generation batch may cost one
    scoring batch on a CPU and fifty on a GPU); each batch is the one a single process computes, so the
    results are its results, bit for bit. `desc` names the progress bar (rank 0's)."""
    from harness.progress import progress

    batches = [
        (j, job.items[i : i + job.batch_size])
        for j, job in enumerate(jobs)
        for i in range(0, len(job.items), job.batch_size)
    ]
    mine = range(rank(), len(batches), world_size())
    bar = progress(mine, desc=desc, leave=False, disable=None if is_main() else True)
    done = {k: jobs[batches[k][0]].fn(batches[k][1]) for k in bar}
    if world_size() > 1:
        everyone = [None] * world_size()
        torch.distributed.all_gather_object(everyone, done)
        done = {k: out for part in everyone for k, out in part.items()}
    results = [[] for _ in jobs]
    for k, (j, _) in enumerate(batches):
        results[j] += done[k]
    return results


def map_batches(fn, items: list, batch_size: int, desc: str = "") -> list:
    """One job's results (`run_jobs`): `fn` over `items` in consecutive batches of `batch_size`."""
    return run_jobs([Job(fn, items, batch_size)], desc)[0]


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
