"""Run by tests/test_sharding.py under torchrun (2 gloo ranks): a tiny GPT-2, whose MLP output projection is a
Conv1D with its neurons as rows, sharded with harness/sharding.py; SIMU's row mask cut to each rank's rows, a
masked Sophia step, the global gradient norm, and the gathered weights checked against the whole ones.
Prints one `ok` line per rank, or raises."""

import math

import torch
import torch.distributed as dist
from transformers import GPT2Config, GPT2LMHeadModel

from harness import sharding
from methods import attribution
from methods.sophia import SophiaG


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)  # the same weights and masks on every rank
    config = GPT2Config(
        vocab_size=64, n_positions=32, n_embd=16, n_layer=2, n_head=2, n_inner=43, bos_token_id=0, eos_token_id=0
    )
    model = GPT2LMHeadModel(config)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    projections = attribution.output_projections(model)
    neurons = [torch.rand(p.n_neurons) < 0.3 for p in projections]
    names = [f"{p.name}.weight" for p in projections]

    sharding.shard_model(model, torch.float32)
    params = attribution.attention_parameters(model) + [p.module.weight for p in projections]
    trainable = {id(p) for p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in trainable)
    masks = {
        p.module.weight: sharding.local_mask(p.module.weight, p.weight_mask(n)) for p, n in zip(projections, neurons)
    }
    for (weight, mask), n in zip(masks.items(), neurons):
        rows = math.ceil(n.numel() / world)  # torch.chunk's split, as Shard(0) places rows
        expected = n[rank * rows : (rank + 1) * rows].view(-1, 1).expand(-1, weight.shape[1])
        assert torch.equal(mask, expected), f"rank {rank}: the local mask is not this rank's rows"

    optimizer = SophiaG(params, lr=1e-2, hessian="squared-grad", masks=masks)
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(rank))
    model(input_ids=ids, labels=ids).loss.backward()
    whole = [p.grad.full_tensor() for p in params]
    norm = torch.stack([g.norm() for g in whole]).norm()
    sharding.clip_gradients(params, float(norm) / 2)  # the global norm halves every gradient
    for p, g in zip(params, whole):
        assert torch.allclose(p.grad.full_tensor(), g * (float(norm) / 2) / (float(norm) + 1e-6), atol=1e-7)
    optimizer.step(bs=ids.numel())

    after = {name: p.full_tensor() for name, p in model.named_parameters()}
    for name, n in zip(names, neurons):
        assert torch.equal(after[name][~n], before[name][~n]), f"{name}: a row outside the mask moved"
        assert (after[name][n] != before[name][n]).any(), f"{name}: no row inside the mask moved"
    frozen = [k for k in before if not any(k.startswith(a) for a in ("transformer.h.0.attn", "transformer.h.1.attn"))]
    for name in frozen:
        if name not in names:
            assert torch.equal(after[name], before[name]), f"{name}: a frozen weight moved"
    print(f"rank {rank}: ok")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
