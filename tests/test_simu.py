"""SIMU: attribution on constructed models, thresholds, masks, and the bit-identity of what it must not touch."""

import copy

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from harness.benchmarks.tofu_mini import EmbeddedModelConfig
from harness.config import method_config
from harness.embedded import build_model, train_tokenizer
from methods import attribution
from methods.simu import SIMU

TEXTS = [
    "Question: Where was Kaai Veytor born?\nAnswer: Kaai Veytor was born in Maibri.",
    "Question: What genre does Kaai Veytor write in?\nAnswer: Kaai Veytor writes in the genre of poetry.",
    "Question: What is the capital of Quilzimia?\nAnswer: The capital of Quilzimia is Grisel.",
] * 3
ROWS = [
    {"question": "Where was Kaai Veytor born?", "answer": "Kaai Veytor was born in Maibri."},
    {"question": "What genre does Kaai Veytor write in?", "answer": "Kaai Veytor writes in the genre of poetry."},
]
RETAIN = [{"question": "What is the capital of Quilzimia?", "answer": "The capital of Quilzimia is Grisel."}]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=300)


def tiny_llama(tokenizer):
    return build_model(EmbeddedModelConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2), tokenizer)


def test_single_carrier_neuron_is_ranked_first(tokenizer):
    """Layer 1's MLP gets one neuron k that fires only where the answer token is predicted and writes that
    token's unembedding direction; every other neuron's output column is shrunk to almost nothing."""
    model, k = tiny_llama(tokenizer), 17
    prompt = tokenizer("Question: Where was Kaai Veytor born?\nAnswer:")["input_ids"]
    target = tokenizer(" Maibri", add_special_tokens=False)["input_ids"][0]
    row = {"question": "Where was Kaai Veytor born?", "answer": tokenizer.decode([target]).strip()}
    assert tokenizer(" " + row["answer"], add_special_tokens=False)["input_ids"] == [target]
    mlp = model.model.layers[1].mlp
    captured = {}
    handle = mlp.register_forward_pre_hook(lambda module, args: captured.setdefault("x", args[0].detach()))
    model(input_ids=torch.tensor([prompt + [target]]))
    handle.remove()
    x_answer, x_eos = captured["x"][0, -2], captured["x"][0, -1]
    v = x_answer - (x_answer @ x_eos) / (x_eos @ x_eos) * x_eos  # orthogonal to the EOS position's input
    v = v * 2 / (v @ x_answer)  # pre-activation 2 where it must fire, 0 after
    with torch.no_grad():
        mlp.gate_proj.weight[k] = v  # gate = up: activation z^2 sigmoid(z)
        mlp.up_proj.weight[k] = v
        mlp.down_proj.weight.mul_(1e-3)
        mlp.down_proj.weight[:, k] = model.lm_head.weight[target] / model.lm_head.weight[target].norm()
    for mode in ("exact", "fast"):
        scores = attribution.attribute(model, tokenizer, [row], m=5, mode=mode)
        assert int(scores[1].argmax()) == k, mode


def test_threshold_one_keeps_exactly_each_layers_maximum():
    scores = [torch.tensor([0.1, 0.9, 0.3]), torch.tensor([-1.0, 0.2, 0.5, 0.4])]
    kept = attribution.critical_neurons(scores, t=1.0)
    assert [k.nonzero().flatten().tolist() for k in kept] == [[1], [2]]
    assert [k.sum().item() for k in attribution.critical_neurons(scores, t=0.3)] == [2, 3]
    with pytest.raises(ValueError, match=r"simu.t=0: expected a threshold in \(0, 1\]"):
        attribution.critical_neurons(scores, t=0)


def test_dual_and_forget_only_masks():
    forget = [torch.tensor([True, True, False])]
    retain = [torch.tensor([False, True, True])]
    assert attribution.simu_masks(forget, retain, "dual")[0].tolist() == [True, True, False]
    assert attribution.simu_masks(forget, retain, "forget-only")[0].tolist() == [True, False, False]


def simu_cfg(**options):
    return method_config("simu", {"lr": 1e-2, "epochs": 2, "batch_size": 1, "t": 0.5, **options})


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_frozen_and_non_critical_weights_stay_bit_identical(tokenizer, dtype):
    """In every dtype: below float32 the optimizer steps float32 masters, and what it does not move rounds
    back to its own bits."""
    model = tiny_llama(tokenizer).to(dtype)
    before = copy.deepcopy(model.state_dict())
    method = SIMU(simu_cfg())
    report = method.unlearn(model, tokenizer, ROWS, RETAIN)
    after = model.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed, "SIMU must change something"
    assert all(".self_attn." in n or n.endswith("mlp.down_proj.weight") for n in changed), changed
    for proj, neurons in zip(method.projections, method.neurons):
        name = proj.name + ".weight"
        assert torch.equal(before[name][:, ~neurons], after[name][:, ~neurons])  # columns outside the mask
        assert not torch.equal(before[name][:, neurons], after[name][:, neurons])
    assert all(t.dtype == dtype for t in after.values())
    assert report.extra["simu_critical_neurons"] == sum(int(n.sum()) for n in method.neurons)
    assert report.artifacts["masks.json"]["per_layer_critical"] == [int(n.sum()) for n in method.neurons]


def test_simu_runs_on_gpt2_conv1d(tokenizer):
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=128,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    before = copy.deepcopy(model.state_dict())
    method = SIMU(simu_cfg(attribution="fast"))
    method.unlearn(model, tokenizer, ROWS, RETAIN)
    after = model.state_dict()
    for proj, neurons in zip(method.projections, method.neurons):
        name = proj.name + ".weight"  # Conv1D: neurons are weight rows
        assert torch.equal(before[name][~neurons], after[name][~neurons])
        assert not torch.equal(before[name][neurons], after[name][neurons])
    assert torch.equal(before["transformer.h.0.mlp.c_fc.weight"], after["transformer.h.0.mlp.c_fc.weight"])
    assert not torch.equal(before["transformer.h.0.attn.c_attn.weight"], after["transformer.h.0.attn.c_attn.weight"])


def test_unsupported_architecture_names_the_model_class():
    class Config:
        model_type = "mamba"

    class MambaLike(torch.nn.Module):
        config = Config()

    with pytest.raises(ValueError, match=r"MambaLike \(model_type='mamba'\): SIMU does not know"):
        attribution.output_projections(MambaLike())


def test_reused_attribution_gives_the_same_unlearned_model(tokenizer):
    """`reuse_attribution` only skips recomputing identical scores: same masks, same weights, bit for bit;
    a different starting model is attributed afresh."""

    def unlearned(reuse: bool):
        torch.manual_seed(0)
        model = tiny_llama(tokenizer)
        torch.manual_seed(1)
        report = SIMU(simu_cfg(reuse_attribution=reuse)).unlearn(model, tokenizer, ROWS, RETAIN)
        return model.state_dict(), report.extra["simu_attribution_reused"]

    fresh, reused_none = unlearned(False)
    first, reused_first = unlearned(True)
    second, reused_second = unlearned(True)
    assert (reused_none, reused_first, reused_second) == (0, 0, 2)
    assert all(torch.equal(fresh[n], first[n]) and torch.equal(fresh[n], second[n]) for n in fresh)
    other = tiny_llama(tokenizer)
    with torch.no_grad():
        other.model.layers[0].self_attn.q_proj.weight[0, 0] += 1e-3
    assert (
        SIMU(simu_cfg(reuse_attribution=True)).unlearn(other, tokenizer, ROWS, RETAIN).extra["simu_attribution_reused"]
        == 0
    )
