"""SIMU stage 1: integrated-gradient attribution of MLP neurons and the per-layer critical-neuron masks.

Hand-written: no library attributes the input channels of each layer's MLP output projection this way.
Definitions (REFERENCES.md, SIMU): for the activation vector beta entering layer l's output projection at the
predicting position, and j = 1..m, replace it by (j/m)*beta (all neurons of the layer together) and take
`Att_l[k] = sum_samples beta[k] * (1/m) * sum_j dP(target | (j/m)*beta) / da[k]`. Layers are attributed one
at a time, every other layer running untouched. P is the target token's softmax probability (DEPN); its log
is an option.

Modes: "exact" has one sample per answer prefix (q + a_<k -> a_k) and scales the predicting position only;
"fast" (ours) has one teacher-forced pass per QA that scales every answer-predicting position at once.

Exact mode at its cost floor (`attribute_exact`): scaling layer l at position p changes nothing at earlier
positions, nor below layer l at p. So one teacher-forced pass per QA keeps every layer's keys and values and
every layer's input at every position, and each (prefix, step) then costs one token through layers l..L:
that token attends to the cached keys of its prefix, enters layer l with the cached hidden state, and only its
logits are computed. A QA's tokens share one row and its cache: a 4D mask shows each token its own prefix and
itself, so no prefix's keys and values are copied per token (those copies took 80% of the time before).
`attribute_by_prefix`, which reruns every prefix through the whole model once per layer and step, is kept as
the reference the tests compare it with.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from harness import distributed
from harness.data.collate import IGNORE, device_of, encode_qa, pad
from harness.progress import progress

CACHE_BUDGET = 4 * 2**30  # bytes of cached keys, values and hidden states one exact-attribution group may hold

# model_type -> (suffix of the MLP output projection, weight layout, suffixes of the attention projections)
ARCHITECTURES = {
    **{
        t: ("mlp.down_proj", "linear", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"))
        for t in ("llama", "mistral", "qwen2", "qwen3", "olmo", "olmo2", "gemma", "gemma2")
    },
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
        raise ValueError(
            f"{type(model).__name__} (model_type={model_type!r}): SIMU does not know where its MLP "
            f"output projection is; supported model types: {', '.join(sorted(ARCHITECTURES))}"
        )
    return ARCHITECTURES[model_type]


def output_projections(model) -> list[Projection]:
    """Every layer's MLP output projection, in layer order."""
    suffix, layout, _ = architecture(model)
    return [Projection(name, module, layout) for name, module in model.named_modules() if name.endswith(suffix)]


def attention_parameters(model) -> list[torch.nn.Parameter]:
    """Weights and biases of the attention projections (q, k, v, o or their fused equivalents)."""
    _, _, suffixes = architecture(model)
    return [p for name, module in model.named_modules() if name.endswith(suffixes) for p in module.parameters()]


def _examples(tokenizer, rows: list[dict], template: str) -> list[tuple[list[int], list[int]]]:
    """(input ids, the positions that predict an answer token) per QA. A first token has no predicting position
    (a raw document from a tokenizer without BOS): the loss never sees it, and neither does attribution."""
    out = []
    for row in rows:
        ex = encode_qa(tokenizer, row["question"], row["answer"], template)
        out.append((ex["input_ids"], [i - 1 for i, label in enumerate(ex["labels"]) if label != IGNORE and i > 0]))
    return out


def _samples(tokenizer, rows: list[dict], mode: str, template: str) -> list[tuple[list[int], list[int]]]:
    """(input ids, indices of the predicting positions) per sample."""
    samples = []
    for ids, answer_positions in _examples(tokenizer, rows, template):
        if mode == "fast":
            samples.append((ids, answer_positions))
        else:
            samples += [(ids[: pos + 2], [pos]) for pos in answer_positions]  # the target rides along
    return samples


def _batch(samples, m: int, pad_id: int, device):
    """Each sample repeated m times (one per scaling step), right-padded, with the targets of each position,
    on the model's device."""
    repeated = [sample for sample in samples for _ in range(m)]
    ids, mask = pad([sample_ids for sample_ids, _ in repeated], pad_id)
    positions = torch.zeros(ids.shape, dtype=torch.bool)
    for r, (_, pos) in enumerate(repeated):
        positions[r, pos] = True
    alphas = torch.arange(1, m + 1, dtype=torch.float32).repeat(len(samples)) / m
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

    total = torch.zeros(proj.n_neurons, device=proj.module.weight.device)
    with _hooked(proj.module, scale_input):
        for ids, mask, positions, targets, alphas in batches:
            captured["alphas"], captured["positions"] = alphas, positions
            logits = model(input_ids=ids, attention_mask=mask).logits
            logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            value = logp if objective == "logprob" else logp.exp()
            (grad,) = torch.autograd.grad(value[positions].sum(), captured["scaled"])
            beta, grad = captured["beta"][positions], grad[positions]  # (rows * positions, neurons)
            total += (beta.float() * grad.float()).sum(0).detach() / m  # beta * mean_j grad_j, summed
    return total


def attribute(
    model,
    tokenizer,
    rows: list[dict],
    m: int = 5,
    mode: str = "exact",
    objective: str = "prob",
    batch_size: int = 64,
    template: str = "qa",
    chunk: int = 256,
) -> list[torch.Tensor]:
    """Per-layer neuron attribution scores of `rows` (one tensor per output projection, in layer order): exact
    mode at its cost floor (`attribute_exact`, `chunk` scaled tokens per pass), fast mode by teacher-forced
    passes (`batch_size` rows per pass). In a run of several processes each rank attributes every N-th row and
    the scores are summed over the ranks, so every rank holds the same scores, and so the same mask."""
    if mode not in ("exact", "fast"):
        raise ValueError(f"attribution mode {mode!r}: expected exact or fast")
    if objective not in ("prob", "logprob"):
        raise ValueError(f"attribution objective {objective!r}: expected prob or logprob")
    rows = rows[distributed.rank() :: distributed.world_size()]
    if mode == "exact":
        scores = attribute_exact(model, tokenizer, rows, m, objective, template, chunk)
    else:
        scores = attribute_by_prefix(model, tokenizer, rows, m, mode, objective, batch_size, template)
    return [distributed.all_reduce(s, "sum") for s in scores]


MASKED_ATTENTION = ("sdpa", "eager")  # the attention implementations that take exact mode's 4D masks


@contextlib.contextmanager
def _attributing(model):
    """Evaluation mode and no parameter gradients (only the scaled activations need them), and an attention
    that takes a 4D mask (sdpa in place of flash attention), restored after."""
    was_training, flags = model.training, [p.requires_grad for p in model.parameters()]
    attention = getattr(model.config, "_attn_implementation", None)
    model.eval().requires_grad_(False)
    if attention is not None and attention not in MASKED_ATTENTION:
        model.set_attn_implementation("sdpa")
    try:
        yield
    finally:
        if attention is not None and attention not in MASKED_ATTENTION:
            model.set_attn_implementation(attention)
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
        model.train(was_training)


def attribute_by_prefix(
    model,
    tokenizer,
    rows: list[dict],
    m: int,
    mode: str,
    objective: str,
    batch_size: int,
    template: str,
    layers: list[int] | None = None,
) -> list[torch.Tensor]:
    """The straightforward implementation: every sample (an answer prefix, or a whole QA in fast mode) through
    the whole model, m times, once per layer (`layers`: only those). Fast mode's path, and exact mode's
    reference in the tests."""
    samples = _samples(tokenizer, rows, mode, template)
    per_batch = max(1, batch_size // m)
    batches = [
        _batch(samples[i : i + per_batch], m, tokenizer.pad_token_id, device_of(model))
        for i in range(0, len(samples), per_batch)
    ]
    projections = output_projections(model)
    with _attributing(model):
        return [
            _attribute_layer(model, projections[i], batches, m, objective)
            for i in progress(layers or range(len(projections)), desc=f"attribute ({mode})", leave=False)
        ]


def attribute_exact(
    model, tokenizer, rows: list[dict], m: int, objective: str, template: str, chunk: int = 256
) -> list[torch.Tensor]:
    """Exact mode's scores from one teacher-forced pass per group of QAs, then, per layer l, every (prefix, step)
    as one token through layers l..L only. A pass takes at most `chunk` such tokens; a group holds as many QAs
    as fill one pass, and fewer when their cached states would pass `CACHE_BUDGET` (long prefixes, large model)."""
    projections, device = output_projections(model), device_of(model)
    totals = [torch.zeros(p.n_neurons, device=device) for p in projections]
    examples = _examples(tokenizer, rows, template)
    per_pass = max(1, chunk // m)  # prefixes, each repeated m times
    budget = max(1, CACHE_BUDGET // _state_bytes(model))  # tokens of cached states a group may hold
    with _attributing(model):
        for group in progress(list(_groups(examples, per_pass, budget)), desc="attribute (exact)", leave=False):
            ids, kv, hidden = _prefix_states(model, group, tokenizer.pad_token_id, device)
            positions = [example_positions for _, example_positions in group]
            for part in _passes(positions, per_pass):
                scaled = _scaled_tokens(part, m, device)
                for layer in range(len(projections)):
                    totals[layer] += (
                        _attribute_tokens(model, projections, layer, ids, kv, hidden[layer], scaled, objective) / m
                    )
    return totals


@torch.no_grad()
def _prefix_states(model, group, pad_id: int, device):
    """One right-padded teacher-forced pass over a group of QAs: the token ids, every layer's keys and values,
    and every layer's input hidden states, at every position."""
    ids, mask = pad([qa_ids for qa_ids, _ in group], pad_id, device=device)
    out = model.base_model(input_ids=ids, attention_mask=mask, use_cache=True, output_hidden_states=True)
    return ids, [(layer.keys, layer.values) for layer in out.cache.layers], out.hidden_states


def _state_bytes(model) -> int:
    """Bytes the teacher-forced pass keeps per token (every layer's keys, values and input hidden states), an
    upper bound (full-width keys and values)."""
    c, size = model.config, next(model.parameters()).element_size()
    return (3 * c.num_hidden_layers + 1) * c.hidden_size * size


def _groups(examples, per_pass: int, budget: int):
    """Consecutive QAs whose prefixes fill about one pass and whose tokens fit the budget (a QA with more
    prefixes is a group of its own)."""
    group, size, tokens = [], 0, 0
    for example in examples:
        if group and (size + len(example[1]) > per_pass or (len(group) + 1) * max(tokens, len(example[0])) > budget):
            yield group
            group, size, tokens = [], 0, 0
        group.append(example)
        size, tokens = size + len(example[1]), max(tokens, len(example[0]))
    if group:
        yield group


def _passes(positions: list[list[int]], per_pass: int):
    """A group's predicting positions (one list per QA) cut into passes of at most `per_pass` prefixes, each pass
    a list of (QA index, its positions in the pass)."""
    part, size = [], 0
    for q, qa_positions in enumerate(positions):
        for start in range(0, len(qa_positions), per_pass):
            piece = qa_positions[start : start + per_pass]
            if part and size + len(piece) > per_pass:
                yield part
                part, size = [], 0
            part.append((q, piece))
            size += len(piece)
    if part:
        yield part


def _scaled_tokens(part, m: int, device) -> tuple[torch.Tensor, ...]:
    """A pass's tokens: each prefix m times (steps 1/m..1), one row per QA, right-padded. Returns the QA index
    of each row, each token's position and scale, and which tokens are real."""
    width = m * max(len(piece) for _, piece in part)
    rows = torch.tensor([q for q, _ in part], device=device)
    p = torch.zeros(len(part), width, dtype=torch.long)
    alpha, real = torch.ones(len(part), width), torch.zeros(len(part), width, dtype=torch.bool)
    steps = torch.arange(1, m + 1, dtype=torch.float32) / m
    for r, (_, piece) in enumerate(part):
        n = m * len(piece)
        p[r, :n] = torch.tensor(piece).repeat_interleave(m)
        alpha[r, :n], real[r, :n] = steps.repeat(len(piece)), True
    return rows, p.to(device), alpha.to(device), real.to(device)


def _attribute_tokens(model, projections, layer: int, ids, kv, hidden, scaled, objective: str) -> torch.Tensor:
    """sum over tokens of beta * dP/da at layer `layer`, for the tokens predicting from position p, with the
    layer's activation scaled by alpha. All the tokens of one QA are one row that shares its cached keys and
    values (no copy): a 4D mask lets each token see its prefix's cached slots and itself, nothing else, and it
    enters the layer with its prefix's cached hidden state."""
    from transformers import DynamicCache  # here, not above: checking `--set simu.*` then loads no transformers

    rows, p, alpha, real = scaled
    width, n = ids.shape[1], p.shape[1]
    cache = DynamicCache(ddp_cache_data=[(k[:0], v[:0]) for k, v in kv])  # filled below
    every_row = rows.tolist() == list(range(ids.shape[0]))  # the usual pass: the group's QAs, in order
    for cached, (k, v) in zip(cache.layers, kv):
        cached.keys, cached.values = (k, v) if every_row else (k[rows], v[rows])  # a copy of a few rows at most
    sees = torch.cat(
        [
            torch.arange(width, device=p.device) < p.unsqueeze(-1),
            torch.eye(n, dtype=torch.bool, device=p.device).expand(len(p), n, n),
        ],
        -1,
    )
    dtype = hidden.dtype
    mask = torch.zeros(sees.shape, dtype=dtype, device=p.device).masked_fill(~sees, torch.finfo(dtype).min)
    entering = hidden[rows].gather(1, p.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
    captured = {}

    def scale(module, args):
        x = args[0].detach()
        captured["beta"] = x
        captured["scaled"] = (x * alpha.unsqueeze(-1).to(x.dtype)).requires_grad_(True)
        return (captured["scaled"],) + tuple(args[1:])

    row_ids = ids[rows]
    with _from_layer(model, projections, layer, entering), _hooked(projections[layer].module, scale):
        logits = model(
            input_ids=row_ids.gather(1, p),
            attention_mask=mask.unsqueeze(1),
            position_ids=p,
            cache=cache,
            cache_position=torch.arange(width, width + n, device=p.device),
            use_cache=True,
        ).logits
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, row_ids.gather(1, p + 1).unsqueeze(-1)).squeeze(-1)
    value = logp if objective == "logprob" else logp.exp()
    (grad,) = torch.autograd.grad(value[real].sum(), captured["scaled"])
    return (captured["beta"][real].float() * grad[real].float()).sum(0)


@contextlib.contextmanager
def _hooked(module, hook):
    handle = module.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def _from_layer(model, projections, layer: int, hidden):
    """The model runs its decoder layers from `layer` on only, `hidden` entering that layer: the layer list is
    cut for the block, and a hook swaps the layer's input for `hidden` (what the embeddings make is dropped)."""
    parts = projections[layer].name.split(".")
    at = next(i for i in range(len(parts)) if parts[i].isdigit())  # model.layers.<i>.mlp.down_proj
    owner, name = model.get_submodule(".".join(parts[: at - 1])), parts[at - 1]
    layers = getattr(owner, name)

    def enter(module, args, kwargs):
        return ((hidden,) + tuple(args[1:]), kwargs) if args else (args, kwargs | {"hidden_states": hidden})

    handle = layers[layer].register_forward_pre_hook(enter, with_kwargs=True)
    setattr(owner, name, torch.nn.ModuleList(list(layers)[layer:]))
    try:
        yield
    finally:
        setattr(owner, name, layers)
        handle.remove()


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
