"""SIMU stage 1: integrated-gradient attribution of MLP neurons and the per-layer critical-neuron masks.

Hand-written: no library attributes the input channels of each layer's MLP output projection this way.
Definitions (REFERENCES.md, SIMU): for the activation vector beta entering layer l's output projection at the
predicting position, and j = 1..m, replace it by (j/m)*beta (all neurons of the layer together) and take
`Att_l[k] = sum_samples beta[k] * (1/m) * sum_j dP(target | (j/m)*beta) / da[k]`. Layers are attributed one
at a time, every other layer running untouched. P is the target token's softmax probability (DEPN); its log
is an option.

Modes: "exact" has one sample per answer prefix (q + a_<k -> a_k) and scales the predicting position only;
"fast" (ours) has one teacher-forced pass per QA that scales every answer-predicting position at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness import distributed
from harness.data.collate import IGNORE, device_of, encode_qa
from harness.progress import progress

# model_type -> (suffix of the MLP output projection, weight layout, suffixes of the attention projections)
ARCHITECTURES = {
    **{t: ("mlp.down_proj", "linear", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                       "self_attn.o_proj"))
       for t in ("llama", "mistral", "qwen2", "qwen3", "olmo", "olmo2", "gemma", "gemma2")},
    "gpt2": ("mlp.c_proj", "conv1d", ("attn.c_attn", "attn.c_proj")),
    "gpt_neox": ("mlp.dense_4h_to_h", "linear", ("attention.query_key_value", "attention.dense")),
}


@dataclass
class Projection:
    """One layer's MLP output projection; its neurons are weight columns (Linear) or rows (Conv1D)."""

    name: str
    module: torch.nn.Module
    layout: str

    @property
    def n_neurons(self) -> int:
        w = self.module.weight
        return w.shape[1] if self.layout == "linear" else w.shape[0]

    def weight_mask(self, neurons: torch.Tensor) -> torch.Tensor:
        """Boolean mask over the weight that is true on the given neurons' columns (rows for Conv1D)."""
        return neurons.view(1, -1) if self.layout == "linear" else neurons.view(-1, 1)


def architecture(model) -> tuple[str, str, tuple[str, ...]]:
    model_type = getattr(model.config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise ValueError(f"{type(model).__name__} (model_type={model_type!r}): SIMU does not know where its MLP "
                         f"output projection is; supported model types: {', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[model_type]


def output_projections(model) -> list[Projection]:
    """Every layer's MLP output projection, in layer order."""
    suffix, layout, _ = architecture(model)
    return [Projection(name, module, layout) for name, module in model.named_modules() if name.endswith(suffix)]


def attention_parameters(model) -> list[torch.nn.Parameter]:
    """Weights and biases of the attention projections (q, k, v, o or their fused equivalents)."""
    _, _, suffixes = architecture(model)
    return [p for name, module in model.named_modules() if name.endswith(suffixes) for p in module.parameters()]


def _samples(tokenizer, rows: list[dict], mode: str, template: str) -> list[tuple[list[int], list[int]]]:
    """(input ids, indices of the predicting positions) per sample."""
    samples = []
    for row in rows:
        ex = encode_qa(tokenizer, row["question"], row["answer"], template)
        ids, labels = ex["input_ids"], ex["labels"]
        answer_positions = [i - 1 for i, label in enumerate(labels) if label != IGNORE]
        if mode == "fast":
            samples.append((ids, answer_positions))
        else:
            samples += [(ids[:pos + 2], [pos]) for pos in answer_positions]  # the target rides along
    return samples


def _batch(samples, m: int, pad_id: int, device):
    """Each sample repeated m times (one per scaling step), right-padded, with the targets of each position,
    on the model's device."""
    width = max(len(ids) for ids, _ in samples)
    rows = len(samples) * m
    ids = torch.full((rows, width), pad_id, dtype=torch.long)
    mask = torch.zeros((rows, width), dtype=torch.long)
    positions = torch.zeros((rows, width), dtype=torch.bool)
    alphas = torch.arange(1, m + 1, dtype=torch.float32).repeat(len(samples)) / m
    for s, (sample_ids, pos) in enumerate(samples):
        for r in range(s * m, (s + 1) * m):
            ids[r, :len(sample_ids)] = torch.tensor(sample_ids)
            mask[r, :len(sample_ids)] = 1
            positions[r, pos] = True
    targets = torch.roll(ids, -1, dims=1)
    return tuple(t.to(device) for t in (ids, mask, positions, targets, alphas))


def _attribute_layer(model, proj: Projection, batches, m: int, objective: str) -> torch.Tensor:
    """Att_l over all samples for one layer."""
    captured = {}

    def scale_input(module, args):
        x = args[0].detach()
        alphas, positions = captured["alphas"], captured["positions"]
        scale = torch.where(positions, alphas.view(-1, 1), torch.ones_like(alphas).view(-1, 1)).unsqueeze(-1)
        scaled = (x * scale.to(x.dtype)).requires_grad_(True)
        captured["beta"], captured["scaled"] = x, scaled
        return (scaled,) + tuple(args[1:])

    handle = proj.module.register_forward_pre_hook(scale_input)
    total = torch.zeros(proj.n_neurons, device=proj.module.weight.device)
    try:
        for ids, mask, positions, targets, alphas in batches:
            captured["alphas"], captured["positions"] = alphas, positions
            logits = model(input_ids=ids, attention_mask=mask).logits
            logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            value = logp if objective == "logprob" else logp.exp()
            (grad,) = torch.autograd.grad(value[positions].sum(), captured["scaled"])
            beta, grad = captured["beta"][positions], grad[positions]       # (rows * positions, neurons)
            total += (beta.float() * grad.float()).sum(0).detach() / m     # beta * mean_j grad_j, summed
    finally:
        handle.remove()
    return total


def attribute(model, tokenizer, rows: list[dict], m: int = 5, mode: str = "exact", objective: str = "prob",
              batch_size: int = 64, template: str = "qa") -> list[torch.Tensor]:
    """Per-layer neuron attribution scores of `rows` (one tensor per output projection, in layer order). In a
    run of several processes each rank attributes every N-th sample and the scores are summed over the ranks,
    so every rank holds the same scores, and so the same mask."""
    if mode not in ("exact", "fast"):
        raise ValueError(f"attribution mode {mode!r}: expected exact or fast")
    if objective not in ("prob", "logprob"):
        raise ValueError(f"attribution objective {objective!r}: expected prob or logprob")
    was_training = model.training
    model.eval()
    samples = _samples(tokenizer, rows, mode, template)[distributed.rank()::distributed.world_size()]
    per_batch = max(1, batch_size // m)
    batches = [_batch(samples[i:i + per_batch], m, tokenizer.pad_token_id, device_of(model))
               for i in range(0, len(samples), per_batch)]
    scores = [distributed.all_reduce(_attribute_layer(model, proj, batches, m, objective), "sum")
              for proj in progress(output_projections(model), desc=f"attribute ({mode})", leave=False)]
    model.train(was_training)
    return scores


def critical_neurons(scores: list[torch.Tensor], t: float) -> list[torch.Tensor]:
    """Per layer, the neurons with `Att >= t * max Att` (>= so that t = 1 keeps exactly the maximum)."""
    if not 0 < t <= 1:
        raise ValueError(f"simu.t={t}: expected a threshold in (0, 1]")
    return [s >= t * s.max() for s in scores]


def simu_masks(forget_critical: list[torch.Tensor], retain_critical: list[torch.Tensor], kind: str = "dual"):
    """'dual': every forget-critical neuron; 'forget-only': forget-critical minus retain-critical."""
    if kind == "dual":
        return [f.clone() for f in forget_critical]
    if kind == "forget-only":
        return [f & ~r for f, r in zip(forget_critical, retain_critical)]
    raise ValueError(f"simu.mask={kind!r}: expected dual or forget-only")


def jaccard(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """|a ∩ b| / |a ∪ b| over all layers' critical neurons."""
    inter = sum(int((x & y).sum()) for x, y in zip(a, b))
    union = sum(int((x | y).sum()) for x, y in zip(a, b))
    return inter / union if union else 1.0
