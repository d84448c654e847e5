"""The committed reference leaderboards: rendered tables in step with their CSVs, the README showing them, the
trade-off plot a real figure, their tolerances and environments beside them, the commands that made them
documented, and the lock file they were made with."""

import json
from importlib import metadata
from pathlib import Path

import pytest

from harness import compare
from harness.metrics import metrics
from harness.noise import ROUNDING
from harness.tables import read_leaderboard, render
from harness.uncertainty import read_items

ROOT = Path(__file__).resolve().parents[1]
BOARDS = ROOT / "leaderboards"


ALL_METHODS = ["simu", "so-graddiff", "fo-graddiff", "simu-npo", "npo", "simnpo", "grad-ascent"]


@pytest.mark.parametrize(
    "name, methods",
    [
        ("tofu-mini", ALL_METHODS),
        ("lume-mini", ALL_METHODS),
        ("muse-mini", ALL_METHODS),
        ("tofu-mini-smoke", ["fo-graddiff", "so-graddiff", "simu"]),
    ],
)
def test_committed_leaderboards_have_references_then_every_method_with_three_seeds(name, methods):
    board = read_leaderboard(BOARDS / f"{name}.csv")
    references = ["target"] if name.startswith("lume") else ["target", "retain"]  # LUME has no retain model
    assert list(board["method"][: len(references)]) == references
    assert list(dict.fromkeys(board["method"][len(references) :])) == methods
    assert all(sorted(board.loc[board["method"] == m, "seed"]) == [0, 1, 2] for m in methods)


@pytest.mark.parametrize("name", ["tofu-mini", "lume-mini", "muse-mini", "wmdp-mini"])
def test_each_method_sits_at_the_point_the_committed_sweep_selects(name):
    """The selection is recomputed from the committed sweep with `harness compare`'s rule: it gives the
    committed preset, and the leaderboard's rows are the sweep's cells at those points, figure for figure."""
    sweep = read_leaderboard(BOARDS / f"{name}-sweep.csv")
    points = compare.select(compare.grid_points(sweep))
    assert compare.selected_preset(sweep, points, name) == (BOARDS / f"{name}.selected.toml").read_text()
    board = read_leaderboard(BOARDS / f"{name}.csv")
    for _, point in points[points["selected"]].iterrows():
        cells = sweep[(sweep["method"] == point["method"]) & (sweep["variant"] == point["variant"])]
        rows = board[board["method"] == point["method"]]
        checked = [c for c in board.columns if metrics.get(c).checked and c in sweep.columns]
        assert rows[checked].reset_index(drop=True).equals(cells[checked].reset_index(drop=True)), point["method"]
    methods = sweep[sweep["kind"] == "method"]
    assert set(methods.groupby("method")["variant"].nunique()) == {9}  # the same grid for every method


@pytest.mark.parametrize("name", ["tofu-mini", "lume-mini", "muse-mini"])
def test_matched_forgetting_table_and_plot_are_committed_and_in_the_readme(name, figure_stats):
    sweep = read_leaderboard(BOARDS / f"{name}-sweep.csv")
    items = read_items(BOARDS / f"{name}-sweep.csv")
    assert items is not None  # the intervals resample items: the sweep's per-item values are committed
    table = compare.matched_table(compare.matched(sweep, items=items), compare.role_columns(sweep))
    assert table == (BOARDS / f"{name}-matched.md").read_text()
    readme = (BOARDS / "README.md").read_text()
    assert table in readme and f"]({name}-matched.png)" in readme
    width, _, inked, _ = figure_stats(BOARDS / f"{name}-matched.png")
    assert width > 1000 and 0.01 < inked < 0.6


@pytest.mark.parametrize("name", ["tofu-mini", "lume-mini", "muse-mini"])
def test_rendered_table_is_the_csv_rendered_and_the_readme_shows_it(name):
    table = (BOARDS / f"{name}.md").read_text()
    items = read_items(BOARDS / f"{name}.csv")
    assert items is not None  # the leaderboard's per-item values are committed beside it
    assert table == render(read_leaderboard(BOARDS / f"{name}.csv"), items=items)
    assert table in (ROOT / "README.md").read_text()


def test_muse_mini_matched_on_verbmem_is_committed_and_in_the_readme():
    """`harness compare --forget muse_forget_verbmem`: the same sweep matched on VerbMem instead of KnowMem."""
    sweep = read_leaderboard(BOARDS / "muse-mini-sweep.csv")
    items = read_items(BOARDS / "muse-mini-sweep.csv")
    forget = "muse_forget_verbmem"
    table = compare.matched_table(
        compare.matched(sweep, items=items, forget=forget), compare.role_columns(sweep, forget)
    )
    assert table == (BOARDS / "muse-mini-matched-verbmem.md").read_text()
    assert table in (BOARDS / "README.md").read_text()


def test_committed_tradeoff_plot_is_a_figure_and_in_the_readme(figure_stats):
    width, _, inked, colours = figure_stats(BOARDS / "tofu-mini-tradeoff.png")
    assert width > 1000 and 0.01 < inked < 0.6
    assert colours > 50
    assert "](leaderboards/tofu-mini-tradeoff.png)" in (ROOT / "README.md").read_text()


def test_commands_that_made_them_are_documented():
    readme = (BOARDS / "README.md").read_text()
    assert "<!-- tofu-mini-command -->" in readme and "--seeds 0,1,2" in readme
    assert "<!-- lume-mini-command -->" in readme and "--benchmark lume-mini" in readme
    assert "<!-- muse-mini-command -->" in readme and "<!-- muse-mini-sweep-command -->" in readme
    smoke = readme.split("<!-- smoke-command -->", 1)[1].split("```bash\n", 1)[1].split("\n```", 1)[0]
    assert "--preset tofu-mini-smoke" in smoke and "--seeds 0,1,2" in smoke
    assert "harness check runs/smoke --against leaderboards/tofu-mini-smoke.csv" in smoke
    for name in ("tofu-mini", "muse-mini", "tofu-mini-smoke"):
        assert f"cp runs/noise-{name}/tolerances.json leaderboards/{name}.tolerances.json" in readme
        assert f"leaderboards/{name}.environment.json" in readme


@pytest.mark.parametrize("name", ["tofu-mini", "muse-mini", "tofu-mini-smoke"])
def test_references_carry_measured_tolerances_and_their_environment(name):
    board = read_leaderboard(BOARDS / f"{name}.csv")
    tolerances = json.loads((BOARDS / f"{name}.tolerances.json").read_text())
    kernel_sets = ["default", "avx2", "avx512"]
    # this machine's kernel sets, then any other machine's (`harness noise --with`: FOLDER/<kernel set>)
    assert tolerances["environments"][:3] == kernel_sets
    assert all(env.split("/")[-1] in kernel_sets and "/" in env for env in tolerances["environments"][3:])
    for column, entry in tolerances["metrics"].items():
        assert column in board.columns
        measured = max(3 * entry["sigma"], entry["spread"], entry["one_item"])
        if measured <= ROUNDING:  # nothing moved it, no item count: the declared tolerance (harness/noise.py)
            assert entry["tolerance"] == metrics.get(column).tolerance > 0, column
        else:
            assert entry["tolerance"] >= measured > 0, column
    environments = json.loads((BOARDS / f"{name}.environment.json").read_text())
    assert set(board["environment"]) <= set(environments)
    assert {env["aten_cpu_capability"] for env in environments.values()} == {"AVX2"}


@pytest.mark.parametrize("name", ["tofu-mini", "tofu-mini-smoke"])
def test_the_references_ci_checks_cover_both_of_mkls_code_paths(name):
    """CI's CPU may be AMD or Intel, and oneMKL runs other matrix kernels on each: the tolerances of the two
    references CI checks were measured over both (leaderboards/README.md, "Tolerances")."""
    environments = json.loads((BOARDS / f"{name}.tolerances.json").read_text())["environments"]
    kernel_sets = ["default", "avx2", "avx512"]
    intel = [f"noise-{name}-intel-mkl{threads}/{k}" for threads in ("", "-2threads") for k in kernel_sets]
    assert environments == kernel_sets + intel  # MKL's Intel path at one thread and two: threads matter there


def test_the_lock_file_pins_what_the_references_were_made_with():
    """constraints.txt pins every package exactly, torch to the CPU wheel, and the README installs with it."""
    pins = dict(
        line.split("==")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert pins["torch"] == "2.13.0"
    environments = json.loads((BOARDS / "tofu-mini.environment.json").read_text()).values()
    for package in ("transformers", "tokenizers", "datasets", "lm_eval", "scipy", "scikit-learn", "pandas"):
        pinned = pins[package]
        assert all(env[package] == pinned for env in environments), package
        assert metadata.version(package) == pinned, f"{package}: installed without -c constraints.txt?"
    readme = (ROOT / "README.md").read_text()
    assert readme.count("pip install -c constraints.txt torch==2.13.0 && pip install -c constraints.txt -e") == 2


def test_method_defaults_are_their_tofu_mini_selection():
    """`harness run` with no method settings runs each method at the point the equal-budget rule picked on the
    default benchmark, so the main command reproduces the committed tofu-mini rows."""
    import tomllib

    from harness.config import method_config

    selected = tomllib.loads((BOARDS / "tofu-mini.selected.toml").read_text())["methods"]
    assert list(selected) == ALL_METHODS
    assert {m: method_config(m, {}).lr for m in selected} == {m: v["lr"] for m, v in selected.items()}


LORA_METHODS = ["so-graddiff-lora", "fo-graddiff-lora", "npo-lora", "simnpo-lora", "grad-ascent-lora"]


def test_lora_variants_sit_at_the_point_their_committed_sweep_selects():
    """The LoRA sweep: every variant over the same 9 rates (a decade above the full-update grid), its selection
    recomputed with the rule, committed as a preset, and the variants' defaults."""
    import tomllib

    from harness.config import method_config

    sweep = read_leaderboard(BOARDS / "tofu-mini-lora-sweep.csv")
    points = compare.select(compare.grid_points(sweep))
    preset = (BOARDS / "tofu-mini-lora.selected.toml").read_text()
    assert compare.selected_preset(sweep, points, "tofu-mini") == preset
    methods = sweep[sweep["kind"] == "method"]
    assert list(dict.fromkeys(methods["method"])) == LORA_METHODS
    assert set(methods.groupby("method")["variant"].nunique()) == {9}
    assert set(methods["lora_r"]) == {8}
    selected = tomllib.loads(preset)["methods"]
    assert {m: method_config(m, {}).lr for m in selected} == {m: v["lr"] for m, v in selected.items()}
    board = read_leaderboard(BOARDS / "tofu-mini-lora.csv")  # the selection rerun, figure for figure
    assert (BOARDS / "tofu-mini-lora.md").read_text() == render(board, items=read_items(BOARDS / "tofu-mini-lora.csv"))
    for _, point in points[points["selected"]].iterrows():
        cells = sweep[(sweep["method"] == point["method"]) & (sweep["variant"] == point["variant"])]
        rows = board[board["method"] == point["method"]]
        checked = [c for c in board.columns if metrics.get(c).checked and c in sweep.columns]
        assert rows[checked].reset_index(drop=True).equals(cells[checked].reset_index(drop=True)), point["method"]


def test_lora_matched_table_sits_beside_full_updates_and_is_in_the_readme(figure_stats):
    """The matched-forgetting table of the full-update sweep and the LoRA sweep compared as one."""
    sweeps = [BOARDS / "tofu-mini-sweep.csv", BOARDS / "tofu-mini-lora-sweep.csv"]
    frame = compare.read_sweeps(sweeps)
    assert list(dict.fromkeys(frame.loc[frame["kind"] == "method", "method"])) == ALL_METHODS + LORA_METHODS
    items = compare.sweep_items(sweeps)
    table = compare.matched_table(compare.matched(frame, items=items), compare.role_columns(frame))
    assert table == (BOARDS / "tofu-mini-lora-matched.md").read_text()
    assert table in (ROOT / "README.md").read_text()
    width, _, inked, _ = figure_stats(BOARDS / "tofu-mini-lora-matched.png")
    assert width > 1000 and 0.01 < inked < 0.6


@pytest.mark.parametrize("name", ["tofu-mini", "lume-mini", "muse-mini"])
def test_the_paired_comparison_of_simu_and_so_graddiff_is_committed_and_in_the_readme(name):
    """`harness compare --pair simu,so-graddiff` on the committed sweep and its per-item values."""
    sweep = BOARDS / f"{name}-sweep.csv"
    frame, items = read_leaderboard(sweep), read_items(sweep)
    pair, settings = ("simu", "so-graddiff"), compare.Bootstrap()
    table = compare.pair_table(compare.paired(frame, pair, items=items), pair, settings, items is not None)
    assert table == (BOARDS / f"{name}-pair.md").read_text()
    assert table in (ROOT / "README.md").read_text() or table in (BOARDS / "README.md").read_text()


def test_the_committed_curves_span_every_cell_of_the_leaderboard(figure_stats):
    """leaderboards/tofu-mini.curves.csv: the curve points of the leaderboard's run (`eval.every=8`), each cell's
    from step 0 to its last step; the plot made from them is in the README."""
    import pandas as pd

    curves = pd.read_csv(BOARDS / "tofu-mini.curves.csv")
    board = read_leaderboard(BOARDS / "tofu-mini.csv").set_index(["method", "seed"])
    cells = board[board["kind"] == "method"]
    for (method, seed), points in curves.groupby(["method", "seed"]):
        steps = int(cells.loc[(method, seed), "steps"])
        assert list(points["step"]) == sorted({*range(0, steps + 1, 8), steps}), (method, seed)
        assert points["forget_em_contains"].iloc[0] == 1.0 and (points["lr"].iloc[1:] > 0).all()
    assert len(curves.groupby(["method", "seed"])) == len(cells)
    width, _, inked, _ = figure_stats(BOARDS / "tofu-mini-curves.png")
    assert width > 1500 and 0.01 < inked < 0.6
    assert "](leaderboards/tofu-mini-curves.png)" in (ROOT / "README.md").read_text()


WMDP_LEVELS = (0.75, 0.5, 0.3)  # forget-domain accuracy falls from 1 toward chance (0.25), not toward 0
METHODS_WMDP = ["rmu", "simu", "so-graddiff", "npo"]


def test_wmdp_mini_reference_is_the_sweep_s_selection_rendered_and_matched(figure_stats):
    """wmdp-mini's figures are lm-eval's accuracies, with no per-item file: the intervals are over seeds. Its
    leaderboard is the target then RMU, SIMU, SO-GradDiff and NPO at the selected rates, 3 seeds each; the
    rendered table, the matched-forgetting table (at forget accuracy 0.75, 0.5, 0.3) and the pair are in step
    with the CSVs and in the READMEs."""
    board = read_leaderboard(BOARDS / "wmdp-mini.csv")
    assert list(board["method"][:1]) == ["target"]  # WMDP needs no retain model
    assert list(dict.fromkeys(board["method"][1:])) == METHODS_WMDP
    assert all(sorted(board.loc[board["method"] == m, "seed"]) == [0, 1, 2] for m in METHODS_WMDP)
    table = (BOARDS / "wmdp-mini.md").read_text()
    assert table == render(board) and table in (ROOT / "README.md").read_text()
    sweep = read_leaderboard(BOARDS / "wmdp-mini-sweep.csv")
    matched = compare.matched_table(compare.matched(sweep, levels=WMDP_LEVELS), compare.role_columns(sweep))
    assert matched == (BOARDS / "wmdp-mini-matched.md").read_text()
    readme = (BOARDS / "README.md").read_text()
    assert matched in readme and "](wmdp-mini-matched.png)" in readme
    width, _, inked, _ = figure_stats(BOARDS / "wmdp-mini-matched.png")
    assert width > 1000 and 0.01 < inked < 0.6
    pair, settings = ("simu", "so-graddiff"), compare.Bootstrap()
    table = compare.pair_table(compare.paired(sweep, pair, levels=WMDP_LEVELS), pair, settings, False)
    assert table == (BOARDS / "wmdp-mini-pair.md").read_text()
    assert "<!-- wmdp-mini-command -->" in readme and "<!-- wmdp-mini-sweep-command -->" in readme
    assert "cp runs/noise-wmdp-mini/tolerances.json leaderboards/wmdp-mini.tolerances.json" in readme
    # the rates: the standard grid for the GradDiff and NPO families, two decades higher for RMU (its optimizer
    # moves three down_proj matrices toward an activation target, and changes nothing below 1e-3 here)
    for method in ("rmu", "simu", "so-graddiff", "npo"):
        rates = sweep.loc[sweep["method"] == method, f"{method}.lr"]
        assert (rates.min(), rates.max()) == ((1e-3, 1e-1) if method == "rmu" else (1e-5, 1e-3)), method


def test_wmdp_mini_tolerances_are_measured_over_its_kernel_sets():
    board = read_leaderboard(BOARDS / "wmdp-mini.csv")
    tolerances = json.loads((BOARDS / "wmdp-mini.tolerances.json").read_text())
    assert tolerances["environments"] == ["default", "avx2"]  # the CPU it was measured on had no AVX-512
    for column, entry in tolerances["metrics"].items():
        assert column in board.columns
        measured = max(3 * entry["sigma"], entry["spread"], entry["one_item"])
        assert entry["tolerance"] >= measured or entry["tolerance"] == metrics.get(column).tolerance, column
    environments = json.loads((BOARDS / "wmdp-mini.environment.json").read_text())
    assert set(board["environment"]) <= set(environments)
