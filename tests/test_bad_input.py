"""A hostile user's inputs, one table per class (issue 25): each is answered in one line naming the input, with
the exit code that says what happened (2 bad input, 74 a fault of the machine), and leaves nothing under --out;
a damaged file of a run is named and redone on resume; a damaged CSV is refused by `table` and `check`. No test
here trains a model: the runs use the session's micro models (`micro_cache`)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_lume import write_official
from test_model_sources import (
    _empty,
    _missing,
    _remote_code,
    _truncated,
    _unknown_model_type,
    copy,
    models,  # noqa: F401 -- the tiny saved models, a fixture
)
from test_tofu_data import write_official_tofu

import harness.files
import harness.results
from harness.cli import EXIT_ENVIRONMENT, main

SMOKE = ["--preset", "tofu-mini-smoke"]


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# --- accepted nonsense and late checks: refused before anything loads --------------------------------------

NONSENSE = [
    (["--methods", ""], "--methods '': expected one or more names"),
    (["--methods", "fo-graddiff,fo-graddiff"], "--methods fo-graddiff,fo-graddiff: fo-graddiff is given twice"),
    (["--seeds", "-1"], "--seeds -1: expected one or more distinct integers >= 0"),
    (["--seeds", ""], "--seeds '': expected one or more distinct integers >= 0"),
    (["--seeds", "0,0"], "--seeds 0,0: expected one or more distinct integers >= 0"),
    (["--set", "world.n_perturbed=-1"], "--set world.n_perturbed=-1: expected an integer >= 1"),
    (["--set", "world.n_perturbed=0"], "--set world.n_perturbed=0: expected an integer >= 1"),
    (["--set", "world.n_perturbed=30"], "world.n_countries=6: expected more than world.n_perturbed=30"),
    (["--set", "world.seed=-3"], "--set world.seed=-3: expected an integer >= 0"),
    (["--benchmark", "lume-mini", "--set", "lume.seed=-3"], "--set lume.seed=-3: expected an integer >= 0"),
    (
        ["--set", "lume.seed=3"],
        "--set lume.seed: unknown key; expected forget_split, eval.*, compute.*, save.*, "
        "world.*, train.* (the sections of --benchmark tofu-mini)",
    ),
    (["--set", "train.seed=-1"], "--set train.seed=-1: expected an integer >= 0"),
    (["--retain-eval", "/nowhere/TOFU_EVAL.json"], "--retain-eval /nowhere/TOFU_EVAL.json: no such file"),
    (["--lm-eval-tasks", "no_such_task"], "--lm-eval-tasks no_such_task: not an lm-eval task of lm-eval"),
    (["--lm-eval-tasks", "arc_easy,no_such_task"], "--lm-eval-tasks no_such_task: not an lm-eval task"),
    (["--set", "simu.mask=" + "x" * 400], "--set simu.mask=" + "x" * 80 + "... (400 characters): expected one of"),
]


@pytest.mark.parametrize("args, message", NONSENSE, ids=[" ".join(a)[:40] for a, _ in NONSENSE])
def test_nonsense_is_refused_in_one_line_and_nothing_is_written(tmp_path, task_index_cache, capsys, args, message):
    out, cache = tmp_path / "run", task_index_cache
    methods = [] if "--methods" in args else ["--methods", "simu" if "simu." in " ".join(args) else "fo-graddiff"]
    assert main(["run", *SMOKE, *methods, *args, "--out", str(out), "--cache-dir", str(cache)]) == 2
    assert message in one_line(capsys)
    assert not out.exists() and not list(cache.glob("embedded-*"))  # no model trained, no run folder


def test_lm_evals_task_index_is_built_once_and_kept(task_index_cache, monkeypatch):
    """Task names the scan of lm-eval's YAMLs finds pass at once; others are looked up in lm-eval's full index,
    kept in the harness cache: a name defined only through an include passes, an unknown one does not, and
    neither builds the index again."""
    from evaluators.lm_eval_bridge import _scanned_names, check_tasks

    included = "acp_bool_cot_2shot"  # a tag listed in an included file: not on any `task:`, `group:` or `tag:` line
    assert included not in _scanned_names() and "arc_easy" in _scanned_names()
    check_tasks([included], [], task_index_cache)
    assert len(list(task_index_cache.glob("lm_eval-*-tasks.json"))) == 1

    def no_index(*args, **kwargs):
        raise AssertionError("lm-eval's index built again")

    monkeypatch.setattr("lm_eval.tasks.TaskManager", no_index)
    check_tasks(["arc_easy", included], [], task_index_cache)
    with pytest.raises(ValueError, match="--lm-eval-tasks no_such_task: not an lm-eval task"):
        check_tasks(["no_such_task"], [], task_index_cache)


def test_method_settings_are_checked_last_and_named_as_given(tmp_path, capsys):
    """The command line leaves the methods' hyperparameters (their check imports torch) to the pre-flight's end:
    a cheap error comes first, and each is still worded as it was given (a preset names its file)."""
    preset, out = tmp_path / "mine.toml", tmp_path / "run"
    preset.write_text('description = "mine"\n[methods.simu]\nt = 5\n')
    assert main(["run", "--preset", str(preset), "--methods", "simu", "--out", str(out)]) == 2
    assert f"{preset}: simu.t=5.0: expected a number in [0, 1]" in one_line(capsys)
    assert main(["sweep", "--grid", "simu.t=0.1,7", "--out", str(out)]) == 2
    assert "--grid simu.t=7.0: expected a number in [0, 1]" in one_line(capsys)
    assert main(["run", "--methods", "simu", "--set", "simu.t=9", "--seeds", "-1", "--out", str(out)]) == 2
    assert "--seeds -1:" in one_line(capsys)
    assert main(["run", "--methods", "simu", "--set", "simu.t=9", "--out", str(out), "--dry-run"]) == 2
    assert "--set simu.t=9.0: expected a number in [0, 1]" in one_line(capsys) and not out.exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--bogus"], "harness: error: unrecognized arguments: --bogus (see harness --help)"),
        (["run", "--seeds", "x"], "harness run: error: argument --seeds: 'x': expected comma-separated int values"),
        (["frob"], "harness: error: argument COMMAND: invalid choice: 'frob'"),
    ],
)
def test_a_usage_error_is_one_line_too(capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and one_line(capsys).startswith(message)


def test_an_empty_out_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", *SMOKE, "--out", ""]) == 2
    assert "--out '': expected a folder, not an empty name" in one_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_a_bad_input_is_answered_without_importing_torch(tmp_path):
    """What makes it fast (perf/bad_input.py measures how fast): the checks run before torch is imported."""
    code = (
        "import sys; from harness.cli import main; "
        f"rc = main(['run', '--seeds', '-1', '--out', {str(tmp_path / 'run')!r}]); "
        "print(rc, 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["2", "False", "False"], done.stderr
    data = write_official_tofu(tmp_path / "tofu")
    (data / "forget01.json").write_bytes(b"\xff")
    code = code.replace(
        "'--seeds', '-1'",
        f"'--benchmark', 'tofu', '--data', {str(data)!r}, '--model', 'm', '--set', 'forget_split=forget01'",
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["2", "False", "False"], done.stderr


# --- paths: data files, --retain-eval, model folders --------------------------------------------------------


def _tofu(tmp):
    return write_official_tofu(tmp / "tofu")


def _bad_utf8_tofu(tmp):
    data = _tofu(tmp)
    (data / "forget01.json").write_bytes(b'{"question": "\xff\xfe", "answer": "x"}\n')
    return data, f"{data / 'forget01.json'}: not UTF-8 text (byte 14: invalid start byte)"


def _not_json_tofu(tmp):
    data = _tofu(tmp)
    (data / "retain99.json").write_text('{"question": "q", "answer"')
    return data, f"{data / 'retain99.json'}: not JSON or JSON lines"


def _bad_parquet_tofu(tmp):
    data = _tofu(tmp)
    parquet = next(data.rglob("*.parquet"))
    parquet.write_bytes(b"PAR1 not really")
    return data, f"{parquet}: not a readable parquet file ("


DATA = [_bad_utf8_tofu, _not_json_tofu, _bad_parquet_tofu]


@pytest.mark.parametrize("make", DATA, ids=[m.__name__.strip("_") for m in DATA])
def test_a_bad_tofu_file_is_named(tmp_path, capsys, models, make):  # noqa: F811
    data, message = make(tmp_path)
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "--benchmark",
                "tofu",
                "--data",
                str(data),
                "--model",
                str(models / "llama"),
                "--set",
                "forget_split=forget01",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert message in one_line(capsys) and not out.exists()


def _lume_row_edit(tmp, edit):
    data = write_official(tmp / "lume")
    rows = [json.loads(line) for line in (data / "forget.jsonl").read_text().splitlines()]
    edit(rows[0])
    (data / "forget.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


def test_a_bad_lume_file_is_named_and_a_long_value_cut(tmp_path, capsys, models):  # noqa: F811
    target, out = str(models / "llama"), tmp_path / "run"
    data = _lume_row_edit(tmp_path / "a", lambda row: row.update(id="x" * 5_000_000))
    assert main(["run", "--benchmark", "lume", "--data", str(data), "--model", target, "--out", str(out)]) == 2
    line = one_line(capsys)
    assert line.startswith(f"harness: error: {data / 'forget.jsonl'}: row 0: field 'id' is 'xxx") and len(line) < 400
    assert "... (5000000 characters)" in line and not out.exists()
    data = write_official(tmp_path / "b" / "lume")
    (data / "forget.jsonl").write_bytes((data / "forget.jsonl").read_bytes()[:30] + b"\xff\n")
    assert main(["run", "--benchmark", "lume", "--data", str(data), "--model", target, "--out", str(out)]) == 2
    assert f"{data / 'forget.jsonl'}: not UTF-8 text" in one_line(capsys) and not out.exists()


RETAIN_EVAL = [
    (None, "no such file"),
    ("", "not JSON ("),
    ('{"forget_truth_ratios": [0.5', "not JSON ("),
    ("[]", "expected fields 'forget_truth_ratios' and 'mia_auc' (ours) or 'forget_truth_ratio'"),
    ('{"forget_truth_ratio": {"value_by_index": {"0": {}}}}', "expected fields 'forget_truth_ratios'"),
]


@pytest.mark.parametrize("text, message", RETAIN_EVAL, ids=["missing", "empty", "cut", "a list", "no scores"])
def test_a_bad_retain_eval_is_named_before_any_model_loads(tmp_path, capsys, models, text, message):  # noqa: F811
    path, out = tmp_path / "TOFU_EVAL.json", tmp_path / "run"
    if text is not None:
        path.write_text(text)
    assert (
        main(
            [
                "run",
                "--benchmark",
                "tofu",
                "--data",
                str(_tofu(tmp_path)),
                "--model",
                str(models / "llama"),
                "--set",
                "forget_split=forget01",
                "--retain-eval",
                str(path),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert f"--retain-eval {path}: {message}" in one_line(capsys) and not out.exists()


# the model check's own cases (tests/test_model_sources.py), one of each kind, now through the command line
MODELS = [_missing, _empty, _truncated, _remote_code, _unknown_model_type]


@pytest.mark.parametrize("make", MODELS, ids=[m.__name__.strip("_") for m in MODELS])
@pytest.mark.parametrize("command", ["run", "eval"])
def test_a_bad_model_folder_is_named_and_nothing_is_written(tmp_path, capfd, models, make, command):  # noqa: F811
    folder, words = make(models, tmp_path)
    out = tmp_path / "run"
    flags = (
        ["--model", str(models / "llama"), "--retain-model", str(folder)]
        if command == "run"
        else ["--model", str(folder)]
    )
    capfd.readouterr()
    assert (
        main(
            [
                command,
                "--benchmark",
                "tofu",
                "--data",
                str(_tofu(tmp_path)),
                *flags,
                "--set",
                "forget_split=forget01",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    err = capfd.readouterr().err.strip().splitlines()  # capfd: a library's own warning line would show too
    flag = "--retain-model" if command == "run" else "--model"
    assert len(err) == 1 and err[0].startswith(f"harness: error: {flag} {folder}: "), err
    for expected in words:
        assert expected in err[0], err
    assert not out.exists()


def test_an_unreadable_file_in_a_model_folder_is_bad_input(tmp_path, capsys, models, monkeypatch):  # noqa: F811
    """Found before the run (exit 2), not when the load fails mid-run (which would read as the machine's fault)."""
    import harness.model_check

    folder = copy(models, "llama", tmp_path / "m")
    readable = harness.model_check.os.access
    monkeypatch.setattr(
        harness.model_check.os,
        "access",
        lambda path, mode: Path(path).name != "tokenizer.json" and readable(path, mode),
    )
    out = tmp_path / "run"
    assert main(["eval", *SMOKE, "--model", str(folder), "--out", str(out)]) == 2
    assert f"--model {folder}: tokenizer.json cannot be read (permission denied" in one_line(capsys)
    assert not out.exists()


# --- a run's own files, damaged between runs: named, and their cell or reference redone --------------------


def copy_run(micro_run, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(micro_run / "run", out, ignore=shutil.ignore_patterns("models"))
    return out


def rerun(out: Path, micro_cache: Path, in_process: bool = True) -> tuple[int, str]:
    """`micro_run`'s command again on `out`; in a process of its own under `micro_run`'s scalar kernels when
    the redone cells' figures are to be compared with its (other kernels round differently)."""
    argv = [
        "run",
        "--methods",
        "fo-graddiff,so-graddiff,simu",
        "--seeds",
        "0,1,2",
        "--out",
        str(out),
        "--cache-dir",
        str(micro_cache),
        *SMOKE,
    ]
    if in_process:
        return main(argv), ""
    done = subprocess.run(
        [sys.executable, "-m", "harness", *argv],
        capture_output=True,
        text=True,
        env=os.environ | {"ATEN_CPU_CAPABILITY": "default"},
    )
    return done.returncode, done.stderr


def figures(out: Path) -> pd.DataFrame:
    board = pd.read_csv(out / "leaderboard.csv")
    return board.drop(columns=[c for c in board.columns if c.endswith(("_seconds", "_gib"))])


def _row_not_an_object(results):
    (results / "so-graddiff-seed1.json").write_text("[]\n")
    return "so-graddiff-seed1.json: not a result row (expected a JSON object with a 'method', found list)"


def _items_cut_short(results):
    items = results / "fo-graddiff-seed2.items.jsonl"
    items.write_text(items.read_text()[:-30])
    return "fo-graddiff-seed2.items.jsonl: missing or cut short; running its cell again"


def _items_missing(results):
    (results / "simu-seed0.items.jsonl").unlink()
    return "simu-seed0.items.jsonl: missing or cut short; running its cell again"


def _reference_cut_short(results):
    reference = results.parent / "reference" / "retain.json"
    reference.write_text(reference.read_text()[:50])
    return "the saved retain reference " + str(reference) + ": not JSON ("


DAMAGE = [_row_not_an_object, _items_cut_short, _items_missing, _reference_cut_short]


def test_damaged_files_are_named_and_redone_on_resume(tmp_path, micro_run, micro_cache):
    """Every kind of damage at once, each to another cell (one resume, not one per kind, keeps it fast)."""
    out = copy_run(micro_run, tmp_path)
    messages = [damage(out / "results") for damage in DAMAGE]
    code, err = rerun(out, micro_cache, in_process=False)
    assert code == 0, err
    for message in messages:
        assert message in err, (message, err)
    pd.testing.assert_frame_equal(figures(out), figures(micro_run / "run"), check_exact=False, atol=1e-6)


def test_the_retain_reference_is_written_atomically(tmp_path, monkeypatch):
    from evaluators.reference import RetainReference

    path = tmp_path / "reference" / "retain.json"
    RetainReference([0.5], {"loss": 0.5}, "x").save(path)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(harness.files.os, "replace", full)
    with pytest.raises(OSError) as info:
        RetainReference([0.7], {"loss": 0.6}, "y").save(path)
    assert info.value.filename == str(path) and info.value.errno == errno.ENOSPC
    assert RetainReference.load(path).forget_truth_ratios == [0.5] and list(path.parent.iterdir()) == [path]


def test_a_method_artifact_is_written_atomically_and_a_full_disk_names_it(tmp_path, monkeypatch):
    import torch

    folder = tmp_path / "artifacts" / "simu-seed0"
    harness.results.write_artifacts(folder, {"masks.pt": {"w": torch.ones(3)}, "masks.json": {"w": [1, 1, 1]}})
    assert torch.equal(torch.load(folder / "masks.pt")["w"], torch.ones(3))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(harness.files.os, "replace", full)
    with pytest.raises(OSError) as info:
        harness.results.write_artifacts(folder, {"masks.pt": {"w": torch.zeros(3)}})
    assert (info.value.errno, info.value.filename) == (errno.ENOSPC, str(folder / "masks.pt"))
    assert sorted(p.name for p in folder.iterdir()) == ["masks.json", "masks.pt"]
    assert torch.equal(torch.load(folder / "masks.pt")["w"], torch.ones(3))  # the old file, whole


# --- a full disk: the path named, exit 74, nothing partial, and the run resumes --------------------------------


def test_a_full_disk_names_the_path_exits_74_and_the_run_resumes(tmp_path, micro_run, micro_cache, capsys, monkeypatch):
    out = copy_run(micro_run, tmp_path)
    (out / "results" / "simu-seed1.json").unlink()
    real_fdopen = harness.files.os.fdopen

    class FullDisk:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(harness.files.os, "fdopen", lambda fd, *a, **k: FullDisk(real_fdopen(fd, *a, **k)))
    capsys.readouterr()
    assert rerun(out, micro_cache)[0] == EXIT_ENVIRONMENT == 74
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"harness: error: {out}/") and ": No space left on device (a fault of the machine" in line
    assert Path(line.split()[2].rstrip(":")).parent.is_dir() and "run the same command again to resume" in line
    assert not list(out.rglob("*.tmp")) and not (out / "results" / "simu-seed1.json").exists()
    monkeypatch.setattr(harness.files.os, "fdopen", real_fdopen)
    code, err = rerun(out, micro_cache, in_process=False)
    assert code == 0, err
    pd.testing.assert_frame_equal(figures(out), figures(micro_run / "run"), check_exact=False, atol=1e-6)


def test_which_os_errors_are_the_machines():
    """A full or failing disk is never the input's fault; a refused access is the input's while its paths are
    checked (an unreadable --data file) and the machine's once they have passed (access lost mid-run)."""
    from harness.cli import environment_fault

    for code in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS):
        assert environment_fault(OSError(code, "x", "f"), checked=False)
    for code in (errno.EACCES, errno.EPERM):
        assert not environment_fault(OSError(code, "x", "f"), checked=False)
        assert environment_fault(OSError(code, "x", "f"), checked=True)
    assert not environment_fault(FileNotFoundError(errno.ENOENT, "x", "f"), checked=True)
    assert not environment_fault(OSError("--model m: no such folder"), checked=True)  # our own lines: exit 2


# --- leaderboard CSVs: table and check refuse a damaged one ------------------------------------------------


def _cut_mid_line(csv: Path):
    text = csv.read_text()
    csv.write_text(text[: text.rindex("\n", 0, len(text) - 1) + 10])
    return f"{csv}: not a readable leaderboard CSV (row 7 has "


def _cut_at_a_field(csv: Path):
    text = csv.read_text()
    csv.write_text(text[:-3])
    return f"{csv}: not a readable leaderboard CSV (row 7 has no line end: the file was cut short"


def _no_seed_column(csv: Path):
    frame = pd.read_csv(csv)
    frame.drop(columns=["seed"]).to_csv(csv, index=False)
    return f"{csv}: not a leaderboard (no 'seed' column; expected method, seed and the metrics"


CSVS = [_cut_mid_line, _cut_at_a_field, _no_seed_column]


def test_a_leaderboard_with_a_line_end_inside_a_field_or_a_blank_last_line_is_read(tmp_path, board, capsys):
    frame = board.copy()
    frame["note"] = ["", "", "two\nlines", "", "", ""]
    frame.to_csv(tmp_path / "quoted.csv", index=False)
    (tmp_path / "quoted.csv").write_text((tmp_path / "quoted.csv").read_text() + "\n")
    assert main(["table", str(tmp_path / "quoted.csv"), "--columns", "forget_em_contains"]) == 0


@pytest.mark.parametrize("damage", CSVS, ids=[d.__name__.strip("_") for d in CSVS])
@pytest.mark.parametrize("command", ["table", "check-run", "check-against"])
def test_a_damaged_leaderboard_is_refused_naming_file_and_line(tmp_path, board, capsys, damage, command):
    csv, good = tmp_path / "leaderboard.csv", tmp_path / "good.csv"
    shutil.copy(csv, good)
    message = damage(csv)
    argv = {
        "table": ["table", str(csv)],
        "check-run": ["check", str(csv), "--against", str(good)],
        "check-against": ["check", str(good), "--against", str(csv)],
    }[command]
    assert main(argv) == 2
    assert message in one_line(capsys)
