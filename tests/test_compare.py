"""`harness compare` (equal-budget selection, matched forgetting) and the table's notes on a harmonic mean at
0, on hand-made leaderboards: no model is trained here."""

import math
import tomllib

import pandas as pd
import pytest

from harness import compare
from harness.cli import main
from harness.config import RunConfig, apply_preset
from harness.tables import render, zero_parts


def tofu_rows(method, lr, seed, forget, retain, utility=0.5):
    return {
        "benchmark": "tofu-mini",
        "method": method,
        "kind": "method",
        "seed": seed,
        "variant": f"lr={lr}",
        f"{method}.lr": lr,
        "forget_em_contains": forget,
        "retain_em_contains": retain,
        "model_utility": utility,
    }


def sweep_frame():
    """Two methods over the same 3-point grid, 2 seeds; b's seed 1 failed at its largest rate (no row)."""
    refs = [
        {
            "benchmark": "tofu-mini",
            "method": m,
            "kind": "reference",
            "forget_em_contains": f,
            "retain_em_contains": 1.0,
            "model_utility": 0.55,
        }
        for m, f in (("target", 1.0), ("retain", 0.0))
    ]
    a = [(1e-5, 1.0, 1.0), (1e-4, 0.4, 0.9), (1e-3, 0.0, 0.5)]  # (lr, forget, retain), both seeds
    b = [(1e-5, 0.8, 1.0), (1e-4, 0.2, 0.6), (1e-3, 0.0, 0.8)]
    rows = [tofu_rows("a", lr, s, f, r) for lr, f, r in a for s in (0, 1)]
    rows += [tofu_rows("b", lr, s, f + 0.1 * s, r) for lr, f, r in b for s in (0, 1) if not (lr == 1e-3 and s == 1)]
    return pd.DataFrame(refs + rows)


def hmean3(x, y, z):
    return 3 / (1 / x + 1 / y + 1 / z)


def test_scores_select_the_best_point_and_a_failed_seed_scores_zero():
    points = compare.select(compare.grid_points(sweep_frame())).set_index(["method", "variant"])
    assert points.loc[("a", "lr=1e-05"), "score"] == 0  # nothing forgotten
    assert points.loc[("a", "lr=0.0001"), "score"] == pytest.approx(hmean3(0.6, 0.9, 0.5))
    # b at 1e-3: seed 0 scores hmean(1, 0.8, 0.5), the failed seed 1 scores 0
    assert points.loc[("b", "lr=0.001"), "score"] == pytest.approx(hmean3(1.0, 0.8, 0.5) / 2)
    assert points.loc[("b", "lr=0.001"), "n_seeds"] == 1
    chosen = points[points["selected"]].index.tolist()
    assert chosen == [("a", "lr=0.0001"), ("b", "lr=0.0001")]


def test_ties_go_to_the_earlier_grid_point():
    frame = pd.DataFrame([tofu_rows("a", lr, 0, 0.0, 1.0) for lr in (1e-4, 1e-3)])
    points = compare.select(compare.grid_points(frame))
    assert points["selected"].tolist() == [True, False]


def test_first_crossing_interpolates_along_the_grid_order():
    assert compare.first_crossing([1.0, 0.4, 0.0], [1.0, 0.9, 0.5], 0.25) == pytest.approx(0.9 + (0.15 / 0.4) * -0.4)
    assert compare.first_crossing([1.0, 0.4, 0.0], [1.0, 0.9, 0.5], 0.4) == pytest.approx(0.9)
    assert compare.first_crossing([0.1, 0.0], [0.7, 0.2], 0.5) == pytest.approx(0.7)  # already below
    assert math.isnan(compare.first_crossing([1.0, 0.8], [1.0, 0.9], 0.5))  # never reached
    # non-monotone: the first crossing counts
    assert compare.first_crossing([1.0, 0.2, 0.6, 0.0], [1.0, 0.8, 0.9, 0.1], 0.5) == pytest.approx(0.875)


def test_matched_table_mean_curve_and_seed_spread():
    table = compare.matched(sweep_frame(), levels=(0.5, 0.1)).set_index(["method", "forget_level"])
    # a: the mean curve (1.0, 0.4, 0.0) -> retain (1.0, 0.9, 0.5); at 0.5: 1.0 + (0.5/0.6)(0.9 - 1.0)
    assert table.loc[("a", 0.5), "retain"] == pytest.approx(1.0 - 0.5 / 0.6 * 0.1)
    assert table.loc[("a", 0.5), "retain_std"] == pytest.approx(0.0)  # both seeds the same
    assert table.loc[("a", 0.1), "retain"] == pytest.approx(0.9 - 0.3 / 0.4 * 0.4)
    assert table.loc[("a", 0.5), "utility"] == pytest.approx(0.5)
    # b's seeds differ by 0.1 in forget: their interpolations differ, so the spread is positive
    assert table.loc[("b", 0.5), "retain_seeds"] == 2 and table.loc[("b", 0.5), "retain_std"] > 0


def test_compare_command_writes_every_file_and_the_preset_reruns(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    sweep_frame().to_csv(sweep / "leaderboard.csv", index=False)
    assert main(["compare", str(sweep), "--levels", "0.5,0.1"]) == 0
    out = sweep / "compare"
    assert sorted(p.name for p in out.iterdir()) == [
        "matched.csv",
        "matched.md",
        "matched.png",
        "selected.toml",
        "selection.csv",
    ]
    preset = tomllib.loads((out / "selected.toml").read_text())
    assert preset["benchmark"] == "tofu-mini" and preset["methods"]["a"] == {"lr": 0.0001}
    printed = capsys.readouterr().out
    assert "retain_em_contains @ forget_em_contains 0.5" in printed and "| b |" in printed


def test_selected_preset_is_a_preset_harness_run_reads(tmp_path):
    frame = pd.DataFrame([tofu_rows("fo-graddiff", lr, 0, f, 0.9) for lr, f in ((1e-5, 1.0), (3.162e-05, 0.1))])
    path = tmp_path / "selected.toml"
    path.write_text(compare.selected_preset(frame, compare.select(compare.grid_points(frame)), "tofu-mini"))
    cfg = RunConfig()
    apply_preset(cfg, str(path))
    assert cfg.methods == ["fo-graddiff"] and cfg.preset_overrides["fo-graddiff"] == {"lr": "3.162e-05"}


def test_compare_without_role_columns_is_one_error_line(tmp_path, capsys):
    pd.DataFrame([{"method": "x", "seed": 0, "something": 1.0}]).to_csv(tmp_path / "lb.csv", index=False)
    assert main(["compare", str(tmp_path / "lb.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no forget or retain or utility column" in err
    assert not (tmp_path / "compare").exists()


def test_another_forget_column_moves_the_selection_and_the_matching(tmp_path, capsys):
    """`--forget COLUMN`: the column stands for forgetting in the score and the matched levels (MUSE's VerbMem
    for its declared KnowMem); one that is not a lower-is-better column of the sweep is one line."""
    frame = sweep_frame()
    frame["forget_em_token"] = 1.0 - frame["retain_em_contains"] / 2  # another forget column, its own curve
    declared = compare.select(compare.grid_points(frame))
    other = compare.select(compare.grid_points(frame, forget="forget_em_token"))
    assert (
        other["forget"].tolist()
        == frame.loc[frame["kind"] == "method"]
        .groupby(["method", "variant"], sort=False)["forget_em_token"]
        .mean()
        .tolist()
    )
    assert other["score"].tolist() != declared["score"].tolist()
    table = compare.matched(frame, levels=(0.5,), forget="forget_em_token")
    assert table["retain"].notna().any()
    frame.to_csv(tmp_path / "lb.csv", index=False)
    assert main(["compare", str(tmp_path / "lb.csv"), "--forget", "forget_em_token", "--out", str(tmp_path / "c")]) == 0
    assert "retain_em_contains @ forget_em_token 0.5" in (tmp_path / "c" / "matched.md").read_text()
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "lb.csv"), "--forget", "model_utility", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--forget model_utility: expected a lower-is-better column" in err
    assert "forget_em_contains" in err and not (tmp_path / "d").exists()


def lume_rows():
    """Two seeds of one method: seed 0 keeps Task2's forget knowledge, seed 1 loses Task3's retain knowledge."""
    base = {
        f"lume_{s}_task{t}_{k}": 0.5
        for s in ("forget", "retain")
        for t in (1, 2, 3)
        for k in ("regurgitation", "knowledge")
    }
    rows = []
    for seed, part, value in ((0, "lume_forget_task2_knowledge", 1.0), (1, "lume_retain_task3_knowledge", 0.0)):
        rows.append(
            {
                "benchmark": "lume-mini",
                "method": "so-graddiff",
                "kind": "method",
                "seed": seed,
                **base,
                part: value,
                "lume_task_aggregate": 0.0,
            }
        )
    rows.append(
        {
            "benchmark": "lume-mini",
            "method": "fo-graddiff",
            "kind": "method",
            "seed": 0,
            **base,
            "lume_task_aggregate": 0.5,
        }
    )
    return pd.DataFrame(rows)


def test_table_names_the_parts_that_make_a_harmonic_mean_zero():
    frame = lume_rows()
    assert zero_parts(frame[frame["method"] == "so-graddiff"], "lume_task_aggregate") == {
        "lume_forget_task2_knowledge": 1,
        "lume_retain_task3_knowledge": 1,
    }
    text = render(frame, ["lume_task_aggregate"])
    # fo-graddiff's one seed has no interval, so its better mean is not separated from so-graddiff's: both tie
    assert "| so-graddiff | 0.000 ± 0.000† [1] |" in text and "| fo-graddiff | 0.500† |" in text
    assert (
        "[1] so-graddiff: lume_task_aggregate is 0, its parts at 0: lume_forget_task2_knowledge = 1 (1 of 2), "
        "lume_retain_task3_knowledge = 0 (1 of 2)"
    ) in text
    assert "[1]" in render(frame, ["lume_task_aggregate"], fmt="latex")


def test_compare_on_a_csv_writes_beside_it_under_its_name(tmp_path):
    assert compare.default_out(tmp_path / "tofu-sweep.csv") == tmp_path / "tofu-sweep-compare"
    assert compare.default_out(tmp_path) == tmp_path / "compare"


def test_several_sweeps_compare_as_one_and_bad_mixes_are_one_line(tmp_path, capsys):
    """`harness compare A B --out DIR`: A's references, both sweeps' methods (as a new method's sweep beside the
    committed one); a sweep of another benchmark, one repeating a method, or no --out is one error line."""
    frame = sweep_frame()
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    frame[frame["method"] != "b"].to_csv(first, index=False)
    frame[frame["method"] != "a"].to_csv(second, index=False)
    assert main(["compare", str(first), str(second), "--out", str(tmp_path / "both")]) == 0
    together = pd.read_csv(tmp_path / "both" / "selection.csv")
    alone = compare.select(compare.grid_points(frame))
    assert together["method"].tolist() == ["a"] * 3 + ["b"] * 3
    assert together["score"].tolist() == pytest.approx(alone["score"].tolist())
    capsys.readouterr()
    other = frame[frame["method"] != "a"].assign(benchmark="lume-mini")
    other.to_csv(tmp_path / "other.csv", index=False)
    for args, words in [
        ([str(first), str(second)], "--out: expected a folder"),
        ([str(first), str(first), "--out", str(tmp_path / "x")], "method a is in"),
        ([str(first), str(tmp_path / "other.csv"), "--out", str(tmp_path / "x")], "benchmark lume-mini, not"),
    ]:
        assert main(["compare", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "x").exists()
