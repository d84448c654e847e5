"""RMU: its loss against a hand computation from the hidden states HF returns, the layer it steers and the
weights it trains, what training changes, and its frozen copy in the `--dry-run` plan."""

import copy

import pytest
import torch

from harness.benchmarks.tofu_mini import EmbeddedModelConfig
from harness.cli import main
from harness.config import method_config
from harness.data.collate import encode_qa
from harness.embedded import build_model, train_tokenizer
from harness.registry import methods
from methods.rmu import steered_layer
from tests.test_losses import FORGET, RETAIN, TEXTS, batch


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=300)


def tiny(tokenizer, seed=0, layers=4):
    cfg = EmbeddedModelConfig(hidden_size=32, intermediate_size=64, num_layers=layers, num_heads=2, seed=seed)
    return build_model(cfg, tokenizer)


def states_by_hand(model, tokenizer, row, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One unpadded row: the output of decoder layer `layer` (HF's hidden_states[layer + 1]) and which tokens
    are supervised."""
    example = encode_qa(tokenizer, row["question"], row["answer"])
    with torch.no_grad():
        out = model(input_ids=torch.tensor([example["input_ids"]]), output_hidden_states=True)
    return out.hidden_states[layer + 1][0], torch.tensor(example["labels"]) != -100


def row_term(states, target, supervised) -> float:
    """Mean over the row's supervised tokens of the mean squared difference over the hidden dimension."""
    return float(((states - target) ** 2).mean(-1)[supervised].mean())


def test_rmu_loss_by_hand(tokenizer):
    """forget: states at the steered layer against c * u/|u|; retain: against the frozen copy's states; each
    a mean over rows of per-row token means; loss = forget + gamma * retain."""
    model = tiny(tokenizer)
    cfg = method_config("rmu", {"steering_coeff": 6.5, "gamma": 3.0})
    method = methods["rmu"](cfg)
    torch.manual_seed(0)
    method.setup(model, tokenizer, FORGET, RETAIN)
    torch.manual_seed(0)
    u = torch.rand(1, 1, 32)
    control = (u / u.norm() * 6.5)[0, 0]
    assert torch.allclose(method.control[0, 0], control) and float(method.control.norm()) == pytest.approx(6.5)
    method.reference = tiny(tokenizer, seed=1)  # a different frozen copy, so that the retain term is not 0
    at = steered_layer(4, -1)
    forget = retain = 0.0
    for row in FORGET:
        states, supervised = states_by_hand(model, tokenizer, row, at)
        forget += row_term(states, control, supervised) / len(FORGET)
    for row in RETAIN:
        states, supervised = states_by_hand(model, tokenizer, row, at)
        kept, _ = states_by_hand(method.reference, tokenizer, row, at)
        retain += row_term(states, kept, supervised) / len(RETAIN)
    loss, logged_forget, logged_retain = method.loss(model, batch(tokenizer, FORGET), batch(tokenizer, RETAIN))
    assert float(logged_forget) == pytest.approx(forget, rel=1e-5)
    assert float(logged_retain) == pytest.approx(retain, rel=1e-5) and retain > 0
    assert loss.item() == pytest.approx(forget + 3.0 * retain, rel=1e-5)


def test_the_steered_layer_scales_wmdps_to_the_depth():
    assert steered_layer(32, -1) == 7 and steered_layer(30, -1) == 7  # Zephyr-7B; SmolLM2-135M
    assert steered_layer(4, -1) == 1 and steered_layer(2, -1) == 0 and steered_layer(4, 3) == 3
    with pytest.raises(ValueError, match=r"rmu.layer=4: the model has 4 decoder layers \(expected -1 or 0..3\)"):
        steered_layer(4, 4)


def test_rmu_trains_only_the_down_projections_up_to_its_layer(tokenizer):
    """8 layers: layer 7 of 32 scaled is 2, so layers 0, 1, 2's down_proj weights move and nothing else; the
    forget rows' states move toward the direction; the frozen copy stays the model before unlearning."""
    model = tiny(tokenizer, layers=8)
    before = copy.deepcopy(model.state_dict())
    method = methods["rmu"](method_config("rmu", {"lr": 1e-1, "epochs": 20, "batch_size": 2, "gamma": 1.0}))
    names = {id(p): n for n, p in model.named_parameters()}
    assert [names[id(p)] for p in method.trainable_parameters(model)] == [
        f"model.layers.{i}.mlp.down_proj.weight" for i in (0, 1, 2)
    ]
    torch.manual_seed(0)
    method.setup(model, tokenizer, FORGET, RETAIN)
    _, start, _ = method.loss(model, batch(tokenizer, FORGET), batch(tokenizer, RETAIN))
    torch.manual_seed(0)
    report = method.unlearn(model, tokenizer, FORGET, RETAIN)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {f"model.layers.{i}.mlp.down_proj.weight" for i in (0, 1, 2)}
    assert report.trainable_params == 3 * 32 * 64
    _, forget, _ = method.loss(model, batch(tokenizer, FORGET), batch(tokenizer, RETAIN))
    assert float(forget) < 0.8 * float(start), (float(forget), float(start))
    reference = method.reference.state_dict()
    assert all(torch.equal(before[k], reference[k]) for k in before)
    assert not any(p.requires_grad for p in method.reference.parameters())


def test_dry_run_counts_rmus_frozen_copy(capsys):
    """The 7B plan: RMU holds two copies of the weights (as NPO) and trains three down_proj weights."""
    assert main(["run", "--dry-run", "--preset", "tofu-llama2-7b", "--methods", "rmu,fo-graddiff"]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("method"))
    rows = {cells[0]: cells for cells in (line.split() for line in lines[at + 1 : at + 3])}
    assert rows["rmu"][1] == "135.27M"  # 3 x 11008 x 4096 (layers 5, 6, 7 of 32)
    assert float(rows["rmu"][2]) == pytest.approx(2 * float(rows["fo-graddiff"][2]), rel=1e-3)
