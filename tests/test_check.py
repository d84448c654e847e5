"""`harness check` and `harness noise`'s arithmetic on synthetic leaderboards and on the committed references:
means over shared seeds, absent seeds and methods noted, measured tolerances, forget quality in log10, the
environment diff, and the faults the committed smoke reference must catch."""

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest
from scipy.stats import ks_2samp

from harness.cli import _without_flags, main
from harness.metrics import metrics
from harness.noise import (
    derive_tolerances,
    leave_one_out,
    one_item,
    other_machine_runs,
    same_command,
    stopped_unlearning,
    summarise,
)
from harness.regression import check, read_tolerances
from harness.tables import read_leaderboard

LEADERBOARDS = Path(__file__).resolve().parents[1] / "leaderboards"


def test_check_compares_seed_means_and_fails_only_the_worse_direction(board, tmp_path, capsys):
    ref = tmp_path / "leaderboard.csv"
    assert main(["check", str(ref), "--against", str(ref)]) == 0
    assert "no regressions: 6 cells x 4 metrics" in capsys.readouterr().out
    worse = board.copy()
    worse.loc[2, "forget_em_contains"] = 0.40  # a's mean 0.3 -> 0.4 on a lower-is-better metric
    worse.loc[3, "retain_em_contains"] = 0.56  # a's mean 0.7 -> 0.68: within the default 0.05
    worse.loc[4, "mia_loss_auc"] = 0.60  # 0.4 -> 0.6 is as far from chance: no regression
    worse.loc[5, "wall_seconds"] = 300.0  # timings are not checked
    worse.to_csv(tmp_path / "run.csv", index=False)
    assert main(["check", str(tmp_path / "run.csv"), "--against", str(ref)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [
        "note: no leaderboard.tolerances.json beside the reference; default tolerances",
        f"note: no environment record ({tmp_path / 'run.environment.json'}); cannot tell whether the "
        "environments differ",
        "a (seed 0, 1): forget_em_contains 0.3 -> 0.4 (↓ is better; tolerance 0.05)",
    ]
    assert (
        main(["check", str(tmp_path / "run.csv"), "--against", str(ref), "--tolerance", "forget_em_contains=0.2"]) == 0
    )


def test_absent_seeds_and_methods_are_noted_not_failed(board):
    run = board[(board["method"] != "b") & (board["seed"].fillna(0) == 0)]
    found = check(run, board)
    assert found.regressions == [] and found.cells == 3
    assert found.notes == [
        "a: seed 1 of the reference absent from the run; checked on seed 0",
        "b: absent from the run, not checked",
    ]
    worse = run.copy()
    worse.loc[2, "forget_em_contains"] = 0.3  # seed 0 alone: 0.2 -> 0.3
    assert check(worse, board).regressions == [
        "a (seed 0): forget_em_contains 0.2 -> 0.3 (↓ is better; tolerance 0.05)"
    ]
    with pytest.raises(ValueError, match="shares no method and seed"):
        check(board[board["method"] == "nobody"], board)
    with pytest.raises(ValueError, match="--tolerance nope: not a column"):
        check(board, board, overrides={"nope": 0.1})


def test_a_tolerance_file_beside_the_reference_sets_the_tolerances(board, tmp_path, capsys):
    worse = board.copy()
    worse.loc[[2, 3], "forget_em_contains"] += 0.15
    worse.to_csv(tmp_path / "run.csv", index=False)
    ref = tmp_path / "ref.csv"
    board.to_csv(ref, index=False)
    assert main(["check", str(tmp_path / "run.csv"), "--against", str(ref)]) == 1
    (tmp_path / "ref.tolerances.json").write_text(json.dumps({"metrics": {"forget_em_contains": {"tolerance": 0.2}}}))
    assert read_tolerances(ref) == {"forget_em_contains": 0.2}
    capsys.readouterr()
    assert main(["check", str(tmp_path / "run.csv"), "--against", str(ref)]) == 0
    (tmp_path / "ref.tolerances.json").write_text("{")
    assert main(["check", str(tmp_path / "run.csv"), "--against", str(ref)]) == 2
    assert "ref.tolerances.json: expected a tolerance file written by `harness noise`" in capsys.readouterr().err


def test_a_column_no_metric_declares_is_noted_not_dropped_silently(board, tmp_path, capsys):
    # utility_score: a figure nobody declared (as a renamed column would be); simu_critical_neurons: a declared
    # diagnostic, unchecked on purpose; a swept hyperparameter and the identity columns are no figures
    reference = board.assign(utility_score=0.5, simu_critical_neurons=3, **{"simu.t": 0.1})
    found = check(reference, reference)
    assert found.notes == ["utility_score: declared by no metric, so not checked"] and found.metrics == 4
    assert found.regressions == []
    reference.to_csv(tmp_path / "ref.csv", index=False)
    assert main(["check", str(tmp_path / "ref.csv"), "--against", str(tmp_path / "ref.csv")]) == 0
    assert "note: utility_score: declared by no metric, so not checked" in capsys.readouterr().out.splitlines()


def test_a_checked_column_the_run_lacks_is_noted(board):
    reference = board.assign(simu_critical_neurons=3)
    run = reference.drop(columns=["retain_em_contains", "simu_critical_neurons", "wall_seconds"])
    found = check(run, reference)  # a diagnostic or a timing the run lacks is no loss to the check
    assert found.notes == ["retain_em_contains: in the reference, missing from the run"]
    assert found.metrics == 3 and found.regressions == []
    assert check(reference, run).notes == []  # a column the reference lacks is not the run's to answer for


def test_the_committed_references_have_no_undeclared_or_unchecked_column():
    for path in sorted(LEADERBOARDS.glob("*.csv")):
        if "." in path.stem:
            continue  # a table beside a leaderboard (NAME.curves.csv, muse-mini.scal.csv), not a leaderboard
        reference = read_leaderboard(path)
        assert check(reference, reference, read_tolerances(path)).notes == [], path.name


@pytest.mark.parametrize("now, fails", [(0.0025, True), (0.02, False), (0.5, False)])
def test_forget_quality_is_compared_in_decades(now, fails):
    ref = pd.DataFrame({"method": ["a"], "seed": pd.array([0], "Int64"), "forget_quality": [0.087]})
    run = ref.assign(forget_quality=[now])
    lines = check(run, ref).regressions  # default: 1 decade
    assert bool(lines) == fails
    if fails:
        assert lines == ["a (seed 0): forget_quality 0.087 -> 0.0025 (↑ is better; tolerance 1 in log10)"]


def test_the_environment_difference_is_printed(board, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    board.to_csv(run / "leaderboard.csv", index=False)
    board.to_csv(tmp_path / "ref.csv", index=False)
    env = {"torch": "2.13.0", "aten_cpu_capability": "AVX2", "torch_threads": 2}
    (tmp_path / "ref.environment.json").write_text(json.dumps({"h1": env}))
    # h3: a resume recorded it but made no row there, so it is not the run's environment
    (run / "environment.json").write_text(
        json.dumps({"h2": env | {"aten_cpu_capability": "DEFAULT"}, "h3": env | {"torch": "2.14.0"}})
    )
    board.assign(environment="h2").to_csv(run / "leaderboard.csv", index=False)
    assert main(["check", str(run), "--against", str(tmp_path / "ref.csv")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1:3] == [
        "note: the run's environment differs from the reference's (reference -> run):",
        "  aten_cpu_capability: AVX2 -> DEFAULT",
    ]


def _boards(board):
    """The synthetic board under three 'kernel sets': avx2 as is, the others nudged."""
    default, avx512 = board.copy(), board.copy()
    default["forget_em_contains"] += [0.0, 0.0, 0.1, 0.0, 0.1, -0.1]
    avx512["forget_em_contains"] += [0.0, 0.0, 0.0, 0.2, 0.0, 0.0]
    return {"default": default, "avx2": board, "avx512": avx512}


def test_tolerances_are_three_sigma_the_spread_or_one_item(board):
    counts = {"forget": 8, "retain": 20}
    derived = derive_tolerances(_boards(board), counts)
    forget = derived["metrics"]["forget_em_contains"]
    # groups (method, seed) x 3 kernel sets; pooled variance over 6 groups x 2 degrees of freedom
    groups = [[1, 1, 1], [0, 0, 0], [0.2, 0.2, 0.4], [0.5, 0.4, 0.4], [0.2, 0.1, 0.1], [0, 0.1, 0.1]]
    squares = sum((v - sum(g) / 3) ** 2 for g in groups for v in g)
    assert forget["sigma"] == pytest.approx(math.sqrt(squares / 12))
    assert forget["spread"] == pytest.approx(0.2)
    assert forget["one_item"] == 1 / 8
    assert forget["tolerance"] == pytest.approx(max(3 * forget["sigma"], 0.2, 1 / 8))
    retain = derived["metrics"]["retain_em_contains"]  # no noise at all: one item of the retain split
    assert retain["sigma"] == pytest.approx(0, abs=1e-12) and retain["tolerance"] == 1 / 20
    assert derived["environments"] == ["default", "avx2", "avx512"] and derived["items"] == counts
    unmoved = derive_tolerances(_boards(board), {"forget": 8})["metrics"]["retain_em_contains"]
    # no noise and no item count (as for an lm-eval column): its declared tolerance, not 0
    assert unmoved["one_item"] == 0 and unmoved["tolerance"] == metrics.get("retain_em_contains").tolerance > 0


def test_leave_one_out_counts_false_alarms_on_the_held_out_kernel_set(board):
    checks = leave_one_out(_boards(board), {"forget": 8, "retain": 20}, "avx2")
    assert set(checks) == {"default", "avx512"}
    # without avx512 the tolerance is 3 sigma of the default-vs-avx2 noise; avx512's +0.2 on a seed-1 cell
    # moves a's mean by 0.1, inside it
    assert checks["avx512"].regressions == []
    assert all(c.cells == 6 for c in checks.values())


def _noise_folder(folder, boards):
    """A `harness noise` OUT as its runs leave it: OUT/<kernel set>/leaderboard.csv and the target's items."""
    for env, frame in boards.items():
        (folder / env / "results").mkdir(parents=True)
        frame.assign(config_hash=frame["method"] + "-hash").to_csv(folder / env / "leaderboard.csv", index=False)
        items = [{"split": "forget"}] * 8 + [{"split": "retain"}] * 20
        (folder / env / "results" / "target.items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    return folder


def test_another_machines_runs_join_the_tolerances(board, tmp_path):
    """--with: another CPU's runs of the same command are more environments; a cell only that machine moves
    widens the tolerance, which this machine's kernel sets alone would not."""
    boards = _boards(board)
    here = _noise_folder(tmp_path / "here", {"default": boards["default"], "avx2": boards["avx2"]})
    intel = boards["avx2"].copy()
    intel.loc[2, "forget_em_contains"] += 0.6
    there = _noise_folder(tmp_path / "xeon", {"avx512": intel})
    alone = json.loads(summarise(here, ["default", "avx2"], "avx2").read_text())
    joined = json.loads(summarise(here, ["default", "avx2"], "avx2", other_machine_runs([there])).read_text())
    assert joined["environments"] == ["default", "avx2", "xeon/avx512"]
    assert joined["metrics"]["forget_em_contains"]["spread"] == pytest.approx(0.6)
    assert (
        alone["metrics"]["forget_em_contains"]["tolerance"]
        < 0.6
        <= joined["metrics"]["forget_em_contains"]["tolerance"]
    )
    assert set(joined["false_alarms"]) - {"rule"} == {"default", "xeon/avx512"}
    assert "xeon/avx512" in pd.read_csv(here / "noise.csv").columns


def test_another_machines_folder_is_checked(board, tmp_path):
    with pytest.raises(FileNotFoundError, match="--with .*empty: expected another machine's `harness noise` folder"):
        other_machine_runs([tmp_path / "empty"])
    one = _noise_folder(tmp_path / "a" / "xeon", {"avx2": board})
    two = _noise_folder(tmp_path / "b" / "xeon", {"avx2": board})
    with pytest.raises(ValueError, match="a folder named xeon is already given"):
        other_machine_runs([one, two])
    other = board.assign(config_hash=board["method"] + "-hash")
    changed = other.copy()
    changed.loc[2, "config_hash"] = "another-lr"
    with pytest.raises(ValueError, match=r"xeon/avx2: not the same command as avx2 \(a, seed 0 differs"):
        same_command({"avx2": other, "xeon/avx2": changed})


def test_one_item_floors():
    boards = [pd.DataFrame({"method": ["retain", "x"], "mia_loss_auc": [0.6, 0.9], "forget_quality": [1.0, 1e-3]})]
    counts = {"forget": 8, "retain": 16, "real_authors": 6, "world_facts": 10}
    assert one_item("forget_rougeL_recall", counts, boards) == 1 / 8
    assert one_item("real_authors_em_contains", counts, boards) == 1 / 6
    assert one_item("model_utility", counts, boards) == 1 / 6
    assert one_item("mia_loss_auc", counts, boards) == 1 / 8
    assert one_item("privleak_loss", counts, boards) == pytest.approx(100 / (8 * 0.4))
    # forget quality: the KS p-value of 8 against 8 items moves in steps of D = 1/8; the floor is the
    # largest log10 step next to a value the boards hold (1.0 and 1e-3)
    steps = [math.log10(ks_2samp(range(8), [x + k for x in range(8)]).pvalue) for k in range(9)]

    def step_at(value):
        k = min(range(9), key=lambda i: abs(steps[i] - math.log10(value)))
        return max(abs(steps[j] - steps[k]) for j in (k - 1, k + 1) if 0 <= j <= 8)

    assert steps[0] == 0 and steps == sorted(steps, reverse=True)
    assert one_item("forget_quality", counts, boards) == pytest.approx(max(step_at(1.0), step_at(1e-3)))


def test_noise_forwards_every_run_flag_but_its_own():
    argv = [
        "noise",
        "--preset",
        "tofu-mini-smoke",
        "--capabilities=default,avx2",
        "--jobs",
        "2",
        "--out",
        "x",
        "--seeds",
        "0,1,2",
        "--cache-dir",
        "c",
        "--with",
        "runs/noise-xeon",
        "--set",
        "fo-graddiff.lr=1e-3",
    ]
    flags = ("--capabilities", "--reference-capability", "--jobs", "--with", "--out", "--cache-dir")
    assert _without_flags(argv, flags) == [
        "--preset",
        "tofu-mini-smoke",
        "--seeds",
        "0,1,2",
        "--set",
        "fo-graddiff.lr=1e-3",
    ]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--capabilities", "default,avx3"], "--capabilities default,avx3: expected two or more of"),
        (["--capabilities", "avx2"], "--capabilities avx2: expected two or more of"),
        (["--capabilities", "default,avx2", "--reference-capability", "avx512"], "--reference-capability avx512: not"),
        (["--capabilities", "default,avx2", "--jobs", "0"], "--jobs 0: expected 1 or more"),
        (["--capabilities", "default,avx2", "--with", "nowhere"], "--with nowhere: expected another machine's"),
        (["--capabilities", "default,avx2", "--methods", "nope"], "unknown method 'nope'"),
        (
            ["--capabilities", "default,avx2", "--set", "fo-graddiff.nope=1"],
            "--set fo-graddiff.nope: unknown hyperparameter",
        ),
    ],
)
def test_noise_flags_are_checked_before_anything_runs(tmp_path, capsys, flags, message):
    assert main(["noise", *flags, "--out", str(tmp_path / "noise")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "noise").exists()


# --- the committed smoke reference catches real faults ---------------------------------------------------


def _smoke():
    path = LEADERBOARDS / "tofu-mini-smoke.csv"
    return read_leaderboard(path), read_tolerances(path)


def test_committed_smoke_reference_has_measured_tolerances_and_its_environment():
    reference, tolerances = _smoke()
    assert tolerances and set(tolerances) <= set(reference.columns)
    assert check(reference, reference, tolerances).regressions == []
    environments = json.loads((LEADERBOARDS / "tofu-mini-smoke.environment.json").read_text())
    assert set(reference["environment"]) == set(environments)


@pytest.mark.parametrize("method", ["fo-graddiff", "so-graddiff", "simu"])
def test_a_method_that_stopped_unlearning_fails_the_check(method):
    """Fault: the method's rows carry the target's figures, as if it changed nothing."""
    reference, tolerances = _smoke()
    run = stopped_unlearning(reference, method)
    assert (run.loc[run["method"] == method, "forget_em_contains"] == 1.0).all()
    lines = check(run, reference, tolerances).regressions
    assert lines and all(line.startswith(f"{method} (seed 0, 1, 2): ") for line in lines)
    assert any(": forget_em_contains " in line for line in lines), lines


@pytest.mark.slow
def test_noise_runs_each_kernel_set_and_writes_tolerances(tmp_path):
    """`harness noise` end to end on the micro world: one run per kernel set, each recording the kernels it
    ran, and the tolerance file `harness check` reads."""
    from harness.noise import native_capabilities

    if "avx2" not in native_capabilities():
        pytest.skip("needs a CPU with AVX2")
    out = tmp_path / "noise"
    assert (
        main(
            [
                "noise",
                "--capabilities",
                "default,avx2",
                "--preset",
                "tofu-mini-smoke",
                "--methods",
                "fo-graddiff",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    for capability in ("default", "avx2"):
        [env] = json.loads((out / capability / "environment.json").read_text()).values()
        assert env["aten_cpu_capability"] == capability.upper() and env["OMP_NUM_THREADS"] == "1"
    derived = json.loads((out / "tolerances.json").read_text())
    assert derived["environments"] == ["default", "avx2"] and "forget_em_contains" in derived["metrics"]
    assert read_tolerances(out)["forget_em_contains"] >= 1 / derived["items"]["forget"]


def test_the_environment_names_mkls_code_path(tmp_path):
    """oneMKL's code path (by CPU vendor) is recorded, and preloading perf/mkl_intel_path.c, with which an AMD
    machine measured the noise an Intel CPU adds (leaderboards/README.md), turns it to Intel's."""
    import shutil
    import subprocess
    import sys

    code = "from harness.environment import environment; print(environment()['mkl_kernels'])"
    ask = lambda env: subprocess.run(  # noqa: E731
        [sys.executable, "-c", code], env=os.environ | env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert ask({}) in ("intel", "non-intel")
    if shutil.which("gcc") is None:
        pytest.skip("no C compiler to build the preload")
    shim = tmp_path / "mkl_intel_path.so"
    source = Path(__file__).resolve().parents[1] / "perf" / "mkl_intel_path.c"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(shim), str(source)], check=True)
    assert ask({"LD_PRELOAD": str(shim)}) == "intel"
