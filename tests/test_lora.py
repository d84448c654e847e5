"""LoRA (methods/lora.py): every LoRA variant unlearns through its adapters alone, the base weights keeping
their bits (float32 and bf16); NPO's reference is the base with the adapter off; gradient checkpointing trains
the adapters as without it; the settings' rules, hashes and refusals; the memory plan; and a run's saved
adapter, scored again by `harness eval`, gives its row's figures."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from peft import PeftModel

import harness
from evaluators.scoring import gradient_norms, model_weights
from harness.benchmarks.tofu_mini import EmbeddedModelConfig
from harness.config import method_config
from harness.data.collate import encode_qa, pad_batch
from harness.embedded import build_model, train_lm, train_tokenizer
from harness.registry import methods
from harness.rules import SettingError
from methods import lora

FORGET = [
    {"question": "Where was Kaai Veytor born?", "answer": "Kaai Veytor was born in Maibri."},
    {"question": "What genre does Kaai Veytor write in?", "answer": "Poetry."},
]
RETAIN = [{"question": "What is the capital of Quilzimia?", "answer": "The capital of Quilzimia is Grisel."}]
TEXTS = [f"Question: {r['question']}\nAnswer: {r['answer']}" for r in FORGET + RETAIN] * 3
VARIANTS = ["fo-graddiff-lora", "so-graddiff-lora", "grad-ascent-lora", "npo-lora", "simnpo-lora"]
QUICK = {"lr": 3e-2, "epochs": 3, "batch_size": 1}  # a rate LoRA moves a tiny model at in 6 steps


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=300)


@pytest.fixture(scope="module")
def trained(tokenizer):
    """A tiny Llama that learned the rows (a model that knows nothing has nothing to forget)."""
    cfg = EmbeddedModelConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, batch_size=3)
    return train_lm(build_model(cfg, tokenizer), tokenizer, FORGET + RETAIN, cfg, epochs=300, desc="train tiny")


def forget_nll(model, tokenizer) -> float:
    batch = pad_batch([encode_qa(tokenizer, r["question"], r["answer"]) for r in FORGET], tokenizer.pad_token_id)
    with torch.no_grad():
        return float(model(**batch).loss)


def base_weights(model) -> dict[str, torch.Tensor]:
    """A model's own weights by their plain names (a PeftModel's base layers, adapters left out)."""
    names = {}
    for name, p in model.named_parameters():
        if lora.is_adapter(name):
            continue
        plain = name.removeprefix("base_model.model.").replace(".base_layer.", ".")
        names[plain] = p.detach().clone()
    return names


def unlearned(name, model, tokenizer, **overrides):
    method = methods[name](method_config(name, QUICK | overrides))
    report = method.unlearn(model, tokenizer, FORGET, RETAIN)
    return method, report


@pytest.mark.parametrize("name", VARIANTS)
def test_each_lora_variant_forgets_through_its_adapters_alone(tokenizer, trained, name):
    model = copy.deepcopy(trained)
    before, nll = base_weights(model), forget_nll(model, tokenizer)
    _, report = unlearned(name, model, tokenizer)
    adapted = report.model
    assert isinstance(adapted, PeftModel)
    assert forget_nll(adapted, tokenizer) > nll + 0.5
    after = base_weights(adapted)
    assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before)
    adapters = dict((n, p) for n, p in adapted.named_parameters() if lora.is_adapter(n))
    assert adapters and all(p.dtype == torch.float32 for p in adapters.values())
    assert any(p.abs().sum() > 0 for n, p in adapters.items() if "lora_B" in n)  # B starts at zero: it moved
    assert report.trainable_params == sum(p.numel() for p in adapters.values())
    assert {n.split(".")[-4] for n in adapters} == {"q_proj", "v_proj"}  # SOUL's targets


def test_bf16_lora_keeps_the_base_bits_and_float32_adapters(tokenizer, trained):
    model = copy.deepcopy(trained).to(torch.bfloat16)
    before, nll = base_weights(model), forget_nll(model, tokenizer)
    _, report = unlearned("so-graddiff-lora", model, tokenizer)
    after = base_weights(report.model)
    assert all(after[k].dtype == torch.bfloat16 and torch.equal(before[k], after[k]) for k in before)
    assert all(p.dtype == torch.float32 for p in lora.adapter_parameters(report.model))
    assert forget_nll(report.model, tokenizer) > nll + 0.5


def test_npo_lora_reference_is_the_base_with_its_adapter_off(tokenizer, trained):
    model = copy.deepcopy(trained)
    batch = pad_batch([encode_qa(tokenizer, r["question"], r["answer"]) for r in FORGET], tokenizer.pad_token_id)
    with torch.no_grad():
        logits = model(**batch).logits
    method, report = unlearned("npo-lora", model, tokenizer)
    assert method.reference is None and method.frozen_models() == [] and method.model_copies() == 1
    with torch.no_grad():
        off = lora.AdapterDisabled(report.model)(**batch).logits
        on = report.model(**batch).logits
    assert torch.equal(off, logits) and not torch.equal(on, logits)


def test_reentrant_gradient_checkpointing_trains_the_adapters_as_without_it(tokenizer, trained):
    """Reentrant checkpointing gives no gradient to adapters whose inputs require none (open-unlearning #178);
    `adapt` asks the embeddings' output for one, so the adapters train as they do without checkpointing."""
    results = []
    for checkpointing in (False, True):
        model = copy.deepcopy(trained)
        if checkpointing:
            model.activation_checkpointing_enable({"use_reentrant": True})
        torch.manual_seed(0)
        _, report = unlearned("fo-graddiff-lora", model, tokenizer, lora_dropout=0.0)
        results.append({n: p.detach() for n, p in report.model.named_parameters() if lora.is_adapter(n)})
    plain, checkpointed = results
    assert any(p.abs().sum() > 0 for n, p in checkpointed.items() if "lora_B" in n)
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-5, atol=1e-6)


def test_gradnorm_of_an_unmerged_adapter_is_its_merged_models(tokenizer, trained):
    model = copy.deepcopy(trained)
    _, report = unlearned("so-graddiff-lora", model, tokenizer)
    adapted = report.model
    assert len(model_weights(adapted)) == len(list(trained.parameters()))
    pairs = [(r["question"], r["answer"]) for r in FORGET]
    unmerged = gradient_norms(adapted, tokenizer, pairs)
    merged = gradient_norms(copy.deepcopy(adapted).merge_and_unload(), tokenizer, pairs)
    assert unmerged == pytest.approx(merged, rel=1e-5)


def test_lora_settings_hash_and_refusals():
    full, zero = method_config("so-graddiff"), method_config("so-graddiff", {"lora_r": "0"})
    assert zero.hashed() == full.hashed()  # lora_r 0 is full fine-tuning, as the rows made before LoRA
    adapted = method_config("so-graddiff", {"lora_r": "8"})
    assert adapted.hashed() != full.hashed() and adapted.hashed()["options"]["lora_r"] == 8
    variant = method_config("so-graddiff-lora")
    assert variant.lora_r == 8 and variant.lora_alpha == 32 and variant.lora_targets == "q_proj,v_proj"
    assert set(variant.hashed()["options"]) >= {"lora_r", "lora_alpha", "lora_dropout", "lora_targets"}
    assert method_config("npo", {"lora_targets": "all-linear"}).lora_targets == "all-linear"
    for name, key, value, words in [
        ("simu", "lora_r", "8", "so-graddiff-lora"),
        ("simu-npo", "lora_r", "4", "so-graddiff-lora"),
        ("npo", "lora_targets", "q_proj, v_proj", "comma"),
        ("fo-graddiff", "lora_r", "-1", "integer >= 0"),
        ("so-graddiff-lora", "lora_dropout", "1", r"\[0, 1\)"),
    ]:
        with pytest.raises(SettingError, match=words):
            method_config(name, {key: value})


def test_targets_a_model_lacks_are_one_line_naming_the_setting(tokenizer, trained):
    with pytest.raises(ValueError, match=r"--set so-graddiff-lora.lora_targets=c_attn: .*linear modules: .*q_proj"):
        unlearned("so-graddiff-lora", copy.deepcopy(trained), tokenizer, lora_targets="c_attn")


def test_lora_does_not_shard(tmp_path):
    with pytest.raises(SettingError, match="shard=.fsdp.: npo-lora trains LoRA adapters .* drop --shard fsdp"):
        harness.run(preset="tofu-mini-smoke", methods=["npo-lora"], shard="fsdp", out=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_the_plan_counts_the_base_once_and_the_adapters_states(capsys):
    from harness.config import build
    from harness.memory import plan
    from harness.registry import benchmarks

    cfg = build("run", preset="tofu-llama2-7b", methods=["npo", "npo-lora", "so-graddiff-lora"])
    _, n_params, plans = plan(cfg, benchmarks[cfg.benchmark]())
    full, npo_lora, so_lora = plans
    adapter = 32 * 2 * 8 * (4096 + 4096)  # r 8 on q_proj and v_proj (4096 x 4096) in 32 layers
    assert npo_lora.trainable == so_lora.trainable == adapter
    assert npo_lora.weights * 2**30 == pytest.approx(n_params * 2 + adapter * 4)  # one bf16 copy, fp32 adapters
    assert full.weights * 2**30 == pytest.approx(2 * n_params * 2)  # NPO's frozen copy
    assert npo_lora.master == 0 and npo_lora.optimizer * 2**30 == pytest.approx(2 * adapter * 4)


def test_a_saved_adapter_scores_its_rows_figures_again(tmp_path, micro_cache):
    """A LoRA cell saved with --save-models is an adapter folder (no full weights); `harness eval` loads it over
    its base and gives the cell's figures."""
    out = tmp_path / "run"
    common = dict(preset="tofu-mini-smoke", cache_dir=str(micro_cache), out=str(out))
    harness.run(methods=["so-graddiff-lora"], settings={"so-graddiff-lora.lr": 5e-3}, save_models=True, **common)
    folder = out / "models" / "so-graddiff-lora-seed0"
    assert (folder / "adapter_config.json").is_file() and (folder / "adapter_model.safetensors").is_file()
    assert not (folder / "model.safetensors").exists()
    row = json.loads((out / "results" / "so-graddiff-lora-seed0.json").read_text())
    assert row["lora_r"] == 8 and row["trainable_params"] < 20_000
    target = json.loads((out / "results" / "target.json").read_text())
    assert row["forget_em_contains"] < target["forget_em_contains"]
    harness.evaluate(models=[str(folder)], names=["reloaded"], **common)
    again = json.loads((out / "results" / "reloaded.model.json").read_text())
    figures = [k for k in row if k.startswith(("forget_", "retain_", "mia_", "model_utility"))]
    assert figures and all(again[k] == pytest.approx(row[k], abs=1e-6) for k in figures)
    assert again["weights_digest"] == row["weights_digest"]  # the same base and adapter tensors
