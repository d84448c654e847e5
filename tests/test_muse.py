"""MUSE: the metrics against hand computations, the official layout's loader, and `harness run --benchmark
muse-mini` end to end on the micro world."""

import json

import pandas as pd
import pytest

from evaluators import mia, muse
from evaluators.text import rouge_l
from harness.cli import main
from harness.data.muse import MuseWorldConfig, generate_muse, knowmem_prompt, load_muse, write_muse

SMALL_MUSE = ["muse.forget_parts=2", "muse.part_articles=3", "muse.retain_articles=2", "muse.holdout_articles=4"]


def test_rouge_l_f1_by_hand():
    # LCS of "the cat sat on the mat" (6) and "the cat lay on the mat" (6) is 5 words: P = R = F1 = 5/6
    assert rouge_l("the cat sat on the mat", "the cat lay on the mat") == pytest.approx(5 / 6)
    # gold 4 words, generation 2 of them: P = 1, R = 1/2, F1 = 2/3
    assert rouge_l("one two three four", "one four") == pytest.approx(2 / 3)
    assert rouge_l("a b", "c d") == 0.0


def test_knowmem_prompt_and_stop_words_are_muse_s():
    icl = [{"question": "Q1?", "answer": "A1"}, {"question": "Q2?", "answer": "A2"}]
    assert (
        knowmem_prompt(icl, "Q?") == "Question: Q1?\nAnswer: A1\n\nQuestion: Q2?\nAnswer: A2\n\nQuestion: Q?\nAnswer: "
    )
    assert muse.cut_at_stop_words("Paris\n\nQuestion: next") == "Paris"
    assert muse.cut_at_stop_words("Paris\nQuestion: next") == "Paris"
    assert muse.cut_at_stop_words("Paris Question: next") == "Paris "
    record = muse.knowmem_record(
        "forget_qa", {"question": "Q?", "answer": "Ulm city"}, "p", " Ulm town\n\nQuestion: x", 0
    )
    assert record["generation"] == "Ulm town" and record["rougeL_f1"] == pytest.approx(0.5)


def test_min_k_auc_and_privleak_by_hand():
    # Min-40% of 5 log-probs is the mean of the lowest int(0.4 * 5) = 2
    assert muse.document_record("member", 0, [-1.0, -5.0, -2.0, -0.5, -3.0])["min_k"] == pytest.approx(-4.0)
    items = [{"split": "member", "min_k": v} for v in (-1.0, -2.0)] + [
        {"split": "nonmember", "min_k": v} for v in (-1.5, -3.0)
    ]
    items += [{"split": "verbmem", "rougeL_f1": v} for v in (1.0, 0.5)]
    items += [{"split": "forget_qa", "rougeL_f1": 0.25}, {"split": "retain_qa", "rougeL_f1": 0.75}]
    metrics = muse.muse_metrics(items)
    # member > nonmember in 3 of the 4 pairs (-1 > -1.5, -1 > -3, -2 > -3; -2 < -1.5)
    assert metrics["muse_mia_min_k_auc"] == pytest.approx(0.75)
    assert (metrics["muse_forget_verbmem"], metrics["muse_forget_knowmem"], metrics["muse_retain_knowmem"]) == (
        0.75,
        0.25,
        0.75,
    )
    # ((1 - 0.75) - (1 - 0.5)) / (1 - 0.5) * 100 = -50: MUSE's (AUC' - AUC'_retain) / AUC'_retain with AUC' = 1 - ours
    leak = muse.reference_metrics(metrics, muse.MuseReference(0.5, "hand"))["muse_privleak"]
    assert leak == pytest.approx(-50.0) and leak == pytest.approx(((0.25 - 0.5) / 0.5) * 100)
    assert mia.privleak(0.5, 0.5) == 0.0


def test_the_embedded_world_has_muse_s_layout_and_splits(tmp_path):
    world = generate_muse(MuseWorldConfig())
    assert set(world) == {"raw", "verbmem", "knowmem", "privleak", "scal", "sust"}
    forget = [r["text"] for r in world["raw"]["forget"]]
    assert [r["prompt"] + r["gt"] for r in world["verbmem"]["forget"]] == forget
    assert [r["text"] for r in world["privleak"]["forget"]] == forget
    held_out = {r["text"] for r in world["raw"]["holdout"]}
    assert not held_out & (set(forget) | {r["text"] for r in world["raw"]["retain1"] + world["raw"]["retain2"]})
    scal, sust = world["scal"], world["sust"]
    assert [len(scal[f"forget_{k}"]) for k in (1, 2, 3, 4)] == [8, 16, 24, 32]  # nested, growing
    assert scal["forget_1"] == sust["forget_1"] == world["raw"]["forget"]  # the forget set is the first part
    assert sum((sust[f"forget_{k}"] for k in (1, 2, 3, 4)), []) == scal["forget_4"]  # disjoint, in order
    assert generate_muse(MuseWorldConfig()) == world  # deterministic
    splits = load_muse(write_muse(MuseWorldConfig(), tmp_path / "m"))
    assert len(splits.forget_qa) == 24 and len(splits.forget_icl) == 3 and len(splits.sequences["sust"]) == 4


@pytest.mark.parametrize("split", ["forget", "scal_2", "sust_2"])
def test_the_methods_unlearn_what_the_target_learned_beyond_the_retain_model(tmp_path, split):
    """muse-mini's forget set is the forget articles and their questions as KnowMem asks them: the rows the
    target trained on and the retain model did not (all of them once every part is unlearned). The questions
    join the request that holds the forget set: scal_K's one, sust_K's first."""
    from harness.benchmarks.muse import Muse
    from harness.benchmarks.muse_mini import with_forget_questions
    from harness.config import RunConfig
    from harness.data.muse import knowmem_rows
    from harness.embedded import _muse_rows

    folder = write_muse(MuseWorldConfig(forget_parts=2, part_articles=3, retain_articles=2), tmp_path / "m")
    splits, cfg = load_muse(folder), RunConfig(benchmark="muse-mini", forget_split=split)
    questions = knowmem_rows(splits.forget_icl, splits.forget_qa)
    prepared = with_forget_questions(Muse.prepared(splits, cfg, None, None, "m", {}), questions)
    requests = prepared.earlier + [prepared.forget]
    assert len(requests) == (2 if split == "sust_2" else 1) and requests[0][-len(questions) :] == questions
    assert questions[0]["question"] == knowmem_prompt(splits.forget_icl, splits.forget_qa[0]["question"])
    assert all(r["question"] == "" for request in requests[1:] for r in request)  # later parts: articles only
    learned = {(r["question"], r["answer"]) for r in _muse_rows(folder, True)}
    beyond_retain = learned - {(r["question"], r["answer"]) for r in _muse_rows(folder, False)}
    unlearned = {(r["question"], r["answer"]) for request in requests for r in request}
    assert unlearned <= beyond_retain and (unlearned == beyond_retain) == (split != "forget")


def _official(tmp_path):
    """The hub's layout: parquet shards per split (`raw/forget-00000-of-00001.parquet`), no sequences."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    world = generate_muse(MuseWorldConfig(part_articles=2, retain_articles=2, holdout_articles=2))
    folder = tmp_path / "MUSE-News"
    for config in ("raw", "verbmem", "knowmem", "privleak"):
        (folder / config).mkdir(parents=True)
        for split, rows in world[config].items():
            pq.write_table(pa.Table.from_pylist(rows), folder / config / f"{split}-00000-of-00001.parquet")
    return folder


def test_the_official_loader_reads_the_hub_layout(tmp_path):
    splits = load_muse(_official(tmp_path))
    assert len(splits.forget) == 2 and len(splits.verbmem) == 2 and splits.sequences == {}
    assert set(splits.forget_qa[0]) == {"question", "answer"}


def test_bad_muse_files_are_named_by_file_row_and_field(tmp_path):
    folder = _official(tmp_path)
    (folder / "verbmem" / "forget-00000-of-00001.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="no verbmem/forget file"):
        load_muse(folder)
    (folder / "verbmem" / "forget.jsonl").write_text(json.dumps({"prompt": "a"}) + "\n")
    with pytest.raises(ValueError, match=r"forget.jsonl: row 0: field 'gt' is missing or not a string"):
        load_muse(folder)
    (folder / "verbmem" / "forget.jsonl").write_text(json.dumps({"prompt": "a", "gt": " "}) + "\n")
    with pytest.raises(ValueError, match=r"row 0: field 'gt' is empty"):
        load_muse(folder)


def test_bad_muse_input_gets_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--benchmark", "muse", "--methods", "npo", "--out", str(out)]) == 2
    assert "needs --data" in capsys.readouterr().err
    bad = tmp_path / "ref.json"
    bad.write_text("{}")
    assert (
        main(["run", "--benchmark", "muse-mini", "--methods", "npo", "--retain-eval", str(bad), "--out", str(out)]) == 2
    )
    assert "expected JSON with a number 'muse_mia_min_k_auc'" in capsys.readouterr().err
    assert main(["run", "--benchmark", "muse-mini", "--set", "muse.part_articles=0", "--out", str(out)]) == 2
    assert "muse.part_articles=0" in capsys.readouterr().err
    assert not out.exists()


@pytest.fixture(scope="module")
def muse_run(tmp_path_factory, micro_cache):
    out = tmp_path_factory.mktemp("muse") / "run"
    args = ["run", "--preset", "tofu-mini-smoke", "--benchmark", "muse-mini", "--methods", "fo-graddiff"]
    args += [a for s in SMALL_MUSE for a in ("--set", s)]
    assert main([*args, "--out", str(out), "--cache-dir", str(micro_cache)]) == 0
    return out


def test_muse_mini_run_writes_muse_s_columns(muse_run):
    board = pd.read_csv(muse_run / "leaderboard.csv").set_index("method")
    assert list(board.index) == ["target", "retain", "fo-graddiff"]
    columns = [m.name for m in muse.METRICS]
    assert not board[columns].isna().any().any()
    target, retain, fo = board.loc["target"], board.loc["retain"], board.loc["fo-graddiff"]
    assert retain["muse_privleak"] == 0.0  # against itself
    assert target["muse_forget_verbmem"] > retain["muse_forget_verbmem"]  # the target read the forget articles
    assert target["muse_mia_min_k_auc"] > retain["muse_mia_min_k_auc"]
    assert fo["muse_privleak"] == pytest.approx(mia.privleak(fo["muse_mia_min_k_auc"], retain["muse_mia_min_k_auc"]))
    assert fo["muse_utility"] == fo["lmeval_embedded_world_facts_mc_acc"]
    assert (board["template"] == "raw").all()


def test_muse_items_recompute_the_row(muse_run):
    items = [json.loads(line) for line in (muse_run / "results" / "fo-graddiff-seed0.items.jsonl").open()]
    row = pd.read_csv(muse_run / "leaderboard.csv").set_index("method").loc["fo-graddiff"]
    assert muse.muse_metrics(items)["muse_forget_verbmem"] == pytest.approx(row["muse_forget_verbmem"])
    verbmem = [i for i in items if i["split"] == "verbmem"]
    assert len(verbmem) == 3 and all(
        i["rougeL_f1"] == pytest.approx(rouge_l(i["gold"], i["generation"])) for i in verbmem
    )
    reference = json.loads((muse_run / "reference" / "retain.json").read_text())
    assert set(reference) == {"muse_mia_min_k_auc", "source"}


def test_scalability_unlearns_a_larger_forget_set_and_scores_the_same_items(muse_run, micro_cache, tmp_path):
    """`--set forget_split=scal_2`: MUSE's scalability, the first two forget parts unlearned, the metrics still
    on the forget set (the first part), as MUSE evaluates its scal checkpoints."""
    args = ["run", "--preset", "tofu-mini-smoke", "--benchmark", "muse-mini", "--methods", "fo-graddiff"]
    args += [a for s in SMALL_MUSE for a in ("--set", s)] + ["--set", "forget_split=scal_2"]
    assert main([*args, "--out", str(tmp_path / "scal"), "--cache-dir", str(micro_cache)]) == 0
    scaled = pd.read_csv(tmp_path / "scal" / "leaderboard.csv").set_index("method")
    base = pd.read_csv(muse_run / "leaderboard.csv").set_index("method")
    assert scaled.loc["fo-graddiff", "forget_split"] == "scal_2" and base.loc["fo-graddiff", "forget_split"] == "forget"
    assert scaled.loc["fo-graddiff", "steps"] > base.loc["fo-graddiff", "steps"]  # twice the forget articles
    assert scaled.loc["fo-graddiff", "config_hash"] != base.loc["fo-graddiff", "config_hash"]
    for reference in ("target", "retain"):  # the same models scored on the same items
        assert scaled.loc[reference, "muse_forget_verbmem"] == base.loc[reference, "muse_forget_verbmem"]
    assert main([*args[:-1], "forget_split=scal_3", "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()


def test_sustainability_unlearns_the_requests_one_after_another(muse_run, micro_cache, tmp_path):
    """`--set forget_split=sust_K`: the forget parts 1..K unlearned in turn on one model, each by a fresh
    method; sust_1 is the plain run's cell, so its figures are that cell's."""
    args = ["run", "--preset", "tofu-mini-smoke", "--benchmark", "muse-mini", "--methods", "fo-graddiff"]
    args += [a for s in SMALL_MUSE for a in ("--set", s)]
    boards = {}
    for k in (1, 2):
        out = tmp_path / f"sust{k}"
        assert main([*args, "--set", f"forget_split=sust_{k}", "--out", str(out), "--cache-dir", str(micro_cache)]) == 0
        boards[k] = pd.read_csv(out / "leaderboard.csv").set_index("method").loc["fo-graddiff"]
    base = pd.read_csv(muse_run / "leaderboard.csv").set_index("method").loc["fo-graddiff"]
    columns = [m.name for m in muse.METRICS]
    assert (boards[1][columns] == base[columns]).all() and boards[1]["steps"] == base["steps"]
    # the second request is part 2's 3 articles alone (one batch of 4, 5 epochs); the first holds the questions
    assert boards[2]["requests"] == 2 and boards[2]["steps"] == base["steps"] + 5
    assert boards[2]["forget_split"] == "sust_2" and boards[2]["weights_digest"] != base["weights_digest"]
    plots = tmp_path / "plots"
    assert main(["plot", str(tmp_path / "sust1"), str(tmp_path / "sust2"), "--out", str(plots)]) == 0
    table = pd.read_csv(plots / "requests.csv")
    assert list(table["K"]) == [1, 2] and (plots / "requests.png").stat().st_size > 0
    assert table["muse_forget_knowmem_mean"].tolist() == [
        boards[1]["muse_forget_knowmem"],
        boards[2]["muse_forget_knowmem"],
    ]
    assert main(["plot", str(muse_run), str(tmp_path / "sust2"), "--out", str(plots)]) == 2  # no sust_K
    bad = tmp_path / "bad"
    assert main([*args, "--set", "forget_split=sust_2", "--methods", "fo-graddiff-lora", "--out", str(bad)]) == 2
    assert main([*args, "--set", "forget_split=sust_2", "--set", "eval.every=2", "--out", str(bad)]) == 2
    assert not bad.exists()
