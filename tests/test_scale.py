"""Scale without a GPU: dtypes (float32 master weights under a bf16 model), devices, the memory plan of
`--dry-run` (several processes and sharding: tests/test_sharding.py)."""

import json
import os

import pandas as pd
import pytest
import torch

from harness.cli import main
from harness.memory import GIB
from methods.precision import MasterWeights

SMOKE = ["--preset", "tofu-mini-smoke", "--seeds", "0"]


def test_master_weights_keep_updates_bf16_would_round_away():
    """At 1.0 a bf16 weight moves in steps of 2**-7: ten 1e-4 steps leave a pure-bf16 weight at 1.0, while the
    float32 master holds 0.999, which rounds to bf16's 0.99902."""
    weight = torch.nn.Parameter(torch.ones(3, dtype=torch.bfloat16))
    pure = torch.nn.Parameter(torch.ones(3, dtype=torch.bfloat16))
    weights = MasterWeights([weight])
    optimizer, pure_optimizer = torch.optim.SGD(weights.params, lr=1e-4), torch.optim.SGD([pure], lr=1e-4)
    for _ in range(10):
        weight.grad, pure.grad = torch.ones_like(weight), torch.ones_like(pure)
        weights.gather_grads()
        optimizer.step()
        pure_optimizer.step()
        weights.write_back()
    assert weights.params[0].dtype == torch.float32 and weight.dtype == torch.bfloat16
    assert torch.equal(pure, torch.ones_like(pure))  # what bf16 alone does: nothing
    assert torch.allclose(weights.params[0], torch.full((3,), 0.999), atol=1e-6)
    assert torch.equal(weight, torch.full((3,), 0.999).to(torch.bfloat16))


def test_float32_parameters_are_their_own_masters():
    weight = torch.nn.Parameter(torch.ones(2))
    assert MasterWeights([weight]).params[0] is weight


def dry_run(capsys, *args) -> str:
    assert main(["run", "--dry-run", *args]) == 0
    return capsys.readouterr().out


def plan_rows(out: str) -> dict[str, list[str]]:
    lines = out.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("method")))
    return {line.split()[0]: line.split()[1:] for line in lines[header + 1 :] if line and not line.startswith("per ")}


@pytest.mark.parametrize("preset, billions", [("tofu-llama2-7b", "6.74B"), ("tofu-olmo-1b", "1.18B")])
def test_dry_run_of_a_paper_preset_plans_memory_without_loading(capsys, tmp_path, monkeypatch, preset, billions):
    monkeypatch.chdir(tmp_path)
    out = dry_run(capsys, "--preset", preset)
    assert f"{billions} parameters, bfloat16" in out and "nothing loaded" in out
    rows = plan_rows(out)
    assert list(rows) == ["fo-graddiff", "so-graddiff", "simu"]  # the preset's methods
    n_params = float(billions[:-1]) * 1e9
    for cells in rows.values():
        trainable, weights, grads, master, optimizer, activations, logits, total = cells
        assert float(weights) == pytest.approx(n_params * 2 / GIB, rel=0.01)  # bf16 weights
        t = float(trainable[:-1]) * (1e9 if trainable.endswith("B") else 1e6)
        assert float(optimizer) == pytest.approx(t * 8 / GIB, rel=0.01)  # two float32 states
        assert float(master) == float(grads) == pytest.approx(t * 4 / GIB, rel=0.01)  # float32 masters, grads
        assert float(total) == pytest.approx(sum(map(float, cells[1:-1])), abs=0.02)
    assert float(rows["simu"][-1]) < float(rows["so-graddiff"][-1])  # SIMU trains attention and down_proj only
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_gradient_checkpointing_shrinks_the_planned_activations(capsys):
    plain = plan_rows(dry_run(capsys, "--preset", "tofu-llama2-7b", "--methods", "simu"))["simu"]
    checkpointed = plan_rows(
        dry_run(
            capsys, "--preset", "tofu-llama2-7b", "--methods", "simu", "--set", "compute.gradient_checkpointing=true"
        )
    )["simu"]
    assert float(checkpointed[5]) < float(plain[5]) / 5 and checkpointed[:5] == plain[:5]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--device", "tpu"], "--device tpu: expected auto, cpu, cuda, cuda:N or mps"),
        (["--device", "cuda:x"], "--device cuda:x: expected auto, cpu, cuda, cuda:N or mps"),
        (["--set", "compute.dtype=int8"], "--set compute.dtype=int8: expected one of float32, bfloat16, float16"),
        (["--benchmark", "tofu", "--model", "/no/such/model", "--data", "x"], "--model /no/such/model: cannot read"),
        (["--benchmark", "tofu", "--data", "x"], "--dry-run: --benchmark tofu needs --model (or a preset with a"),
    ],
)
def test_bad_device_dtype_or_model_is_one_line(capsys, args, expected):
    assert main(["run", "--dry-run", *args]) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it_is_one_line(capsys, tmp_path):
    assert main(["run", "--device", "cuda", "--out", str(tmp_path / "run")]) == 2
    assert "--device cuda: this machine has 0 CUDA device(s)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_bf16_smoke_run_unlearns_and_is_hashed_apart(micro_cache, tmp_path):
    """The smoke preset in bfloat16 on the CPU, SIMU included: rows say so, their hashes differ from float32's,
    and both methods still move the forget set (their updates are not rounded away)."""
    assert (
        main(
            [
                "run",
                *SMOKE,
                "--methods",
                "simu,so-graddiff",
                "--dtype",
                "bfloat16",
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "bf16"),
                "--cache-dir",
                str(micro_cache),
            ]
        )
        == 0
    )
    board = pd.read_csv(tmp_path / "bf16" / "leaderboard.csv")
    assert set(board["dtype"]) == {"bfloat16"} and set(board["device"]) == {"cpu"}
    assert set(board["world_size"]) == {1}
    target = board.set_index("method").loc["target"]
    for method in ("simu", "so-graddiff"):
        row = board.set_index("method").loc[method]
        assert not row["unchanged"] and row["forget_prob"] < target["forget_prob"] - 0.1
        assert row["peak_memory_gib"] > 0
    env = json.loads((tmp_path / "bf16" / "environment.json").read_text())
    assert [e["dtype"] for e in env.values()] == ["bfloat16"]
    reference = pd.read_csv(os.path.join(os.path.dirname(__file__), "..", "leaderboards", "tofu-mini-smoke.csv"))
    assert not set(board["config_hash"]) & set(reference["config_hash"])


@pytest.mark.slow
def test_gradient_checkpointing_changes_no_figure(micro_cache, tmp_path):
    common = ["run", "--device", "cpu", *SMOKE, "--methods", "so-graddiff,simu", "--cache-dir", str(micro_cache)]
    assert main([*common, "--out", str(tmp_path / "plain")]) == 0
    assert main([*common, "--set", "compute.gradient_checkpointing=true", "--out", str(tmp_path / "ckpt")]) == 0
    plain, ckpt = (pd.read_csv(tmp_path / run / "leaderboard.csv") for run in ("plain", "ckpt"))
    figures = [c for c in plain.columns if plain[c].dtype.kind == "f" and not c.endswith(("_seconds", "_gib"))]
    pd.testing.assert_frame_equal(plain[figures], ckpt[figures])
    assert list(plain["config_hash"]) == list(ckpt["config_hash"])


def test_run_help_documents_device_dtype_and_dry_run(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    for flag in (
        "--device auto|cpu|cuda|cuda:N|mps",
        "--dtype {float32,bfloat16,float16}",
        "--dry-run",
        "compute.KEY=V",
        "accelerate launch -m harness run",
        "torchrun --nproc_per_node N",
    ):
        assert flag in text, flag
