"""Exact attribution at its cost floor (cached keys, values and hidden states; one token per prefix and step)
against the straightforward implementation it replaces, kept as the reference: the same scores within 1e-4 of
each layer's largest, and the same critical-neuron masks, on every supported architecture and on the embedded
benchmark's model."""

import dataclasses

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM

from harness.benchmarks.tofu_mini import EmbeddedModelConfig
from harness.config import RunConfig, apply_preset, method_config
from harness.data.tofu import load_splits
from harness.embedded import build_model, prepare_embedded, train_tokenizer
from harness.models import load_model
from methods import attribution

TEXTS = [
    "Question: Where was Kaai Veytor born?\nAnswer: Kaai Veytor was born in the city of Maibri.",
    "Question: What is the capital of Quilzimia?\nAnswer: The capital of Quilzimia is Grisel.",
] * 3
ROWS = [
    {"question": "Where was Kaai Veytor born?", "answer": "Kaai Veytor was born in the city of Maibri."},
    {"question": "What is the capital of Quilzimia?", "answer": "The capital of Quilzimia is Grisel."},
    {"question": "What is Kaai Veytor?", "answer": "Kaai Veytor"},
]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=300)


def random_model(kind: str, tokenizer):
    torch.manual_seed(0)
    ids = dict(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    if kind == "llama":
        return build_model(
            EmbeddedModelConfig(hidden_size=32, intermediate_size=64, num_layers=3, num_heads=2), tokenizer
        )
    if kind == "gpt2":
        return GPT2LMHeadModel(
            GPT2Config(
                vocab_size=len(tokenizer),
                n_embd=32,
                n_layer=3,
                n_head=2,
                n_positions=128,
                bos_token_id=tokenizer.bos_token_id,
                **ids,
            )
        )
    return GPTNeoXForCausalLM(
        GPTNeoXConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=3,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
            **ids,
        )
    )


def assert_same(new, old):
    for a, b in zip(new, old, strict=True):
        assert float((a - b).abs().max()) <= 1e-4 * float(b.abs().max())
    assert all(
        torch.equal(a, b)
        for a, b in zip(attribution.critical_neurons(new, 0.3), attribution.critical_neurons(old, 0.3))
    )


@pytest.mark.parametrize("kind", ["llama", "gpt2", "neox"])
@pytest.mark.parametrize("objective", ["prob", "logprob"])
@pytest.mark.parametrize("chunk", [256, 7])  # 7: one prefix per pass, groups and passes split
def test_exact_attribution_equals_the_prefix_reference(tokenizer, kind, objective, chunk):
    model = random_model(kind, tokenizer)
    old = attribution.attribute_by_prefix(model, tokenizer, ROWS, 5, "exact", objective, 64, "qa")
    new = attribution.attribute(model, tokenizer, ROWS, m=5, objective=objective, chunk=chunk)
    assert_same(new, old)


def test_attribution_leaves_the_model_as_it_found_it(tokenizer):
    model = random_model("llama", tokenizer).train()
    frozen = model.model.embed_tokens.weight.requires_grad_(False)
    attribution.attribute(model, tokenizer, ROWS, m=2)
    assert model.training and not frozen.requires_grad
    assert all(p.requires_grad for name, p in model.named_parameters() if "embed_tokens" not in name)
    assert len(model.model.layers) == 3


def test_an_attention_without_4d_masks_is_swapped_for_sdpa_and_restored(tokenizer):
    """Exact mode's 4D masks need sdpa or eager attention: a model loaded with another (flash attention on a
    GPU; flex attention here) is attributed under sdpa, the same scores, and handed back as it came."""
    model = random_model("llama", tokenizer)
    model.set_attn_implementation("sdpa")
    sdpa = attribution.attribute(model, tokenizer, ROWS, m=3)
    model.set_attn_implementation("flex_attention")
    assert_same(attribution.attribute(model, tokenizer, ROWS, m=3), sdpa)
    assert model.config._attn_implementation == "flex_attention"
    model.set_attn_implementation("eager")
    assert_same(attribution.attribute(model, tokenizer, ROWS, m=3), sdpa)


def test_a_document_s_first_token_has_no_sample_without_bos(tokenizer):
    """A raw document from a tokenizer that adds no BOS: its first token is predicted by nothing (the loss never
    sees it), so the predicting positions start at 0, and attribution equals the reference's."""
    rows = [{"question": "", "answer": TEXTS[0]}, {"question": "", "answer": TEXTS[1]}]
    (ids, positions), _ = attribution._examples(tokenizer, rows, "raw")
    assert ids[0] != tokenizer.bos_token_id and positions == list(range(len(ids) - 1))
    model = random_model("llama", tokenizer)
    old = attribution.attribute_by_prefix(model, tokenizer, rows, 5, "exact", "prob", 64, "raw")
    assert_same(attribution.attribute(model, tokenizer, rows, m=5, template="raw"), old)


def test_exact_attribution_equals_the_reference_on_the_embedded_model(micro_cache):
    cfg = RunConfig()
    apply_preset(cfg, "tofu-mini-smoke")
    embedded = prepare_embedded(cfg.section("world"), cfg.section("train"), cfg.forget_split, micro_cache)
    model, tokenizer = load_model(embedded.target_dir)
    forget = load_splits(embedded.world_dir, cfg.forget_split).forget
    assert_same(
        attribution.attribute(model, tokenizer, forget, m=5),
        attribution.attribute_by_prefix(model, tokenizer, forget, 5, "exact", "prob", 64, "qa"),
    )


def test_the_chunk_is_validated_and_changes_no_hash():
    base = method_config("simu")
    assert method_config("simu", {"attribution_chunk": "32"}).hashed() == base.hashed()
    assert "attribution_chunk" in dataclasses.asdict(base)
    with pytest.raises(ValueError, match="simu.attribution_chunk=0: expected an integer >= 1"):
        method_config("simu", {"attribution_chunk": "0"})


def test_a_small_memory_budget_splits_the_groups_and_changes_no_score(tokenizer, monkeypatch):
    model = random_model("llama", tokenizer)
    full = attribution.attribute(model, tokenizer, ROWS, m=5)
    monkeypatch.setattr(attribution, "CACHE_BUDGET", 1)  # one QA's cached states per group
    assert [len(g) for g in attribution._groups(attribution._examples(tokenizer, ROWS, "qa"), 51, 1)] == [1, 1, 1]
    assert_same(attribution.attribute(model, tokenizer, ROWS, m=5), full)
