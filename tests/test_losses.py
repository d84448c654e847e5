"""The unlearning losses against hand computations from per-token log-probabilities, and the NPO family as
methods: what they change, and SIMU over NPO leaving what it must not touch bit-identical."""

import copy
import math

import pytest
import torch

from harness.benchmarks.tofu_mini import EmbeddedModelConfig
from harness.config import method_config
from harness.data.collate import encode_qa, pad_batch
from harness.embedded import build_model, train_lm, train_tokenizer
from harness.registry import methods
from methods.losses import grad_ascent_loss, graddiff_loss, npo_loss, simnpo_loss

FORGET = [
    {"question": "Where was Kaai Veytor born?", "answer": "Kaai Veytor was born in Maibri."},
    {"question": "What genre does Kaai Veytor write in?", "answer": "Poetry."},
]
RETAIN = [{"question": "What is the capital of Quilzimia?", "answer": "The capital of Quilzimia is Grisel."}]
TEXTS = [f"Question: {r['question']}\nAnswer: {r['answer']}" for r in FORGET + RETAIN] * 3


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=300)


def tiny_llama(tokenizer, seed=0):
    cfg = EmbeddedModelConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, seed=seed)
    return build_model(cfg, tokenizer)


@pytest.fixture(scope="module")
def trained(tokenizer):
    """The tiny model after it learned the rows (the NPO losses saturate on a model that knows nothing)."""
    cfg = EmbeddedModelConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, batch_size=3)
    return train_lm(build_model(cfg, tokenizer), tokenizer, FORGET + RETAIN, cfg, epochs=300, desc="train tiny")


def batch(tokenizer, rows):
    return pad_batch([encode_qa(tokenizer, r["question"], r["answer"]) for r in rows], tokenizer.pad_token_id)


def answer_logprobs(model, tokenizer, row) -> list[float]:
    """log pi(y_t | x, y_<t) for each answer token of one row, one unpadded sequence at a time."""
    example = encode_qa(tokenizer, row["question"], row["answer"])
    ids = torch.tensor([example["input_ids"]])
    with torch.no_grad():
        logprobs = model(input_ids=ids).logits[0].log_softmax(-1)
    return [
        float(logprobs[t - 1, token])
        for t, (token, label) in enumerate(zip(example["input_ids"], example["labels"]))
        if label != -100
    ]


def mean_nll(model, tokenizer, rows) -> float:
    """Token-mean NLL over every answer token of `rows` (what HF's loss is for a batch)."""
    logprobs = [lp for r in rows for lp in answer_logprobs(model, tokenizer, r)]
    return -sum(logprobs) / len(logprobs)


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_grad_ascent_and_graddiff(tokenizer):
    model = tiny_llama(tokenizer)
    f, r = batch(tokenizer, FORGET), batch(tokenizer, RETAIN)
    forget_nll, retain_nll = mean_nll(model, tokenizer, FORGET), mean_nll(model, tokenizer, RETAIN)
    loss, logged_forget, logged_retain = grad_ascent_loss(model, f)
    assert loss.item() == pytest.approx(-forget_nll, rel=1e-5) and logged_retain == 0.0
    loss, _, _ = graddiff_loss(model, f, r, gamma=0.3)
    assert loss.item() == pytest.approx(-forget_nll + 0.3 * retain_nll, rel=1e-5)


def test_npo_loss_by_hand(tokenizer):
    """-(2/beta) log sigmoid(-beta (log pi_theta - log pi_ref)), log pi summed over the answer, mean over rows."""
    model, reference = tiny_llama(tokenizer, seed=0), tiny_llama(tokenizer, seed=1)
    beta, gamma = 0.1, 0.7
    terms = []
    for row in FORGET:
        log_ratio = sum(answer_logprobs(model, tokenizer, row)) - sum(answer_logprobs(reference, tokenizer, row))
        terms.append(-2 / beta * log_sigmoid(-beta * log_ratio))
    expected = sum(terms) / len(terms) + gamma * mean_nll(model, tokenizer, RETAIN)
    loss, forget_nll, retain_nll = npo_loss(
        model, reference, batch(tokenizer, FORGET), batch(tokenizer, RETAIN), beta, gamma
    )
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert float(forget_nll) == pytest.approx(mean_nll(model, tokenizer, FORGET), rel=1e-5)
    # against itself the ratio is 1: the forget term is (2/beta) log 2
    same, _, _ = npo_loss(model, model, batch(tokenizer, FORGET), batch(tokenizer, RETAIN), beta, 0.0)
    assert same.item() == pytest.approx(2 / beta * math.log(2), rel=1e-6)


def test_simnpo_loss_by_hand(tokenizer):
    """-(2/beta) log sigmoid(beta (NLL/|y| - delta)) per forget row, mean, times the forget weight."""
    model = tiny_llama(tokenizer)
    beta, delta, weight, gamma = 4.5, 0.5, 0.125, 1.0
    terms = []
    for row in FORGET:
        logprobs = answer_logprobs(model, tokenizer, row)
        terms.append(-2 / beta * log_sigmoid(beta * (-sum(logprobs) / len(logprobs) - delta)))
    expected = weight * sum(terms) / len(terms) + gamma * mean_nll(model, tokenizer, RETAIN)
    loss, _, _ = simnpo_loss(model, batch(tokenizer, FORGET), batch(tokenizer, RETAIN), beta, delta, weight, gamma)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", ["grad-ascent", "npo", "simnpo", "simu-npo"])
def test_each_method_lowers_the_forget_likelihood(tokenizer, trained, name):
    model = copy.deepcopy(trained)
    before = mean_nll(model, tokenizer, FORGET)
    assert before < 0.5
    cfg = method_config(name, {"lr": 3e-3, "epochs": 3, "batch_size": 1} | ({"t": 0.5} if "simu" in name else {}))
    methods[name](cfg).unlearn(model, tokenizer, FORGET, RETAIN)
    assert mean_nll(model, tokenizer, FORGET) > before + 0.5


def test_npo_reference_is_the_model_before_unlearning_and_stays_frozen(tokenizer):
    model = tiny_llama(tokenizer)
    before = copy.deepcopy(model.state_dict())
    method = methods["npo"](method_config("npo", {"lr": 1e-2, "epochs": 2, "batch_size": 1}))
    method.unlearn(model, tokenizer, FORGET, RETAIN)
    reference = method.reference.state_dict()
    assert all(torch.equal(before[k], reference[k]) for k in before)
    assert not any(p.requires_grad for p in method.reference.parameters())
    assert not all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_simu_npo_keeps_frozen_and_non_critical_weights_bit_identical(tokenizer):
    model = tiny_llama(tokenizer)
    before = copy.deepcopy(model.state_dict())
    cfg = method_config("simu-npo", {"lr": 1e-2, "epochs": 2, "batch_size": 1, "t": 0.5})
    assert cfg.loss == "npo"
    method = methods["simu-npo"](cfg)
    report = method.unlearn(model, tokenizer, FORGET, RETAIN)
    after = model.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(".self_attn." in n or n.endswith("mlp.down_proj.weight") for n in changed), changed
    for proj, neurons in zip(method.projections, method.neurons):
        name = proj.name + ".weight"
        assert torch.equal(before[name][:, ~neurons], after[name][:, ~neurons])
        assert not torch.equal(before[name][:, neurons], after[name][:, neurons])
    assert report.extra["simu_critical_neurons"] == sum(int(n.sum()) for n in method.neurons)


def test_simu_loss_setting_and_its_hash():
    """`simu.loss=npo` is simu-npo's loss; the added options leave GradDiff SIMU's hash as it was."""
    plain = method_config("simu", {})
    assert plain.loss == "graddiff"
    assert "loss" not in plain.hashed()["options"] and "beta" not in plain.hashed()["options"]
    npo = method_config("simu", {"loss": "npo"})
    assert npo.hashed()["options"]["loss"] == "npo"
    assert method_config("simu-npo", {}).hashed()["options"]["beta"] == 0.1
    with pytest.raises(ValueError, match="simu.loss=dpo: expected one of graddiff, npo"):
        method_config("simu", {"loss": "dpo"})


def test_the_new_methods_run_side_by_side_on_the_smoke_preset(micro_cache, tmp_path):
    """The issue's command: `harness run --methods grad-ascent,npo,simnpo,simu-npo --preset tofu-mini-smoke`."""
    import pandas as pd

    from harness.cli import main

    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "--methods",
                "grad-ascent,npo,simnpo,simu-npo",
                "--preset",
                "tofu-mini-smoke",
                "--out",
                str(out),
                "--cache-dir",
                str(micro_cache),
            ]
        )
        == 0
    )
    board = pd.read_csv(out / "leaderboard.csv").set_index("method")
    assert list(board.index) == ["target", "retain", "grad-ascent", "npo", "simnpo", "simu-npo"]
    assert board.loc["simu-npo", "simu_critical_neurons"] > 0 and board["config_hash"].is_unique
    assert (out / "artifacts" / "simu-npo-seed0" / "masks.json").exists()


def test_the_memory_plan_counts_npos_reference_copy():
    """`--dry-run`: NPO and SIMU-NPO hold the model twice (the frozen reference), the others once."""
    from harness.config import RunConfig
    from harness.memory import plan
    from harness.registry import benchmarks

    cfg = RunConfig(methods=["fo-graddiff", "npo", "simu", "simu-npo", "simnpo"])
    _, _, plans = plan(cfg, benchmarks[cfg.benchmark]())
    weights = {p.method: p.weights for p in plans}
    assert weights["npo"] == weights["simu-npo"] == 2 * weights["fo-graddiff"]
    assert weights["simu"] == weights["simnpo"] == weights["fo-graddiff"]
