"""`harness eval` and `--save-models`: saved cells score again to their rows exactly, outside models (a random
GPT-2, a random Llama, a LoRA adapter over it) join the same leaderboard and table as our methods, SIMU's saved
model moves only what its mask allows, re-evaluating the same weights resumes, and bad input is one line with
nothing written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

import harness
from harness.checkpoints import read_card
from harness.cli import main
from harness.metrics import metrics
from harness.rows import IDENTITY_COLUMNS

SMOKE = ["--preset", "tofu-mini-smoke"]
CELLS = ["fo-graddiff-seed0", "so-graddiff-seed0", "simu-seed0"]


def figures(row: pd.Series) -> dict:
    """Every figure of a row that is not measured cost (time, memory) or identity."""
    return {c: v for c, v in row.items() if c not in IDENTITY_COLUMNS and not metrics.get(c).cost and pd.notna(v)}


def copy_run(source: Path, target: Path) -> Path:
    """A run folder's rows and reference, so a test may add to it without touching the shared run."""
    for part in ("results", "reference"):
        shutil.copytree(source / part, target / part)
    for name in ("leaderboard.csv", "environment.json"):
        shutil.copy(source / name, target / name)
    return target


@pytest.fixture(scope="module")
def outside(tmp_path_factory, micro_cache):
    """Models made elsewhere: random-init GPT-2 and Llama folders (save_pretrained, with the micro world's
    tokenizer) and a LoRA adapter over the Llama one, its B matrices set so that it changes the model."""
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("outside")
    tokenizer = AutoTokenizer.from_pretrained(
        harness.prepare(preset="tofu-mini-smoke", cache_dir=micro_cache).target_dir
    )
    torch.manual_seed(0)
    small = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    models = {
        "gpt2": GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=256, **small)),
        "llama": LlamaForCausalLM(
            LlamaConfig(
                num_hidden_layers=2,
                hidden_size=32,
                intermediate_size=64,
                num_attention_heads=2,
                num_key_value_heads=2,
                max_position_embeddings=256,
                **small,
            )
        ),
    }
    for name, model in models.items():
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    adapter = get_peft_model(
        LlamaForCausalLM.from_pretrained(root / "llama"), LoraConfig(r=4, target_modules=["q_proj", "v_proj"])
    )
    for name, weight in adapter.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(weight, std=0.5)
    adapter.save_pretrained(root / "llama-lora")
    config = json.loads((root / "llama-lora" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(root / "llama")
    return root


@pytest.fixture(scope="module")
def scored(tmp_path_factory, micro_run, micro_cache, outside):
    """One `harness eval` into a copy of the smoke run: three saved cells and the three outside models."""
    out = copy_run(micro_run / "run", tmp_path_factory.mktemp("eval") / "run")
    models = [str(micro_run / "run" / "models" / c) for c in CELLS] + [
        str(outside / n) for n in ("gpt2", "llama", "llama-lora")
    ]
    command = [
        sys.executable,
        "-m",
        "harness",
        "eval",
        *SMOKE,
        "--cache-dir",
        str(micro_cache),
        "--out",
        str(out),
        *[a for m in models for a in ("--model", m)],
    ]
    env = os.environ | {"ATEN_CPU_CAPABILITY": "default"}  # the kernels the smoke run's cells were made with
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_saved_cells_score_again_to_their_rows_exactly(scored):
    board = pd.read_csv(scored / "leaderboard.csv", dtype={"seed": "Int64"})
    cells = board[board["kind"] == "method"]
    cells = cells.set_index(cells["method"] + "-seed" + cells["seed"].astype(str))
    models = board[board["kind"] == "model"].set_index("method")
    for cell in CELLS:  # every figure the evaluation gives (the cell adds its method's diagnostics, simu_*)
        scored_again = figures(models.loc[cell])
        assert scored_again == {c: cells.loc[cell, c] for c in scored_again}, cell
        assert models.loc[cell, "weights_digest"] == cells.loc[cell, "weights_digest"]
    assert len(figures(models.loc["simu-seed0"])) > 30


def test_outside_models_join_the_leaderboard_and_the_table(scored, capsys):
    board = pd.read_csv(scored / "leaderboard.csv")
    assert list(board["method"][:2]) == ["target", "retain"]
    assert list(board.loc[board["kind"] == "model", "method"]) == CELLS + ["gpt2", "llama", "llama-lora"]
    models = board[board["kind"] == "model"].set_index("method")
    assert models.loc["llama", "weights_digest"] != models.loc["llama-lora", "weights_digest"]
    assert models.loc["llama", "forget_truth_ratio"] != models.loc["llama-lora", "forget_truth_ratio"]
    assert models.loc["gpt2", "forget_em_contains"] < 0.2  # random weights know nothing
    assert not models[["forget_quality", "model_utility", "mia_loss_auc"]].isna().any().any()
    assert main(["table", str(scored)]) == 0
    table = capsys.readouterr().out
    for name in ["target (reference)", "fo-graddiff", "simu", "gpt2", "llama-lora"]:
        assert f"| {name} |" in table


def test_a_saved_cell_is_a_hugging_face_folder_with_its_card(micro_run):
    folder = micro_run / "run" / "models" / "simu-seed0"
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= {p.name for p in folder.iterdir()}
    row = json.loads((micro_run / "run" / "results" / "simu-seed0.json").read_text())
    card = read_card(folder)
    assert card["method"] == "simu" and card["seed"] == 0 and card["config_hash"] == row["config_hash"]
    assert card["weights_digest"] == row["weights_digest"] and card["version"] == harness.__version__
    text = (folder / "README.md").read_text()
    assert text.startswith("---\nlibrary_name: transformers\n") and "| `forget_em_contains` |" in text
    assert "model saved to" in (micro_run / "log").read_text()


def test_simu_moves_only_attention_and_its_masked_columns(micro_run, micro_cache):
    target = load_file(
        Path(harness.prepare(preset="tofu-mini-smoke", cache_dir=micro_cache).target_dir) / "model.safetensors"
    )
    unlearned = load_file(micro_run / "run" / "models" / "simu-seed0" / "model.safetensors")
    masks = torch.load(micro_run / "run" / "artifacts" / "simu-seed0" / "masks.pt")
    attention = ("q_proj", "k_proj", "v_proj", "o_proj")
    moved = {name for name in target if not torch.equal(target[name], unlearned[name])}
    assert moved and all(name.split(".")[-2] in attention + ("down_proj",) for name in moved), moved
    for projection, mask in masks.items():
        weight = f"{projection}.weight"
        assert torch.equal(target[weight][:, ~mask], unlearned[weight][:, ~mask])  # columns outside: same bits
        assert not torch.equal(target[weight][:, mask], unlearned[weight][:, mask])
    assert any(name.split(".")[-2] in attention for name in moved)


def test_the_same_weights_resume_and_other_weights_under_a_name_are_refused(scored, micro_run, micro_cache, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in (scored / "results").iterdir()}
    again = ["eval", *SMOKE, "--cache-dir", str(micro_cache), "--out", str(scored)]
    assert main([*again, "--model", str(micro_run / "run" / "models" / "simu-seed0")]) == 0
    assert "simu-seed0: already evaluated" in capsys.readouterr().err
    assert (
        main([*again, "--model", str(micro_run / "run" / "models" / "fo-graddiff-seed0"), "--name", "simu-seed0"]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("harness: error: --name simu-seed0: ") and "other weights" in err[0]
    assert (
        main(
            [
                *again,
                "--model",
                str(micro_run / "run" / "models" / "fo-graddiff-seed0"),
                "--name",
                "simu-seed0",
                "--dtype",
                "bfloat16",
            ]
        )
        == 2
    )  # in another dtype the digests cannot be compared
    assert "another model, in bfloat16" in capsys.readouterr().err
    after = {p.name: p.stat().st_mtime_ns for p in (scored / "results").iterdir()}
    assert after == before


def test_a_saved_model_always_belongs_to_its_row(tmp_path, micro_cache, capsys):
    """A cell rerun for new settings drops the model saved for the old ones; asked to save again, it does."""
    run = ["run", *SMOKE, "--methods", "fo-graddiff", "--cache-dir", str(micro_cache), "--out", str(tmp_path)]
    folder = tmp_path / "models" / "fo-graddiff-seed0"
    assert main([*run, "--save-models"]) == 0 and read_card(folder)
    assert main([*run, "--set", "fo-graddiff.lr=1e-3"]) == 0 and not folder.exists()
    assert "removed, the model of this cell's earlier settings" in capsys.readouterr().err
    assert main([*run, "--set", "fo-graddiff.lr=1e-3", "--save-models"]) == 0
    assert "done, but its model was not saved; running it again" in capsys.readouterr().err
    row = json.loads((tmp_path / "results" / "fo-graddiff-seed0.json").read_text())
    assert read_card(folder)["config_hash"] == row["config_hash"]
    assert read_card(folder)["weights_digest"] == row["weights_digest"]


def _pickle_only(root: Path, source: Path) -> Path:
    folder = root / "pickled"
    shutil.copytree(source, folder)
    (folder / "model.safetensors").unlink()
    torch.save(load_file(source / "model.safetensors"), folder / "pytorch_model.bin")
    return folder


def _unknown_architecture(root: Path, source: Path) -> Path:
    folder = root / "banana"
    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"model_type": "banana-lm"}))
    return folder


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda root, saved: root / "nowhere", "no such folder"),
        (_pickle_only, "pickle only"),
        (_unknown_architecture, "unknown architecture: model_type 'banana-lm'"),
    ],
)
def test_a_bad_model_is_one_line_with_nothing_written(tmp_path, micro_run, micro_cache, capsys, make, expected):
    model = make(tmp_path, micro_run / "run" / "models" / "simu-seed0")
    out = tmp_path / "out"
    assert main(["eval", *SMOKE, "--cache-dir", str(micro_cache), "--out", str(out), "--model", str(model)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"harness: error: --model {model}: ") and expected in err[0], err
    assert not out.exists()


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--model", "a", "--model", "b", "--name", "x"], "--name x: expected one --name per --model (2)"),
        (["--model", "a/m", "--model", "b/m"], "--name m: two models would share this row"),
        (["--model", "a", "--name", "simu"], "--name simu: the name of a reference row or a method"),
        (["--model", "a", "--name", "../x"], "--name ../x: expected letters, digits"),
    ],
)
def test_names_are_checked_before_anything(tmp_path, capsys, args, expected):
    out = tmp_path / "out"
    assert main(["eval", "--out", str(out), *args]) == 2
    assert expected in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_every_other_method_saves_a_model_that_scores_again_exactly(tmp_path, micro_cache):
    """The saved-model round trip for the methods the smoke run does not have (it has FO, SO and SIMU)."""
    methods = ["grad-ascent", "npo", "simnpo", "simu-npo"]
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                *SMOKE,
                "--cache-dir",
                str(micro_cache),
                "--out",
                str(out),
                "--methods",
                ",".join(methods),
                "--save-models",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "eval",
                *SMOKE,
                "--cache-dir",
                str(micro_cache),
                "--out",
                str(out),
                *[a for m in methods for a in ("--model", str(out / "models" / f"{m}-seed0"))],
            ]
        )
        == 0
    )
    board = pd.read_csv(out / "leaderboard.csv").set_index("method")
    for method in methods:
        scored_again = figures(board.loc[f"{method}-seed0"])
        assert scored_again == {c: board.loc[method, c] for c in scored_again}, method
        assert board.loc[f"{method}-seed0", "weights_digest"] == board.loc[method, "weights_digest"]


# --- the Python API is the CLI's equal ------------------------------------------------------------------------


def _same_leaderboards(a: Path, b: Path) -> None:
    """Byte-identical leaderboards but for what is measured (times, memory), with the same hashes."""
    frames = [pd.read_csv(p / "leaderboard.csv") for p in (a, b)]
    measured = [c for c in frames[0].columns if c.endswith("_seconds") or c == "peak_memory_gib"]
    assert list(frames[0]["config_hash"]) == list(frames[1]["config_hash"])
    texts = [f.drop(columns=[c for c in measured if c in f.columns]).to_csv(index=False) for f in frames]
    assert texts[0] == texts[1]


def test_python_and_the_cli_give_the_same_run_on_tofu_mini(tmp_path, micro_cache):
    settings = {"so-graddiff.lr": 1e-3, "eval.max_new_tokens": 24}
    cli = ["run", *SMOKE, "--methods", "so-graddiff", "--seeds", "1", "--cache-dir", str(micro_cache)]
    assert (
        main([*cli, "--out", str(tmp_path / "cli"), *[a for k, v in settings.items() for a in ("--set", f"{k}={v}")]])
        == 0
    )
    board, folder = harness.run(
        methods=["so-graddiff"],
        seeds=[1],
        preset="tofu-mini-smoke",
        cache_dir=micro_cache,
        out=tmp_path / "py",
        settings=settings,
    )
    assert folder == tmp_path / "py" and list(board["method"]) == ["target", "retain", "so-graddiff"]
    _same_leaderboards(tmp_path / "cli", tmp_path / "py")


def test_python_and_the_cli_give_the_same_run_on_lume_mini(tmp_path, lume_run, micro_cache):
    """The session's lume-mini run through the CLI (conftest's LUME_RUN), again through Python."""
    from conftest import SMALL_LUME

    settings = dict(s.split("=") for s in SMALL_LUME) | {"eval.max_new_tokens": 96}
    board, _ = harness.run(
        methods="fo-graddiff",
        benchmark="lume-mini",
        preset="tofu-mini-smoke",
        lm_eval_tasks=["embedded_real_authors_loglik"],
        cache_dir=micro_cache,
        out=tmp_path / "py",
        settings=settings,
    )
    assert set(board["template"]) == {"raw"}  # LUME's own default, in Python as on the command line
    _same_leaderboards(lume_run, tmp_path / "py")


def test_a_bad_setting_raises_one_exception_named_for_each_door(tmp_path, capsys):
    with pytest.raises(harness.SettingError) as caught:
        harness.run(methods=["simu"], settings={"simu.lr": 0}, out=tmp_path / "py")
    assert str(caught.value) == "simu.lr=0.0: expected a finite number > 0"
    assert caught.value.cli() == "--set simu.lr=0.0: expected a finite number > 0"
    with pytest.raises(harness.SettingError, match="seeds=''"):
        harness.run(seeds=[], out=tmp_path / "py")
    with pytest.raises(harness.SettingError, match="device='tpu': expected auto, cpu"):
        harness.evaluate(models=["x"], device="tpu", out=tmp_path / "py")
    assert main(["run", "--methods", "", "--out", str(tmp_path / "cli")]) == 2
    assert "harness: error: --methods '': expected one or more names" in capsys.readouterr().err
    assert not (tmp_path / "py").exists() and not (tmp_path / "cli").exists()


def test_python_arguments_as_a_user_gives_them(tmp_path):
    from harness.config import build

    cfg = build(
        "run",
        methods="simu,",
        seeds=0,
        preset=Path("harness") / "presets" / "tofu-mini-smoke.toml",
        retain_model=tmp_path,
        settings={"simu.reuse_attribution": True, "simu.lr": 3e-4},
    )
    assert cfg.methods == ["simu"] and cfg.seeds == [0] and cfg.retain_model == str(tmp_path)
    assert cfg.overrides_for("simu")["lr"] == "0.0003" and cfg.overrides_for("simu")["reuse_attribution"] == "true"
    with pytest.raises(harness.SettingError, match="seeds: not an argument of eval"):
        harness.evaluate(models="x", seeds=[0])
    with pytest.raises(harness.SettingError, match="grid: not an argument of run"):
        harness.run(grid={"simu.t": [0.1]})
    with pytest.raises(harness.SettingError, match="methods='nope': unknown method 'nope'"):
        harness.run(methods=["nope"])
    with pytest.raises(harness.SettingError, match="harness eval runs no method"):
        harness.evaluate(models="x", settings={"simu.lr": 1e-3})


def test_a_run_defined_in_python_gets_the_benchmarks_defaults():
    from harness.config import RunConfig

    lume = RunConfig(benchmark="lume-mini")
    assert (lume.eval.template, lume.eval.max_new_tokens) == ("raw", 256)
    sweep = harness.config.build("sweep", grid={"simu.t": [0.1, 0.3]})
    assert sweep.overrides_for("simu")["reuse_attribution"] == "true" and sweep.out_dir == "runs/tofu-mini-sweep"


def test_the_examples_run(tmp_path, micro_cache, capsys):
    """Each script in examples/ on the smoke sizes, as a user runs it."""
    import importlib.util

    folder = Path(__file__).resolve().parents[1] / "examples"
    loaded = {}
    for path in sorted(folder.glob("*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        loaded[path.stem] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loaded[path.stem])
    assert set(loaded) == {"api_loop", "keep_unlearned_model", "score_outside_checkpoint"}
    table = loaded["score_outside_checkpoint"].main(str(tmp_path / "outside"), str(micro_cache))
    assert "| outside-ga |" in table and "| simu |" in table
    kept = loaded["keep_unlearned_model"].main(str(tmp_path / "keep"), str(micro_cache))
    assert all(a == b for a, b in kept.values())
    frame = loaded["api_loop"].main(str(tmp_path / "loop"), str(micro_cache), rates=(1e-4, 2e-3))
    assert (
        list(frame["lr"]) == [1e-4, 2e-3] and frame["forget_em_contains"].iloc[1] <= frame["forget_em_contains"].iloc[0]
    )
