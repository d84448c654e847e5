"""Several processes on the CPU (torchrun, 2 gloo ranks, one thread each): data-parallel and FSDP2-sharded
unlearning against one process accumulating the same batches, data-parallel evaluation against one process,
SIMU's masks and untouched weights under sharding, and the sharded memory plan of `--dry-run`."""

import contextlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from harness import distributed, sharding
from harness.cli import main
from harness.memory import GIB

SMOKE = ["--device", "cpu", "--preset", "tofu-mini-smoke", "--seeds", "0"]
METHODS = ["fo-graddiff", "so-graddiff", "npo", "simu", "rmu"]
# batch 5: the forget author's 10 rows make 2 batches, one per rank per step, which one process accumulating
# 2 batches also takes; the same data and retain draws, so the same figures up to the order of the sums.
# RMU at a rate at which it unlearns the micro world (its default, WMDP's 5e-5, changes nothing there)
BATCHES = [arg for m in METHODS for arg in ("--set", f"{m}.batch_size=5")] + ["--set", "rmu.lr=1e-2"]
ACCUMULATE = [arg for m in METHODS for arg in ("--set", f"{m}.grad_accum=2")]
# Measured on 2 cores (avx2): FSDP against one process, every figure within 3.8e-8 (FO-GradDiff and NPO;
# SO-GradDiff and SIMU equal; RMU 3.9e-8 on an AVX-512 EPYC), DDP against FSDP within 9e-8; these tests pass under
# ATEN_CPU_CAPABILITY=default too. A figure is a mean
# over items of per-item values, so 1e-5 still tells one flipped item (at least 1/32 here) from rounding.
TOLERANCE = 1e-5


@contextlib.contextmanager
def ranks_threads():
    """This process at one thread, as each rank runs (`torchrun` below): on some CPUs 1 and 2 threads round
    differently, and the comparisons here are bit for bit."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def torchrun(*args, nproc: int = 2, script=("-m", "harness")) -> subprocess.CompletedProcess:
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    done = subprocess.run([*command, *script, *args], env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def runs(micro_cache, tmp_path_factory):
    """The smoke preset's methods and RMU three ways: one process accumulating 2 batches, 2 ranks data-parallel,
    2 ranks sharded (its models saved)."""
    root = tmp_path_factory.mktemp("sharding")
    common = [*SMOKE, "--methods", ",".join(METHODS), *BATCHES, "--cache-dir", str(micro_cache)]
    with ranks_threads():
        assert main(["run", *common, *ACCUMULATE, "--out", str(root / "one")]) == 0
    logs = {
        "ddp": torchrun("run", *common, "--out", str(root / "ddp")).stdout,
        "fsdp": torchrun("run", *common, "--shard", "fsdp", "--save-models", "--out", str(root / "fsdp")).stdout,
    }
    return root, logs


def board(root: Path, run: str) -> pd.DataFrame:
    return pd.read_csv(root / run / "leaderboard.csv").set_index("method")


def figures(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if frame[c].dtype.kind == "f" and not c.endswith(("_seconds", "_gib"))]


def differing(a: pd.Series, b: pd.Series, columns: list[str]) -> list[str]:
    """The columns where `a` and `b` differ (NaN equals NaN)."""
    return [c for c in columns if not (a[c] == b[c] or (pd.isna(a[c]) and pd.isna(b[c])))]


@pytest.mark.slow
@pytest.mark.parametrize("run", ["fsdp", "ddp"])
def test_two_ranks_give_the_figures_of_one_process_accumulating(runs, run):
    """Every figure of every method within TOLERANCE of one process's; the rows say how they were computed
    (world size, shard, effective batch) and are hashed apart from it; rank 0 alone writes and reports."""
    root, logs = runs
    many, one = board(root, run), board(root, "one")
    assert list(many.index) == list(one.index) == ["target", "retain", *METHODS]
    assert sorted(p.name for p in (root / run / "results").iterdir()) == sorted(
        p.name for p in (root / "one" / "results").iterdir()
    )
    assert set(many["world_size"]) == {2} and set(many["shard"]) == {"fsdp" if run == "fsdp" else "none"}
    assert set(one["shard"]) == {"none"}
    assert not set(many["config_hash"]) & set(one["config_hash"])  # never mixed on resume
    for method in METHODS:
        assert many.loc[method, "steps"] == one.loc[method, "steps"]
        assert many.loc[method, "effective_batch"] == one.loc[method, "effective_batch"] == 10
        assert many.loc[method, "trainable_params"] == one.loc[method, "trainable_params"]
        for column in figures(one):
            a, b = many.loc[method, column], one.loc[method, column]
            assert (pd.isna(a) and pd.isna(b)) or abs(a - b) <= TOLERANCE, (method, column, a, b)
        assert one.loc[method, "forget_prob"] < one.loc["target", "forget_prob"]  # each of them unlearns
    assert logs[run].count("leaderboard:") == 1
    env = json.loads((root / run / "environment.json").read_text())
    assert [e.get("shard", "none") for e in env.values()] == ["fsdp" if run == "fsdp" else "none"]


@pytest.mark.slow
def test_data_parallel_evaluation_writes_one_process_items(runs):
    """The target's and retain model's items (generations, per-token scores, gradient norms) and figures, each
    rank scoring its share of the batches and rank 0 gathering them in order, are one process's, bit for bit."""
    root, _ = runs
    for run in ("ddp", "fsdp"):
        for row in ("target", "retain"):
            mine = (root / run / "results" / f"{row}.items.jsonl").read_text()
            assert mine == (root / "one" / "results" / f"{row}.items.jsonl").read_text(), (run, row)
        many, one = board(root, run), board(root, "one")
        for row in ("target", "retain"):
            assert differing(many.loc[row], one.loc[row], figures(one)) == [], (run, row)


@pytest.mark.slow
def test_sharded_simu_keeps_its_masks_and_every_weight_outside_them(runs, micro_cache):
    """SIMU sharded over 2 ranks: its masks (checked equal on both ranks by the run) are one process's, and
    after gathering, only the attention projections and the critical columns of `down_proj` moved."""
    root, _ = runs
    masks = {run: torch.load(root / run / "artifacts" / "simu-seed0" / "masks.pt") for run in ("fsdp", "one")}
    assert masks["fsdp"].keys() == masks["one"].keys()
    assert all(torch.equal(masks["fsdp"][k], masks["one"][k]) for k in masks["one"])
    target = load_file(next(micro_cache.glob("embedded-*/target/model.safetensors")))
    unlearned = load_file(root / "fsdp" / "models" / "simu-seed0" / "model.safetensors")
    assert target.keys() == unlearned.keys()
    for name, before in target.items():
        after = unlearned[name]
        if name.endswith("mlp.down_proj.weight"):
            critical = masks["fsdp"][name.removesuffix(".weight")]
            assert torch.equal(after[:, ~critical], before[:, ~critical]), name
            assert not torch.equal(after[:, critical], before[:, critical]), name
        elif "self_attn" in name:
            assert not torch.equal(after, before), name
        else:
            assert torch.equal(after, before), name


@pytest.mark.slow
def test_conv1d_neuron_rows_are_split_with_their_shards():
    """GPT-2's Conv1D `c_proj` has its neurons as rows, which FSDP2's Shard(0) splits across ranks (43 rows:
    22 and 21): each rank's mask is its rows of the whole mask, the masked Sophia step moves only critical
    rows, and clipping uses the global norm (tests/fsdp_worker.py)."""
    done = torchrun(script=[str(Path(__file__).with_name("fsdp_worker.py"))])
    assert sorted(re.findall(r"rank \d: ok", done.stdout)) == [
        "rank 0: ok",
        "rank 1: ok",
    ]  # the ranks' lines may interleave


@pytest.mark.slow
def test_harness_eval_on_two_ranks_scores_as_one_process(runs, micro_cache, tmp_path):
    """`harness eval` of a saved cell, data-parallel on 2 ranks: the same items and figures as one process."""
    root, _ = runs
    model = root / "fsdp" / "models" / "simu-seed0"
    common = [*SMOKE[:-2], "--model", str(model), "--name", "simu-sharded", "--cache-dir", str(micro_cache)]
    torchrun("eval", *common, "--out", str(tmp_path / "two"))
    with ranks_threads():
        assert main(["eval", *common, "--out", str(tmp_path / "one")]) == 0
    for run in ("two", "one"):
        assert (tmp_path / run / "results" / "simu-sharded.model.items.jsonl").exists()
    name = "simu-sharded.model.items.jsonl"
    assert (tmp_path / "two" / "results" / name).read_text() == (tmp_path / "one" / "results" / name).read_text()
    two, one = board(tmp_path, "two"), board(tmp_path, "one")
    assert differing(two.loc["simu-sharded"], one.loc["simu-sharded"], figures(one)) == []


def plan(capsys, *args) -> dict[str, dict[str, float]]:
    assert main(["run", "--dry-run", "--preset", "tofu-llama2-7b", *args]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("method"))
    header = lines[at].replace("total GiB", "total").replace("peak GiB", "peak").split()
    rows = {}
    for line in lines[at + 1 :]:
        if not line or line.startswith("per "):
            break
        cells = line.split()
        rows[cells[0]] = dict(zip(header[2:], map(float, cells[2:])))
    return rows


@pytest.mark.parametrize("processes", [2, 4, 8])
def test_sharded_plan_divides_the_float32_state_by_the_processes(capsys, processes):
    """`--dry-run --shard fsdp --processes N` of the 7B preset: float32 weights (the masters), gradients and
    optimizer states are 1/N of one process's, plus the all-gathered layers; activations per process as
    before; the load and evaluation copies whole in bf16; NPO's frozen reference sharded too."""
    methods = ["--methods", "fo-graddiff,simu,npo"]
    whole = plan(capsys, *methods)
    sharded = plan(capsys, *methods, "--shard", "fsdp", "--processes", str(processes))
    n_params, bf16 = 6.74e9, 6.74e9 * 2 / GIB
    for method, cells in sharded.items():
        one = whole[method]
        assert cells["gradients"] == pytest.approx(one["gradients"] / processes, abs=0.01)
        assert cells["optimizer"] == pytest.approx(one["optimizer"] / processes, abs=0.01)
        assert cells["master"] == 0.0 and one["master"] == one["gradients"]  # the shards are the masters
        copies = 2 if method == "npo" else 1
        shards = n_params * 4 / processes / GIB + (copies - 1) * bf16 / processes
        assert shards < cells["weights"] < shards + 2.0  # + the root's and two layers' all-gathered weights
        assert cells["activations"] == one["activations"] and cells["logits"] == one["logits"]
        assert cells["load"] == pytest.approx(copies * bf16, rel=0.01)
        assert cells["eval"] == pytest.approx(bf16 + n_params * 4 / processes / GIB, rel=0.01)
        assert cells["peak"] == max(cells["train"], cells["load"], cells["eval"])
        assert cells["train"] < one["total"]


def test_sharded_plan_says_how_it_was_counted(capsys):
    assert main(["run", "--dry-run", "--preset", "tofu-llama2-7b", "--shard", "fsdp", "--processes", "4"]) == 0
    out = capsys.readouterr().out
    assert "4 processes, shard fsdp" in out and "sharded 4 ways (FSDP2)" in out and "nothing loaded" in out


def test_map_batches_in_one_process_is_every_batch_in_order():
    calls = []

    def double(batch):
        calls.append(list(batch))
        return [2 * x for x in batch]

    assert distributed.map_batches(double, list(range(7)), 3) == [0, 2, 4, 6, 8, 10, 12]
    assert calls == [[0, 1, 2], [3, 4, 5], [6]]


def test_pooled_jobs_run_in_order_in_one_process():
    """A model's evaluations are one pool of batches (dealt round-robin over N ranks): one process runs every
    batch of every job in order, and each job gets its own results."""
    calls = []

    def tagged(tag):
        def fn(batch):
            calls.append((tag, list(batch)))
            return [f"{tag}{x}" for x in batch]

        return fn

    jobs = [distributed.Job(tagged("g"), [1, 2, 3], 2), distributed.Job(tagged("s"), [4, 5], 1)]
    assert distributed.run_jobs(jobs) == [["g1", "g2", "g3"], ["s4", "s5"]]
    assert calls == [("g", [1, 2]), ("g", [3]), ("s", [4]), ("s", [5])]


def test_an_fsdp_accelerate_config_shards_and_deepspeed_is_one_line(monkeypatch):
    """The processes `accelerate launch --config_file harness/presets/accelerate/fsdp.yaml` starts are told to
    use FSDP (version 2), and the harness shards for it; DeepSpeed stops with one line pointing to FSDP."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    config = Path(sharding.__file__).parent / "presets" / "accelerate" / "fsdp.yaml"
    args = launch_command_parser().parse_args(["--config_file", str(config), "-m", "harness", "run"])
    env = prepare_multi_gpu_env(_validate_launch_command(args)[0])
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    assert sharding.mode("none") == "none"
    monkeypatch.setenv("ACCELERATE_USE_FSDP", env["ACCELERATE_USE_FSDP"])
    assert sharding.mode("none") == "fsdp"
    distributed.configure("cpu", "none")  # accepted (one process: nothing to join)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(ValueError, match="DeepSpeed is not supported.*fsdp.yaml"):
        distributed.configure("cpu", "fsdp")


def test_shard_flag_is_checked_and_documented(capsys):
    assert main(["run", "--dry-run", "--shard", "zero3"]) == 2
    err = capsys.readouterr().err
    assert "--shard zero3: expected one of none, fsdp" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "--shard none|fsdp" in capsys.readouterr().out
    assert main(["eval", "--shard", "fsdp", "--model", "x"]) == 2
    assert "--shard: not an argument of eval (only of run and sweep)" in capsys.readouterr().err


@pytest.mark.slow
def test_sharded_gradient_checkpointing_changes_no_figure(runs, micro_cache):
    """`--shard fsdp` with gradient checkpointing (what the README's 4 x 40 GB command uses): the sharded
    run's figures, within TOLERANCE, for FO-GradDiff and NPO (its frozen reference sharded beside it)."""
    root, _ = runs
    batches = ["--set", "fo-graddiff.batch_size=5", "--set", "npo.batch_size=5"]
    common = [*SMOKE, "--methods", "fo-graddiff,npo", *batches, "--cache-dir", str(micro_cache), "--shard", "fsdp"]
    torchrun("run", *common, "--set", "compute.gradient_checkpointing=true", "--out", str(root / "fsdp-gc"))
    checkpointed, plain = board(root, "fsdp-gc"), board(root, "fsdp")
    for method in ("fo-graddiff", "npo"):
        for column in figures(checkpointed):
            a, b = checkpointed.loc[method, column], plain.loc[method, column]
            assert (pd.isna(a) and pd.isna(b)) or abs(a - b) <= TOLERANCE, (method, column, a, b)
