"""`harness sweep` (one cell per grid point, resumable, one leaderboard) and `harness plot` on the micro world."""

import json
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.config import RunConfig, add_grid

POINTS = [(0.2, 1), (0.2, 2), (0.6, 1), (0.6, 2)]


def sweep(out: Path, cache: Path, *grid: str) -> int:
    args = [a for g in grid for a in ("--grid", g)]
    return main(["sweep", *args, "--out", str(out), "--cache-dir", str(cache), "--preset", "tofu-mini-smoke"])


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory, micro_cache):
    out = tmp_path_factory.mktemp("sweep") / "run"
    assert sweep(out, micro_cache, "simu.t=0.2,0.6", "simu.m=1,2") == 0
    return out


def simu_rows(run: Path) -> pd.DataFrame:
    board = pd.read_csv(run / "leaderboard.csv")
    return board[board["method"] == "simu"].set_index(["simu.t", "simu.m"])


def test_sweep_writes_one_cell_per_grid_point(sweep_run):
    board = pd.read_csv(sweep_run / "leaderboard.csv")
    assert list(board["method"]) == ["target", "retain"] + ["simu"] * 4
    rows = simu_rows(sweep_run)
    assert list(rows.index) == POINTS
    assert list(rows["variant"]) == ["t=0.2,m=1", "t=0.2,m=2", "t=0.6,m=1", "t=0.6,m=2"]
    assert len(set(rows["config_hash"])) == 4
    names = {p.name for p in (sweep_run / "results").glob("*.json")}
    assert names == {"target.json", "retain.json"} | {f"simu-t{t}-m{m}-seed0.json" for t, m in POINTS}
    for t, m in POINTS:  # each cell's own hyperparameters reached SIMU
        masks = json.loads((sweep_run / "artifacts" / f"simu-t{t}-m{m}-seed0" / "masks.json").read_text())
        assert (masks["t"], masks["m"]) == (t, m)


def test_sweep_points_share_stage1_scores_and_thresholds_nest(sweep_run):
    rows = simu_rows(sweep_run)
    for m in (1, 2):
        # t only thresholds the scores: t=0.6 reuses t=0.2's forget and retain attributions, and keeps fewer
        assert rows.loc[(0.2, m), "simu_attribution_reused"] == 0
        assert rows.loc[(0.6, m), "simu_attribution_reused"] == 2
        assert 0 < rows.loc[(0.6, m), "simu_critical_neurons"] < rows.loc[(0.2, m), "simu_critical_neurons"]


def test_sweep_resumes_and_a_new_value_runs_only_its_cells(sweep_run, micro_cache):
    results = sweep_run / "results"
    before = {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")}
    assert sweep(sweep_run, micro_cache, "simu.t=0.2,0.6,0.9", "simu.m=1,2") == 0
    after = {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")}
    assert {k: v for k, v in after.items() if k in before} == before
    assert set(after) - set(before) == {"simu-t0.9-m1-seed0.json", "simu-t0.9-m2-seed0.json"}
    assert len(pd.read_csv(sweep_run / "leaderboard.csv")) == 2 + 6


def test_table_and_check_keep_grid_points_apart(sweep_run, tmp_path, capsys):
    assert main(["table", str(sweep_run), "--columns", "forget_em_contains,simu_critical_neurons"]) == 0
    table = capsys.readouterr().out
    assert "| simu t=0.2,m=1 |" in table and "| simu t=0.6,m=2 |" in table
    assert "simu_critical_neurons |" in table  # a diagnostic: no arrow, never bold
    assert main(["check", str(sweep_run), "--against", str(sweep_run / "leaderboard.csv")]) == 0
    board = pd.read_csv(sweep_run / "leaderboard.csv")
    board.loc[(board["variant"] == "t=0.6,m=2"), "retain_em_contains"] -= 0.5
    board.to_csv(tmp_path / "worse.csv", index=False)
    capsys.readouterr()
    assert main(["check", str(tmp_path / "worse.csv"), "--against", str(sweep_run / "leaderboard.csv")]) == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("note: ")]
    assert len(lines) == 1 and lines[0].startswith("simu t=0.6,m=2 (seed 0): retain_em_contains"), lines


def test_bad_grids_are_one_clear_error(tmp_path, capsys):
    cfg = RunConfig()
    for bad, expected in [
        ("simu.t", "expected METHOD.key=v1,v2"),
        ("nope.t=1", "expected METHOD.key"),
        ("simu.zz=1", "grid simu.zz: unknown hyperparameter"),
        ("simu.t=a", "expected a float"),
        ("simu.t=0.1,0.1", "distinct"),
    ]:
        with pytest.raises(ValueError, match=expected):
            add_grid(cfg, bad)
    assert main(["sweep", "--grid", "simu.t=0.1", "--methods", "fo-graddiff", "--out", str(tmp_path / "r")]) == 2
    assert "--grid simu.t: method 'simu' is not in --methods" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_plot_writes_the_sweep_figures(sweep_run, capsys, figure_stats):
    assert main(["plot", str(sweep_run)]) == 0
    printed = capsys.readouterr().out.split()
    names = ["tradeoff.png", "simu_neurons.png", "sweep_simu.t.png", "sweep_simu.m.png"]
    assert [Path(p).name for p in printed] == names
    for name in names:  # a real picture: wide enough, mostly white, a fair share of inked, coloured pixels
        width, height, inked, colours = figure_stats(sweep_run / "plots" / name)
        assert width > 600 and height > 300
        assert 0.01 < inked < 0.6 and colours > 20, (name, inked, colours)
    assert not list((sweep_run / "plots").glob("*.tmp.png"))


def test_plot_errors_name_the_input(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert "expected a run folder" in capsys.readouterr().err
