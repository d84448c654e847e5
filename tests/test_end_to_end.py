"""`harness run` end to end on the micro world (CI's smoke preset, seeds 0, 1, 2): trains the tiny models,
unlearns with every method, evaluates, and passes CI's smoke check against the committed reference although it
runs under other CPU kernels (ATEN_CPU_CAPABILITY=default; the reference was made under avx2)."""

import json
import re
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from scipy.stats import ks_2samp

from evaluators import mia
from harness.cli import main
from harness.environment import PACKAGES
from harness.regression import check, read_tolerances
from harness.tables import read_leaderboard

README = Path(__file__).resolve().parents[1] / "README.md"
sys.path.insert(0, str(README.parent / "perf"))
import check_power  # noqa: E402  (the faults the smoke check must catch, defined once)

LEADERBOARDS = README.parent / "leaderboards"
SPLITS = ("forget", "retain", "real_authors", "world_facts")
SMOKE = LEADERBOARDS / "tofu-mini-smoke.csv"
SEEDS = "0,1,2"
METHODS = ["fo-graddiff", "so-graddiff", "simu"]  # the --methods order, which the rows follow


def harness_run(out: Path, cache: Path, *extra: str, methods: str = "fo-graddiff,so-graddiff,simu") -> int:
    return main(
        [
            "run",
            "--methods",
            methods,
            "--seeds",
            SEEDS,
            "--out",
            str(out),
            "--cache-dir",
            str(cache),
            "--preset",
            "tofu-mini-smoke",
            *extra,
        ]
    )


def documented_columns() -> list[str]:
    """Every column named in the README's leaderboard tables, with SPLIT and ATTACK expanded."""
    section = README.read_text().split("## Leaderboard columns", 1)[1].split("\n## ", 1)[0]
    names = re.findall(r"^\| `([^`]+)` \|", section, flags=re.M)
    names = [n.replace("SPLIT", s) for n in names for s in (SPLITS if "SPLIT" in n else ["SPLIT"])]
    return [n.replace("ATTACK", a) for n in names for a in (mia.ATTACKS if "ATTACK" in n else ["ATTACK"])]


def test_leaderboard_has_references_then_methods(micro_run):
    board = pd.read_csv(micro_run / "run" / "leaderboard.csv")
    assert list(board["method"]) == ["target", "retain"] + [m for m in METHODS for _ in range(3)]
    assert list(board["kind"]) == ["reference"] * 2 + ["method"] * 9
    assert list(board["seed"][2:5].astype(int)) == [0, 1, 2]
    assert board.loc[2, "steps"] > 0 and board.loc[2, "trainable_params"] > 0


def test_csv_has_every_documented_column(micro_run):
    columns = documented_columns()
    assert len(columns) > 25
    board = pd.read_csv(micro_run / "run" / "leaderboard.csv")
    lora_only = {"lora_r", "requests"}  # a LoRA cell's column (tests/test_lora.py) and a MUSE sust_K row's
    #   (tests/test_muse.py); the smoke run has neither
    assert set(columns) - lora_only <= set(board.columns), set(columns) - lora_only - set(board.columns)
    common = [
        c
        for c in columns
        if c not in ("seed", "unchanged", "per_device_batch", "effective_batch", *lora_only)
        and not c.startswith("simu_")
    ]
    assert not board[common].drop(columns="mia_reference_auc").isna().any().any()
    # the reference-model attack is the retain model against itself on the retain row: left out, not a number
    assert board["mia_reference_auc"].isna().tolist() == [m == "retain" for m in board["method"]]
    assert not board.loc[board["kind"] == "method", "unchanged"].astype(bool).any()  # every method moved
    simu_only = [c for c in columns if c.startswith("simu_")]
    assert simu_only and not board.loc[board["method"] == "simu", simu_only].isna().any().any()


@pytest.mark.parametrize("method", ["fo-graddiff", "so-graddiff"])
def test_methods_lower_forget_em(micro_run, method):
    board = pd.read_csv(micro_run / "run" / "leaderboard.csv").groupby("method")["forget_em_contains"].mean()
    assert board["target"] >= 0.5, "the micro target must know its forget set"
    assert board[method] < board["target"]
    assert board["retain"] < board["target"]


def test_simu_saves_its_masks_and_reports_them(micro_run):
    board = pd.read_csv(micro_run / "run" / "leaderboard.csv").query("seed != 1 and seed != 2").set_index("method")
    folder = micro_run / "run" / "artifacts" / "simu-seed0"
    masks = torch.load(folder / "masks.pt")
    summary = json.loads((folder / "masks.json").read_text())
    assert len(masks) == 2 and all(m.dtype == torch.bool for m in masks.values())  # one per layer
    assert summary["per_layer_critical"] == [int(m.sum()) for m in masks.values()]
    assert board.loc["simu", "simu_critical_neurons"] == sum(summary["per_layer_critical"])
    assert 0 < board.loc["simu", "simu_critical_fraction"] < 1
    attention = 2 * 4 * 128 * 128  # 2 layers x q, k, v, o projections of the 128-wide smoke model
    critical_columns = sum(summary["per_layer_critical"]) * 128  # a neuron is one 128-long column of down_proj
    assert board.loc["simu", "trainable_params"] == attention + critical_columns  # what can move, not whole matrices


def test_micro_run_passes_the_smoke_check_under_other_kernels(micro_run, capsys):
    """CI's smoke regression (leaderboards/README.md), checked the way CI checks it, on a run whose CPU
    kernels differ from the reference's: the check passes and says how the environments differ."""
    assert main(["check", str(micro_run / "run"), "--against", str(SMOKE)]) == 0
    out = capsys.readouterr().out
    assert "  aten_cpu_capability: AVX2 -> DEFAULT" in out
    assert out.strip().splitlines()[-1].startswith("no regressions: 11 cells x ")


def test_the_same_command_has_the_same_hashes_on_every_machine(micro_run):
    """Hashes cover what was asked, never a measured value: they equal those of the reference, made elsewhere
    and under other kernels; what the retain model measured is recorded beside them."""
    run, reference = read_leaderboard(micro_run / "run"), read_leaderboard(SMOKE)
    assert list(run["config_hash"]) == list(reference["config_hash"])
    assert run["retain_reference"].nunique() == 1 and run["retain_reference"].notna().all()


def test_the_run_records_its_environment(micro_run):
    records = json.loads((micro_run / "run" / "environment.json").read_text())
    assert len(records) == 1
    [(key, env)] = records.items()
    assert set(read_leaderboard(micro_run / "run")["environment"]) == {key}
    assert {"python", *PACKAGES, "aten_cpu_capability", "torch_threads", "device", "dtype"} <= set(env)
    assert env["mkl_kernels"] in ("intel", "non-intel")  # oneMKL's path by CPU vendor (None without MKL)
    assert env["aten_cpu_capability"] == "DEFAULT" and env["ATEN_CPU_CAPABILITY"] == "default"
    assert env["device"] == "cpu" and env["dtype"] == "float32" and env["torch"].startswith("2.")


def test_a_log_gets_plain_lines_not_cursor_control(micro_run):
    log = (micro_run / "log").read_text()
    assert "\r" not in log and "\x1b[" not in log
    assert "train target: " in log and "cell 9/9 simu-seed2: done in " in log


def _fault_run(tmp_path, micro_run, method_names: str) -> list[str]:
    assert harness_run(tmp_path / "run", micro_run / "cache", methods=method_names) == 0
    return check(read_leaderboard(tmp_path / "run"), read_leaderboard(SMOKE), read_tolerances(SMOKE)).regressions


def inject(monkeypatch, fault: str) -> None:
    """Apply one of the faults `perf/check_power.py` measures the smoke check's power on."""
    module, name, replacement = check_power.FAULTS[fault]
    monkeypatch.setattr(module, name, replacement)


def test_forget_loss_switched_off_fails_the_check(micro_run, tmp_path, monkeypatch):
    """Fault: GradDiff without its forget term, so the method only trains on the retain set."""
    inject(monkeypatch, "forget-loss-off")
    lines = _fault_run(tmp_path, micro_run, "fo-graddiff")
    assert any(line.startswith("fo-graddiff (seed 0, 1, 2): forget_em_contains ") for line in lines), lines
    assert not any(line.startswith(("target", "retain")) for line in lines)


def test_a_metric_computed_wrong_fails_the_check(micro_run, tmp_path, monkeypatch):
    """Fault: TOFU's truth ratio with the sign of its exponent flipped (perturbed over correct)."""
    inject(monkeypatch, "truth-ratio-flipped")
    lines = _fault_run(tmp_path, micro_run, "fo-graddiff")
    assert any(line.startswith("target: retain_truth_ratio ") for line in lines), lines
    assert any(line.startswith("fo-graddiff (seed 0, 1, 2): model_utility ") for line in lines), lines


def test_a_resume_reruns_cells_whose_retain_reference_changed(micro_run, tmp_path):
    """Same command, other retain-model measurements (--retain-eval): same hashes, but the cells re-run."""
    reference = json.loads((micro_run / "run" / "reference" / "retain.json").read_text())
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    first.write_text(json.dumps(reference))
    second.write_text(
        json.dumps(reference | {"forget_truth_ratios": [r * 1.5 for r in reference["forget_truth_ratios"]]})
    )
    out = tmp_path / "run"
    assert (
        harness_run(out, micro_run / "cache", "--retain-eval", str(first), "--seeds", "0", methods="fo-graddiff") == 0
    )
    before = read_leaderboard(out)
    assert (
        harness_run(out, micro_run / "cache", "--retain-eval", str(second), "--seeds", "0", methods="fo-graddiff") == 0
    )
    after = read_leaderboard(out)
    assert list(after["config_hash"]) == list(before["config_hash"])
    assert (after["retain_reference"] != before["retain_reference"]).all()
    # each row's forget quality is its items' truth ratios against the second reference's (x1.5 need not move
    # a KS p-value on 8 items, so the figure is recomputed rather than required to differ)
    ratios = json.loads(second.read_text())["forget_truth_ratios"]
    for cell, row in zip(("target", "fo-graddiff-seed0"), after.itertuples()):
        items = [json.loads(line) for line in (out / "results" / f"{cell}.items.jsonl").open()]
        model = [i["truth_ratio_raw"] for i in items if i["split"] == "forget"]
        assert row.forget_quality == pytest.approx(ks_2samp(model, ratios).pvalue)


def test_items_let_anyone_recompute_a_figure(micro_run):
    items = [json.loads(line) for line in (micro_run / "run" / "results" / "fo-graddiff-seed0.items.jsonl").open()]
    forget = [i for i in items if i["split"] == "forget"]
    assert {"prompt", "generation", "gold", "em_contains", "rougeL_recall", "prob"} <= set(forget[0])
    row = json.loads((micro_run / "run" / "results" / "fo-graddiff-seed0.json").read_text())
    assert row["forget_em_contains"] == pytest.approx(sum(i["em_contains"] for i in forget) / len(forget))
    assert {i["split"] for i in items} == {*SPLITS, "holdout"}
    # the exact prompt string of every item, the holdout side of the membership test's included
    assert all(i["prompt"].startswith("Question: ") and i["prompt"].endswith("\nAnswer:") for i in items)


def test_rerun_skips_finished_cells(micro_run, capsys):
    results = micro_run / "run" / "results"
    before = {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")}
    assert harness_run(micro_run / "run", micro_run / "cache") == 0
    assert {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")} == before
    err = capsys.readouterr().err
    assert "train target" not in err and "train base" not in err  # the cached models were reused


def test_changed_hyperparameter_reruns_only_that_cell(micro_run, tmp_path):
    run = shutil.copytree(micro_run / "run", tmp_path / "run")  # the shared run stays as the other tests read it
    results = run / "results"
    target_before = (results / "target.json").stat().st_mtime_ns
    old = json.loads((results / "fo-graddiff-seed0.json").read_text())["config_hash"]
    assert harness_run(run, micro_run / "cache", "--set", "fo-graddiff.epochs=1") == 0
    new = json.loads((results / "fo-graddiff-seed0.json").read_text())
    assert new["config_hash"] != old and new["steps"] < 5
    assert (results / "target.json").stat().st_mtime_ns == target_before
    assert not (run / "models" / "fo-graddiff-seed0").exists() and (run / "models" / "simu-seed0").exists()
