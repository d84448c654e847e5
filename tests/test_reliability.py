"""Failing fast and clearly: bad input before any model work, divergence, interrupts, corrupt files, the run
folder's lock, pickle checkpoints, no-op cells, and a schedule whose first step trains."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_tofu_data import write_official_tofu
from transformers import GPT2Config, GPT2LMHeadModel

import harness.files
import methods.base
from harness.benchmarks.tofu_mini import EmbeddedModelConfig
from harness.cli import main
from harness.config import method_config
from harness.data.world import WorldConfig, generate_world
from harness.embedded import build_model, train_tokenizer
from harness.files import locked, uninterrupted, write_atomically
from harness.models import load_model, weights_digest
from methods.base import linear_schedule
from methods.fo_graddiff import FOGradDiff

SMOKE = ["--preset", "tofu-mini-smoke"]


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--methods", "so-graddiff", "--set", "so-graddiff.lr=-1"],
            "--set so-graddiff.lr=-1.0: expected a finite number",
        ),
        (
            ["--methods", "so-graddiff", "--set", "so-graddiff.lr=nan"],
            "so-graddiff.lr=nan: expected a finite number > 0",
        ),
        (["--set", "fo-graddiff.lr=0"], "fo-graddiff.lr=0.0: expected a finite number > 0"),
        (["--set", "fo-graddiff.epochs=0"], "fo-graddiff.epochs=0: expected an integer >= 1"),
        (["--set", "fo-graddiff.batch_size=0"], "fo-graddiff.batch_size=0: expected an integer >= 1"),
        (["--methods", "simu", "--set", "simu.m=0"], "simu.m=0: expected an integer >= 1"),
        (["--methods", "simu", "--set", "simu.t=1.5"], "simu.t=1.5: expected a number in [0, 1]"),
        (
            ["--methods", "so-graddiff", "--set", "so-graddiff.beta2=1"],
            "so-graddiff.beta2=1.0: expected a number in [0,",
        ),
        (
            ["--methods", "so-graddiff", "--set", "so-graddiff.rho=0"],
            "so-graddiff.rho=0.0: expected a finite number > 0",
        ),
        (["--set", "eval.batch_size=0"], "eval.batch_size=0: expected an integer >= 1"),
        (["--grid", "fo-graddiff.lr=1e-4,0"], "--grid fo-graddiff.lr=0.0: expected a finite number > 0"),
        (["--lm-eval-tasks", "embedded_world_facts_mc", "--template", "chat"], "cannot follow --template chat"),
    ],
)
def test_bad_settings_fail_in_one_line_before_any_work(tmp_path, capsys, args, message):
    command = "sweep" if "--grid" in args else "run"
    out = tmp_path / "run"
    assert main([command, *SMOKE, *args, "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists() and not (tmp_path / "cache").exists()  # no model trained, nothing written


def test_an_empty_split_is_named_before_any_model_loads(tmp_path, capsys):
    data = write_official_tofu(tmp_path / "tofu")
    (data / "forget01.json").write_text("")
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
                str(tmp_path / "no-model"),
                "--set",
                "forget_split=forget01",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"harness: error: {data / 'forget01.json'}: no rows; expected at least one"]
    assert not out.exists()


def test_an_unwritable_out_fails_first(tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    assert main(["run", *SMOKE, "--out", str(tmp_path / "a-file" / "run"), "--cache-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a-file/run: cannot write there" in err[0]
    assert not (tmp_path / "c").exists()


def test_a_malformed_csv_is_named(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text('method,x\n"a,1\nb,2,3,4\n')
    for argv in (["table", str(bad)], ["check", str(bad), "--against", str(bad)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{bad}: not a readable leaderboard CSV" in err[0], err


def test_a_second_process_on_the_same_out_is_told_who_holds_it(tmp_path, capsys):
    out = tmp_path / "run"
    with locked(out):
        assert main(["run", *SMOKE, "--out", str(out), "--cache-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--out {out}: in use by pid {os.getpid()} on " in err[0] and "--wait" in err[0]
    assert not out.exists()  # the lock's folder, made for nothing else, is gone again


def test_wait_takes_the_run_folder_once_its_holder_is_done(tmp_path):
    out, released = tmp_path / "run", threading.Event()

    def hold():
        with locked(out):
            released.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    while not (out / ".lock").exists() or not (out / ".lock").read_text():
        time.sleep(0.01)
    threading.Timer(0.3, released.set).start()
    start = time.perf_counter()
    with locked(out, wait=True):
        assert time.perf_counter() - start >= 0.25 and released.is_set()
    holder.join()


def test_writes_finish_before_an_interrupt_takes_effect(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with uninterrupted():
            os.kill(os.getpid(), signal.SIGINT)
            write_atomically(tmp_path / "row.json", "{}\n")
    assert (tmp_path / "row.json").read_text() == "{}\n"


# --- runs on the micro world (its models trained once per session in micro_cache) --------------------------


def run(out: Path, cache: Path, *extra: str, methods: str = "fo-graddiff,so-graddiff") -> int:
    return main(
        ["run", *SMOKE, "--methods", methods, "--seeds", "0,1", "--out", str(out), "--cache-dir", str(cache), *extra]
    )


def metric_columns(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in frame.columns if c.endswith(("_seconds", "_gib"))])  # measured costs


def test_a_diverging_cell_fails_alone_and_the_run_exits_1(tmp_path, micro_cache, capsys):
    assert run(tmp_path / "run", micro_cache, "--set", "fo-graddiff.lr=1e9") == 1
    err = capsys.readouterr().err
    assert "cell 1/4 fo-graddiff-seed0 failed, no row written: " in err and "lr=1e+09 is the likeliest cause" in err
    assert "2 cell(s) failed and wrote no row: fo-graddiff-seed0, fo-graddiff-seed1" in err.splitlines()[-1]
    board = pd.read_csv(tmp_path / "run" / "leaderboard.csv")
    assert list(board["method"]) == ["target", "retain", "so-graddiff", "so-graddiff"]


def test_a_run_killed_between_temp_write_and_rename_resumes_to_the_same_csv(tmp_path, micro_cache, monkeypatch):
    assert run(tmp_path / "whole", micro_cache) == 0
    real_replace = os.replace

    def crash_on_third_cell(src, dst):
        if str(dst).endswith("so-graddiff-seed0.json"):
            raise KeyboardInterrupt  # as if the process died after writing the temp file
        real_replace(src, dst)

    monkeypatch.setattr(harness.files.os, "replace", crash_on_third_cell)
    assert run(tmp_path / "cut", micro_cache) == 130
    results = tmp_path / "cut" / "results"
    assert not list(results.glob(".*.tmp")) and not (results / "so-graddiff-seed0.json").exists()
    monkeypatch.setattr(harness.files.os, "replace", real_replace)
    assert run(tmp_path / "cut", micro_cache) == 0
    whole, cut = (metric_columns(pd.read_csv(tmp_path / name / "leaderboard.csv")) for name in ("whole", "cut"))
    pd.testing.assert_frame_equal(whole, cut)


def test_a_corrupt_result_is_named_and_its_cell_runs_again(tmp_path, micro_cache, capsys):
    out = tmp_path / "run"
    assert run(out, micro_cache, methods="fo-graddiff") == 0
    row = out / "results" / "fo-graddiff-seed1.json"
    row.write_text(row.read_text()[:40])
    capsys.readouterr()
    assert run(out, micro_cache, methods="fo-graddiff") == 0
    err = capsys.readouterr().err
    assert f"warning: {row}: not a result row (" in err and "running its cell again" in err
    assert json.loads(row.read_text())["method"] == "fo-graddiff"


def test_an_interrupt_says_how_to_resume_and_exits_130(tmp_path, micro_cache, monkeypatch, capsys):
    def interrupted(self, *args):
        raise KeyboardInterrupt

    monkeypatch.setattr(FOGradDiff, "unlearn", interrupted)
    assert run(tmp_path / "run", micro_cache, methods="fo-graddiff") == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        err == f"harness: interrupted; finished cells are kept in {tmp_path / 'run'}: run the same command again "
        f"to resume"
    )


def test_a_cell_that_changes_nothing_is_flagged(tmp_path, micro_cache, monkeypatch, capsys):
    monkeypatch.setattr(
        methods.base.UnlearningMethod, "optimizer_step", lambda self, model, optimizer, *rest: optimizer.zero_grad()
    )
    assert run(tmp_path / "run", micro_cache, "--seeds", "0", methods="fo-graddiff") == 0
    board = pd.read_csv(tmp_path / "run" / "leaderboard.csv")
    assert board.set_index("method").loc["fo-graddiff", "unchanged"]
    err = capsys.readouterr().err
    assert "1 warning(s) in this run:" in err and "fo-graddiff-seed0: the unlearned model is the target's" in err


def test_rows_follow_the_methods_order(tmp_path, micro_cache):
    assert run(tmp_path / "run", micro_cache, "--seeds", "0", methods="so-graddiff,fo-graddiff") == 0
    assert list(pd.read_csv(tmp_path / "run" / "leaderboard.csv")["method"]) == [
        "target",
        "retain",
        "so-graddiff",
        "fo-graddiff",
    ]


# --- models and the schedule ---------------------------------------------------------------------------------


def test_pickle_checkpoints_load_only_when_allowed(tmp_path):
    texts = [r["question"] + " " + r["answer"] for r in generate_world(WorldConfig(n_authors=10))["full"]]
    tokenizer = train_tokenizer(texts, 300)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=16,
        n_layer=1,
        n_head=2,
        n_positions=64,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = GPT2LMHeadModel(config)
    config.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    torch.save(model.state_dict(), tmp_path / "m" / "pytorch_model.bin")  # a pickle checkpoint, as older models ship
    with pytest.raises(OSError, match="only safetensors weights load unless --allow-pickle"):
        load_model(tmp_path / "m")
    assert weights_digest(load_model(tmp_path / "m", allow_pickle=True)[0]) == weights_digest(model)


def test_no_step_trains_at_lr_zero():
    def rates(total, warmup_ratio=0.1):
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        schedule, out = linear_schedule(optimizer, total, warmup_ratio), []
        for _ in range(total):
            out.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.step()
        return out

    assert rates(1) == [1.0] and rates(4) == [1.0, 0.75, 0.5, 0.25]  # short runs: no warm-up
    long = rates(20)
    assert long[:3] == pytest.approx([1 / 3, 2 / 3, 1.0]) and long[-1] == pytest.approx(1 / 18) and min(long) > 0


def test_a_one_step_run_changes_the_model():
    world = generate_world(WorldConfig(n_authors=10))
    tokenizer = train_tokenizer([r["question"] + " " + r["answer"] for r in world["full"]], 300)
    model = build_model(
        EmbeddedModelConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2), tokenizer
    )
    before = weights_digest(model)
    forget = world["forget10"]
    method = FOGradDiff(method_config("fo-graddiff", {"epochs": "1", "batch_size": str(len(forget))}))
    report = method.unlearn(model, tokenizer, forget, world["retain90"])
    assert report.steps == 1 and weights_digest(model) != before


def test_sigterm_mid_run_exits_130_and_the_rerun_finishes(tmp_path, micro_cache):
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "harness",
        "run",
        *SMOKE,
        "--methods",
        "fo-graddiff",
        "--seeds",
        "0,1,2",
        "--out",
        str(out),
        "--cache-dir",
        str(micro_cache),
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    for line in process.stderr:
        if line.startswith("cell 1/3 "):  # one cell written, the next under way
            process.send_signal(signal.SIGTERM)
            break
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 130
    assert (
        rest.strip().splitlines()[-1] == f"harness: interrupted; finished cells are kept in {out}: run the same "
        f"command again to resume"
    )
    assert (out / "results" / "fo-graddiff-seed0.json").exists() and not list(out.rglob(".*.tmp"))
    assert subprocess.run(command, env=env, capture_output=True).returncode == 0
    assert len(pd.read_csv(out / "leaderboard.csv")) == 5
