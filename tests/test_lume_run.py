"""`harness run --benchmark lume-mini` end to end on the micro world, and the lm-eval bridge, offline."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import SMALL_LUME

from evaluators import lm_eval_bridge
from harness.cli import main
from harness.config import RunConfig, apply_override, apply_preset
from harness.embedded import build_model, prepare_embedded_lume
from harness.models import load_model
from harness.registry import benchmarks
from harness.tables import render


def test_lume_leaderboard_has_every_lume_figure(lume_run):
    board = pd.read_csv(lume_run / "leaderboard.csv").set_index("method")
    assert list(board.index) == ["target", "fo-graddiff"]  # LUME has no retain model
    per_task = [
        f"lume_{s}_task{t}_{k}" for s in ("forget", "retain") for t in (1, 2, 3) for k in ("regurgitation", "knowledge")
    ]
    expected = per_task + [
        "lume_task_aggregate",
        "lume_mia_loss_auc",
        "lume_mia_score",
        "lume_final_score_arithmetic_mc",
        "lume_general",  # no MMLU: the named substitute
        "lmeval_embedded_arithmetic_mc_acc",
        "lmeval_embedded_real_authors_loglik_perplexity",
        "lmeval_embedded_real_authors_loglik_acc",
        "lmeval_seconds",
    ]
    assert not board[expected].isna().any().any()
    assert (board["template"] == "raw").all() and (board["forget_split"] == "forget").all()
    row = board.loc["fo-graddiff"]
    assert row["lume_general"] == row["lmeval_embedded_arithmetic_mc_acc"]
    assert row["lume_final_score_arithmetic_mc"] == pytest.approx(
        (row["lume_task_aggregate"] + row["lume_general"] + row["lume_mia_score"]) / 3
    )


def test_lume_target_regurgitates_and_unlearning_lowers_it(lume_run):
    board = pd.read_csv(lume_run / "leaderboard.csv").set_index("method")
    target, fo = board.loc["target"], board.loc["fo-graddiff"]
    assert target["lume_forget_regurgitation"] >= 0.9 and target["lume_forget_knowledge"] >= 0.9
    assert fo["lume_forget_knowledge"] < target["lume_forget_knowledge"]
    assert fo["lume_forget_regurgitation"] < target["lume_forget_regurgitation"]


def test_lume_per_row_outputs_are_saved(lume_run):
    items = [json.loads(line) for line in (lume_run / "results" / "fo-graddiff-seed0.items.jsonl").open()]
    rows = [i for i in items if i["split"] in ("forget", "retain")]
    assert {"id", "task", "kind", "prompt", "gold", "generation"} <= set(rows[0])
    sc = [i for i in rows if i["kind"] == "sc" and i["split"] == "forget" and i["task"] == "Task2"]
    board = pd.read_csv(lume_run / "leaderboard.csv").set_index("method")
    assert board.loc["fo-graddiff", "lume_forget_task2_regurgitation"] == pytest.approx(
        sum(i["regurgitation"] for i in sc) / len(sc)
    )
    assert {i["split"] for i in items} == {"forget", "retain", "member", "nonmember"}


def test_lume_table_defaults_to_lume_columns(lume_run):
    table = render(pd.read_csv(lume_run / "leaderboard.csv"))
    assert "lume_task_aggregate ↑" in table and "lume_forget_knowledge ↓" in table and "lume_mia_loss_auc →0.5" in table


@pytest.fixture(scope="module")
def micro_lume(micro_cache):
    """The run's configuration and the micro LUME target (trained here if no run came first)."""
    cfg = RunConfig(benchmark="lume-mini")
    apply_preset(cfg, "tofu-mini-smoke", benchmark="lume-mini")
    for assignment in SMALL_LUME:
        apply_override(cfg, assignment)
    return cfg, prepare_embedded_lume(cfg.section("world"), cfg.section("lume"), cfg.section("train"), micro_cache)


def test_bridge_scores_a_trained_model_above_a_random_one_and_restores_its_mode(micro_lume, tmp_path):
    cfg, embedded = micro_lume
    tasks = benchmarks["lume-mini"]().offline_tasks(cfg)
    names = [task.name for task in tasks]
    tasks_dir = lm_eval_bridge.write_tasks(tmp_path / "tasks", tasks)
    model, tokenizer = load_model(embedded.target_dir)
    model.train()
    trained = lm_eval_bridge.run_tasks(model, tokenizer, names, tasks_dir, names)
    assert model.training  # put back as it was
    random_model = build_model(cfg.section("train"), tokenizer).eval()
    untrained = lm_eval_bridge.run_tasks(random_model, tokenizer, names, tasks_dir, names)
    assert not random_model.training
    assert trained["lmeval_embedded_world_facts_mc_acc"] > untrained["lmeval_embedded_world_facts_mc_acc"] + 0.3
    assert (
        trained["lmeval_embedded_real_authors_loglik_perplexity"]
        < untrained["lmeval_embedded_real_authors_loglik_perplexity"] / 10
    )


def test_bridge_errors_name_the_task(micro_lume, tmp_path, task_index_cache):
    cfg, embedded = micro_lume
    tasks = benchmarks["tofu-mini"]().offline_tasks(cfg)
    names = [task.name for task in tasks]
    tasks_dir = lm_eval_bridge.write_tasks(tmp_path / "tasks", tasks)
    yaml = (tasks_dir / "embedded_world_facts_mc.yaml").read_text()
    assert str(tasks_dir / "embedded_world_facts_mc.jsonl") in yaml  # absolute data path
    model, tokenizer = load_model(embedded.target_dir)
    with pytest.raises(ValueError, match="--lm-eval-tasks no_such_task: not an lm-eval task"):  # the pre-flight's
        lm_eval_bridge.check_tasks(["embedded_world_facts_mc", "arc_easy", "no_such_task"], names, task_index_cache)
    with pytest.raises(ValueError, match="--lm-eval-tasks arc_easy: could not be loaded"):  # offline, no data
        lm_eval_bridge.run_tasks(model, tokenizer, ["arc_easy"], tasks_dir, names)


def test_lume_flags_are_checked(tmp_path, capsys):
    assert main(["run", "--benchmark", "lume", "--out", str(tmp_path / "r")]) == 2
    assert "--benchmark lume: needs --data" in capsys.readouterr().err
    assert main(["run", "--benchmark", "lume-mini", "--retain-model", "x", "--out", str(tmp_path / "r")]) == 2
    assert "LUME's metrics need no retain model" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_official_lume_files_with_a_saved_model(micro_lume, tmp_path):
    """`--benchmark lume --data DIR --model PATH`: the hub layout (parquet shards, mia_data/) and any saved
    causal LM; here the micro target, so the figures must match the embedded run's target row."""
    cfg, embedded = micro_lume
    data = tmp_path / "official"
    (data / "data").mkdir(parents=True)
    (data / "mia_data").mkdir()
    for name in ("forget", "retain"):
        rows = pd.read_json(embedded.data_dir / f"{name}.jsonl", lines=True)
        rows.to_parquet(data / "data" / f"{name}_train-00000-of-00001.parquet")
    for name in ("member", "nonmember"):
        (data / "mia_data" / f"{name}.jsonl").write_text((embedded.data_dir / f"{name}.jsonl").read_text())
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "--benchmark",
                "lume",
                "--data",
                str(data),
                "--model",
                str(embedded.target_dir),
                "--methods",
                "fo-graddiff",
                "--set",
                "fo-graddiff.epochs=1",
                "--set",
                "eval.max_new_tokens=48",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    board = pd.read_csv(out / "leaderboard.csv").set_index("method")
    assert list(board.index) == ["target", "fo-graddiff"] and (board["benchmark"] == "lume").all()
    assert board.loc["target", "model"] == "target" and board.loc["target", "lume_forget_knowledge"] >= 0.9
    assert board.loc["fo-graddiff", "steps"] > 0


def test_readme_documents_every_lume_column(lume_run):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### LUME", 1)[1].split("\n### ", 1)[0]
    cells = re.findall(r"^\| (`lume_[^|]+) \|", section, flags=re.M)
    names = [n for cell in cells for n in re.findall(r"`([^`]+)`", cell)]
    names = [
        n.replace("SPLIT", s).replace("taskN", f"task{t}")
        for n in names
        for s in ("forget", "retain")
        for t in (1, 2, 3)
    ]
    board = pd.read_csv(lume_run / "leaderboard.csv")
    assert len(set(names)) == 24  # the 22 figures and the award gate's two columns
    assert set(names) - set(board.columns) == {"lume_final_score_mmlu"}  # this run has no MMLU


def test_lm_eval_tasks_add_columns_to_a_tofu_leaderboard(micro_cache, tmp_path):
    out = tmp_path / "tofu"
    assert (
        main(
            [
                "run",
                "--preset",
                "tofu-mini-smoke",
                "--methods",
                "fo-graddiff",
                "--set",
                "fo-graddiff.epochs=1",
                "--lm-eval-tasks",
                "embedded_world_facts_mc",
                "--out",
                str(out),
                "--cache-dir",
                str(micro_cache),
            ]
        )
        == 0
    )
    board = pd.read_csv(out / "leaderboard.csv").set_index("method")
    assert list(board.index) == ["target", "retain", "fo-graddiff"]
    assert (board["lmeval_embedded_world_facts_mc_acc"] > 0.5).all() and (board["lmeval_seconds"] > 0).all()
    assert "lume_task_aggregate" not in board.columns
